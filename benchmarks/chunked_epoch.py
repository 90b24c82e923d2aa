"""What following an epoch's progress costs: the epoch as one compiled program (`whole_epoch`)
against the epoch as training runs it, in chunks of `train.chunk_steps` steps with a host sync and
a progress update per chunk (`train_epoch`). Alternating rounds, median of each; both compiled first.

  DMF_DATA_DIR=../shared/data python -m benchmarks.chunked_epoch --dataset=ml100k --rounds=7

Both give the same parameters bit for bit (tests/test_training.py); this measures only time.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import time

import jax
import numpy as np

from benchmarks.ours import prepare
from dmf_jax import progress, training


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--dataset", default="ml100k")
  parser.add_argument("--layers", default="256,64")
  parser.add_argument("--chunk_steps", type=int, default=None, help="default: the config's")
  parser.add_argument("--rounds", type=int, default=7)
  parser.add_argument("--root", default=None, help="data folder (else $DMF_DATA_DIR)")
  args = parser.parse_args()

  prepared = prepare(args.dataset, layers=tuple(int(w) for w in args.layers.split(",")))
  config, trainer, data, steps = prepared.config, prepared.trainer, prepared.data, prepared.steps
  if args.chunk_steps:
    config.unlock().train.chunk_steps = args.chunk_steps
  state = trainer.init_state(training.init_key(config.seed))
  keys = training.epoch_keys(config.seed, 1, True)
  report = progress.Progress("bench", args.rounds * steps + steps, stream=io.StringIO())

  def whole(state):
    state, losses, _ = trainer.whole_epoch(state, data, *keys)
    np.asarray(losses)  # the unchunked epoch's one host sync
    return state

  def chunked(state):
    return trainer.train_epoch(state, data, *keys, on_steps=report.advance)[0]

  for run in (whole, chunked):  # compile both
    state = jax.block_until_ready(run(state))
  seconds = {"whole": [], "chunked": []}
  load_before = os.getloadavg()[0]
  for _ in range(args.rounds):
    for name, run in (("whole", whole), ("chunked", chunked)):
      began = time.perf_counter()
      state = jax.block_until_ready(run(state))
      seconds[name].append(time.perf_counter() - began)
  load_after = os.getloadavg()[0]
  whole_s, chunked_s = (statistics.median(seconds[k]) for k in ("whole", "chunked"))
  print(
    f"{args.dataset}, layers {args.layers}, {steps} steps/epoch, chunks of "
    f"{config.train.chunk_steps} steps, {args.rounds} alternating rounds, {os.cpu_count()} CPUs, "
    f"{jax.devices()[0].platform}, load average {load_before:.2f} before / {load_after:.2f} after"
  )
  print(
    f"whole epoch:   median {whole_s:.3f} s  (rounds: {', '.join(f'{s:.3f}' for s in seconds['whole'])})"
  )
  print(
    f"chunked epoch: median {chunked_s:.3f} s  (rounds: {', '.join(f'{s:.3f}' for s in seconds['chunked'])})"
  )
  print(f"cost of chunking: {100 * (chunked_s / whole_s - 1):+.2f}%")


if __name__ == "__main__":
  main()
