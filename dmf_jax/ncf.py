"""The NCF family (He et al., WWW 2017): GMF, MLP and NeuMF as one Flax module, and NeuMF-p's
pretrained start.

A model's params hold a `gmf` part (embeddings p_u, q_i; GMF's vector is p_u * q_i), an `mlp` part
(embeddings and ReLU layers over their concatenation), or both (NeuMF), and an `out` layer h over
the concatenation of the parts' vectors (NCF Eq. 9-12). The scores are logits: ranking by them
equals ranking by NCF's sigmoid, without float32's ties near 1.

Users and items broadcast against each other, so the same code scores P positives with their C
sampled items ([P, 1] against [P, C]) and a batch of users against the catalogue ([B, 1] against
[1, N]). The MLP's first layer acts on [p, q] as p W_p + q W_q, so scoring the catalogue multiplies
each user's and each item's embedding once, not each pair's.

NeuMF-p (NCF Section 3.4.1) starts from a GMF and an MLP trained on their own: their embeddings and
layers are copied and h = [alpha h_GMF, (1 - alpha) h_MLP], so its first logit is alpha times
GMF's plus (1 - alpha) times MLP's. The paper then trains it with vanilla SGD.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from dmf_jax import checkpoints, losses, models
from dmf_jax.errors import ConfigError
from dmf_jax.workdir import Workdir

NAMES = ("gmf", "mlp", "neumf")
OPTIMIZERS = {"adam": optax.adam, "sgd": optax.sgd}
# The config fields that fix the shapes of each pretrained part.
_PART_FIELDS = {"gmf": ("ncf_factors",), "mlp": ("ncf_mlp_layers",)}


def _embedding(count: int, size: int, name: str) -> models.RowEmbed:
  return models.RowEmbed(count, size, name=name)


class GMF(nn.Module):
  """GMF's vector p_u * q_i (NCF Eq. 9). Parameters `user/embedding`, `item/embedding`."""

  num_users: int
  num_items: int
  factors: int

  @nn.compact
  def __call__(self, users: jax.Array, items: jax.Array) -> jax.Array:
    user = _embedding(self.num_users, self.factors, "user")(users)
    return user * _embedding(self.num_items, self.factors, "item")(items)


class PairDense(nn.Module):
  """A dense layer over [p, q], computed as p W_p + q W_q + b: scoring the catalogue multiplies each
  user's and each item's embedding once, not each pair's."""

  features: int

  @nn.compact
  def __call__(self, p: jax.Array, q: jax.Array) -> jax.Array:
    half = p.shape[-1]
    kernel = self.param(
      "kernel", nn.initializers.glorot_uniform(), (half + q.shape[-1], self.features), jnp.float32
    )
    bias = self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
    return p @ kernel[:half] + q @ kernel[half:] + bias


class MLP(nn.Module):
  """The MLP's vector (NCF Eq. 10): ReLU layers over [p_u, q_i]. Parameters `user/embedding`,
  `item/embedding` (each half of `layers[0]` wide), then `layer_<i>/{kernel,bias}` per further width,
  Glorot-uniform as NCF's code initialises them."""

  num_users: int
  num_items: int
  layers: Sequence[int]

  @nn.compact
  def __call__(self, users: jax.Array, items: jax.Array) -> jax.Array:
    half = self.layers[0] // 2
    p = _embedding(self.num_users, half, "user")(users)
    q = _embedding(self.num_items, half, "item")(items)
    out = nn.relu(PairDense(self.layers[1], name="layer_0")(p, q))
    glorot = nn.initializers.glorot_uniform()
    for index, width in enumerate(self.layers[2:], start=1):
      out = nn.relu(nn.Dense(width, kernel_init=glorot, name=f"layer_{index}")(out))
    return out


