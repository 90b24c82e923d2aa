"""One step of the pure training step against a loss, gradient and update worked out by hand."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import traverse_util

from configs import default
from dmf_jax import losses, models, sparse, training

Y = np.array([[5.0, 0.0, 0.0], [1.0, 4.0, 2.0], [3.0, 0.0, 1.0]])  # 3 users x 3 items
W_USER = np.array([[0.1, 0.2], [0.3, -0.1], [0.2, 0.4]])  # items x 2: the user tower's W1
W_ITEM = np.array([[0.5, 0.1], [0.2, 0.3], [0.4, 0.2]])  # users x 2: the item tower's W1
LR = 0.5


def _by_hand(user, items, targets):
  """(loss, new W_USER, new W_ITEM) of one SGD step on one-layer towers (p = x W1, Eq. 5)."""
  x = Y[user]
  p = x @ W_USER
  grad_user, grad_item, loss = np.zeros_like(W_USER), np.zeros_like(W_ITEM), 0.0
  for item, t in zip(items, targets, strict=True):
    column = Y[:, item]
    q = column @ W_ITEM
    norm_p, norm_q = np.linalg.norm(p), np.linalg.norm(q)
    cos = p @ q / (norm_p * norm_q)
    assert 1e-6 < cos < 1 - 1e-6  # inside the clip, where the loss is smooth
    loss += -(t * np.log(cos) + (1 - t) * np.log(1 - cos)) / len(items)
    dloss_dcos = (-t / cos + (1 - t) / (1 - cos)) / len(items)
    dcos_dp = q / (norm_p * norm_q) - cos * p / norm_p**2
    dcos_dq = p / (norm_p * norm_q) - cos * q / norm_q**2
    grad_user += np.outer(x, dloss_dcos * dcos_dp)
    grad_item += np.outer(column, dloss_dcos * dcos_dq)
  return loss, W_USER - LR * grad_user, W_ITEM - LR * grad_item


def test_one_step_matches_the_hand_computed_update():
  matrix = sparse.CSR.from_coo(*np.nonzero(Y), Y[np.nonzero(Y)], Y.shape)
  data = training.TrainData(
    user_rows=models.SparseRows.from_csr(matrix, "dense", 1),
    item_rows=models.SparseRows.from_csr(matrix.transpose(), "dense", 2),
    pos_users=jnp.zeros(1, jnp.int32),
    pos_items=jnp.zeros(1, jnp.int32),
    pos_targets=jnp.ones(1),
  )
  module = models.DMF((2,), (2,))
  params = {
    "user_tower": {"first": {"kernel": jnp.asarray(W_USER, jnp.float32)}},
    "item_tower": {"first": {"kernel": jnp.asarray(W_ITEM, jnp.float32)}},
  }
  optimizer = optax.sgd(LR)
  state = training.TrainState(step=jnp.array(0), params=params, opt_state=optimizer.init(params))
  loss_fn = functools.partial(
    training.batch_loss, module=module, scores_loss=losses.cosine_cross_entropy, l2=0.0
  )
  # User 0 with its positive item 0 (nce target 5 / 5) and a sampled negative, item 2.
  batch = (jnp.array([0]), jnp.array([[0, 2]]), jnp.array([[1.0, 0.0]]))

  new_state, loss = training.train_step(state, data, batch, loss_fn=loss_fn, optimizer=optimizer)

  expected_loss, expected_user, expected_item = _by_hand(0, [0, 2], [1.0, 0.0])
  np.testing.assert_allclose(loss, expected_loss, rtol=1e-5)
  assert int(new_state.step) == 1
  np.testing.assert_allclose(
    new_state.params["user_tower"]["first"]["kernel"], expected_user, rtol=1e-5, atol=1e-7
  )
  np.testing.assert_allclose(
    new_state.params["item_tower"]["first"]["kernel"], expected_item, rtol=1e-5, atol=1e-7
  )


def _lazy_adam_by_hand(params, grads, touched, steps_mu_nu, lr, count, b1=0.9, b2=0.999, eps=1e-8):
  """LazyAdam in NumPy from dense gradients: rows of `touched` weights outside their row set keep
  their values and moments."""
  mu, nu = steps_mu_nu
  new = {}
  for path, w in params.items():
    g = np.asarray(grads[path], np.float64)
    m = (1 - b1) * g + b1 * mu[path]
    v = (1 - b2) * g * g + b2 * nu[path]
    w_new = w - lr * (m / (1 - b1**count)) / (np.sqrt(v / (1 - b2**count)) + eps)
    if path in touched:
      keep = np.ones(w.shape[0], bool)
      keep[list(touched[path])] = False
      w_new[keep], m[keep], v[keep] = w[keep], mu[path][keep], nu[path][keep]
    new[path] = (w_new, m, v)
  return new


@pytest.mark.parametrize("name", ["dmf", "lfm", "gmf", "neumf"])
@pytest.mark.parametrize("form", ["dense", "segment"])
def test_lazy_adam_updates_only_the_rows_a_batch_reads(name, form):
  rng = np.random.default_rng(0)
  y = np.where(rng.random((7, 9)) < 0.35, rng.integers(1, 6, (7, 9)), 0).astype(np.float32)
  y[:, 0] = 0  # an item nobody rated: never read
  y[0, 1] = 3.0
  matrix = sparse.CSR.from_coo(*np.nonzero(y), y[np.nonzero(y)], y.shape)
  users_P = jnp.array([0, 2, 2])  # a repeated user
  items_PxC = jnp.array([[1, 4], [5, 4], [5, 8]])
  # Buffers sized on typical batches of short rows, tried first (the second step's batch fits
  # them, the first's does not), then the buffers that fit any batch.
  short_users, short_items = np.array([[2, 3, 3]]), np.array([[4, 6, 7, 4, 6, 7]])
  data = training.TrainData(
    user_rows=models.SparseRows.from_csr(matrix, form, 3, typical_batches=short_users),
    item_rows=models.SparseRows.from_csr(matrix.transpose(), form, 6, typical_batches=short_items),
    pos_users=users_P,
    pos_items=items_PxC[:, 0],
    pos_targets=jnp.ones(3),
  )
  config = default.get_config()
  config.model.name = name
  # One layer: at N(0, 0.01) a hidden ReLU layer leaves near-zero vectors, whose cosines' tiny
  # gradients come out of cancellation and change with any reordering of the float sums.
  config.model.user_layers = config.model.item_layers = (4,)
  config.model.ncf_factors, config.model.ncf_mlp_layers = 3, (4, 2)
  config.model.neumf_gmf_workdir = config.model.neumf_mlp_workdir = ""  # NeuMF from scratch
  config.train.optimizer = "lazy_adam"
  training.check_config(config)
  trainer = training.Trainer(config, y.shape)
  state = trainer.init_state(training.init_key(0))
  targets = jnp.array([[1.0, 0.0], [0.6, 0.0], [1.0, 0.0]])
  batch = (users_P, items_PxC, targets)
  step = jax.jit(
    functools.partial(
      training.lazy_adam_step,
      module=trainer.module,
      scores_loss=trainer.scores_loss,
      learning_rate=trainer.family.learning_rate(config),
      max_read_share=float("inf"),  # lazily at any size (this Y's reads cover most rows)
    )
  )
  assert len(data.user_rows.staircases) == len(data.item_rows.staircases) == 2
  assert len(data.user_rows.capacities) == len(data.item_rows.capacities) == 2
  # Two steps, so that the moments of rows read in the first and not the second are kept.
  second = (jnp.array(short_users[0]), jnp.array(short_items[0]).reshape(3, 2), targets)
  # The first batch overflows the typical capacities, the second fits them: both updates run.
  for rows, ids, level in (
    (data.user_rows, users_P, 1),
    (data.item_rows, items_PxC, 1),
    (data.user_rows, second[0], 0),
    (data.item_rows, second[1], 0),
  ):
    assert int(rows.fitting_level(ids.reshape(-1))) == level
  for batch_now in (batch, second):
    flat = traverse_util.flatten_dict(state.params)
    adam = state.opt_state[0]
    mu, nu = (traverse_util.flatten_dict(t) for t in (adam.mu, adam.nu))
    loss_fn = functools.partial(
      training.batch_loss, module=trainer.module, scores_loss=trainer.scores_loss, l2=0.0
    )
    grads = traverse_util.flatten_dict(jax.grad(loss_fn)(state.params, data, *batch_now))
    read_users = set(np.asarray(batch_now[0]).tolist())
    read_items = set(np.asarray(batch_now[1]).reshape(-1).tolist())
    touched = {
      ("user_tower", "first", "kernel"): {c for u in read_users for c in np.flatnonzero(y[u])},
      ("item_tower", "first", "kernel"): {r for i in read_items for r in np.flatnonzero(y[:, i])},
      ("user_embedding", "embedding"): read_users,
      ("item_embedding", "embedding"): read_items,
      **{(part, "user", "embedding"): read_users for part in ("gmf", "mlp")},
      **{(part, "item", "embedding"): read_items for part in ("gmf", "mlp")},
    }
    touched = {path: rows for path, rows in touched.items() if path in flat}
    assert touched, "the family has user- and item-indexed weights"
    count = int(adam.count) + 1
    expected = _lazy_adam_by_hand(
      {p: np.asarray(w, np.float64) for p, w in flat.items()},
      grads,
      touched,
      (
        {p: np.asarray(m, np.float64) for p, m in mu.items()},
        {p: np.asarray(v, np.float64) for p, v in nu.items()},
      ),
      trainer.family.learning_rate(config),
      count,
    )
    state, _ = step(state, data, batch_now)
    got = traverse_util.flatten_dict(state.params)
    got_mu = traverse_util.flatten_dict(state.opt_state[0].mu)
    lr = trainer.family.learning_rate(config)
    for path, (w, m, _) in expected.items():
      if path in touched:  # rows not read: exactly as they were, moments included
        kept = np.setdiff1d(np.arange(w.shape[0]), list(touched[path]))
        np.testing.assert_array_equal(got[path][kept], flat[path][kept], err_msg=str(path))
        np.testing.assert_array_equal(got_mu[path][kept], mu[path][kept], err_msg=str(path))
      # The gradients' float32 rounding differs between the paths (a weight's step is about lr
      # and, where |g| is near Adam's eps, sensitive to it): compare within a tenth of a step.
      np.testing.assert_allclose(got_mu[path], m, rtol=1e-3, atol=1e-10, err_msg=str(path))
      np.testing.assert_allclose(got[path], w, rtol=0, atol=0.1 * lr, err_msg=str(path))
    assert int(state.opt_state[0].count) == count


def test_lazy_adam_takes_exact_adam_where_a_step_reads_most_rows():
  y = np.zeros((6, 8), np.float32)
  y[0, [1, 5, 7]] = [4, 2, 5]
  y[1, [0, 1]] = [3, 3]
  y[3, [2, 4]] = [5, 1]
  y[4, [3, 6]] = [2, 4]
  y[5, [5, 6, 7]] = [1, 2, 3]
  matrix = sparse.CSR.from_coo(*np.nonzero(y), y[np.nonzero(y)], y.shape)
  data = training.TrainData(
    user_rows=models.SparseRows.from_csr(matrix, "segment", 2),
    item_rows=models.SparseRows.from_csr(matrix.transpose(), "segment", 4),
    pos_users=jnp.array([0, 3]),
    pos_items=jnp.array([1, 2]),
    pos_targets=jnp.ones(2),
  )
  config = default.get_config()
  config.model.user_layers = config.model.item_layers = (4,)
  trainer = training.Trainer(config, y.shape)
  batch = (jnp.array([0, 3]), jnp.array([[1, 6], [2, 0]]), jnp.array([[1.0, 0.0], [0.8, 0.0]]))
  # User 0 alone (its cosines are clipped at this init: no gradient), so rows 2 and 4 of the user
  # tower, which user 3 read in the first step, are not read.
  second = (jnp.array([0, 0]), jnp.array([[1, 6], [5, 0]]), batch[2])
  loss_fn = functools.partial(
    training.batch_loss, module=trainer.module, scores_loss=trainer.scores_loss, l2=0.0
  )

  def two_steps(step):
    # In the second step, the rows only the first read move under exact Adam alone. Batches keep
    # their size, as in training: the buffers, and so the share of rows read, follow it.
    state = trainer.init_state(training.init_key(0))
    for now in (batch, second):
      state, _ = step(state, data, now)
    return state

  exact = two_steps(
    functools.partial(training.train_step, loss_fn=loss_fn, optimizer=trainer.optimizer)
  )
  lazy_step = functools.partial(
    training.lazy_adam_step,
    module=trainer.module,
    scores_loss=trainer.scores_loss,
    learning_rate=config.train.lr,
  )
  for a, b in zip(jax.tree.leaves(two_steps(lazy_step)), jax.tree.leaves(exact), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-8)
  # The same weights taken lazily (whatever their share of rows read) differ: the check can fail.
  lazily = two_steps(functools.partial(lazy_step, max_read_share=float("inf")))
  differ = [
    not np.allclose(a, b, rtol=1e-5, atol=1e-8)
    for a, b in zip(jax.tree.leaves(lazily.params), jax.tree.leaves(exact.params), strict=True)
  ]
  assert any(differ)
