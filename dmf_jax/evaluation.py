"""HR@K and NDCG@K, over sampled candidates and over the full catalogue.

A model is evaluated through one function, `score_all(users_B) -> scores_BxN`, its scores for a
batch of users against every item; sampled metrics read the candidates' columns of the same matrix,
so both come from one matrix product per batch. Users are scored in fixed-size batches (the last one
padded) so the jitted ranking compiles once.

Ties count against the held-out item: an item scoring exactly as high ranks above it. Full-ranking
metrics rank the held-out item among every item except the user's training items and the user's
other held-out item (sampled metrics can reverse model orderings: Krichene and Rendle, KDD 2020).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from dmf_jax import sparse
from dmf_jax.protocol import Split

ScoreAll = Callable[[jax.Array], jax.Array]


def metrics_from_ranks(ranks: np.ndarray, ks: Sequence[int], prefix: str = "") -> dict[str, float]:
  """Mean HR@K and NDCG@K for 0-based ranks of the held-out item (one per user)."""
  ranks = np.asarray(ranks)
  out = {}
  for k in ks:
    hit = ranks < k
    out[f"{prefix}hr@{k}"] = float(hit.mean())
    out[f"{prefix}ndcg@{k}"] = float(np.where(hit, 1.0 / np.log2(ranks + 2.0), 0.0).mean())
  return out


@jax.jit
def _ranks(scores_BxN, candidates_BxC, excluded_BxL):
  """0-based pessimistic ranks of each row's held-out item (candidate column 0).

  Args:
    scores_BxN: scores of every item.
    candidates_BxC: the held-out item then the sampled negatives.
    excluded_BxL: items left out of the full ranking, padded with N (ignored).

  Returns:
    (sampled_rank_B, full_rank_B).
  """
  target_B = jnp.take_along_axis(scores_BxN, candidates_BxC[:, :1], axis=1)
  negatives_BxK = jnp.take_along_axis(scores_BxN, candidates_BxC[:, 1:], axis=1)
  sampled = jnp.sum(negatives_BxK >= target_B, axis=1)
  rows_Bx1 = jnp.arange(scores_BxN.shape[0])[:, None]
  excluded_BxN = jnp.zeros(scores_BxN.shape, bool).at[rows_Bx1, excluded_BxL].set(True, mode="drop")
  excluded_BxN = excluded_BxN.at[rows_Bx1, candidates_BxC[:, :1]].set(True)
  full = jnp.sum((scores_BxN >= target_B) & ~excluded_BxN, axis=1)
  return sampled, full


@dataclasses.dataclass(frozen=True)
class EvalSet:
  """One held-out item per evaluated user, with its candidates and full-ranking exclusions."""

  name: str  # "valid" or "test"
  users: np.ndarray  # int32[E]
  candidates: np.ndarray  # int32[E, C]
  excluded: np.ndarray  # int32[E, L], padded with num_items


def eval_sets(split: Split, train: sparse.CSR) -> dict[str, EvalSet]:
  """The validation and test sets of `split`; `train` gives each user's training items."""
  items, _ = train.padded(split.eval_users)
  sets = {}
  for name, candidates, other in (
    ("valid", split.valid_candidates, split.test_items),
    ("test", split.test_candidates, split.valid_items),
  ):
    excluded = np.concatenate([items, other[:, None]], axis=1)
    sets[name] = EvalSet(name, split.eval_users, candidates, excluded)
  return sets


def evaluate(
  score_all: ScoreAll, eval_set: EvalSet, *, ks: Sequence[int], batch_size: int = 256
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
  """Sampled and full-ranking metrics of `score_all` on `eval_set`.

  Returns:
    (metrics, ranks): metrics `hr@K`, `ndcg@K`, `full_hr@K`, `full_ndcg@K` for each K in `ks`;
    ranks `sampled` and `full`, the 0-based rank of each user's held-out item.
  """
  num = len(eval_set.users)
  padded = -(-num // batch_size) * batch_size
  take = np.concatenate([np.arange(num), np.zeros(padded - num, np.int64)])
  users = jnp.asarray(eval_set.users[take])
  candidates = jnp.asarray(eval_set.candidates[take])
  excluded = jnp.asarray(eval_set.excluded[take])
  sampled, full = [], []
  for start in range(0, padded, batch_size):
    batch = slice(start, start + batch_size)
    s, f = _ranks(score_all(users[batch]), candidates[batch], excluded[batch])
    sampled.append(s)
    full.append(f)
  ranks = {
    "sampled": np.asarray(jnp.concatenate(sampled))[:num],
    "full": np.asarray(jnp.concatenate(full))[:num],
  }
  metrics = metrics_from_ranks(ranks["sampled"], ks)
  metrics.update(metrics_from_ranks(ranks["full"], ks, prefix="full_"))
  return metrics, ranks
