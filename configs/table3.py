"""Table 3: LFM-nce (learnt input vectors) against DMF-1-nce (rows of Y as input), both one layer
of 64 factors.

  python launch.py --config=configs/table3.py --workdir=runs/table3
"""

from configs import default

get_config = default.get_config


def sweep(add):
  for name in ("lfm", "dmf"):
    add(**{"model.name": name, "model.user_layers": (64,), "model.item_layers": (64,)})
