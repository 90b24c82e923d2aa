"""Training DMF and LFM (Algorithm 1), and the NCF models: a pure step, compiled epochs, on-device
negatives, checkpoints, resume.

The step (`train_step`) and the epoch (`plan_epoch`, then `train_steps`) are pure module-level
functions of a `TrainState` (step, params, optimizer state) and the training data; `Trainer` binds
them to one config with `functools.partial` and jits them with their shardings. An epoch's plan
shuffles the training positives; each step draws `train.neg_ratio` negatives per positive of its
batch from the user's unobserved items (`negatives`: a positive's draws depend on the epoch's key
and its index alone, so memory stays bounded at any catalogue size); the steps run in a `lax.scan`, in chunks of `train.chunk_steps`
(the host reads each chunk's losses, for progress, while the next chunk runs; the parameters are
those of one scan over the epoch, bit for bit). A batch holds positives with their own negatives (same user), so the user
tower runs once per positive; `train.batch_size` counts instances and is rounded down to a
multiple of 1 + neg_ratio. PRNG keys derive from `seed` and the epoch, so a resumed run continues
the same stream.

A model family (`FAMILIES`) is data: its Flax module, loss and optimizer (`models.Family`). The
epoch runs on the device mesh of `config.mesh` (`parallel`): each step's positives are split over
the `data` axis, the data replicated, and the parameters placed by their Flax partitioning metadata
(user- and item-indexed weights split by rows over `model`); 1 device and N run the same program.
A sweep member's seeds can train as one program (`SeedBatch`, `sweep.vmap_seeds`): the same
epoch vmapped over states stacked on a leading axis.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import threading
import time
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct, traverse_util

from dmf_jax import checkpoints, losses, models, ncf, negatives, parallel, sparse
from dmf_jax.context import Context, Outcome
from dmf_jax.errors import ConfigError, UserError
from dmf_jax.progress import Progress
from dmf_jax.workdir import METRICS, Workdir

log = logging.getLogger(__name__)

CHECKPOINT_DIR = checkpoints.FOLDER


class TrainingError(UserError):
  """Training cannot go on (a non-finite loss); the last good checkpoint is kept."""


class TrainState(struct.PyTreeNode):
  """Everything a step updates: the step count, the parameters and the optimizer's state."""

  step: jax.Array
  params: Any
  opt_state: Any


@struct.dataclass
class TrainData:
  """Everything an epoch reads, resident on the device."""

  user_rows: models.SparseRows  # Y_i*, the user tower's input and the observed items of users
  item_rows: models.SparseRows  # Y_*j, the item tower's input
  pos_users: jax.Array  # int32[T], the training positives
  pos_items: jax.Array  # int32[T]
  pos_targets: jax.Array  # float32[T], the loss target of each positive


def _check_towers(config) -> None:
  """DMF's and LFM's model fields."""
  model = config.model
  for side in ("user_layers", "item_layers"):
    widths = tuple(model[side])
    if not widths or any(int(w) < 1 for w in widths):
      raise ConfigError(f"model.{side}={widths}: give one or more positive widths")
  if model.user_layers[-1] != model.item_layers[-1]:
    raise ConfigError(
      f"model.user_layers and model.item_layers must end in the same latent size "
      f"({model.user_layers[-1]} != {model.item_layers[-1]})"
    )
  if model.loss not in losses.LOSSES:
    raise ConfigError(f"model.loss={model.loss!r}: choose one of {', '.join(losses.LOSSES)}")
  if model.in_batch_negatives and model.loss != "softmax":
    raise ConfigError(
      f"model.in_batch_negatives=True with model.loss={model.loss!r}: only the softmax loss reads "
      "in-batch negatives; set model.loss=softmax"
    )
  if model.first_layer not in models.FIRST_LAYERS:
    raise ConfigError(
      f"model.first_layer={model.first_layer!r}: choose one of {', '.join(models.FIRST_LAYERS)}"
    )


def _adam(config) -> optax.GradientTransformation:
  return optax.adam(config.train.lr)


# `train.optimizer`: the family's own (exact Adam for DMF, LFM and NCF), or Adam whose user- and
# item-indexed weights are updated at the rows a batch reads only (`lazy_adam_step`).
OPTIMIZERS = ("adam", "lazy_adam")


FAMILIES = {
  "dmf": models.Family(
    module=lambda config, shape: models.DMF(
      tuple(config.model.user_layers),
      tuple(config.model.item_layers),
      config.model.in_batch_negatives,
    ),
    loss=lambda config: losses.for_model(config.model),
    optimizer=_adam,
    learning_rate=lambda config: config.train.lr,
    check_config=_check_towers,
    two_tower=True,
  ),
  "lfm": models.Family(
    module=lambda config, shape: models.LFM(
      *shape, config.model.user_layers[-1], config.model.in_batch_negatives
    ),
    loss=lambda config: losses.for_model(config.model),
    optimizer=_adam,
    learning_rate=lambda config: config.train.lr,
    check_config=_check_towers,
    two_tower=True,
  ),
  **{name: ncf.FAMILY for name in ncf.NAMES},
}


