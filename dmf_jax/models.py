"""DMF's two towers (paper Eq. 5 and 7), the LFM of Table 3, and the cosine score (Eq. 8), as Flax
modules over a sparse Y.

Flax `linen`, not NNX: linen's `init`/`apply` already are the pure functions the trainer jits,
vmaps and shards, taking and returning a plain params dict; that dict is also what lets a first
layer be applied to a gathered block of W1's rows alone (a sparse-row optimizer's need), where NNX
would wrap the same `split`/`merge` around every step.

A tower's first layer is linear without bias or activation (l1 = W1 x, Eq. 5); each further layer
is ReLU(W l + b). Its input x is a row of Y for users and a column of Y for items: `SparseRows`
holds that side of Y on device as a `jax.experimental.sparse.BCOO` (rows sorted, row offsets kept
beside it), never as a dense Y. Every first-layer form (`model.first_layer`) gathers its batch's
rows from the BCOO and differs only in how they meet W1:

- `dense`: the batch's rows densified into a [batch, columns] block, then one matrix product.
  Fastest while rows are not too sparse (its backward is a dense product too).
- `padded`: the rows as a BCOO with one batch dimension, each padded to the longest row, met by an
  embedding bag (W1[indices] weighted by the ratings, summed). Cost follows batch x longest row.
- `segment`: the batch's nonzeros laid end to end and summed per row with a segment sum. Cost
  follows the batch's nonzeros, and W1's gradient is a scatter of those rows only.

`dense` and `segment` read a batch's nonzeros through buffers sized for batches like training's
(`SparseRows.from_csr`), with a fallback sized for any batch, so no shape depends on the data:
`dense` through a staircase (a fixed number of slots per row), `segment` and the reads of a
sparse-row optimizer through a ladder of capacities for the batch's nonzeros laid end to end, the
batch taking the smallest it fits (a median batch of a million-user set holds a tenth of what the
staircase that fits every typical batch holds).

`auto` takes `dense` while Y has at most `DENSE_MAX_ENTRIES` entries, on a CPU only if at least
`DENSE_MIN_DENSITY` of them are nonzero, else `segment`; `padded` was the slowest form on every CPU
measurement (`benchmarks/`).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jax.experimental import sparse as jsparse

from dmf_jax import sparse
from dmf_jax.parallel import MODEL

FIRST_LAYERS = ("auto", "dense", "padded", "segment")
# 2^26 entries (256 MiB as float32 for a [batch, columns] world of rows) keeps the dense form well
# inside one accelerator and a laptop; ML-100k (1.6M), ML-1M (22M) and Amazon Music (16M) fall below.
DENSE_MAX_ENTRIES = 1 << 26
# On a CPU, below this density a batch's nonzeros cost less than its dense rows. Measured on 2 CPU
# cores at layers (64, 64, 64), 500 steps per form, two runs: ML-100k (6.3% nonzero) trains 2.9-3.3x
# faster dense than segment, an ML-1M-shaped set (4.5%) 6.5-8.5x, and Amazon Music (0.28%) 1.1-1.5x
# faster segment than dense. A GPU multiplies dense rows at memory speed while the segment sum's
# scatter does not keep up: on one H200, whole epochs of Amazon Music took 0.12 s dense against
# 0.52 s segment (benchmarks/results/gpu-h200-forms.log), so there dense wins at any density that fits.
DENSE_MIN_DENSITY = 0.01
INIT_STDDEV = 0.01  # Paper Section 4.1: N(0, 0.01) initialisation.
_EPS = 1e-12

init_normal = nn.initializers.normal(INIT_STDDEV)


@dataclasses.dataclass(frozen=True)
class Family:
  """A model family as data: what the trainer, evaluation and serving need of it.

  `module(config, shape)` is its Flax module, called as `(user_rows, item_rows, users_P, items_PxC)
  -> scores float32[P, C]`; `loss(config)` its loss, `(scores, targets) -> losses` whose mean is
  the batch's (`losses`);
  `optimizer(config)` its optax transformation, `learning_rate(config)` Adam's rate for
  `train.optimizer=lazy_adam`; `check_config(config)` fails on fields it cannot train with. A `two_tower` module also has `user_vectors` and `item_vectors`, whose cosines are its
  scores; any other has `score_all(users_B) -> float32[B, N]`.
  """

  module: Callable
  loss: Callable
  optimizer: Callable
  learning_rate: Callable
  check_config: Callable
  two_tower: bool


# The collection in which a module records, when it is mutable, which rows of its user- and
# item-indexed weights a batch read (`BatchReads`), for a sparse-row optimizer (`lazy_adam`).
ROW_READS = "row_reads"


@struct.dataclass
class RowReads:
  """How a batch read the rows of a weight W: batch row b is the sum over the entries t owned by
  its place (`owner_T[t] == place_B[b]`) of `value_T[t] * W[row_T[t]]`; entries of weight 0 read
  nothing. So W's gradient is nonzero only at the rows `row_T` names."""

  place_B: jax.Array  # int32[B]
  owner_T: jax.Array  # int32[T]
  row_T: jax.Array  # int32[T]
  value_T: jax.Array  # float32[T]

  @classmethod
  def lookup(cls, ids: jax.Array) -> RowReads:
    """An embedding lookup's reads: batch row b is W[ids[b]]."""
    ids_B = ids.reshape(-1)
    everyone = jnp.arange(ids_B.shape[0], dtype=jnp.int32)
    return cls(everyone, everyone, ids_B, jnp.ones(ids_B.shape, jnp.float32))


