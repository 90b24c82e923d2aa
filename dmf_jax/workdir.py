"""A run's folder: its resolved config, per-evaluation metrics, per-user ranks and final results.

config.json     the resolved config, written once the data and split have loaded
split.npz       held-out items and candidates (see `protocol`)
metrics.jsonl   one record per evaluation
ranks.npz       per-user ranks of the held-out items at the reported epoch
results.json    written last, atomically: a run without it is unfinished
.lock           held (an OS file lock) by the one process that runs in the workdir; it names them

Every file is written through a temporary file and a rename, so a crash leaves the old file or the
new one, never half of one. In a run of several processes (multi-host) every process reads the
workdir and process 0 alone takes the lock and writes these files; orbax coordinates the
processes' checkpoint writes itself.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import logging
import os
import pathlib
import shutil
import socket
import subprocess

import jax
import numpy as np
from ml_collections import config_dict

from dmf_jax import checkpoints, files, protocol
from dmf_jax.errors import ConfigError, UserError

log = logging.getLogger(__name__)

CONFIG = "config.json"
METRICS = "metrics.jsonl"
RANKS = "ranks.npz"
RESULTS = "results.json"
LOCK = ".lock"
# Everything a run writes; --overwrite removes these and nothing else.
RUN_OUTPUTS = (CONFIG, METRICS, RANKS, RESULTS, protocol.SPLIT_FILE, checkpoints.FOLDER)


def _process_zero_writes(method):
  @functools.wraps(method)
  def written_by_process_zero(self, *args, **kwargs):
    if jax.process_index() == 0:
      method(self, *args, **kwargs)

  return written_by_process_zero


class WorkdirBusy(UserError):
  """Another process holds the workdir."""


def damaged(path: pathlib.Path, what: str) -> UserError:
  """The error of a run file that cannot be read."""
  return UserError(
    f"{path}: damaged ({what}); rerun with --overwrite to start the run over, or remove the file"
  )


def read_json(path: pathlib.Path):
  """A JSON file's value, or None when it does not exist; a damaged one is a `UserError`."""
  try:
    text = path.read_text()
  except FileNotFoundError:
    return None
  try:
    return json.loads(text)
  except json.JSONDecodeError as e:
    raise damaged(path, f"not JSON: {e.msg} at line {e.lineno}") from None


def write_json(path: pathlib.Path, value) -> None:
  """Writes JSON through a temporary file, so readers never see half a file."""
  with files.atomic_write(path) as f:
    f.write(json.dumps(value, indent=2, sort_keys=True) + "\n")


def where_to_resume(path: pathlib.Path | str) -> str:
  """What rerunning the command that trains in `path` (one run's workdir, or a sweep's, whose runs
  lie in its subfolders) goes on from: the latest checkpoint of each unfinished run. Read from the
  folder names alone, so it is safe to call from a signal handler while orbax writes."""
  path = pathlib.Path(path)
  latest: dict[pathlib.Path, int] = {}
  try:
    for meta in path.glob(f"**/{checkpoints.FOLDER}/*/meta"):
      run, epoch = meta.parent.parent.parent, meta.parent.name
      if epoch.isdigit() and not (run / RESULTS).exists():
        latest[run] = max(latest.get(run, 0), int(epoch))
  except OSError:  # orbax was renaming a checkpoint's folder as the signal came
    return f"the same command resumes {path} from its latest checkpoints"
  if not latest:
    return f"the same command starts the unfinished runs in {path} again"
  epochs = ", ".join(str(e) for e in sorted(latest.values(), reverse=True))
  runs = (
    "its unfinished run: epoch"
    if len(latest) == 1
    else f"its {len(latest)} unfinished runs: epochs"
  )
  return f"the same command resumes {path} from its checkpoints ({runs} {epochs})"


CHECKOUT = pathlib.Path(__file__).resolve().parents[1]
# The committed run records and what `python -m dmf_jax.report` writes from them (docs/ and the
# README's glance): collecting records or regenerating the report in a training checkout changes no
# code, so it does not mark later runs "+dirty". (`configs/beyond_top5.py` reads its five recipes
# from results/; each run's config names them.)
OUTPUTS = ("results", "docs", "README.md")


