"""Exact Adam against `lazy_adam` (user- and item-indexed weights updated at the rows a batch
reads): the same epochs' first steps timed for each, in alternating rounds, median of each.

  DMF_DATA_DIR=../shared/data python -m benchmarks.optimizers --dataset=amusic --steps=1000

Both run the epoch as training does (`Trainer.train_epoch`, chunked), compiled first; the lazy
optimizer's quality is another question (validation NDCG@10, measured by training runs).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import jax

from benchmarks.ours import prepare
from dmf_jax import training


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--dataset", default="amusic")
  parser.add_argument("--layers", default="256,64")
  parser.add_argument("--first_layer", default="auto")
  parser.add_argument("--steps", type=int, default=1000, help="steps per timed epoch")
  parser.add_argument("--rounds", type=int, default=5)
  parser.add_argument(
    "--no-split", action="store_true", help="train on every rating (skips a large set's split)"
  )
  parser.add_argument("--root", default=None, help="data folder (else $DMF_DATA_DIR)")
  args = parser.parse_args()

  layers = tuple(int(w) for w in args.layers.split(","))
  runs = {}
  for optimizer in ("adam", "lazy_adam"):
    prepared = prepare(
      args.dataset,
      layers=layers,
      first_layer=args.first_layer,
      max_steps=args.steps,
      evaluate=not args.no_split,
      root=args.root,
      optimizer=optimizer,
    )
    trainer, data = prepared.trainer, prepared.data
    state = trainer.init_state(training.init_key(0))
    state = jax.block_until_ready(
      trainer.train_epoch(state, data, *training.epoch_keys(0, 0, True))[0]
    )
    runs[optimizer] = [trainer, data, state]
  batch = prepared.trainer.positives_per_batch * (1 + prepared.config.train.neg_ratio)
  seconds = {name: [] for name in runs}
  load_before = os.getloadavg()[0]
  for round_ in range(1, args.rounds + 1):
    for name, run in runs.items():
      trainer, data, state = run
      began = time.perf_counter()
      run[2] = jax.block_until_ready(
        trainer.train_epoch(state, data, *training.epoch_keys(0, round_, True))[0]
      )
      seconds[name].append(time.perf_counter() - began)
  load_after = os.getloadavg()[0]
  print(
    f"{args.dataset}, layers {args.layers}, first layer {data.user_rows.form}, {prepared.steps} steps "
    f"of {batch} instances, {args.rounds} alternating rounds, {os.cpu_count()} CPUs, "
    f"{jax.devices()[0].platform}, load average {load_before:.2f} before / {load_after:.2f} after"
  )
  for name, times in seconds.items():
    median = statistics.median(times)
    print(
      f"{name:>9}: median {median:.3f} s, {prepared.steps * batch / median:,.0f} instances/s "
      f"(rounds: {', '.join(f'{t:.3f}' for t in times)})"
    )
  print(
    f"lazy_adam / adam speed: {statistics.median(seconds['adam']) / statistics.median(seconds['lazy_adam']):.2f}x"
  )


if __name__ == "__main__":
  main()
