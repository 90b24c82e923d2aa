"""Table 4: DMF-2-nce with 1, 2, 5, 9 and 10 negatives per positive.

python launch.py --config=configs/sweep_neg.py --workdir=runs/sweep_neg [--config.data.name=amusic]
"""

from configs import default
from dmf_jax import paper

get_config = default.get_config
REFERENCE = {"source": "Xue et al. 2017, Table 4", "values": paper.TABLE4}


def sweep(add):
  for ratio in (1, 2, 5, 9, 10):
    add(**{"train.neg_ratio": ratio})
