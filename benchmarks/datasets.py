"""The benchmark's data sets: the real ML-100k and Amazon Music, and a synthetic set in ML-1M's shape.

ML-1M itself is not on this machine, so `ml1m_synth` stands in for it: 6,040 users, 3,706 items
and 1,000,209 ratings, with power-law user degrees (at least 20 ratings each, as in ML-1M) and
power-law item popularity. Cost depends on the shape and the degrees, not on what the ratings say,
so its timings stand for ML-1M's; its quality numbers mean nothing.
"""

from __future__ import annotations

import hashlib
import pathlib

import numpy as np

from configs import default
from dmf_jax import data as data_lib
from dmf_jax import protocol

ML1M_SHAPE = (6040, 3706)
ML1M_RATINGS = 1_000_209
ML1M_MIN_USER_RATINGS = 20
ML1M_MAX_USER_RATINGS = 2314
NAMES = ("ml100k", "amusic", "ml1m_synth")


def power_law_interactions(
  num_users: int,
  num_items: int,
  num_ratings: int,
  *,
  min_user_ratings: int = ML1M_MIN_USER_RATINGS,
  max_user_ratings: int = ML1M_MAX_USER_RATINGS,
  user_exponent: float = 2.0,
  item_exponent: float = 0.8,
  seed: int = 0,
) -> data_lib.Interactions:
  """Distinct (user, item) pairs with power-law degrees on both sides, ratings 1-5, timestamps.

  User degrees follow a Pareto tail (P(d > x) ~ x^-user_exponent) above `min_user_ratings`,
  scaled to sum to `num_ratings`; each user's items are drawn without replacement with
  probability proportional to a Zipf weight (rank + 1)^-item_exponent (the Gumbel top-k trick).
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

  log_weights = -item_exponent * np.log1p(np.arange(num_items))
  item_order = rng.permutation(num_items)  # popularity is not tied to the item index
  users, items = [], []
  for user, degree in enumerate(degrees):
    keys = log_weights + rng.gumbel(size=num_items)
    chosen = np.argpartition(-keys, degree - 1)[:degree]  # the largest keys
    users.append(np.full(degree, user, np.int32))
    items.append(item_order[chosen].astype(np.int32))
  users, items = np.concatenate(users), np.concatenate(items)
  name = f"power-law {num_users}x{num_items} {num_ratings} seed {seed}"
  return data_lib.Interactions(
    name="ml1m_synth",
    users=users,
    items=items,
    ratings=rng.integers(1, 6, len(users)).astype(np.float32),
    timestamps=rng.permutation(len(users)).astype(np.int64),
    user_ids=np.arange(num_users).astype(str),
    item_ids=np.arange(num_items).astype(str),
    item_titles=None,
    sha256=hashlib.sha256(name.encode()).hexdigest(),
    path=pathlib.Path(f"<{name}>"),
  )


def load(name: str, root: str | None = None) -> data_lib.Interactions:
  """A benchmark data set by name; real ones come from `root`, else `$DMF_DATA_DIR`."""
  if name == "ml1m_synth":
    return power_law_interactions(*ML1M_SHAPE, ML1M_RATINGS)
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
