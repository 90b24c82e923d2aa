"""Runs dmf_jax from the command line.

  python launch.py --config=configs/default.py --workdir=runs/ml100k [--config.model.name=itempop]
  python launch.py --config=configs/default.py --mode=config   # every config field and its value
  python launch.py --workdir=runs/ml100k --mode=recommend --user=196

Any config field can be set with --config.<section>.<field>=VALUE; configs/README.md says what
each config file runs.

All logic lives in the `dmf_jax` package; this file parses flags and reports user errors as one line.
"""

import logging
import os
import re
import signal
import sys

import jax
from absl import app, flags
from ml_collections import config_flags

import dmf_jax
from dmf_jax import experiment, sweep, workdir
from dmf_jax.errors import UserError

_CONFIG = config_flags.DEFINE_config_file(
  "config", None, "A config file with get_config(); fields can be overridden.", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Folder for the run's outputs.")
_OVERWRITE = flags.DEFINE_bool(
  "overwrite",
  False,
  "Start the run in --workdir over: remove what an earlier run (of any config) left there.",
)
_MODE = flags.DEFINE_enum(
  "mode",
  "train",
  ["train", "recommend", "export", "config"],
  "train: run --config in --workdir. recommend: print the top --k items for --user or --ratings "
  "from the finished run in --workdir. export: write vectors.npz and topk.csv into --workdir. "
  "config: print --config's fields with their values (overrides applied), and a sweep's members.",
)
_USER = flags.DEFINE_string("user", None, "recommend: a known user's raw id.")
_RATINGS = flags.DEFINE_string(
  "ratings", None, "recommend: a new user's ratings as ITEM:RATING,ITEM:RATING,..."
)
_DATA_ROOT = flags.DEFINE_string(
  "data_root",
  None,
  "recommend and export: the folder that now holds the run's data file, if it has moved since "
  "training (for ml100k, ml1m and amusic, the folder that holds the data set's directory).",
)
_K = flags.DEFINE_integer("k", 10, "recommend and export: how many items per user.", lower_bound=1)
_DISTRIBUTED = flags.DEFINE_bool(
  "distributed",
  False,
  "Join a multi-process run (jax.distributed.initialize, docs/SCALE.md). The three flags below "
  "default to $JAX_COORDINATOR_ADDRESS, or to what JAX detects on TPU pods, SLURM and Open MPI.",
)
_COORDINATOR = flags.DEFINE_string(
  "coordinator_address", None, "--distributed: host:port of process 0."
)
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "--distributed: how many processes.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "--distributed: this process's index.")


def _parse_flags(argv):
  """Parses flags; a bad flag or config override ends in one line on stderr, not a traceback."""
  # ml_collections appends a repeated tuple override to the first one, where a user means the last
  # to win, as it does for every other field: refuse the repeat instead.
  tuple_overrides = [
    name
    for name, _, value in (a.partition("=") for a in argv[1:] if a.startswith("--config."))
    if value.lstrip().startswith(("(", "["))
  ]
  repeated = sorted({name for name in tuple_overrides if tuple_overrides.count(name) > 1})
  if repeated:
    print(f"error: {repeated[0]} is given more than once: give a tuple once", file=sys.stderr)
    sys.exit(2)
  if any(arg in ("--help", "-h", "-?", "--helpshort") for arg in argv[1:]):
    app.usage(shorthelp=True, writeto_stdout=True, exitcode=0)  # absl's own exits 1
  try:
    return flags.FLAGS(argv)
  except Exception as e:  # absl and ml_collections raise several types for one bad flag.
    message = str(e).replace("\\n", " ").replace("\\'", "'").replace("\n", " ")
    if message[:1] in "'\"" and message[-1:] == message[:1]:
      message = message[1:-1]
    unknown = re.match(r"'?(\w+)'? (Did you mean.*)", message)
    if isinstance(e, (AttributeError, KeyError)) and unknown:
      culprit = [a for a in argv[1:] if a.startswith("--config.") and unknown.group(1) in a]
      message = f"{' '.join(culprit) or unknown.group(1)}: no such config field. {unknown.group(2)}"
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def _parse_ratings(text: str) -> dict[str, float]:
  ratings = {}
  for pair in text.split(","):
    item, sep, rating = pair.strip().rpartition(":")
    try:
      value = float(rating)
    except ValueError:
      sep = ""
    if not sep or not item:
      raise UserError(f"--ratings: {pair!r} is not ITEM:RATING (e.g. --ratings=50:5,172:4)")
    if item in ratings:
      raise UserError(f"--ratings: item {item!r} is rated twice")
    ratings[item] = value
  return ratings


def _serve():
  logging.getLogger().setLevel(logging.WARNING)  # stdout carries the answer; keep stderr quiet
  if not _WORKDIR.value:
    raise UserError(f"--mode={_MODE.value} needs --workdir, the folder of a finished run")
  model = dmf_jax.load(_WORKDIR.value, data_root=_DATA_ROOT.value)
  if _MODE.value == "export":
    for path in model.export(_WORKDIR.value, k=_K.value):
      print(path)
    return
  if (_USER.value is None) == (_RATINGS.value is None):
    raise UserError("--mode=recommend needs exactly one of --user and --ratings")
  if _USER.value is not None:
    recommendations = model.recommend([_USER.value], k=_K.value)[0]
  else:
    recommendations = model.recommend_for_ratings(_parse_ratings(_RATINGS.value), k=_K.value)
  for r in recommendations:
    print(f"{r.rank}\t{r.item}\t{r.score:.6f}\t{r.title}")


def _print_config(config, sweep_fn) -> None:
  print(config, end="")
  if sweep_fn is not None:
    members = sweep.collect(sweep_fn, config)
    print(f"sweep: {len(members)} members x {config.sweep.num_seeds} seeds")
    for overrides in members:
      print(f"  {sweep.member_name(overrides)}")


def _drop_orbax_thread_errors(record: logging.LogRecord) -> bool:
  return not (record.levelno >= logging.ERROR and f"orbax{os.sep}checkpoint" in record.pathname)


def _drop_closed_loop_callbacks(unraisable) -> None:
  """Tensorstore's writes still in flight when a failed save closed orbax's event loop report
  that the loop is closed; the save's own error is the one the run reports."""
  if not (
    unraisable.exc_type is RuntimeError and str(unraisable.exc_value) == "Event loop is closed"
  ):
    sys.__unraisablehook__(unraisable)


def _stop_now(signum, frame):
  """Ctrl-C and SIGTERM: every file of a run is whole at any moment (as after `kill -9`), so the
  run stops at once, saying where it will resume from."""
  _exit_with(f"\nerror: interrupted; {_where_to_resume()}", 130)  # below a progress bar


def main(argv):
  for stop in (signal.SIGINT, signal.SIGTERM):
    signal.signal(stop, _stop_now)
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  logging.getLogger().setLevel(logging.INFO)
  # Orbax and JAX log every checkpoint and backend probe through absl at INFO; keep warnings only.
  for noisy in ("absl", "jax._src.xla_bridge"):
    logging.getLogger(noisy).setLevel(logging.WARNING)
  # Orbax reads and writes a checkpoint's arrays in worker threads and asyncio tasks; when one
  # fails, the error reaches the run (one `error:` line), and the threads and asyncio also log their
  # copies of it with tracebacks.
  logging.getLogger("asyncio").setLevel(logging.CRITICAL)
  logging.getLogger("absl").addFilter(_drop_orbax_thread_errors)
  sys.unraisablehook = _drop_closed_loop_callbacks
  if _DISTRIBUTED.value:
    jax.distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  try:
    if _MODE.value in ("recommend", "export"):
      return _serve()
    config = _CONFIG.value
    if config is None:
      raise UserError("--config is required, e.g. --config=configs/default.py")
    try:
      config.to_dict()
    except OSError as e:  # ml_collections defers a config file's load error to first use.
      raise UserError(f"cannot load --config: {str(e).strip().splitlines()[-1].strip()}") from None
    sweep_fn = sweep.sweep_function(config_flags.get_config_filename(flags.FLAGS["config"]))
    if _MODE.value == "config":
      return _print_config(config, sweep_fn)
    if not _WORKDIR.value:
      raise UserError("--workdir is required: the folder for the run's outputs")
    if sweep_fn is None:
      experiment.train_and_evaluate(config, _WORKDIR.value, overwrite=_OVERWRITE.value)
    else:
      sweep.run(config, sweep_fn, _WORKDIR.value, overwrite=_OVERWRITE.value)
  except UserError as e:
    _exit_with(f"error: {e}", 2)
  except OSError as e:  # the machine's fault (disk full, read-only, file-size limit): one line
    _exit_with(f"error: {e.filename or _WORKDIR.value}: {e.strerror or e}", 1)


def _exit_with(line: str, code: int) -> None:
  """Prints the one line and exits at once. Every file of a run is whole (written through a rename,
  or an orbax checkpoint that counts once committed), so nothing waits on the background threads of
  orbax and tensorstore, which a failed or interrupted call can leave to print at exit."""
  sys.stdout.flush()
  sys.stderr.flush()
  stderr = os.dup(2)
  os.dup2(os.open(os.devnull, os.O_WRONLY), 2)  # threads still winding down print nowhere
  os.write(stderr, (line + "\n").encode())
  os._exit(code)


def _where_to_resume() -> str:
  """Where an interrupted call goes on from."""
  if _MODE.value != "train" or not _WORKDIR.value:
    return "nothing was changed"
  return workdir.where_to_resume(_WORKDIR.value)


if __name__ == "__main__":
  app.run(main, flags_parser=_parse_flags)
