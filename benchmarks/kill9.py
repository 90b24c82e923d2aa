"""Crash safety under `kill -9`: runs killed at random moments, then rerun, against one uninterrupted.

  DMF_DATA_DIR=../shared/data python -m benchmarks.kill9 --kills=20 --sweep-kills=5

Each trial starts the command, kills it with SIGKILL after a random share of the uninterrupted
run's wall time, and reruns it to the end. Every trial must finish with `metrics.jsonl` holding each
epoch exactly once, and `results.json` (less its timing and code fields) and `ranks.npz` equal to the
uninterrupted run's. The single run is the issue's BASE: DMF with one 64-wide layer, 4 epochs; the
sweep is `configs/table3.py` (LFM and DMF-1, one seed, 3 epochs).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
BASE = (
  "launch.py",
  "--config=configs/default.py",
  "--config.model.user_layers=(64,)",
  "--config.model.item_layers=(64,)",
  "--config.train.epochs=4",
)
SWEEP = (
  "launch.py",
  "--config=configs/table3.py",
  "--config.sweep.num_seeds=1",
  "--config.train.epochs=3",
)
UNCOMPARED = ("train_seconds", "wall_seconds", "code")


def _run(command, workdir: pathlib.Path, kill_after: float | None = None) -> float:
  """Runs `command` into `workdir`; with `kill_after`, SIGKILLs it then. Returns its wall time."""
  began = time.perf_counter()
  with subprocess.Popen(
    [sys.executable, *command, f"--workdir={workdir}"],
    cwd=REPO,
    stdout=subprocess.DEVNULL,
    stderr=subprocess.PIPE,
    text=True,
  ) as proc:
    if kill_after is not None:
      try:
        proc.wait(timeout=kill_after)
      except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
    _, stderr = proc.communicate()
  if kill_after is None and proc.returncode:
    raise SystemExit(f"{' '.join(command)} --workdir={workdir} failed:\n{stderr[-2000:]}")
  return time.perf_counter() - began


def _runs(folder: pathlib.Path) -> dict[str, pathlib.Path]:
  """The run folders under `folder` (itself, or a sweep's members), by relative path."""
  return {str(p.parent.relative_to(folder)): p.parent for p in folder.glob("**/config.json")}


def _check(trial: pathlib.Path, reference: pathlib.Path) -> list[str]:
  """What differs between a trial's runs and the reference's."""
  problems = []
  expected = _runs(reference)
  found = _runs(trial)
  if set(found) != set(expected):
    return [f"runs {sorted(found)} against {sorted(expected)}"]
  for name, run in found.items():
    ref = expected[name]
    epochs = [
      json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()
    ]
    ref_epochs = [
      json.loads(line)["epoch"] for line in (ref / "metrics.jsonl").read_text().splitlines()
    ]
    if epochs != ref_epochs:
      problems.append(f"{name}: epochs {epochs} against {ref_epochs}")
    results, ref_results = (json.loads((d / "results.json").read_text()) for d in (run, ref))
    for key in sorted(set(results) | set(ref_results)):
      if key not in UNCOMPARED and results.get(key) != ref_results.get(key):
        problems.append(f"{name}: results.json {key} differs")
    with np.load(run / "ranks.npz") as a, np.load(ref / "ranks.npz") as b:
      if a.files != b.files or any(not np.array_equal(a[k], b[k]) for k in a.files):
        problems.append(f"{name}: ranks.npz differs")
  return problems


def trials(command, kills: int, scratch: pathlib.Path, rng) -> list[dict]:
  reference = scratch / "reference"
  wall = _run(command, reference)
  out = []
  for index in range(kills):
    workdir = scratch / f"trial{index}"
    kill_after = float(rng.uniform(0.5, wall))
    _run(command, workdir, kill_after)
    killed_state = "finished" if (workdir / "results.json").exists() else "unfinished"
    _run(command, workdir)
    problems = _check(workdir, reference)
    out.append({"kill_after_s": round(kill_after, 2), "killed": killed_state, "problems": problems})
    print(
      f"{' '.join(command[1:2])} trial {index + 1}/{kills}: killed at {kill_after:.1f} s "
      f"({killed_state}), rerun {'OK' if not problems else problems}",
      flush=True,
    )
  return out


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--kills", type=int, default=20)
  parser.add_argument("--sweep-kills", type=int, default=5)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--out", default=None, help="JSON record of every trial")
  args = parser.parse_args()
  if not os.environ.get("DMF_DATA_DIR"):
    raise SystemExit("set DMF_DATA_DIR to the folder of the data sets")
  rng = np.random.default_rng(args.seed)
  with tempfile.TemporaryDirectory() as scratch:
    scratch = pathlib.Path(scratch)
    record = {
      "single": trials(BASE, args.kills, scratch / "single", rng),
      "sweep": trials(SWEEP, args.sweep_kills, scratch / "sweep", rng),
    }
  failed = sum(bool(t["problems"]) for runs in record.values() for t in runs)
  print(
    f"{failed} of {sum(len(r) for r in record.values())} trials differ from the uninterrupted run"
  )
  if args.out:
    pathlib.Path(args.out).write_text(json.dumps(record, indent=1) + "\n")
  sys.exit(1 if failed else 0)


if __name__ == "__main__":
  main()
