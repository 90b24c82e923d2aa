"""Training DMF and LFM (Algorithm 1), and the NCF models: compiled epochs, on-device negatives,
checkpoints, resume.

An epoch is one compiled program: it shuffles the training positives, draws `train.neg_ratio`
negatives per positive from the user's unobserved items, and runs every step in a `lax.scan`; the
host reads the losses once per epoch. A batch holds positives with their own negatives (same user),
so the user tower runs once per positive; `train.batch_size` counts instances and is rounded down to
a multiple of 1 + neg_ratio. PRNG keys derive from `seed` and the epoch, so a resumed run continues
the same stream.

The epoch runs on the device mesh of `config.mesh` (`parallel`): each step's positives are split
over the `data` axis, the data and parameters replicated (user- and item-indexed weights split by
rows over `model`); 1 device and N run the same program.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm import tqdm

from dmf_jax import checkpoints, losses, models, ncf, parallel, sparse
from dmf_jax.context import Context, Outcome
from dmf_jax.errors import ConfigError, UserError

log = logging.getLogger(__name__)

CHECKPOINT_DIR = checkpoints.FOLDER
# Rejection sampling of negatives: this many uniform draws per slot, the first unobserved one kept.
# A user who rated a share s of the catalogue keeps a collision with probability s^NEGATIVE_DRAWS
# (s = 0.44, ML-100k's densest user: 0.14%); the measured rate is logged every epoch.
NEGATIVE_DRAWS = 8


class TrainingError(UserError):
  """Training cannot go on (a non-finite loss); the last good checkpoint is kept."""


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class TrainData:
  """Everything an epoch reads, resident on the device."""

  user_rows: models.Rows  # Y_i*, the user tower's input
  item_rows: models.Rows  # Y_*j, the item tower's input
  pos_users: jax.Array  # int32[T], the training positives
  pos_items: jax.Array  # int32[T]
  pos_targets: jax.Array  # float32[T], the loss target of each positive
  observed_indptr: jax.Array  # int32[M + 1], training Y by users (sorted columns)
  observed_indices: jax.Array  # int32[nnz]
  search_steps: int = dataclasses.field(metadata=dict(static=True))  # bisection steps per row


def _dmf_spec(config, shape) -> models.ModelSpec:
  return models.ModelSpec(
    init=lambda key: models.init_dmf(
      key, shape, config.model.user_layers, config.model.item_layers
    ),
    user_vectors=lambda params, data, ids: models.tower(params["user"], data.user_rows, ids),
    item_vectors=lambda params, data, ids: models.tower(params["item"], data.item_rows, ids),
  )


def _lfm_spec(config, shape) -> models.ModelSpec:
  return models.ModelSpec(
    init=lambda key: models.init_lfm(key, shape, config.model.user_layers[-1]),
    user_vectors=lambda params, data, ids: params["user"][ids],
    item_vectors=lambda params, data, ids: params["item"][ids],
  )


SPECS = {"dmf": _dmf_spec, "lfm": _lfm_spec, **ncf.SPECS}


def check_config(config) -> None:
  """Out-of-range training values fail here, before any compute."""
  model, train = config.model, config.train
  if model.name in ncf.SPECS:
    ncf.check_config(config)
  else:
    _check_towers(model)
  if model.l2 < 0:
    raise ConfigError(f"model.l2={model.l2}: must be >= 0")
  if train.neg_ratio < 1:
    raise ConfigError(f"train.neg_ratio={train.neg_ratio}: must be at least 1")
  if train.lr <= 0:
    raise ConfigError(f"train.lr={train.lr}: must be > 0")
  if train.epochs < 1:
    raise ConfigError(f"train.epochs={train.epochs}: must be at least 1")
  if train.batch_size < 1 + train.neg_ratio:
    raise ConfigError(
      f"train.batch_size={train.batch_size} holds no positive with its {train.neg_ratio} negatives"
    )
  if train.patience is not None and train.patience < 1:
    raise ConfigError(f"train.patience={train.patience}: must be at least 1 (or unset)")


def _check_towers(model) -> None:
  """DMF's and LFM's model fields."""
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
  if model.first_layer not in models.FIRST_LAYERS:
    raise ConfigError(
      f"model.first_layer={model.first_layer!r}: choose one of {', '.join(models.FIRST_LAYERS)}"
    )


def positives_per_batch(config) -> int:
  return config.train.batch_size // (1 + config.train.neg_ratio)


def build_data(config, train: sparse.CSR, max_target: float, mesh) -> TrainData:
  """Puts the training Y on every device of `mesh` in the first layer's form (`model.first_layer`)."""
  form = models.resolve_first_layer(
    config.model.first_layer, train.shape, train.nnz, mesh.devices.flat[0].platform
  )
  per_batch = positives_per_batch(config)
  shards = mesh.shape[parallel.DATA]
  log.info("first layer: %s rows of Y (model.first_layer=%s)", form, config.model.first_layer)
  if config.model.loss == "ce" or config.model.name in ncf.SPECS:  # NCF's targets are implicit
    targets = np.ones_like(train.values)
  else:
    targets = train.values / max_target
  data = TrainData(
    user_rows=models.Rows.build(train, form, per_batch, shards),
    item_rows=models.Rows.build(
      train.transpose(), form, per_batch * (1 + config.train.neg_ratio), shards
    ),
    pos_users=jnp.asarray(train.row_ids()),
    pos_items=jnp.asarray(train.indices),
    pos_targets=jnp.asarray(targets, jnp.float32),
    observed_indptr=jnp.asarray(train.indptr.astype(np.int32)),
    observed_indices=jnp.asarray(train.indices),
    search_steps=int(train.row_lengths().max(initial=0)).bit_length() + 1,
  )
  return parallel.replicate(data, mesh)


