"""Sweeps: a config file's `sweep(add)` names the members, each an override dict on its config.

    def sweep(add):
      for ratio in (1, 2, 5, 9, 10):
        add(**{"train.neg_ratio": ratio})

A `sweep(add, config)` also gets the base config, so that its members can depend on the data set.
Every member runs `sweep.num_seeds` times (model seeds `seed`, `seed + 1`, ...; one split) into
`DIR/<name>/seed<s>/`, its name made from its overrides. Command-line overrides apply to every member;
a member's own overrides win for the fields it sets. Every member is checked (fields, types, values,
workdirs) before any runs. Finished members are skipped and unfinished ones resume, so re-running a
sweep trains only what is missing. At the end `summary.csv`, `summary.md` and plots are written.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import importlib.util
import inspect
import io
import json
import logging
import os
import pathlib
import platform
import re
import shlex
import sys
import threading
import time
from collections.abc import Callable

import jax
import numpy as np
from ml_collections import config_dict

from dmf_jax import experiment, plots, training
from dmf_jax.errors import ConfigError
from dmf_jax.progress import duration
from dmf_jax.workdir import Workdir, WorkdirBusy, code_version, write_json

log = logging.getLogger(__name__)

METRICS = ("hr@10", "ndcg@10", "full_hr@10", "full_ndcg@10")
_CONFIG_MODULE = "_dmf_sweep_"  # the prefix of a config file's module, loaded by `sweep_function`


def sweep_function(config_path: str) -> Callable | None:
  """The `sweep` function of a config file (path, optionally with `:arg`), or None."""
  path = pathlib.Path(re.sub(r"(\.py):.*$", r"\1", config_path))
  spec = importlib.util.spec_from_file_location(f"{_CONFIG_MODULE}{path.stem}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return getattr(module, "sweep", None)


def collect(sweep: Callable, config: config_dict.ConfigDict | None = None) -> list[dict]:
  """The override dicts that `sweep(add)` adds, in order; a `sweep(add, config)` also reads the
  base config (its data set, say)."""
  members = []

  def add(overrides: dict | None = None, **more):
    members.append({**(overrides or {}), **more})

  if len(inspect.signature(sweep).parameters) > 1:
    sweep(add, config)
  else:
    sweep(add)
  if not members:
    raise ConfigError("the config's sweep() added no member")
  return members


def _short(value) -> str:
  if isinstance(value, list | tuple):
    return "-".join(_short(v) for v in value) or "none"
  if isinstance(value, float):
    return f"{value:g}"
  return str(value)


def member_name(overrides: dict) -> str:
  """A short readable folder name: `neg_ratio=5`, `loss=ce,name=dmf`, `user_layers=256-64`."""
  if not overrides:
    return "base"
  labels = {key: key.rsplit(".", 1)[-1] for key in overrides}
  if len(set(labels.values())) < len(labels):
    labels = {key: key for key in overrides}
  parts = [f"{labels[key]}={_short(value)}" for key, value in overrides.items()]
  return re.sub(r"[^\w.=,@+-]", "_", ",".join(parts))


@dataclasses.dataclass
class Member:
  name: str
  overrides: dict
  seed: int
  config: config_dict.ConfigDict
  workdir: pathlib.Path


def _apply(base: config_dict.ConfigDict, overrides: dict, name: str) -> config_dict.ConfigDict:
  config = copy.deepcopy(base)
  for key, value in overrides.items():
    node, *path = key.split(".")
    try:
      parent = config
      for part in [node, *path][:-1]:
        parent = parent[part]
      field = [node, *path][-1]
      if field not in parent:
        raise KeyError(field)
      if isinstance(parent[field], tuple) and isinstance(value, list):
        value = tuple(value)
      parent[field] = value
    except KeyError:
      raise ConfigError(f"sweep member {name}: {key} is not a config field") from None
    except TypeError as e:
      raise ConfigError(f"sweep member {name}: {key}={value!r} has the wrong type ({e})") from None
  return config


def plan(
  base: config_dict.ConfigDict, members: list[dict], directory: pathlib.Path
) -> list[Member]:
  """Every (member, seed) run of the sweep, checked before anything runs."""
  num_seeds = base.sweep.num_seeds
  if num_seeds < 1:
    raise ConfigError(f"sweep.num_seeds={num_seeds}: must be at least 1")
  names = [member_name(m) for m in members]
  if len(set(names)) < len(names):
    raise ConfigError(f"the sweep's members are not distinct: {names}")
  runs = []
  for name, overrides in zip(names, members, strict=True):
    config = _apply(base, overrides, name)
    for offset in range(num_seeds):
      seeded = copy.deepcopy(config)
      seeded.seed = base.seed + offset
      try:
        experiment.check_config(seeded)
      except ConfigError as e:
        raise ConfigError(f"sweep member {name}: {e}") from None
      runs.append(
        Member(name, overrides, seeded.seed, seeded, directory / name / f"seed{seeded.seed}")
      )
  return runs


def run(
  base: config_dict.ConfigDict, sweep: Callable, directory: str | pathlib.Path, *, overwrite: bool
) -> list[dict]:
  """Runs every member of `sweep` over `base` in `directory`; returns the summary rows."""
  directory = pathlib.Path(directory)
  runs = plan(base, collect(sweep, base), directory)
  states = [Workdir(r.workdir).check(r.config, overwrite=overwrite) for r in runs]
  todo = sum(state != "finished" for state in states)
  log.info("sweep: %d runs (%d to train) into %s", len(runs), todo, directory)
  started = time.perf_counter()
  vmapped = _vmap_seeds(base)
  busy, trained_seconds, trained = [], 0.0, 0
  labels = [f"member {i}/{len(runs)} {r.name} seed {r.seed}" for i, r in enumerate(runs, 1)]
  for batch in _batches(runs, states, vmapped):
    left = sum(s != "finished" for s in states[batch[0] :])
    eta = ""
    if trained and states[batch[0]] != "finished":
      eta = f"; the sweep's {left} runs to train take about {duration(trained_seconds / trained * left)}"
    beside = f", vmapped with {len(batch) - 1} more seeds" if len(batch) > 1 else ""
    for i in batch:
      log.info("sweep %s (%s%s)%s", labels[i], states[i], beside, eta)
    began = time.perf_counter()
    held = _train([runs[i] for i in batch], [labels[i] for i in batch], overwrite=overwrite)
    busy += held
    to_train = sum(states[i] != "finished" for i in batch) - len(held)
    if to_train:
      trained_seconds, trained = trained_seconds + time.perf_counter() - began, trained + to_train
  if busy:
    log.warning(
      "sweep: %d of %d runs were held by other processes; run the sweep again once they end to "
      "complete its summary",
      len(busy),
      len(runs),
    )
  rows = summarize(runs)
  if rows and jax.process_index() == 0:  # a multi-host sweep's summary is written once
    title, reference = figure_labels(sweep, directory)
    figures = write_summary(directory, rows, runs, title=title, reference=reference)
    record = {
      "command": shlex.join(["python", *sys.argv]),
      "machine": machine(),
      "config": json.loads(base.to_json()),
    }
    previous = directory / "sweep.json"
    if todo or not previous.is_file():  # a re-run that trains nothing keeps the original record
      write_json(previous, {**record, "wall_seconds": round(time.perf_counter() - started, 1)})
    log.info(
      "sweep: summary in %s%s",
      directory / "summary.md",
      f"; plots {', '.join(map(str, figures))}" if figures else "",
    )
  return rows


def figure_labels(sweep: Callable | None, directory: pathlib.Path) -> tuple[str, dict | None]:
  """The title and the paper's reference values of a sweep's figures: a config file's sweep takes
  its docstring's first paragraph (less an aside in parentheses: one line) and its REFERENCE; a
  sweep function from elsewhere gets the folder's name."""
  config_module = {}
  if sweep is not None and sweep.__module__.startswith(_CONFIG_MODULE):
    config_module = sweep.__globals__
  paragraph = " ".join((config_module.get("__doc__") or "").strip().split("\n\n")[0].split())
  title = paragraph.split(" (")[0].rstrip(".")
  return title or directory.name, config_module.get("REFERENCE")


