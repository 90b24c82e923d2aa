"""Using a finished run: scores and recommendations in raw ids, from its workdir alone.

    model = dmf_jax.load("runs/ml100k")
    model.recommend(["196"], k=10)
    model.recommend_for_ratings({"50": 5, "172": 4}, k=10)   # a new user, no retraining

DMF reads the new user's ratings as a row of Y through the user tower; ItemPop and ItemKNN score it
as they score any user; LFM, GMF, MLP and NeuMF have no input for a user they have not learnt.
Recommendations never include an item the user rated anywhere in the data (held-out items
included). Scores are cosines for DMF and LFM, logits for GMF, MLP and NeuMF.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import pathlib
from collections.abc import Mapping, Sequence

import jax.numpy as jnp
import numpy as np
from ml_collections import config_dict

from dmf_jax import baselines, checkpoints, files, models, ncf, protocol, sparse, training
from dmf_jax import data as data_lib
from dmf_jax.errors import UserError
from dmf_jax.workdir import Workdir

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Recommendation:
  rank: int
  item: str
  score: float
  title: str


# Config fields added after runs were first written, each with the value that trains as the code
# before it did: a run whose config.json lacks one is served as it was trained.
FIELDS_ADDED_LATER = {
  "model": {"temperature": 0.2, "ccl_margin": 0.4, "ccl_weight": 8.0, "in_batch_negatives": False},
  "train": {"optimizer": "adam", "lazy_max_read_share": 0.5, "chunk_steps": 256},
  "eval": {"full_ranking_users": 10_000},
}


def _with_fields_added_later(stored: dict) -> dict:
  return {
    section: {**FIELDS_ADDED_LATER.get(section, {}), **fields}
    if isinstance(fields, dict)
    else fields
    for section, fields in stored.items()
  }


def _to_tuples(value):
  if isinstance(value, dict):
    return {k: _to_tuples(v) for k, v in value.items()}
  return tuple(value) if isinstance(value, list) else value


class Recommender:
  """A finished run restored from its workdir (the best checkpoint of a trained model)."""

  def __init__(self, workdir: str | pathlib.Path, data_root: str | pathlib.Path | None = None):
    run = Workdir(workdir)
    stored, results = run.stored_config(), run.results()
    if stored is None:
      raise UserError(f"{run.path}: no config.json, so not a dmf_jax run folder")
    if results is None:
      raise UserError(f"{run.path}: the run has not finished (no results.json)")
    self.config = config_dict.ConfigDict(_to_tuples(_with_fields_added_later(stored)))
    self.results = results
    self.data = _training_data(self.config.data, results["data"], run, data_root)
    if self.data.sha256 != results["data"]["sha256"]:
      raise UserError(
        f"{self.data.path}: its checksum differs from the data {run.path} was trained on"
      )
    split = protocol.Split.load(run.file(protocol.SPLIT_FILE))
    if split.key != results["split"]:
      raise UserError(
        f"{run.file(protocol.SPLIT_FILE)} holds split {split.key}, not the split {results['split']} "
        "the run was trained on: retrain the run (--overwrite) or restore its own split file"
      )
    self.train = split.train_matrix(implicit=self.config.data.implicit)
    self.rated = sparse.CSR.from_coo(
      self.data.users, self.data.items, self.data.ratings, self.train.shape
    )
    self._user_index = {u: i for i, u in enumerate(self.data.user_ids)}
    self._item_index = {item: j for j, item in enumerate(self.data.item_ids)}
    self._restore(run)

  def _restore(self, run: Workdir) -> None:
    name = self.config.model.name
    self.user_vectors = self.item_vectors = self._score_all = None
    if name in training.FAMILIES:
      trainer = training.Trainer(self.config, self.train.shape)
      ckpt = checkpoints.Checkpoints(run.file(checkpoints.FOLDER))
      try:
        self.params = ckpt.restore_params(self.results["best_epoch"], trainer.abstract_params())
      finally:
        ckpt.close()
      self._module = trainer.module
      max_target = 1.0 if self.config.data.implicit else self.data.max_rating
      train_data = training.build_data(self.config, self.train, max_target, trainer.mesh)
      if trainer.score_all is not None:
        self._score_all = training.scorers(trainer, self.params, train_data)[0]
      else:
        self.user_vectors, self.item_vectors = trainer.vectors(self.params, train_data)
    elif name == "itempop":
      self._popularity = baselines.itempop_scores(self.train)
    elif name == "itemknn":
      self._knn = baselines.itemknn_weights(self.train, self.config.model.knn_neighbours)
    else:
      raise UserError(f"model.name={name!r} cannot be served")

  # --- ids ---------------------------------------------------------------------------------
  def _users(self, users: Sequence[str]) -> np.ndarray:
    return np.array([self._lookup(self._user_index, u, "user") for u in users], np.int32)

  def _items(self, items: Sequence[str]) -> np.ndarray:
    return np.array([self._lookup(self._item_index, i, "item") for i in items], np.int32)

  def _lookup(self, index: Mapping[str, int], raw, kind: str) -> int:
    try:
      return index[str(raw)]
    except KeyError:
      raise UserError(f"unknown {kind} '{raw}' in data set {self.data.name}") from None

  # --- scores ------------------------------------------------------------------------------
  def _scores_of_users(self, users: np.ndarray) -> np.ndarray:
    """float32[B, N] scores of known users against every item."""
    if self.user_vectors is not None:
      return np.asarray(training.cosine_scores(self.user_vectors, self.item_vectors, users))
    if self._score_all is not None:
      return np.asarray(self._score_all(jnp.asarray(users)))
    if self.config.model.name == "itempop":
      return np.broadcast_to(self._popularity, (len(users), len(self._popularity)))
    return baselines.itemknn_scores(self.train.take_rows(users), self._knn)

  def _scores_of_row(self, row: sparse.CSR) -> np.ndarray:
    """float32[N] scores of a user given only as a row of Y."""
    name = self.config.model.name
    if name == "lfm" or name in ncf.NAMES:
      label = {"lfm": "LFM", "gmf": "GMF", "mlp": "MLP", "neumf": "NeuMF"}[name]
      raise UserError(f"{label} learns one vector per known user: it cannot score a new user")
    if name == "itempop":
      return self._popularity.copy()
    if name == "itemknn":
      return baselines.itemknn_scores(row, self._knn)[0]
    p_1xD = self._module.apply(
      {"params": self.params},
      models.SparseRows.from_csr(row, "dense", 1),
      jnp.zeros(1, jnp.int32),
      method="user_vectors",
    )
    return np.asarray(models.normalize(p_1xD) @ self.item_vectors.T)[0]

  def score(self, users: Sequence[str] | str, items: Sequence[str] | str) -> np.ndarray:
    """Scores of (user, item) pairs; a single user or item is paired with every one of the other."""
    users, items = np.broadcast_arrays(np.atleast_1d(users), np.atleast_1d(items))
    user_idx, item_idx = self._users(users), self._items(items)
    unique, inverse = np.unique(user_idx, return_inverse=True)
    return self._scores_of_users(unique)[inverse, item_idx]

  # --- recommendations ---------------------------------------------------------------------
  def _top(self, scores: np.ndarray, excluded: np.ndarray, k: int) -> list[Recommendation]:
    scores = np.array(scores, np.float32)
    scores[excluded] = -np.inf
    k = min(k, int(np.isfinite(scores).sum()))
    # Stable sort: among equal scores the lower item index comes first, so output is reproducible.
    top = np.argsort(-scores, kind="stable")[:k]
    titles = self.data.item_titles
    return [
      Recommendation(
        r + 1,
        str(self.data.item_ids[j]),
        float(scores[j]),
        str(titles[j]) if titles is not None else "",
      )
      for r, j in enumerate(top)
    ]

  def recommend(self, users: Sequence[str] | str, k: int = 10) -> list[list[Recommendation]]:
    """The top k items for each known user, leaving out every item the user rated."""
    _check_k(k)
    user_idx = self._users(np.atleast_1d(users))
    scores = self._scores_of_users(user_idx)
    return [
      self._top(s, self.rated.indices[self.rated.indptr[u] : self.rated.indptr[u + 1]], k)
      for u, s in zip(user_idx, scores, strict=True)
    ]

  def recommend_for_ratings(
    self, ratings: Mapping[str, float], k: int = 10
  ) -> list[Recommendation]:
    """The top k items for a new user described by {item: rating}, leaving out those items."""
    _check_k(k)
    if not ratings:
      raise UserError("give at least one rated item for a new user")
    items = self._items(list(ratings))
    if len(set(items.tolist())) < len(items):
      raise UserError("each item may be rated once for a new user")
    values = np.asarray([float(v) for v in ratings.values()], np.float32)
    top = self.data.max_rating
    if np.any(~np.isfinite(values) | (values <= 0) | (values > top)):
      raise UserError(f"ratings of a new user must be in (0, {top:g}], the data set's range")
    if self.config.data.implicit:
      values = np.ones_like(values)
    row = sparse.CSR.from_coo(
      np.zeros(len(items), np.int32), items, values, (1, self.train.shape[1])
    )
    return self._top(self._scores_of_row(row), items, k)

  # --- export ------------------------------------------------------------------------------
  def export(self, folder: str | pathlib.Path, k: int = 10) -> list[pathlib.Path]:
    """Writes `vectors.npz` (DMF and LFM: unit-length user and item vectors with raw ids) and
    `topk.csv` (user, rank, item, score) for every user; returns the files written."""
    folder = pathlib.Path(folder)
    written = []
    if self.user_vectors is not None:
      path = folder / "vectors.npz"
      with files.atomic_write(path, "wb") as f:
        np.savez(
          f,
          user_ids=self.data.user_ids.astype(str),
          user_vectors=np.asarray(self.user_vectors),
          item_ids=self.data.item_ids.astype(str),
          item_vectors=np.asarray(self.item_vectors),
        )
      written.append(path)
    path = folder / "topk.csv"
    with files.atomic_write(path) as f:
      writer = csv.writer(f)
      writer.writerow(["user", "rank", "item", "score"])
      for start in range(0, len(self.data.user_ids), 256):
        users = self.data.user_ids[start : start + 256]
        for user, recs in zip(users, self.recommend(users, k), strict=True):
          writer.writerows([user, r.rank, r.item, f"{r.score:.6g}"] for r in recs)
    written.append(path)
    return written


def _check_k(k: int) -> None:
  if int(k) != k or k < 1:
    raise UserError(f"k={k}: ask for at least 1 item")


def load(workdir: str | pathlib.Path, data_root: str | pathlib.Path | None = None) -> Recommender:
  """The finished run in `workdir`, ready to score and recommend (see `Recommender`).

  The run's data file is read where the run recorded it, so no setting is needed in a new shell;
  if it has moved, `data_root` is the folder that now holds it (for a named data set, the folder
  that holds its directory, as `data.root`)."""
  return Recommender(workdir, data_root)


def _training_data(data_config, recorded: dict, run: Workdir, data_root) -> data_lib.Interactions:
  """The data the run was trained on, from the file it recorded (or the same file under
  `data_root`); a run that recorded no file finds its data as training did."""
  if "path" not in recorded:  # recorded before runs named their file
    return data_lib.load(data_config)
  recorded_path = pathlib.Path(recorded["path"])
  named = data_config.name in data_lib.NAMED
  # A named data set's file sits in its own directory under the root: <root>/<directory>/<file>.
  relative = recorded_path.relative_to(recorded_path.parents[1]) if named else recorded_path.name
  path = pathlib.Path(data_root).expanduser() / relative if data_root else recorded_path
  if not path.is_file():
    raise UserError(
      f"{path}: the data file {run.path} was trained on is missing; give the folder that holds "
      f"{relative} now with --data_root=DIR (Python: dmf_jax.load(workdir, data_root=DIR))"
    )
  data_config = config_dict.ConfigDict(data_config.to_dict())
  if named:
    data_config.root = str(path.parents[1])
  else:
    data_config.path = str(path)
  return data_lib.load(data_config)
