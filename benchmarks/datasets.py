"""The benchmark's data sets: the real ML-100k and Amazon Music, and synthetic sets in other shapes.

Cost depends on the shape and the degrees, not on what the ratings say, so a synthetic set's
timings stand for the real set's; its quality numbers mean nothing. Each has power-law user
degrees (a Pareto tail above a minimum, capped) and Zipf item popularity:

- `ml1m_synth`: ML-1M's shape (not on this machine): 6,040 users with at least 20 ratings (as in
  ML-1M), 3,706 items, 1,000,209 ratings.
- `amazon_movies_synth`: the paper's Amazon Movies shape: 9,582 users with at least 20 ratings,
  92,221 items, 767k ratings.
- `large_synth`: 1M users with at least 5 ratings, 1M items, 20M ratings: a catalogue whose dense Y
  (10^12 entries) no machine holds, so only the sparse path can train it. Its items' Zipf
  exponent is 0.6: with 0.8 the most popular item would hold 270k ratings.
"""

from __future__ import annotations

import dataclasses
import hashlib
import pathlib

import numpy as np

from configs import default
from dmf_jax import data as data_lib
from dmf_jax import protocol


@dataclasses.dataclass(frozen=True)
class Synthetic:
  """The arguments of `power_law_interactions` for one synthetic set."""

  num_users: int
  num_items: int
  num_ratings: int
  min_user_ratings: int
  max_user_ratings: int
  item_exponent: float = 0.8


SYNTHETIC = {
  "ml1m_synth": Synthetic(6040, 3706, 1_000_209, 20, 2314),
  "amazon_movies_synth": Synthetic(9582, 92_221, 767_000, 20, 2314),
  "large_synth": Synthetic(1_000_000, 1_000_000, 20_000_000, 5, 10_000, item_exponent=0.6),
}
NAMES = ("ml100k", "amusic", "ml1m_synth")  # `benchmarks.run`'s default
SCALE_NAMES = ("amazon_movies_synth", "large_synth")  # catalogues where only sparse rows pay


def power_law_interactions(
  num_users: int,
  num_items: int,
  num_ratings: int,
  *,
  min_user_ratings: int,
  max_user_ratings: int,
  user_exponent: float = 2.0,
  item_exponent: float = 0.8,
  seed: int = 0,
  name: str = "synthetic",
) -> data_lib.Interactions:
  """Distinct (user, item) pairs with power-law degrees on both sides, ratings 1-5, timestamps.

  User degrees follow a Pareto tail (P(d > x) ~ x^-user_exponent) above `min_user_ratings`,
  scaled to sum to `num_ratings`; each user's items are drawn without replacement with
  probability proportional to a Zipf weight (rank + 1)^-item_exponent. Memory and time follow the
  ratings, not users x items: items are drawn with replacement in rounds and a user's repeats
  rejected, which is sampling without replacement.
  """
  rng = np.random.default_rng(seed)
  tail = rng.pareto(user_exponent, num_users)
  # Find the scale of the tail that makes the degrees add up to num_ratings (the sum grows with
  # the scale), then hand the rounding remainder to users below the cap.
  cap = min(max_user_ratings, num_items)
  low, high = 0.0, float(num_ratings)
  for _ in range(100):
    scale = (low + high) / 2
    total = np.minimum(min_user_ratings + scale * tail, cap).sum()
    low, high = (scale, high) if total < num_ratings else (low, scale)
  degrees = np.minimum(min_user_ratings + np.floor(low * tail), cap).astype(np.int64)
  short = num_ratings - int(degrees.sum())
  open_users = np.flatnonzero(degrees < cap)
  degrees[rng.choice(open_users, size=short, replace=False)] += 1

  cdf = np.cumsum(np.exp(-item_exponent * np.log1p(np.arange(num_items))))
  item_order = rng.permutation(num_items)  # popularity is not tied to the item index
  pairs = np.empty(0, np.int64)  # user * num_items + item, sorted
  missing = degrees
  draws_per_missing = 1.0
  while missing.any():
    # Each round draws more per missing item than the last: a user who holds most of the
    # popular items rejects most draws.
    users = np.flatnonzero(missing)
    counts = np.ceil(missing[users] * draws_per_missing).astype(np.int64)
    drawn_users = np.repeat(users, counts)
    items = np.minimum(np.searchsorted(cdf, rng.random(len(drawn_users)) * cdf[-1]), num_items - 1)
    keys = drawn_users * num_items + items
    fresh = np.zeros(len(keys), bool)
    fresh[np.unique(keys, return_index=True)[1]] = True  # a pair's first draw in this round
    if len(pairs):  # and not a pair an earlier round kept
      fresh &= pairs[np.minimum(np.searchsorted(pairs, keys), len(pairs) - 1)] != keys
    # A user keeps their first `missing` fresh draws, in draw order.
    fresh_at = np.flatnonzero(fresh)
    owners = drawn_users[fresh_at]
    rank = np.arange(len(fresh_at)) - np.searchsorted(owners, owners)
    kept = fresh_at[rank < missing[owners]]
    pairs = np.union1d(pairs, keys[kept])
    missing = missing - np.bincount(drawn_users[kept], minlength=num_users)
    draws_per_missing *= 2
  users = (pairs // num_items).astype(np.int32)
  items = item_order[pairs % num_items].astype(np.int32)
  del pairs
  label = f"power-law {num_users}x{num_items} {num_ratings} seed {seed}"
  return data_lib.Interactions(
    name=name,
    users=users,
    items=items,
    ratings=rng.integers(1, 6, len(users), dtype=np.int8).astype(np.float32),
    timestamps=rng.permutation(len(users)).astype(np.int64),
    user_ids=np.arange(num_users).astype(str),
    item_ids=np.arange(num_items).astype(str),
    item_titles=None,
    sha256=hashlib.sha256(label.encode()).hexdigest(),
    path=pathlib.Path(f"<{label}>"),
  )


def load(name: str, root: str | None = None) -> data_lib.Interactions:
  """A benchmark data set by name; real ones come from `root`, else `$DMF_DATA_DIR`."""
  if name in SYNTHETIC:
    return power_law_interactions(**dataclasses.asdict(SYNTHETIC[name]), name=name)
  config = default.get_config().data
  config.name = name
  config.root = root
  return data_lib.load(config)


def split(data: data_lib.Interactions) -> protocol.Split:
  """The default protocol's leave-one-out split (random validation item, 100 candidates)."""
  config = default.get_config()
  return protocol.make_split(
    data,
    split_seed=config.data.split_seed,
    validation=config.eval.validation,
    num_negatives=config.eval.num_negatives,
  )
