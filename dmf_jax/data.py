"""Rating data sets, loaded into one in-memory form.

Every loader returns an `Interactions`: one row per (user, item) pair in file order, users and items
as dense 0-based indices with maps back to the raw ids (kept as strings), ratings, timestamps and,
where the data set has them, item titles. A pair rated more than once keeps its latest rating (by
timestamp, then by file order); the number of dropped rows is reported.

Files are looked up under `data.root`, else `$DMF_DATA_DIR`, else `~/.cache/dmf_jax/data`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import pathlib

import numpy as np
import pandas as pd

from dmf_jax.errors import DataError

log = logging.getLogger(__name__)

DATA_DIR_ENV = "DMF_DATA_DIR"


@dataclasses.dataclass(frozen=True)
class Interactions:
  """A rating data set after de-duplication, in file order.

  Attributes:
    name: the `data.name` it was loaded as.
    users: int32[R], user index of each rating.
    items: int32[R], item index of each rating.
    ratings: float32[R], explicit ratings (positive).
    timestamps: int64[R], or None when the data set has no time column.
    user_ids: str[M], raw id of each user index.
    item_ids: str[N], raw id of each item index.
    item_titles: str[N], titles ("" where unknown), or None when the data set has none.
    sha256: checksum of the ratings file, which keys cached splits.
    path: the ratings file.
    duplicates_dropped: rows dropped because a later row rated the same pair.
  """

  name: str
  users: np.ndarray
  items: np.ndarray
  ratings: np.ndarray
  timestamps: np.ndarray | None
  user_ids: np.ndarray
  item_ids: np.ndarray
  item_titles: np.ndarray | None
  sha256: str
  path: pathlib.Path
  duplicates_dropped: int = 0

  @property
  def num_users(self) -> int:
    return len(self.user_ids)

  @property
  def num_items(self) -> int:
    return len(self.item_ids)

  @property
  def num_ratings(self) -> int:
    return len(self.ratings)

  @property
  def density(self) -> float:
    return self.num_ratings / (self.num_users * self.num_items)

  @property
  def max_rating(self) -> float:
    return float(self.ratings.max())

  def statistics(self) -> dict:
    return {
      "users": self.num_users,
      "items": self.num_items,
      "ratings": self.num_ratings,
      "density": round(self.density, 6),
      "sha256": self.sha256,
    }


def data_root(root: str | None) -> pathlib.Path:
  """The folder data sets are read from: `root`, else `$DMF_DATA_DIR`, else the user's cache."""
  if root:
    return pathlib.Path(root).expanduser()
  if os.environ.get(DATA_DIR_ENV):
    return pathlib.Path(os.environ[DATA_DIR_ENV]).expanduser()
  cache = os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache"
  return pathlib.Path(cache) / "dmf_jax" / "data"


def sha256_of(path: pathlib.Path) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


def _natural_order(raw_ids: np.ndarray) -> np.ndarray:
  """Unique raw ids, numerically sorted when they are all integers, else lexicographically."""
  unique = np.unique(raw_ids)
  if all(s.lstrip("-").isdigit() for s in unique):
    unique = unique[np.argsort([int(s) for s in unique], kind="stable")]
  return unique


def _index_of(ordered_ids: np.ndarray, raw: np.ndarray) -> np.ndarray:
  lookup = pd.Index(ordered_ids)
  return lookup.get_indexer(raw).astype(np.int32)


def _numeric(column: pd.Series, what: str, path: pathlib.Path, first_line: int) -> np.ndarray:
  """Parses a column of strings as float64, naming the first bad line of the file."""
  values = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64)
  bad = np.flatnonzero(~np.isfinite(values))
  if bad.size:
    row = bad[0]
    raise DataError(
      f"{path}, line {row + first_line}: {what} {column.iloc[row]!r} is not a finite number"
    )
  return values


def read_delimited(
  path: pathlib.Path,
  *,
  sep: str,
  header: bool,
  columns: dict[str, str | int],
  encoding: str = "utf-8",
) -> pd.DataFrame:
  """Reads a delimited ratings file into string columns user, item, rating[, timestamp].

  Args:
    path: the file.
    sep: the field separator (a single character or a regular expression).
    header: whether the first line names the columns.
    columns: output column -> source column, by name (with a header) or 0-based position (without).
      `user` and `item` are required; `rating` and `timestamp` optional.
    encoding: the file's text encoding.

  Raises:
    DataError: the file is missing, unreadable, has too few columns or lacks a named column.
  """
  if not path.is_file():
    raise DataError(f"{path}: file not found")
  try:
    frame = pd.read_csv(
      path,
      sep=sep,
      header=0 if header else None,
      dtype=str,
      keep_default_na=False,
      encoding=encoding,
      engine="c" if len(sep) == 1 else "python",
      skip_blank_lines=True,
    )
  except pd.errors.EmptyDataError:
    raise DataError(f"{path}: the file is empty") from None
  except pd.errors.ParserError as e:
    raise DataError(f"{path}: cannot parse with separator {sep!r}: {e}") from None
  except UnicodeDecodeError as e:
    raise DataError(f"{path}: not {encoding} text ({e.reason} at byte {e.start})") from None
  selected = {}
  for out, source in columns.items():
    if header:
      if source not in frame.columns:
        raise DataError(
          f"{path}: no column named {source!r} for {out} (columns: {', '.join(map(str, frame.columns))})"
        )
      selected[out] = frame[source]
    else:
      if int(source) >= frame.shape[1]:
        raise DataError(
          f"{path}: {out} is column {source} but lines have {frame.shape[1]} column(s) with "
          f"separator {sep!r}"
        )
      selected[out] = frame.iloc[:, int(source)]
  return pd.DataFrame(selected)


