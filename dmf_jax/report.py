"""Generates docs/REPRODUCTION.md from the committed run records: our numbers beside the paper's.

  python -m dmf_jax.report                                            # results/ -> the report
  python -m dmf_jax.report --collect --runs=runs --records=results   # sweep folders -> records
  python -m dmf_jax.report --commands                                 # every sweep's command
  python -m dmf_jax.report --commands --pending=runs                  # those not finished there

Each experiment is read from `<records>/<experiment>_<dataset>/`: the compact records of the sweep
folders the commands in the report write (`--collect` copies every finished run's config,
results, per-epoch metrics and compressed per-user ranks, and each sweep's record and summary,
without checkpoints, splits or plots, which the report draws again; `--records=runs` reads the
sweep folders themselves). Nothing is typed by hand: a missing folder is listed with the command
that makes it. The text depends on the records alone (its date is the latest run's finish), so
the same records give the same report byte for byte. Differences between two models
on one split come with a paired bootstrap interval over users, from the per-user ranks every run
saves.
"""

from __future__ import annotations

import argparse
import collections
import filecmp
import importlib
import json
import pathlib
import shutil
import tempfile
from typing import NamedTuple

import numpy as np
from ml_collections import config_dict

from dmf_jax import paper, plots, sweep
from dmf_jax.workdir import Workdir

REPO = pathlib.Path(__file__).resolve().parents[1]

DATASETS = {"ml100k": "ML-100k", "amusic": "Amazon Music"}

# Sweep member folder -> the paper's row name.
ROWS = {
  "name=itempop": "ItemPop",
  "name=itemknn": "ItemKNN",
  "name=eals": "eALS",
  "name=gmf": "GMF",
  "name=mlp": "MLP",
  "name=neumf": "NeuMF-p",
  "name=ials": "iALS",
  "name=ease": "EASE^R",
  "name=dmf,loss=ce": "DMF-2-ce",
  "name=dmf,loss=nce": "DMF-2-nce",
  "name=lfm,user_layers=64,item_layers=64": "LFM-nce",
  "name=dmf,user_layers=64,item_layers=64": "DMF-1-nce",
  "loss=nce,user_layers=256-128,item_layers=256-128": "DMF-2-nce",
  "loss=ce,user_layers=256-128,item_layers=256-128": "DMF-2-ce",
  "optimizer=adam": "DMF-2-nce, adam",
  "optimizer=lazy_adam": "DMF-2-nce, lazy_adam",
  "optimizer=lazy_adam,lazy_max_read_share=1e+09": "DMF-2-nce, lazy_adam on every first layer",
}


class Experiment(NamedTuple):
  """A sweep behind one of the paper's tables or figures, read from `runs/<name>_<dataset>/`."""

  name: str
  title: str
  papers: dict  # the paper's numbers by data set
  config: str
  datasets: tuple[str, ...] = tuple(DATASETS)
  note: str = ""  # a paragraph under the heading


