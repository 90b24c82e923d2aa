"""Negative sampling (Algorithm 1, line 3): items drawn uniformly from a user's unobserved ones.

Everything runs on device inside the compiled epoch, reading the user side of the training Y (its
BCOO, whose rows hold each user's observed items in sorted order).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from dmf_jax.models import SparseRows

# Rejection sampling: this many uniform draws per slot, the first unobserved one kept. A user who
# rated a share s of the catalogue keeps a collision with probability s^DRAWS (s = 0.44, ML-100k's
# densest user: 0.14%); the measured rate is logged every epoch.
DRAWS = 8


def is_observed(observed: SparseRows, users: jax.Array, items: jax.Array) -> jax.Array:
  """Whether Y[users, items] is stored in `observed` (users' rows), by bisection in each row."""
  columns = observed.matrix.indices[:, 1]
  last = columns.shape[0] - 1
  low, end = observed.offsets[users], observed.offsets[users + 1]
  high = end
  for _ in range(observed.width.bit_length() + 1):
    active = low < high
    middle = (low + high) // 2
    less = columns[jnp.minimum(middle, last)] < items
    low = jnp.where(active & less, middle + 1, low)
    high = jnp.where(active & ~less, middle, high)
  return (low < end) & (columns[jnp.minimum(low, last)] == items)


def sample(key, observed: SparseRows, positives_P: jax.Array, users_P: jax.Array, num: int):
  """`num` items for each of the training positives `positives_P` (indices), whose users are
  `users_P`, drawn uniformly from the user's unobserved items (bounded rejection). A positive's
  draws come from `key` folded with its index, so they do not depend on the batch it falls in (an
  epoch's negatives are drawn batch by batch, in bounded memory, and the same key gives a
  positive the same negatives every epoch).

  Returns:
    (negatives int32[P, num], collisions: how many of them are observed items after all draws).
  """
  num_items = observed.num_columns
  draws_PxDxK = jax.vmap(
    lambda positive: jax.random.randint(
      jax.random.fold_in(key, positive), (DRAWS, num), 0, num_items
    )
  )(positives_P)
  draws_DxPxK = jnp.moveaxis(draws_PxDxK, 1, 0)
  hit_DxPxK = is_observed(observed, users_P[None, :, None], draws_DxPxK)
  first_free_PxK = jnp.argmin(hit_DxPxK, axis=0)  # the first unobserved draw, else draw 0
  chosen = jnp.take_along_axis(draws_DxPxK, first_free_PxK[None], axis=0)[0]
  collisions = jnp.sum(jnp.all(hit_DxPxK, axis=0))
  return chosen.astype(jnp.int32), collisions
