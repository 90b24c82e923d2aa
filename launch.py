"""Runs dmf_jax from the command line.

  python launch.py --config=configs/default.py --workdir=runs/ml100k [--config.model.name=itempop]

All logic lives in the `dmf_jax` package; this file parses flags and reports user errors as one line.
"""

import logging
import re
import sys

from absl import app, flags
from ml_collections import config_flags

from dmf_jax import experiment
from dmf_jax.errors import UserError

_CONFIG = config_flags.DEFINE_config_file(
  "config", None, "A config file with get_config(); fields can be overridden.", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Folder for the run's outputs.")
_OVERWRITE = flags.DEFINE_bool(
  "overwrite", False, "Replace a workdir's run made with a different config."
)


def _parse_flags(argv):
  """Parses flags; a bad flag or config override ends in one line on stderr, not a traceback."""
  try:
    return flags.FLAGS(argv)
  except Exception as e:  # absl and ml_collections raise several types for one bad flag.
    message = str(e).replace("\\n", " ").replace("\\'", "'").replace("\n", " ")
    if message[:1] in "'\"" and message[-1:] == message[:1]:
      message = message[1:-1]
    unknown = re.match(r"'?([\w]+)'? Did you mean", message)
    if isinstance(e, (AttributeError, KeyError)) and unknown:
      culprit = [a for a in argv[1:] if a.startswith("--config.") and unknown.group(1) in a]
      message = f"{' '.join(culprit) or unknown.group(1)}: no such config field. {message[unknown.end() - 12 :]}"
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  logging.getLogger().setLevel(logging.INFO)
  try:
    config = _CONFIG.value
    if config is None:
      raise UserError("--config is required, e.g. --config=configs/default.py")
    try:
      config.to_dict()
    except OSError as e:  # ml_collections defers a config file's load error to first use.
      raise UserError(f"cannot load --config: {str(e).strip().splitlines()[-1].strip()}") from None
    if not _WORKDIR.value:
      raise UserError("--workdir is required: the folder for the run's outputs")
    experiment.train_and_evaluate(config, _WORKDIR.value, overwrite=_OVERWRITE.value)
  except UserError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
  app.run(main, flags_parser=_parse_flags)
