"""The NCF family (He et al., WWW 2017): GMF, MLP and NeuMF, and NeuMF-p's pretrained start.

One pure function scores all three. A model's params hold a "gmf" part (embeddings p_u, q_i; GMF's
vector is p_u * q_i), an "mlp" part (embeddings and ReLU layers over their concatenation), or both
(NeuMF), and an "out" layer h over the concatenation of the parts' vectors (NCF Eq. 9-12). The
scores are logits: ranking by them equals ranking by NCF's sigmoid, without float32's ties near 1.

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

import jax
import jax.numpy as jnp
import numpy as np
import optax

from dmf_jax import checkpoints, models
from dmf_jax.errors import ConfigError
from dmf_jax.workdir import Workdir

NAMES = ("gmf", "mlp", "neumf")
OPTIMIZERS = {"adam": optax.adam, "sgd": optax.sgd}
# The config fields that fix the shapes of each pretrained part.
_PART_FIELDS = {"gmf": ("ncf_factors",), "mlp": ("ncf_mlp_layers",)}


def init(key: jax.Array, shape: tuple[int, int], name: str, factors: int, mlp_layers) -> dict:
  """Parameters of `name` (gmf, mlp or neumf) for a Y of `shape`, initialised as NCF's code does:
  embeddings N(0, 0.01), ReLU layers Glorot-uniform, h LeCun-uniform, biases zero."""
  num_users, num_items = shape
  keys = iter(jax.random.split(key, 4 + len(mlp_layers)))  # 4 embedding tables, layers, h

  def embeddings(count, size):
    return models.INIT_STDDEV * jax.random.normal(next(keys), (count, size), jnp.float32)

  params, widths = {}, []
  if name in ("gmf", "neumf"):
    params["gmf"] = {"user": embeddings(num_users, factors), "item": embeddings(num_items, factors)}
    widths.append(factors)
  if name in ("mlp", "neumf"):
    half = mlp_layers[0] // 2
    layers = [
      {
        "w": jax.nn.initializers.glorot_uniform()(next(keys), (fan_in, fan_out), jnp.float32),
        "b": jnp.zeros((fan_out,), jnp.float32),
      }
      for fan_in, fan_out in zip(mlp_layers[:-1], mlp_layers[1:], strict=True)
    ]
    params["mlp"] = {
      "user": embeddings(num_users, half),
      "item": embeddings(num_items, half),
      "layers": layers,
    }
    widths.append(mlp_layers[-1])
  h = jax.nn.initializers.lecun_uniform()(next(keys), (sum(widths), 1), jnp.float32)
  params["out"] = {"w": h[:, 0], "b": jnp.zeros((), jnp.float32)}
  return params


def _gmf_vectors(part: dict, users: jax.Array, items: jax.Array) -> jax.Array:
  return part["user"][users] * part["item"][items]


def _mlp_vectors(part: dict, users: jax.Array, items: jax.Array) -> jax.Array:
  first, *rest = part["layers"]
  half = part["user"].shape[1]
  out = jax.nn.relu(
    part["user"][users] @ first["w"][:half] + part["item"][items] @ first["w"][half:] + first["b"]
  )
  for layer in rest:
    out = jax.nn.relu(out @ layer["w"] + layer["b"])
  return out


def logits(params: dict, users: jax.Array, items: jax.Array) -> jax.Array:
  """Logits of every (user, item) pair that `users` and `items` broadcast to (e.g. [P, 1] and
  [P, C], or [B, 1] and [1, N])."""
  parts = []
  if "gmf" in params:
    parts.append(_gmf_vectors(params["gmf"], users, items))
  if "mlp" in params:
    parts.append(_mlp_vectors(params["mlp"], users, items))
  return jnp.concatenate(parts, axis=-1) @ params["out"]["w"] + params["out"]["b"]


def from_pretrained(gmf: dict, mlp: dict, alpha: float) -> dict:
  """NeuMF params from trained GMF and MLP params (NCF Section 3.4.1)."""
  return {
    "gmf": gmf["gmf"],
    "mlp": mlp["mlp"],
    "out": {
      "w": jnp.concatenate([alpha * gmf["out"]["w"], (1.0 - alpha) * mlp["out"]["w"]]),
      "b": alpha * gmf["out"]["b"] + (1.0 - alpha) * mlp["out"]["b"],
    },
  }


def spec(config, shape: tuple[int, int]) -> models.ModelSpec:
  model = config.model
  all_items_1xN = jnp.arange(shape[1])[None]
  return models.ModelSpec(
    init=lambda key: init(key, shape, model.name, model.ncf_factors, tuple(model.ncf_mlp_layers)),
    pair_logits=lambda params, data, users_P, items_PxC: logits(
      params, users_P[:, None], items_PxC
    ),
    score_all=lambda params, data, users_B: logits(params, users_B[:, None], all_items_1xN),
  )


SPECS = {name: spec for name in NAMES}


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
    expected = jax.eval_shape(
      lambda name=name: init(
        jax.random.key(0), shape, name, config.model.ncf_factors, config.model.ncf_mlp_layers
      )
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
    params = ckpt.restore_as_saved(epoch)["params"]
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
