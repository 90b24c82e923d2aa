"""What every model receives (`Context`) and returns (`Outcome`) in a run."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from ml_collections import config_dict

from dmf_jax import data as data_lib
from dmf_jax import evaluation, protocol, sparse
from dmf_jax.workdir import Workdir


@dataclasses.dataclass
class Context:
  """What a model needs to fit and to be evaluated."""

  config: config_dict.ConfigDict
  data: data_lib.Interactions
  split: protocol.Split
  train: sparse.CSR  # the training Y, users by items
  eval_sets: dict[str, evaluation.EvalSet]
  workdir: Workdir
  initial_params: dict | None = None  # a trained model's start (NeuMF-p's), else its own init
  label: str = ""  # the run's name in its progress
  seed_batch: Any = None  # a `training.SeedBatch`: its epochs run beside its member's other seeds

  def evaluate(self, score_all: evaluation.ScoreAll, score_candidates=None):
    """Validation and test metrics and per-user ranks of `score_all` (and `score_candidates`,
    `evaluation.evaluate`)."""
    metrics, ranks = {}, {}
    for name, eval_set in self.eval_sets.items():
      metrics[name], ranks[name] = evaluation.evaluate(
        score_all,
        eval_set,
        ks=self.config.eval.ks,
        batch_size=self.config.eval.batch_size,
        score_candidates=score_candidates,
      )
    return metrics, ranks


@dataclasses.dataclass
class Outcome:
  """The reported evaluation of a run: the epoch chosen on validation NDCG and its metrics."""

  best_epoch: int
  metrics: dict[str, dict[str, float]]  # {"valid": {...}, "test": {...}}
  ranks: dict[str, dict[str, np.ndarray]]
  train_seconds: float
