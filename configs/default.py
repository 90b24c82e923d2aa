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
  config.data.name = "ml100k"  # ml100k | ml1m | amusic | amazon_csv | csv
  config.data.root = config_dict.placeholder(str)  # Else $DMF_DATA_DIR, else ~/.cache/dmf_jax/data.
  config.data.path = config_dict.placeholder(str)  # csv, amazon_csv: the ratings file.
  config.data.sep = ","  # csv: field separator, or one of the words tab, space, semicolon.
  config.data.header = True  # csv: the first line names the columns.
  config.data.user_col = "user"  # csv: a column name, or a 0-based position with header=False.
  config.data.item_col = "item"  # csv: likewise.
  config.data.rating_col = "rating"  # csv: likewise; "" for none (every interaction counts as 1).
  config.data.time_col = "timestamp"  # csv: likewise; "" for none (held-out items drawn at random).
  config.data.min_user_ratings = 20  # amazon_csv: users keep at least this many ratings (paper).
  config.data.min_item_ratings = 5  # amazon_csv: items keep at least this many ratings (paper).
  config.data.download_url = config_dict.placeholder(str)  # ml100k, ml1m: else GroupLens's zip.
  config.data.download_sha256 = config_dict.placeholder(str)  # Of the ratings file; else recorded.
  config.data.filter = ""  # "" | tois2021: items >= 5 then users >= 20, one pass each (TOIS 2021).
  config.data.implicit = False  # Y from Eq. 1 (ones) instead of Eq. 2 (ratings).
  config.data.split_seed = 0  # Drives held-out items and evaluation candidates.

  # ease_*, ials_* and eals_* were chosen on ML-100k validation NDCG@10; grids in configs/README.md.
  config.model = config_dict.ConfigDict()
  # model.name: dmf | lfm | itempop | itemknn | ease | ials | eals | gmf | mlp | neumf
  config.model.name = "dmf"
  # DMF user tower widths; the last is the latent size. First widths 128, 256 and 512 tie on
  # validation (configs/README.md).
  config.model.user_layers = (256, 64)
  config.model.item_layers = (256, 64)  # DMF item tower widths; the last is the latent size.
  # nce (Eq. 12, target Y_ij / max R) | ce (Eq. 11, target 1); beyond the paper: softmax (sampled
  # softmax over a positive and its negatives) | ccl (SimpleX's cosine contrastive loss). `losses`.
  config.model.loss = "nce"
  config.model.temperature = 0.2  # softmax: cosines are divided by it.
  config.model.ccl_margin = 0.4  # ccl: negatives' cosines above it are penalised.
  config.model.ccl_weight = 8.0  # ccl: the negatives' term's weight.
  # softmax: each positive also against every other item of its batch (in-batch negatives).
  config.model.in_batch_negatives = False
  config.model.first_layer = "auto"  # auto | dense | padded | segment: how rows of Y are read.
  config.model.l2 = 0.0  # L2 penalty on weights (biases excluded), added to the mean loss.
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
  # The NCF models (He et al., WWW 2017) train with train.epochs, batch_size, neg_ratio and
  # patience, but their own learning rates. Values chosen on ML-100k validation NDCG@10; grid in
  # configs/README.md.
  config.model.ncf_factors = 16  # GMF, NeuMF: size of p_u * q_i.
  config.model.ncf_mlp_layers = (128, 64, 32, 16)  # MLP, NeuMF: [p, q]'s width, then ReLU layers.
  config.model.ncf_lr = 1e-3  # GMF, MLP, NeuMF without pretraining: Adam learning rate.
  # NeuMF-p: the GMF and MLP runs to start from (their best checkpoints). {workdir} is this run's
  # workdir and {seed} its model seed, so the defaults name the same seed's gmf and mlp members of
  # the sweep this run belongs to (configs/table2.py). Both "": NeuMF without pretraining.
  config.model.neumf_gmf_workdir = "{workdir}/../../name=gmf/seed{seed}"
  config.model.neumf_mlp_workdir = "{workdir}/../../name=mlp/seed{seed}"
  config.model.neumf_alpha = 0.5  # NeuMF-p: GMF's share of the output layer h (paper: 0.5).
  config.model.neumf_optimizer = "sgd"  # NeuMF-p: sgd (the paper's vanilla SGD) | adam.
  config.model.neumf_lr = 1e-3  # NeuMF-p: its optimizer's learning rate.

  config.train = config_dict.ConfigDict()
  config.train.epochs = 20  # Passes over the training positives (ML-100k has converged by then).
  config.train.batch_size = 256  # Instances per step (positives with their negatives).
  config.train.lr = 1e-4  # DMF, LFM: Adam learning rate (paper: 1e-4); NCF: model.ncf_lr.
  # adam: exact Adam (the paper's). lazy_adam: user- and item-indexed weights (DMF's first layers,
  # LFM's and NCF's embeddings) updated at the rows a batch reads only, with their moments.
  config.train.optimizer = "adam"
  # lazy_adam: a weight whose typical batch reads more than this share of its rows takes exact Adam
  # (finding the rows costs more than updating them all); above 1, every such weight is lazy.
  config.train.lazy_max_read_share = 0.5
  config.train.neg_ratio = 7  # Sampled negatives per positive (paper's implementation: 7).
  config.train.resample_negatives = True  # False: Algorithm 1's one sample for all epochs.
  config.train.patience = config_dict.placeholder(int)  # Stop after this many epochs without gain.
  # Steps per compiled chunk of an epoch: progress is reported once per chunk (results do not
  # depend on it; test_training checks the parameters against an unchunked epoch).
  config.train.chunk_steps = 256

  config.eval = config_dict.ConfigDict()
  config.eval.num_negatives = 100  # Sampled negatives per held-out item (paper: 100; NCF: 99).
  config.eval.ks = (10,)  # Cut-offs of HR@K and NDCG@K.
  config.eval.validation = "random"  # random | latest: how the validation item is chosen.
  config.eval.select = "ndcg@10"  # Validation metric that picks the reported epoch.
  config.eval.batch_size = 256  # Users scored per evaluation batch.
  # Users ranked against the whole catalogue (full_* metrics): all evaluated users, or this many
  # drawn with data.split_seed when there are more (each costs a product with every item).
  config.eval.full_ranking_users = 10_000

  # The device mesh (docs/SCALE.md); results depend on it only through float rounding.
  config.mesh = config_dict.ConfigDict()
  config.mesh.data = config_dict.placeholder(int)  # Devices per batch; else all / mesh.model.
  config.mesh.model = 1  # Devices that split user- and item-indexed weights by rows.

  config.sweep = config_dict.ConfigDict()
  config.sweep.num_seeds = 3  # Model seeds per sweep member (seed, seed + 1, ...), one split.
  # A member's seeds trained as one vmapped program (DMF, LFM, NCF) on one device; None: on a GPU
  # or TPU with train.optimizer=adam, where it pays (benchmarks/vmap_seeds.py), not on CPU cores,
  # where it does not, nor with lazy_adam (its per-batch buffer size becomes every size, vmapped).
  config.sweep.vmap_seeds = config_dict.placeholder(bool)
  return config