def check_config(config) -> None:
  """Out-of-range training values fail here, before any compute."""
  model, train = config.model, config.train
  FAMILIES[model.name].check_config(config)
  if model.l2 < 0:
    raise ConfigError(f"model.l2={model.l2}: must be >= 0")
  if train.neg_ratio < 1:
    raise ConfigError(f"train.neg_ratio={train.neg_ratio}: must be at least 1")
  if not train.lr > 0 or not math.isfinite(train.lr):
    raise ConfigError(f"train.lr={train.lr}: must be a finite number > 0")
  if train.epochs < 1:
    raise ConfigError(f"train.epochs={train.epochs}: must be at least 1")
  if train.optimizer not in OPTIMIZERS:
    raise ConfigError(f"train.optimizer={train.optimizer!r}: choose one of {', '.join(OPTIMIZERS)}")
  if train.lazy_max_read_share <= 0:
    raise ConfigError(f"train.lazy_max_read_share={train.lazy_max_read_share}: must be above 0")
  if train.optimizer == "lazy_adam" and model.l2:
    raise ConfigError(
      f"model.l2={model.l2} with train.optimizer=lazy_adam: the penalty's gradient is dense in "
      "every row; set model.l2=0 or use train.optimizer=adam"
    )
  if train.optimizer == "lazy_adam" and ncf.is_pretrained(config):
    raise ConfigError(
      "train.optimizer=lazy_adam: NeuMF-p trains with model.neumf_optimizer; use train.optimizer=adam"
    )
  if train.chunk_steps < 1:
    raise ConfigError(f"train.chunk_steps={train.chunk_steps}: must be at least 1")
  if train.batch_size < 1 + train.neg_ratio:
    raise ConfigError(
      f"train.batch_size={train.batch_size} holds no positive with its {train.neg_ratio} negatives"
    )
  if train.patience is not None and train.patience < 1:
    raise ConfigError(f"train.patience={train.patience}: must be at least 1 (or unset)")


def positives_per_batch(config) -> int:
  return config.train.batch_size // (1 + config.train.neg_ratio)


def build_data(config, train: sparse.CSR, max_target: float, mesh) -> TrainData:
  """Puts the training Y on every device of `mesh` as BCOO rows read in the first layer's form
  (`model.first_layer`), with the training positives and their targets."""
  form = models.resolve_first_layer(
    config.model.first_layer, train.shape, train.nnz, mesh.devices.flat[0].platform
  )
  per_batch = positives_per_batch(config)
  shards = mesh.shape[parallel.DATA]
  log.info("first layer: %s rows of Y (model.first_layer=%s)", form, config.model.first_layer)
  if FAMILIES[config.model.name].two_tower:
    targets = losses.target(config.model.loss, train.values, max_target)
  else:  # NCF's log loss: every positive targets 1
    targets = np.ones_like(train.values)
  users, items = typical_batches(train, per_batch, config.train.neg_ratio)
  data = TrainData(
    user_rows=models.SparseRows.from_csr(train, form, per_batch, shards, users),
    item_rows=models.SparseRows.from_csr(
      train.transpose(), form, per_batch * (1 + config.train.neg_ratio), shards, items
    ),
    pos_users=jnp.asarray(train.row_ids()),
    pos_items=jnp.asarray(train.indices),
    pos_targets=jnp.asarray(targets, jnp.float32),
  )
  return parallel.replicate(data, mesh)


# How many batches are drawn to size the buffers of a typical batch's rows (`models.SparseRows`).
TYPICAL_BATCHES = 2000


def typical_batches(train: sparse.CSR, positives: int, neg_ratio: int):
  """(users int[n, P], items int[n, P * (1 + K)]) of `TYPICAL_BATCHES` batches drawn as an epoch
  draws them: positives uniformly from the ratings (a user or item as often as its row is long),
  each followed by K uniformly drawn items. Only buffer sizes depend on them, never results."""
  rng = np.random.default_rng(0)
  ratings = rng.integers(0, train.nnz, (TYPICAL_BATCHES, positives))
  users = train.row_ids()[ratings]
  negatives = rng.integers(0, train.shape[1], (TYPICAL_BATCHES, positives, neg_ratio))
  items = np.concatenate([train.indices[ratings][..., None], negatives], axis=2)
  return users, items.reshape(TYPICAL_BATCHES, -1)


def l2_penalty(params) -> jax.Array:
  """Sum of squared weights, biases excluded."""
  leaves = jax.tree_util.tree_leaves_with_path(params)
  return sum(jnp.sum(w * w) for path, w in leaves if getattr(path[-1], "key", None) != "bias")


