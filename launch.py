"""Runs dmf_jax from the command line.

  python launch.py --config=configs/default.py --workdir=runs/ml100k [--config.model.name=itempop]

All logic lives in the `dmf_jax` package; this file parses flags and reports user errors as one line.
"""

import logging
import re
import sys

import jax
from absl import app, flags
from ml_collections import config_flags

import dmf_jax
from dmf_jax import experiment, sweep
from dmf_jax.errors import UserError

_CONFIG = config_flags.DEFINE_config_file(
  "config", None, "A config file with get_config(); fields can be overridden.", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Folder for the run's outputs.")
_OVERWRITE = flags.DEFINE_bool(
  "overwrite", False, "Replace a workdir's run made with a different config."
)
_MODE = flags.DEFINE_enum(
  "mode",
  "train",
  ["train", "recommend", "export"],
  "train: run --config in --workdir. recommend: print the top --k items for --user or --ratings "
  "from the finished run in --workdir. export: write vectors.npz and topk.csv into --workdir.",
)
_USER = flags.DEFINE_string("user", None, "recommend: a known user's raw id.")
_RATINGS = flags.DEFINE_string(
  "ratings", None, "recommend: a new user's ratings as ITEM:RATING,ITEM:RATING,..."
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
      ratings[item] = float(rating)
    except ValueError:
      sep = ""
    if not sep or not item:
      raise UserError(f"--ratings: {pair!r} is not ITEM:RATING (e.g. --ratings=50:5,172:4)")
  return ratings


def _serve():
  logging.getLogger().setLevel(logging.WARNING)  # stdout carries the answer; keep stderr quiet
  if not _WORKDIR.value:
    raise UserError(f"--mode={_MODE.value} needs --workdir, the folder of a finished run")
  model = dmf_jax.load(_WORKDIR.value)
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


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  logging.getLogger().setLevel(logging.INFO)
  # Orbax and JAX log every checkpoint and backend probe through absl at INFO; keep warnings only.
  for noisy in ("absl", "jax._src.xla_bridge"):
    logging.getLogger(noisy).setLevel(logging.WARNING)
  if _DISTRIBUTED.value:
    jax.distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  try:
    if _MODE.value != "train":
      return _serve()
    config = _CONFIG.value
    if config is None:
      raise UserError("--config is required, e.g. --config=configs/default.py")
    try:
      config.to_dict()
    except OSError as e:  # ml_collections defers a config file's load error to first use.
      raise UserError(f"cannot load --config: {str(e).strip().splitlines()[-1].strip()}") from None
    if not _WORKDIR.value:
      raise UserError("--workdir is required: the folder for the run's outputs")
    sweep_fn = sweep.sweep_function(config_flags.get_config_filename(flags.FLAGS["config"]))
    if sweep_fn is None:
      experiment.train_and_evaluate(config, _WORKDIR.value, overwrite=_OVERWRITE.value)
    else:
      sweep.run(config, sweep_fn, _WORKDIR.value, overwrite=_OVERWRITE.value)
  except UserError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
  app.run(main, flags_parser=_parse_flags)
