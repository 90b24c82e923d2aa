"""Factorization baselines that later studies found stronger than the paper's: EASE^R, iALS, eALS.

All three fit the binary Y of Eq. 1 (1 where observed, 0 elsewhere) whatever `data.implicit` says:
they are one-class models of the interactions, as in their papers, and ratings would change what
they estimate. Every unobserved entry counts as a weighted negative; nothing is sampled.

- EASE^R (Steck, WWW 2019): closed-form item-item weights B with a zero diagonal.
- iALS (Hu, Koren and Volinsky 2008) as revisited by Rendle et al. (RecSys 2022): alternating exact
  least-squares solves, every user-item pair weighted `unobserved_weight`, regularisation scaled by
  frequency.
- eALS (He et al., SIGIR 2016): element-wise ALS with missing entries weighted by item popularity.

ALS sweeps are jitted and vectorized over all users (then all items) at once; the only sequential
loop is eALS's over latent coordinates, as in the paper's Algorithm 1.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from dmf_jax import sparse

# Rendle et al. initialise factors from N(0, (0.1 / sqrt(d))^2), so initial scores are near 0.
_INIT_SCALE = 0.1
# Rows of a sparse matrix by length: ((rows int32[B], columns int32[B, W]), ...); see row_buckets.
Buckets = tuple[tuple[jax.Array, jax.Array], ...]


def ease_scores(train: sparse.CSR, reg: float) -> np.ndarray:
  """EASE^R scores X B of every user, float32[M, N].

  B = I - P diagMat(1 / diag(P)) with P = (X^T X + reg I)^-1, so diag(B) = 0. When M < N the same
  X P comes from the users' Gramian by the push-through identity, X P = (X X^T + reg I)^-1 X, and
  diag(P) = (1 - colsum(X * X P)) / reg by Woodbury: no N x N matrix is formed, so Amazon Music
  (844 users, 18,813 items) costs an 844 x 844 solve instead of an 18,813 x 18,813 inverse.
  """
  x_MxN = jnp.asarray(train.binary().to_dense())
  return np.asarray(_ease(x_MxN, jnp.float32(reg)))


@jax.jit
def _ease(x_MxN, reg):
  num_users, num_items = x_MxN.shape
  if num_users < num_items:
    gram_MxM = x_MxN @ x_MxN.T + reg * jnp.eye(num_users)
    xp_MxN = jax.scipy.linalg.cho_solve(jax.scipy.linalg.cho_factor(gram_MxM), x_MxN)
    diag_p_N = (1.0 - jnp.sum(x_MxN * xp_MxN, axis=0)) / reg
  else:
    gram_NxN = x_MxN.T @ x_MxN + reg * jnp.eye(num_items)
    p_NxN = jax.scipy.linalg.cho_solve(jax.scipy.linalg.cho_factor(gram_NxN), jnp.eye(num_items))
    xp_MxN = x_MxN @ p_NxN
    diag_p_N = jnp.diag(p_NxN)
  return x_MxN - xp_MxN / diag_p_N


def init_factors(key: jax.Array, shape: tuple[int, int], dim: int) -> tuple[jax.Array, jax.Array]:
  """Random (users float32[M, dim], items float32[N, dim]) for `shape` = (M, N)."""
  user_key, item_key = jax.random.split(key)
  scale = _INIT_SCALE / np.sqrt(dim)
  return (
    scale * jax.random.normal(user_key, (shape[0], dim)),
    scale * jax.random.normal(item_key, (shape[1], dim)),
  )


def row_buckets(matrix: sparse.CSR) -> Buckets:
  """The rows of `matrix` grouped by length, each group padded to the next power of two.

  Each bucket's Gramians are then one batched matmul over at most twice its entries, where a
  scatter of one outer product per entry was an order of magnitude slower on CPU.

  Returns:
    ((rows int32[B], columns int32[B, W]), ...) for widths W = 1, 2, 4, ...; every row is in one
    bucket, and padding has column `matrix.shape[1]`.
  """
  widths = 2 ** np.ceil(np.log2(np.maximum(matrix.row_lengths(), 1))).astype(np.int64)
  buckets = []
  for width in np.unique(widths):
    rows = np.flatnonzero(widths == width).astype(np.int32)
    columns, _ = matrix.padded(rows, int(width))
    buckets.append((jnp.asarray(rows), jnp.asarray(columns)))
  return tuple(buckets)


def _ials_solve(fixed_CxD, buckets, num_rows, unobserved_weight, reg, reg_exponent):
  """Each row's exact minimiser of the iALS loss given the other side's factors, float32[R, D].

  Row r solves (sum_{j in r} v_j v_j^T + a0 V^T V + reg_r I) x_r = sum_{j in r} v_j with
  reg_r = reg (|r| + a0 C)^reg_exponent (Rendle et al., Eq. 4 and Section 3.2): V^T V is shared
  by every row (the Gramian trick), so only observed entries are visited.
  """
  num_cols, dim = fixed_CxD.shape
  observed_gram_RxDxD = jnp.zeros((num_rows, dim, dim), fixed_CxD.dtype)
  rhs_RxD = jnp.zeros((num_rows, dim), fixed_CxD.dtype)
  counts_R = jnp.zeros(num_rows, fixed_CxD.dtype)
  for rows_B, columns_BxW in buckets:
    observed_BxWxD = jnp.take(fixed_CxD, columns_BxW, axis=0, mode="fill", fill_value=0)
    gram_BxDxD = jnp.einsum("bwd,bwe->bde", observed_BxWxD, observed_BxWxD)
    observed_gram_RxDxD = observed_gram_RxDxD.at[rows_B].set(gram_BxDxD)
    rhs_RxD = rhs_RxD.at[rows_B].set(jnp.sum(observed_BxWxD, axis=1))
    counts_R = counts_R.at[rows_B].set(jnp.sum(columns_BxW < num_cols, axis=1))
  reg_R = reg * (counts_R + unobserved_weight * num_cols) ** reg_exponent
  lhs_RxDxD = (
    observed_gram_RxDxD
    + unobserved_weight * (fixed_CxD.T @ fixed_CxD)
    + reg_R[:, None, None] * jnp.eye(dim)
  )
  # One batched solve for all rows: XLA's CPU runtime deadlocked on 2 cores with several
  # independent batched LAPACK solves in one program (one per bucket).
  factor = jax.scipy.linalg.cho_factor(lhs_RxDxD)
  return jax.scipy.linalg.cho_solve(factor, rhs_RxD[:, :, None])[:, :, 0]


@jax.jit
def ials_epoch(
  users_MxD, items_NxD, user_buckets, item_buckets, unobserved_weight, reg, reg_exponent
):
  """One iALS sweep: all users, then all items.

  Args:
    user_buckets: `row_buckets` of the training Y; item_buckets: of its transpose.

  Returns:
    (users float32[M, D], items float32[N, D]).
  """
  hyper = (unobserved_weight, reg, reg_exponent)
  users_MxD = _ials_solve(items_NxD, user_buckets, users_MxD.shape[0], *hyper)
  items_NxD = _ials_solve(users_MxD, item_buckets, items_NxD.shape[0], *hyper)
  return users_MxD, items_NxD


def eals_item_weights(train: sparse.CSR, w0: float, alpha: float) -> np.ndarray:
  """c_j = w0 f_j^alpha / sum_k f_k^alpha with f_j item j's training count (He et al., Eq. 8)."""
  popularity = np.bincount(train.indices, minlength=train.shape[1]).astype(np.float64) ** alpha
  return (w0 * popularity / popularity.sum()).astype(np.float32)


