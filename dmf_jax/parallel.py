"""The device mesh of a training run and where each array lives on it (docs/SCALE.md).

One code path serves 1 and N devices, on one host or many: a mesh with a `data` axis (each step's
batch split over it; parameters and Adam moments replicated) and a `model` axis (weights whose rows
are indexed by a user or an item id split by rows over it, for catalogues too large for one
device). The compiler (GSPMD) partitions the compiled epoch from these shardings: it all-reduces
gradients over `data`, and gathers rows of a `model`-split weight on the device that holds them,
then sums the pieces over `model`, never assembling the whole weight on one device.

The axes are `Auto` (compiler-propagated) rather than `Explicit`, and shardings are passed to
`jax.jit` as `NamedSharding`s: both behave the same in jax 0.10 and 0.11.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import optax
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from dmf_jax.errors import ConfigError

DATA, MODEL = "data", "model"


def make_mesh(config) -> Mesh:
  """The (data, model) mesh of `config.mesh` over every device of every process.

  Runs stored before the mesh fields existed have no `mesh` group; they get the defaults.
  """
  mesh_config = config.get("mesh") or {}
  model = mesh_config.get("model", 1)
  data = mesh_config.get("data")
  devices = jax.device_count()
  if model < 1 or devices % model:
    raise ConfigError(f"mesh.model={model}: must divide the {devices} devices")
  if data is None:
    data = devices // model
  if data < 1 or data * model > devices:
    raise ConfigError(
      f"mesh.data={data} x mesh.model={model} needs {data * model} devices; there are {devices}"
    )
  return jax.make_mesh((data, model), (DATA, MODEL), axis_types=(AxisType.Auto, AxisType.Auto))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """A batch split over `data` along its first dimension."""
  return NamedSharding(mesh, P(DATA))


def check_batch(mesh: Mesh, positives_per_batch: int) -> None:
  """Each data shard takes whole positives (a positive with its negatives)."""
  shards = mesh.shape[DATA]
  if positives_per_batch % shards:
    raise ConfigError(
      f"train.batch_size holds {positives_per_batch} positives (with their negatives), which "
      f"mesh.data={shards} devices cannot split evenly: make the positives a multiple of {shards}"
    )


def param_shardings(mesh: Mesh, boxed_params):
  """Shardings of a Flax module's params from their partitioning metadata (`models.by_rows`):
  weights whose rows are users or items split by rows over `model`, everything else replicated.

  Args:
    boxed_params: the params (or their shapes) as `init` returns them, metadata boxes included.
  """
  model = mesh.shape[MODEL]
  for path, leaf in jax.tree_util.tree_leaves_with_path(
    boxed_params, is_leaf=lambda x: isinstance(x, nn.Partitioned)
  ):
    if isinstance(leaf, nn.Partitioned) and MODEL in leaf.names and leaf.value.shape[0] % model:
      raise ConfigError(
        f"mesh.model={model} must divide the rows of params{jax.tree_util.keystr(path)} "
        f"({leaf.value.shape[0]})"
      )
  return nn.get_sharding(boxed_params, mesh)


def opt_state_shardings(mesh: Mesh, optimizer, abstract_opt_state, params_shardings):
  """Shardings of an optax state: Adam's moments follow their parameters."""
  return optax.tree_map_params(
    optimizer,
    lambda _, sharding: sharding,
    abstract_opt_state,
    params_shardings,
    transform_non_params=lambda _: replicated(mesh),
  )


def replicate(tree, mesh: Mesh):
  """Host values (numpy or uncommitted arrays) on every device of the mesh; with several
  processes, each passes the same values."""
  return jax.device_put(tree, replicated(mesh))