def batch_loss(
  params, data: TrainData, users_P, items_PxC, targets_PxC, *, module, scores_loss, l2
):
  """Mean loss of P positives, each with its user's negatives (columns 1..C-1), plus L2."""
  scores_PxC = module.apply({"params": params}, data.user_rows, data.item_rows, users_P, items_PxC)
  loss = jnp.mean(scores_loss(scores_PxC, targets_PxC))
  if not l2:
    # A zero penalty still costs a pass over every weight and its gradient per step: skip it.
    return loss
  return loss + l2 * l2_penalty(params)


def train_step(state: TrainState, data: TrainData, batch, *, loss_fn, optimizer):
  """One optimizer step on `batch` = (users_P, items_PxC, targets_PxC). Returns (state, loss)."""
  loss, grads = jax.value_and_grad(loss_fn)(state.params, data, *batch)
  updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  return state.replace(step=state.step + 1, params=params, opt_state=opt_state), loss


def plan_epoch(data: TrainData, shuffle_key, *, positives_per_batch: int):
  """An epoch's batches: `int32[steps, P]`, indices of training positives."""
  num_positives = data.pos_users.shape[0]
  steps = num_positives // positives_per_batch
  order = jax.random.permutation(shuffle_key, num_positives)
  return order[: steps * positives_per_batch].reshape(steps, positives_per_batch)


def train_steps(
  state: TrainState,
  data: TrainData,
  order_SxP,
  negatives_key,
  first,
  num_steps: int,
  *,
  step_fn,
  neg_ratio: int,
  batch_sharding,
):
  """Steps `first` to `first + num_steps` of an epoch's plan in a `lax.scan` of `step_fn`, each
  drawing its positives' negatives. Returns (state, per-step losses, per-step collisions of the
  negatives with observed items)."""
  batches = jax.lax.dynamic_slice_in_dim(order_SxP, first, num_steps)

  def step(state, batch_P):
    batch_P = jax.lax.with_sharding_constraint(batch_P, batch_sharding)
    users_P = data.pos_users[batch_P]
    negatives_PxK, collisions = negatives.sample(
      negatives_key, data.user_rows, batch_P, users_P, neg_ratio
    )
    items_PxC = jnp.concatenate([data.pos_items[batch_P][:, None], negatives_PxK], 1)
    targets_PxC = jnp.zeros(items_PxC.shape).at[:, 0].set(data.pos_targets[batch_P])
    state, loss = step_fn(state, data, (users_P, items_PxC, targets_PxC))
    return state, (loss, collisions)

  state, (losses, collisions) = jax.lax.scan(step, state, batches)
  return state, losses, collisions


def lazy_adam_step(
  state: TrainState,
  data: TrainData,
  batch,
  *,
  module,
  scores_loss,
  learning_rate: float,
  max_read_share: float = 0.5,
  b1: float = 0.9,
  b2: float = 0.999,
  eps: float = 1e-8,
):
  """`train_step` with `lazy_adam`: Adam in which every user- and item-indexed weight (those whose
  reads the module records, `models.BatchReads`: DMF's first layers, the embeddings of LFM and NCF)
  is read, updated and written at the rows the batch read only, with their moments, as TensorFlow's
  LazyAdam; every other weight takes exact Adam (optax's, whose state this keeps). Such a weight's
  gradient at those rows comes from the gradient of its output (a Flax perturbation), so no dense
  gradient of it is ever formed. A row's moments do not decay in steps that do not read it. A
  weight whose typical step can read more than `max_read_share` of its rows takes exact Adam too."""
  users_P, items_PxC, targets_PxC = batch
  inputs = (data.user_rows, data.item_rows, users_P, items_PxC)
  params = traverse_util.flatten_dict(state.params)
  _, shapes = jax.eval_shape(
    lambda params: module.apply(
      {"params": params}, *inputs, mutable=["perturbations", models.ROW_READS]
    ),
    state.params,
  )
  perturbations = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes["perturbations"])
  # Lazily where a step's reads are few against the weight's rows: where they are not (a small
  # catalogue's, or a tower whose rows are long), exact Adam costs less than finding them.
  row_paths = {
    path
    for path, (read,) in traverse_util.flatten_dict(shapes[models.ROW_READS]).items()
    if read.slots(0) <= max_read_share * params[path].shape[0]
  }
  dense = {path: w for path, w in params.items() if path not in row_paths}

  def loss_fn(dense, perturbations):
    variables = {
      "params": traverse_util.unflatten_dict({**params, **dense}),
      "perturbations": perturbations,
    }
    scores, reads = module.apply(variables, *inputs, mutable=[models.ROW_READS])
    return jnp.mean(scores_loss(scores, targets_PxC)), reads[models.ROW_READS]

  (loss, reads), (dense_grads, output_grads) = jax.value_and_grad(
    loss_fn, argnums=(0, 1), has_aux=True
  )(dense, perturbations)
  reads, output_grads = traverse_util.flatten_dict(reads), traverse_util.flatten_dict(output_grads)
  adam, rest = state.opt_state
  count = optax.safe_increment(adam.count)
  mu, nu = traverse_util.flatten_dict(adam.mu), traverse_util.flatten_dict(adam.nu)
  correction_1, correction_2 = 1 - b1**count, 1 - b2**count

  def adam_at(w, g, m, v):
    m = (1 - b1) * g + b1 * m
    v = (1 - b2) * g * g + b2 * v
    step = (m / correction_1.astype(m.dtype)) / (jnp.sqrt(v / correction_2.astype(v.dtype)) + eps)
    return w - learning_rate * step, m, v

  new = {path: adam_at(params[path], dense_grads[path], mu[path], nu[path]) for path in dense}
  for path in row_paths:
    (read,) = reads[path]
    grads = output_grads[path]
    level = read.fitting_level()
    new[path] = (params[path], mu[path], nu[path])
    for at in range(read.levels):
      update = functools.partial(_lazy_rows, read.at, at, grads, adam_at=adam_at)
      new[path] = _run_if(level == at, update, new[path])
  unflat = lambda i: traverse_util.unflatten_dict({path: new[path][i] for path in params})  # noqa: E731
  opt_state = (adam._replace(count=count, mu=unflat(1), nu=unflat(2)), rest)
  return state.replace(step=state.step + 1, params=unflat(0), opt_state=opt_state), loss


