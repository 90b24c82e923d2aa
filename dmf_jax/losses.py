"""Losses on a batch's scores, pure functions vmapped over it: the paper's point-wise cross
entropies (Section 3.3) and, beyond the paper, two losses over a positive and its negatives.

DMF and LFM predict a cosine, floored at mu = 1e-6 (Eq. 13) because a cosine can be negative, and
capped just below 1 so that log(1 - y) stays finite; ranking uses the raw cosine. The NCF models
predict logits, whose cross entropy needs no clipping.

A batch's scores are float32[P, C]: each positive (column 0) with its own C - 1 negatives.
`model.loss` picks the two-tower models' loss (`for_model`):

- `ce`, `nce`: Eq. 11 and 12, the binary cross entropy of every cosine.
- `softmax`: sampled softmax over the positive and its negatives at temperature
  `model.temperature`, -log(e^(s_0/t) / sum_c e^(s_c/t)) per positive (Wu et al., "On the
  Effectiveness of Sampled Softmax Loss for Item Recommendation", TOIS 2024; the standard of
  retrieval towers).
- `ccl`: the cosine contrastive loss of SimpleX (Mao et al., CIKM 2021), (1 - s_0) +
  w / (C - 1) * sum_c max(0, s_c - m) per positive, margin `model.ccl_margin` and negative
  weight `model.ccl_weight`.

With `model.in_batch_negatives`, a batch's scores are float32[P, C + P * C] (`models.
scores_with_batch`): the softmax then runs over every item of the batch, the user's own entries
counted once (the others are -inf).
"""

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

MU = 1e-6  # Eq. 13.
LOSSES = ("ce", "nce", "softmax", "ccl")


def clip_prediction(score: jax.Array) -> jax.Array:
  return jnp.clip(score, MU, 1.0 - MU)


def binary_cross_entropy(score: jax.Array, target: jax.Array) -> jax.Array:
  """-(t log y + (1 - t) log(1 - y)) with y = clip(score): Eq. 11 for t in {0, 1}, Eq. 12 for
  t = Y_ij / max(R)."""
  y = clip_prediction(score)
  return -(target * jnp.log(y) + (1.0 - target) * jnp.log1p(-y))


def target(loss: str, rating: jax.Array, max_rating: float) -> jax.Array:
  """The loss's target for an instance with rating Y_ij (0 for a sampled negative)."""
  if loss in ("ce", "softmax", "ccl"):
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


def sampled_softmax(scores_C: jax.Array, temperature: float) -> jax.Array:
  """-log of the positive's (entry 0) share of the softmax of `scores_C / temperature`."""
  logits = scores_C / temperature
  return jax.nn.logsumexp(logits) - logits[0]


def cosine_contrastive(scores_C: jax.Array, margin: float, negative_weight: float) -> jax.Array:
  """SimpleX's CCL: the positive's (entry 0) distance from 1, plus its negatives' mean excess over
  `margin` times `negative_weight`."""
  return (1.0 - scores_C[0]) + negative_weight * jnp.mean(jax.nn.relu(scores_C[1:] - margin))


def for_model(model) -> Callable[[jax.Array, jax.Array], jax.Array]:
  """The loss `model.loss` of a two-tower model: `(scores_PxC, targets_PxC) -> losses` whose
  mean is the batch's loss (one per cosine for `ce`/`nce`, one per positive otherwise)."""
  if model.loss in ("ce", "nce"):
    return cosine_cross_entropy
  if model.loss == "softmax":
    per_positive = jax.vmap(functools.partial(sampled_softmax, temperature=model.temperature))
  elif model.loss == "ccl":
    per_positive = jax.vmap(
      functools.partial(
        cosine_contrastive, margin=model.ccl_margin, negative_weight=model.ccl_weight
      )
    )
  else:
    raise ValueError(f"unknown loss {model.loss!r}")
  return lambda scores_PxC, targets_PxC: per_positive(scores_PxC)
