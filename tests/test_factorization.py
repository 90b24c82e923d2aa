"""EASE^R, iALS and eALS against direct dense numpy computations on tiny problems."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import default
from dmf_jax import experiment, factorization, sparse
from dmf_jax.errors import ConfigError
from dmf_jax.workdir import Workdir
from tests.conftest import synthetic_rows, write_ml100k


def _matrix(dense):
  rows, cols = np.nonzero(dense)
  return sparse.CSR.from_coo(rows, cols, dense[rows, cols], dense.shape)


def _ratings(num_users, num_items, seed=0):
  """Ratings 1-5 at ~40% of the entries; every user has at least one, one item has none."""
  rng = np.random.default_rng(seed)
  dense = (rng.random((num_users, num_items)) < 0.4) * rng.integers(1, 6, (num_users, num_items))
  dense[np.arange(num_users), rng.integers(0, num_items - 1, num_users)] = 3
  dense[:, -1] = 0
  return dense.astype(np.float32)


def _factors(num_users, num_items, dim, seed=1):
  rng = np.random.default_rng(seed)
  return rng.normal(0, 0.3, (num_users, dim)), rng.normal(0, 0.3, (num_items, dim))


def _observed(dense):
  rows, cols = np.nonzero(dense)  # row-major, as CSR stores them
  return jnp.asarray(rows, jnp.int32), jnp.asarray(cols, jnp.int32)


@pytest.mark.parametrize("shape", [(7, 11), (11, 7)])  # users' Gramian, then items' Gramian
def test_ease_against_the_explicit_inverse(shape):
  dense = _ratings(*shape)
  reg = 2.5
  x = (dense > 0).astype(np.float64)  # EASE reads Eq. 1 whatever the ratings
  p = np.linalg.inv(x.T @ x + reg * np.eye(shape[1]))
  b = np.eye(shape[1]) - p / np.diag(p)[None, :]
  np.testing.assert_allclose(np.diag(b), 0, atol=1e-12)
  got = factorization.ease_scores(_matrix(dense), reg)
  np.testing.assert_allclose(got, x @ b, rtol=1e-4, atol=1e-5)


def _ials_reference(users, items, y, unobserved_weight, reg, reg_exponent):
  """One sweep solving each row's weighted least squares as a stacked dense system."""

  def solve(fixed, y):
    out = np.empty((y.shape[0], fixed.shape[1]))
    for r in range(y.shape[0]):
      # (s - 1)^2 + a0 s^2 on observed, a0 s^2 elsewhere: weight a0 + y, target y / (a0 + y).
      weight = unobserved_weight + y[r]
      row_reg = reg * (y[r].sum() + unobserved_weight * y.shape[1]) ** reg_exponent
      a = np.vstack([np.sqrt(weight)[:, None] * fixed, np.sqrt(row_reg) * np.eye(fixed.shape[1])])
      b = np.concatenate([np.sqrt(weight) * y[r] / weight, np.zeros(fixed.shape[1])])
      out[r] = np.linalg.lstsq(a, b, rcond=None)[0]
    return out

  users = solve(items, y)
  return users, solve(users, y.T)