def _run_if(predicate, fn, operand):
  """`fn(operand)` where `predicate` holds, else `operand`, as a loop of at most one pass: XLA
  updates a loop's carried weights in place, where `lax.cond`'s branches return copies of them (a
  step 28 ms slower than exact Adam at a 92,221 x 256 W1 on 2 CPU cores, amazon_movies_synth)."""
  return jax.lax.while_loop(
    lambda carry: carry[0], lambda carry: (jnp.zeros((), bool), fn(carry[1])), (predicate, operand)
  )[1]


def _lazy_rows(reads_at, level: int, output_grads, wmv, *, adam_at):
  """(w, m, v) after Adam at the rows `reads_at(level)` names, the others untouched."""
  read = reads_at(level)
  w, m, v = wmv
  rows_U, grads_U = _row_gradients(read, output_grads, w.shape[0])
  taken = [jnp.take(a, rows_U, axis=0, mode="fill", fill_value=0) for a in (w, m, v)]
  new_U = adam_at(taken[0], grads_U, taken[1], taken[2])
  return tuple(
    whole.at[rows_U].set(part, mode="drop") for whole, part in zip((w, m, v), new_U, strict=True)
  )


def _row_gradients(read: models.RowReads, output_grads, num_rows: int):
  """The rows a batch read, each at the first entry that reads it (int32[T], `num_rows` at the
  other entries), and the weight's gradient there: the reads' values times their batch rows'
  output gradients, summed per row. Each entry finds its row's first entry through a scatter-min
  into an int32[num_rows] (a few MB), not by sorting the entries: a sort of 75k entries dominated
  the step at a million rows on 2 CPU cores."""
  grads_BxH = output_grads.reshape(-1, output_grads.shape[-1])
  placed_BxH = jax.ops.segment_sum(grads_BxH, read.place_B, num_segments=grads_BxH.shape[0])
  contributions_TxH = read.value_T[:, None] * placed_BxH[read.owner_T]
  size = read.row_T.shape[0]
  entry_T = jnp.arange(size, dtype=jnp.int32)
  read_T = read.value_T != 0
  first_of_row = (
    jnp.full(num_rows, size, jnp.int32).at[read.row_T].min(jnp.where(read_T, entry_T, size))
  )
  first_T = first_of_row[read.row_T]
  grads_UxH = jax.ops.segment_sum(contributions_TxH, first_T, num_segments=size)
  rows_U = jnp.where(read_T & (first_T == entry_T), read.row_T, num_rows)
  return rows_U, grads_UxH


def train_epoch(
  state: TrainState,
  data: TrainData,
  shuffle_key,
  negatives_key,
  *,
  step_fn,
  positives_per_batch: int,
  neg_ratio: int,
  batch_sharding,
):
  """One pass over the positives as one program. Returns (state, per-step losses, negative
  collisions)."""
  order_SxP = plan_epoch(data, shuffle_key, positives_per_batch=positives_per_batch)
  state, step_losses, collisions = train_steps(
    state,
    data,
    order_SxP,
    negatives_key,
    0,
    order_SxP.shape[0],
    step_fn=step_fn,
    neg_ratio=neg_ratio,
    batch_sharding=batch_sharding,
  )
  return state, step_losses, jnp.sum(collisions)


