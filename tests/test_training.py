"""DMF and LFM end to end on a small synthetic Y: train, checkpoint, resume, restore, recommend."""

import json
import shutil
import subprocess

import chex
import jax
import numpy as np
import pytest

import dmf_jax
from configs import default
from dmf_jax import checkpoints, experiment, serving, sparse, training
from dmf_jax.errors import ConfigError
from dmf_jax.workdir import code_version
from tests.conftest import assert_one_line_error, launch, synthetic_rows, write_ml100k


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
  root = tmp_path_factory.mktemp("data")
  write_ml100k(root, synthetic_rows(), titles={i: f"Movie {i}" for i in range(1, 41)})
  return root


def tiny_config(data_root, **overrides):
  config = default.get_config()
  config.data.root = str(data_root)
  config.model.user_layers = (16, 8)
  config.model.item_layers = (16, 8)
  config.train.epochs = 2
  config.train.batch_size = 32  # 8 positives x (1 + 3 negatives)
  config.train.neg_ratio = 3
  config.train.lr = 3e-3
  config.eval.num_negatives = 10
  for key, value in overrides.items():
    section, field = key.split(".")
    config[section][field] = value
  return config


def test_train_checkpoint_restore_recommend_export(tmp_path, data_root):
  workdir = tmp_path / "run"
  results = experiment.train_and_evaluate(tiny_config(data_root), workdir)
  records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  assert [r["epoch"] for r in records] == [1, 2]
  for r in records:
    assert r["instances_per_second"] > 0 and np.isfinite(r["loss"])
    assert 0 <= r["negative_collision_rate"] < 0.05
  best = max(records, key=lambda r: (r["validation"]["ndcg@10"], -r["epoch"]))
  assert results["best_epoch"] == best["epoch"]
  assert results["test"] == pytest.approx(best["test"])  # restored checkpoint reproduces it
  head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True)
  assert results["code"].removesuffix("+dirty") == head.stdout.strip()  # the code that ran
  assert results["device"] == jax.devices()[0].device_kind  # and where

  model = dmf_jax.load(workdir)
  recs = model.recommend(["1", "2"], k=5)
  for user, user_recs in zip(["1", "2"], recs, strict=True):
    assert [r.rank for r in user_recs] == [1, 2, 3, 4, 5]
    rated = {
      model.data.item_ids[j]
      for j in model.rated.indices[
        model.rated.indptr[int(user) - 1] : model.rated.indptr[int(user)]
      ]
    }
    assert not rated & {r.item for r in user_recs}
    assert all(r.title.startswith("Movie ") for r in user_recs)
    scores = [r.score for r in user_recs]
    assert scores == sorted(scores, reverse=True)
  np.testing.assert_allclose(model.score("1", [recs[0][0].item]), [recs[0][0].score], rtol=1e-5)

  # The checkpoint's items: params, optimizer state, and a JSON item with what scoring needs.
  checkpoint = workdir / "checkpoints" / str(results["best_epoch"])
  assert {"params", "opt_state", "meta"} <= {p.name for p in checkpoint.iterdir()}
  ckpt = checkpoints.Checkpoints(workdir / "checkpoints")
  try:
    trainer = training.Trainer(model.config, model.train.shape)
    *_, meta = ckpt.restore(
      results["best_epoch"], trainer.abstract_params(), trainer.abstract_opt_state()
    )
  finally:
    ckpt.close()
  assert meta["data"] == {
    "path": str(model.data.path.resolve()),
    "sha256": results["data"]["sha256"],
  }
  assert results["data"]["path"] == meta["data"]["path"]
  assert meta["model"]["name"] == "dmf" and meta["shape"] == [30, 40]
  assert meta["step"] == results["best_epoch"] * (
    records_steps := meta["step"] // results["best_epoch"]
  )
  assert records_steps == model.train.nnz // 8  # 8 positives a step

  # A run written before later config fields existed is served as it was trained.
  config_file = workdir / "config.json"
  stored = json.loads(config_file.read_text())
  for section, fields in serving.FIELDS_ADDED_LATER.items():
    for field in fields:
      del stored[section][field]
  config_file.write_text(json.dumps(stored))
  older = dmf_jax.load(workdir)
  assert older.config.model.in_batch_negatives is False
  assert older.recommend(["1", "2"], k=5) == recs

  files = model.export(workdir, k=3)
  assert {f.name for f in files} == {"vectors.npz", "topk.csv"}
  with np.load(workdir / "vectors.npz") as vectors:
    assert vectors["user_vectors"].shape == (30, 8) and vectors["item_ids"].shape == (40,)
  assert len((workdir / "topk.csv").read_text().splitlines()) == 1 + 30 * 3


