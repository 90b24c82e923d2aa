"""Towers, cosine and losses against hand-computed values; first-layer forms; gradients."""

import flax.linen as nn
import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import sparse as jsparse

from configs import default
from dmf_jax import losses, models, sparse


def test_cosine_by_hand_and_all_zero_is_finite():
  p, q = jnp.array([1.0, 2.0, 2.0]), jnp.array([2.0, 0.0, 1.0])
  assert models.cosine(p, q) == pytest.approx(4 / (3 * np.sqrt(5)), rel=1e-6)
  zero = jnp.zeros(3)
  assert models.cosine(zero, q) == 0.0
  grad = jax.grad(lambda v: models.cosine(v, q))(zero)
  assert np.all(np.isfinite(grad))
  np.testing.assert_allclose(
    models.batched_cosine(jnp.stack([p, zero]), jnp.stack([q, q])),
    [4 / (3 * np.sqrt(5)), 0.0],
    rtol=1e-6,
  )


def test_losses_by_hand():
  # ce: target 1 for a positive; nce: target rating / max(R) = 4 / 5.
  score = jnp.array(0.8)
  assert losses.binary_cross_entropy(score, 1.0) == pytest.approx(-np.log(0.8), rel=1e-6)
  assert losses.binary_cross_entropy(score, 0.8) == pytest.approx(
    -(0.8 * np.log(0.8) + 0.2 * np.log(0.2)), rel=1e-6
  )
  assert losses.target("nce", jnp.array(4.0), 5.0) == pytest.approx(0.8)
  assert losses.target("ce", jnp.array(4.0), 5.0) == 1.0
  # Eq. 13: a negative cosine is floored at 1e-6, so a positive pays -log(1e-6).
  assert losses.binary_cross_entropy(jnp.array(-0.5), 1.0) == pytest.approx(-np.log(1e-6), rel=1e-5)
  # A perfect cosine stays finite for a negative (capped just below 1).
  assert np.isfinite(losses.binary_cross_entropy(jnp.array(1.0), 0.0))


def test_beyond_paper_losses_by_hand():
  scores = jnp.array([0.9, 0.5, -0.2, 0.7])  # the positive, then three negatives
  # Sampled softmax at t = 0.5: -log(e^1.8 / (e^1.8 + e^1.0 + e^-0.4 + e^1.4)).
  expected = -np.log(np.exp(1.8) / (np.exp(1.8) + np.exp(1.0) + np.exp(-0.4) + np.exp(1.4)))
  assert losses.sampled_softmax(scores, 0.5) == pytest.approx(expected, rel=1e-6)
  # CCL at m = 0.4, w = 3: (1 - 0.9) + 3 * mean(0.1, 0, 0.3) = 0.1 + 0.4.
  assert losses.cosine_contrastive(scores, 0.4, 3.0) == pytest.approx(0.5, rel=1e-6)
  # Through `for_model`, one loss per positive, whatever the targets.
  model = default.get_config().model
  model.loss, model.temperature = "softmax", 0.5
  batch = jnp.stack([scores, scores[::-1]])
  got = losses.for_model(model)(batch, jnp.zeros_like(batch))
  assert got.shape == (2,) and got[0] == pytest.approx(expected, rel=1e-6)
  model.loss, model.ccl_margin, model.ccl_weight = "ccl", 0.4, 3.0
  assert losses.for_model(model)(batch, batch)[0] == pytest.approx(0.5, rel=1e-6)
  assert losses.target("softmax", jnp.array(4.0), 5.0) == 1.0


def test_in_batch_negatives_add_every_other_item_of_the_batch():
  rng = np.random.default_rng(0)
  p = jnp.asarray(rng.normal(size=(2, 3)), jnp.float32)
  q = jnp.asarray(rng.normal(size=(4, 3)), jnp.float32)  # user 0's items 0-1, user 1's 2-3
  scores = models.scores_with_batch(p, q)
  cos = lambda a, b: float(np.dot(a, b) / np.linalg.norm(a) / np.linalg.norm(b))  # noqa: E731
  assert scores.shape == (2, 2 + 4)
  np.testing.assert_allclose(scores[0, :2], [cos(p[0], q[0]), cos(p[0], q[1])], rtol=1e-5)
  np.testing.assert_allclose(scores[0, 4:], [cos(p[0], q[2]), cos(p[0], q[3])], rtol=1e-5)
  assert np.all(np.isneginf(scores[0, 2:4])) and np.all(np.isneginf(scores[1, 4:]))
  np.testing.assert_allclose(scores[1, 2:4], [cos(p[1], q[0]), cos(p[1], q[1])], rtol=1e-5)
  # The softmax over them counts the user's own items once; its gradient stays finite.
  model = default.get_config().model
  model.loss, model.temperature = "softmax", 0.5
  loss_fn = losses.for_model(model)
  got = loss_fn(scores, None)[0]
  logits = np.array([cos(p[0], q[j]) for j in range(4)]) / 0.5
  assert got == pytest.approx(np.log(np.exp(logits).sum()) - logits[0], rel=1e-5)
  grads = jax.grad(lambda p: loss_fn(models.scores_with_batch(p, q), None).sum())(p)
  assert np.all(np.isfinite(grads)) and np.any(grads != 0)


