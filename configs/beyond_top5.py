"""Beyond the paper: the five recipes best on validation NDCG@10 in `configs/beyond.py`'s search
(the mean over its seeds) on each data set, trained again with 3 seeds; then LFM (learnt user and
item vectors in place of the rows and columns of Y) with each recipe, as a control for whether the
rows of Y or the loss carry the gain.

  python launch.py --config=configs/beyond_top5.py --workdir=runs/beyond_top5_ml100k
  python launch.py --config=configs/beyond_top5.py --workdir=runs/beyond_top5_amusic --config.data.name=amusic

The five are read from the search's committed records, `results/beyond_<data set>/summary.json`
(`python -m dmf_jax.report --collect` writes them), ranked by validation NDCG@10 alone: test is
not read to choose them. The search must be complete there.
"""

import json
import pathlib

from configs import beyond
from dmf_jax import sweep as sweeps
from dmf_jax.errors import ConfigError

get_config = beyond.get_config
RECORDS = pathlib.Path(__file__).resolve().parents[1] / "results"


def top5(dataset: str) -> list[dict]:
  """The search's five members best on validation NDCG@10 (ties in the search's order), with
  their overrides as `configs/beyond.py` gives them."""
  summary = RECORDS / f"beyond_{dataset}" / "summary.json"
  if not summary.is_file():
    raise ConfigError(f"{summary}: no search records; run configs/beyond.py on {dataset} first")
  scores = {row["member"]: row["valid_ndcg@10"] for row in json.loads(summary.read_text())}
  searched = sweeps.collect(beyond.sweep)
  missing = [m for m in map(sweeps.member_name, searched) if m not in scores]
  if missing:
    raise ConfigError(
      f"{summary}: the search is not complete ({len(missing)} of {len(searched)} members "
      f"missing, e.g. {missing[0]}); finish configs/beyond.py and collect its records first"
    )
  ranked = sorted(range(len(searched)), key=lambda i: -scores[sweeps.member_name(searched[i])])
  return [searched[i] for i in ranked[:5]]


def sweep(add, config):
  recipes = top5(config.data.name)
  for recipe in recipes:
    add(**recipe)
  for recipe in recipes:
    add(**{"model.name": "lfm", **recipe})
