"""HR@K and NDCG@K, over sampled candidates and over the full catalogue.

A model is evaluated through `score_all(users_B) -> scores_BxN`, its scores for a batch of users
against every item, and optionally `score_candidates(users_B, items_BxC) -> scores_BxC` (a
two-tower model's, which needs no product with every item); without it, sampled metrics read the
candidates' columns of `score_all`. Every evaluated user gets sampled metrics; full-ranking
metrics go to every user, or to a fixed sample of `eval.full_ranking_users` of them (drawn with
the split's seed) when there are more, since each costs a product with the whole catalogue. A
user's exclusions are read from the training Y batch by batch, so memory follows the batch, not
the longest user. Users are scored in fixed-size batches (the last one padded; full rankings in
batches of at most `FULL_RANKING_SCORES` scores) so the jitted rankings compile once per padded
width (a power of two).

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
def _sampled_ranks(candidate_scores_BxC):
  """0-based pessimistic ranks of each row's held-out item (column 0) among its candidates."""
  return jnp.sum(candidate_scores_BxC[:, 1:] >= candidate_scores_BxC[:, :1], axis=1)


@jax.jit
def _full_ranks(scores_BxN, held_out_B, excluded_BxL):
  """0-based pessimistic ranks of each row's held-out item among every item but `excluded_BxL`
  (padded with N, ignored)."""
  rows_Bx1 = jnp.arange(scores_BxN.shape[0])[:, None]
  target_Bx1 = jnp.take_along_axis(scores_BxN, held_out_B[:, None], axis=1)
  excluded_BxN = jnp.zeros(scores_BxN.shape, bool).at[rows_Bx1, excluded_BxL].set(True, mode="drop")
  excluded_BxN = excluded_BxN.at[rows_Bx1, held_out_B[:, None]].set(True)
  return jnp.sum((scores_BxN >= target_Bx1) & ~excluded_BxN, axis=1)


@dataclasses.dataclass(frozen=True)
class EvalSet:
  """One held-out item per evaluated user, with its candidates and what the full ranking leaves
  out: the user's training items (rows of `train`) and its other held-out item."""

  name: str  # "valid" or "test"
  users: np.ndarray  # int32[E]
  candidates: np.ndarray  # int32[E, C], the held-out item first
  other_held_out: np.ndarray  # int32[E]
  train: sparse.CSR
  full_rows: np.ndarray  # int[F]: which of `users` get full-ranking metrics, in order

  def excluded(self, rows: np.ndarray) -> np.ndarray:
    """int32[len(rows), L] the full ranking of `rows` (of `users`) leaves out, padded with the
    number of items; L is a power of two, so few widths compile."""
    lengths = self.train.row_lengths(self.users[rows])
    width = 1 << int(lengths.max(initial=0)).bit_length()  # room for the other held-out item
    items, _ = self.train.padded(self.users[rows], width)
    items[np.arange(len(rows)), lengths] = self.other_held_out[rows]
    return items


def full_ranking_rows(num_users: int, limit: int | None, seed: int) -> np.ndarray:
  """The evaluated users (positions) ranked against the whole catalogue: all of them, or `limit`
  drawn with `seed`, in order."""
  if limit is None or limit >= num_users:
    return np.arange(num_users)
  return np.sort(np.random.default_rng(seed).choice(num_users, limit, replace=False))


def eval_sets(
  split: Split, train: sparse.CSR, full_ranking_users: int | None = None, seed: int = 0
) -> dict[str, EvalSet]:
  """The validation and test sets of `split`; `train` gives each user's training items; full
  rankings for `full_ranking_users` of them (all by default), drawn with `seed`."""
  full_rows = full_ranking_rows(len(split.eval_users), full_ranking_users, seed)
  return {
    "valid": EvalSet(
      "valid", split.eval_users, split.valid_candidates, split.test_items, train, full_rows
    ),
    "test": EvalSet(
      "test", split.eval_users, split.test_candidates, split.valid_items, train, full_rows
    ),
  }


# A full ranking scores a batch of users against every item: its batches hold at most this many
# scores (256 MB as float32), so that a million-item catalogue ranks 64 users at a time.
FULL_RANKING_SCORES = 1 << 26


def _batches(count: int, batch_size: int):
  """Positions 0..count-1 in batches of `batch_size`, the last padded with position 0."""
  for start in range(0, count, batch_size):
    real = min(batch_size, count - start)
    yield np.concatenate([np.arange(start, start + real), np.zeros(batch_size - real, int)])


def _joined(batches, count: int) -> np.ndarray:
  """The first `count` of the concatenated device `batches`, on the host (one sync)."""
  return np.asarray(jnp.concatenate(batches))[:count] if batches else np.zeros(0, np.int32)


def evaluate(
  score_all: ScoreAll,
  eval_set: EvalSet,
  *,
  ks: Sequence[int],
  batch_size: int = 256,
  score_candidates=None,
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
  """Sampled and full-ranking metrics of a model on `eval_set`.

  Returns:
    (metrics, ranks): metrics `hr@K`, `ndcg@K`, `full_hr@K`, `full_ndcg@K` for each K in `ks`;
    ranks `sampled` (every user), `full` (the users of `full_rows`) and `full_rows`: 0-based ranks
    of each user's held-out item.
  """
  if score_candidates is None:

    def score_candidates(users_B, candidates_BxC):
      return jnp.take_along_axis(score_all(users_B), candidates_BxC, axis=1)

  sampled = [
    _sampled_ranks(
      score_candidates(jnp.asarray(eval_set.users[rows]), jnp.asarray(eval_set.candidates[rows]))
    )
    for rows in _batches(len(eval_set.users), batch_size)
  ]
  full = []
  num_items = eval_set.train.shape[1]
  full_batch = max(1, min(batch_size, FULL_RANKING_SCORES // num_items))
  for positions in _batches(len(eval_set.full_rows), full_batch):
    rows = eval_set.full_rows[positions]
    full.append(
      _full_ranks(
        score_all(jnp.asarray(eval_set.users[rows])),
        jnp.asarray(eval_set.candidates[rows, 0]),
        jnp.asarray(eval_set.excluded(rows)),
      )
    )
  ranks = {
    "sampled": _joined(sampled, len(eval_set.users)),
    "full": _joined(full, len(eval_set.full_rows)),
    "full_rows": eval_set.full_rows.astype(np.int32),
  }
  metrics = metrics_from_ranks(ranks["sampled"], ks)
  metrics.update(metrics_from_ranks(ranks["full"], ks, prefix="full_"))
  return metrics, ranks