EXPERIMENTS = (
  Experiment("table2", "Table 2: all models", paper.TABLE2, "configs/table2.py"),
  Experiment(
    "table2_factors128",
    "Table 2's DMF rows with 128 final factors",
    paper.TABLE2,
    "configs/table2_factors128.py",
    ("amusic",),
  ),
  Experiment(
    "table2_ncf",
    "Table 2's NeuMF-p row with its GMF and MLP pretraining",
    paper.TABLE2,
    "configs/table2_ncf.py",
  ),
  Experiment(
    "table3", "Table 3: the input matrix (LFM-nce vs DMF-1-nce)", paper.TABLE3, "configs/table3.py"
  ),
  Experiment("sweep_neg", "Table 4: negative sampling ratio", paper.TABLE4, "configs/sweep_neg.py"),
  Experiment(
    "sweep_factors", "Table 5: factors of the final layer", paper.TABLE5, "configs/sweep_factors.py"
  ),
  Experiment("sweep_depth", "Figure 2: depth", {}, "configs/sweep_depth.py"),
  Experiment(
    "sweep_width",
    "The first width of DMF-2 (not in the paper; picks the default on validation)",
    {},
    "configs/sweep_width.py",
    ("ml100k",),
  ),
  Experiment(
    "optimizers",
    "Exact Adam against lazy_adam (not in the paper; the price of the sparse-row optimizer)",
    {},
    "configs/optimizers.py",
  ),
  Experiment(
    "gap",
    "The gap to the paper: one change at a time to DMF-2-nce, then depth 1, lr 1e-3 and Y of ones",
    {},
    "configs/gap.py",
    ("ml100k",),
  ),
  Experiment(
    "beyond",
    "Beyond the paper, the search: losses, negatives, inputs and towers for DMF",
    {},
    "configs/beyond.py",
  ),
  Experiment(
    "beyond_top5",
    "Beyond the paper: the search's five best on validation, 3 seeds, and LFM with each recipe",
    {},
    "configs/beyond_top5.py",
  ),
  Experiment(
    "dmf_best",
    "Beyond the paper: DMF's best recipe against every model of Table 2",
    paper.TABLE2,
    "configs/dmf_best.py",
  ),
  Experiment(
    "tois2021",
    "Beside the independent rerun (TOIS 2021 protocol)",
    {"ml100k": paper.TOIS2021_ML100K},
    "configs/tois2021.py",
    ("ml100k",),
    note="Their reader's filtering (items >= 5, then users >= 20) and 99 negatives; 'paper' "
    "columns here hold the TOIS 2021 study's numbers.",
  ),
)
SPLIT_NAMES = {"test": "test", "valid": "validation"}
COMPARISONS = {  # experiment: [(better?, baseline[, "valid"])]: paired bootstrap over users
  "table2": [("DMF-2-nce", "ItemKNN"), ("DMF-2-nce", "DMF-2-ce"), ("DMF-2-nce", "ItemPop")],
  "table2_ncf": [("NeuMF-p", "GMF"), ("NeuMF-p", "MLP")],
  "table3": [("DMF-1-nce", "LFM-nce")],
  "sweep_width": [  # the default's choice is made on validation
    ("user_layers=512-64,item_layers=512-64", "user_layers=256-64,item_layers=256-64", "valid"),
    ("user_layers=128-64,item_layers=128-64", "user_layers=256-64,item_layers=256-64", "valid"),
  ],
  "tois2021": [("DMF-2-nce", "ItemKNN"), ("DMF-2-ce", "DMF-2-nce")],
  "optimizers": [
    (f"DMF-2-nce, {lazy}", "DMF-2-nce, adam", split)
    for lazy in ("lazy_adam", "lazy_adam on every first layer")
    for split in ("valid", "test")
  ],
}


# Where the report's commands write their sweeps (whatever folder the report is read from).
RUNS = pathlib.Path("runs")


def _sweeps() -> list[tuple[str, pathlib.Path, str]]:
  """(config, folder, data set) of every sweep behind the report, in its order."""
  return [
    (e.config, RUNS / f"{e.name}_{dataset}", dataset) for e in EXPERIMENTS for dataset in e.datasets
  ]


def commands(pending_in: pathlib.Path | None = None) -> list[str]:
  """The command of every sweep behind the report, in the report's order; with `pending_in`, of
  those whose folder there lacks a finished run."""
  return [
    sweep_command(config, folder, dataset)
    for config, folder, dataset in _sweeps()
    if pending_in is None
    or not all(
      (run / "results.json").is_file()
      for run in planned_runs(config, pending_in / folder.name, dataset)
    )
  ]


def planned_runs(config: str, folder: pathlib.Path, dataset: str) -> list[pathlib.Path]:
  """The run folders `sweep_command(config, folder, dataset)` trains."""
  base = importlib.import_module(f"configs.{pathlib.Path(config).stem}").get_config()
  base.data.name = dataset
  sweep_fn = sweep.sweep_function(str(REPO / config))
  members = sweep.collect(sweep_fn, base) if sweep_fn is not None else [{}]
  return [run.workdir for run in sweep.plan(base, members, folder)]