class NCF(nn.Module):
  """GMF, MLP or NeuMF (`parts`), scored by logits h^T [vectors] + b (NCF Eq. 11-12). Parameters
  `gmf/...`, `mlp/...` and `out/{kernel,bias}` (h LeCun-uniform)."""

  num_users: int
  num_items: int
  parts: tuple[str, ...]
  factors: int
  mlp_layers: Sequence[int]

  def setup(self):
    if "gmf" in self.parts:
      self.gmf = GMF(self.num_users, self.num_items, self.factors)
    if "mlp" in self.parts:
      self.mlp = MLP(self.num_users, self.num_items, tuple(self.mlp_layers))
    self.out = nn.Dense(1, kernel_init=nn.initializers.lecun_uniform())

  def logits(self, users: jax.Array, items: jax.Array) -> jax.Array:
    """Logits of every (user, item) pair that `users` and `items` broadcast to (e.g. [P, 1] and
    [P, C], or [B, 1] and [1, N])."""
    vectors = [getattr(self, part)(users, items) for part in self.parts]
    return self.out(jnp.concatenate(vectors, axis=-1))[..., 0]

  def __call__(self, user_rows, item_rows, users_P, items_PxC) -> jax.Array:
    return self.logits(users_P[:, None], items_PxC)

  def score_all(self, users_B: jax.Array) -> jax.Array:
    return self.logits(users_B[:, None], jnp.arange(self.num_items)[None])


def module(config, shape: tuple[int, int]) -> NCF:
  model = config.model
  parts = {"gmf": ("gmf",), "mlp": ("mlp",), "neumf": ("gmf", "mlp")}[model.name]
  return NCF(*shape, parts, model.ncf_factors, tuple(model.ncf_mlp_layers))


def from_pretrained(gmf: dict, mlp: dict, alpha: float) -> dict:
  """NeuMF params from trained GMF and MLP params (NCF Section 3.4.1)."""
  return {
    "gmf": gmf["gmf"],
    "mlp": mlp["mlp"],
    "out": {
      "kernel": jnp.concatenate(
        [alpha * gmf["out"]["kernel"], (1.0 - alpha) * mlp["out"]["kernel"]]
      ),
      "bias": alpha * gmf["out"]["bias"] + (1.0 - alpha) * mlp["out"]["bias"],
    },
  }


def is_pretrained(config) -> bool:
  """Whether the run is NeuMF-p: NeuMF started from the GMF and MLP runs its config names."""
  return config.model.name == "neumf" and bool(config.model.neumf_gmf_workdir)


def optimizer(config) -> optax.GradientTransformation:
  """Adam for GMF, MLP and NeuMF from scratch; NeuMF-p's own (the paper: vanilla SGD)."""
  if is_pretrained(config):
    return OPTIMIZERS[config.model.neumf_optimizer](config.model.neumf_lr)
  return optax.adam(config.model.ncf_lr)


def check_config(config) -> None:
  model = config.model
  layers = tuple(model.ncf_mlp_layers)
  if len(layers) < 2 or any(int(w) < 1 for w in layers) or layers[0] % 2:
    raise ConfigError(
      f"model.ncf_mlp_layers={layers}: give an even width for the concatenated user and item "
      "embeddings, then one or more positive ReLU layer widths"
    )
  if model.name != "neumf":
    return
  if not 0.0 <= model.neumf_alpha <= 1.0:
    raise ConfigError(f"model.neumf_alpha={model.neumf_alpha}: must be in [0, 1]")
  if model.neumf_optimizer not in OPTIMIZERS:
    raise ConfigError(
      f"model.neumf_optimizer={model.neumf_optimizer!r}: choose one of {', '.join(OPTIMIZERS)}"
    )
  if bool(model.neumf_gmf_workdir) != bool(model.neumf_mlp_workdir):
    raise ConfigError(
      "model.neumf_gmf_workdir and model.neumf_mlp_workdir: set both (NeuMF-p) or neither "
      "(NeuMF from scratch)"
    )


FAMILY = models.Family(
  module=module,
  loss=lambda config: losses.logit_cross_entropy,
  optimizer=optimizer,
  learning_rate=lambda config: config.model.ncf_lr,
  check_config=check_config,
  two_tower=False,
)


def pretraining_workdir(template: str, workdir: pathlib.Path, seed: int) -> pathlib.Path:
  """A `model.neumf_*_workdir` value with `{workdir}` (this run's workdir) and `{seed}` (its
  model seed) filled in."""
  path = template.replace("{workdir}", str(workdir)).replace("{seed}", str(seed))
  return pathlib.Path(os.path.normpath(path))


