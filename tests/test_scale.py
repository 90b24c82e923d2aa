"""The device mesh: one run on 1 and on 8 virtual CPU devices, and the row-split first layer.

XLA fixes the number of CPU devices when jax starts, so each case runs in its own process with
`--xla_force_host_platform_device_count`; the rest of the test session keeps its one device.
"""

import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from configs import default
from dmf_jax import parallel, training
from dmf_jax.errors import ConfigError
from dmf_jax.workdir import Workdir
from tests.conftest import REPO, synthetic_rows, write_ml100k


def run_on_cpu_devices(count: int, code: str, argument) -> dict:
  """Runs `code` in a fresh process with `count` CPU devices and `argument` (JSON) in sys.argv[1];
  returns the JSON it prints last."""
  env = dict(os.environ)
  env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={count}"
  env["JAX_PLATFORMS"] = "cpu"
  proc = subprocess.run(
    [sys.executable, "-c", textwrap.dedent(code), json.dumps(argument)],
    capture_output=True,
    text=True,
    cwd=REPO,
    env=env,
    timeout=300,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  return json.loads(proc.stdout.splitlines()[-1])


TRAIN = """
import json, pathlib, sys
import jax
from configs import default
from dmf_jax import experiment

args, out = json.loads(sys.argv[1]), {}
root = pathlib.Path(args["root"])
for name, first_layer, data, model in args["runs"]:
  config = default.get_config()
  config.data.root = str(root / "data")
  config.model.user_layers = config.model.item_layers = (16, 8)
  config.model.first_layer = first_layer
  config.train.epochs = 2
  config.train.batch_size = 32  # 8 positives x (1 + 3 negatives): 1 per device on 8
  config.train.neg_ratio = 3
  config.train.lr = 3e-3
  config.eval.num_negatives = 10
  config.mesh.data, config.mesh.model = data, model
  workdir = root / name
  results = experiment.train_and_evaluate(config, workdir)
  losses = [json.loads(line)["loss"] for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  out[name] = {"devices": jax.device_count(), "losses": losses, "results": results}
print(json.dumps(out))
"""


def _train(tmp_path, devices: int, runs) -> dict:
  """Trains each (name, model.first_layer, mesh.data, mesh.model) of `runs` on `devices`."""
  argument = {"root": str(tmp_path), "runs": runs}
  return run_on_cpu_devices(devices, TRAIN, argument)


def test_one_and_eight_devices_train_to_the_same_metrics(tmp_path):
  write_ml100k(tmp_path / "data", synthetic_rows())
  one = _train(tmp_path, 1, [("dense_1", "dense", None, 1), ("segment_1", "segment", None, 1)])
  eight = _train(
    tmp_path, 8, [("dense_data8", "dense", None, 1), ("segment_data4_model2", "segment", 4, 2)]
  )
  for name, base in (("dense_data8", one["dense_1"]), ("segment_data4_model2", one["segment_1"])):
    run = eight[name]
    assert (base["devices"], run["devices"]) == (1, 8)
    np.testing.assert_allclose(run["losses"], base["losses"], rtol=1e-5)
    assert run["results"]["best_epoch"] == base["results"]["best_epoch"]
    for split in ("validation", "test"):
      for metric, value in base["results"][split].items():
        assert run["results"][split][metric] == pytest.approx(value, abs=1e-6), (name, metric)


FIRST_LAYER = """
import json, sys
import jax, jax.numpy as jnp, numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P
from ml_collections import config_dict
from dmf_jax import models, parallel, sparse

rng = np.random.default_rng(0)
shape, width, batch = (48, 64), 16, 16
dense = (rng.random(shape) < 0.2) * rng.integers(1, 6, shape)
dense[:, :3] = 5  # three items every row holds, so a batch's rows meet on every device
rows, cols = np.nonzero(dense)
matrix = sparse.CSR.from_coo(rows, cols, dense[rows, cols].astype(np.float32), shape)
w1 = jax.random.normal(jax.random.key(1), (shape[1], width))
ids = jnp.asarray(rng.integers(0, shape[0], batch))

def objective(w1, rows, ids):
  return jnp.sum(jnp.sin(rows.times(w1, ids)))

def value_and_grad(w1, rows, ids):
  return rows.times(w1, ids), jax.grad(objective)(w1, rows, ids)

out = []
for form in ("dense", "padded", "segment"):
  reference = jax.jit(value_and_grad)(w1, models.SparseRows.from_csr(matrix, form, batch), ids)
  for data, model in json.loads(sys.argv[1]):
    mesh = parallel.make_mesh(config_dict.ConfigDict({"mesh": {"data": data, "model": model}}))
    split_rows = NamedSharding(mesh, P(parallel.MODEL, None))
    program = jax.jit(
      value_and_grad,
      in_shardings=(split_rows, parallel.replicated(mesh), parallel.batch_sharding(mesh)),
      out_shardings=(parallel.batch_sharding(mesh), split_rows),
    )
    sharded_rows = parallel.replicate(models.SparseRows.from_csr(matrix, form, batch, data), mesh)
    args = (jax.device_put(w1, split_rows), sharded_rows, ids)
    # No device may assemble the whole of W1: the gather runs where its rows live.
    whole = f"f32[{shape[1]},{width}]"
    gathers = [
      line for line in program.lower(*args).compile().as_text().splitlines()
      if "all-gather" in line and line.split("=")[1].strip().startswith(whole)
    ]
    values, grads = program(*args)
    out.append({
      "form": form, "mesh": [data, model],
      "w1_shard_rows": {s.data.shape[0] for s in args[0].addressable_shards}.pop(),
      "whole_w1_gathers": len(gathers),
      "value_error": float(jnp.max(jnp.abs(values - reference[0]))),
      "grad_error": float(jnp.max(jnp.abs(grads - reference[1]))),
      "scale": float(jnp.max(jnp.abs(reference[1]))),
    })
print(json.dumps(out))
"""


def test_row_split_first_layer_matches_one_device_in_value_and_gradient():
  results = run_on_cpu_devices(8, FIRST_LAYER, [[1, 8], [2, 4]])
  assert len(results) == 6
  for r in results:
    assert r["w1_shard_rows"] == 64 // r["mesh"][1], r
    assert r["value_error"] < 1e-4 and r["grad_error"] < 1e-5 * r["scale"] + 1e-5, r
    if r["form"] != "dense":  # dense rows are a matrix product, which XLA may split either way
      assert r["whole_w1_gathers"] == 0, r


def test_a_mesh_larger_than_the_devices_names_the_field():
  config = default.get_config()
  config.mesh.data = 2 * jax.device_count()
  with pytest.raises(ConfigError, match=r"mesh.data=\d+ x mesh.model=1 needs \d+ devices"):
    parallel.make_mesh(config)


def test_only_process_zero_writes_the_run_files(tmp_path, monkeypatch):
  monkeypatch.setattr(jax, "process_index", lambda: 1)
  run = Workdir(tmp_path / "run")
  run.start(default.get_config())
  run.append_metrics({"epoch": 1})
  run.finish({"best_epoch": 1})
  assert not (tmp_path / "run").exists()
  monkeypatch.setattr(jax, "process_index", lambda: 0)
  run.start(default.get_config())
  assert (tmp_path / "run" / "config.json").is_file()


@pytest.mark.parametrize("name", ["dmf", "lfm", "neumf"])
def test_user_and_item_indexed_weights_split_by_rows_from_their_flax_metadata(name):
  config = default.get_config()
  config.model.name = name
  config.model.neumf_gmf_workdir = config.model.neumf_mlp_workdir = ""  # NeuMF with Adam
  trainer = training.Trainer(config, (40, 30))
  split = P(parallel.MODEL, None)
  specs = {
    jax.tree_util.keystr(path): leaf.sharding.spec
    for path, leaf in jax.tree_util.tree_leaves_with_path(trainer.abstract_params())
  }
  by_rows = {path for path, spec in specs.items() if spec == split}
  expected = {
    "dmf": {"['user_tower']['first']['kernel']", "['item_tower']['first']['kernel']"},
    "lfm": {"['user_embedding']['embedding']", "['item_embedding']['embedding']"},
    "neumf": {
      f"['{part}']['{side}']['embedding']" for part in ("gmf", "mlp") for side in ("user", "item")
    },
  }[name]
  assert by_rows == expected
  assert all(spec == P() for path, spec in specs.items() if path not in expected)
  # Adam's moments follow their parameters.
  moments = [s for s in jax.tree.leaves(trainer.abstract_opt_state()) if s.ndim == 2]
  assert sum(m.sharding.spec == split for m in moments) == 2 * len(expected)
