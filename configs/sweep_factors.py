"""Table 5: a two-layer DMF-nce whose final layer has 8, 16, 32, 64 or 128 factors.

python launch.py --config=configs/sweep_factors.py --workdir=runs/sweep_factors
"""

from configs import default
from dmf_jax import paper

get_config = default.get_config
REFERENCE = {"source": "Xue et al. 2017, Table 5", "values": paper.TABLE5}


def sweep(add):
  for factors in (8, 16, 32, 64, 128):
    widths = (256, factors)
    add(**{"model.user_layers": widths, "model.item_layers": widths})