def sweep_command(config: str, folder: pathlib.Path, dataset: str) -> str:
  """The command that writes the sweep folder `folder` on `dataset`."""
  return f"python launch.py --config={config} --workdir={folder} --config.data.name={dataset}"


def row_labeller(name: str, published: dict):
  """Maps a sweep member's folder name to its row in the paper's table `name` (`published`: one data
  set's numbers): the swept number in Tables 4 and 5, the model's name elsewhere."""
  if name in ("sweep_neg", "sweep_factors"):
    return lambda m: _swept_value(m) if _swept_value(m) in published else m
  return lambda m: ROWS.get(m, m)


def load_sweep(folder: pathlib.Path):
  """A sweep folder's (summary rows, sweep.json record), or (None, None) when it has no summary."""
  summary = folder / "summary.json"
  if not summary.is_file():
    return None, None
  meta = folder / "sweep.json"
  return json.loads(summary.read_text()), (json.loads(meta.read_text()) if meta.is_file() else {})


def _cell(row: dict, key: str) -> str:
  if key not in row:
    return "–"
  std = row.get(f"{key}_std", 0.0)
  return f"{row[key]:.3f} ± {std:.3f}" if row["seeds"] > 1 else f"{row[key]:.3f}"


def _per_user_ndcg(
  folder: pathlib.Path, member: str, split: str = "test", ranking: str = "sampled", k: int = 10
) -> np.ndarray | None:
  """Per-user NDCG@k of a member on `split` ("test" or "valid"), among the sampled candidates or
  the full catalogue (`ranking`: "sampled" or "full"), averaged over its seeds."""
  values = []
  for ranks_file in sorted((folder / member).glob("seed*/ranks.npz")):
    with np.load(ranks_file) as ranks:
      r = ranks[f"{split}_{ranking}"]
      values.append(np.where(r < k, 1.0 / np.log2(r + 2.0), 0.0))
  return np.mean(values, axis=0) if values else None


def paired_bootstrap(a: np.ndarray, b: np.ndarray, *, samples: int = 2000, seed: int = 0):
  """Mean of a - b over users with a 95% percentile bootstrap interval, and the share of
  resamples in which the difference is <= 0 (one-sided)."""
  rng = np.random.default_rng(seed)
  diff = np.asarray(a) - np.asarray(b)
  means = diff[rng.integers(0, len(diff), (samples, len(diff)))].mean(axis=1)
  low, high = np.percentile(means, [2.5, 97.5])
  return float(diff.mean()), float(low), float(high), float(np.mean(means <= 0))


def _table(rows: list[dict], published: dict, label_of) -> list[str]:
  lines = [
    "| row | seeds | HR@10 (ours) | NDCG@10 (ours) | HR@10 (paper) | NDCG@10 (paper) | "
    "full HR@10 | full NDCG@10 | val NDCG@10 | best epoch | train s |",
    "|---|---|---|---|---|---|---|---|---|---|---|",
  ]
  for row in rows:
    label = label_of(row["member"])
    hr, ndcg = published.get(label, (None, None))
    lines.append(
      f"| {label} | {row['seeds']} | {_cell(row, 'test_hr@10')} | {_cell(row, 'test_ndcg@10')} | "
      f"{'–' if hr is None else f'{hr:.3f}'} | {'–' if ndcg is None else f'{ndcg:.3f}'} | "
      f"{_cell(row, 'test_full_hr@10')} | {_cell(row, 'test_full_ndcg@10')} | "
      f"{_cell(row, 'valid_ndcg@10')} | {row['best_epoch']:.1f} | {row['train_seconds']:.0f} |"
    )
  return lines


def _swept_value(member: str) -> int | None:
  """The swept number of a Table 4 or 5 member (`neg_ratio=5`, `user_layers=256-8,...`)."""
  value = member.split(",")[0].split("=")[1].split("-")[-1]
  return int(value) if value.isdigit() else None


def _latest_finish(runs: pathlib.Path) -> str:
  """The date the latest run under `runs` finished, from its results ("unknown" without one)."""
  dates = [
    json.loads(path.read_text()).get("finished", "") for path in runs.glob("*/*/seed*/results.json")
  ]
  return max(dates, default="")[:10] or "unknown"


