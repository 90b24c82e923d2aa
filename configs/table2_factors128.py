"""Table 2's DMF rows with 128 final factors (the paper found 128 best on Amazon Music), ce and
nce, Amazon Music by default. The 64-factor rows are `configs/table2.py`'s on the same data.

  python launch.py --config=configs/table2_factors128.py --workdir=runs/table2_factors128_amusic
"""

from configs import default


def get_config():
  config = default.get_config()
  config.data.name = "amusic"
  return config


def sweep(add):
  for loss in ("nce", "ce"):
    add(**{"model.loss": loss, "model.user_layers": (256, 128), "model.item_layers": (256, 128)})
