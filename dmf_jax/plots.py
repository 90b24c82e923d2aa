"""A sweep's figures, drawn as a paper would: `metrics.png` (each member's test and validation
HR@10 and NDCG@10, on a line over the swept number when there is one, beside the paper's values
when it gives them) and `curves.png` (the same metrics per epoch, one line per member).

Error bars and bands appear only where a member has two or more seeds (the standard deviation over
seeds); the title names the data set, the epochs and the seeds.
"""

from __future__ import annotations

import logging
import pathlib

import numpy as np

log = logging.getLogger(__name__)

DATASET_NAMES = {"ml100k": "MovieLens 100K", "ml1m": "MovieLens 1M", "amusic": "Amazon Music"}
# Swept fields with a number for an x-axis, and what to call it.
NUMERIC_FIELDS = {
  "train.neg_ratio": "negatives per positive",
  "train.lr": "learning rate",
  "train.batch_size": "batch size (instances)",
  "model.l2": "L2 weight",
}
METRICS = (("hr@10", "HR@10"), ("ndcg@10", "NDCG@10"))
SPLITS = (("test", "test"), ("valid", "validation"))


def swept_axis(rows: list[dict]) -> tuple[str, list[float]] | None:
  """(axis label, one number per member) when the members differ in one number, else None: a
  numeric field, or the towers' depth, final factors or first width when only that differs."""
  keys = {tuple(sorted(row["overrides"])) for row in rows}
  if len(keys) != 1 or len(rows) < 2:
    return None
  (keys,) = keys
  values = None
  if len(keys) == 1 and all(_is_number(row["overrides"][keys[0]]) for row in rows):
    label, values = (
      NUMERIC_FIELDS.get(keys[0], keys[0]),
      [row["overrides"][keys[0]] for row in rows],
    )
  elif keys == ("model.item_layers", "model.user_layers"):
    towers = [tuple(row["overrides"]["model.user_layers"]) for row in rows]
    if any(
      tuple(row["overrides"]["model.item_layers"]) != t for row, t in zip(rows, towers, strict=True)
    ):
      return None
    if len({len(t) for t in towers}) == len(towers):
      label, values = "layers per tower", [len(t) for t in towers]
    elif len({len(t) for t in towers}) == 1 and len({t[:-1] for t in towers}) == 1:
      label, values = "factors of the final layer", [t[-1] for t in towers]
    elif len({len(t) for t in towers}) == 1 and len({t[1:] for t in towers}) == 1:
      label, values = "width of the first layer", [t[0] for t in towers]
  if values is None or len(set(values)) < len(values):
    return None
  return label, [float(v) for v in values]


def _is_number(value) -> bool:
  return isinstance(value, int | float) and not isinstance(value, bool)


def member_label(overrides: dict) -> str:
  """A short label: the model's name bare, towers as `towers 256-64`, other fields `field=value`."""
  parts = []
  overrides = dict(overrides)
  name = overrides.pop("model.name", None)
  if name is not None:
    parts.append(str(name))
  user, item = overrides.get("model.user_layers"), overrides.get("model.item_layers")
  if user is not None and item is not None and tuple(user) == tuple(item):
    overrides.pop("model.user_layers"), overrides.pop("model.item_layers")
    parts.append("towers " + "-".join(map(str, user)))
  for key, value in overrides.items():
    if isinstance(value, list | tuple):
      value = "-".join(map(str, value))
    parts.append(
      f"{key.rsplit('.', 1)[-1]}={value:g}"
      if _is_number(value)
      else f"{key.rsplit('.', 1)[-1]}={value}"
    )
  return ", ".join(parts) or "base"


def _title(title: str, dataset: str, epochs: int, rows: list[dict]) -> str:
  seeds = sorted({row["seeds"] for row in rows})
  seed_text = (
    f"{seeds[0]} seed{'s' if seeds[0] > 1 else ''}"
    if len(seeds) == 1
    else f"{seeds[0]}-{seeds[-1]} seeds"
  )
  return f"{title}\n{DATASET_NAMES.get(dataset, dataset)}, {epochs} epoch{'s' if epochs > 1 else ''}, {seed_text} per point"