def build(runs: pathlib.Path, out: pathlib.Path) -> str:
  figures = out.parent / "figures"
  lines = [
    "# Reproduction report",
    "",
    "Generated by `python -m dmf_jax.report` from the run records (the latest finished "
    f"{_latest_finish(runs)}); never edited by "
    "hand. Test metrics are means ± sample std over model seeds on one split "
    "(`data.split_seed=0`); the reported epoch of every run is chosen on validation NDCG@10. HR@10 "
    "and NDCG@10 rank the held-out item among 100 sampled negatives (99 under `tois2021`); 'full' "
    "columns rank it among the whole catalogue.",
    "",
  ]
  missing = []
  for experiment in EXPERIMENTS:
    name, title, config = experiment.name, experiment.title, experiment.config
    for dataset in experiment.datasets:
      dataset_title = DATASETS[dataset]
      folder = runs / f"{name}_{dataset}"
      rows, meta = load_sweep(folder)
      if rows is None:
        missing.append(
          (
            f"{title}, {dataset_title}",
            sweep_command(config, RUNS / folder.name, dataset),
          )
        )
        continue
      published = experiment.papers.get(dataset, {})
      label_of = row_labeller(name, published)
      lines += [f"## {title} — {dataset_title}", ""]
      if experiment.note:
        lines += [experiment.note, ""]
      if name == "dmf_best":
        lines += _best_against_table2(folder, rows, runs / f"table2_{dataset}", published)
      else:
        lines += _table(rows, published, label_of)
      lines += _stalled_runs(folder, rows, label_of)
      lines += _provenance(meta, folder)
      lines += _comparisons(folder, rows, COMPARISONS.get(name, []), label_of)
      if name == "beyond_top5":
        lines += _lfm_control(folder, rows)
      lines += _figures(folder, figures, f"{name}_{dataset}", out, config)
  if missing:
    lines += ["## Not measured yet", "", "| experiment | command |", "|---|---|"]
    lines += [f"| {what} | `{command}` |" for what, command in missing]
    lines.append("")
  lines += [
    "## ML-1M and Amazon Movies",
    "",
    "Not available on the machines these numbers come from. With the data at hand, every command "
    "above runs on them by `--config.data.name=ml1m` (GroupLens `ml-1m/ratings.dat`, downloaded "
    "when missing) or `--config.data.name=amazon_csv --config.data.path=ratings_Movies_and_TV.csv` "
    "(McAuley's ratings-only file, filtered to >= 20 ratings per user and >= 5 per item).",
    "",
  ]
  return "\n".join(lines)


# A run whose training loss moved by less than this share of its first epoch's did not train.
STALLED = 1e-3


def _stalled_runs(folder: pathlib.Path, rows: list[dict], label_of) -> list[str]:
  """The seeds whose training loss never moved from its first epoch's: each is counted in its
  row's mean and spread, which says so nowhere else."""
  lines, models = [], set()
  for row in rows:
    for finished in sorted((folder / row["member"]).glob("seed*/results.json")):
      run = finished.parent
      losses = [r["loss"] for r in Workdir(run).metrics() if r.get("loss") is not None]
      if len(losses) > 1 and max(losses) - min(losses) < STALLED * abs(losses[0]):
        results = json.loads(finished.read_text())
        models.add(results.get("model"))
        lines.append(
          f"- {label_of(row['member'])}, {run.name}: training loss {losses[0]:.4f} in each of its "
          f"{len(losses)} epochs; test HR@10 {results['test']['hr@10']:.3f}."
        )
  if not lines:
    return []
  why = (
    " DMF's cosine is clipped at 1e-6 and passes no gradient below the clip: a DMF run whose "
    "every score falls under it stays there."
    if "dmf" in models
    else ""
  )
  return [
    "",
    f"Runs that did not train (training loss within {STALLED:.1%} of its first epoch's), counted "
    f"in their rows' means and spreads.{why}",
    "",
    *lines,
  ]