def test_one_ials_sweep_against_dense_least_squares():
  dense = _ratings(9, 13)
  y = (dense > 0).astype(np.float64)
  users, items = _factors(9, 13, 4)
  hyper = (0.3, 0.05, 0.75)
  want_users, want_items = _ials_reference(users, items, y, *hyper)
  y_csr = _matrix(dense)
  buckets = factorization.row_buckets(y_csr), factorization.row_buckets(y_csr.transpose())
  got_users, got_items = factorization.ials_epoch(
    jnp.asarray(users, jnp.float32), jnp.asarray(items, jnp.float32), *buckets, *hyper
  )
  np.testing.assert_allclose(got_users, want_users, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(got_items, want_items, rtol=1e-4, atol=1e-5)


def _eals_loss(users, items, y, weights, reg):
  """He et al.'s objective: observed (1 - s)^2, missing c_j s^2, L2 on both factor matrices."""
  w = np.where(y > 0, 1.0, weights[None, :])
  return np.sum(w * (y - users @ items.T) ** 2) + reg * (np.sum(users**2) + np.sum(items**2))


def _eals_reference(users, items, y, weights, reg):
  """One sweep of exact coordinate minimisations of the dense objective, one entry at a time."""
  users, items = users.copy(), items.copy()
  w = np.where(y > 0, 1.0, weights[None, :])
  for u in range(users.shape[0]):
    for f in range(users.shape[1]):
      others = users[u] @ items.T - users[u, f] * items[:, f]
      users[u, f] = np.sum(w[u] * (y[u] - others) * items[:, f]) / (
        np.sum(w[u] * items[:, f] ** 2) + reg
      )
  for i in range(items.shape[0]):
    for f in range(items.shape[1]):
      others = users @ items[i] - users[:, f] * items[i, f]
      items[i, f] = np.sum(w[:, i] * (y[:, i] - others) * users[:, f]) / (
        np.sum(w[:, i] * users[:, f] ** 2) + reg
      )
  return users, items


def test_eals_sweeps_against_dense_coordinate_descent():
  dense = _ratings(9, 13)
  y = (dense > 0).astype(np.float64)
  weights = factorization.eals_item_weights(_matrix(dense), w0=4.0, alpha=0.5).astype(np.float64)
  popularity = np.sqrt(y.sum(axis=0))
  np.testing.assert_allclose(weights, 4.0 * popularity / popularity.sum(), rtol=1e-6)
  reg = 0.05
  users, items = _factors(9, 13, 4)
  got = (jnp.asarray(users, jnp.float32), jnp.asarray(items, jnp.float32))
  losses = [_eals_loss(users, items, y, weights, reg)]
  for _ in range(3):
    users, items = _eals_reference(users, items, y, weights, reg)
    got = factorization.eals_epoch(*got, *_observed(dense), jnp.asarray(weights, jnp.float32), reg)
    np.testing.assert_allclose(got[0], users, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got[1], items, rtol=1e-4, atol=1e-5)
    losses.append(_eals_loss(users, items, y, weights, reg))
  assert np.all(np.diff(losses) < 0), losses


def test_init_factors_scale_and_seed():
  users, items = factorization.init_factors(jax.random.key(3), (500, 40), 16)
  assert users.shape == (500, 16) and items.shape == (40, 16)
  assert float(jnp.std(users)) == pytest.approx(0.1 / 4, rel=0.1)
  again, _ = factorization.init_factors(jax.random.key(3), (500, 40), 16)
  np.testing.assert_array_equal(users, again)


@pytest.mark.parametrize(
  "name, field, value",
  [
    ("ease", "ease_reg", -1.0),
    ("ials", "ials_unobserved_weight", 0.0),
    ("ials", "als_factors", 0),
    ("eals", "eals_alpha", -0.5),
    ("itemknn", "knn_neighbours", 0),
    ("dmf", "temperature", 0.0),
    ("dmf", "ccl_margin", 1.5),
    ("lfm", "ccl_weight", -1.0),
  ],
)
def test_out_of_range_field_fails_before_the_workdir_is_touched(tmp_path, name, field, value):
  config = default.get_config()
  config.model.name = name
  config.model[field] = value
  with pytest.raises(ConfigError, match=f"model.{field}={value}: must be"):
    experiment.train_and_evaluate(config, tmp_path / "run")
  assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("name", ["ials", "eals"])
def test_als_run_reports_the_epoch_with_the_best_validation_ndcg(tmp_path, name):
  write_ml100k(tmp_path / "data", synthetic_rows())
  config = default.get_config()
  config.data.root = str(tmp_path / "data")
  config.eval.num_negatives = 10
  config.model.update(name=name, als_factors=4, als_epochs=4)
  results = experiment.train_and_evaluate(config, tmp_path / "run")
  records = Workdir(tmp_path / "run").metrics()
  assert [r["epoch"] for r in records] == [1, 2, 3, 4]
  assert all(r["seconds"] > 0 for r in records)
  best = max(records, key=lambda r: r["validation"]["ndcg@10"])
  assert results["best_epoch"] == best["epoch"]
  assert results["validation"] == best["validation"] and results["test"] == best["test"]


def test_in_batch_negatives_need_the_softmax_loss(tmp_path):
  config = default.get_config()
  config.model.in_batch_negatives = True
  with pytest.raises(ConfigError, match="model.in_batch_negatives=True with model.loss='nce'"):
    experiment.train_and_evaluate(config, tmp_path / "run")
  assert not (tmp_path / "run").exists()