def sweep_figures(
  directory: pathlib.Path,
  rows: list[dict],
  curves: dict[str, list[list[dict]]],
  *,
  title: str,
  dataset: str,
  epochs: int,
  reference: dict | None = None,
) -> list[pathlib.Path]:
  """Writes `metrics.png` and `curves.png` into `directory`; returns the files written.

  Args:
    rows: the sweep's summary rows (`sweep.summarize`).
    curves: member name -> the `metrics.jsonl` records of each of its finished seeds.
    reference: {"source": text, "values": {dataset: {x or member label: (HR@10, NDCG@10)}}}: the
      published test numbers to show as points, keyed by the swept number (or the member's label).
  """
  try:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
  except ImportError:
    log.warning("matplotlib is not installed (pip install -e '.[plots]'): no plots")
    return []
  axis = swept_axis(rows)
  published = ((reference or {}).get("values") or {}).get(dataset) or {}
  source = (reference or {}).get("source", "")
  written = [directory / "metrics.png"]
  figure, axes = plt.subplots(
    2, 2, figsize=(9, 6.2), constrained_layout=True, sharex="col" if axis else False
  )
  labels = [member_label(row["overrides"]) for row in rows]
  for (split, split_name), row_axes in zip(SPLITS, axes, strict=True):
    for (metric, metric_name), ax in zip(METRICS, row_axes, strict=True):
      means = np.array([row.get(f"{split}_{metric}", np.nan) for row in rows])
      stds = np.array([row.get(f"{split}_{metric}_std", 0.0) for row in rows])
      spread = [row["seeds"] >= 2 for row in rows]
      errors = np.where(spread, stds, 0.0) if any(spread) else None
      if axis is not None:
        x = np.array(axis[1])
        order = np.argsort(x)
        ax.errorbar(
          x[order],
          means[order],
          yerr=None if errors is None else errors[order],
          marker="o",
          capsize=3,
          label="ours" + (", mean ± std over seeds" if errors is not None else ""),
        )
        if split == "test" and published:
          points = sorted(
            (float(k), v[0 if metric == "hr@10" else 1])
            for k, v in published.items()
            if _is_number(k)
          )
          if points:
            ax.plot(
              *zip(*points, strict=True),
              "k*",
              markersize=9,
              linestyle="none",
              label=f"paper ({source})",
            )
        ax.set_xticks(x, [f"{v:g}" for v in x])
        powers_of_two = all(
          v > 0 and float(v).is_integer() and int(v) & (int(v) - 1) == 0 for v in x
        )
        if powers_of_two and x.max() / x.min() >= 8:
          ax.set_xscale("log", base=2)
          ax.set_xticks(x, [f"{v:g}" for v in x])
          ax.minorticks_off()
        if split == "valid":
          ax.set_xlabel(axis[0])
      else:
        y = np.arange(len(rows))
        # Points, not bars: a bar's length from an axis that does not start at 0 would mislead.
        ax.errorbar(means, y, xerr=errors, fmt="o", capsize=3, label="ours")
        if split == "test" and published:
          marks = [
            (i, published[label][0 if metric == "hr@10" else 1])
            for i, label in enumerate(labels)
            if label in published
          ]
          if marks:
            ax.plot(
              [v for _, v in marks],
              [i for i, _ in marks],
              "k*",
              markersize=9,
              linestyle="none",
              label=f"paper ({source})",
            )
        ax.set_yticks(y, labels if metric == "hr@10" else [""] * len(rows), fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel(metric_name)
      ax.set_title(f"{split_name} {metric_name}", fontsize=10)
      ax.grid(alpha=0.3)
      if axis is not None:
        ax.set_ylabel(metric_name)
  handles, names = axes[0][0].get_legend_handles_labels()
  if len(handles) > 1:
    axes[0][0].legend(handles, names, fontsize=8, loc="best")
  note = []
  if reference is not None and not published:
    note.append(f"no published values for this data set ({source or 'none given'})")
  figure.suptitle(
    _title(title, dataset, epochs, rows) + (f"\n{note[0]}" if note else ""), fontsize=10
  )
  figure.savefig(directory / "metrics.png", dpi=130)
  plt.close(figure)

  if curves:
    written.append(directory / "curves.png")
    _curves(
      plt, directory / "curves.png", rows, curves, axis, title=_title(title, dataset, epochs, rows)
    )
  return written


def _curves(plt, path: pathlib.Path, rows, curves, axis, *, title: str) -> None:
  figure, axes = plt.subplots(2, 2, figsize=(10, 6.4), constrained_layout=True, sharex=True)
  for index, row in enumerate(rows):
    seeds = curves.get(row["member"])
    if not seeds:
      continue
    length = min(len(records) for records in seeds)
    label = f"{axis[1][index]:g}" if axis is not None else member_label(row["overrides"])
    epochs = np.arange(1, length + 1)
    for (split, split_name), row_axes in zip(
      (("validation", "validation"), ("test", "test")), axes, strict=True
    ):
      for (metric, metric_name), ax in zip(METRICS, row_axes, strict=True):
        values = np.array([[r[split][metric] for r in records[:length]] for records in seeds])
        mean = values.mean(0)
        (line,) = ax.plot(epochs, mean, marker="o", markersize=3, label=label)
        if len(seeds) >= 2:
          std = values.std(0, ddof=1)
          ax.fill_between(epochs, mean - std, mean + std, color=line.get_color(), alpha=0.15)
        ax.set_title(f"{split_name} {metric_name}", fontsize=10)
        ax.set_ylabel(metric_name)
        ax.grid(alpha=0.3)
  for ax in axes[1]:
    ax.set_xlabel("epoch")
    ax.xaxis.get_major_locator().set_params(integer=True)
  handles, names = axes[0][0].get_legend_handles_labels()
  figure.legend(
    handles,
    names,
    loc="outside right upper",
    fontsize=8,
    title=axis[0] if axis else None,
    title_fontsize=8,
  )
  figure.suptitle(title, fontsize=10)
  figure.savefig(path, dpi=130)
  plt.close(figure)
