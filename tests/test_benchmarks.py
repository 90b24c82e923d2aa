"""The benchmark harness's own pieces: the synthetic data, the report and the step profiler."""

import numpy as np

from benchmarks import datasets, run


def test_power_law_set_has_the_shape_and_heavy_tails():
  data = datasets.power_law_interactions(
    600, 400, 30_000, min_user_ratings=20, max_user_ratings=300, seed=1
  )
  assert (data.num_users, data.num_items, data.num_ratings) == (600, 400, 30_000)
  pairs = data.users.astype(np.int64) * 400 + data.items
  assert len(np.unique(pairs)) == 30_000  # each (user, item) pair once
  user_degrees = np.bincount(data.users, minlength=600)
  assert user_degrees.min() >= 20 and user_degrees.max() <= 300
  # Heavy tails: the mean well above the median, and the top 1% of items hold several percent.
  assert user_degrees.mean() > 1.3 * np.median(user_degrees)
  item_degrees = np.sort(np.bincount(data.items, minlength=400))[::-1]
  assert item_degrees[:4].sum() > 3 * 4 * item_degrees.mean()
  assert set(np.unique(data.ratings)) <= {1.0, 2.0, 3.0, 4.0, 5.0}
  again = datasets.power_law_interactions(
    600, 400, 30_000, min_user_ratings=20, max_user_ratings=300, seed=1
  )
  np.testing.assert_array_equal(again.items, data.items)


def test_markdown_report_has_the_ratio_and_the_load():
  epoch = {"layers": [64, 64, 64], "steps_timed": 10, "steps_per_epoch": 10, "eval_s": 0.5}
  ours = {
    **epoch,
    "first_layer": "dense",
    "epoch_s": [2.0, 2.2],
    "instances_per_s": [400.0, 360.0],
    "compile_s": 3.0,
    "peak_rss_mb": 500.0,
    "load_before": [4.0],
    "load_after": [4.5],
  }
  lazy = {**ours, "optimizer": "lazy_adam", "epoch_s": [1.0, 1.1]}
  theirs = {**ours, "epoch_s": [20.0, 22.0], "peak_rss_mb": 700.0, "first_layer": "per batch"}
  del theirs["compile_s"]
  report = {
    "name": "test-machine",
    "command": "python -m benchmarks.run --recbole",
    "date": "2026-01-01T00:00:00",
    "machine": {
      "processor": "x86_64",
      "cpus": 2,
      "platform": "Linux",
      "devices": ["cpu:0"],
      "python": "3.11",
      "jax": "0.10.2",
      "numpy": "2.4",
    },
    "load_min": 4.0,
    "load_max": 4.5,
    "datasets": {
      "ml100k": {
        "ours": [{**ours, "optimizer": "adam"}, lazy],
        "recbole": [theirs],
        "shape": [943, 1682],
        "ratios": {
          "adam": {
            "ours_s_per_epoch": 2.1,
            "recbole_s_per_epoch": 21.0,
            "speedup": 10.0,
            "rounds": 1,
          },
          "lazy_adam": {
            "ours_s_per_epoch": 1.05,
            "recbole_s_per_epoch": 21.0,
            "speedup": 20.0,
            "rounds": 1,
          },
        },
      }
    },
  }
  text = run.markdown(report)
  # Every row names its optimizer: a lazy row is never set beside RecBole's without saying so.
  assert "| ml100k | 21.00 | adam | 2.10 | **10.0x** | 1 |" in text
  assert "| ml100k | 21.00 | lazy_adam | 1.05 | **20.0x** | 1 |" in text
  assert "| ml100k | dmf_jax, adam | (64, 64, 64) | dense | 10/10 | 2.10 |" in text
  assert "| ml100k | dmf_jax, lazy_adam | (64, 64, 64) | dense | 10/10 | 1.05 |" in text
  assert "| ml100k | RecBole DMF, adam | (64, 64, 64) | per batch | 10/10 | 21.00 |" in text
  assert "4.0 to 4.5" in text


def test_a_set_trained_without_evaluation_shows_no_eval_seconds():
  ours = {
    "layers": [64, 64, 64],
    "first_layer": "segment",
    "steps_timed": 50,
    "steps_per_epoch": 625_000,
    "epoch_s": [1e6],
    "instances_per_s": [160.0],
    "compile_s": 30.0,
    "peak_rss_mb": 4000.0,
    "load_before": [5.0],
    "load_after": [5.0],
  }
  machine = {"processor": "x86_64", "cpus": 2, "platform": "Linux", "devices": ["cpu:0"]}
  report = {
    "name": "m",
    "command": "python -m benchmarks.run --datasets=large_synth",
    "date": "2026-01-01T00:00:00",
    "machine": {**machine, "python": "3.11", "jax": "0.10.2", "numpy": "2.4"},
    "load_min": 5.0,
    "load_max": 5.0,
    "datasets": {"large_synth": {"ours": [ours], "recbole": [], "shape": [10**6, 10**6]}},
  }
  assert "| 50/625000 | 1000000.00 | 160 | 30.0 | - | 4000 |" in run.markdown(report)


def test_profile_step_lists_the_ops_of_a_step(real_data_root, capsys):
  from benchmarks import profile_step

  profile_step.main(["--dataset=ml100k", "--steps=5", "--top=4", f"--root={real_data_root}"])
  header, *ops = capsys.readouterr().out.strip().splitlines()
  assert header.startswith("ml100k, layers 64,64,64, first layer dense:")
  assert len(ops) == 4
  times = [float(line.split()[0]) for line in ops]
  assert all(t > 0 for t in times) and times == sorted(times, reverse=True)
