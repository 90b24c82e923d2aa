"""Point-wise losses (paper Section 3.3), pure functions of a prediction and its target, vmapped
over a batch.

DMF and LFM predict a cosine, floored at mu = 1e-6 (Eq. 13) because a cosine can be negative, and
capped just below 1 so that log(1 - y) stays finite; ranking uses the raw cosine. The NCF models
predict logits, whose cross entropy needs no clipping.
"""

import jax
import jax.numpy as jnp
import optax

MU = 1e-6  # Eq. 13.
LOSSES = ("ce", "nce")


def clip_prediction(score: jax.Array) -> jax.Array:
  return jnp.clip(score, MU, 1.0 - MU)


def binary_cross_entropy(score: jax.Array, target: jax.Array) -> jax.Array:
  """-(t log y + (1 - t) log(1 - y)) with y = clip(score): Eq. 11 for t in {0, 1}, Eq. 12 for
  t = Y_ij / max(R)."""
  y = clip_prediction(score)
  return -(target * jnp.log(y) + (1.0 - target) * jnp.log1p(-y))


def target(loss: str, rating: jax.Array, max_rating: float) -> jax.Array:
  """The loss's target for an instance with rating Y_ij (0 for a sampled negative)."""
  if loss == "ce":
    return (rating > 0).astype(jnp.float32)
  if loss == "nce":
    return rating / max_rating
  raise ValueError(f"unknown loss {loss!r}")


batched_binary_cross_entropy = jax.vmap(binary_cross_entropy)


def cosine_cross_entropy(scores_PxC: jax.Array, targets_PxC: jax.Array) -> jax.Array:
  """The cross entropy of every (user, item) cosine of a batch, float32[P * C]."""
  return batched_binary_cross_entropy(scores_PxC.reshape(-1), targets_PxC.reshape(-1))


def logit_cross_entropy(logits_PxC: jax.Array, targets_PxC: jax.Array) -> jax.Array:
  """The cross entropy of every (user, item) logit of a batch (NCF), float32[P * C]."""
  return optax.sigmoid_binary_cross_entropy(logits_PxC, targets_PxC).reshape(-1)
