"""Rating data sets, loaded into one in-memory form.

Every loader returns an `Interactions`: one row per (user, item) pair in file order, users and items
as dense 0-based indices with maps back to the raw ids (kept as strings), ratings, timestamps and,
where the data set has them, item titles. A pair rated more than once keeps its latest rating (by
timestamp, then by file order); the number of dropped rows is reported.

Named data sets are looked up under `data.root`, else `$DMF_DATA_DIR`, else the cache folder
`~/.cache/dmf_jax/data` (under `$XDG_CACHE_HOME` when set). A MovieLens set missing from both the
data folder and the cache is downloaded from GroupLens into the cache and verified by the sha256 of
its ratings file. `csv` and `amazon_csv` read the file `data.path` and never download.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import logging
import os
import pathlib
import re
import tempfile
import urllib.error
import urllib.request
import zipfile

import numpy as np
import pandas as pd
from tqdm import tqdm

from dmf_jax.errors import ConfigError, DataError

log = logging.getLogger(__name__)

DATA_DIR_ENV = "DMF_DATA_DIR"


@dataclasses.dataclass(frozen=True)
class Interactions:
  """A rating data set after de-duplication, in file order.

  Attributes:
    name: the `data.name` it was loaded as.
    users: int32[R], user index of each rating.
    items: int32[R], item index of each rating.
    ratings: float32[R], explicit ratings (positive; all 1 for a file without ratings).
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


def cache_root() -> pathlib.Path:
  """The user's data cache, which receives downloads."""
  cache = os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache"
  return pathlib.Path(cache) / "dmf_jax" / "data"


def data_root(root: str | None) -> pathlib.Path:
  """The folder data sets are read from: `root`, else `$DMF_DATA_DIR`, else the user's cache."""
  if root:
    return pathlib.Path(root).expanduser()
  if os.environ.get(DATA_DIR_ENV):
    return pathlib.Path(os.environ[DATA_DIR_ENV]).expanduser()
  return cache_root()


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
    DataError: the file is missing or unreadable, a line has more fields than the first, or the
      lines have too few columns or lack a named column.
  """
  if path.is_dir():
    raise DataError(f"{path}: is a folder, not a ratings file")
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
    ragged = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(e))
    if ragged:
      expected, line, saw = ragged.groups()
      raise DataError(
        f"{path}, line {line}: {saw} fields where the lines before have {expected} "
        f"(separator {sep!r})"
      ) from None
    raise DataError(f"{path}: cannot parse with separator {sep!r}: {str(e).strip()}") from None
  except UnicodeDecodeError as e:
    raise DataError(f"{path}: not {encoding} text ({e.reason} at byte {e.start})") from None
  except OSError as e:
    raise DataError(f"{path}: cannot read: {e.strerror or e}") from None
  selected = {}
  for out, source in columns.items():
    if header:
      if source not in frame.columns:
        # A wrong separator leaves the whole header in one column.
        hint = f"; only one column with separator {sep!r}" if frame.shape[1] == 1 else ""
        raise DataError(
          f"{path}: no column named {source!r} for {out} "
          f"(columns: {', '.join(map(str, frame.columns))}{hint})"
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
    DataError: no rows, an empty field, a rating that is not a positive number, or a non-numeric
      timestamp.
  """
  if len(frame) == 0:
    raise DataError(f"{path}: no ratings found (the file is empty or has only a header)")
  for column in frame.columns:
    values = frame[column]
    empty = np.flatnonzero((values.isna() | (values == "")).to_numpy())
    if empty.size:
      raise DataError(
        f"{path}, line {empty[0] + first_line}: no {column} (an empty field, or a line with "
        "fewer fields than the ones before)"
      )
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


