"""The GMF and MLP grids behind the NCF defaults, compared on validation NDCG@10 (configs/README.md).

  python launch.py --config=configs/ncf_grid.py --config.sweep.num_seeds=1 --workdir=runs/ncf_grid

NeuMF-p's own grid, over the chosen GMF and MLP, is configs/neumf_grid.py.
"""

from configs import default

get_config = default.get_config


def sweep(add):
  for factors in (8, 16, 32):
    for lr in (1e-3, 5e-4):
      add(**{"model.name": "gmf", "model.ncf_factors": factors, "model.ncf_lr": lr})
  for layers in ((64, 32, 16, 8), (128, 64, 32, 16)):
    for lr in (1e-3, 5e-4):
      add(**{"model.name": "mlp", "model.ncf_mlp_layers": layers, "model.ncf_lr": lr})