def is_observed(data: TrainData, users: jax.Array, items: jax.Array) -> jax.Array:
  """Whether Y[users, items] is a training interaction, by bisection in each user's sorted row."""
  last = data.observed_indices.shape[0] - 1
  low, end = data.observed_indptr[users], data.observed_indptr[users + 1]
  high = end
  for _ in range(data.search_steps):
    active = low < high
    middle = (low + high) // 2
    less = data.observed_indices[jnp.minimum(middle, last)] < items
    low = jnp.where(active & less, middle + 1, low)
    high = jnp.where(active & ~less, middle, high)
  return (low < end) & (data.observed_indices[jnp.minimum(low, last)] == items)


def sample_negatives(key, data: TrainData, users_P: jax.Array, num: int, num_items: int):
  """`num` items per user drawn uniformly from the user's unobserved items (bounded rejection).

  Returns:
    (negatives int32[P, num], collisions: how many of them are observed items after all draws).
  """
  draws_DxPxK = jax.random.randint(key, (NEGATIVE_DRAWS, users_P.shape[0], num), 0, num_items)
  hit_DxPxK = is_observed(data, users_P[None, :, None], draws_DxPxK)
  first_free_PxK = jnp.argmin(hit_DxPxK, axis=0)  # the first unobserved draw, else draw 0
  chosen = jnp.take_along_axis(draws_DxPxK, first_free_PxK[None], axis=0)[0]
  collisions = jnp.sum(jnp.all(hit_DxPxK, axis=0))
  return chosen.astype(jnp.int32), collisions


def l2_penalty(params) -> jax.Array:
  """Sum of squared weights, biases excluded."""
  leaves = jax.tree_util.tree_leaves_with_path(params)
  return sum(jnp.sum(w * w) for path, w in leaves if getattr(path[-1], "key", None) != "b")