@functools.cache
def code_version(checkout: pathlib.Path = CHECKOUT) -> str | None:
  """The git commit of this package's checkout (with "+dirty" when tracked files other than
  `OUTPUTS` differ from it), or None outside a git checkout: the same command and config give the
  same numbers only with the same code. Read once per process, when a run first asks (before it
  trains): a sweep that runs for hours records the code it loaded, not a commit made in the
  checkout meanwhile."""

  def git(*args):
    return subprocess.run(["git", "-C", str(checkout), *args], capture_output=True, text=True)

  try:
    head = git("rev-parse", "--short=12", "HEAD")
    if head.returncode:
      return None
    outputs = [f":(exclude){folder}" for folder in OUTPUTS]
    dirty = git("diff", "--quiet", "HEAD", "--", ".", *outputs).returncode != 0
  except OSError:  # no git on this machine
    return None
  return head.stdout.strip() + ("+dirty" if dirty else "")


def config_to_json(config: config_dict.ConfigDict) -> dict:
  """The config as plain JSON values (tuples become lists), for storing and comparing."""
  return json.loads(config.to_json())


def _differences(old: dict, new: dict, prefix: str = "") -> list[str]:
  """Fields whose values differ. A field only one side has is not a difference: it was added to
  (or removed from) the project after the stored run, which stays valid."""
  out = []
  for key in sorted(set(old) & set(new)):
    a, b = old[key], new[key]
    if isinstance(a, dict) and isinstance(b, dict):
      out += _differences(a, b, f"{prefix}{key}.")
    elif a != b:
      out.append(f"{prefix}{key}: {a!r} -> {b!r}")
  return out


def _run_fields(config: dict) -> dict:
  """The fields a run's results depend on: not the sweep's own (how many seeds it runs: a sweep
  grown to more seeds keeps the members it finished), nor how an epoch is chunked."""
  fields = {k: v for k, v in config.items() if k != "sweep"}
  fields["train"] = {k: v for k, v in fields.get("train", {}).items() if k != "chunk_steps"}
  return fields


