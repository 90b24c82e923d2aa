"""Shared fixtures and helpers: small data files written by the tests, a local HTTP server to
download from, launch.py as a user runs it, and the real data when available."""

import http.server
import io
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import threading
import urllib.parse
import urllib.request
import zipfile

import ml_collections
import pytest

from configs import default

os.environ.setdefault("JAX_PLATFORMS", "cpu")

REPO = pathlib.Path(__file__).resolve().parents[1]


def pytest_configure(config):
  """Gives the session's processes (its workers and the launch.py they start) one XLA compilation
  cache, which the session's last step deletes.

  Each run jits its own programs, so the tests compile the same small programs again and again;
  with the cache each compiles once a session, which took the suite from 617-654 s to 414-458 s on
  two workers. A damaged entry (a process killed while writing it) is compiled afresh, with a
  warning.
  """
  if "JAX_COMPILATION_CACHE_DIR" in os.environ:  # a worker's (its controller made it) or the user's
    return
  cache = tempfile.mkdtemp(prefix="dmf_jax-tests-xla-")
  config.add_cleanup(lambda: shutil.rmtree(cache, ignore_errors=True))
  os.environ["JAX_COMPILATION_CACHE_DIR"] = cache
  # Every program is worth keeping: most of the tests' programs compile in well under a second.
  os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
  os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"


def pytest_terminal_summary(terminalreporter):
  """Lists the notebooks' run times (`tests/test_notebooks.py` records them)."""
  times = [
    (report.nodeid, dict(report.user_properties)["notebook_seconds"])
    for report in terminalreporter.stats.get("passed", [])
    if "notebook_seconds" in dict(report.user_properties)
  ]
  if times:
    terminalreporter.write_sep("-", "notebook run times (small mode)")
    for nodeid, seconds in times:
      terminalreporter.write_line(f"{seconds:7.1f} s  {nodeid}")


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
  """Keeps the split cache and downloads out of the user's home."""
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(autouse=True)
def _no_internet(monkeypatch):
  """Fails a test that would download from anywhere but this machine."""
  urlopen = urllib.request.urlopen

  def local_only(url, *args, **kwargs):
    assert urllib.parse.urlparse(url).hostname == "127.0.0.1", f"a test tried to fetch {url}"
    return urlopen(url, *args, **kwargs)

  monkeypatch.setattr(urllib.request, "urlopen", local_only)


@pytest.fixture
def real_data_root():
  root = os.environ.get("DMF_DATA_DIR")
  if not root or not (pathlib.Path(root) / "ml-100k" / "u.data").is_file():
    pytest.skip("DMF_DATA_DIR does not point at the shared data (ml-100k/u.data)")
  return pathlib.Path(root)


def write_ml100k(root: pathlib.Path, rows, titles=None) -> pathlib.Path:
  """Writes `rows` of (user, item, rating, timestamp) in ML-100k's u.data format under root."""
  folder = root / "ml-100k"
  folder.mkdir(parents=True, exist_ok=True)
  (folder / "u.data").write_text("".join("\t".join(map(str, r)) + "\n" for r in rows))
  if titles:
    lines = [f"{item}|{title}|01-Jan-1995||http://x|0|1\n" for item, title in titles.items()]
    (folder / "u.item").write_bytes("".join(lines).encode("latin-1"))
  return folder / "u.data"


def data_config(name: str, root: pathlib.Path | None = None, **fields) -> ml_collections.ConfigDict:
  """The default `config.data` for data set `name` under `root`, with `fields` overridden."""
  config = default.get_config().data
  config.name = name
  config.root = str(root) if root is not None else None
  config.update(fields)
  return config


def synthetic_rows(num_users=30, num_items=40, per_user=12, seed=0):
  """Rows (user, item, rating, timestamp) with raw ids 1-based, distinct items per user."""
  import numpy as np

  rng = np.random.default_rng(seed)
  rows = []
  for u in range(1, num_users + 1):
    # Users prefer items near their own id, so neighbours and popularity carry signal.
    weights = np.exp(-np.abs(np.arange(num_items) - (u * num_items) // num_users) / 6.0)
    items = rng.choice(num_items, size=per_user, replace=False, p=weights / weights.sum()) + 1
    for t, item in enumerate(items):
      rows.append((u, int(item), int(rng.integers(1, 6)), 1000 + 10 * t + int(rng.integers(0, 3))))
  return rows


def zip_of(files: dict[str, bytes]) -> bytes:
  """A zip archive holding `files` (archive path -> contents)."""
  buffer = io.BytesIO()
  with zipfile.ZipFile(buffer, "w") as z:
    for name, contents in files.items():
      z.writestr(name, contents)
  return buffer.getvalue()


class LocalServer:
  """An HTTP server on 127.0.0.1 serving `files` (URL path -> bytes) and counting requests."""

  def __init__(self):
    self.files: dict[str, bytes] = {}
    self.requests: list[str] = []
    server = self

    class Handler(http.server.BaseHTTPRequestHandler):
      def do_GET(self):
        server.requests.append(self.path)
        body = server.files.get(self.path)
        if body is None:
          self.send_error(404)
          return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

      def log_message(self, *args):
        pass

    self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    # A short poll interval keeps shutdown, and so each test, quick.
    self._thread = threading.Thread(
      target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    self._thread.start()

  def url(self, path: str) -> str:
    return f"http://127.0.0.1:{self._httpd.server_address[1]}{path}"

  def close(self):
    self._httpd.shutdown()
    self._httpd.server_close()


@pytest.fixture
def local_server():
  """A `LocalServer`: tests download from it, never from the internet."""
  server = LocalServer()
  yield server
  server.close()


# Runs a command under a file-size limit (RLIMIT_FSIZE, `ulimit -f`): set in a process of its own,
# since a `preexec_fn` would fork the test's process, which JAX's threads make unsafe.
_UNDER_FILE_SIZE_LIMIT = (
  "import os, resource, sys; limit = int(sys.argv[1]); "
  "resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)); os.execv(sys.argv[2], sys.argv[2:])"
)


def launch(*args, data_root=None, timeout=300, file_size_limit=None):
  """Runs launch.py as a user would (under `file_size_limit` bytes a file if given); returns the
  finished process."""
  env = dict(os.environ)
  if data_root is not None:
    env["DMF_DATA_DIR"] = str(data_root)
  return subprocess.run(
    [
      *(
        [sys.executable, "-c", _UNDER_FILE_SIZE_LIMIT, str(file_size_limit)]
        if file_size_limit
        else []
      ),
      sys.executable,
      str(REPO / "launch.py"),
      *map(str, args),
    ],
    capture_output=True,
    text=True,
    cwd=REPO,
    env=env,
    timeout=timeout,
  )


def assert_one_line_error(proc, *fragments):
  """The process failed with one `error:` line holding every fragment, and no traceback."""
  assert proc.returncode != 0
  assert "Traceback" not in proc.stderr
  lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
  assert len(lines) == 1, proc.stderr
  for fragment in fragments:
    assert fragment in lines[0], lines[0]
