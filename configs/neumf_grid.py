"""NeuMF-p's optimizer and learning rate over the chosen GMF and MLP, compared on validation
NDCG@10 (configs/README.md).

  python launch.py --config=configs/neumf_grid.py --config.sweep.num_seeds=1 --workdir=runs/neumf_grid

The gmf and mlp members (the defaults, chosen with configs/ncf_grid.py) come first: every neumf
member starts from them through the default `model.neumf_*_workdir`.
"""

from configs import default

get_config = default.get_config


def sweep(add):
  add(**{"model.name": "gmf"})
  add(**{"model.name": "mlp"})
  for lr in (1e-3, 1e-2, 1e-1):
    add(**{"model.name": "neumf", "model.neumf_optimizer": "sgd", "model.neumf_lr": lr})
  add(**{"model.name": "neumf", "model.neumf_optimizer": "adam", "model.neumf_lr": 1e-4})
