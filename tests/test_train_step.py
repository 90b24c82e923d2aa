"""One step of the pure training step against a loss, gradient and update worked out by hand."""

import functools

import jax.numpy as jnp
import numpy as np
import optax

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
    training.batch_loss, module=module, point_loss=losses.cosine_cross_entropy, l2=0.0
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
