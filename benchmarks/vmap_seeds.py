"""Would training a sweep's seeds together in one vmapped program pay? Times one epoch of K seeds
run one by one against the same K epochs vmapped over the seeds in one compiled program.

  DMF_DATA_DIR=../shared/data python -m benchmarks.vmap_seeds --dataset=ml100k --seeds=3

Both programs do the same work (checked: the first steps' losses agree); compile time is apart.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.ours import prepare
from dmf_jax import training


def _stack(trees):
  return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--dataset", default="ml100k")
  parser.add_argument("--seeds", type=int, default=3)
  parser.add_argument("--layers", default="256,64")
  parser.add_argument("--rounds", type=int, default=2)
  parser.add_argument("--root", default=None, help="data folder (else $DMF_DATA_DIR)")
  args = parser.parse_args()

  layers = tuple(int(width) for width in args.layers.split(","))
  prepared = prepare(args.dataset, layers=layers, root=args.root)
  trainer, data = prepared.trainer, prepared.data
  seeds = range(args.seeds)
  states = [trainer.init_state(training.init_key(seed)) for seed in seeds]
  keys = [training.epoch_keys(seed, 1, True) for seed in seeds]
  stacked_keys = [jnp.stack([k[i] for k in keys]) for i in range(2)]

  began = time.perf_counter()
  one = trainer.whole_epoch.lower(states[0], data, *keys[0]).compile()
  compile_one = time.perf_counter() - began
  together = jax.jit(jax.vmap(trainer.epoch_fn, in_axes=(0, None, 0, 0)))
  began = time.perf_counter()
  many = together.lower(_stack(states), data, *stacked_keys).compile()
  compile_many = time.perf_counter() - began
  print(f"{args.dataset}, layers {layers}, {args.seeds} seeds, {jax.devices()[0].platform}")
  print(f"compile: one seed {compile_one:.1f} s, {args.seeds} vmapped {compile_many:.1f} s")

  for round_ in range(1, args.rounds + 1):
    copies = [jax.tree.map(jnp.copy, state) for state in states]  # `one` donates its state
    began = time.perf_counter()
    alone = [one(copy, data, *key) for copy, key in zip(copies, keys, strict=True)]
    jax.block_until_ready(alone)
    seconds_alone = time.perf_counter() - began
    began = time.perf_counter()
    _, losses_KxS, _ = jax.block_until_ready(many(_stack(states), data, *stacked_keys))
    seconds_many = time.perf_counter() - began
    first_steps = np.abs(np.asarray(losses_KxS)[:, :10] - np.stack([a[1][:10] for a in alone]))
    print(
      f"round {round_}: one by one {seconds_alone:.1f} s, vmapped {seconds_many:.1f} s, "
      f"speed-up {seconds_alone / seconds_many:.2f}x (first 10 steps' losses differ by at most "
      f"{first_steps.max():.1e})"
    )


if __name__ == "__main__":
  main()
