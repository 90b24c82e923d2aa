"""One run from a config: load the data, split it, fit or train a model, evaluate, write results.

`train_and_evaluate(config, workdir)` is what `launch.py` calls. Models are looked up by
`model.name` in `MODELS`; each is a function of a `Context` that returns the run's `Outcome`.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import logging
import pathlib
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from ml_collections import config_dict

from dmf_jax import baselines, evaluation, factorization, ncf, protocol, training
from dmf_jax import data as data_lib
from dmf_jax.context import Context, Outcome
from dmf_jax.errors import ConfigError
from dmf_jax.workdir import Workdir, code_version

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


def _fit_by_epochs(
  context: Context, factors: tuple[jax.Array, jax.Array], epoch: Callable
) -> Outcome:
  """Runs `model.als_epochs` epochs of `epoch(users, items) -> (users, items)`, evaluating each.

  Each evaluation appends a metrics record whose "seconds" is the training time so far. Reports
  the epoch with the best validation `eval.select` (sampled candidates); test metrics are recorded
  but never read for the choice.
  """
  config = context.config
  target = config.eval.select
  best = None
  train_seconds = 0.0
  for e in range(1, config.model.als_epochs + 1):
    start = time.perf_counter()
    factors = jax.block_until_ready(epoch(*factors))
    train_seconds += time.perf_counter() - start
    metrics, ranks = context.evaluate(functools.partial(factorization.dot_scores, *factors))
    context.workdir.append_metrics(
      {
        "epoch": e,
        "validation": metrics["valid"],
        "test": metrics["test"],
        "seconds": round(train_seconds, 3),
      }
    )
    log.info("epoch %d (%.1fs): validation %s", e, train_seconds, _brief(metrics["valid"]))
    if best is None or metrics["valid"][target] > best.metrics["valid"][target]:
      best = Outcome(best_epoch=e, metrics=metrics, ranks=ranks, train_seconds=0.0)
  return dataclasses.replace(best, train_seconds=train_seconds)


def _init_factors(context: Context) -> tuple[jax.Array, jax.Array]:
  key = jax.random.key(context.config.seed)
  return factorization.init_factors(key, context.train.shape, context.config.model.als_factors)


def _itempop(context: Context) -> Outcome:
  return _fit_closed_form(context, lambda: baselines.itempop_scores(context.train))


def _itemknn(context: Context) -> Outcome:
  k = context.config.model.knn_neighbours
  return _fit_closed_form(
    context,
    lambda: baselines.itemknn_scores(context.train, baselines.itemknn_weights(context.train, k)),
  )


def _ease(context: Context) -> Outcome:
  reg = context.config.model.ease_reg
  return _fit_closed_form(context, lambda: factorization.ease_scores(context.train, reg))


def _ials(context: Context) -> Outcome:
  model = context.config.model
  buckets = (
    factorization.row_buckets(context.train),
    factorization.row_buckets(context.train.transpose()),
  )
  hyper = (model.ials_unobserved_weight, model.ials_reg, model.ials_reg_exponent)
  return _fit_by_epochs(
    context,
    _init_factors(context),
    lambda users, items: factorization.ials_epoch(users, items, *buckets, *hyper),
  )


def _eals(context: Context) -> Outcome:
  model = context.config.model
  # The (user, item) pairs of the training interactions: the ones of Eq. 1.
  users_E, items_E = jnp.asarray(context.train.row_ids()), jnp.asarray(context.train.indices)
  weights_N = jnp.asarray(
    factorization.eals_item_weights(context.train, model.eals_w0, model.eals_alpha)
  )
  return _fit_by_epochs(
    context,
    _init_factors(context),
    lambda users, items: factorization.eals_epoch(
      users, items, users_E, items_E, weights_N, model.eals_reg
    ),
  )


MODELS: dict[str, Callable[[Context], Outcome]] = {
  "itempop": _itempop,
  "itemknn": _itemknn,
  "ease": _ease,
  "ials": _ials,
  "eals": _eals,
  "dmf": training.train,
  "lfm": training.train,
  "gmf": training.train,
  "mlp": training.train,
  "neumf": training.train,
}


_COUNT = (lambda v: v >= 1, "at least 1")
_POSITIVE = (lambda v: v > 0, "positive")
_NON_NEGATIVE = (lambda v: v >= 0, "non-negative")
_ALS_FIELDS = {"als_factors": _COUNT, "als_epochs": _COUNT}
_NCF_FIELDS = {"ncf_factors": _COUNT, "ncf_lr": _POSITIVE}
_TOWER_FIELDS = {
  "temperature": _POSITIVE,
  "ccl_margin": (lambda v: -1 <= v <= 1, "a cosine, between -1 and 1"),
  "ccl_weight": _NON_NEGATIVE,
}
# The `model` fields each model reads, with the range it needs. Regularisers and missing-data
# weights are positive so that every least-squares system stays positive definite, also for items
# that no training user rated.
_MODEL_FIELDS = {
  "itemknn": {"knn_neighbours": _COUNT},
  "ease": {"ease_reg": _POSITIVE},
  "ials": {
    **_ALS_FIELDS,
    "ials_reg": _POSITIVE,
    "ials_reg_exponent": _NON_NEGATIVE,
    "ials_unobserved_weight": _POSITIVE,
  },
  "eals": {**_ALS_FIELDS, "eals_reg": _POSITIVE, "eals_w0": _POSITIVE, "eals_alpha": _NON_NEGATIVE},
  "dmf": _TOWER_FIELDS,
  "lfm": _TOWER_FIELDS,
  "gmf": _NCF_FIELDS,
  "mlp": _NCF_FIELDS,
  "neumf": {**_NCF_FIELDS, "neumf_lr": _POSITIVE},
}


def check_config(config: config_dict.ConfigDict) -> None:
  """Fails before any compute on values that no run can use."""
  if config.model.name not in MODELS:
    raise ConfigError(
      f"model.name={config.model.name!r} is not a known model (choose from {', '.join(MODELS)})"
    )
  for field, (ok, expected) in _MODEL_FIELDS.get(config.model.name, {}).items():
    if not ok(config.model[field]):
      raise ConfigError(f"model.{field}={config.model[field]}: must be {expected}")
  ks = tuple(config.eval.ks) if isinstance(config.eval.ks, list | tuple) else (config.eval.ks,)
  if not ks or not all(isinstance(k, int) and not isinstance(k, bool) and k >= 1 for k in ks):
    raise ConfigError(f"eval.ks={ks}: give one or more positive whole cut-offs, e.g. (10,)")
  if not isinstance(config.data.split_seed, int) or config.data.split_seed < 0:
    raise ConfigError(f"data.split_seed={config.data.split_seed}: must be a whole number >= 0")
  if config.eval.select not in {f"{m}@{k}" for m in ("hr", "ndcg") for k in config.eval.ks}:
    raise ConfigError(
      f"eval.select={config.eval.select!r}: must be hr@K or ndcg@K for a K in eval.ks={tuple(config.eval.ks)}"
    )
  if config.eval.batch_size < 1:
    raise ConfigError(f"eval.batch_size={config.eval.batch_size}: must be at least 1")
  if config.eval.full_ranking_users < 1:
    raise ConfigError(
      f"eval.full_ranking_users={config.eval.full_ranking_users}: must be at least 1"
    )
  if config.model.name in training.FAMILIES:
    training.check_config(config)


def train_and_evaluate(
  config: config_dict.ConfigDict,
  workdir: str | pathlib.Path,
  *,
  overwrite: bool = False,
  label: str | None = None,
  seed_batch=None,
) -> dict:
  """Runs `config` in `workdir` and returns the contents of its `results.json`.

  A workdir holding this config's finished run is left alone and its results returned; one holding
  another config's run is refused unless `overwrite`, which starts the run over. The workdir is
  held for the whole run: another process's run there is refused (`WorkdirBusy`). `label` names
  the run in its progress (default: the model's name). `seed_batch` (a `training.SeedBatch`)
  trains its epochs beside other seeds of its config.
  """
  code_version()  # the code this process loaded, before anything trains
  wall_start = time.perf_counter()
  check_config(config)
  run = Workdir(workdir)
  with run.locked():
    return _train_and_evaluate(
      config,
      run,
      overwrite=overwrite,
      wall_start=wall_start,
      label=label or config.model.name,
      seed_batch=seed_batch,
    )


def _train_and_evaluate(
  config, run: Workdir, *, overwrite: bool, wall_start: float, label: str, seed_batch
):
  """`train_and_evaluate` in a workdir this process holds."""
  run.remove_leftovers()
  if run.claim(config, overwrite=overwrite) == "finished":
    log.info("%s already holds this config's finished run; nothing to train", run.path)
    results = run.results()
    _report(config.model.name, results)
    return results

  data = data_lib.load(config.data)
  split = protocol.get_split(
    data,
    split_seed=config.data.split_seed,
    validation=config.eval.validation,
    num_negatives=config.eval.num_negatives,
    workdir=None,
  )
  # NeuMF-p's pretrained runs are checked before this run writes anything.
  initial_params = ncf.pretrained_params(
    config, run.path, (data.num_users, data.num_items), data.sha256, split.key
  )
  run.start(config)
  run.save_split(split)
  train = split.train_matrix(implicit=config.data.implicit)
  eval_sets = evaluation.eval_sets(
    split, train, config.eval.full_ranking_users, config.data.split_seed
  )
  context = Context(config, data, split, train, eval_sets, run, initial_params, label, seed_batch)
  log.info("%s on %s (%d training ratings)", config.model.name, data.name, train.nnz)

  outcome = MODELS[config.model.name](context)

  run.save_ranks(data.user_ids[split.eval_users], outcome.ranks)
  results = {
    "model": config.model.name,
    "dataset": data.name,
    # The file itself (resolved), so that serving finds it from any shell.
    "data": {**data.statistics(), "path": str(data.path.resolve())},
    "split": split.key,
    "seed": config.seed,
    "best_epoch": outcome.best_epoch,
    "full_ranking_users": len(eval_sets["test"].full_rows),
    "validation": outcome.metrics["valid"],
    "test": outcome.metrics["test"],
    "train_seconds": round(outcome.train_seconds, 3),
    "wall_seconds": round(time.perf_counter() - wall_start, 3),
    "code": code_version(),
    "device": jax.devices()[0].device_kind,  # where it trained: "cpu", "NVIDIA H200", ...
    "finished": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
  }
  run.finish(results)
  _report(config.model.name, results)
  return results


def _report(name: str, results: dict) -> None:
  log.info(
    "%s: best epoch %d, validation %s, test %s",
    name,
    results["best_epoch"],
    _brief(results["validation"]),
    _brief(results["test"]),
  )


def _brief(metrics: dict[str, float]) -> str:
  return " ".join(f"{k}={v:.4f}" for k, v in metrics.items())