def test_the_code_stamp_ignores_the_records_and_the_report_but_not_the_code(tmp_path):
  checkout = tmp_path / "checkout"
  files = (
    "dmf_jax/training.py",
    "results/beyond_amusic/summary.json",
    "docs/REPRODUCTION.md",
    "README.md",
  )
  for name in files:
    (checkout / name).parent.mkdir(parents=True, exist_ok=True)
    (checkout / name).write_text("committed\n")

  def git(*args):
    return subprocess.run(
      ["git", "-C", str(checkout), "-c", "user.name=t", "-c", "user.email=t@t", *args],
      capture_output=True,
      text=True,
      check=True,
    ).stdout.strip()

  git("init", "-q")
  git("add", ".")
  git("commit", "-q", "-m", "records")
  head = git("rev-parse", "--short=12", "HEAD")
  stamp = code_version.__wrapped__  # uncached: the checkout changes between calls
  assert stamp(checkout) == head
  for name in files[1:]:  # records collected and the report regenerated in a training checkout
    (checkout / name).write_text("collected\n")
  assert stamp(checkout) == head
  (checkout / files[0]).write_text("edited\n")
  assert stamp(checkout) == head + "+dirty"


def test_a_checkpoint_of_the_older_layout_is_refused_in_one_line(tmp_path, data_root):
  workdir = tmp_path / "run"
  experiment.train_and_evaluate(tiny_config(data_root, **{"train.epochs": 1}), workdir)
  # Before the Flax modules a checkpoint held one item, "state", with params and moments.
  checkpoint = workdir / "checkpoints" / "1"
  (checkpoint / "params").rename(checkpoint / "state")
  shutil.rmtree(checkpoint / "opt_state")
  proc = launch(f"--workdir={workdir}", "--mode=recommend", "--user=3", data_root=data_root)
  assert_one_line_error(proc, f"{checkpoint}: written by an older dmf_jax", f"remove {workdir}")


def test_new_user_with_an_existing_users_ratings_gets_that_ranking(tmp_path, data_root):
  workdir = tmp_path / "run"
  experiment.train_and_evaluate(tiny_config(data_root, **{"train.epochs": 1}), workdir)
  model = dmf_jax.load(workdir)
  user = 4
  row = slice(model.train.indptr[user], model.train.indptr[user + 1])
  ratings = {
    str(model.data.item_ids[j]): float(v)
    for j, v in zip(model.train.indices[row], model.train.values[row], strict=True)
  }
  as_new = model.recommend_for_ratings(ratings, k=40)
  known_scores = model.score(str(model.data.user_ids[user]), [r.item for r in as_new])
  np.testing.assert_allclose([r.score for r in as_new], known_scores, rtol=1e-5, atol=1e-6)


def test_lfm_trains_and_refuses_new_users(tmp_path, data_root):
  workdir = tmp_path / "lfm"
  results = experiment.train_and_evaluate(
    tiny_config(data_root, **{"model.name": "lfm", "train.epochs": 1}), workdir
  )
  assert results["model"] == "lfm"
  with pytest.raises(dmf_jax.errors.UserError, match="cannot score a new user"):
    dmf_jax.load(workdir).recommend_for_ratings({"1": 5.0})


def test_one_compile_across_epochs(tmp_path, data_root, monkeypatch):
  chex.clear_trace_counter()
  monkeypatch.setattr(training, "plan_epoch", chex.assert_max_traces(training.plan_epoch, n=1))
  # Two chunk lengths: the chunks of train.chunk_steps and the epoch's remainder.
  monkeypatch.setattr(training, "train_steps", chex.assert_max_traces(training.train_steps, n=2))
  config = tiny_config(data_root, **{"train.epochs": 3, "train.chunk_steps": 7})
  experiment.train_and_evaluate(config, tmp_path / "run")
  # A further trace would have raised: the run trained, so no epoch compiled its programs again.
  assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 3


