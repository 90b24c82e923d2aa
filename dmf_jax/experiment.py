"""One run from a config: load the data, split it, fit or train a model, evaluate, write results.

`train_and_evaluate(config, workdir)` is what `launch.py` calls. Models are looked up by
`model.name` in `MODELS`; each is a function of a `Context` that returns the run's `Outcome`.
"""

from __future__ import annotations

import logging
import pathlib
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from ml_collections import config_dict

from dmf_jax import baselines, evaluation, protocol, training
from dmf_jax import data as data_lib
from dmf_jax.context import Context, Outcome
from dmf_jax.errors import ConfigError
from dmf_jax.workdir import Workdir

log = logging.getLogger(__name__)


def _fit_closed_form(context: Context, fit: Callable[[], np.ndarray]) -> Outcome:
  """Fits a baseline whose scores are one array (float32[N] for all users, or float32[M, N])."""
  start = time.perf_counter()
  scores = jnp.asarray(fit())
  train_seconds = time.perf_counter() - start
  if scores.ndim == 1:
    score_all = jax.jit(lambda users: jnp.broadcast_to(scores, (users.shape[0], scores.shape[0])))
  else:
    score_all = jax.jit(lambda users: scores[users])
  metrics, ranks = context.evaluate(score_all)
  context.workdir.append_metrics(
    {"epoch": 0, "validation": metrics["valid"], "test": metrics["test"]}
  )
  return Outcome(best_epoch=0, metrics=metrics, ranks=ranks, train_seconds=train_seconds)


def _itempop(context: Context) -> Outcome:
  return _fit_closed_form(context, lambda: baselines.itempop_scores(context.train))


def _itemknn(context: Context) -> Outcome:
  k = context.config.model.knn_neighbours
  if k < 1:
    raise ConfigError(f"model.knn_neighbours={k}: must be at least 1")
  return _fit_closed_form(
    context,
    lambda: baselines.itemknn_scores(context.train, baselines.itemknn_weights(context.train, k)),
  )


MODELS: dict[str, Callable[[Context], Outcome]] = {
  "itempop": _itempop,
  "itemknn": _itemknn,
  "dmf": training.train,
  "lfm": training.train,
}


def check_config(config: config_dict.ConfigDict) -> None:
  """Fails before any compute on values that no run can use."""
  if config.model.name not in MODELS:
    raise ConfigError(
      f"model.name={config.model.name!r} is not a known model (choose from {', '.join(MODELS)})"
    )
  if not config.eval.ks or any(int(k) < 1 for k in config.eval.ks):
    raise ConfigError(f"eval.ks={tuple(config.eval.ks)}: give one or more positive cut-offs")
  if config.eval.select not in {f"{m}@{k}" for m in ("hr", "ndcg") for k in config.eval.ks}:
    raise ConfigError(
      f"eval.select={config.eval.select!r}: must be hr@K or ndcg@K for a K in eval.ks={tuple(config.eval.ks)}"
    )
  if config.eval.batch_size < 1:
    raise ConfigError(f"eval.batch_size={config.eval.batch_size}: must be at least 1")
  if config.model.name in training.SPECS:
    training.check_config(config)


def train_and_evaluate(
  config: config_dict.ConfigDict, workdir: str | pathlib.Path, *, overwrite: bool = False
) -> dict:
  """Runs `config` in `workdir` and returns the contents of its `results.json`.

  A workdir holding this config's finished run is left alone and its results returned; one holding
  another config's run is refused unless `overwrite`.
  """
  wall_start = time.perf_counter()
  check_config(config)
  run = Workdir(workdir)
  if run.claim(config, overwrite=overwrite) == "finished":
    log.info("%s already holds this config's finished run; nothing to do", run.path)
    return run.results()

  data = data_lib.load(config.data)
  split = protocol.get_split(
    data,
    split_seed=config.data.split_seed,
    validation=config.eval.validation,
    num_negatives=config.eval.num_negatives,
    workdir=None,
  )
  run.start(config)
  split.save(run.file(protocol.SPLIT_FILE))
  train = split.train_matrix(implicit=config.data.implicit)
  context = Context(config, data, split, train, evaluation.eval_sets(split, train), run)
  log.info("%s on %s (%d training ratings)", config.model.name, data.name, train.nnz)

  outcome = MODELS[config.model.name](context)

  run.save_ranks(data.user_ids[split.eval_users], outcome.ranks)
  results = {
    "model": config.model.name,
    "dataset": data.name,
    "data": data.statistics(),
    "split": split.key,
    "seed": config.seed,
    "best_epoch": outcome.best_epoch,
    "validation": outcome.metrics["valid"],
    "test": outcome.metrics["test"],
    "train_seconds": round(outcome.train_seconds, 3),
    "wall_seconds": round(time.perf_counter() - wall_start, 3),
  }
  run.finish(results)
  log.info(
    "%s: best epoch %d, validation %s, test %s",
    config.model.name,
    outcome.best_epoch,
    _brief(results["validation"]),
    _brief(results["test"]),
  )
  return results


def _brief(metrics: dict[str, float]) -> str:
  return " ".join(f"{k}={v:.4f}" for k, v in metrics.items())
