"""Errors caused by the user's input rather than by a bug.

`launch.py` prints the message of a `UserError` as one line and exits non-zero without a traceback;
every other exception is a bug and keeps its traceback.
"""


class UserError(Exception):
  """Bad input from the user: a data file, a config value or a command-line argument."""


class DataError(UserError):
  """A data file that is missing or malformed; the message names the file (and line or column)."""


class ConfigError(UserError):
  """A config value out of range or inconsistent with the data or the workdir."""
