"""The DMF rows of Table 2 on Amazon Music with 128 final factors (the paper found 128 best there),
each with ce and nce. The 64-factor rows are `configs/table2.py`'s on `data.name=amusic` (same config).

  python launch.py --config=configs/amusic_dmf.py --workdir=runs/amusic_dmf
"""

from configs import default


def get_config():
  config = default.get_config()
  config.data.name = "amusic"
  return config


def sweep(add):
  for loss in ("nce", "ce"):
    add(**{"model.loss": loss, "model.user_layers": (256, 128), "model.item_layers": (256, 128)})