def _provenance(meta: dict, folder: pathlib.Path) -> list[str]:
  # A sweep may have been run in several sittings, by several versions of the code.
  results = [json.loads(path.read_text()) for path in folder.glob("*/seed*/results.json")]
  wall = sum(r["wall_seconds"] for r in results)
  codes = collections.Counter(r.get("code") or "not recorded" for r in results)
  code = "Code: " + ", ".join(f"{c} ({n} runs)" for c, n in sorted(codes.items())) + "."
  devices = collections.Counter(r.get("device") or "not recorded" for r in results)
  code += " Trained on: " + ", ".join(f"{d} ({n} runs)" for d, n in sorted(devices.items())) + "."
  if not meta:
    return ["", f"Source: `{folder}`; {wall:.0f} s of wall time over its runs. {code}", ""]
  machine = meta.get("machine", {})
  return [
    "",
    f"Command: `{meta.get('command', '?')}` — {wall:.0f} s of wall time over its runs, on "
    f"{machine.get('cpus', '?')} CPUs ({machine.get('processor', '?')}, "
    f"{', '.join(machine.get('devices', []))}; jax {machine.get('jax', '?')}). "
    f"Seeds: {meta.get('config', {}).get('sweep', {}).get('num_seeds', '?')} per row. {code}",
    "",
  ]


def _comparisons(folder, rows, pairs, label_of) -> list[str]:
  members = {label_of(r["member"]): r["member"] for r in rows}
  lines = []
  for better, worse, *on in pairs:
    split = on[0] if on else "test"
    if better not in members or worse not in members:
      continue
    a = _per_user_ndcg(folder, members[better], split)
    b = _per_user_ndcg(folder, members[worse], split)
    if a is not None and b is not None:
      lines.append(_difference(f"{better} − {worse}", split, a, b))
  return ["Paired differences (seed-averaged per-user NDCG@10):", "", *lines, ""] if lines else []


def _lfm_control(folder: pathlib.Path, rows: list[dict]) -> list[str]:
  """The DMF recipe best on validation against LFM with the same recipe: do the rows of Y or the
  loss carry the gain?"""
  dmf = [r for r in rows if not r["member"].startswith("name=lfm")]
  if not dmf:
    return []
  best = max(dmf, key=lambda r: r["valid_ndcg@10"])["member"]
  lines = [f"The recipe best on validation NDCG@10: `{best}`.", ""]
  a = _per_user_ndcg(folder, best)
  b = _per_user_ndcg(folder, f"name=lfm,{best}")
  if a is not None and b is not None:
    lines.append(_difference("best − LFM with its recipe", "test", a, b))
  return [*lines, ""]


def _best_against_table2(
  folder: pathlib.Path, rows: list[dict], table2: pathlib.Path, published: dict
) -> list[str]:
  """`configs/dmf_best.py`'s recipe beside every model of Table 2 on the same split and
  candidates, with the paired per-user differences against each, on test NDCG@10 among the
  sampled candidates and in the full catalogue."""
  recipe = rows[0]["member"]
  label = f"DMF, best recipe (`{recipe}`)"
  table2_rows, _ = load_sweep(table2)
  if table2_rows is None or _split_of(folder / recipe) != _split_of(
    table2 / table2_rows[0]["member"]
  ):
    return [
      *_table(rows, published, lambda member: label),
      "",
      f"Table 2's models are not measured on this split yet (`{table2.name}`).",
    ]
  lines = _table(
    [*rows, *table2_rows],
    published,
    lambda member: label if member == recipe else ROWS.get(member, member),
  )
  lines += [
    "",
    "Paired differences, best recipe − each model (seed-averaged per-user NDCG@10):",
    "",
  ]
  wins = collections.defaultdict(list)
  ours = {
    ranking: _per_user_ndcg(folder, recipe, "test", ranking) for ranking in ("sampled", "full")
  }
  for row in table2_rows:
    other = ROWS.get(row["member"], row["member"])
    for ranking, a in ours.items():
      b = _per_user_ndcg(table2, row["member"], "test", ranking)
      stats = paired_bootstrap(a, b)
      lines.append(_difference(f"best − {other}", "test", a, b, ranking, stats))
      if stats[1] > 0:
        wins[ranking].append(other)
  lines.append("")
  for ranking, where in (
    ("sampled", "among the sampled candidates"),
    ("full", "in the full catalogue"),
  ):
    ahead = ", ".join(wins[ranking]) or "none"
    lines.append(f"Ahead with the 95% interval above 0 on test NDCG@10 {where}: {ahead}.")
  return lines


