"""Non-neural baselines of the paper's Table 2: ItemPop and ItemKNN.

Both are fitted in closed form on the training Y and expose the evaluator's `score_all`.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from dmf_jax import sparse


def itempop_scores(train: sparse.CSR) -> np.ndarray:
  """ItemPop: every item scored by its number of training interactions, float32[N]."""
  return np.bincount(train.indices, minlength=train.shape[1]).astype(np.float32)


@functools.partial(jax.jit, static_argnames="k")
def _top_k_similar(block_items_b, dense_MxN, norms_N, *, k):
  """Cosine similarities of a block of items to every item; the k largest, self excluded."""
  block_Mxb = dense_MxN[:, block_items_b]
  dots_bxN = block_Mxb.T @ dense_MxN
  denominator_bxN = norms_N[block_items_b][:, None] * norms_N[None, :]
  cosine_bxN = jnp.where(denominator_bxN > 0, dots_bxN / jnp.maximum(denominator_bxN, 1e-12), 0.0)
  cosine_bxN = cosine_bxN.at[jnp.arange(block_items_b.shape[0]), block_items_b].set(-jnp.inf)
  values_bxk, neighbours_bxk = jax.lax.top_k(cosine_bxN, k)
  return jnp.maximum(values_bxk, 0.0), neighbours_bxk


def item_neighbours(train: sparse.CSR, k: int, block: int = 512) -> tuple[np.ndarray, np.ndarray]:
  """Each item's k most cosine-similar items over the binary training interactions.

  Returns:
    (neighbours int32[N, k], similarities float32[N, k]), most similar first.
  """
  num_items = train.shape[1]
  k = min(k, num_items - 1)
  dense = jnp.asarray(train.binary().to_dense())
  norms = jnp.sqrt(jnp.sum(dense, axis=0))
  padded = -(-num_items // block) * block
  items = np.arange(padded) % num_items
  values, neighbours = [], []
  for start in range(0, padded, block):
    v, n = _top_k_similar(jnp.asarray(items[start : start + block]), dense, norms, k=k)
    values.append(v)
    neighbours.append(n)
  values = np.asarray(jnp.concatenate(values))[:num_items]
  neighbours = np.asarray(jnp.concatenate(neighbours))[:num_items]
  return neighbours.astype(np.int32), values.astype(np.float32)


def itemknn_weights(train: sparse.CSR, k: int) -> sparse.CSR:
  """ItemKNN's item-item weights: W[i, j] = sim(i, j) when i is among j's k nearest neighbours."""
  num_items = train.shape[1]
  neighbours, similarities = item_neighbours(train, k)
  return sparse.CSR.from_coo(
    neighbours.ravel(),
    np.repeat(np.arange(num_items), neighbours.shape[1]),
    similarities.ravel(),
    (num_items, num_items),
  )


def itemknn_scores(rows: sparse.CSR, w: sparse.CSR, max_terms: int = 1 << 24) -> np.ndarray:
  """ItemKNN (Sarwar et al. 2001) scores of each row of `rows` (users), float32[R, N].

  score(u, j) is the sum of sim(i, j) over the items i that u rated among j's k nearest neighbours
  (`w` from `itemknn_weights`), i.e. the binary row times W. Rows are processed in groups of about
  `max_terms` (rated item, neighbour) terms to bound memory.
  """
  num_rows, num_items = rows.shape[0], w.shape[1]
  row_ids = rows.row_ids()
  terms = w.row_lengths()[rows.indices]
  per_row = np.bincount(row_ids, weights=terms, minlength=num_rows)
  group_of_row = (np.cumsum(per_row) - per_row) // max_terms
  scores = np.zeros((num_rows, num_items), np.float32)
  for group in np.unique(group_of_row):
    members = np.flatnonzero(group_of_row == group)
    first, last = members[0], members[-1] + 1
    rated = slice(rows.indptr[first], rows.indptr[last])
    lengths = terms[rated]
    owners = np.repeat(row_ids[rated] - first, lengths).astype(np.int64)
    starts = np.repeat(w.indptr[rows.indices[rated]], lengths)
    entries = starts + np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    flat = owners * num_items + w.indices[entries]
    block = np.bincount(flat, weights=w.values[entries], minlength=(last - first) * num_items)
    scores[first:last] = block.reshape(last - first, num_items)
  return scores