def all_vectors(params, data: TrainData, *, module, chunks: tuple[int, int], batch_sharding):
  """Unit-length vectors of every user and item of a two-tower model, in chunks of its batches'
  sizes (the sizes its rows were built for)."""

  def all_of(method, rows, chunk):
    count = rows.matrix.shape[0]
    padded = -(-count // chunk) * chunk
    ids = jnp.minimum(jnp.arange(padded), count - 1).reshape(-1, chunk)
    out = jax.lax.map(
      lambda ids_B: module.apply(
        {"params": params},
        rows,
        jax.lax.with_sharding_constraint(ids_B, batch_sharding),
        method=method,
      ),
      ids,
    )
    return models.normalize(out.reshape(padded, -1)[:count])

  users = all_of("user_vectors", data.user_rows, chunks[0])
  items = all_of("item_vectors", data.item_rows, chunks[1])
  return users, items


def init_state(key, params=None, *, module, optimizer, shape) -> TrainState:
  """A fresh optimizer state, over `params` when given, else over the module's initial params."""
  if params is None:
    params = nn.unbox(models.init_params(module, key, shape))
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=optimizer.init(params))


class Trainer:
  """The pure functions of training bound to one config and data shape, jitted with their
  shardings."""

  def __init__(self, config, shape: tuple[int, int]):
    self.config = config
    self.shape = shape
    self.family = FAMILIES[config.model.name]
    self.module = self.family.module(config, shape)
    self.optimizer = self.family.optimizer(config)
    self.scores_loss = self.family.loss(config)
    self.positives_per_batch = positives_per_batch(config)
    self.mesh = parallel.make_mesh(config)
    parallel.check_batch(self.mesh, self.positives_per_batch)
    boxed = jax.eval_shape(
      lambda key: models.init_params(self.module, key, shape), jax.random.key(0)
    )
    params_shardings = parallel.param_shardings(self.mesh, boxed)
    self._abstract_params = jax.tree.map(_abstract, nn.unbox(boxed), params_shardings)
    opt_state = jax.eval_shape(self.optimizer.init, nn.unbox(boxed))
    opt_state_shardings = parallel.opt_state_shardings(
      self.mesh, self.optimizer, opt_state, params_shardings
    )
    self._abstract_opt_state = jax.tree.map(_abstract, opt_state, opt_state_shardings)
    everywhere = parallel.replicated(self.mesh)
    state_shardings = TrainState(
      step=everywhere, params=params_shardings, opt_state=opt_state_shardings
    )
    batches = parallel.batch_sharding(self.mesh)
    # Created in place: a `model`-split weight never exists whole on one device.
    self.init_state = jax.jit(
      functools.partial(init_state, module=self.module, optimizer=self.optimizer, shape=shape),
      in_shardings=everywhere,
      out_shardings=state_shardings,
    )
    loss_fn = functools.partial(
      batch_loss, module=self.module, scores_loss=self.scores_loss, l2=config.model.l2
    )
    if config.train.optimizer == "lazy_adam":
      step_fn = functools.partial(
        lazy_adam_step,
        module=self.module,
        scores_loss=self.scores_loss,
        learning_rate=self.family.learning_rate(config),
        max_read_share=config.train.lazy_max_read_share,
      )
    else:
      step_fn = functools.partial(train_step, loss_fn=loss_fn, optimizer=self.optimizer)
    # The epoch as one program: what the chunked epoch below must equal, bit for bit.
    self.whole_epoch = jax.jit(
      functools.partial(
        train_epoch,
        step_fn=step_fn,
        positives_per_batch=self.positives_per_batch,
        neg_ratio=config.train.neg_ratio,
        batch_sharding=batches,
      ),
      in_shardings=(state_shardings, everywhere, everywhere, everywhere),
      out_shardings=(state_shardings, everywhere, everywhere),
      donate_argnums=0,
    )
    # The epoch as training runs it: its plan, then its steps in chunks of `train.chunk_steps`
    # (one program per chunk length, so at most two), which lets the host follow its progress.
    self._plan_epoch = jax.jit(
      functools.partial(plan_epoch, positives_per_batch=self.positives_per_batch),
      in_shardings=everywhere,
      out_shardings=everywhere,
    )
    steps_fn = functools.partial(
      train_steps, step_fn=step_fn, neg_ratio=config.train.neg_ratio, batch_sharding=batches
    )
    self._train_steps = jax.jit(
      steps_fn,
      static_argnums=5,
      in_shardings=(state_shardings, everywhere, everywhere, everywhere, everywhere),
      out_shardings=(state_shardings, everywhere, everywhere),
      donate_argnums=0,
    )
    # Several seeds' epochs (`SeedBatch`): the same plan and steps, vmapped over stacked states and
    # keys (one device, so the placement is the default one).
    self._plan_seeds = jax.jit(
      jax.vmap(
        functools.partial(plan_epoch, positives_per_batch=self.positives_per_batch), (None, 0)
      )
    )
    self._train_seeds = jax.jit(
      jax.vmap(steps_fn, in_axes=(0, None, 0, 0, None, None)),
      static_argnums=5,
      donate_argnums=0,
    )
    self.vectors = self.score_all = None
    if self.family.two_tower:
      chunks = (self.positives_per_batch, self.positives_per_batch * (1 + config.train.neg_ratio))
      self.vectors = jax.jit(
        functools.partial(all_vectors, module=self.module, chunks=chunks, batch_sharding=batches),
        in_shardings=(params_shardings, everywhere),
        out_shardings=everywhere,
      )
    else:
      self.score_all = jax.jit(
        lambda params, users_B: self.module.apply({"params": params}, users_B, method="score_all")
      )

  def train_epoch(
    self, state: TrainState, data: TrainData, shuffle_key, negatives_key, on_steps=None
  ):
    """One epoch, as `whole_epoch` computes it, in chunks of `train.chunk_steps` steps; calls
    `on_steps(n)` as each chunk of n steps ends. Returns (state, the per-step losses as a NumPy
    array, the negatives' collisions)."""
    order_SxP = self._plan_epoch(data, shuffle_key)
    return self._in_chunks(self._train_steps, state, data, order_SxP, negatives_key, on_steps)

  def train_seeds_epoch(
    self, states: TrainState, data: TrainData, shuffle_keys, negatives_keys, on_steps=None
  ):
    """`train_epoch` of K seeds as one vmapped program: states and keys stacked on a leading axis
    of K; returns the states stacked, losses float[K, steps] and collisions int[K]."""
    order_KxSxP = self._plan_seeds(data, shuffle_keys)
    return self._in_chunks(self._train_seeds, states, data, order_KxSxP, negatives_keys, on_steps)

  def _in_chunks(self, run_steps, state, data: TrainData, order, negatives_key, on_steps):
    """Runs an epoch's plan (`order`: [..., steps, P]) in chunks of `train.chunk_steps` steps
    (one program per chunk length, so at most two). The host reads a chunk's losses once the next
    chunk is queued, so the device never waits on it."""
    steps, chunk = order.shape[-2], self.config.train.chunk_steps
    losses, collisions, queued = [], [], None
    for first in range(0, steps, chunk):
      state, chunk_losses, chunk_collisions = run_steps(
        state, data, order, negatives_key, first, min(chunk, steps - first)
      )
      collisions.append(chunk_collisions)
      if queued is not None:
        losses.append(_finished(queued, on_steps))
      queued = chunk_losses
    if queued is not None:
      losses.append(_finished(queued, on_steps))
    leading = order.shape[:-2]
    losses = np.concatenate(losses, -1) if losses else np.zeros((*leading, 0), np.float32)
    collisions = sum((np.asarray(c).sum(-1) for c in collisions), np.zeros(leading, np.int64))
    return state, losses, collisions

  def abstract_params(self):
    """Shapes, dtypes and shardings of the params: the restore target of a checkpoint."""
    return self._abstract_params

  def abstract_opt_state(self):
    return self._abstract_opt_state


