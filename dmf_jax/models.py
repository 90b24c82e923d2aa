"""DMF's two towers (paper Eq. 5 and 7), the LFM of Table 3, and the cosine score (Eq. 8).

Parameters are plain pytrees and every function here is pure, so the training step can be one
`jax.jit`-compiled program. A tower's first layer is linear without bias or activation
(l1 = W1 x, Eq. 5); each further layer is ReLU(W l + b). Its input x is a row of Y for users and a
column of Y for items, and reaches the first layer in one of three forms (`model.first_layer`):

- `dense`: rows gathered from a dense Y on device, then one matrix product. Fastest while Y is
  small; memory is M x N.
- `padded`: each row as its nonzeros padded to the longest row, the first layer an embedding bag
  (W1[indices] weighted by the ratings, summed). Cost follows batch x longest row.
- `segment`: the batch's nonzeros concatenated and summed per row with a segment sum. Cost follows
  the batch's nonzeros.

`auto` takes `dense` while the dense Y has at most `DENSE_MAX_ENTRIES` entries, on a CPU only if at
least `DENSE_MIN_DENSITY` of them are nonzero, else `segment`; `padded` was the slowest form on
every CPU measurement (`benchmarks/`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from dmf_jax import sparse

FIRST_LAYERS = ("auto", "dense", "padded", "segment")
# 2^26 float32 entries (256 MiB for Y and as much for its transpose) keeps the dense form well inside
# one accelerator and a laptop; ML-100k (1.6M), ML-1M (22M) and Amazon Music (16M) fall below it.
DENSE_MAX_ENTRIES = 1 << 26
# On a CPU, below this density a batch's nonzeros cost less than its dense rows. Measured on 2 CPU
# cores at layers (64, 64, 64), 500 steps per form, two runs: ML-100k (6.3% nonzero) trains 2.9-3.3x
# faster dense than segment, an ML-1M-shaped set (4.5%) 6.5-8.5x, and Amazon Music (0.28%) 1.1-1.5x
# faster segment than dense. A GPU reads dense rows at memory speed while the segment sum's scatter
# does not keep up: on one H200, whole epochs of Amazon Music took 0.12 s dense against 0.52 s
# segment (benchmarks/results/gpu-h200-forms.log), so there dense wins at any density that fits.
DENSE_MIN_DENSITY = 0.01
INIT_STDDEV = 0.01  # Paper Section 4.1: N(0, 0.01) initialisation.
_EPS = 1e-12


@dataclasses.dataclass(frozen=True)
class ModelSpec:
  """How a trained model scores: pure functions of (params, data, ids), `data` the training data.

  DMF and LFM give latent vectors (`user_vectors`, `item_vectors`) scored by their cosine; a model
  that scores a (user, item) pair by other means gives logits instead: `pair_logits(params, data,
  users_P, items_PxC) -> float32[P, C]` for training and `score_all(params, data, users_B) ->
  float32[B, N]` for evaluation.
  """

  init: Callable
  user_vectors: Callable | None = None
  item_vectors: Callable | None = None
  pair_logits: Callable | None = None
  score_all: Callable | None = None


def resolve_first_layer(name: str, shape: tuple[int, int], nnz: int, platform: str) -> str:
  """The first layer's form for a Y of `shape` with `nnz` nonzeros, trained on `platform` ("cpu",
  "gpu", "tpu": a jax device's `platform`) (`auto`: see the module)."""
  if name != "auto":
    return name
  entries = shape[0] * shape[1]
  dense_enough = platform != "cpu" or nnz >= DENSE_MIN_DENSITY * entries
  return "dense" if entries <= DENSE_MAX_ENTRIES and dense_enough else "segment"


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Rows:
  """The rows of one side of Y (users: Y_i*, items: Y_*j^T) in the form the first layer reads.

  Exactly one form is filled: `dense` (float32[R, C]); `indices`/`values` padded rows (int32 and
  float32 [R, L], padding index C); or the CSR arrays `indptr`/`indices`/`values` for `segment`,
  read in batches of at most `batch_rows` rows. A `segment` batch is read as `shards` equal parts,
  one per device of the mesh's `data` axis, each with a buffer of `capacity` nonzeros (the sum of
  the `batch_rows / shards` longest rows), so each device handles its own part's nonzeros.
  """

  dense: jax.Array | None = None
  indices: jax.Array | None = None
  values: jax.Array | None = None
  indptr: jax.Array | None = None
  num_columns: int = dataclasses.field(default=0, metadata=dict(static=True))
  batch_rows: int = dataclasses.field(default=0, metadata=dict(static=True))
  capacity: int = dataclasses.field(default=0, metadata=dict(static=True))
  shards: int = dataclasses.field(default=1, metadata=dict(static=True))
  form: str = dataclasses.field(default="dense", metadata=dict(static=True))

  @classmethod
  def build(cls, matrix: sparse.CSR, form: str, batch_rows: int, shards: int = 1) -> Rows:
    """`matrix`'s rows in `form`, for batches of at most `batch_rows` rows (`shards` parts)."""
    if form == "dense":
      return cls(dense=jnp.asarray(matrix.to_dense()), num_columns=matrix.shape[1], form=form)
    if form == "padded":
      indices, values = matrix.padded()
      return cls(
        indices=jnp.asarray(indices),
        values=jnp.asarray(values),
        num_columns=matrix.shape[1],
        form=form,
      )
    if form == "segment":
      longest = np.sort(matrix.row_lengths())[::-1][: batch_rows // shards]
      return cls(
        indices=jnp.asarray(matrix.indices),
        values=jnp.asarray(matrix.values),
        indptr=jnp.asarray(matrix.indptr.astype(np.int32)),
        num_columns=matrix.shape[1],
        batch_rows=batch_rows,
        capacity=max(int(longest.sum()), 1),
        shards=shards,
        form=form,
      )
    raise ValueError(f"unknown first-layer form {form!r}")


def first_layer(w1_CxH: jax.Array, rows: Rows, ids_B: jax.Array) -> jax.Array:
  """l1 = x W1 for the rows `ids_B` of `rows`, float32[B, H]."""
  if rows.form == "dense":
    return rows.dense[ids_B] @ w1_CxH
  if rows.form == "padded":
    idx_BxL, val_BxL = rows.indices[ids_B], rows.values[ids_B]
    gathered_BxLxH = jnp.take(w1_CxH, idx_BxL, axis=0, mode="fill", fill_value=0)
    return jnp.einsum("blh,bl->bh", gathered_BxLxH, val_BxL)
  batch = ids_B.shape[0]
  if batch > rows.batch_rows:
    raise ValueError(
      f"a batch of {batch} rows exceeds the {rows.batch_rows} these rows were built for"
    )
  ids_SxR = ids_B.reshape(rows.shards, batch // rows.shards)
  return jax.vmap(lambda ids_R: _segment_first_layer(w1_CxH, rows, ids_R))(ids_SxR).reshape(
    batch, -1
  )


def _segment_first_layer(w1_CxH: jax.Array, rows: Rows, ids_R: jax.Array) -> jax.Array:
  """The `segment` form of one shard's rows: the nonzeros of its distinct rows are laid end to end
  in a buffer that holds the longest distinct rows a shard can draw (a row drawn twice is read
  once and copied, so repeats cannot overflow it); slots past the real total are masked out."""
  num_rows = ids_R.shape[0]
  order_R = jnp.argsort(ids_R)
  sorted_R = ids_R[order_R]
  first_R = jnp.concatenate([jnp.ones(1, bool), sorted_R[1:] != sorted_R[:-1]])
  starts_R = rows.indptr[sorted_R]
  lengths_R = jnp.where(first_R, rows.indptr[sorted_R + 1] - starts_R, 0)
  ends_R = jnp.cumsum(lengths_R)
  slots_T = jnp.arange(rows.capacity)
  owner_T = jnp.minimum(jnp.searchsorted(ends_R, slots_T, side="right"), num_rows - 1)
  entry_T = starts_R[owner_T] + slots_T - (ends_R[owner_T] - lengths_R[owner_T])
  valid_T = slots_T < ends_R[-1]
  entry_T = jnp.where(valid_T, entry_T, 0)
  weighted_TxH = (
    w1_CxH[rows.indices[entry_T]] * jnp.where(valid_T, rows.values[entry_T], 0.0)[:, None]
  )
  distinct_RxH = jax.ops.segment_sum(weighted_TxH, owner_T, num_segments=num_rows)
  first_of_R = jax.lax.cummax(jnp.where(first_R, jnp.arange(num_rows), 0))
  return distinct_RxH[first_of_R][jnp.argsort(order_R)]


def init_tower(key: jax.Array, input_dim: int, widths) -> list[dict]:
  """Parameters of one tower: W1 without bias, then (w, b) per further layer."""
  layers, previous = [], input_dim
  for index, width in enumerate(widths):
    key, sub = jax.random.split(key)
    layer = {"w": INIT_STDDEV * jax.random.normal(sub, (previous, width), jnp.float32)}
    if index:
      layer["b"] = jnp.zeros((width,), jnp.float32)
    layers.append(layer)
    previous = width
  return layers


def tower_from_first_layer(layers: list[dict], l1_BxH: jax.Array) -> jax.Array:
  """The rest of a tower after its first layer: ReLU(W l + b) per layer (Eq. 5)."""
  out = l1_BxH
  for layer in layers[1:]:
    out = jax.nn.relu(out @ layer["w"] + layer["b"])
  return out


def tower(layers: list[dict], rows: Rows, ids_B: jax.Array) -> jax.Array:
  """Latent vectors (p_i or q_j, Eq. 7) of the rows `ids_B`, float32[B, D]."""
  return tower_from_first_layer(layers, first_layer(layers[0]["w"], rows, ids_B))


def init_dmf(key: jax.Array, shape: tuple[int, int], user_layers, item_layers) -> dict:
  user_key, item_key = jax.random.split(key)
  num_users, num_items = shape
  return {
    "user": init_tower(user_key, num_items, user_layers),
    "item": init_tower(item_key, num_users, item_layers),
  }


def init_lfm(key: jax.Array, shape: tuple[int, int], factors: int) -> dict:
  """LFM (Table 3): a one-layer DMF whose input is a one-hot id, i.e. learnt vectors."""
  user_key, item_key = jax.random.split(key)
  return {
    "user": INIT_STDDEV * jax.random.normal(user_key, (shape[0], factors), jnp.float32),
    "item": INIT_STDDEV * jax.random.normal(item_key, (shape[1], factors), jnp.float32),
  }


def _norm(v_D: jax.Array) -> jax.Array:
  # The floor inside the square root keeps both the value and its gradient finite at v = 0.
  return jnp.sqrt(jnp.maximum(jnp.sum(v_D * v_D), _EPS * _EPS))


def cosine(p_D: jax.Array, q_D: jax.Array) -> jax.Array:
  """cosine(p, q) (Eq. 8); 0 when either vector is all zeros."""
  return jnp.dot(p_D, q_D) / (_norm(p_D) * _norm(q_D))


batched_cosine = jax.vmap(cosine)


def normalize(v_BxD: jax.Array) -> jax.Array:
  """Rows scaled to unit length (all-zero rows stay zero), so dot products are cosines."""
  return v_BxD / jax.vmap(_norm)(v_BxD)[:, None]