def _vmap_seeds(base: config_dict.ConfigDict) -> bool:
  """Whether a member's seeds train as one vmapped program (`sweep.vmap_seeds`; None: on one GPU or
  TPU with exact Adam, where it pays. Not on CPUs, where it does not, nor with lazy_adam, whose
  choice of buffer size per batch becomes, vmapped over seeds, every size at every step)."""
  choice = base.sweep.get("vmap_seeds")
  devices = jax.device_count()
  if choice is None:
    return jax.default_backend() != "cpu" and devices == 1 and base.train.optimizer == "adam"
  if choice and devices > 1:
    raise ConfigError(
      f"sweep.vmap_seeds=True: vmapped seeds train on one device, and this process sees {devices}; "
      "set it False to split each run over the devices instead"
    )
  return choice


def _batches(runs: list[Member], states: list[str], vmapped: bool) -> list[list[int]]:
  """The runs' indices in the order they train: one run at a time, but a member's unfinished
  seeds together when seeds are vmapped and the model trains by gradient steps."""
  batches = []
  for name in dict.fromkeys(r.name for r in runs):
    member = [i for i, r in enumerate(runs) if r.name == name]
    unfinished = [i for i in member if states[i] != "finished"]
    if vmapped and len(unfinished) > 1 and runs[member[0]].config.model.name in training.FAMILIES:
      batches += [[i] for i in member if states[i] == "finished"] + [unfinished]
    else:
      batches += [[i] for i in member]
  return batches


