"""Where a training step's time goes: a `jax.profiler` trace of one epoch chunk, per-op totals.

  DMF_DATA_DIR=../shared/data python -m benchmarks.profile_step --dataset=amusic --steps=600

Compiles the epoch program over the first `--steps` steps' worth of positives, runs it once to warm
up, then once under the profiler, and prints the ops that ran once per step with their mean
microseconds, slowest first (the names are those of the compiled program; `--hlo=FILE` writes its
text, to look a name up). The profiler adds some time of its own: compare the printed ms/step with
an unprofiled `benchmarks.measure` of the same set.
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
import pathlib
import tempfile
import time

import jax
import numpy as np

from benchmarks import datasets
from benchmarks.ours import config_for, subset
from dmf_jax import training


def per_step_ops(trace_dir: pathlib.Path, steps: int) -> list[tuple[str, float]]:
  """(op name, mean microseconds) of every traced op that ran exactly once per step."""
  (trace,) = trace_dir.glob("**/*.trace.json.gz")
  totals, counts = collections.defaultdict(float), collections.Counter()
  for event in json.loads(gzip.decompress(trace.read_bytes()))["traceEvents"]:
    if event.get("ph") == "X":
      totals[event["name"]] += event["dur"]
      counts[event["name"]] += 1
  ops = [(name, totals[name] / steps) for name, count in counts.items() if count == steps]
  return sorted(ops, key=lambda op: -op[1])


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--dataset", default="amusic")
  parser.add_argument("--steps", type=int, default=600)
  parser.add_argument("--layers", default="64,64,64")
  parser.add_argument("--first-layer", default="auto")
  parser.add_argument("--top", type=int, default=25, help="ops printed")
  parser.add_argument("--hlo", default=None, help="write the compiled program's text here")
  parser.add_argument("--root", default=None, help="data folder (else $DMF_DATA_DIR)")
  args = parser.parse_args(argv)

  config = config_for(args.dataset, tuple(int(w) for w in args.layers.split(",")), args.first_layer)
  interactions = datasets.load(args.dataset, args.root)
  train = datasets.split(interactions).train_matrix()
  trainer = training.Trainer(config, train.shape)
  data = training.build_data(config, train, interactions.max_rating, trainer.mesh)
  data = subset(data, args.steps * trainer.positives_per_batch, config.seed, trainer.mesh)
  state = trainer.init_state(jax.random.key(config.seed))
  keys = training.epoch_keys(config.seed, 1, True)
  program = trainer.train_epoch.lower(state, data, *keys).compile()
  if args.hlo:
    pathlib.Path(args.hlo).write_text(program.as_text())
  state, losses, _ = program(state, data, *keys)
  np.asarray(losses)

  with tempfile.TemporaryDirectory() as scratch:
    with jax.profiler.trace(scratch):
      began = time.perf_counter()
      state, losses, _ = program(state, data, *training.epoch_keys(config.seed, 2, True))
      np.asarray(losses)
      elapsed = time.perf_counter() - began
    ops = per_step_ops(pathlib.Path(scratch), args.steps)
  print(
    f"{args.dataset}, layers {args.layers}, first layer {data.user_rows.form}: "
    f"{1000 * elapsed / args.steps:.2f} ms/step under the profiler; "
    f"{len(ops)} ops a step, {sum(us for _, us in ops) / 1000:.2f} ms of them"
  )
  for name, us in ops[: args.top]:
    print(f"{us:9.1f} us  {name}")


if __name__ == "__main__":
  main()