def _finished(chunk_losses, on_steps) -> np.ndarray:
  chunk_losses = np.asarray(chunk_losses)  # waits for the chunk: the host's one sync per chunk
  if on_steps is not None:
    on_steps(chunk_losses.shape[-1])
  return chunk_losses


@dataclasses.dataclass
class _EpochRequest:
  state: TrainState
  keys: tuple
  on_steps: Any
  result: tuple | None = None
  error: BaseException | None = None


class SeedBatch:
  """Runs of one config that differ only in their seed, each training in its own thread, whose
  epochs run together as one vmapped program (`sweep.vmap_seeds`).

  A run's `train_epoch` returns once every run still in the batch has asked for its next epoch, so
  each keeps its own evaluation, checkpoints, early stopping and workdir, as if it ran alone. A run
  that ends (finished, stopped early or failed) must `leave`: the others go on without it.
  """

  def __init__(self, runs: int):
    self._changed = threading.Condition()
    self._runs = runs
    self._waiting: list[_EpochRequest] = []
    self._trainer: Trainer | None = None
    self._data: TrainData | None = None

  def prepare(self, config, train: sparse.CSR, max_target: float) -> tuple[Trainer, TrainData]:
    """The batch's one `Trainer` and training data, made by its first run: the runs' configs
    differ only in their seed, which neither reads, so each function compiles once and the data
    lives on the device once for all the seeds."""
    with self._changed:
      if self._trainer is None:
        self._trainer = Trainer(config, train.shape)
        self._data = build_data(config, train, max_target, self._trainer.mesh)
      return self._trainer, self._data

  def leave(self) -> None:
    with self._changed:
      self._runs -= 1
      self._run_if_all_wait()

  def train_epoch(self, state: TrainState, data: TrainData, *keys, on_steps=None):
    """`Trainer.train_epoch` of the batch's trainer, run beside the batch's other runs' epochs
    (`data` is the batch's, from `prepare`)."""
    request = _EpochRequest(state, keys, on_steps)
    with self._changed:
      self._waiting.append(request)
      self._run_if_all_wait()
      while request.result is None and request.error is None:
        self._changed.wait()
    if request.error is not None:
      raise request.error
    return request.result

  def _run_if_all_wait(self) -> None:
    """With the lock held: the waiting epochs, once every run of the batch waits."""
    if not self._waiting or len(self._waiting) < self._runs:
      return
    requests, self._waiting = self._waiting, []
    try:
      if len(requests) == 1:
        (only,) = requests
        only.result = self._trainer.train_epoch(
          only.state, self._data, *only.keys, on_steps=only.on_steps
        )
      else:
        for index, result in enumerate(_train_together(self._trainer, self._data, requests)):
          requests[index].result = result
    except BaseException as e:  # every run of this epoch learns why it failed
      for request in requests:
        request.error = e
    self._changed.notify_all()


