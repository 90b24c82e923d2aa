"""Exact Adam against lazy_adam (not in the paper): DMF-2-nce's quality with each optimizer.

`lazy_adam` updates a user- or item-indexed weight (a first layer) at the rows a batch reads only,
with their moments; a weight whose typical batch reads more than `train.lazy_max_read_share` of
its rows keeps exact Adam, which on ML-100k is every first layer. The third member makes every first
layer lazy, to measure what the laziness itself costs. Chosen on validation like every run.

  python launch.py --config=configs/optimizers.py --workdir=runs/optimizers_ml100k
"""

from configs import default


def get_config(arg=None):
  del arg
  return default.get_config()


def sweep(add):
  add(**{"train.optimizer": "adam"})
  add(**{"train.optimizer": "lazy_adam"})
  add(**{"train.optimizer": "lazy_adam", "train.lazy_max_read_share": 1e9})
