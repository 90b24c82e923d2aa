"""Where a training step's time goes: a `jax.profiler` trace of one epoch chunk, per-op totals.

  DMF_DATA_DIR=../shared/data python -m benchmarks.profile_step --dataset=amusic --steps=600

Compiles the epoch program over `--steps` steps of randomly drawn positives, runs it once to warm
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

from benchmarks.ours import prepare
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
  parser.add_argument("--optimizer", default="adam", help="train.optimizer")
  parser.add_argument(
    "--no-split", action="store_true", help="train on every rating (skips a large set's split)"
  )
  parser.add_argument("--top", type=int, default=25, help="ops printed")
  parser.add_argument("--hlo", default=None, help="write the compiled program's text here")
  parser.add_argument("--root", default=None, help="data folder (else $DMF_DATA_DIR)")
  args = parser.parse_args(argv)

  prepared = prepare(
    args.dataset,
    layers=tuple(int(w) for w in args.layers.split(",")),
    first_layer=args.first_layer,
    max_steps=args.steps,
    evaluate=not args.no_split,
    root=args.root,
    optimizer=args.optimizer,
  )
  config, trainer, data, steps = prepared.config, prepared.trainer, prepared.data, prepared.steps
  state = trainer.init_state(training.init_key(config.seed))
  keys = training.epoch_keys(config.seed, 1, True)
  program = trainer.whole_epoch.lower(state, data, *keys).compile()
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
    ops = per_step_ops(pathlib.Path(scratch), steps)
  print(
    f"{args.dataset}, layers {args.layers}, first layer {data.user_rows.form}: "
    f"{1000 * elapsed / steps:.2f} ms/step under the profiler; "
    f"{len(ops)} ops a step, {sum(us for _, us in ops) / 1000:.2f} ms of them"
  )
  for name, us in ops[: args.top]:
    print(f"{us:9.1f} us  {name}")


if __name__ == "__main__":
  main()
