#!/usr/bin/env bash
# One call on a lent GPU that trains what the report still lacks, and packs the finished runs'
# records to bring back. Made here, before the call:
#
#   git bundle create .device/head.bundle HEAD      # .device/ ignored (.git/info/exclude), carried
#
# and run there, from the repository root, with $OUT the folder that comes back:
#
#   bash benchmarks/gpu_report.sh PROCESSES SECONDS [sweep folder to train again ...]   # e.g. 12 480
#
# The device's copy of the tree has a git folder of its own, not this one, so runs would record a
# wrong commit: HEAD is fetched from the bundle first and the runs record it (clean when the tree
# is HEAD's). The committed records seed runs/ (a run with its results.json is finished and not
# trained again), less the sweep folders named (say, records of older code); then the command of
# every sweep with a run left (`python -m dmf_jax.report --commands --pending=runs`) runs with
# `gpu_sweeps.sh` (PROCESSES at once, until SECONDS). The finished runs' records (config,
# results, per-epoch metrics, ranks) and the sweeps' summaries come back as $OUT/records.tgz, to
# unpack over runs/ here; then each sweep's command, run again here, trains what is left and
# rewrites its summary, and `--collect` copies them to results/ for the commit.
set -uo pipefail
cd "$(dirname "$0")/.."
processes=$1 seconds=$2
shift 2
if [[ -f .device/head.bundle ]]; then
  { [[ -d .git ]] || git init -q; } && git fetch -q .device/head.bundle HEAD && git reset -q FETCH_HEAD
fi
echo "code: $(git rev-parse --short=12 HEAD)$(git diff --quiet HEAD || echo +dirty)"
mkdir -p runs
cp -rn results/. runs/
for folder in "$@"; do
  rm -rf "runs/$folder"
done
python3 -m dmf_jax.report --commands --pending=runs | bash benchmarks/gpu_sweeps.sh "$processes" "$seconds"
cd runs
{
  find . -name results.json | while read -r results; do
    for name in config.json results.json metrics.jsonl ranks.npz; do
      [[ -f ${results%/*}/$name ]] && echo "${results%/*}/$name"
    done
  done
  find . -maxdepth 2 \( -name 'summary.*' -o -name sweep.json \)
} | tar czf "${OUT:-..}/records.tgz" -T -
echo "records: $(find . -name results.json | wc -l) finished runs in ${OUT:-..}/records.tgz"
