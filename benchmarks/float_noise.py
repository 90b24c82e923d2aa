"""How far apart does float rounding alone carry two runs? Trains DMF-2-nce from its initial
parameters and from the same parameters moved by one ulp, epoch by epoch with the same keys, and
prints both runs' NDCG@10: the scale against which "equal within float noise" is judged (vmapped
seeds, other devices, other XLA versions).

  DMF_DATA_DIR=../shared/data python -m benchmarks.float_noise --dataset=ml100k --seeds=2 --epochs=3
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp

from benchmarks.ours import prepare
from dmf_jax import evaluation, training


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--dataset", default="ml100k")
  parser.add_argument("--seeds", type=int, default=2)
  parser.add_argument("--epochs", type=int, default=3)
  parser.add_argument("--layers", default="256,64")
  parser.add_argument("--root", default=None, help="data folder (else $DMF_DATA_DIR)")
  args = parser.parse_args()

  layers = tuple(int(width) for width in args.layers.split(","))
  prepared = prepare(args.dataset, layers=layers, root=args.root)
  trainer, data, config = prepared.trainer, prepared.data, prepared.config
  eval_sets = evaluation.eval_sets(
    prepared.split, prepared.train, config.eval.full_ranking_users, config.data.split_seed
  )

  def ndcg(params) -> dict[str, float]:
    score_all, score_candidates = training.scorers(trainer, params, data)
    return {
      name: evaluation.evaluate(
        score_all,
        eval_set,
        ks=(10,),
        batch_size=config.eval.batch_size,
        score_candidates=score_candidates,
      )[0]["ndcg@10"]
      for name, eval_set in eval_sets.items()
    }

  print(f"{args.dataset}, DMF layers {layers}, {jax.devices()[0].platform}")
  for seed in range(args.seeds):
    nudged = trainer.init_state(training.init_key(seed))
    nudged = nudged.replace(params=jax.tree.map(lambda w: jnp.nextafter(w, jnp.inf), nudged.params))
    state = trainer.init_state(training.init_key(seed))
    for epoch in range(1, args.epochs + 1):
      keys = training.epoch_keys(seed, epoch, True)
      state, _, _ = trainer.train_epoch(state, data, *keys)
      nudged, _, _ = trainer.train_epoch(nudged, data, *keys)
      exact, moved = ndcg(state.params), ndcg(nudged.params)
      print(
        f"seed {seed} epoch {epoch}: NDCG@10 validation {exact['valid']:.4f} vs {moved['valid']:.4f}"
        f" nudged, test {exact['test']:.4f} vs {moved['test']:.4f}: differs by at most "
        f"{max(abs(exact[k] - moved[k]) for k in exact):.4f}",
        flush=True,
      )


if __name__ == "__main__":
  main()
