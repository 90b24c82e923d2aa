"""Towers, cosine and losses against hand-computed values; first-layer forms; gradients."""

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest

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


def test_tower_follows_eq5():
  key = jax.random.key(0)
  layers = models.init_tower(key, 4, (3, 2))
  assert "b" not in layers[0] and layers[1]["b"].shape == (2,)
  x = jnp.array([[1.0, 0.0, 2.0, 0.0]])
  w1, w2, b2 = layers[0]["w"], layers[1]["w"], layers[1]["b"] + 0.5
  layers[1]["b"] = b2
  expected = np.maximum((np.asarray(x) @ np.asarray(w1)) @ np.asarray(w2) + 0.5, 0)
  got = models.tower_from_first_layer(layers, x @ w1)
  np.testing.assert_allclose(got, expected, rtol=1e-5)
  # A one-layer tower is linear: p = W1 x, negative entries included.
  one = models.init_tower(key, 4, (3,))
  np.testing.assert_allclose(models.tower_from_first_layer(one, x @ one[0]["w"]), x @ one[0]["w"])


def _random_csr(seed=0, shape=(20, 30)):
  rng = np.random.default_rng(seed)
  dense = (rng.random(shape) < 0.2) * rng.integers(1, 6, shape).astype(np.float32)
  dense[3] = 0  # an empty row
  r, c = np.nonzero(dense)
  return sparse.CSR.from_coo(r, c, dense[r, c], shape)


@pytest.mark.parametrize("form", ["padded", "segment"])
def test_sparse_first_layers_match_dense_in_value_and_gradient(form):
  matrix = _random_csr()
  layers = models.init_tower(jax.random.key(1), 30, (8, 4))
  ids = jnp.array([3, 0, 5, 19, 3])

  def objective(layers, rows):
    return jnp.sum(jnp.sin(models.tower(layers, rows, ids)))

  dense = models.Rows.build(matrix, "dense", 5)
  other = models.Rows.build(matrix, form, 5)
  np.testing.assert_allclose(
    models.tower(layers, other, ids), models.tower(layers, dense, ids), rtol=1e-5, atol=1e-7
  )
  grads_dense = jax.grad(objective)(layers, dense)
  grads_other = jax.grad(objective)(layers, other)
  for a, b in zip(jax.tree.leaves(grads_dense), jax.tree.leaves(grads_other), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7)


def test_segment_batch_of_the_longest_row_repeated_matches_dense():
  # Its buffer holds the batch_rows longest distinct rows; a batch that draws the longest row
  # every time must not overflow it.
  matrix = _random_csr()
  longest = int(np.argmax(matrix.row_lengths()))
  ids = jnp.array([longest] * 4 + [0])
  w1 = jax.random.normal(jax.random.key(2), (30, 6))
  dense = models.Rows.build(matrix, "dense", 5)
  segment = models.Rows.build(matrix, "segment", 5)

  def objective(w1, rows):
    return jnp.sum(jnp.sin(models.first_layer(w1, rows, ids)))

  np.testing.assert_allclose(
    models.first_layer(w1, segment, ids), models.first_layer(w1, dense, ids), rtol=1e-5, atol=1e-6
  )
  np.testing.assert_allclose(
    jax.grad(objective)(w1, segment), jax.grad(objective)(w1, dense), rtol=1e-4, atol=1e-6
  )


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
    rows = models.Rows.build(matrix, "dense", 3)
    rows = models.Rows(dense=rows.dense.astype(jnp.float64), num_columns=7, form="dense")
    # Weights scaled up and positive biases keep the ReLUs active and the cosines inside the
    # clip range (0, 1), where the loss is smooth and finite differences are meaningful.
    layers = jax.tree.map(
      lambda a: a.astype(jnp.float64) * 30, models.init_tower(jax.random.key(3), 7, (5, 3))
    )
    layers[1]["b"] = jnp.full(3, 0.5, jnp.float64)
    items = jnp.asarray(np.abs(np.random.default_rng(4).normal(size=(3, 3))) + 0.1)
    ids = jnp.array([0, 2, 5])

    def loss(layers):
      scores = models.batched_cosine(models.tower(layers, rows, ids), items)
      return jnp.sum(losses.batched_binary_cross_entropy(scores, jnp.array([1.0, 0.6, 0.0])))

    analytic = jax.grad(loss)(layers)
    flat, unravel = jax.flatten_util.ravel_pytree(layers)
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
