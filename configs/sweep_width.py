"""The first width of a two-layer DMF-nce (the paper gives none): 128, 256 or 512, then 64 factors.
The default (`configs/default.py`) is the one with the best validation NDCG@10 here.

  python launch.py --config=configs/sweep_width.py --workdir=runs/sweep_width_ml100k
"""

from configs import default

get_config = default.get_config


def sweep(add):
  for first in (128, 256, 512):
    widths = (first, 64)
    add(**{"model.user_layers": widths, "model.item_layers": widths})