def filter_min_counts(data: Interactions, *, min_user: int, min_item: int) -> Interactions:
  """Keeps the ratings of users with at least `min_user` and items with at least `min_item`.

  Removing an item can take a user below `min_user` and vice versa, so passes repeat until one
  removes nothing; the result (the largest subset meeting both bounds) does not depend on the order
  of removal. Each pass is logged, the last (which removes nothing) included. Indices are
  renumbered over the survivors, in the same order.

  Raises:
    DataError: no rating survives.
  """
  keep = np.ones(data.num_ratings, bool)
  users_left, items_left = data.num_users, data.num_items
  for pass_number in itertools.count(1):
    user_counts = np.bincount(data.users[keep], minlength=data.num_users)
    item_counts = np.bincount(data.items[keep], minlength=data.num_items)
    drop = keep & ((user_counts[data.users] < min_user) | (item_counts[data.items] < min_item))
    keep &= ~drop
    users_now = np.count_nonzero(np.bincount(data.users[keep], minlength=data.num_users))
    items_now = np.count_nonzero(np.bincount(data.items[keep], minlength=data.num_items))
    log.info(
      "%s: filter pass %d (>= %d ratings per user, >= %d per item) removed %d users, %d items, "
      "%d ratings",
      data.path,
      pass_number,
      min_user,
      min_item,
      users_left - users_now,
      items_left - items_now,
      np.count_nonzero(drop),
    )
    users_left, items_left = users_now, items_now
    if not drop.any():
      break
  if not keep.any():
    raise DataError(
      f"{data.path}: no ratings left after keeping users with >= {min_user} ratings and items "
      f"with >= {min_item} (data.min_user_ratings, data.min_item_ratings)"
    )
  return _subset(data, keep)


def filter_items_then_users(data: Interactions, *, min_item: int, min_user: int) -> Interactions:
  """One pass dropping items with fewer than `min_item` ratings, then one dropping users with
  fewer than `min_user`: the order and passes of the TOIS 2021 study's ML-100k reader
  (Ferrari Dacrema et al., `Movielens100KReader`), so a user may end below `min_user`'s
  item-filtered count only through the first pass."""
  item_counts = np.bincount(data.items, minlength=data.num_items)
  keep = item_counts[data.items] >= min_item
  user_counts = np.bincount(data.users[keep], minlength=data.num_users)
  keep &= user_counts[data.users] >= min_user
  log.info(
    "%s: TOIS 2021 filter (items >= %d, then users >= %d) kept %d of %d ratings",
    data.path,
    min_item,
    min_user,
    np.count_nonzero(keep),
    data.num_ratings,
  )
  if not keep.any():
    raise DataError(f"{data.path}: no ratings left after the TOIS 2021 filter")
  return _subset(data, keep)


def _subset(data: Interactions, keep: np.ndarray) -> Interactions:
  """The ratings where `keep` holds, users and items renumbered over the survivors in order."""
  user_kept = np.bincount(data.users[keep], minlength=data.num_users) > 0
  item_kept = np.bincount(data.items[keep], minlength=data.num_items) > 0
  new_user = (np.cumsum(user_kept) - 1).astype(np.int32)
  new_item = (np.cumsum(item_kept) - 1).astype(np.int32)
  return dataclasses.replace(
    data,
    users=new_user[data.users[keep]],
    items=new_item[data.items[keep]],
    ratings=data.ratings[keep],
    timestamps=data.timestamps[keep] if data.timestamps is not None else None,
    user_ids=data.user_ids[user_kept],
    item_ids=data.item_ids[item_kept],
    item_titles=data.item_titles[item_kept] if data.item_titles is not None else None,
  )


_POSITIONAL = {"user": 0, "item": 1, "rating": 2, "timestamp": 3}


@dataclasses.dataclass(frozen=True)
class MovieLens:
  """A GroupLens archive: a zip whose one top-level folder holds the ratings and titles files."""

  folder: str  # the archive's top-level folder, and the folder under the data root
  ratings: str
  sep: str
  titles: str  # the items file, latin-1
  titles_sep: str
  url: str
  sha256: str | None  # of the ratings file; None where no checksum has been recorded


MOVIELENS = {
  "ml100k": MovieLens(
    folder="ml-100k",
    ratings="u.data",
    sep="\t",
    titles="u.item",
    titles_sep="|",
    url="https://files.grouplens.org/datasets/movielens/ml-100k.zip",
    # From ../shared/data/README.md, checked against its u.data.
    sha256="06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490",
  ),
  "ml1m": MovieLens(
    folder="ml-1m",
    ratings="ratings.dat",
    sep="::",
    titles="movies.dat",
    titles_sep="::",
    url="https://files.grouplens.org/datasets/movielens/ml-1m.zip",
    # Unverified: no published sha256 of ratings.dat was found, and none is guessed here. A download
    # logs the checksum it computed; record it here once checked against an official copy.
    sha256=None,
  ),
}


def _fetch(url: str, target: pathlib.Path) -> None:
  """Downloads `url` to `target` with a progress bar (shown on a terminal only)."""
  with urllib.request.urlopen(url, timeout=60) as response, open(target, "wb") as out:
    total = int(response.headers.get("Content-Length") or 0) or None
    name = url.rsplit("/", 1)[-1]
    with tqdm(total=total, unit="B", unit_scale=True, desc=name, disable=None) as bar:
      for block in iter(lambda: response.read(1 << 20), b""):
        out.write(block)
        bar.update(len(block))