def _difference(
  what: str, split: str, a: np.ndarray, b: np.ndarray, ranking: str = "sampled", stats=None
) -> str:
  """A bullet: the mean per-user difference a - b with its paired bootstrap interval (`stats`,
  when the caller has already drawn it)."""
  mean, low, high, p = stats or paired_bootstrap(a, b)
  full = " full" if ranking == "full" else ""
  return (
    f"- {what}, {SPLIT_NAMES[split]}{full} NDCG@10 per user: {mean:+.4f} (95% bootstrap interval "
    f"[{low:+.4f}, {high:+.4f}] over {len(a)} users; share of resamples <= 0: {p:.3f})"
  )


def _split_of(member: pathlib.Path) -> str | None:
  """The split key of a member's first finished run."""
  for results in sorted(member.glob("seed*/results.json")):
    return json.loads(results.read_text())["split"]
  return None


def draw_figures(folder: pathlib.Path, config: str, directory: pathlib.Path) -> list[pathlib.Path]:
  """Draws a recorded sweep's `metrics.png` and `curves.png` into `directory` as its sweep drew
  them, from its summary, its runs' per-epoch metrics and its config file's title and the paper's
  values (`config`, relative to the repository); returns the files drawn (none without a
  `sweep.json`)."""
  rows, meta = load_sweep(folder)
  base = (meta or {}).get("config")
  if rows is None or not base:
    return []
  curves = {
    row["member"]: [
      Workdir(results.parent).metrics()
      for results in sorted((folder / row["member"]).glob("seed*/results.json"))
    ]
    for row in rows
  }
  sweep_fn = sweep.sweep_function(str(REPO / config))
  # The members' overrides in the order the config gives them (summary.json sorts their keys),
  # for the sweep's own labels.
  given = {}
  if sweep_fn is not None:
    members = sweep.collect(sweep_fn, config_dict.ConfigDict(base))
    given = {sweep.member_name(overrides): overrides for overrides in members}
  rows = [{**row, "overrides": given.get(row["member"], row["overrides"])} for row in rows]
  title, reference = sweep.figure_labels(sweep_fn, folder)
  return plots.sweep_figures(
    directory,
    rows,
    curves,
    title=title,
    dataset=base["data"]["name"],
    epochs=base["train"]["epochs"],
    reference=reference,
  )


def _figures(folder, figures, stem, out, config) -> list[str]:
  lines = []
  with tempfile.TemporaryDirectory() as scratch:
    for source in draw_figures(folder, config, pathlib.Path(scratch)):
      figures.mkdir(parents=True, exist_ok=True)
      target = figures / f"{stem}_{source.name}"
      shutil.copyfile(source, target)
      lines.append(f"![{stem} {source.name}]({target.relative_to(out.parent)})")
  return [*lines, ""] if lines else []


# What `collect` keeps of a sweep folder, and of each finished run in it.
# (The figures are not kept: `draw_figures` draws them again from the records.)
SWEEP_RECORDS = ("sweep.json", "summary.json", "summary.md", "summary.csv")
RUN_RECORDS = ("config.json", "results.json", "metrics.jsonl", "ranks.npz")


def _copy_record(
  source: pathlib.Path, folder: pathlib.Path, scratch: pathlib.Path, beside: pathlib.Path | None
) -> None:
  """Copies `source`, a file of the sweep `folder`, to the same place under `scratch`, unless
  `beside/<folder>/` already holds it with the same bytes."""
  relative = source.relative_to(folder)
  twin = beside / folder.name / relative if beside is not None else None
  if twin is not None and twin.is_file() and filecmp.cmp(source, twin, shallow=False):
    return
  (scratch / relative).parent.mkdir(parents=True, exist_ok=True)
  shutil.copyfile(source, scratch / relative)


