"""Table 2: every model on one data set (ML-100k by default; `--config.data.name=amusic`), with
the baselines later studies found stronger (EASE^R, iALS).

NeuMF-p starts from the same seed's gmf and mlp members of this sweep (the default
`model.neumf_gmf_workdir` and `model.neumf_mlp_workdir`), so they are added before it.

  python launch.py --config=configs/table2.py --workdir=runs/table2_ml100k
"""

from configs import default

get_config = default.get_config


def sweep(add):
  add(**{"model.name": "itempop"})
  add(**{"model.name": "itemknn"})
  add(**{"model.name": "eals"})
  add(**{"model.name": "ease"})
  add(**{"model.name": "ials"})
  add(**{"model.name": "gmf"})
  add(**{"model.name": "mlp"})
  add(**{"model.name": "neumf"})
  add(**{"model.name": "dmf", "model.loss": "ce"})
  add(**{"model.name": "dmf", "model.loss": "nce"})
