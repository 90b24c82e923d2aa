"""Beyond the paper: can DMF's towers over the rows and columns of Y, scored by cosine, beat the
tuned baselines with another loss and its few hyper-parameters? Every choice is made on
validation NDCG@10 (the sweep's 'val' column); test is read only for the recipe chosen.

Starts from the best paper-recipe DMF (DMF-1-nce of Table 3, towers (64,)) and tries the levers
later work found to matter for cosine-scored two-tower models: the loss (sampled softmax over the
positive and its negatives at a temperature, Wu et al.; SimpleX's cosine contrastive loss, Mao et
al., CIKM 2021), in-batch negatives, more negatives per positive, the learning rate, Y's ratings or
ones as input, L2, and the towers' depth and widths, 3 seeds each; the five best on validation
(the mean over the seeds) are then set against LFM with the same recipes. Not tried: dropout in the towers, and normalising the
rows of Y, which cannot change a one-layer tower (its cosine and gradient are invariant to a
per-row scale of its input).

  python launch.py --config=configs/beyond.py --workdir=runs/beyond_ml100k
"""

from configs import default

ONE_LAYER = {"model.user_layers": (64,), "model.item_layers": (64,)}


def get_config(arg=None):
  config = default.get_config(arg)
  config.model.user_layers = config.model.item_layers = (64,)
  config.train.lr = 1e-3
  return config


def _negatives(ratio: int) -> dict:
  """`ratio` negatives per positive, 32 positives a batch (as the paper's 256 with 7)."""
  return {"train.neg_ratio": ratio, "train.batch_size": 32 * (1 + ratio)}


def sweep(add):
  # The losses, at DMF-1, lr 1e-3, 7 negatives.
  add(**{"model.loss": "nce", "train.lr": 1e-4})  # Table 3's DMF-1-nce
  add(**{"model.loss": "nce"})
  for temperature in (0.05, 0.1, 0.15, 0.2, 0.3, 0.5):
    add(**{"model.loss": "softmax", "model.temperature": temperature})
  for margin, weight in ((0.2, 4.0), (0.4, 4.0), (0.4, 8.0), (0.6, 8.0), (0.8, 8.0), (0.4, 16.0)):
    add(**{"model.loss": "ccl", "model.ccl_margin": margin, "model.ccl_weight": weight})
  # More (or fewer) negatives per positive.
  for temperature in (0.1, 0.2):
    for ratio in (3, 15, 31):
      add(**{"model.loss": "softmax", "model.temperature": temperature, **_negatives(ratio)})
  for ratio in (15, 31):
    add(**{"model.loss": "ccl", **_negatives(ratio)})
    add(**{"model.loss": "nce", **_negatives(ratio)})
  # The learning rate, the input, L2.
  for lr in (3e-4, 3e-3):
    add(**{"model.loss": "softmax", "train.lr": lr})
  add(**{"model.loss": "softmax", "data.implicit": True})
  add(**{"model.loss": "ccl", "data.implicit": True})
  add(**{"model.loss": "nce", "data.implicit": True})
  for l2 in (1e-6, 1e-5):
    add(**{"model.loss": "softmax", "model.l2": l2})
  # Depth and widths.
  for layers in ((128,), (256,), (256, 64), (512, 128), (128, 64, 64)):
    widths = {"model.user_layers": layers, "model.item_layers": layers}
    add(**{"model.loss": "softmax", **widths})
  for layers in ((128,), (256, 64)):
    widths = {"model.user_layers": layers, "model.item_layers": layers}
    add(**{"model.loss": "ccl", **widths})
  # In-batch negatives: each positive against every other item of its batch too.
  for temperature in (0.1, 0.2):
    add(
      **{
        "model.loss": "softmax",
        "model.temperature": temperature,
        "model.in_batch_negatives": True,
      }
    )
  add(**{"model.loss": "softmax", "model.in_batch_negatives": True, **_negatives(3)})
  # Softmax with the levers most likely to add up.
  add(
    **{"model.loss": "softmax", "model.temperature": 0.1, "data.implicit": True, **_negatives(15)}
  )
  add(
    **{"model.loss": "softmax", "model.temperature": 0.2, "data.implicit": True, **_negatives(15)}
  )
  add(
    **{
      "model.loss": "softmax",
      "model.temperature": 0.1,
      "model.user_layers": (128,),
      "model.item_layers": (128,),
      **_negatives(15),
    }
  )
