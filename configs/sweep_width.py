"""The first width of a two-layer DMF-nce (the paper gives none): 128, 256 or 512, then 64 factors.
Judged on validation NDCG@10 over 3 seeds, for the default in `configs/default.py` (256): the
widths tie there (configs/README.md has the numbers), so the default stays.

  python launch.py --config=configs/sweep_width.py --workdir=runs/sweep_width_ml100k
"""

from configs import default

get_config = default.get_config


def sweep(add):
  for first in (128, 256, 512):
    widths = (first, 64)
    add(**{"model.user_layers": widths, "model.item_layers": widths})