def from_frame(
  frame: pd.DataFrame,
  *,
  name: str,
  path: pathlib.Path,
  first_line: int,
  titles: dict[str, str] | None = None,
) -> Interactions:
  """Builds `Interactions` from string columns user, item, and optionally rating and timestamp.

  Args:
    frame: one row per rating in file order, as `read_delimited` returns it.
    name: the data set's `data.name`.
    path: the ratings file, named in messages and hashed for the split cache.
    first_line: the file's line number of the frame's first row (2 after a header), for messages.
    titles: raw item id -> title, for data sets that have them.

  Raises:
    DataError: no rows, or a rating that is not a positive number, or a non-numeric timestamp.
  """
  if len(frame) == 0:
    raise DataError(f"{path}: no ratings found (the file is empty or has only a header)")
  if "rating" in frame.columns:
    ratings = _numeric(frame["rating"], "rating", path, first_line)
    # A zero would read as "unknown" in Y (Eq. 2), so only positive ratings are ratings.
    bad = np.flatnonzero(ratings <= 0)
    if bad.size:
      raise DataError(
        f"{path}, line {bad[0] + first_line}: rating {frame['rating'].iloc[bad[0]]!r} is not "
        "positive (0 means unknown in Y)"
      )
  else:
    ratings = np.ones(len(frame))
  has_time = "timestamp" in frame.columns
  table = pd.DataFrame(
    {"user": frame["user"].to_numpy(dtype=str), "item": frame["item"].to_numpy(dtype=str)}
  )
  table["rating"] = ratings
  if has_time:
    table["timestamp"] = _numeric(frame["timestamp"], "timestamp", path, first_line)
  table["row"] = np.arange(len(table))
  order = ["timestamp", "row"] if has_time else ["row"]
  latest = table.sort_values(order, kind="stable").drop_duplicates(["user", "item"], keep="last")
  table = latest.sort_values("row", kind="stable")
  dropped = len(frame) - len(table)
  if dropped:
    log.info("%s: %d repeated (user, item) rows dropped, keeping each pair's latest", path, dropped)

  user_raw = table["user"].to_numpy(dtype=str)
  item_raw = table["item"].to_numpy(dtype=str)
  user_ids = _natural_order(user_raw)
  item_ids = _natural_order(item_raw)
  item_titles = None
  if titles is not None:
    item_titles = np.array([titles.get(i, "") for i in item_ids], dtype=object)
  return Interactions(
    name=name,
    users=_index_of(user_ids, user_raw),
    items=_index_of(item_ids, item_raw),
    ratings=table["rating"].to_numpy(dtype=np.float32),
    timestamps=table["timestamp"].to_numpy(dtype=np.int64) if has_time else None,
    user_ids=user_ids,
    item_ids=item_ids,
    item_titles=item_titles,
    sha256=sha256_of(path),
    path=path,
    duplicates_dropped=dropped,
  )


_POSITIONAL = {"user": 0, "item": 1, "rating": 2, "timestamp": 3}


def load_ml100k(data_config) -> Interactions:
  """MovieLens 100K: `ml-100k/u.data` (tab separated) with titles from `u.item` (latin-1)."""
  folder = data_root(data_config.root) / "ml-100k"
  path = folder / "u.data"
  frame = read_delimited(path, sep="\t", header=False, columns=_POSITIONAL)
  titles = None
  item_file = folder / "u.item"
  if item_file.is_file():
    items = read_delimited(
      item_file, sep="|", header=False, columns={"item": 0, "title": 1}, encoding="latin-1"
    )
    titles = dict(zip(items["item"], items["title"], strict=True))
  return from_frame(frame, name="ml100k", path=path, first_line=1, titles=titles)


def load_amusic(data_config) -> Interactions:
  """The DMF authors' pruned Amazon Digital Music file (space separated, no titles)."""
  path = data_root(data_config.root) / "amazon-music" / "Amazon_ratings_Digital_Music_pruned.txt"
  frame = read_delimited(path, sep=" ", header=False, columns=_POSITIONAL)
  return from_frame(frame, name="amusic", path=path, first_line=1)


LOADERS = {
  "ml100k": load_ml100k,
  "amusic": load_amusic,
}


def load(data_config) -> Interactions:
  """Loads the data set `data_config.name` (see `LOADERS`)."""
  loader = LOADERS.get(data_config.name)
  if loader is None:
    raise DataError(
      f"data.name={data_config.name!r} is not a known data set (choose from {', '.join(LOADERS)})"
    )
  data = loader(data_config)
  log.info(
    "%s: %d users, %d items, %d ratings (density %.5f) from %s",
    data.name,
    data.num_users,
    data.num_items,
    data.num_ratings,
    data.density,
    data.path,
  )
  return data