def collect(
  runs: pathlib.Path, records: pathlib.Path, beside: pathlib.Path | None = None
) -> list[pathlib.Path]:
  """Copies the records of every sweep folder under `runs` (one with a summary) to
  `records/<folder>/`: its `SWEEP_RECORDS` and each finished run's `RUN_RECORDS`, nothing else;
  with `beside`, less the files `beside/<folder>/` holds with the same bytes (a sweep still
  training keeps only its new runs). A folder's records are written whole beside it, then put in
  place of the old ones. Returns the folders written."""
  written = []
  records.mkdir(parents=True, exist_ok=True)
  for folder in sorted(p for p in runs.iterdir() if (p / "summary.json").is_file()):
    scratch = pathlib.Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=records))
    try:
      sources = [folder / name for name in SWEEP_RECORDS]
      for results in sorted(folder.glob("*/seed*/results.json")):
        sources += [results.parent / name for name in RUN_RECORDS]
      for source in sources:
        if source.is_file():
          _copy_record(source, folder, scratch, beside)
      final = records / folder.name
      if final.exists():
        shutil.rmtree(final)
      scratch.rename(final)
    finally:
      if scratch.exists():
        shutil.rmtree(scratch)
    written.append(final)
  return written


GLANCE_START = "<!-- results at a glance: written by python -m dmf_jax.report; do not edit -->"
GLANCE_END = "<!-- end of results at a glance -->"
BASELINES = ("ItemPop", "ItemKNN", "eALS", "EASE^R", "iALS", "GMF", "MLP", "NeuMF-p")


def _pair(row: dict | None) -> str:
  if row is None:
    return "–"
  return f"{row['test_hr@10']:.3f} / {row['test_ndcg@10']:.3f}"


def glance(runs: pathlib.Path, report: str = "docs/REPRODUCTION.md") -> list[str] | None:
  """The README's "Results at a glance": DMF-2-nce as published, as rerun by TOIS 2021 and here,
  beside our two strongest baselines and DMF's best recipe beyond the paper (test HR@10 /
  NDCG@10), and the plain conclusion; None without Table 2's runs."""
  lines = [
    "| data set | DMF-2-nce, paper | DMF-2-nce, TOIS 2021 rerun | DMF-2-nce, ours | "
    "strongest baselines, ours | DMF, best recipe beyond the paper |",
    "|---|---|---|---|---|---|",
  ]
  conclusions = []
  for dataset, dataset_title in DATASETS.items():
    rows, _ = load_sweep(runs / f"table2_{dataset}")
    if rows is None:
      continue
    by_label = {ROWS.get(r["member"], r["member"]): r for r in rows}
    ours = by_label.get("DMF-2-nce")
    strongest = sorted(
      (label for label in by_label if label in BASELINES),
      key=lambda label: -by_label[label]["test_ndcg@10"],
    )[:2]
    hr, ndcg = paper.TABLE2[dataset]["DMF-2-nce"]
    rerun = "–"
    if dataset in ("ml100k",):
      tois_rows, _ = load_sweep(runs / "tois2021_ml100k")
      tois = {ROWS.get(r["member"], r["member"]): r for r in tois_rows or []}
      theirs = paper.TOIS2021_ML100K["DMF-2-nce"]
      rerun = f"{theirs[0]:.3f} / {theirs[1]:.3f}"
      if "DMF-2-nce" in tois:
        rerun += f" (ours under their protocol: {_pair(tois['DMF-2-nce'])})"
    best_rows, _ = load_sweep(runs / f"dmf_best_{dataset}")
    lines.append(
      f"| {dataset_title} | {hr:.3f} / {ndcg:.3f} | {rerun} | {_pair(ours)} | "
      + "; ".join(f"{label} {_pair(by_label[label])}" for label in strongest)
      + f" | {_pair(best_rows[0] if best_rows else None)} |"
    )
    if ours is not None and strongest:
      best = by_label[strongest[0]]
      conclusions.append(
        f"on {dataset_title} ours is {ndcg - ours['test_ndcg@10']:.3f} NDCG@10 below the paper "
        f"and {best['test_ndcg@10'] - ours['test_ndcg@10']:.3f} behind {strongest[0]}"
        if best["test_ndcg@10"] > ours["test_ndcg@10"]
        else f"on {dataset_title} ours is {ndcg - ours['test_ndcg@10']:.3f} NDCG@10 below the "
        f"paper and ahead of every baseline"
      )
    if best_rows and strongest:
      conclusions.append(
        _best_against_strongest(runs, dataset, best_rows[0], by_label, strongest[0])
      )
  if len(lines) == 2:
    return None
  short = f" In short: {'; '.join(conclusions)}." if conclusions else ""
  return [
    *lines,
    "",
    f"Test HR@10 / NDCG@10, means over seeds.{short} Every table, its commands and the paired "
    f"tests are in [{report}]({report}).",
  ]