def _download(dataset: MovieLens, data_config, missing: pathlib.Path) -> pathlib.Path:
  """Downloads and unpacks `dataset` into the cache; returns its folder there.

  Everything happens in a temporary folder in the cache, moved into place only once the ratings
  file's checksum matches, so a failed or corrupt download leaves nothing behind.
  """
  url = data_config.download_url or dataset.url
  expected = data_config.download_sha256 or dataset.sha256
  cache = cache_root()
  cache.mkdir(parents=True, exist_ok=True)
  log.info("%s not found: downloading %s into %s", missing, url, cache)
  with tempfile.TemporaryDirectory(dir=cache, prefix=f".{dataset.folder}-download-") as tmp:
    archive = pathlib.Path(tmp) / "archive.zip"
    try:
      _fetch(url, archive)
    except urllib.error.HTTPError as e:
      e.close()  # It holds the server's response open.
      raise DataError(f"{missing}: file not found, and downloading {url} failed: {e}") from None
    except (urllib.error.URLError, OSError, ValueError) as e:
      reason = getattr(e, "reason", e)  # A URLError's reason is the failure underneath.
      raise DataError(
        f"{missing}: file not found, and downloading {url} failed: {reason}"
      ) from None
    unpacked = pathlib.Path(tmp) / "unpacked"
    try:
      with zipfile.ZipFile(archive) as z:
        z.extractall(unpacked)
    except zipfile.BadZipFile:
      raise DataError(f"{url}: not a zip archive; the download was deleted") from None
    ratings = unpacked / dataset.folder / dataset.ratings
    if not ratings.is_file():
      raise DataError(
        f"{url}: the archive has no {dataset.folder}/{dataset.ratings}; the download was deleted"
      )
    actual = sha256_of(ratings)
    if expected is None:
      log.warning(
        "%s: no sha256 recorded for %s, so it is unverified; its sha256 is %s",
        url,
        dataset.ratings,
        actual,
      )
    elif actual != expected:
      raise DataError(
        f"{url}: sha256 of {dataset.folder}/{dataset.ratings} is {actual}, expected {expected}; "
        "the download was deleted"
      )
    target = cache / dataset.folder
    try:
      os.replace(unpacked / dataset.folder, target)
    except OSError:
      # Another run may have unpacked it first; anything else in the way is for the user to clear.
      if not (target / dataset.ratings).is_file():
        raise DataError(
          f"{target}: exists without {dataset.ratings}, so the download cannot be unpacked there; "
          "remove the folder"
        ) from None
  log.info("%s: unpacked into %s", url, target)
  return target


def _titles(path: pathlib.Path, sep: str) -> dict[str, str] | None:
  """Raw item id -> title from a MovieLens items file (latin-1), or None when it is absent."""
  if not path.is_file():
    return None
  items = read_delimited(
    path, sep=sep, header=False, columns={"item": 0, "title": 1}, encoding="latin-1"
  )
  return dict(zip(items["item"], items["title"], strict=True))


def _load_movielens(data_config, name: str) -> Interactions:
  dataset = MOVIELENS[name]
  folders = [data_root(data_config.root) / dataset.folder, cache_root() / dataset.folder]
  folder = next((f for f in folders if (f / dataset.ratings).is_file()), None)
  if folder is None:
    folder = _download(dataset, data_config, missing=folders[0] / dataset.ratings)
  path = folder / dataset.ratings
  frame = read_delimited(path, sep=dataset.sep, header=False, columns=_POSITIONAL)
  titles = _titles(folder / dataset.titles, dataset.titles_sep)
  return from_frame(frame, name=name, path=path, first_line=1, titles=titles)


def load_ml100k(data_config) -> Interactions:
  """MovieLens 100K: `ml-100k/u.data` (tab separated) with titles from `u.item` (latin-1)."""
  return _load_movielens(data_config, "ml100k")


def load_ml1m(data_config) -> Interactions:
  """MovieLens 1M: `ml-1m/ratings.dat` (`::` separated) with titles from `movies.dat` (latin-1)."""
  return _load_movielens(data_config, "ml1m")


def load_amusic(data_config) -> Interactions:
  """The DMF authors' pruned Amazon Digital Music file (space separated, no titles)."""
  path = data_root(data_config.root) / "amazon-music" / "Amazon_ratings_Digital_Music_pruned.txt"
  frame = read_delimited(path, sep=" ", header=False, columns=_POSITIONAL)
  return from_frame(frame, name="amusic", path=path, first_line=1)