def _eals_solve(rows_RxD, fixed_CxD, rows_E, cols_E, row_weight_R, col_weight_C, reg):
  """Coordinate-wise exact updates of every row's factors given the other side's.

  The missing entry (r, j) weighs row_weight[r] col_weight[j] (users: 1 and c_j; items: c_j and
  1), observed entries weigh 1 with target 1. The missing-data sum over all columns comes from the
  cache S = sum_j col_weight[j] v_j v_j^T, so each coordinate visits only observed entries, holding
  their predictions in a cache (He et al., Eq. 12-13 and Algorithm 1).
  """
  num_rows = rows_RxD.shape[0]
  cache_DxD = (fixed_CxD * col_weight_C[:, None]).T @ fixed_CxD
  # (observed weight - missing weight) of each observed entry.
  excess_E = 1.0 - row_weight_R[rows_E] * col_weight_C[cols_E]
  fixed_ExD = fixed_CxD[cols_E]
  predictions_E = jnp.sum(rows_RxD[rows_E] * fixed_ExD, axis=1)

  def update(f, state):
    rows_RxD, predictions_E = state
    v_E = fixed_ExD[:, f]
    others_E = predictions_E - rows_RxD[rows_E, f] * v_E
    others_missing_R = rows_RxD @ cache_DxD[:, f] - rows_RxD[:, f] * cache_DxD[f, f]
    numerator_R = (
      jax.ops.segment_sum((1.0 - excess_E * others_E) * v_E, rows_E, num_rows)
      - row_weight_R * others_missing_R
    )
    denominator_R = (
      jax.ops.segment_sum(excess_E * v_E * v_E, rows_E, num_rows)
      + row_weight_R * cache_DxD[f, f]
      + reg
    )
    column_R = numerator_R / denominator_R
    return rows_RxD.at[:, f].set(column_R), others_E + column_R[rows_E] * v_E

  rows_RxD, _ = jax.lax.fori_loop(0, rows_RxD.shape[1], update, (rows_RxD, predictions_E))
  return rows_RxD


@jax.jit
def eals_epoch(users_MxD, items_NxD, users_E, items_E, item_weight_N, reg):
  """One eALS sweep: every user's coordinates, then every item's.

  Returns:
    (users float32[M, D], items float32[N, D]).
  """
  ones_M = jnp.ones(users_MxD.shape[0], item_weight_N.dtype)
  users_MxD = _eals_solve(users_MxD, items_NxD, users_E, items_E, ones_M, item_weight_N, reg)
  items_NxD = _eals_solve(items_NxD, users_MxD, items_E, users_E, item_weight_N, ones_M, reg)
  return users_MxD, items_NxD


@jax.jit
def dot_scores(users_MxD, items_NxD, batch_B):
  """Scores of a batch of users against every item, float32[B, N]."""
  return users_MxD[batch_B] @ items_NxD.T
