"""A quick DMF-nce run for demos and smoke tests (the notebooks' small mode): one layer of 64
factors per tower and 2 epochs; everything else as `configs/default.py`.

  python launch.py --config=configs/quick.py --workdir=runs/quick
"""

from configs import default


def get_config():
  config = default.get_config()
  config.model.user_layers = (64,)
  config.model.item_layers = (64,)
  config.train.epochs = 2
  return config
