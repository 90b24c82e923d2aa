"""GMF, MLP and NeuMF against numpy; NeuMF-p's pretrained start; its bad pretraining runs."""

import json
import shutil

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dmf_jax
from dmf_jax import checkpoints, experiment, models, ncf, sweep, training
from dmf_jax.errors import ConfigError, UserError
from tests.conftest import assert_one_line_error, launch
from tests.test_training import data_root, tiny_config  # noqa: F401 (fixture)

SHAPE = (3, 5)  # users, items
FACTORS, LAYERS = 2, (6, 4, 2)


def _numpy_logit(params, u, i):
  """One (user, item) logit, written out from NCF Eq. 9-12 (`params` as numpy arrays)."""
  vectors = []
  if "gmf" in params:
    vectors.append(params["gmf"]["user"]["embedding"][u] * params["gmf"]["item"]["embedding"][i])
  if "mlp" in params:
    mlp = params["mlp"]
    x = np.concatenate([mlp["user"]["embedding"][u], mlp["item"]["embedding"][i]])
    for index in range(len(mlp) - 2):
      layer = mlp[f"layer_{index}"]
      x = np.maximum(x @ layer["kernel"] + layer["bias"], 0.0)
    vectors.append(x)
  return (np.concatenate(vectors) @ params["out"]["kernel"] + params["out"]["bias"])[0]


def _with_random_biases(params, key):
  # Biases start at zero; random ones make the check see them.
  leaves, tree = jax.tree_util.tree_flatten_with_path(params)
  keys = jax.random.split(key, len(leaves))
  return jax.tree_util.tree_unflatten(
    tree,
    [
      jax.random.normal(k, v.shape) if path[-1].key == "bias" else v
      for k, (path, v) in zip(keys, leaves, strict=True)
    ],
  )


def _module(parts, shape=SHAPE, factors=FACTORS, layers=LAYERS):
  return ncf.NCF(*shape, parts, factors, layers)


def _init(parts, key):
  params = nn.unbox(models.init_params(_module(parts), jax.random.key(key), SHAPE))
  return _with_random_biases(params, jax.random.key(key + 1))


@pytest.mark.parametrize("name", ncf.NAMES)
def test_scores_match_numpy(name):
  config = tiny_config("unused", **{"model.name": name})
  config.model.ncf_factors, config.model.ncf_mlp_layers = FACTORS, LAYERS
  module = ncf.module(config, SHAPE)
  params = _with_random_biases(
    nn.unbox(models.init_params(module, jax.random.key(0), SHAPE)), jax.random.key(1)
  )
  as_numpy = jax.tree.map(np.asarray, params)
  expected = np.array([[_numpy_logit(as_numpy, u, i) for i in range(SHAPE[1])] for u in range(3)])

  users_B = jnp.array([2, 0, 1])
  np.testing.assert_allclose(
    module.apply({"params": params}, users_B, method="score_all"), expected[[2, 0, 1]], rtol=1e-5
  )
  users_P, items_PxC = jnp.array([1, 2]), jnp.array([[4, 0, 3], [1, 1, 2]])
  np.testing.assert_allclose(
    module.apply({"params": params}, None, None, users_P, items_PxC),
    expected[users_P[:, None], items_PxC],
    rtol=1e-5,
  )


def test_from_pretrained_copies_parts_and_weights_the_output():
  gmf, mlp = _init(("gmf",), 0), _init(("mlp",), 2)
  neumf = ncf.from_pretrained(gmf, mlp, alpha=0.3)
  assert jax.tree.structure(neumf) == jax.tree.structure(_init(("gmf", "mlp"), 0))
  assert_mixture(neumf, gmf, mlp, 0.3, shape=SHAPE, factors=FACTORS, layers=LAYERS)


def assert_mixture(neumf, gmf, mlp, alpha, *, shape, factors, layers):
  """NeuMF's logits are alpha * GMF's + (1 - alpha) * MLP's for every user and item."""
  users, items = jnp.arange(shape[0])[:, None], jnp.arange(shape[1])[None]

  def logits(parts, params):
    module = _module(parts, shape, factors, layers)
    return module.apply({"params": params}, users, items, method="logits")

  np.testing.assert_allclose(
    logits(("gmf", "mlp"), neumf),
    alpha * logits(("gmf",), gmf) + (1 - alpha) * logits(("mlp",), mlp),
    rtol=1e-5,
    atol=1e-6,
  )


def ncf_config(data_root, name, **overrides):  # noqa: F811
  tiny = {"model.ncf_factors": 4, "model.ncf_mlp_layers": (8, 4), "model.ncf_lr": 1e-2}
  return tiny_config(data_root, **{"model.name": name, **tiny, **overrides})


def _best_params(workdir):
  """A finished run's best params, restored independently of NeuMF-p's loader."""
  config = dmf_jax.load(workdir).config
  results = json.loads((workdir / "results.json").read_text())
  trainer = training.Trainer(config, (30, 40))
  ckpt = checkpoints.Checkpoints(workdir / checkpoints.FOLDER)
  try:
    return ckpt.restore_params(results["best_epoch"], trainer.abstract_params())
  finally:
    ckpt.close()


