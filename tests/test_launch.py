"""launch.py end to end, as a user runs it."""

import json

import pytest

from tests.conftest import assert_one_line_error, launch, synthetic_rows, write_ml100k


@pytest.mark.parametrize(
  "override, fragments",
  [
    ("--config.model.knn_neighbors=5", ["knn_neighbors", "no such config field", "knn_neighbours"]),
    ("--config.eval.num_negatives=many", ["num_negatives", "many"]),
    ("--config.trian.lr=1", ["trian"]),
  ],
)
def test_bad_override_is_one_clear_line(tmp_path, override, fragments):
  proc = launch("--config=configs/default.py", override, f"--workdir={tmp_path}")
  assert_one_line_error(proc, *fragments)


def test_missing_config_file(tmp_path):
  proc = launch("--config=configs/no_such.py", f"--workdir={tmp_path}")
  assert_one_line_error(proc, "no_such.py")


def test_run_then_rerun_then_refuse_other_config(tmp_path):
  write_ml100k(tmp_path / "data", synthetic_rows())
  workdir = tmp_path / "run"
  args = [
    "--config=configs/default.py",
    "--config.model.name=itempop",
    "--config.eval.num_negatives=10",
    f"--workdir={workdir}",
  ]
  first = launch(*args, data_root=tmp_path / "data")
  assert first.returncode == 0, first.stderr
  results = json.loads((workdir / "results.json").read_text())
  assert results["model"] == "itempop" and results["dataset"] == "ml100k"
  assert results["data"]["users"] == 30
  assert set(results["test"]) == {"hr@10", "ndcg@10", "full_hr@10", "full_ndcg@10"}
  config = json.loads((workdir / "config.json").read_text())
  assert config["model"]["name"] == "itempop"
  assert len((workdir / "metrics.jsonl").read_text().splitlines()) == 1
  for name in ("split.npz", "ranks.npz"):
    assert (workdir / name).is_file()

  again = launch(*args, data_root=tmp_path / "data")
  assert again.returncode == 0 and "nothing to train" in again.stderr
  assert "itempop: best epoch" in again.stderr  # its results, again
  assert len((workdir / "metrics.jsonl").read_text().splitlines()) == 1

  other = launch(*args, "--config.eval.num_negatives=5", data_root=tmp_path / "data")
  assert_one_line_error(other, "another config", "eval.num_negatives: 10 -> 5", "--overwrite")
  assert json.loads((workdir / "results.json").read_text()) == results

  replaced = launch(
    *args, "--config.eval.num_negatives=5", "--overwrite", data_root=tmp_path / "data"
  )
  assert replaced.returncode == 0, replaced.stderr
  assert json.loads((workdir / "config.json").read_text())["eval"]["num_negatives"] == 5


def test_fields_added_after_a_run_do_not_invalidate_it(tmp_path):
  from configs import default
  from dmf_jax.workdir import Workdir

  config = default.get_config()
  run = Workdir(tmp_path)
  run.start(config)
  stored = run.stored_config()
  del stored["model"]["knn_neighbours"]  # as if the field did not exist when the run was made
  (tmp_path / "config.json").write_text(__import__("json").dumps(stored))
  assert run.claim(config, overwrite=False) == "resume"
  config.model.loss = "ce"
  with pytest.raises(Exception, match="model.loss: 'nce' -> 'ce'"):
    run.claim(config, overwrite=False)


def test_help_exits_zero_and_points_to_the_config_fields():
  proc = launch("--help")
  assert proc.returncode == 0, proc.stderr
  assert "--mode=config" in proc.stdout and "--config.<section>.<field>" in proc.stdout


def test_mode_config_prints_every_field_with_overrides_and_the_sweeps_members():
  proc = launch("--config=configs/sweep_neg.py", "--mode=config", "--config.train.epochs=5")
  assert proc.returncode == 0, proc.stderr
  assert "  epochs: 5\n" in proc.stdout and "  chunk_steps: 256\n" in proc.stdout
  assert "sweep: 5 members x 3 seeds\n  neg_ratio=1\n" in proc.stdout