def _train_together(trainer: Trainer, data: TrainData, requests: list[_EpochRequest]):
  """The requests' epochs as one vmapped program; each request's (state, losses, collisions)."""

  def stack(*leaves):
    return jnp.stack(leaves)

  def on_steps(count):
    for request in requests:
      if request.on_steps is not None:
        request.on_steps(count)

  states = jax.tree.map(stack, *(r.state for r in requests))
  shuffle_keys, negatives_keys = (
    stack(*keys) for keys in zip(*(r.keys for r in requests), strict=True)
  )
  states, losses_KxS, collisions_K = trainer.train_seeds_epoch(
    states, data, shuffle_keys, negatives_keys, on_steps
  )
  return [
    (jax.tree.map(lambda leaf, i=index: leaf[i], states), losses_KxS[index], collisions_K[index])
    for index in range(len(requests))
  ]


def _abstract(leaf, sharding) -> jax.ShapeDtypeStruct:
  return jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=sharding)


@jax.jit
def cosine_scores(user_vectors_MxD, item_vectors_NxD, users_B):
  """Cosines of users against every item, from unit-length vectors: one matrix product."""
  return user_vectors_MxD[users_B] @ item_vectors_NxD.T


@jax.jit
def candidate_cosines(user_vectors_MxD, item_vectors_NxD, users_B, items_BxC):
  """Cosines of users against their own candidates, from unit-length vectors."""
  return jnp.einsum("bd,bcd->bc", user_vectors_MxD[users_B], item_vectors_NxD[items_BxC])


def init_key(seed: int):
  """The key of a run's initial parameters (epochs draw theirs from `epoch_keys`)."""
  return jax.random.fold_in(jax.random.key(seed), 0)


def epoch_keys(seed: int, epoch: int, resample: bool):
  """(shuffle key, negatives key) of an epoch; negatives reuse epoch 0's key when sampled once."""
  root = jax.random.fold_in(jax.random.key(seed), 1)
  return jax.random.fold_in(root, epoch), jax.random.fold_in(root, epoch if resample else 0)


def scorers(trainer: Trainer, params, data: TrainData):
  """(`score_all(users_B) -> float32[B, N]`, `score_candidates(users_B, items_BxC) ->
  float32[B, C]` or None) of the model `params` (`evaluation.evaluate`)."""
  if trainer.score_all is not None:
    return functools.partial(trainer.score_all, params), None
  users, items = trainer.vectors(params, data)
  return (
    functools.partial(cosine_scores, users, items),
    functools.partial(candidate_cosines, users, items),
  )


def checkpoint_meta(context: Context, state: TrainState) -> dict:
  """A checkpoint's JSON item: its step, and what scoring needs besides the params."""
  return {
    "step": int(state.step),
    "model": context.config.model.to_dict(),
    "shape": list(context.train.shape),
    "data": {"path": str(context.data.path.resolve()), "sha256": context.data.sha256},
  }


def restore_state(ckpt: checkpoints.Checkpoints, epoch: int, trainer: Trainer) -> TrainState:
  """The training state saved at `epoch`, placed as `trainer` trains it."""
  params, opt_state, meta = ckpt.restore(
    epoch, trainer.abstract_params(), trainer.abstract_opt_state()
  )
  return TrainState(step=jnp.asarray(meta["step"], jnp.int32), params=params, opt_state=opt_state)


