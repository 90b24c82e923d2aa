"""The reproduction report: generated from sweep folders, paper numbers beside ours."""

import json

import numpy as np

from dmf_jax import report, sweep
from tests.conftest import REPO
from tests.test_training import data_root, tiny_config  # noqa: F401 (fixture)


def test_paired_bootstrap_brackets_the_true_difference():
  rng = np.random.default_rng(0)
  b = rng.random(900)
  a = b + 0.05 + rng.normal(0, 0.1, 900)
  mean, low, high, p = report.paired_bootstrap(a, b)
  assert low < 0.05 < high and low < mean < high and p < 0.01
  mean, low, high, p = report.paired_bootstrap(b, b + 0.0)
  assert mean == low == high == 0.0 and p == 1.0


def test_report_from_sweep_folders(tmp_path, data_root):  # noqa: F811
  base = tiny_config(data_root)
  base.sweep.num_seeds = 1

  def baselines(add):
    add(**{"model.name": "itempop"})
    add(**{"model.name": "itemknn", "model.knn_neighbours": 10})

  sweep.run(base, baselines, tmp_path / "runs" / "table2_ml100k", overwrite=False)
  out = tmp_path / "docs" / "REPRODUCTION.md"
  text = report.build(tmp_path / "runs", out)
  assert "## Table 2: all models — ML-100k" in text
  assert "| ItemPop | 1 |" in text and "| 0.406 | 0.231 |" in text  # the paper's ItemPop
  assert "## Not measured yet" in text
  assert "configs/table3.py" in text and "configs/tois2021.py" in text

  # The TOIS 2021 table, once measured, sets the rerun's numbers beside ours.
  def rerun(add):
    add(**{"model.name": "itempop"})
    add(**{"model.name": "ease"})

  sweep.run(base, rerun, tmp_path / "runs" / "tois2021_ml100k", overwrite=False)
  text = report.build(tmp_path / "runs", out)
  rerun_section = text.split("## Beside the independent rerun (TOIS 2021 protocol) — ML-100k")[1]
  assert "| EASE^R | 1 |" in rerun_section and "| 0.609 | 0.357 |" in rerun_section
  assert "configs/tois2021.py" not in text.split("## Not measured yet")[1]
  assert (tmp_path / "docs" / "figures" / "table2_ml100k_metrics.png").is_file()


def test_collected_records_regenerate_the_same_report(tmp_path, data_root):  # noqa: F811
  base = tiny_config(data_root, **{"train.epochs": 1})
  base.sweep.num_seeds = 2

  def table3(add):
    add(**{"model.name": "dmf", "model.user_layers": (8,), "model.item_layers": (8,)})
    add(**{"model.name": "itempop"})

  runs, records = tmp_path / "runs", tmp_path / "results"
  sweep.run(base, table3, runs / "table3_ml100k", overwrite=False)
  (runs / "scratch").mkdir()  # no summary: not a sweep folder, not collected
  report.main([f"--runs={runs}", f"--records={records}", "--collect"])
  assert sorted(p.name for p in records.iterdir()) == ["table3_ml100k"]
  kept = {p.relative_to(records).as_posix() for p in records.rglob("*") if p.is_file()}
  member = "table3_ml100k/name=dmf,user_layers=8,item_layers=8/seed1"
  assert {f"{member}/{name}" for name in report.RUN_RECORDS} <= kept, sorted(kept)
  assert not any("checkpoints" in p or p.endswith(("split.npz", ".png")) for p in kept)
  # The records give the report the run folders give, whatever --out names, byte for byte.
  from_runs = report.build(runs, tmp_path / "a" / "REPRODUCTION.md")
  from_records = report.build(records, tmp_path / "b" / "R.md")
  assert from_runs == from_records
  # The plots are drawn again from the records, as the sweep drew them.
  for name in ("metrics.png", "curves.png"):
    drawn = tmp_path / "b" / "figures" / f"table3_ml100k_{name}"
    assert drawn.read_bytes() == (tmp_path / "a" / "figures" / f"table3_ml100k_{name}").read_bytes()
  assert "## Table 3: the input matrix (LFM-nce vs DMF-1-nce) — ML-100k" in from_records
  assert str(tmp_path) not in from_records.split("Command:")[0]  # no argument echoed
  assert "the latest finished 20" in from_records  # the date comes from the records
  # Collecting again replaces the records whole.
  report.main([f"--runs={runs}", f"--records={records}", "--collect"])
  assert report.build(records, tmp_path / "c.md") == from_records
  # Beside the committed records, a sweep still training keeps only what differs from them.
  changed = runs / member / "metrics.jsonl"
  changed.write_text(changed.read_text() + "\n")
  pending = tmp_path / "pending"
  report.main([f"--runs={runs}", f"--records={pending}", f"--beside={records}", "--collect"])
  left = [p.relative_to(pending).as_posix() for p in pending.rglob("*") if p.is_file()]
  assert left == [f"{member}/metrics.jsonl"]
  assert not [p for p in records.iterdir() if p.name.startswith(".")]