def test_interrupted_run_resumes_to_the_same_parameters(tmp_path, data_root, monkeypatch):
  config = tiny_config(data_root, **{"train.epochs": 3})
  experiment.train_and_evaluate(config, tmp_path / "whole")

  original = training.Trainer.__init__
  epochs_run = []

  def interrupting_init(self, *args, **kwargs):
    original(self, *args, **kwargs)
    train_epoch = self.train_epoch

    def epoch_then_interrupt(*a, **kw):
      if len(epochs_run) == 2:
        raise KeyboardInterrupt
      epochs_run.append(1)
      return train_epoch(*a, **kw)

    self.train_epoch = epoch_then_interrupt

  monkeypatch.setattr(training.Trainer, "__init__", interrupting_init)
  with pytest.raises(KeyboardInterrupt):
    experiment.train_and_evaluate(config, tmp_path / "split")
  assert not (tmp_path / "split" / "results.json").exists()
  monkeypatch.setattr(training.Trainer, "__init__", original)
  experiment.train_and_evaluate(config, tmp_path / "split")

  whole = dmf_jax.load(tmp_path / "whole")
  resumed = dmf_jax.load(tmp_path / "split")
  for a, b in zip(jax.tree.leaves(whole.params), jax.tree.leaves(resumed.params), strict=True):
    np.testing.assert_array_equal(a, b)
  metrics = lambda d: [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()]  # noqa: E731
  assert [r["loss"] for r in metrics(tmp_path / "whole")] == [
    r["loss"] for r in metrics(tmp_path / "split")
  ]


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, data_root, monkeypatch):
  original = training.Trainer.__init__

  def poisoning_init(self, *args, **kwargs):
    original(self, *args, **kwargs)
    train_epoch, calls = self.train_epoch, []

    def second_epoch_diverges(*a, **kw):
      calls.append(1)
      state, step_losses, collisions = train_epoch(*a, **kw)
      if len(calls) == 2:
        step_losses[3] = np.nan
      return state, step_losses, collisions

    self.train_epoch = second_epoch_diverges

  monkeypatch.setattr(training.Trainer, "__init__", poisoning_init)
  workdir = tmp_path / "run"
  with pytest.raises(training.TrainingError, match=r"epoch 2, step 4: the loss is nan.*epoch 1"):
    experiment.train_and_evaluate(tiny_config(data_root, **{"train.epochs": 3}), workdir)
  assert not (workdir / "results.json").exists()
  assert sorted(p.name for p in (workdir / "checkpoints").iterdir() if p.name.isdigit()) == ["1"]


@pytest.mark.parametrize(
  "field, value, message",
  [
    ("train.neg_ratio", 0, "train.neg_ratio=0"),
    ("model.user_layers", (), "model.user_layers=()"),
    ("model.item_layers", (16, 0), "model.item_layers=(16, 0)"),
    ("train.lr", 0.0, "train.lr=0.0"),
    ("model.loss", "mse", "model.loss='mse'"),
    ("train.optimizer", "sgd", "train.optimizer='sgd'"),
  ],
)
def test_out_of_range_values_fail_before_compute(tmp_path, data_root, field, value, message):
  config = tiny_config(data_root, **{field: value})
  with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
    experiment.train_and_evaluate(config, tmp_path / "run")
  assert not (tmp_path / "run").exists()


def test_recommend_cli(tmp_path, data_root):
  workdir = tmp_path / "run"
  experiment.train_and_evaluate(tiny_config(data_root, **{"train.epochs": 1}), workdir)
  proc = launch(
    f"--workdir={workdir}", "--mode=recommend", "--user=3", "--k=4", data_root=data_root
  )
  assert proc.returncode == 0, proc.stderr
  lines = proc.stdout.splitlines()
  assert len(lines) == 4
  assert [line.split("\t")[0] for line in lines] == ["1", "2", "3", "4"]
  assert all(line.split("\t")[3].startswith("Movie ") for line in lines)
  new = launch(
    f"--workdir={workdir}", "--mode=recommend", "--ratings=1:5,2:4", "--k=3", data_root=data_root
  )
  assert new.returncode == 0 and len(new.stdout.splitlines()) == 3
  unknown = launch(f"--workdir={workdir}", "--mode=recommend", "--user=nobody", data_root=data_root)
  assert_one_line_error(unknown, "unknown user 'nobody'")


