"""Writing a file whole: through a temporary file and a rename, so a reader, a crash or a full disk
never leaves half a file behind."""

from __future__ import annotations

import contextlib
import os
import pathlib
import threading


@contextlib.contextmanager
def atomic_write(path: str | pathlib.Path, mode: str = "w"):
  """Yields a file open for writing in `path`'s folder that becomes `path` when the block ends.

  If the block or the write fails, `path` keeps its old content and the temporary file is removed;
  a fault of the machine (disk full, read-only, file-size limit) is raised as an `OSError` naming
  `path`, not the temporary file or nothing, which is what `write()` reports.
  """
  path = pathlib.Path(path)
  # Its own per process and thread: a sweep's vmapped seeds write the same split cache at once.
  tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
  try:
    with open(tmp, mode, **({} if "b" in mode else {"newline": ""})) as f:
      yield f
    os.replace(tmp, path)
  except BaseException as e:
    with contextlib.suppress(OSError):
      tmp.unlink()
    if isinstance(e, OSError) and e.errno is not None:
      raise OSError(e.errno, os.strerror(e.errno), str(path)) from e
    raise