def _path(data_config) -> pathlib.Path:
  if not data_config.path:
    raise ConfigError(
      f"data.name={data_config.name} reads the file data.path: set --config.data.path"
    )
  return pathlib.Path(data_config.path).expanduser()


def load_amazon_csv(data_config) -> Interactions:
  """McAuley's ratings-only Amazon files (`user,item,rating,timestamp`, no header) at `data.path`.

  Filtered as the paper does (`filter_min_counts`), after repeated pairs are dropped.
  """
  path = _path(data_config)
  frame = read_delimited(path, sep=",", header=False, columns=_POSITIONAL)
  return filter_min_counts(
    from_frame(frame, name="amazon_csv", path=path, first_line=1),
    min_user=data_config.min_user_ratings,
    min_item=data_config.min_item_ratings,
  )


# Words for separators that a shell or a flag parser would otherwise mangle.
SEPARATOR_WORDS = {"tab": "\t", "space": " ", "semicolon": ";"}
_CSV_COLUMNS = {
  "user": "user_col",
  "item": "item_col",
  "rating": "rating_col",
  "timestamp": "time_col",
}


def _csv_separator(sep: str) -> str:
  if not sep or "\\" in sep:
    raise ConfigError(
      f"data.sep={sep!r}: give the separator itself, or one of the words "
      f"{', '.join(SEPARATOR_WORDS)} (a backslash escape is not interpreted)"
    )
  sep = SEPARATOR_WORDS.get(sep, sep)
  # read_delimited takes a longer separator as a regular expression; a user's is meant literally.
  return sep if len(sep) == 1 else re.escape(sep)


def _csv_columns(data_config) -> dict[str, str | int]:
  columns = {}
  for out, field in _CSV_COLUMNS.items():
    source = data_config[field]
    if not source:
      if out in ("user", "item"):
        raise ConfigError(f"data.{field} is empty: the {out} column is required")
      continue
    if data_config.header:
      columns[out] = source
    elif source.isdigit():
      columns[out] = int(source)
    else:
      raise ConfigError(
        f"data.{field}={source!r}: without a header (data.header=False) columns are 0-based "
        "positions such as 0"
      )
  return columns


def load_csv(data_config) -> Interactions:
  """Any delimited file at `data.path`, read by `data.sep`, `data.header` and `data.*_col`.

  Without a rating column every interaction counts as 1; without a time column the protocol draws
  the held-out items at random.
  """
  path = _path(data_config)
  columns = _csv_columns(data_config)
  frame = read_delimited(
    path, sep=_csv_separator(data_config.sep), header=data_config.header, columns=columns
  )
  if "rating" not in columns:
    log.info("%s: no rating column, so every interaction counts as 1 (implicit)", path)
  if "timestamp" not in columns:
    log.info(
      "%s: no time column, so test and validation items are drawn at random with data.split_seed",
      path,
    )
  return from_frame(frame, name="csv", path=path, first_line=2 if data_config.header else 1)


LOADERS = {
  "ml100k": load_ml100k,
  "ml1m": load_ml1m,
  "amusic": load_amusic,
  "amazon_csv": load_amazon_csv,
  "csv": load_csv,
}


# The data sets known by name, read from `data.root` (or downloaded), never from `data.path`.
NAMED = ("ml100k", "ml1m", "amusic")


def load(data_config) -> Interactions:
  """Loads the data set `data_config.name` (see `LOADERS`)."""
  loader = LOADERS.get(data_config.name)
  if loader is None:
    raise ConfigError(
      f"data.name={data_config.name!r} is not a known data set (choose from {', '.join(LOADERS)})"
    )
  if data_config.path and data_config.name in NAMED:
    raise ConfigError(
      f"data.path={data_config.path!r}: data.name={data_config.name} does not read data.path (only "
      f"{', '.join(sorted(set(LOADERS) - set(NAMED)))} do); to read it from a folder, set "
      "data.root (or $DMF_DATA_DIR) to the folder that holds its directory"
    )
  data = loader(data_config)
  if data_config.filter == "tois2021":
    data = filter_items_then_users(data, min_item=5, min_user=20)
  elif data_config.filter:
    raise ConfigError(f"data.filter={data_config.filter!r}: choose '' or 'tois2021'")
  log.info(
    "%s: %d users, %d items, %d ratings (density %.5f, max rating %g) from %s",
    data.name,
    data.num_users,
    data.num_items,
    data.num_ratings,
    data.density,
    data.max_rating,
    data.path,
  )
  return data
