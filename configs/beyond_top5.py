"""Beyond the paper: the five recipes best on validation NDCG@10 in `configs/beyond.py`'s search
(1 seed each) on each data set, retrained with 3 seeds; then LFM (learnt user and item vectors in
place of the rows and columns of Y) with each recipe, as a control for whether the rows of Y or the
loss carry the gain.

  python launch.py --config=configs/beyond_top5.py --workdir=runs/beyond_top5_ml100k
  python launch.py --config=configs/beyond_top5.py --workdir=runs/beyond_top5_amusic --config.data.name=amusic

The lists below are the searches' five best on validation (`runs/beyond_<data set>/summary.md`,
column 'val NDCG@10'), in the search's order; test was not read to choose them.
"""

from configs import beyond

get_config = beyond.get_config

TOP5 = {
  "ml100k": [  # validation NDCG@10 0.5798, 0.5760, 0.5726, 0.5725, 0.5714
    {"model.loss": "softmax", "model.temperature": 0.2, "model.in_batch_negatives": True},
    {
      "model.loss": "softmax",
      "model.temperature": 0.2,
      "data.implicit": True,
      "train.neg_ratio": 15,
      "train.batch_size": 512,
    },
    {
      "model.loss": "softmax",
      "model.temperature": 0.2,
      "train.neg_ratio": 31,
      "train.batch_size": 1024,
    },
    {
      "model.loss": "softmax",
      "model.temperature": 0.2,
      "train.neg_ratio": 15,
      "train.batch_size": 512,
    },
    {"model.loss": "softmax", "data.implicit": True},
  ],
  "amusic": [  # validation NDCG@10 0.5583, 0.5560, 0.5545, 0.5520, 0.5505 (34 of 44 searched)
    {"model.loss": "ccl", "model.ccl_margin": 0.8, "model.ccl_weight": 8.0},
    {"model.loss": "ccl", "model.ccl_margin": 0.6, "model.ccl_weight": 8.0},
    {"model.loss": "ccl", "train.neg_ratio": 15, "train.batch_size": 512},
    {"model.loss": "ccl", "train.neg_ratio": 31, "train.batch_size": 1024},
    {"model.loss": "ccl", "data.implicit": True},
  ],
}


def sweep(add, config):
  for recipe in TOP5[config.data.name]:
    add(**recipe)
  for recipe in TOP5[config.data.name]:
    add(**{"model.name": "lfm", **recipe})
