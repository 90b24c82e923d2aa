"""dmf_jax's training and evaluation, timed the way `training.train` runs them.

Compilation is timed apart from the epochs (a first, untimed-as-an-epoch call of
`Trainer.train_epoch` compiles its programs), then every epoch runs in chunks as training runs it. With `max_steps`, each epoch is that many steps over a random
subset of the positives, and seconds per epoch are scaled up to the full epoch's steps. Without
`evaluate`, the model trains on every rating (no held-out items) and evaluation is not timed: a
catalogue of a million items has no leave-one-out split or full ranking worth its hours on a CPU.
"""

from __future__ import annotations

import dataclasses
import time

import jax
import numpy as np

from benchmarks import datasets
from configs import default
from dmf_jax import evaluation, parallel, protocol, sparse, training


def config_for(name: str, layers: tuple[int, ...], first_layer: str, optimizer: str = "adam"):
  config = default.get_config()
  config.train.optimizer = optimizer
  config.data.name = name
  config.model.user_layers = layers
  config.model.item_layers = layers
  config.model.first_layer = first_layer
  training.check_config(config)
  return config


def subset(data: training.TrainData, count: int, seed: int, mesh) -> training.TrainData:
  """The same data with `count` of its training positives, drawn at random."""
  keep = np.sort(np.random.default_rng(seed).permutation(data.pos_users.shape[0])[:count])
  positives = {
    name: parallel.replicate(getattr(data, name)[keep], mesh)
    for name in ("pos_users", "pos_items", "pos_targets")
  }
  return dataclasses.replace(data, **positives)


@dataclasses.dataclass(frozen=True)
class Prepared:
  """A data set on the device, ready for the compiled epoch: `steps` of its `full_steps` per epoch."""

  config: object
  trainer: training.Trainer
  data: training.TrainData
  train: sparse.CSR
  split: protocol.Split | None  # None when trained on every rating
  num_ratings: int
  full_steps: int
  steps: int


def prepare(
  name: str,
  *,
  layers: tuple[int, ...],
  first_layer: str = "auto",
  max_steps: int | None = None,
  evaluate: bool = True,
  root: str | None = None,
  optimizer: str = "adam",
) -> Prepared:
  """Loads `name`, splits it (unless not `evaluate`: then every rating trains) and puts its
  training data on the device; with `max_steps`, a random subset of positives for that many steps."""
  interactions = datasets.load(name, root)
  shape = (interactions.num_users, interactions.num_items)
  if evaluate:
    split = datasets.split(interactions)
    train = split.train_matrix()
  else:
    split = None
    train = sparse.CSR.from_coo(interactions.users, interactions.items, interactions.ratings, shape)
  max_rating, num_ratings = interactions.max_rating, interactions.num_ratings
  del interactions  # the host copy of a large set is not needed past here
  config = config_for(name, layers, first_layer, optimizer)
  trainer = training.Trainer(config, train.shape)
  data = training.build_data(config, train, max_rating, trainer.mesh)
  per_batch = trainer.positives_per_batch
  full_steps = train.nnz // per_batch
  steps = full_steps if not max_steps else min(max_steps, full_steps)
  if steps < full_steps:
    data = subset(data, steps * per_batch, config.seed, trainer.mesh)
  return Prepared(config, trainer, data, train, split, num_ratings, full_steps, steps)


def measure(
  name: str,
  *,
  epochs: int,
  max_steps: int | None,
  layers: tuple[int, ...],
  first_layer: str,
  evaluate: bool = True,
  root: str | None = None,
  optimizer: str = "adam",
) -> dict:
  prepared = prepare(
    name,
    layers=layers,
    first_layer=first_layer,
    max_steps=max_steps,
    evaluate=evaluate,
    root=root,
    optimizer=optimizer,
  )
  config, trainer, data = prepared.config, prepared.trainer, prepared.data
  train, split = prepared.train, prepared.split
  full_steps, steps = prepared.full_steps, prepared.steps
  per_batch = trainer.positives_per_batch
  state = trainer.init_state(training.init_key(config.seed))

  # Compiled by a first epoch (epoch 0's keys, not one of the timed epochs), timed with it.
  began = time.perf_counter()
  state = jax.block_until_ready(
    trainer.train_epoch(state, data, *training.epoch_keys(config.seed, 0, True))[0]
  )
  compile_seconds = time.perf_counter() - began

  epoch_seconds, losses = [], []
  for epoch in range(1, epochs + 1):
    began = time.perf_counter()
    state, step_losses, _ = trainer.train_epoch(
      state, data, *training.epoch_keys(config.seed, epoch, True)
    )
    losses.append(float(step_losses.mean()))
    epoch_seconds.append((time.perf_counter() - began) * full_steps / steps)

  timings = {}
  if evaluate:
    eval_sets = evaluation.eval_sets(
      split, train, config.eval.full_ranking_users, config.data.split_seed
    )

    def evaluate_once():
      # As after each training epoch: every vector once, then sampled metrics of every user and
      # full-ranking metrics of `eval.full_ranking_users` of them, validation and test.
      score_all, score_candidates = training.scorers(trainer, state.params, data)
      return {
        name: evaluation.evaluate(
          score_all,
          eval_set,
          ks=config.eval.ks,
          batch_size=config.eval.batch_size,
          score_candidates=score_candidates,
        )[0]
        for name, eval_set in eval_sets.items()
      }

    for run in ("first", "steady"):
      began = time.perf_counter()
      jax.block_until_ready(trainer.vectors(state.params, data))
      timings[f"vectors_{run}"] = time.perf_counter() - began
      began = time.perf_counter()
      metrics = evaluate_once()
      timings[f"eval_{run}"] = time.perf_counter() - began

  instances = full_steps * per_batch * (1 + config.train.neg_ratio)
  return {
    "system": "dmf_jax",
    "optimizer": optimizer,
    "shape": list(train.shape),
    "ratings": prepared.num_ratings,
    "first_layer": data.user_rows.form,
    "layers": list(layers),
    "instances_per_epoch": instances,
    "steps_timed": steps,
    "steps_per_epoch": full_steps,
    "compile_s": compile_seconds,
    "epoch_s": epoch_seconds,
    "instances_per_s": [instances / s for s in epoch_seconds],
    "loss": losses,
    **(
      {
        "eval_compile_s": timings["vectors_first"]
        + timings["eval_first"]
        - timings["vectors_steady"]
        - timings["eval_steady"],
        "vectors_s": timings["vectors_steady"],
        "eval_s": timings["eval_steady"],
        "eval_users": len(split.eval_users),
        "full_ranking_users": len(eval_sets["test"].full_rows),
        "metrics": metrics,
      }
      if evaluate
      else {}
    ),
    "devices": [str(d) for d in jax.devices()],
    "mesh": dict(trainer.mesh.shape),
    # Accelerators report their peak memory; the host's is the process's peak RSS.
    "device_peak_mb": (jax.devices()[0].memory_stats() or {}).get("peak_bytes_in_use", 0) / 2**20,
  }
