"""Does a sweep member's seeds training as one vmapped program (`sweep.vmap_seeds`) pay? Runs the
same member (DMF-2-nce, the default config) with its seeds one by one and vmapped, in alternating
rounds, each round in a fresh folder (compiles included: a sweep pays them too), and compares the
wall times and every seed's per-epoch metrics.

  DMF_DATA_DIR=../shared/data python -m benchmarks.vmap_seeds --dataset=ml100k --seeds=3 --epochs=3
"""

from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import tempfile
import time

import jax

from configs import default
from dmf_jax import sweep
from dmf_jax.workdir import Workdir

WAYS = {"one by one": False, "vmapped": True}


def _member(add):
  add()  # the config as it is: the folder "base"


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--dataset", default="ml100k")
  parser.add_argument("--seeds", type=int, default=3)
  parser.add_argument("--epochs", type=int, default=3)
  parser.add_argument("--rounds", type=int, default=3, help="rounds of both ways, alternating")
  parser.add_argument("--root", default=None, help="data folder (else $DMF_DATA_DIR)")
  args = parser.parse_args()

  config = default.get_config()
  config.data.name = args.dataset
  config.data.root = args.root or os.environ.get("DMF_DATA_DIR")
  config.train.epochs = args.epochs
  config.sweep.num_seeds = args.seeds
  print(
    f"{args.dataset}, DMF layers {config.model.user_layers}, {args.seeds} seeds x {args.epochs} "
    f"epochs, {jax.devices()[0].platform} ({jax.device_count()} device), load "
    f"{os.getloadavg()[0]:.2f}",
    flush=True,
  )
  seconds = {way: [] for way in WAYS}
  with tempfile.TemporaryDirectory() as scratch:
    folders = {}
    for round_ in range(1, args.rounds + 1):
      order = list(WAYS) if round_ % 2 else list(reversed(WAYS))
      for way in order:
        config.sweep.vmap_seeds = WAYS[way]
        folders[way] = pathlib.Path(scratch) / f"{way.replace(' ', '_')}{round_}"
        began = time.perf_counter()
        sweep.run(config, _member, folders[way], overwrite=False)
        seconds[way].append(time.perf_counter() - began)
      print(
        f"round {round_}: "
        + ", ".join(f"{way} {seconds[way][-1]:.1f} s" for way in WAYS)
        + f" (load {os.getloadavg()[0]:.2f})",
        flush=True,
      )
    medians = {way: statistics.median(seconds[way]) for way in WAYS}
    print(
      f"median: one by one {medians['one by one']:.1f} s, vmapped {medians['vmapped']:.1f} s: "
      f"speed-up {medians['one by one'] / medians['vmapped']:.2f}x"
    )
    finals = [
      Workdir(folders["one by one"] / "base" / f"seed{seed}").results()["validation"]["ndcg@10"]
      for seed in range(config.seed, config.seed + args.seeds)
    ]
    print(
      f"for scale, the seeds' own validation NDCG@10 (one by one): "
      f"{', '.join(f'{v:.4f}' for v in finals)}"
    )
    for seed in range(config.seed, config.seed + args.seeds):
      runs = [Workdir(folders[way] / "base" / f"seed{seed}") for way in WAYS]
      records = [run.metrics() for run in runs]
      gaps = [
        abs(a[split]["ndcg@10"] - b[split]["ndcg@10"])
        for a, b in zip(*records, strict=True)
        for split in ("validation", "test")
      ]
      best = [run.results()["best_epoch"] for run in runs]
      print(
        f"seed {seed}: NDCG@10 differs by at most {max(gaps):.4f} over {len(records[0])} epochs "
        f"(validation and test); best epoch {best[0]} one by one, {best[1]} vmapped"
      )


if __name__ == "__main__":
  main()