def _train(members: list[Member], labels: list[str], *, overwrite: bool) -> list[Member]:
  """Trains `members` (one, or a member's seeds as one vmapped program, each in its own thread and
  workdir); returns those whose workdir another process holds."""
  seed_batch = training.SeedBatch(len(members)) if len(members) > 1 else None
  busy, failures = [], []

  def train(member: Member, label: str) -> None:
    try:
      experiment.train_and_evaluate(
        member.config, member.workdir, overwrite=overwrite, label=label, seed_batch=seed_batch
      )
    except WorkdirBusy as e:
      log.warning("sweep %s skipped: %s", label, e)
      busy.append(member)
    except BaseException as e:  # raised in the sweep's thread once the batch ends
      failures.append(e)
    finally:
      if seed_batch is not None:
        seed_batch.leave()

  if seed_batch is None:
    train(members[0], labels[0])
  else:
    threads = [
      threading.Thread(target=train, args=pair, daemon=True)
      for pair in zip(members, labels, strict=True)
    ]
    for thread in threads:
      thread.start()
    for thread in threads:
      thread.join()
  if failures:
    raise failures[0]
  return busy


def machine() -> dict:
  """Where the numbers were measured."""
  return {
    "platform": platform.platform(),
    "processor": platform.processor() or platform.machine(),
    "cpus": os.cpu_count(),
    "devices": [str(d) for d in jax.devices()],
    "device_kind": jax.devices()[0].device_kind,
    "python": platform.python_version(),
    "jax": jax.__version__,
    "numpy": np.__version__,
    "code": code_version(),
  }


def _mean_std(values: list[float]) -> tuple[float, float]:
  array = np.asarray(values, float)
  return float(array.mean()), float(array.std(ddof=1)) if len(array) > 1 else 0.0


def summarize(runs: list[Member]) -> list[dict]:
  """One row per member: its overrides and the mean and std over its finished seeds of each
  metric (members with none are left out)."""
  by_member: dict[str, list[tuple[Member, dict]]] = {}
  for member in runs:
    results = Workdir(member.workdir).results()
    if results is not None:
      by_member.setdefault(member.name, []).append((member, results))
  rows = []
  for name, entries in by_member.items():
    results = [r for _, r in entries]
    row = {"member": name, "overrides": entries[0][0].overrides, "seeds": len(results)}
    for split, key in (("validation", "valid"), ("test", "test")):
      for metric in METRICS:
        values = [r[split][metric] for r in results if metric in r[split]]
        if values:
          row[f"{key}_{metric}"], row[f"{key}_{metric}_std"] = _mean_std(values)
    row["best_epoch"] = _mean_std([r["best_epoch"] for r in results])[0]
    row["train_seconds"] = _mean_std([r["train_seconds"] for r in results])[0]
    rows.append(row)
  return rows


def write_summary(
  directory: pathlib.Path,
  rows: list[dict],
  runs: list[Member],
  *,
  title: str = "",
  reference: dict | None = None,
) -> list[pathlib.Path]:
  """Writes `summary.csv`, `summary.md`, `summary.json` and the plots; returns the plots' paths."""
  columns = [c for c in rows[0] if c != "overrides"]
  buffer = io.StringIO()
  writer = csv.writer(buffer)
  writer.writerow(["member", "overrides", *columns[1:]])
  for row in rows:
    writer.writerow(
      [row["member"], json.dumps(row["overrides"], sort_keys=True)]
      + [_fmt(row.get(c)) for c in columns[1:]]
    )
  (directory / "summary.csv").write_text(buffer.getvalue())
  lines = [
    "| member | seeds | val HR@10 | val NDCG@10 | test HR@10 | test NDCG@10 | test full HR@10 | "
    "test full NDCG@10 | best epoch | train s |",
    "|---|---|---|---|---|---|---|---|---|---|",
  ]
  for row in rows:
    cells = [
      _pm(row, f"{split}_{metric}")
      for split, metric in (
        ("valid", "hr@10"),
        ("valid", "ndcg@10"),
        ("test", "hr@10"),
        ("test", "ndcg@10"),
        ("test", "full_hr@10"),
        ("test", "full_ndcg@10"),
      )
    ]
    lines.append(
      f"| {row['member']} | {row['seeds']} | {' | '.join(cells)} | {row['best_epoch']:.1f} | "
      f"{row['train_seconds']:.0f} |"
    )
  (directory / "summary.md").write_text("\n".join(lines) + "\n")
  write_json(directory / "summary.json", rows)
  curves = {}
  for member in runs:
    run = Workdir(member.workdir)
    if run.results() is not None:  # finished members only
      curves.setdefault(member.name, []).append(run.metrics())
  base = runs[0].config
  return plots.sweep_figures(
    directory,
    rows,
    curves,
    title=title,
    dataset=base.data.name,
    epochs=base.train.epochs,
    reference=reference,
  )


def _fmt(value) -> str:
  return f"{value:.6g}" if isinstance(value, float) else str(value)


def _pm(row: dict, key: str) -> str:
  """The mean, with ± the std over seeds where there are two or more."""
  if key not in row:
    return "–"
  if row["seeds"] < 2:
    return f"{row[key]:.4f}"
  return f"{row[key]:.4f} ± {row[key + '_std']:.4f}"