class Trainer:
  """The compiled pieces of training for one config and data set."""

  def __init__(self, config, shape: tuple[int, int]):
    self.config = config
    self.shape = shape
    self.spec = SPECS[config.model.name](config, shape)
    if config.model.name in ncf.SPECS:
      self.optimizer = ncf.optimizer(config)
    else:
      self.optimizer = optax.adam(config.train.lr)
    self.positives_per_batch = positives_per_batch(config)
    self.mesh = parallel.make_mesh(config)
    parallel.check_batch(self.mesh, self.positives_per_batch)
    shapes = jax.eval_shape(self._init_state, jax.random.key(0))
    self.state_shardings = parallel.state_shardings(self.mesh, self.optimizer, shapes, shape)
    self._abstract_state = jax.tree.map(
      lambda leaf, sharding: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=sharding),
      shapes,
      self.state_shardings,
    )
    everywhere = parallel.replicated(self.mesh)
    # Created in place: a `model`-split weight never exists whole on one device.
    self.init_state = jax.jit(
      self._init_state, in_shardings=everywhere, out_shardings=self.state_shardings
    )
    self.train_epoch = jax.jit(
      self._train_epoch,
      in_shardings=(self.state_shardings, everywhere, everywhere, everywhere),
      out_shardings=(self.state_shardings, everywhere, everywhere),
      donate_argnums=0,
    )
    self.vectors = jax.jit(
      self._vectors,
      in_shardings=(self.state_shardings["params"], everywhere),
      out_shardings=everywhere,
    )
    self.score_all = jax.jit(self.spec.score_all) if self.spec.score_all else None

  def _init_state(self, key, params=None):
    """A fresh optimizer state, over `params` when given, else over new params from `key`."""
    params = self.spec.init(key) if params is None else params
    return {"params": params, "opt_state": self.optimizer.init(params)}

  def abstract_state(self):
    """Shapes, dtypes and shardings of the state: the restore target of a checkpoint."""
    return self._abstract_state

  def loss(self, params, data: TrainData, users_P, items_PxC, targets_PxC):
    """Mean cross entropy of P positives, each with its user's negatives (columns 1..C-1)."""
    if self.spec.pair_logits is not None:
      logits_PxC = self.spec.pair_logits(params, data, users_P, items_PxC)
      per_instance = optax.sigmoid_binary_cross_entropy(logits_PxC, targets_PxC)
    else:
      p_PxD = self.spec.user_vectors(params, data, users_P)
      flat_items = items_PxC.reshape(-1)
      q_PCxD = self.spec.item_vectors(params, data, flat_items)
      p_PCxD = jnp.repeat(p_PxD, items_PxC.shape[1], axis=0)
      scores = models.batched_cosine(p_PCxD, q_PCxD)
      per_instance = losses.batched_binary_cross_entropy(scores, targets_PxC.reshape(-1))
    if not self.config.model.l2:
      # A zero penalty still costs a pass over every weight and its gradient per step: skip it.
      return jnp.mean(per_instance)
    return jnp.mean(per_instance) + self.config.model.l2 * l2_penalty(params)

  def _train_epoch(self, state, data: TrainData, shuffle_key, negatives_key):
    """One pass over the positives. Returns (state, per-step losses, negative collisions)."""
    neg_ratio = self.config.train.neg_ratio
    num_positives = data.pos_users.shape[0]
    steps = num_positives // self.positives_per_batch
    order = jax.random.permutation(shuffle_key, num_positives)
    order_SxP = order[: steps * self.positives_per_batch].reshape(steps, self.positives_per_batch)
    negatives_TxK, collisions = sample_negatives(
      negatives_key, data, data.pos_users, neg_ratio, self.shape[1]
    )

    def step(state, batch_P):
      batch_P = jax.lax.with_sharding_constraint(batch_P, parallel.batch_sharding(self.mesh))
      users_P = data.pos_users[batch_P]
      items_PxC = jnp.concatenate([data.pos_items[batch_P][:, None], negatives_TxK[batch_P]], 1)
      targets_PxC = jnp.zeros(items_PxC.shape).at[:, 0].set(data.pos_targets[batch_P])
      loss, grads = jax.value_and_grad(self.loss)(
        state["params"], data, users_P, items_PxC, targets_PxC
      )
      updates, opt_state = self.optimizer.update(grads, state["opt_state"], state["params"])
      params = optax.apply_updates(state["params"], updates)
      return {"params": params, "opt_state": opt_state}, loss

    state, step_losses = jax.lax.scan(step, state, order_SxP)
    return state, step_losses, collisions

  def _vectors(self, params, data: TrainData):
    """Unit-length vectors of every user and item, computed once per evaluation."""

    def all_of(fn, count, chunk):
      padded = -(-count // chunk) * chunk
      ids = jnp.minimum(jnp.arange(padded), count - 1).reshape(-1, chunk)
      chunk_sharding = parallel.batch_sharding(self.mesh)
      out = jax.lax.map(
        lambda ids_B: fn(params, data, jax.lax.with_sharding_constraint(ids_B, chunk_sharding)),
        ids,
      )
      return models.normalize(out.reshape(padded, -1)[:count])

    chunk = self.positives_per_batch
    users = all_of(self.spec.user_vectors, self.shape[0], chunk)
    items = all_of(self.spec.item_vectors, self.shape[1], chunk * (1 + self.config.train.neg_ratio))
    return users, items


@jax.jit
def cosine_scores(user_vectors_MxD, item_vectors_NxD, users_B):
  """Cosines of users against every item, from unit-length vectors: one matrix product."""
  return user_vectors_MxD[users_B] @ item_vectors_NxD.T


def init_key(seed: int):
  """The key of a run's initial parameters (epochs draw theirs from `epoch_keys`)."""
  return jax.random.fold_in(jax.random.key(seed), 0)


def epoch_keys(seed: int, epoch: int, resample: bool):
  """(shuffle key, negatives key) of an epoch; negatives reuse epoch 0's key when sampled once."""
  root = jax.random.fold_in(jax.random.key(seed), 1)
  return jax.random.fold_in(root, epoch), jax.random.fold_in(root, epoch if resample else 0)


def score_function(trainer: Trainer, params, data: TrainData):
  """`score_all(users_B) -> float32[B, N]` of the model `params`."""
  if trainer.score_all is not None:
    return functools.partial(trainer.score_all, params, data)
  users, items = trainer.vectors(params, data)
  return functools.partial(cosine_scores, users, items)


def train(context: Context) -> Outcome:
  """Trains `model.name` (dmf, lfm, gmf, mlp or neumf) for `train.epochs`, evaluating after every epoch, and
  reports the epoch with the best validation `eval.select`; resumes from the workdir's latest
  checkpoint when there is one."""
  config, run = context.config, context.workdir
  max_target = 1.0 if config.data.implicit else context.data.max_rating
  trainer = Trainer(config, context.train.shape)
  data = build_data(config, context.train, max_target, trainer.mesh)
  ckpt = checkpoints.Checkpoints(run.file(CHECKPOINT_DIR))
  select = config.eval.select
  try:
    start = ckpt.latest_epoch()
    if start is None:
      start = 0
      state = trainer.init_state(init_key(config.seed), context.initial_params)
      history = []
    else:
      state = ckpt.restore(start, trainer.abstract_state())
      history = [r for r in run.metrics() if r["epoch"] <= start]
      run.rewrite_metrics(history)
      log.info("resuming from the checkpoint of epoch %d", start)
    best = max(history, key=lambda r: (r["validation"][select], -r["epoch"]), default=None)
    train_seconds = sum(r["seconds"] for r in history)
    instances = (
      (context.train.nnz // trainer.positives_per_batch)
      * trainer.positives_per_batch
      * (1 + config.train.neg_ratio)
    )
    log.info(
      "%s: %d epochs of %d instances (%d positives x (1 + %d negatives)), batch %d",
      config.model.name,
      config.train.epochs,
      instances,
      instances // (1 + config.train.neg_ratio),
      config.train.neg_ratio,
      trainer.positives_per_batch * (1 + config.train.neg_ratio),
    )
    epochs = tqdm(
      range(start + 1, config.train.epochs + 1),
      desc=config.model.name,
      unit="epoch",
      initial=start,
      total=config.train.epochs,
      disable=jax.process_index() > 0,
    )
    for epoch in epochs:
      began = time.perf_counter()
      keys = epoch_keys(config.seed, epoch, config.train.resample_negatives)
      new_state, step_losses, collisions = trainer.train_epoch(state, data, *keys)
      step_losses = np.asarray(step_losses)  # the epoch's one host synchronisation
      seconds = time.perf_counter() - began
      bad = np.flatnonzero(~np.isfinite(step_losses))
      if bad.size:
        raise TrainingError(
          f"epoch {epoch}, step {bad[0] + 1}: the loss is {step_losses[bad[0]]}; training "
          f"stopped, the last good checkpoint is epoch {ckpt.latest_epoch()} in {run.file(CHECKPOINT_DIR)}"
        )
      state = new_state
      metrics, _ = context.evaluate(score_function(trainer, state["params"], data))
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
      ckpt.save(epoch, state, metrics["valid"][select])
      train_seconds += record["seconds"]
      if best is None or metrics["valid"][select] > best["validation"][select]:
        best = record
      epochs.set_postfix(
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
    best_state = ckpt.restore(best["epoch"], trainer.abstract_state())
    metrics, ranks = context.evaluate(score_function(trainer, best_state["params"], data))
  finally:
    ckpt.close()
  return Outcome(
    best_epoch=best["epoch"], metrics=metrics, ranks=ranks, train_seconds=train_seconds
  )