def test_the_readme_glance_is_generated_between_its_markers(tmp_path, data_root):  # noqa: F811
  base = tiny_config(data_root, **{"train.epochs": 1})
  base.sweep.num_seeds = 1

  def table2(add):
    add(**{"model.name": "itempop"})
    add(**{"model.name": "itemknn"})
    add(**{"model.name": "dmf", "model.loss": "nce"})

  rows = sweep.run(base, table2, tmp_path / "runs" / "table2_ml100k", overwrite=False)
  readme = tmp_path / "README.md"
  readme.write_text(f"# x\n\n{report.GLANCE_START}\nold\n{report.GLANCE_END}\n\nrest\n")
  report.main(
    [f"--records={tmp_path / 'runs'}", f"--out={tmp_path / 'r.md'}", f"--readme={readme}"]
  )
  text = readme.read_text()
  assert text.startswith(f"# x\n\n{report.GLANCE_START}\n| data set |") and text.endswith(
    "\n\nrest\n"
  )
  assert "old" not in text and "Amazon Music" not in text  # no runs of it: no row
  dmf = next(r for r in rows if r["member"] == "name=dmf,loss=nce")
  ours = f"{dmf['test_hr@10']:.3f} / {dmf['test_ndcg@10']:.3f}"
  row = next(line for line in text.splitlines() if line.startswith("| ML-100k |"))
  assert row.startswith(f"| ML-100k | 0.687 / 0.409 | 0.593 / 0.341 | {ours} | ")
  assert "ItemKNN" in row and "ItemPop" in row
  assert "In short: on ML-100k ours is" in text


def test_the_committed_report_is_regenerated_from_the_committed_records(tmp_path):
  """What a fresh clone's `python -m dmf_jax.report --out=/tmp/r.md` compares with
  docs/REPRODUCTION.md (figures are written beside --out, and not compared)."""
  out = tmp_path / "elsewhere" / "r.md"
  assert report.build(REPO / "results", out) == (REPO / "docs" / "REPRODUCTION.md").read_text()


def test_pending_commands_are_the_sweeps_with_a_run_left(tmp_path, capsys):
  assert len(report.planned_runs("configs/table2.py", tmp_path / "t", "amusic")) == 10 * 3
  assert len(report.planned_runs("configs/beyond.py", tmp_path / "b", "ml100k")) == 44 * 3
  (run, *_) = report.planned_runs("configs/table3.py", tmp_path / "w", "amusic")
  assert run.name == "seed0" and len(report.planned_runs("configs/table3.py", run, "ml100k")) == 6
  assert report.commands(tmp_path) == report.commands()  # nothing finished there
  # One finished run is not a finished sweep; every run finished is.
  runs = report.planned_runs("configs/table3.py", tmp_path / "table3_amusic", "amusic")
  for run in runs[:-1]:
    run.mkdir(parents=True)
    (run / "results.json").write_text("{}")
  report.main(["--commands", f"--pending={tmp_path}"])
  assert any("runs/table3_amusic " in line for line in capsys.readouterr().out.splitlines())
  runs[-1].mkdir(parents=True)
  (runs[-1] / "results.json").write_text("{}")
  report.main(["--commands", f"--pending={tmp_path}"])
  pending = capsys.readouterr().out.splitlines()
  assert len(pending) == len(report.commands()) - 1
  assert not any("table3_amusic" in line for line in pending)


def test_commands_name_every_sweep_behind_the_report(capsys):
  report.main(["--commands"])
  lines = capsys.readouterr().out.splitlines()
  assert len(lines) == sum(len(e.datasets) for e in report.EXPERIMENTS)
  for line in lines:
    program, script, config, workdir, dataset = line.split()
    assert (program, script) == ("python", "launch.py") and workdir.startswith("--workdir=runs/")
    assert dataset.removeprefix("--config.data.name=") in report.DATASETS, line
    assert (REPO / config.removeprefix("--config=")).is_file(), line
  assert lines[-6].endswith("--workdir=runs/beyond_amusic --config.data.name=amusic")


def _record(folder, member, test_ranks, full_ranks, split="s0"):
  """A finished run's records: its results (split key) and per-user ranks."""
  run = folder / member / "seed0"
  run.mkdir(parents=True)
  (run / "results.json").write_text(json.dumps({"split": split}))
  np.savez(run / "ranks.npz", test_sampled=test_ranks, test_full=full_ranks)
  metrics = {"test_hr@10": 0.5, "test_ndcg@10": 0.3, "test_full_hr@10": 0.1}
  metrics |= {"test_full_ndcg@10": 0.05, "valid_ndcg@10": 0.4}
  return {"member": member, "seeds": 1, "best_epoch": 1.0, "train_seconds": 1.0, **metrics}