class Workdir:
  """The outputs of one run in `path`."""

  def __init__(self, path: pathlib.Path | str):
    self.path = pathlib.Path(path)

  def file(self, name: str) -> pathlib.Path:
    return self.path / name

  def stored_config(self) -> dict | None:
    return read_json(self.file(CONFIG))

  def results(self) -> dict | None:
    return read_json(self.file(RESULTS))

  @contextlib.contextmanager
  def locked(self):
    """Holds the workdir for this process while the block runs (process 0 of a multi-process run
    holds it for all). The lock is the OS's, so a killed holder's lock goes with it. A folder that
    this call created and that holds nothing else afterwards is removed.

    Raises:
      WorkdirBusy: another process holds the workdir; the message names it.
    """
    if jax.process_index() > 0:
      yield
      return
    created = not self.path.exists()
    self.path.mkdir(parents=True, exist_ok=True)
    lock = self.file(LOCK)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
      try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
      except BlockingIOError:
        holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
        raise WorkdirBusy(
          f"{self.path} is in use by {holder}: wait for that run to end, or choose another --workdir"
        ) from None
      os.ftruncate(fd, 0)
      os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}".encode(), 0)
      try:
        yield
      finally:
        if created and [p.name for p in self.path.iterdir()] == [LOCK]:
          lock.unlink()
          self.path.rmdir()
    finally:
      os.close(fd)

  def check(self, config: config_dict.ConfigDict, *, overwrite: bool) -> str:
    """What running `config` here would do, without changing anything.

    Returns:
      "finished" when it holds this config's finished run, "resume" when it holds this config's
      unfinished run (or one of fewer `train.epochs`, not finished), "extend" when it holds this
      config's finished run of fewer `train.epochs` (it goes on from its latest checkpoint), "new"
      otherwise (empty, or to be cleared: `overwrite` starts over).

    Raises:
      ConfigError: it holds a run of another config and `overwrite` is false.
    """
    if overwrite:
      return "new"
    stored = self.stored_config()
    if stored is None:
      return "new"
    old, new = _run_fields(stored), _run_fields(config_to_json(config))
    changes = _differences(old, new)
    if not changes:
      return "finished" if self.file(RESULTS).is_file() else "resume"
    # Only more epochs: the same run, gone on from its last checkpoint.
    old_epochs, new_epochs = old["train"].pop("epochs", None), new["train"].pop("epochs", None)
    if (
      not _differences(old, new)
      and None not in (old_epochs, new_epochs)
      and new_epochs > old_epochs
    ):
      return "extend" if self.file(RESULTS).is_file() else "resume"
    raise ConfigError(
      f"{self.path} holds a run with another config ({'; '.join(changes[:5])}"
      f"{'; ...' if len(changes) > 5 else ''}): choose another --workdir or pass --overwrite"
    )

  def claim(self, config: config_dict.ConfigDict, *, overwrite: bool) -> str:
    """`check`, then with `overwrite` the previous run's outputs removed; call it holding the lock."""
    state = self.check(config, overwrite=overwrite)
    if overwrite and any(self.file(name).exists() for name in RUN_OUTPUTS):
      log.warning("--overwrite: removing the previous run's outputs in %s", self.path)
      self.clear()
    if state == "extend":
      log.info(
        "%s: train.epochs grew from %d to %d: the finished run goes on from its last checkpoint",
        self.path,
        self.stored_config()["train"]["epochs"],
        config.train.epochs,
      )
      self._unfinish()
    return state

  @_process_zero_writes
  def _unfinish(self) -> None:
    self.file(RESULTS).unlink()

  @_process_zero_writes
  def remove_leftovers(self) -> None:
    """Temporary files of writes that a crash interrupted (the files they were for are whole)."""
    for tmp in self.path.glob(".*.tmp"):
      tmp.unlink()

  @_process_zero_writes
  def clear(self) -> None:
    for name in RUN_OUTPUTS:
      target = self.file(name)
      if target.is_dir():
        shutil.rmtree(target)
      elif target.exists():
        target.unlink()

  @_process_zero_writes
  def start(self, config: config_dict.ConfigDict) -> None:
    self.path.mkdir(parents=True, exist_ok=True)
    write_json(self.file(CONFIG), config_to_json(config))

  @_process_zero_writes
  def save_split(self, split: protocol.Split) -> None:
    split.save(self.file(protocol.SPLIT_FILE))

  def append_metrics(self, record: dict) -> None:
    """Adds one evaluation's record; the file is replaced whole, never left with half a line."""
    self.rewrite_metrics([*self.metrics(), record])

  @_process_zero_writes
  def rewrite_metrics(self, records: list[dict]) -> None:
    """Replaces the metrics with `records` (a resumed run keeps those up to its checkpoint)."""
    with files.atomic_write(self.file(METRICS)) as f:
      f.write("".join(json.dumps(r, sort_keys=True) + "\n" for r in records))

  def metrics(self) -> list[dict]:
    path = self.file(METRICS)
    if not path.is_file():
      return []
    records = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
      try:
        record = json.loads(line)
      except json.JSONDecodeError as e:
        raise damaged(path, f"line {number} is not a JSON record: {e.msg}") from None
      if not isinstance(record, dict) or not isinstance(record.get("epoch"), int):
        raise damaged(path, f"line {number} has no epoch")
      records.append(record)
    return records

  @_process_zero_writes
  def save_ranks(self, user_ids: np.ndarray, ranks: dict[str, dict[str, np.ndarray]]) -> None:
    """Per-user 0-based ranks, compressed: arrays `valid_sampled`, `valid_full`, `test_sampled`,
    `test_full` (and `*_full_rows`, which users the full rankings are of, `evaluation.evaluate`)."""
    flat = {f"{which}_{kind}": r for which, by_kind in ranks.items() for kind, r in by_kind.items()}
    with files.atomic_write(self.file(RANKS), "wb") as f:
      np.savez_compressed(f, user_ids=np.asarray(user_ids, dtype=str), **flat)

  @_process_zero_writes
  def finish(self, results: dict) -> None:
    write_json(self.file(RESULTS), results)
