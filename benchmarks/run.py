"""Training and evaluation throughput of dmf_jax, and of RecBole's DMF beside it.

  python -m benchmarks.run                      # ours on ML-100k, Amazon Music and the ML-1M shape
  python -m benchmarks.run --recbole            # and RecBole 1.2.1's DMF, run alternately
  python -m benchmarks.run --forms              # and each first-layer form: the `auto` rule's evidence
  python -m benchmarks.run --quality            # and time to HR@10 >= 0.62 on ML-100k (DMF-2-nce)
  python -m benchmarks.run --optimizers=adam,lazy_adam  # each optimizer, measured every round
  python -m benchmarks.run --datasets=amazon_movies_synth,large_synth --name=cpu-2core-vm-scale
                                                # the scale shapes (docs/SCALE.md)

Every measurement runs in its own process (`benchmarks.measure`), so its peak resident memory is
its own. With `--recbole`, ours and RecBole's alternate (ours, theirs, ours, theirs, ...) so machine
noise hits both; the headline is the ratio of the medians of their seconds per epoch, at equal
widths (64, 64, 64). Writes `<out>/<machine>.json` and `<out>/<machine>.md`.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import tempfile
import time

from benchmarks import datasets
from dmf_jax import sweep

REPO = pathlib.Path(__file__).resolve().parents[1]
# ML-1M's epoch is 30k steps: time a chunk of it, scaled up (CPU); a GPU runs it whole. The 1M x 1M
# set's 625k steps take days on a CPU: its chunk keeps the measurement to minutes.
DEFAULT_MAX_STEPS = {
  "ml100k": None,
  "amusic": None,
  "ml1m_synth": 1000,
  "amazon_movies_synth": 1000,
  "large_synth": 50,
}
FORMS = ("dense", "segment", "padded")
FORMS_MAX_STEPS = 500  # one epoch's first steps per form: the slow forms take minutes per epoch
QUALITY_TARGET = 0.62  # the DMF issue's acceptance: test HR@10 of DMF-2-nce on ML-100k
QUALITY_BUDGET_S = 600


def load_average() -> list[float]:
  return [round(x, 2) for x in os.getloadavg()]


def _measure(system: str, dataset: str, args, epochs: int | None = None, **options) -> dict:
  """One `benchmarks.measure` process; its result, with the load average before and after."""
  with tempfile.TemporaryDirectory() as scratch:
    out = pathlib.Path(scratch) / "result.json"
    command = [
      sys.executable,
      "-m",
      "benchmarks.measure",
      f"--system={system}",
      f"--dataset={dataset}",
      f"--epochs={epochs or args.epochs}",
      f"--out={out}",
    ]
    max_steps = options.pop("max_steps", None)
    if max_steps:
      command.append(f"--max-steps={max_steps}")
    command += [f"--{k.replace('_', '-')}={v}" for k, v in options.items()]
    if args.root:
      command.append(f"--root={args.root}")
    before = load_average()
    began = time.perf_counter()
    print(f"[{dataset}] {system} {options or ''} (load {before[0]})", file=sys.stderr, flush=True)
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    if proc.returncode:
      raise SystemExit(f"{' '.join(command)} failed:\n{proc.stderr[-3000:]}")
    result = json.loads(out.read_text())
  result["wall_s"] = time.perf_counter() - began
  result["load_before"], result["load_after"] = before, load_average()
  print(
    f"  {statistics.median(result['epoch_s']):.2f} s/epoch, peak RSS {result['peak_rss_mb']:.0f} MB",
    file=sys.stderr,
    flush=True,
  )
  return result


def _quality(args) -> dict:
  """The default config (DMF-2-nce, layers (256, 64), 20 epochs) through launch.py, timed whole."""
  with tempfile.TemporaryDirectory() as scratch:
    workdir = pathlib.Path(scratch) / "run"
    command = [
      sys.executable,
      "launch.py",
      "--config=configs/default.py",
      f"--workdir={workdir}",
    ]
    if args.root:
      command.append(f"--config.data.root={args.root}")
    before = load_average()
    print(f"[ml100k] time to quality (load {before[0]})", file=sys.stderr, flush=True)
    began = time.perf_counter()
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - began
    if proc.returncode:
      raise SystemExit(f"{' '.join(command)} failed:\n{proc.stderr[-3000:]}")
    results = json.loads((workdir / "results.json").read_text())
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  reached = [r["epoch"] for r in records if r["test"]["hr@10"] >= QUALITY_TARGET]
  return {
    "command": " ".join(["python", *command[1:2], "--config=configs/default.py"]),
    "wall_s": wall,
    "train_s": results["train_seconds"],
    "best_epoch": results["best_epoch"],
    "test_hr@10": results["test"]["hr@10"],
    "test_ndcg@10": results["test"]["ndcg@10"],
    "first_epoch_reaching_target": reached[0] if reached else None,
    "per_epoch_test_hr@10": [r["test"]["hr@10"] for r in records],
    "met": results["test"]["hr@10"] >= QUALITY_TARGET and wall <= QUALITY_BUDGET_S,
    "load_before": before,
    "load_after": load_average(),
  }


def machine_info() -> dict:
  info = {"hostname": platform.node(), **sweep.machine()}
  try:
    import torch

    info["torch"] = torch.__version__
  except ImportError:
    pass
  return info


def machine_name(info: dict) -> str:
  device = info["devices"][0].split("(")[0].lower()
  kind = "gpu" if "cuda" in device or "gpu" in device else "cpu"
  return f"{kind}-{info['cpus']}core-{info['hostname']}".replace(" ", "_")


def _median(values) -> float:
  return statistics.median(values)


def _row(result: dict) -> dict:
  return {
    "s_per_epoch": _median(result["epoch_s"]),
    "instances_per_s": _median(result["instances_per_s"]),
  }


def _eval_seconds(runs) -> str:
  timed = [r["eval_s"] for r in runs if "eval_s" in r]
  return f"{_median(timed):.2f}" if timed else "-"


def markdown(report: dict) -> str:
  info = report["machine"]
  lines = [
    f"# Benchmarks on {report['name']}",
    "",
    f"- Command: `{report['command']}` ({report['date']})",
    f"- Machine: {info['processor']}, {info['cpus']} CPUs, {info['platform']}; devices "
    f"{', '.join(info['devices'])} ({info.get('device_kind', 'kind not recorded')})",
    f"- Versions: Python {info['python']}, jax {info['jax']}, numpy {info['numpy']}"
    + (f", torch {info['torch']}" if "torch" in info else ""),
    f"- Load average (1 min) during the run: {report['load_min']} to {report['load_max']}",
    "- Training: batch 256 (32 positives x (1 + 7 negatives)), lr 1e-4, the optimizer each row "
    "names (adam: exact; lazy_adam: first layers updated at the rows a batch reads); seconds per epoch "
    "exclude compilation; `steps` is how many of the epoch's steps were timed (scaled to the "
    "epoch when fewer). Evaluation: every user and item vector once, then sampled (100 "
    "candidates) HR/NDCG@10 of every validation and test user and full-ranking ones of "
    "`eval.full_ranking_users` (10,000) of them.",
    "",
    "## Throughput",
    "",
    "| data set | system | layers | first layer | steps | s/epoch | instances/s | compile s "
    "| eval s | peak RSS MB | load |",
    "|---|---|---|---|---|---|---|---|---|---|---|",
  ]
  for name, entry in report["datasets"].items():
    by_optimizer = collections.defaultdict(list)
    for result in entry["ours"]:
      by_optimizer[result.get("optimizer", "adam")].append(result)
    systems = [(f"dmf_jax, {optimizer}", runs) for optimizer, runs in by_optimizer.items()]
    for system, runs in [*systems, ("RecBole DMF, adam", entry.get("recbole", []))]:
      if not runs:
        continue
      epochs = [s for r in runs for s in r["epoch_s"]]
      rates = [s for r in runs for s in r["instances_per_s"]]
      compile_s = [r["compile_s"] for r in runs if "compile_s" in r]
      lines.append(
        f"| {name} | {system} | {tuple(runs[0]['layers'])} | {runs[0]['first_layer']} "
        f"| {runs[0]['steps_timed']}/{runs[0]['steps_per_epoch']} | {_median(epochs):.2f} "
        f"| {_median(rates):,.0f} | {(f'{_median(compile_s):.1f}' if compile_s else '-')} "
        f"| {_eval_seconds(runs)} "
        f"| {max(r['peak_rss_mb'] for r in runs):.0f} "
        f"| {min(r['load_before'][0] for r in runs):.1f}-{max(r['load_after'][0] for r in runs):.1f} |"
      )
  ratios = {n: e["ratios"] for n, e in report["datasets"].items() if "ratios" in e}
  if ratios:
    lines += [
      "",
      "## Against RecBole's DMF (equal widths, run alternately)",
      "",
      "RecBole's DMF trains with exact Adam; a `lazy_adam` row is ours with the sparse-row "
      "optimizer, not like for like in the update rule.",
      "",
      "| data set | RecBole (adam) s/epoch | dmf_jax optimizer | dmf_jax s/epoch | speed-up | rounds |",
      "|---|---|---|---|---|---|",
    ]
    for name, by_optimizer in ratios.items():
      for optimizer, ratio in by_optimizer.items():
        lines.append(
          f"| {name} | {ratio['recbole_s_per_epoch']:.2f} | {optimizer} "
          f"| {ratio['ours_s_per_epoch']:.2f} | **{ratio['speedup']:.1f}x** | {ratio['rounds']} |"
        )
  forms = {n: e["forms"] for n, e in report["datasets"].items() if e.get("forms")}
  if forms:
    lines += [
      "",
      "## First-layer forms (evidence for `model.first_layer=auto`)",
      "",
      "Layers (64, 64, 64); `steps` timed of the epoch's (the first "
      f"{FORMS_MAX_STEPS} at most unless `--full-epochs`), seconds per epoch scaled from them.",
      "",
      "| data set | Y shape | form | steps | s/epoch | instances/s | compile s | peak RSS MB | load |",
      "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, results in forms.items():
      shape = report["datasets"][name]["shape"]
      for r in results:
        lines.append(
          f"| {name} | {shape[0]} x {shape[1]} | {r['first_layer']} "
          f"| {r['steps_timed']}/{r['steps_per_epoch']} | {_median(r['epoch_s']):.2f} "
          f"| {_median(r['instances_per_s']):,.0f} | {r['compile_s']:.1f} | {r['peak_rss_mb']:.0f} "
          f"| {r['load_before'][0]:.1f} |"
        )
  if "quality" in report:
    q = report["quality"]
    lines += [
      "",
      "## Time to quality (ML-100k, DMF-2-nce, default config)",
      "",
      f"`{q['command']}`: test HR@10 {q['test_hr@10']:.4f} (NDCG@10 {q['test_ndcg@10']:.4f}) at "
      f"best epoch {q['best_epoch']}; first epoch with test HR@10 >= {QUALITY_TARGET}: "
      f"{q['first_epoch_reaching_target']}; wall {q['wall_s']:.0f} s for all 20 epochs, compile "
      f"and evaluation included (training {q['train_s']:.0f} s); target "
      f"{'met' if q['met'] else 'NOT met'} (<= {QUALITY_BUDGET_S} s); load "
      f"{q['load_before'][0]}-{q['load_after'][0]}.",
    ]
  return "\n".join(lines) + "\n"


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument(
    "--datasets",
    default=",".join(datasets.NAMES),
    help=f"comma-separated, of {', '.join(datasets.NAMES + datasets.SCALE_NAMES)}",
  )
  parser.add_argument("--epochs", type=int, default=2, help="epochs per measurement")
  parser.add_argument("--rounds", type=int, default=2, help="alternations of ours and RecBole's")
  parser.add_argument("--recbole", action="store_true", help="also run RecBole's DMF")
  parser.add_argument(
    "--optimizers",
    default="adam",
    help="ours: comma-separated train.optimizer values, each measured every round",
  )
  parser.add_argument(
    "--recbole-threads",
    type=int,
    default=1,
    help="torch threads for RecBole (on a loaded 2-core machine 1 was 5-10x faster than 2)",
  )
  parser.add_argument("--forms", action="store_true", help="also time each first-layer form")
  parser.add_argument("--quality", action="store_true", help="also time ML-100k to HR@10 0.62")
  parser.add_argument(
    "--max-steps", type=int, default=None, help="steps timed per epoch (else per data set)"
  )
  parser.add_argument("--full-epochs", action="store_true", help="time every step of every epoch")
  parser.add_argument("--root", default=None, help="data folder (else $DMF_DATA_DIR)")
  parser.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
  parser.add_argument("--name", default=None, help="results file name (else from the machine)")
  args = parser.parse_args(argv)
  unknown = set(args.datasets.split(",")) - set(datasets.NAMES + datasets.SCALE_NAMES)
  if unknown:
    parser.error(f"--datasets: unknown {', '.join(sorted(unknown))}")

  info = machine_info()
  name = args.name or machine_name(info)
  report = {
    "name": name,
    "command": " ".join(
      ["python -m benchmarks.run", *(argv if argv is not None else sys.argv[1:])]
    ),
    "date": datetime.datetime.now().isoformat(timespec="seconds"),
    "machine": info,
    "datasets": {},
  }
  optimizers = args.optimizers.split(",")
  for dataset in args.datasets.split(","):
    max_steps = None if args.full_epochs else args.max_steps or DEFAULT_MAX_STEPS.get(dataset)
    entry = report["datasets"].setdefault(dataset, {"ours": [], "recbole": []})
    for _ in range(args.rounds if args.recbole else 1):
      for optimizer in optimizers:
        entry["ours"].append(
          _measure("ours", dataset, args, max_steps=max_steps, optimizer=optimizer)
        )
      if args.recbole:
        entry["recbole"].append(
          _measure("recbole", dataset, args, max_steps=max_steps, threads=args.recbole_threads)
        )
    if args.recbole:
      theirs = _median([s for r in entry["recbole"] for s in r["epoch_s"]])
      entry["ratios"] = {}
      for optimizer in optimizers:
        ours = _median(
          [s for r in entry["ours"] if r["optimizer"] == optimizer for s in r["epoch_s"]]
        )
        entry["ratios"][optimizer] = {
          "ours_s_per_epoch": ours,
          "recbole_s_per_epoch": theirs,
          "speedup": theirs / ours,
          "rounds": args.rounds,
        }
    if args.forms:
      steps = None if args.full_epochs else min(max_steps or FORMS_MAX_STEPS, FORMS_MAX_STEPS)
      entry["forms"] = [
        _measure("ours", dataset, args, epochs=1, max_steps=steps, first_layer=form)
        for form in FORMS
      ]
  for entry in report["datasets"].values():
    entry["shape"], entry["ratings"] = entry["ours"][0]["shape"], entry["ours"][0]["ratings"]
  if args.quality:
    report["quality"] = _quality(args)
  loads = [
    r[k][0]
    for e in report["datasets"].values()
    for runs in (e["ours"], e["recbole"], e.get("forms", []))
    for r in runs
    for k in ("load_before", "load_after")
  ]
  report["load_min"], report["load_max"] = (min(loads), max(loads)) if loads else (None, None)
  out = pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  (out / f"{name}.json").write_text(json.dumps(report, indent=1) + "\n")
  (out / f"{name}.md").write_text(markdown(report))
  print(markdown(report))


if __name__ == "__main__":
  main()