def test_a_seed_whose_loss_never_moved_is_named_under_its_table(tmp_path):
  def run(member, seed, losses, test_hr=0.6):
    folder = tmp_path / member / f"seed{seed}"
    folder.mkdir(parents=True)
    records = [{"epoch": e, "loss": loss} for e, loss in enumerate(losses, 1)]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (folder / "results.json").write_text(json.dumps({"model": "dmf", "test": {"hr@10": test_hr}}))

  run("loss=nce", 0, [0.30, 0.21, 0.18])
  run("loss=nce", 1, [0.3048, 0.30481, 0.3048], test_hr=0.03)  # moved 0.003% of its first loss
  run("name=itempop", 0, [None])  # fitted, no training loss
  run("loss=nce", 2, [0.31, 0.31])
  (tmp_path / "loss=nce" / "seed2" / "results.json").unlink()  # still training: not a finding yet
  rows = [{"member": "loss=nce"}, {"member": "name=itempop"}]
  lines = report._stalled_runs(tmp_path, rows, lambda member: member.upper())
  assert (
    lines[-1]
    == "- LOSS=NCE, seed1: training loss 0.3048 in each of its 3 epochs; test HR@10 0.030."
  )
  assert len([line for line in lines if line.startswith("- ")]) == 1
  assert "DMF's cosine is clipped at 1e-6" in lines[1]
  assert report._stalled_runs(tmp_path, rows[1:], str) == []


def test_the_committed_report_names_the_search_seed_that_did_not_train():
  """ML-100k's nce with 31 negatives, seed 1: its loss stayed at the one every score at the 1e-6
  clip gives, so its row's 0.417 ± 0.336 is said to hold a run that did not train."""
  search = (
    (REPO / "docs" / "REPRODUCTION.md").read_text().split("## Beyond the paper, the search")[1]
  )
  assert "- loss=nce,neg_ratio=31,batch_size=1024, seed1: training loss 0.3048" in search


def test_the_best_recipe_is_set_against_every_model_of_table2(tmp_path):
  """Ahead of a model only where the paired interval is above 0, on each ranking apart."""
  users = 300
  best, table2 = tmp_path / "dmf_best_ml100k", tmp_path / "table2_ml100k"
  top, bottom = np.zeros(users, np.int32), np.full(users, 50, np.int32)
  rows = [_record(best, "loss=ccl", top, bottom)]
  table2_rows = [
    _record(table2, "name=itempop", bottom, bottom),  # behind on sampled, level on full
    _record(table2, "name=ease", top, top),  # level on sampled, ahead on full
  ]
  (table2 / "summary.json").write_text(json.dumps(table2_rows))
  lines = report._best_against_table2(best, rows, table2, {"ItemPop": (0.4, 0.2)})
  text = "\n".join(lines)
  assert "| DMF, best recipe (`loss=ccl`) | 1 |" in text and "| ItemPop | 1 |" in text
  assert "| 0.400 | 0.200 |" in text  # the paper's numbers beside ItemPop
  assert "- best − ItemPop, test NDCG@10 per user: +1.0000" in text
  assert "- best − ItemPop, test full NDCG@10 per user: +0.0000" in text
  assert "- best − EASE^R, test full NDCG@10 per user: -1.0000" in text
  assert "on test NDCG@10 among the sampled candidates: ItemPop." in text
  assert "on test NDCG@10 in the full catalogue: none." in text
  # Another split: no comparison.
  other = tmp_path / "other"
  lines = report._best_against_table2(
    other, [_record(other, "loss=ccl", top, top, "s1")], table2, {}
  )
  assert lines[-1] == "Table 2's models are not measured on this split yet (`table2_ml100k`)."


def test_the_glance_says_where_the_best_recipe_stands(tmp_path):
  users = 200
  top, bottom = np.zeros(users, np.int32), np.full(users, 50, np.int32)
  best = _record(tmp_path / "dmf_best_amusic", "loss=ccl", top, top)
  rows = {
    "EASE^R": _record(tmp_path / "table2_amusic", "name=ease", bottom, bottom),
    "iALS": _record(tmp_path / "table2_amusic", "name=ials", top, top),
  }
  line = report._best_against_strongest(tmp_path, "amusic", best, rows, "EASE^R")
  assert (
    line == "the best recipe beyond the paper is ahead of EASE^R (+1.000 NDCG@10, 95% "
    "interval [+1.000, +1.000])"
  )
  assert "is level with iALS (+0.000" in report._best_against_strongest(
    tmp_path, "amusic", best, rows, "iALS"
  )
