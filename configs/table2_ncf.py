"""Table 2's NeuMF-p row with the GMF and MLP runs it is pretrained from (ML-100k by default).

NeuMF-p starts from the same seed's gmf and mlp members of this sweep (the default
`model.neumf_gmf_workdir` and `model.neumf_mlp_workdir`), so they are added before it.

  python launch.py --config=configs/table2_ncf.py --workdir=runs/table2_ncf_ml100k
"""

from configs import default

get_config = default.get_config


def sweep(add):
  for name in ("gmf", "mlp", "neumf"):
    add(**{"model.name": name})
