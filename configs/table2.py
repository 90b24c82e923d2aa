"""Table 2: every model on one data set (ML-100k by default; `--config.data.name=amusic`), with
the baselines later studies found stronger (EASE^R, iALS).

NeuMF-p and its pretraining come from `configs/table2_ncf.py`.

  python launch.py --config=configs/table2.py --workdir=runs/table2_ml100k
"""

from configs import default, table2_ncf

get_config = default.get_config


def sweep(add):
  add(**{"model.name": "itempop"})
  add(**{"model.name": "itemknn"})
  add(**{"model.name": "eals"})
  add(**{"model.name": "ease"})
  add(**{"model.name": "ials"})
  table2_ncf.sweep(add)
  add(**{"model.name": "dmf", "model.loss": "ce"})
  add(**{"model.name": "dmf", "model.loss": "nce"})
