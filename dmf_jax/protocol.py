"""Leave-one-out protocol (paper Section 4.1): held-out items and evaluation candidates.

- Test item: each user's latest interaction by timestamp. Ties at the latest timestamp are common
  (415 of ML-100k's 943 users, 173 of Amazon Music's 844); the row that comes later in the file wins.
  Without timestamps the test item is drawn at random with the split seed.
- Validation item: one more interaction per user, drawn at random (`eval.validation=random`, as the
  paper tuned) or the latest remaining one (`latest`); it is used for model selection only.
- Users with fewer than 3 interactions keep all of them in training and are not evaluated.
- Both held-out pairs are removed from the training data that every model sees.
- Candidates: the held-out item in column 0, then `eval.num_negatives` distinct items drawn uniformly
  from the items the user never rated anywhere in the data.

`data.split_seed` alone drives the split and candidates. A split is saved in every workdir and in a
cache keyed by the loaded data and the protocol settings, so all models see the same candidates.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import pathlib
import zipfile

import numpy as np

from dmf_jax import files, sparse
from dmf_jax.data import Interactions
from dmf_jax.errors import ConfigError, DataError, UserError

log = logging.getLogger(__name__)

SPLIT_FILE = "split.npz"
VALIDATION_MODES = ("random", "latest")


@dataclasses.dataclass(frozen=True)
class Split:
  """Training interactions and, per evaluated user, held-out items and candidates.

  Candidate arrays are int32[E, 1 + num_negatives] with the held-out item in column 0.
  """

  key: str
  num_users: int
  num_items: int
  train_users: np.ndarray
  train_items: np.ndarray
  train_ratings: np.ndarray
  eval_users: np.ndarray
  valid_items: np.ndarray
  test_items: np.ndarray
  valid_candidates: np.ndarray
  test_candidates: np.ndarray

  def train_matrix(self, implicit: bool = False) -> sparse.CSR:
    """Training Y by users: Eq. 2 (ratings) or, with `implicit`, Eq. 1 (ones)."""
    values = np.ones_like(self.train_ratings) if implicit else self.train_ratings
    return sparse.CSR.from_coo(
      self.train_users, self.train_items, values, (self.num_users, self.num_items)
    )

  def save(self, path: pathlib.Path) -> None:
    _atomic_savez(path, **dataclasses.asdict(self))

  @classmethod
  def load(cls, path: pathlib.Path) -> Split:
    """The split saved in `path`.

    Raises:
      DamagedSplit: the file is not a whole split (truncated, overwritten, of another layout).
    """
    try:
      with open(path, "rb") as file, np.load(file) as f:
        fields = {k: f[k] for k in f.files}
      fields["key"] = str(fields["key"])
      fields["num_users"] = int(fields["num_users"])
      fields["num_items"] = int(fields["num_items"])
      return cls(**fields)
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as e:
      raise DamagedSplit(f"{path}: not a whole split file ({type(e).__name__}: {e})") from None


class DamagedSplit(UserError):
  """A split file that cannot be read."""


def _atomic_savez(path: pathlib.Path, **arrays) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  with files.atomic_write(path, "wb") as f:
    np.savez(f, **arrays)


def split_key(data: Interactions, split_seed: int, validation: str, num_negatives: int) -> str:
  """A digest of the loaded interactions and the protocol settings."""
  digest = hashlib.sha256()
  for array in (data.users, data.items, data.timestamps if data.timestamps is not None else []):
    digest.update(np.ascontiguousarray(array).tobytes())
  settings = {"seed": split_seed, "validation": validation, "negatives": num_negatives}
  digest.update(json.dumps(settings, sort_keys=True).encode())
  return digest.hexdigest()[:24]


def _sample_unrated(rng, rated_sorted: np.ndarray, num_items: int, count: int) -> np.ndarray:
  """`count` distinct items outside `rated_sorted`, uniformly, without building the complement."""
  # Below the k-th rated item lie gaps[k] unrated items; the p-th unrated item (0-based) is
  # p plus the number of rated items whose gap count is <= p.
  gaps = rated_sorted - np.arange(len(rated_sorted))
  positions = rng.choice(num_items - len(rated_sorted), size=count, replace=False)
  return (positions + np.searchsorted(gaps, positions, side="right")).astype(np.int32)


def make_split(
  data: Interactions, *, split_seed: int, validation: str, num_negatives: int
) -> Split:
  """Builds the leave-one-out split of `data` (see the module docstring)."""
  if validation not in VALIDATION_MODES:
    raise ConfigError(
      f"eval.validation={validation!r}: choose one of {', '.join(VALIDATION_MODES)}"
    )
  if num_negatives < 1:
    raise ConfigError(f"eval.num_negatives={num_negatives}: must be at least 1")
  rng = np.random.default_rng(split_seed)
  rows = np.arange(data.num_ratings)
  if data.timestamps is None:
    log.info("%s has no timestamps: test and validation items are drawn at random", data.name)
    order = np.lexsort((rows, data.users))
  else:
    order = np.lexsort((rows, data.timestamps, data.users))
  counts = np.bincount(data.users, minlength=data.num_users)
  starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
  eval_users = np.flatnonzero(counts >= 3).astype(np.int32)
  skipped = data.num_users - len(eval_users)
  if not len(eval_users):
    raise DataError(f"{data.path}: no user has the 3 interactions needed to hold out two of them")
  if skipped:
    log.info("%d users with fewer than 3 interactions are trained on but not evaluated", skipped)

  first, count = starts[eval_users], counts[eval_users]
  if data.timestamps is None:
    test_pos = first + rng.integers(0, count)
  else:
    test_pos = first + count - 1
  if validation == "latest" and data.timestamps is not None:
    valid_pos = first + count - 2
  else:
    # A random one of the user's other interactions: skip over the test position.
    offset = rng.integers(0, count - 1)
    valid_pos = first + offset + (first + offset >= test_pos)
  test_rows, valid_rows = order[test_pos], order[valid_pos]
  held_out = np.zeros(data.num_ratings, bool)
  held_out[test_rows] = held_out[valid_rows] = True

  rated = sparse.CSR.from_coo(
    data.users, data.items, data.ratings, (data.num_users, data.num_items)
  )
  candidates = {"valid": [], "test": []}
  for user, valid_item, test_item in zip(
    eval_users, data.items[valid_rows], data.items[test_rows], strict=True
  ):
    rated_items = rated.indices[rated.indptr[user] : rated.indptr[user + 1]]
    unrated = data.num_items - len(rated_items)
    if unrated < num_negatives:
      raise ConfigError(
        f"user {data.user_ids[user]} has rated all but {unrated} of {data.num_items} items; "
        f"eval.num_negatives={num_negatives} needs at least that many unrated items"
      )
    for which, held in (("valid", valid_item), ("test", test_item)):
      negatives = _sample_unrated(rng, rated_items, data.num_items, num_negatives)
      candidates[which].append(np.concatenate([[held], negatives]))

  return Split(
    key=split_key(data, split_seed, validation, num_negatives),
    num_users=data.num_users,
    num_items=data.num_items,
    train_users=data.users[~held_out],
    train_items=data.items[~held_out],
    train_ratings=data.ratings[~held_out],
    eval_users=eval_users,
    valid_items=data.items[valid_rows],
    test_items=data.items[test_rows],
    valid_candidates=np.asarray(candidates["valid"], np.int32),
    test_candidates=np.asarray(candidates["test"], np.int32),
  )


def split_cache_dir() -> pathlib.Path:
  cache = os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache"
  return pathlib.Path(cache) / "dmf_jax" / "splits"


def _holds_split(path: pathlib.Path, key: str) -> bool:
  """Whether `path` holds the split `key`; a damaged file is said so, removed and rebuilt."""
  if not path.is_file():
    return False
  try:
    return Split.load(path).key == key
  except DamagedSplit as e:
    log.warning("%s; it is rebuilt", e)
    path.unlink()
    return False


def get_split(
  data: Interactions,
  *,
  split_seed: int,
  validation: str,
  num_negatives: int,
  workdir: pathlib.Path | None,
) -> Split:
  """The split for these settings: from the workdir, else the cache, else made and saved to both."""
  key = split_key(data, split_seed, validation, num_negatives)
  cached = split_cache_dir() / f"{data.name}-{key}.npz"
  local = workdir / SPLIT_FILE if workdir is not None else None
  stored = [p for p in (local, cached) if p is not None and _holds_split(p, key)]
  if stored:
    split = Split.load(stored[0])
    log.info("split %s reused from %s", key, stored[0])
  else:
    split = make_split(
      data, split_seed=split_seed, validation=validation, num_negatives=num_negatives
    )
    log.info(
      "split %s: %d training ratings, %d users evaluated on 1 + %d candidates",
      key,
      len(split.train_items),
      len(split.eval_users),
      num_negatives,
    )
  for path in (local, cached):
    if path is not None and path not in stored:
      split.save(path)
  return split