def _best_against_strongest(runs, dataset, best: dict, by_label: dict, strongest: str) -> str:
  """Where DMF's best recipe stands against the strongest baseline: the paired interval of the
  per-user test NDCG@10 difference decides ahead, level or behind."""
  best_folder, table2 = runs / f"dmf_best_{dataset}", runs / f"table2_{dataset}"
  rival = by_label[strongest]["member"]
  if _split_of(best_folder / best["member"]) != _split_of(table2 / rival):
    return f"the best recipe beyond the paper was trained on another split than {strongest}"
  mean, low, high, _ = paired_bootstrap(
    _per_user_ndcg(best_folder, best["member"]), _per_user_ndcg(table2, rival)
  )
  verdict = "ahead of" if low > 0 else "behind" if high < 0 else "level with"
  return (
    f"the best recipe beyond the paper is {verdict} {strongest} ({mean:+.3f} NDCG@10, 95% "
    f"interval [{low:+.3f}, {high:+.3f}])"
  )


def write_glance(readme: pathlib.Path, lines: list[str]) -> bool:
  """Replaces the README's block between the glance markers; False when it has none."""
  text = readme.read_text()
  start, end = text.find(GLANCE_START), text.find(GLANCE_END)
  if start < 0 or end < start:
    return False
  block = "\n".join([GLANCE_START, *lines, GLANCE_END])
  readme.write_text(text[:start] + block + text[end + len(GLANCE_END) :])
  return True


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument(
    "--records", default="results", type=pathlib.Path, help="the sweeps' records the report reads"
  )
  parser.add_argument("--out", default="docs/REPRODUCTION.md", type=pathlib.Path)
  parser.add_argument(
    "--collect", action="store_true", help="copy the records of --runs to --records, then stop"
  )
  parser.add_argument("--runs", default="runs", type=pathlib.Path, help="sweep folders to collect")
  parser.add_argument(
    "--beside",
    type=pathlib.Path,
    help="with --collect: leave out the files this directory's records hold alike "
    "(--records=results/pending --beside=results for sweeps still training)",
  )
  parser.add_argument(
    "--readme", default="README.md", type=pathlib.Path, help="its results-at-a-glance block"
  )
  parser.add_argument(
    "--commands", action="store_true", help="print every sweep command behind the report, then stop"
  )
  parser.add_argument(
    "--pending",
    type=pathlib.Path,
    help="with --commands: only the sweeps whose folder in this directory lacks a finished run",
  )
  args = parser.parse_args(argv)
  if args.commands:
    print("\n".join(commands(args.pending)))
    return
  if args.collect:
    folders = collect(args.runs, args.records, args.beside)
    size = sum(p.stat().st_size for folder in folders for p in folder.rglob("*") if p.is_file())
    print(f"{len(folders)} sweep folders' records in {args.records}/ ({size / 2**20:.1f} MiB)")
    return
  args.out.parent.mkdir(parents=True, exist_ok=True)
  args.out.write_text(build(args.records, args.out))
  print(args.out)
  lines = glance(args.records)
  if lines is not None and args.readme.is_file() and write_glance(args.readme, lines):
    print(args.readme)


if __name__ == "__main__":
  main()