def records_up_to(run: Workdir, epoch: int) -> list[dict]:
  """The metrics records of epochs 1 to `epoch`, one each: the checkpoint of `epoch` is the truth
  on resume, so records past it (an epoch evaluated but not saved) are dropped.

  Raises:
    UserError: a record of those epochs is missing (the file was damaged or removed).
  """
  by_epoch = {r["epoch"]: r for r in run.metrics() if r["epoch"] <= epoch}
  missing = [e for e in range(1, epoch + 1) if e not in by_epoch]
  if missing:
    raise UserError(
      f"{run.file(METRICS)} lacks the records of epochs {missing} of the checkpoint of epoch "
      f"{epoch}: the run cannot resume; rerun with --overwrite to start it over"
    )
  return [by_epoch[e] for e in range(1, epoch + 1)]


def train(context: Context) -> Outcome:
  """Trains `model.name` (dmf, lfm, gmf, mlp or neumf) for `train.epochs`, evaluating after every epoch, and
  reports the epoch with the best validation `eval.select`; resumes from the workdir's latest
  checkpoint when there is one."""
  config, run = context.config, context.workdir
  max_target = 1.0 if config.data.implicit else context.data.max_rating
  if context.seed_batch is None:
    trainer = Trainer(config, context.train.shape)
    data = build_data(config, context.train, max_target, trainer.mesh)
    run_epoch = trainer.train_epoch
  else:  # beside the member's other seeds, as one program
    trainer, data = context.seed_batch.prepare(config, context.train, max_target)
    run_epoch = context.seed_batch.train_epoch
  ckpt = checkpoints.Checkpoints(run.file(CHECKPOINT_DIR))
  select = config.eval.select
  progress = None
  try:
    start = ckpt.latest_epoch()
    if start is None:
      start = 0
      state = trainer.init_state(init_key(config.seed), context.initial_params)
    else:
      state = restore_state(ckpt, start, trainer)
      log.info("resuming from the checkpoint of epoch %d", start)
    history = records_up_to(run, start)
    run.rewrite_metrics(history)
    best = max(history, key=lambda r: (r["validation"][select], -r["epoch"]), default=None)
    train_seconds = sum(r["seconds"] for r in history)
    steps_per_epoch = context.train.nnz // trainer.positives_per_batch
    batch = trainer.positives_per_batch * (1 + config.train.neg_ratio)
    instances = steps_per_epoch * batch
    log.info(
      "%s: %d epochs of %d steps, %d instances (%d positives x (1 + %d negatives)), batch %d",
      config.model.name,
      config.train.epochs,
      steps_per_epoch,
      instances,
      instances // (1 + config.train.neg_ratio),
      config.train.neg_ratio,
      batch,
    )
    progress = Progress(
      context.label or config.model.name,
      config.train.epochs * steps_per_epoch,
      done=start * steps_per_epoch,
      instances_per_step=batch,
    )
    for epoch in range(start + 1, config.train.epochs + 1):
      progress.note(epoch=f"{epoch}/{config.train.epochs}")
      began = time.perf_counter()
      keys = epoch_keys(config.seed, epoch, config.train.resample_negatives)
      new_state, step_losses, collisions = run_epoch(state, data, *keys, on_steps=progress.advance)
      seconds = time.perf_counter() - began
      bad = np.flatnonzero(~np.isfinite(step_losses))
      if bad.size:
        raise TrainingError(
          f"epoch {epoch}, step {bad[0] + 1}: the loss is {step_losses[bad[0]]}; training "
          f"stopped, the last good checkpoint is epoch {ckpt.latest_epoch()} in {run.file(CHECKPOINT_DIR)}"
        )
      state = new_state
      metrics, _ = context.evaluate(*scorers(trainer, state.params, data))
      record = {
        "epoch": epoch,
        "loss": float(step_losses.mean()),
        "seconds": round(seconds, 3),
        "instances_per_second": round(instances / seconds, 1),
        "negative_collision_rate": float(collisions)
        / (data.pos_users.shape[0] * config.train.neg_ratio),
        "validation": metrics["valid"],
        "test": metrics["test"],
      }
      run.append_metrics(record)
      ckpt.save(epoch, state.params, state.opt_state, checkpoint_meta(context, state))
      train_seconds += record["seconds"]
      if best is None or metrics["valid"][select] > best["validation"][select]:
        best = record
      ckpt.prune({epoch, best["epoch"]})  # the latest, to resume from, and the best, to report
      progress.note(
        loss=f"{record['loss']:.4f}", **{f"val_{select}": f"{metrics['valid'][select]:.4f}"}
      )
      if config.train.patience and epoch - best["epoch"] >= config.train.patience:
        log.info(
          "no validation %s gain for %d epochs: stopping at epoch %d",
          select,
          config.train.patience,
          epoch,
        )
        break
    best_params = ckpt.restore_params(best["epoch"], trainer.abstract_params())
    metrics, ranks = context.evaluate(*scorers(trainer, best_params, data))
  finally:
    if progress is not None:
      progress.close()
    ckpt.close()
  return Outcome(
    best_epoch=best["epoch"], metrics=metrics, ranks=ranks, train_seconds=train_seconds
  )