@pytest.mark.parametrize("loss", ["softmax", "ccl"])
def test_beyond_paper_losses_gradients_match_finite_differences(loss):
  jax.config.update("jax_enable_x64", True)
  try:
    model = default.get_config().model
    model.loss, model.temperature, model.ccl_margin, model.ccl_weight = loss, 0.3, 0.2, 5.0
    loss_fn = losses.for_model(model)
    rng = np.random.default_rng(5)
    # Away from CCL's hinge (|s - m| > 0.05), where it is smooth.
    scores = rng.choice([-1, 1], (3, 5)) * rng.uniform(0.3, 0.9, (3, 5)) + 0.2
    scores = jnp.asarray(scores, jnp.float64)

    def total(s):
      return jnp.sum(loss_fn(s, jnp.zeros_like(s)))

    analytic = np.asarray(jax.grad(total)(scores)).reshape(-1)
    flat = scores.reshape(-1)
    eps = 1e-6
    numeric = [
      (total((flat.at[i].add(eps)).reshape(3, 5)) - total((flat.at[i].add(-eps)).reshape(3, 5)))
      / (2 * eps)
      for i in range(flat.shape[0])
    ]
    np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-8)
    assert np.any(analytic != 0)
  finally:
    jax.config.update("jax_enable_x64", False)


def _random_csr(seed=0, shape=(20, 30)):
  rng = np.random.default_rng(seed)
  dense = (rng.random(shape) < 0.2) * rng.integers(1, 6, shape).astype(np.float32)
  dense[3] = 0  # an empty row
  r, c = np.nonzero(dense)
  return sparse.CSR.from_coo(r, c, dense[r, c], shape)


def _tower_params(widths, num_columns, key=0):
  tower = models.Tower(widths)
  rows = models.placeholder_rows(num_columns)
  return tower, nn.unbox(tower.init(jax.random.key(key), rows, jnp.zeros(1, jnp.int32)))["params"]


def test_tower_follows_eq5_with_named_parameters():
  tower, params = _tower_params((3, 2), 4)
  assert jax.tree.map(jnp.shape, params) == {
    "first": {"kernel": (4, 3)},  # W1 without bias (Eq. 5)
    "hidden_0": {"kernel": (3, 2), "bias": (2,)},
  }
  params["hidden_0"]["bias"] = params["hidden_0"]["bias"] + 0.5
  row = sparse.CSR.from_coo([0, 0], [0, 2], [1.0, 2.0], (1, 4))
  rows = models.SparseRows.from_csr(row, "dense", 1)
  x = np.array([[1.0, 0.0, 2.0, 0.0]])
  w1, w2 = np.asarray(params["first"]["kernel"]), np.asarray(params["hidden_0"]["kernel"])
  expected = np.maximum((x @ w1) @ w2 + 0.5, 0)
  got = tower.apply({"params": params}, rows, jnp.zeros(1, jnp.int32))
  np.testing.assert_allclose(got, expected, rtol=1e-5)
  # A one-layer tower is linear: p = W1 x, negative entries included.
  one, one_params = _tower_params((3,), 4)
  np.testing.assert_allclose(
    one.apply({"params": one_params}, rows, jnp.zeros(1, jnp.int32)),
    x @ np.asarray(one_params["first"]["kernel"]),
    rtol=1e-6,
  )


def test_dmf_parameters_are_named_and_initialised_from_n_0_001():
  module = models.DMF((256, 64), (128, 64))
  params = nn.unbox(models.init_params(module, jax.random.key(0), (300, 500)))
  shapes = {
    jax.tree_util.keystr(k): v.shape for k, v in jax.tree_util.tree_leaves_with_path(params)
  }
  assert shapes == {
    "['item_tower']['first']['kernel']": (300, 128),
    "['item_tower']['hidden_0']['bias']": (64,),
    "['item_tower']['hidden_0']['kernel']": (128, 64),
    "['user_tower']['first']['kernel']": (500, 256),
    "['user_tower']['hidden_0']['bias']": (64,),
    "['user_tower']['hidden_0']['kernel']": (256, 64),
  }
  w1 = np.asarray(params["user_tower"]["first"]["kernel"])
  assert abs(w1.mean()) < 1e-3 and w1.std() == pytest.approx(0.01, rel=0.02)
  assert not np.any(params["user_tower"]["hidden_0"]["bias"])


