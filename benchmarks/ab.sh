#!/usr/bin/env bash
# Throughput of a commit against the working tree, side by side: `python -m benchmarks.run` of
# each, alternated for ROUNDS rounds (before, after, before, after, ...) so machine noise hits both,
# then the median seconds per epoch and peak RSS of each data set.
#
#   DMF_DATA_DIR=../shared/data bash benchmarks/ab.sh BEFORE_REV [ROUNDS [run.py flags...]]
#
# Results: benchmarks/results/ab-<before>-<after>/ (each run's report and summary.md).
set -euo pipefail
cd "$(dirname "$0")/.."
before=$(git rev-parse --short=12 "$1")
rounds=${2:-3}
shift $(( $# < 2 ? $# : 2 ))
scratch=$(mktemp -d)
trap 'git worktree remove --force "$scratch/before" >/dev/null 2>&1; rm -rf "$scratch"' EXIT
git worktree add -q --detach "$scratch/before" "$before"
after="$(git rev-parse --short=12 HEAD)$(git diff --quiet HEAD -- dmf_jax benchmarks || echo +dirty)"
after_tree=$PWD
out="$PWD/benchmarks/results/ab-$before-$after"
mkdir -p "$out"
for round in $(seq "$rounds"); do
  for side in before after; do
    tree=$([ $side = before ] && echo "$scratch/before" || echo "$after_tree")
    (cd "$tree" && python -m benchmarks.run --out="$out" --name="$side-r$round" "$@" >/dev/null)
  done
done
python - "$out" "$rounds" <<'PY'
import json, pathlib, statistics, sys
out, rounds = pathlib.Path(sys.argv[1]), int(sys.argv[2])
reports = {side: [json.loads((out / f"{side}-r{r}.json").read_text()) for r in range(1, rounds + 1)] for side in ("before", "after")}
loads = [x for side in reports.values() for rep in side for x in (rep["load_min"], rep["load_max"])]
lines = [f"| data set | first layer | before s/epoch | after s/epoch | after / before | peak RSS MB before | after |", "|---|---|---|---|---|---|---|"]
for name in reports["before"][0]["datasets"]:
  def runs(side):
    return [r for rep in reports[side] for r in rep["datasets"][name]["ours"]]
  seconds = {side: statistics.median(s for r in runs(side) for s in r["epoch_s"]) for side in reports}
  rss = {side: statistics.median(r["peak_rss_mb"] for r in runs(side)) for side in reports}
  lines.append(f"| {name} | {runs('after')[0]['first_layer']} | {seconds['before']:.2f} | {seconds['after']:.2f} | {seconds['after'] / seconds['before']:.3f} | {rss['before']:.0f} | {rss['after']:.0f} |")
lines.append(f"\n{rounds} alternating rounds, medians; load average (1 min) {min(loads)} to {max(loads)}.")
text = "\n".join(lines) + "\n"
(out / "summary.md").write_text(text)
print(text)
PY