@pytest.fixture(scope="module")
def table(tmp_path_factory, data_root):  # noqa: F811
  """gmf, mlp, then NeuMF-p as a sweep runs them: each in <dir>/<member>/seed0."""
  directory = tmp_path_factory.mktemp("table")

  def members(add):
    for name in ncf.NAMES:
      add(**{"model.name": name})

  base = ncf_config(data_root, "gmf", **{"train.epochs": 1})
  base.sweep.num_seeds = 1
  for member in sweep.plan(base, sweep.collect(members), directory):  # sweep.run, without plots
    experiment.train_and_evaluate(member.config, member.workdir)
  return directory


def test_neumf_p_starts_exactly_from_the_best_gmf_and_mlp(table, data_root):  # noqa: F811
  gmf, mlp = _best_params(table / "name=gmf" / "seed0"), _best_params(table / "name=mlp" / "seed0")
  config = ncf_config(data_root, "neumf")
  run = dmf_jax.load(table / "name=neumf" / "seed0")
  start = ncf.pretrained_params(
    config, table / "name=neumf" / "seed0", run.train.shape, run.data.sha256, run.results["split"]
  )
  for part, source in (("gmf", gmf), ("mlp", mlp)):
    for a, b in zip(jax.tree.leaves(start[part]), jax.tree.leaves(source[part]), strict=True):
      np.testing.assert_array_equal(a, b)
  np.testing.assert_array_equal(
    start["out"]["kernel"],
    np.concatenate([0.5 * gmf["out"]["kernel"], 0.5 * mlp["out"]["kernel"]]),
  )
  assert_mixture(start, gmf, mlp, 0.5, shape=(30, 40), factors=4, layers=(8, 4))
  # NeuMF-p then trained with SGD, and serves its known users.
  assert run.results["model"] == "neumf"
  assert [len(r) for r in run.recommend(["1", "2"], k=3)] == [3, 3]
  with pytest.raises(UserError, match="cannot score a new user"):
    run.recommend_for_ratings({"1": 5.0})


def _neumf_fails(table, data_root, match, **overrides):  # noqa: F811
  workdir = table / "name=neumf" / "other"
  with pytest.raises(ConfigError, match=match):
    experiment.train_and_evaluate(ncf_config(data_root, "neumf", **overrides), workdir)
  assert not workdir.exists()  # nothing of the run written


def test_mismatched_factors_name_the_path(table, data_root):  # noqa: F811
  gmf = f"{table}/name=gmf/seed0"
  _neumf_fails(
    table,
    data_root,
    f"model.neumf_gmf_workdir: {gmf} was trained with model.ncf_factors=4, this NeuMF has 8",
    **{"model.neumf_gmf_workdir": gmf, "model.ncf_factors": 8},
  )


def test_other_split_is_refused(table, data_root):  # noqa: F811
  _neumf_fails(
    table,
    data_root,
    "name=gmf/seed0 was trained on other data or another split",
    **{"model.neumf_gmf_workdir": f"{table}/name=gmf/seed0", "data.split_seed": 1},
  )


@pytest.mark.parametrize(
  "damage, match",
  [
    ("results.json", "its gmf run has not finished"),
    ("checkpoints", "no checkpoints folder"),
    ("config.json", "holds no dmf_jax run"),
    ("factors in config.json", r"holds params\['gmf'\]\['item'\]\['embedding'\] of shape \(40, 4\), this NeuMF needs \(40, 8\)"),
  ],
)  # fmt: skip
def test_damaged_pretraining_run_is_refused(table, data_root, tmp_path, damage, match):  # noqa: F811
  gmf = tmp_path / "gmf"
  shutil.copytree(table / "name=gmf" / "seed0", gmf)
  overrides = {"model.neumf_gmf_workdir": str(gmf)}
  if damage == "factors in config.json":
    stored = json.loads((gmf / "config.json").read_text())
    stored["model"]["ncf_factors"] = 8
    (gmf / "config.json").write_text(json.dumps(stored))
    overrides["model.ncf_factors"] = 8
  elif (gmf / damage).is_dir():
    shutil.rmtree(gmf / damage)
  else:
    (gmf / damage).unlink()
  _neumf_fails(table, data_root, f"model.neumf_gmf_workdir: {gmf}.*{match}", **overrides)


@pytest.mark.parametrize(
  "field, value, message",
  [
    ("model.ncf_mlp_layers", (7, 4), r"model.ncf_mlp_layers=\(7, 4\): give an even width"),
    ("model.ncf_mlp_layers", (8,), "one or more positive ReLU layer widths"),
    ("model.neumf_mlp_workdir", "", "set both .NeuMF-p. or neither"),
    ("model.neumf_optimizer", "rmsprop", "model.neumf_optimizer='rmsprop'"),
    ("model.ncf_factors", 0, "model.ncf_factors=0: must be at least 1"),
  ],
)
def test_out_of_range_values_fail_before_compute(data_root, field, value, message):  # noqa: F811
  with pytest.raises(ConfigError, match=message):
    experiment.check_config(ncf_config(data_root, "neumf", **{field: value}))


def test_missing_pretraining_is_one_error_line(tmp_path, data_root):  # noqa: F811
  workdir = tmp_path / "runs" / "neumf"
  proc = launch(
    "--config=configs/default.py",
    "--config.model.name=neumf",
    "--config.eval.num_negatives=10",
    f"--workdir={workdir}",
    data_root=data_root,
  )
  assert_one_line_error(
    proc,
    f"model.neumf_gmf_workdir: {tmp_path}/name=gmf/seed0 holds no dmf_jax run",
    "train model.name=gmf there first",
  )
  assert not workdir.exists()
