"""DMF's best recipe found beyond the paper: of `configs/beyond_top5.py`'s five recipes per data
set (3 seeds each), the DMF one best on validation NDCG@10, chosen on validation alone. The towers
stay DMF's (rows and columns of Y, one layer of 64, cosine); the loss and its negatives change.

  python launch.py --config=configs/dmf_best.py --workdir=runs/dmf_best_ml100k
  python launch.py --config=configs/dmf_best.py --workdir=runs/dmf_best_amusic --config.data.name=amusic

ML-100k: sampled softmax over the cosines at temperature 0.2, with the batch's other items as
negatives beside the 7 sampled ones. Amazon Music: SimpleX's cosine contrastive loss, margin 0.8,
negatives weighted 8. A one-member sweep, so that `--config.data.name` picks the recipe.
"""

from configs import beyond
from dmf_jax.errors import ConfigError

get_config = beyond.get_config

RECIPES = {
  "ml100k": {"model.loss": "softmax", "model.temperature": 0.2, "model.in_batch_negatives": True},
  "amusic": {"model.loss": "ccl", "model.ccl_margin": 0.8, "model.ccl_weight": 8.0},
}


def sweep(add, config):
  if config.data.name not in RECIPES:
    raise ConfigError(
      f"data.name={config.data.name}: configs/dmf_best.py has recipes for {', '.join(RECIPES)} "
      "only; search one with configs/beyond.py and configs/beyond_top5.py"
    )
  add(**RECIPES[config.data.name])