def pretrained_params(
  config, workdir: pathlib.Path, shape: tuple[int, int], data_sha256: str, split_key: str
) -> dict | None:
  """NeuMF-p's initial params, from the best checkpoints of the GMF and MLP runs that
  `model.neumf_gmf_workdir` and `model.neumf_mlp_workdir` name; None for any other run.

  Raises:
    ConfigError: naming the path, when a run is missing, unfinished, of another model, shape,
      data set or split, or its checkpoint is missing or holds other shapes.
  """
  if not is_pretrained(config):
    return None
  parts = {}
  for name in ("gmf", "mlp"):
    field = f"model.neumf_{name}_workdir"
    path = pretraining_workdir(config.model[f"neumf_{name}_workdir"], workdir, config.seed)
    part = NCF(*shape, (name,), config.model.ncf_factors, tuple(config.model.ncf_mlp_layers))
    expected = jax.eval_shape(
      lambda part=part: nn.unbox(models.init_params(part, jax.random.key(0), shape))
    )
    parts[name] = _restore_part(
      config, field, name, path, expected, data_sha256=data_sha256, split_key=split_key
    )
  return from_pretrained(parts["gmf"], parts["mlp"], config.model.neumf_alpha)


def _restore_part(config, field, name, path, expected, *, data_sha256, split_key) -> dict:
  """The params of the best epoch of the `name` run in `path`, checked against `expected`."""
  where = f"{field}: {path}"
  run = Workdir(path)
  stored, results = run.stored_config(), run.results()
  if stored is None:
    raise ConfigError(
      f"{where} holds no dmf_jax run (no config.json): train model.name={name} there first, or set "
      "model.neumf_gmf_workdir='' and model.neumf_mlp_workdir='' for NeuMF without pretraining"
    )
  if stored["model"]["name"] != name:
    raise ConfigError(f"{where} holds a {stored['model']['name']} run, not {name}")
  if results is None:
    raise ConfigError(f"{where}: its {name} run has not finished (no results.json)")
  for key in _PART_FIELDS[name]:
    theirs, ours = stored["model"][key], config.model[key]
    if tuple(np.atleast_1d(theirs)) != tuple(np.atleast_1d(ours)):
      raise ConfigError(
        f"{where} was trained with model.{key}={_show(theirs)}, this NeuMF has {_show(ours)}"
      )
  if results["data"]["sha256"] != data_sha256 or results["split"] != split_key:
    raise ConfigError(
      f"{where} was trained on other data or another split ({results['dataset']}, split "
      f"{results['split']}) than this run (split {split_key})"
    )
  ckpt_dir = run.file(checkpoints.FOLDER)
  epoch = results["best_epoch"]
  if not ckpt_dir.is_dir():
    raise ConfigError(f"{where}: no checkpoints folder")
  ckpt = checkpoints.Checkpoints(ckpt_dir)
  try:
    if epoch not in ckpt.epochs():
      raise ConfigError(f"{where}: no checkpoint of its best epoch {epoch} in {ckpt_dir}")
    params = ckpt.restore_params_as_saved(epoch)
  finally:
    ckpt.close()
  saved = {jax.tree_util.keystr(k): v.shape for k, v in jax.tree_util.tree_leaves_with_path(params)}
  wanted = {
    jax.tree_util.keystr(k): v.shape for k, v in jax.tree_util.tree_leaves_with_path(expected)
  }
  if saved != wanted:
    leaf = next(k for k in sorted(set(saved) | set(wanted)) if saved.get(k) != wanted.get(k))
    raise ConfigError(
      f"{where}: the checkpoint of epoch {epoch} holds params{leaf} of shape "
      f"{saved.get(leaf, 'none')}, this NeuMF needs {wanted.get(leaf, 'none')}"
    )
  return jax.tree.map(jnp.asarray, params)


def _show(value) -> str:
  return str(tuple(value)) if isinstance(value, list | tuple) else str(value)