@pytest.mark.parametrize("form", ["dense", "padded", "segment"])
def test_each_form_reads_the_rows_of_the_bcoo(form):
  # Times the identity, a form gives back the rows it read: every entry, nothing else.
  matrix = _random_csr()
  rows = models.SparseRows.from_csr(matrix, form, 6, shards=2)
  assert isinstance(rows.matrix, jsparse.BCOO)
  np.testing.assert_array_equal(rows.matrix.todense(), matrix.to_dense())
  ids = jnp.array([3, 0, 19, 0, 7, 5])  # an empty row, and a row drawn twice across shards
  np.testing.assert_array_equal(
    jax.jit(rows.times)(jnp.eye(30), ids), matrix.to_dense()[np.asarray(ids)]
  )


@pytest.mark.parametrize("form", ["padded", "segment"])
def test_sparse_first_layers_match_dense_in_value_and_gradient(form):
  matrix = _random_csr()
  tower, params = _tower_params((8, 4), 30, key=1)
  ids = jnp.array([3, 0, 5, 19, 3])

  def objective(params, rows):
    return jnp.sum(jnp.sin(tower.apply({"params": params}, rows, ids)))

  dense = models.SparseRows.from_csr(matrix, "dense", 5)
  other = models.SparseRows.from_csr(matrix, form, 5)
  np.testing.assert_allclose(
    tower.apply({"params": params}, other, ids),
    tower.apply({"params": params}, dense, ids),
    rtol=1e-5,
    atol=1e-7,
  )
  grads_dense = jax.grad(objective)(params, dense)
  grads_other = jax.grad(objective)(params, other)
  for a, b in zip(jax.tree.leaves(grads_dense), jax.tree.leaves(grads_other), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("form", ["dense", "segment"])
def test_batch_of_the_longest_row_repeated_fits(form):
  # The buffer holds the batch_rows longest distinct rows; a batch that draws the longest row
  # every time must not overflow it.
  matrix = _random_csr()
  longest = int(np.argmax(matrix.row_lengths()))
  ids = jnp.array([longest] * 4 + [0])
  w1 = jax.random.normal(jax.random.key(2), (30, 6))
  rows = models.SparseRows.from_csr(matrix, form, 5)
  x = matrix.to_dense()[np.asarray(ids)]
  expected = x @ np.asarray(w1)
  np.testing.assert_allclose(rows.times(w1, ids), expected, rtol=1e-5, atol=1e-5)
  gradient = jax.grad(lambda w1: jnp.sum(jnp.sin(rows.times(w1, ids))))(w1)
  np.testing.assert_allclose(gradient, x.T @ np.cos(expected), rtol=1e-4, atol=1e-5)


def test_auto_first_layer_rule():
  rule = models.resolve_first_layer
  assert rule("auto", (943, 1682), 98_114, "cpu") == "dense"  # ML-100k
  assert rule("auto", (6040, 3706), 988_129, "cpu") == "dense"  # ML-1M
  assert rule("auto", (844, 18_813), 44_780, "cpu") == "segment"  # Amazon Music: sparse
  assert rule("auto", (844, 18_813), 44_780, "gpu") == "dense"  # dense rows are cheap on a GPU
  for platform in ("cpu", "gpu"):
    assert rule("auto", (100_000, 100_000), 10**9, platform) == "segment"  # too big
  assert rule("padded", (10, 10), 50, "gpu") == "padded"


def test_gradient_matches_finite_differences():
  jax.config.update("jax_enable_x64", True)
  try:
    matrix = _random_csr(seed=2, shape=(6, 7))
    rows = models.SparseRows.from_csr(matrix, "dense", 3)
    data64 = rows.matrix.data.astype(jnp.float64)
    rows = rows.replace(matrix=jsparse.BCOO((data64, rows.matrix.indices), shape=(6, 7)))
    tower, params = _tower_params((5, 3), 7, key=3)
    # Weights scaled up and positive biases keep the ReLUs active and the cosines inside the
    # clip range (0, 1), where the loss is smooth and finite differences are meaningful.
    params = jax.tree.map(lambda a: a.astype(jnp.float64) * 30, params)
    params["hidden_0"]["bias"] = jnp.full(3, 0.5, jnp.float64)
    items = jnp.asarray(np.abs(np.random.default_rng(4).normal(size=(3, 3))) + 0.1)
    ids = jnp.array([0, 2, 5])

    def loss(params):
      scores = models.batched_cosine(tower.apply({"params": params}, rows, ids), items)
      return jnp.sum(losses.batched_binary_cross_entropy(scores, jnp.array([1.0, 0.6, 0.0])))

    analytic = jax.grad(loss)(params)
    flat, unravel = jax.flatten_util.ravel_pytree(params)
    eps = 1e-6
    numeric = np.array(
      [
        (loss(unravel(flat.at[i].add(eps))) - loss(unravel(flat.at[i].add(-eps)))) / (2 * eps)
        for i in range(flat.shape[0])
      ]
    )
    np.testing.assert_allclose(
      jax.flatten_util.ravel_pytree(analytic)[0], numeric, rtol=1e-4, atol=1e-6
    )
  finally:
    jax.config.update("jax_enable_x64", False)
