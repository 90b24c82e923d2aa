"""The DMF rows of Table 2 on Amazon Music with 64 and 128 final factors (the paper found 128 best
there), each with ce and nce.

  python launch.py --config=configs/amusic_dmf.py --workdir=runs/amusic_dmf
"""

from configs import default


def get_config():
  config = default.get_config()
  config.data.name = "amusic"
  return config


def sweep(add):
  for factors in (64, 128):
    for loss in ("nce", "ce"):
      widths = (256, factors)
      add(**{"model.loss": loss, "model.user_layers": widths, "model.item_layers": widths})