def by_rows(init):
  """`init` for a weight whose rows are users or items: its rows split over the mesh's `model` axis
  (Flax partitioning metadata, read by `parallel.param_shardings`)."""
  return nn.with_partitioning(init, (MODEL, None))


def resolve_first_layer(name: str, shape: tuple[int, int], nnz: int, platform: str) -> str:
  """The first layer's form for a Y of `shape` with `nnz` nonzeros, trained on `platform` ("cpu",
  "gpu", "tpu": a jax device's `platform`) (`auto`: see the module)."""
  if name != "auto":
    return name
  entries = shape[0] * shape[1]
  dense_enough = platform != "cpu" or nnz >= DENSE_MIN_DENSITY * entries
  return "dense" if entries <= DENSE_MAX_ENTRIES and dense_enough else "segment"


@struct.dataclass
class SparseRows:
  """The rows of one side of Y (users: Y_i*, items: Y_*j^T) on device, and how a tower reads them.

  `matrix` is a BCOO with sorted rows and `offsets[r]:offsets[r + 1]` its entries of row r. A batch
  of at most `batch_rows` rows is read as `shards` equal parts, one per device of the mesh's `data`
  axis. `dense` and `segment` lay a part's distinct rows, longest first, in a buffer whose p-th row
  has a fixed number of slots: the first of `staircases` that the part fits (`_distinct_rows_times`),
  the last (the p-th longest row of Y for the p-th row) fitting every part. `segment` and `reads`
  lay a part's distinct rows end to end in the first of `capacities` slots that holds their
  nonzeros (quantiles of typical batches' nonzeros, then the sum of the longest rows, which holds
  any). `padded` reads each row at the longest row's `width`.
  """

  matrix: jsparse.BCOO
  offsets: jax.Array  # int32[R + 1]
  form: str = struct.field(pytree_node=False, default="dense")
  batch_rows: int = struct.field(pytree_node=False, default=0)
  staircases: tuple[tuple[int, ...], ...] = struct.field(pytree_node=False, default=())
  capacities: tuple[int, ...] = struct.field(pytree_node=False, default=())
  width: int = struct.field(pytree_node=False, default=1)
  shards: int = struct.field(pytree_node=False, default=1)

  @classmethod
  def from_csr(
    cls,
    matrix: sparse.CSR,
    form: str,
    batch_rows: int,
    shards: int = 1,
    typical_batches: np.ndarray | None = None,
  ) -> SparseRows:
    """`matrix`'s rows for batches of at most `batch_rows` rows (`shards` parts) in `form`;
    `typical_batches` (int[n, batch_rows]), batches drawn as training draws them, size a staircase
    that they all fit, tried before the one that fits any batch."""
    if form not in FIRST_LAYERS[1:]:
      raise ValueError(f"unknown first-layer form {form!r}")
    lengths = matrix.row_lengths()
    part = max(batch_rows // shards, 1)
    staircases = [tuple(int(n) for n in _longest_first(lengths, np.arange(matrix.shape[0]), part))]
    capacities = [max(sum(staircases[0]), 1)]
    if typical_batches is not None:
      parts = typical_batches.reshape(-1, part)
      typical = np.max([_longest_first(lengths, rows, part) for rows in parts], axis=0)
      if typical.sum() < TYPICAL_SHARE * sum(staircases[0]):
        staircases.insert(0, tuple(int(n) for n in typical))
      nonzeros = [lengths[np.unique(rows)].sum() for rows in parts]
      capacities = _capacity_ladder(np.quantile(nonzeros, CAPACITY_QUANTILES), capacities[0])
    indices = np.stack([matrix.row_ids(), matrix.indices], axis=1)
    bcoo = jsparse.BCOO(
      (jnp.asarray(matrix.values), jnp.asarray(indices, jnp.int32)),
      shape=matrix.shape,
      indices_sorted=True,
      unique_indices=True,
    )
    return cls(
      matrix=bcoo,
      offsets=jnp.asarray(matrix.indptr.astype(np.int32)),
      form=form,
      batch_rows=batch_rows,
      staircases=tuple(staircases),
      capacities=tuple(capacities),
      width=max(int(lengths.max(initial=0)), 1),
      shards=shards,
    )

  @property
  def num_columns(self) -> int:
    return self.matrix.shape[1]

  def times(self, w1_CxH: jax.Array, ids_B: jax.Array) -> jax.Array:
    """The rows `ids_B` times W1 (l1 = x W1, Eq. 5), float32[B, H], in this rows' form."""
    if self.form == "padded":
      return _padded_times(self, w1_CxH, ids_B)
    batch = ids_B.shape[0]
    if batch > self.batch_rows:
      raise ValueError(
        f"a batch of {batch} rows exceeds the {self.batch_rows} these rows were built for"
      )
    if self.shards == 1:
      return _distinct_rows_times(self, w1_CxH, ids_B)
    ids_SxR = ids_B.reshape(self.shards, batch // self.shards)
    return jax.vmap(lambda ids_R: _distinct_rows_times(self, w1_CxH, ids_R))(ids_SxR).reshape(
      batch, -1
    )

  def reads(self, ids_B: jax.Array, level: int) -> RowReads:
    """Which rows of W1 the rows `ids_B` read (their nonzeros' columns, weighted by the values),
    laid in `capacities[level]` slots per shard."""
    if self.shards == 1:
      return _reads(self, ids_B, level)
    shard = ids_B.shape[0] // self.shards
    per_shard = jax.vmap(lambda ids_R: _reads(self, ids_R, level))(
      ids_B.reshape(self.shards, shard)
    )
    offset_Sx1 = (jnp.arange(self.shards, dtype=jnp.int32) * shard)[:, None]
    return RowReads(
      (per_shard.place_B + offset_Sx1).reshape(-1),
      (per_shard.owner_T + offset_Sx1).reshape(-1),
      per_shard.row_T.reshape(-1),
      per_shard.value_T.reshape(-1),
    )

  def fitting_level(self, ids_B: jax.Array) -> jax.Array:
    """The first of `capacities` that every shard of the rows `ids_B` fits (int32 scalar)."""
    ids_SxR = ids_B.reshape(self.shards, -1)
    nonzeros = jnp.max(jax.vmap(lambda ids_R: _placement(self, ids_R)[1][:, 1].sum())(ids_SxR))
    return _fitting(self.capacities, nonzeros)

  def read_slots(self, batch: int, level: int) -> int:
    """How many entries `reads` of a batch of `batch` rows lays at capacity `level`."""
    return self.shards * self.capacities[level]


@struct.dataclass
class BatchReads:
  """The rows of a user- or item-indexed weight that a batch read: `ids` looked up (`rows` None),
  or the rows `ids` of Y times W1. As `RowReads` laid in buffers of one of `levels` sizes: `at(level)`
  for the batch's `fitting_level()`, so that the update of a typical batch follows its real
  nonzeros and only a batch that overflows them pays for the buffers that fit any batch."""

  ids: jax.Array
  rows: SparseRows | None = None

  @property
  def levels(self) -> int:
    return 1 if self.rows is None else len(self.rows.capacities)

  def at(self, level: int) -> RowReads:
    return RowReads.lookup(self.ids) if self.rows is None else self.rows.reads(self.ids, level)

  def fitting_level(self) -> jax.Array:
    return jnp.int32(0) if self.rows is None else self.rows.fitting_level(self.ids)

  def slots(self, level: int) -> int:
    """How many entries `at(level)` holds (known from the shapes alone)."""
    size = int(np.prod(self.ids.shape))
    return size if self.rows is None else self.rows.read_slots(size, level)


def _reads(rows: SparseRows, ids_R: jax.Array, level: int) -> RowReads:
  place_of_R, placed_Rx2 = _placement(rows, ids_R)
  owner_T, columns_T, values_T = _end_to_end(rows, placed_Rx2, rows.capacities[level])
  return RowReads(place_of_R.astype(jnp.int32), owner_T, columns_T, values_T)


# A staircase sized on typical batches is kept when it has at most this share of the slots of the
# one that fits every batch: below that, the check and the second compiled branch pay for themselves.
TYPICAL_SHARE = 0.8
# The quantiles of typical batches' nonzeros that size the ladder of `capacities` (each one more
# compiled branch): a batch's work follows its own nonzeros to within a step of the ladder.
CAPACITY_QUANTILES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)
# A rung is dropped when the next holds at most this many times its slots: too close to pay.
CAPACITY_STEP = 1.1


def _capacity_ladder(quantiles: np.ndarray, any_batch: int) -> list[int]:
  """Increasing capacities from typical batches' nonzero `quantiles`, ending with `any_batch` (the
  capacity that holds every batch)."""
  ladder = [any_batch]
  for capacity in sorted((int(np.ceil(q)) for q in quantiles), reverse=True):
    if 0 < capacity and capacity * CAPACITY_STEP < ladder[0]:
      ladder.insert(0, capacity)
  return ladder


def _fitting(capacities: Sequence[int], nonzeros: jax.Array) -> jax.Array:
  """The index of the first of `capacities` that holds `nonzeros` (int32 scalar)."""
  return jnp.sum(nonzeros > jnp.asarray(capacities[:-1]), dtype=jnp.int32)


def _end_to_end(rows: SparseRows, placed_Rx2, capacity: int):
  """The placed rows' entries (start and length of each) end to end in `capacity` slots: (place
  int32[T] of each slot, its column, its value). Slots past the last entry belong to the last
  place and name the last column with a zero value."""
  lengths_R = placed_Rx2[:, 1]
  ends_R = jnp.cumsum(lengths_R)
  slot_T = jnp.arange(capacity, dtype=jnp.int32)
  place_T = jnp.searchsorted(ends_R, slot_T, side="right", method="scan_unrolled")
  valid_T = place_T < lengths_R.shape[0]
  place_T = jnp.minimum(place_T, lengths_R.shape[0] - 1).astype(jnp.int32)
  entry_T = jnp.where(valid_T, placed_Rx2[place_T, 0] + slot_T - (ends_R - lengths_R)[place_T], 0)
  values_T = jnp.where(valid_T, rows.matrix.data[entry_T], 0.0)
  columns_T = jnp.where(valid_T, rows.matrix.indices[entry_T, 1], rows.num_columns - 1)
  return place_T, columns_T, values_T


def _longest_first(lengths: np.ndarray, rows: np.ndarray, size: int) -> np.ndarray:
  """The lengths of the distinct `rows`, longest first, padded with zeros to `size`."""
  distinct = np.sort(lengths[np.unique(rows)])[::-1][:size]
  return np.pad(distinct, (0, size - distinct.size))


def _padded_times(rows: SparseRows, w1_CxH: jax.Array, ids_B: jax.Array) -> jax.Array:
  """The `padded` form: the batch's rows gathered into a BCOO with one batch dimension (each row
  padded to `width` with an out-of-range column), met by an embedding bag. Tried: the library's
  `bcoo_dot_general` on that BCOO, 4.3-4.9 ms forward and backward at 32 rows against 1.8-2.4 ms for
  the embedding bag (jax 0.10.2, 2 CPU cores)."""
  slot_L = jnp.arange(rows.width)
  starts_B = rows.offsets[ids_B]
  valid_BxL = slot_L < (rows.offsets[ids_B + 1] - starts_B)[:, None]
  entry_BxL = jnp.where(valid_BxL, starts_B[:, None] + slot_L, 0)
  batch_rows = jsparse.BCOO(
    (
      jnp.where(valid_BxL, rows.matrix.data[entry_BxL], 0.0),
      jnp.where(valid_BxL, rows.matrix.indices[entry_BxL, 1], rows.num_columns)[..., None],
    ),
    shape=(ids_B.shape[0], rows.num_columns),
  )
  gathered_BxLxH = jnp.take(w1_CxH, batch_rows.indices[..., 0], axis=0, mode="fill", fill_value=0)
  return jnp.einsum("blh,bl->bh", gathered_BxLxH, batch_rows.data)


def _distinct_rows_times(rows: SparseRows, w1_CxH: jax.Array, ids_R: jax.Array) -> jax.Array:
  """The `dense` and `segment` forms of one shard's rows.

  The shard's distinct rows (a row drawn twice is read once and its product copied), longest first,
  are laid out in a buffer. `dense`: a buffer whose p-th row has a fixed number of slots (a
  staircase), so each slot's row is known when the program is compiled (slots past a row's length
  are masked out), added into a [rows, columns] block and multiplied; the batch takes the first
  staircase of `rows.staircases` that it fits (`lax.cond`). `segment`: the rows' entries end to end
  in the first of `rows.capacities` that holds them (`lax.switch`; each slot's row found by
  bisection of the rows' ends), the rows of W1 they name weighted and summed per row. Either way a
  batch's work follows a typical batch's nonzeros, not the worst batch's. Repeats and the order come
  from comparing every pair of the shard's rows, which costs less than sorting them on a CPU.

  Tried for `dense`, per step of an ML-100k batch's item rows (256 rows, 2 CPU cores, forward and
  backward): the library's `BCOO.todense` of the buffer 1.65-1.95 ms, each slot's row found by a
  cumulative sum over the slots 1.6 ms (the sum alone 0.49 ms), rows ordered by sorting 1.4 ms,
  by comparing pairs in the staircase that fits every batch 1.3 ms; the dense Y on device that this
  replaces, gathered, 0.9-1.1 ms.
  """
  place_of_R, placed_Rx2 = _placement(rows, ids_R)
  if rows.form == "dense":
    # The block depends on the data alone: chosen by `cond`, it is multiplied outside it, so the
    # gradient never goes through the branches.
    staircases = [np.asarray(widths[: ids_R.shape[0]]) for widths in rows.staircases]
    block_RxC = _through_first_fitting(staircases, placed_Rx2, functools.partial(_block, rows))
    placed_RxH = block_RxC @ w1_CxH
  else:
    placed_RxH = jax.lax.switch(
      _fitting(rows.capacities, placed_Rx2[:, 1].sum()),
      [
        functools.partial(_segment_times, rows, w1_CxH, placed_Rx2, capacity)
        for capacity in rows.capacities
      ],
    )
  return placed_RxH[place_of_R]


def _placement(rows: SparseRows, ids_R: jax.Array):
  """Where a shard's distinct rows go, longest first: (the place each of `ids_R` reads,
  int32[R]; (start, length) of the row at each place, int32[R, 2], repeats placed last with
  length 0)."""
  num_rows = ids_R.shape[0]
  first_of_R = jnp.argmax(ids_R[:, None] == ids_R[None, :], axis=1)  # a row's first occurrence
  first_R = first_of_R == np.arange(num_rows)
  earlier_RxR = np.tril(np.ones((num_rows, num_rows), bool), -1)  # [b, c]: c before b
  starts_R = rows.offsets[ids_R]
  lengths_R = jnp.where(first_R, rows.offsets[ids_R + 1] - starts_R, 0)
  # A row's place: how many rows are longer, or as long and earlier. Repeats (length 0) go last.
  ahead_RxR = (lengths_R[None, :] > lengths_R[:, None]) | (
    (lengths_R[None, :] == lengths_R[:, None]) & earlier_RxR
  )
  place_R = jnp.sum(ahead_RxR, axis=1)
  placed_Rx2 = (
    jnp.zeros((num_rows, 2), jnp.int32)
    .at[place_R]
    .set(jnp.stack([starts_R, lengths_R], axis=1), unique_indices=True)
  )
  return place_R[first_of_R], placed_Rx2


def _through_first_fitting(staircases, placed_Rx2, fn):
  """`fn(placed_Rx2, widths)` for the first staircase that every placed row fits."""

  def through(level: int) -> jax.Array:
    call = functools.partial(fn, placed_Rx2, staircases[level])
    if level == len(staircases) - 1:
      return call()
    fits = jnp.all(placed_Rx2[:, 1] <= staircases[level])
    return jax.lax.cond(fits, call, lambda: through(level + 1))

  return through(0)


def _slots(rows: SparseRows, placed_Rx2, widths: np.ndarray):
  """The placed rows' entries (start and length of each, longest first) in a buffer of `widths[p]`
  slots for the p-th row: (row int32[T] of each slot, its column, its value). Masked slots name the
  last column with a zero value, so slots stay in (row, column) order."""
  owner_T = np.repeat(np.arange(placed_Rx2.shape[0], dtype=np.int32), widths)
  offset_T = np.arange(owner_T.size, dtype=np.int32) - np.repeat(np.cumsum(widths) - widths, widths)
  start_and_length_Tx2 = placed_Rx2[owner_T]
  valid_T = offset_T < start_and_length_Tx2[:, 1]
  entry_T = jnp.where(valid_T, start_and_length_Tx2[:, 0] + offset_T, 0)
  values_T = jnp.where(valid_T, rows.matrix.data[entry_T], 0.0)
  columns_T = jnp.where(valid_T, rows.matrix.indices[entry_T, 1], rows.num_columns - 1)
  return owner_T, columns_T, values_T


def _block(rows: SparseRows, placed_Rx2, widths: np.ndarray) -> jax.Array:
  """The placed rows as a dense float32[R, C] block."""
  owner_T, columns_T, values_T = _slots(rows, placed_Rx2, widths)
  num_rows, num_columns = placed_Rx2.shape[0], rows.num_columns
  block = (
    jnp.zeros(num_rows * num_columns)
    .at[owner_T * num_columns + columns_T]
    .add(values_T, mode="promise_in_bounds", indices_are_sorted=True)
  )
  return block.reshape(num_rows, num_columns)


def _segment_times(rows: SparseRows, w1_CxH, placed_Rx2, capacity: int) -> jax.Array:
  """The placed rows times W1: the rows of W1 their entries name, weighted and summed per row."""
  owner_T, columns_T, values_T = _end_to_end(rows, placed_Rx2, capacity)
  return jax.ops.segment_sum(
    w1_CxH[columns_T] * values_T[:, None],
    owner_T,
    num_segments=placed_Rx2.shape[0],
    indices_are_sorted=True,
  )


def placeholder_rows(num_columns: int) -> SparseRows:
  """One row of `num_columns` columns holding a single stored zero: enough to initialise a tower,
  whose parameter shapes depend on Y's shape only."""
  return SparseRows.from_csr(sparse.CSR.from_coo([0], [0], [0.0], (1, num_columns)), "dense", 1)


def init_params(module: nn.Module, key: jax.Array, shape: tuple[int, int]):
  """`module`'s initial parameters for a Y of `shape`, their partitioning metadata kept
  (`nn.unbox` drops it)."""
  num_users, num_items = shape
  return module.init(
    key,
    placeholder_rows(num_items),
    placeholder_rows(num_users),
    jnp.zeros(1, jnp.int32),
    jnp.zeros((1, 1), jnp.int32),
  )["params"]


class FirstLayer(nn.Module):
  """A tower's first layer, l1 = W1 x without bias (Eq. 5), over rows of Y. W1 (`kernel`) has one
  row per column of Y, so its rows are split over the mesh's `model` axis."""

  features: int

  @nn.compact
  def __call__(self, rows: SparseRows, ids_B: jax.Array) -> jax.Array:
    kernel = self.param(
      "kernel", by_rows(init_normal), (rows.num_columns, self.features), jnp.float32
    )
    if self.is_mutable_collection(ROW_READS):
      self.sow(ROW_READS, "kernel", BatchReads(ids_B, rows))
    # A zero added to the output (when the step passes `perturbations`) whose gradient is the
    # output's: `lazy_adam` takes W1's gradient from it at the rows read, never a dense one.
    return self.perturb("kernel", rows.times(kernel, ids_B))


class RowEmbed(nn.Module):
  """An embedding lookup (as `nn.Embed`: `embedding[ids]`, N(0, 0.01)) that records its reads and
  takes a perturbation like `FirstLayer`, for `lazy_adam`. Parameter `embedding`, split by rows."""

  num_embeddings: int
  features: int

  @nn.compact
  def __call__(self, ids: jax.Array) -> jax.Array:
    embedding = self.param(
      "embedding", by_rows(init_normal), (self.num_embeddings, self.features), jnp.float32
    )
    if self.is_mutable_collection(ROW_READS):
      self.sow(ROW_READS, "embedding", BatchReads(ids))
    return self.perturb("embedding", jnp.take(embedding, ids, axis=0))


class Tower(nn.Module):
  """A tower (Eq. 7): rows of Y to latent vectors, float32[B, widths[-1]]. Its parameters are
  `first/kernel`, then `hidden_<i>/{kernel,bias}` for each further layer, ReLU(W l + b) (Eq. 5)."""

  widths: Sequence[int]

  @nn.compact
  def __call__(self, rows: SparseRows, ids_B: jax.Array) -> jax.Array:
    out = FirstLayer(self.widths[0], name="first")(rows, ids_B)
    for index, width in enumerate(self.widths[1:]):
      out = nn.relu(nn.Dense(width, kernel_init=init_normal, name=f"hidden_{index}")(out))
    return out


def pair_cosines(p_PxD: jax.Array, q_PCxD: jax.Array) -> jax.Array:
  """Cosines of P users each against its C items (q laid out user-major), float32[P, C]."""
  count = q_PCxD.shape[0] // p_PxD.shape[0]
  return batched_cosine(jnp.repeat(p_PxD, count, axis=0), q_PCxD).reshape(-1, count)


def scores_with_batch(p_PxD: jax.Array, q_PCxD: jax.Array) -> jax.Array:
  """Cosines of P users each against its C items (first) and then against every item of the batch,
  the user's own C masked to -inf (they are already counted): float32[P, C + P * C]. The other
  users' items are in-batch negatives (beyond the paper; only the `softmax` loss reads them)."""
  own_PxC = pair_cosines(p_PxD, q_PCxD)
  num_users, count = own_PxC.shape
  every_PxPC = normalize(p_PxD) @ normalize(q_PCxD).T
  own_block = (jnp.arange(num_users * count) // count)[None, :] == jnp.arange(num_users)[:, None]
  return jnp.concatenate([own_PxC, jnp.where(own_block, -jnp.inf, every_PxPC)], axis=1)


class DMF(nn.Module):
  """DMF (Section 3.2): a user tower over rows of Y and an item tower over its columns, scored by
  their cosine. Parameters `user_tower/...` and `item_tower/...`. With `in_batch_negatives`, a
  batch's scores also hold every user against every item of the batch (`scores_with_batch`)."""

  user_layers: Sequence[int]
  item_layers: Sequence[int]
  in_batch_negatives: bool = False

  def setup(self):
    self.user_tower = Tower(tuple(self.user_layers))
    self.item_tower = Tower(tuple(self.item_layers))

  def user_vectors(self, user_rows: SparseRows, ids_B: jax.Array) -> jax.Array:
    return self.user_tower(user_rows, ids_B)

  def item_vectors(self, item_rows: SparseRows, ids_B: jax.Array) -> jax.Array:
    return self.item_tower(item_rows, ids_B)

  def __call__(self, user_rows, item_rows, users_P, items_PxC) -> jax.Array:
    """Cosines of P users against their C items each, float32[P, C] (then the batch's items)."""
    p_PxD = self.user_vectors(user_rows, users_P)
    q_PCxD = self.item_vectors(item_rows, items_PxC.reshape(-1))
    scores = scores_with_batch if self.in_batch_negatives else pair_cosines
    return scores(p_PxD, q_PCxD)


class LFM(nn.Module):
  """LFM (Table 3): a one-layer DMF whose input is a one-hot id, i.e. learnt vectors. Parameters
  `user_embedding/embedding` and `item_embedding/embedding`; `in_batch_negatives` as DMF's."""

  num_users: int
  num_items: int
  factors: int
  in_batch_negatives: bool = False

  def setup(self):
    self.user_embedding = RowEmbed(self.num_users, self.factors)
    self.item_embedding = RowEmbed(self.num_items, self.factors)

  def user_vectors(self, user_rows, ids_B: jax.Array) -> jax.Array:
    return self.user_embedding(ids_B)

  def item_vectors(self, item_rows, ids_B: jax.Array) -> jax.Array:
    return self.item_embedding(ids_B)

  def __call__(self, user_rows, item_rows, users_P, items_PxC) -> jax.Array:
    p_PxD = self.user_vectors(user_rows, users_P)
    q_PCxD = self.item_vectors(item_rows, items_PxC.reshape(-1))
    scores = scores_with_batch if self.in_batch_negatives else pair_cosines
    return scores(p_PxD, q_PCxD)


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