@pytest.mark.parametrize("chunk_steps", [1, 7, 1000])
def test_a_chunked_epoch_equals_the_whole_epoch_bit_for_bit(chunk_steps):
  rng = np.random.default_rng(0)
  users, items = np.nonzero(rng.random((40, 30)) < 0.3)
  ratings = rng.integers(1, 6, len(users)).astype(np.float32)
  train = sparse.CSR.from_coo(users, items, ratings, (40, 30))
  config = tiny_config(None, **{"train.chunk_steps": chunk_steps})
  trainer = training.Trainer(config, train.shape)
  data = training.build_data(config, train, 5.0, trainer.mesh)
  keys = training.epoch_keys(config.seed, 1, True)
  fresh = lambda: trainer.init_state(training.init_key(config.seed))  # noqa: E731 (donated below)
  whole, whole_losses, whole_collisions = trainer.whole_epoch(fresh(), data, *keys)
  chunks = []
  chunked, losses, collisions = trainer.train_epoch(fresh(), data, *keys, on_steps=chunks.append)
  steps = len(users) // trainer.positives_per_batch
  assert chunks == [chunk_steps] * (steps // chunk_steps) + [steps % chunk_steps] * (
    steps % chunk_steps > 0
  )
  np.testing.assert_array_equal(losses, whole_losses)
  assert int(collisions) == int(whole_collisions)
  for a, b in zip(jax.tree.leaves(chunked), jax.tree.leaves(whole), strict=True):
    np.testing.assert_array_equal(a, b)


def test_a_finished_run_goes_on_when_train_epochs_grows(tmp_path, data_root):
  straight = experiment.train_and_evaluate(
    tiny_config(data_root, **{"train.epochs": 3}), tmp_path / "a"
  )
  experiment.train_and_evaluate(tiny_config(data_root, **{"train.epochs": 2}), tmp_path / "b")
  grown = experiment.train_and_evaluate(
    tiny_config(data_root, **{"train.epochs": 3}), tmp_path / "b"
  )
  timing = ("train_seconds", "wall_seconds", "code", "finished")
  assert {k: v for k, v in grown.items() if k not in timing} == {
    k: v for k, v in straight.items() if k not in timing
  }
  assert [
    json.loads(line)["epoch"]
    for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
  ] == [
    1,
    2,
    3,
  ]
  with pytest.raises(ConfigError, match="train.epochs: 3 -> 2"):  # fewer epochs: another run
    experiment.train_and_evaluate(tiny_config(data_root, **{"train.epochs": 2}), tmp_path / "b")


def test_serving_finds_the_runs_data_from_a_new_shell(tmp_path, monkeypatch):
  root = tmp_path / "data"
  write_ml100k(root, synthetic_rows(), titles={i: f"Movie {i}" for i in range(1, 41)})
  workdir = tmp_path / "run"
  experiment.train_and_evaluate(tiny_config(root, **{"train.epochs": 1}), workdir)
  monkeypatch.delenv("DMF_DATA_DIR", raising=False)  # a new shell: nothing says where the data is
  recommend = ("--mode=recommend", f"--workdir={workdir}", "--user=3", "--k=2")
  proc = launch(*recommend)
  assert proc.returncode == 0 and len(proc.stdout.splitlines()) == 2, proc.stderr
  moved = tmp_path / "moved"
  root.rename(moved)
  assert_one_line_error(
    launch(*recommend), f"{root / 'ml-100k' / 'u.data'}: the data file", "--data_root="
  )
  again = launch(*recommend, f"--data_root={moved}")
  assert again.returncode == 0 and again.stdout == proc.stdout, again.stderr
  with pytest.raises(dmf_jax.errors.UserError, match="data_root=DIR"):
    dmf_jax.load(workdir)
  assert (
    dmf_jax.load(workdir, data_root=moved).recommend(["3"], k=2)[0][0].item
    == (proc.stdout.split()[1])
  )
