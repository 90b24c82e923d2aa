"""Every config field of dmf_jax, with its default.

Experiment configs import this file and override a few fields; any field can be set from the
command line, e.g. `--config.model.name=itemknn` or `--config.model.user_layers='(512,64)'`.
Nothing here depends on `model.name` or `data.name`: each model reads the fields it uses.
"""

from ml_collections import config_dict


def get_config(arg: str | None = None) -> config_dict.ConfigDict:
  del arg  # No variants yet.
  config = config_dict.ConfigDict()
  config.seed = 0  # Model seed: initialisation and negative sampling (not the split).

  config.data = config_dict.ConfigDict()
  config.data.name = "ml100k"  # ml100k | amusic
  config.data.root = config_dict.placeholder(str)  # Else $DMF_DATA_DIR, else ~/.cache/dmf_jax/data.
  config.data.implicit = False  # Y from Eq. 1 (ones) instead of Eq. 2 (ratings).
  config.data.split_seed = 0  # Drives held-out items and evaluation candidates.

  # ease_*, ials_* and eals_* were chosen on ML-100k validation NDCG@10; grids in configs/README.md.
  config.model = config_dict.ConfigDict()
  config.model.name = "itemknn"  # itempop | itemknn | ease | ials | eals
  config.model.knn_neighbours = 100  # ItemKNN: neighbours kept per item.
  config.model.ease_reg = 300.0  # EASE^R: lambda, L2 penalty on the item-item weights.
  config.model.als_factors = 64  # iALS, eALS: latent dimension d.
  config.model.als_epochs = 30  # iALS, eALS: sweeps (users, then items); validation picks one.
  config.model.ials_reg = 0.01  # iALS: lambda, scaled by (count + weight * other side)^exponent.
  config.model.ials_reg_exponent = 1.0  # iALS: nu of that frequency scaling (0: plain L2).
  config.model.ials_unobserved_weight = 0.3  # iALS: alpha_0, weight of every pair's squared score.
  config.model.eals_reg = 10.0  # eALS: lambda, L2 penalty on both factor matrices.
  config.model.eals_w0 = 256.0  # eALS: c_0, missing-data weight per user, split by popularity.
  config.model.eals_alpha = 0.5  # eALS: popularity exponent of that split (0: uniform).

  config.eval = config_dict.ConfigDict()
  config.eval.num_negatives = 100  # Sampled negatives per held-out item (paper: 100; NCF: 99).
  config.eval.ks = (10,)  # Cut-offs of HR@K and NDCG@K.
  config.eval.validation = "random"  # random | latest: how the validation item is chosen.
  config.eval.batch_size = 256  # Users scored per evaluation batch.
  return config
