"""RecBole 1.2.1's DMF on the same training data, batch, negatives and widths as ours.

Install (not needed by CI): `pip install torch==2.13.0` (the CPU build), then
`pip install recbole==1.2.1 --no-deps colorlog colorama texttable tabulate pyyaml tensorboard
scikit-learn` (RecBole's own pins would move torch and pull ray, which its DMF never uses).

Our split's training ratings become RecBole's `.train.inter` atomic file and the held-out items
its `.valid.inter` and `.test.inter`, so both train on the same rows. RecBole's DMF with
`user_embedding_size=64` and `user_hidden_size_list=[64, 64]` is a 64-wide linear first layer then
two 64-wide ReLU layers, as ours with `model.user_layers=(64, 64, 64)`; it scores with a dot
product instead of the cosine. `train_batch_size=256` with 7 uniform negatives gives 32 positives
and their 224 negatives per batch, as ours. `inter_matrix_type=rating` feeds it Y of ratings and
the target rating / max(R), as our default `nce` loss. Training time is RecBole's own
`Trainer._train_epoch` (its negative sampling included, its evaluation excluded); evaluation time is
one `Trainer.evaluate` of the validation users by full ranking.
"""

from __future__ import annotations

import itertools
import os
import pathlib
import tempfile
import time

import numpy as np

from benchmarks import datasets

# torch >= 2.6 refuses RecBole's pickled checkpoints by default; it must be set before torch loads.
os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")


def _write_atomic_files(folder: pathlib.Path, name: str, split) -> None:
  folder.mkdir(parents=True)
  header = "user_id:token\titem_id:token\trating:float\n"
  rows = {
    "train": (split.train_users, split.train_items, split.train_ratings),
    # The held-out items' ratings do not matter to full-ranking evaluation.
    "valid": (split.eval_users, split.valid_items, np.ones(len(split.eval_users))),
    "test": (split.eval_users, split.test_items, np.ones(len(split.eval_users))),
  }
  for part, (users, items, ratings) in rows.items():
    lines = [header] + [f"{u}\t{i}\t{r:g}\n" for u, i, r in zip(users, items, ratings, strict=True)]
    (folder / f"{name}.{part}.inter").write_text("".join(lines))


class _FirstBatches:
  """A RecBole data loader cut to its first `count` batches (a chunk of an epoch)."""

  def __init__(self, loader, count: int):
    self.loader, self.count = loader, count

  def __iter__(self):
    return itertools.islice(iter(self.loader), self.count)

  def __len__(self):
    return min(self.count, len(self.loader))


def _numpy2_aliases() -> None:
  """The aliases RecBole 1.2.1's `Config.compatibility_settings` reads, all removed in NumPy 2."""
  for old, new in (("float_", np.float64), ("complex_", np.complex128), ("unicode_", np.str_)):
    if not hasattr(np, old):
      setattr(np, old, new)


def measure(
  name: str,
  *,
  epochs: int,
  max_steps: int | None,
  width: int = 64,
  threads: int | None = None,
  root: str | None = None,
) -> dict:
  _numpy2_aliases()
  import torch

  if threads:
    torch.set_num_threads(threads)
  from recbole.config import Config
  from recbole.data import create_dataset, data_preparation
  from recbole.model.general_recommender import DMF
  from recbole.trainer import Trainer

  split = datasets.split(datasets.load(name, root))
  with tempfile.TemporaryDirectory(prefix="recbole-") as scratch:
    scratch = pathlib.Path(scratch)
    _write_atomic_files(scratch / "data" / name, name, split)
    os.chdir(scratch)  # RecBole writes its log/ and log_tensorboard/ folders here.
    config = Config(
      model="DMF",
      dataset=name,
      config_dict={
        "data_path": str(scratch / "data"),
        "checkpoint_dir": str(scratch / "saved"),
        "benchmark_filename": ["train", "valid", "test"],
        "load_col": {"inter": ["user_id", "item_id", "rating"]},
        "RATING_FIELD": "rating",
        "unused_col": None,
        "inter_matrix_type": "rating",
        "user_embedding_size": width,
        "item_embedding_size": width,
        "user_hidden_size_list": [width, width],
        "item_hidden_size_list": [width, width],
        "train_batch_size": 256,
        "train_neg_sample_args": {
          "distribution": "uniform",
          "sample_num": 7,
          "alpha": 1.0,
          "dynamic": False,
          "candidate_num": 0,
        },
        "learning_rate": 1e-4,
        "eval_args": {"group_by": "user", "order": "RO", "mode": "full"},
        "metrics": ["Hit", "NDCG"],
        "topk": [10],
        "valid_metric": "NDCG@10",
        "eval_batch_size": 4096,
        "use_gpu": False,
        "device": "cpu",
        "show_progress": False,
        "state": "WARNING",
      },
    )
    dataset = create_dataset(config)
    train_data, valid_data, _ = data_preparation(config, dataset)
    model = DMF(config, train_data._dataset).to(config["device"])
    trainer = Trainer(config, model)
    full_steps = len(train_data)
    steps = full_steps if not max_steps else min(max_steps, full_steps)
    loader = train_data if steps == full_steps else _FirstBatches(train_data, steps)

    epoch_seconds, losses = [], []
    for epoch in range(epochs):
      began = time.perf_counter()
      loss = trainer._train_epoch(loader, epoch)
      epoch_seconds.append((time.perf_counter() - began) * full_steps / steps)
      losses.append(loss / steps)
    began = time.perf_counter()
    trainer.evaluate(valid_data, load_best_model=False)
    eval_seconds = time.perf_counter() - began
    instances = len(train_data.dataset) * (1 + 7)

  import recbole

  return {
    "system": f"RecBole {recbole.__version__} DMF",
    "layers": [width, width, width],
    "first_layer": "dense, filled per batch",
    "instances_per_epoch": instances,
    "steps_timed": steps,
    "steps_per_epoch": full_steps,
    "epoch_s": epoch_seconds,
    "instances_per_s": [instances / s for s in epoch_seconds],
    "loss": losses,
    "eval_s": eval_seconds,
    "eval_users": len(split.eval_users),
    "torch": torch.__version__,
    "torch_threads": torch.get_num_threads(),
  }
