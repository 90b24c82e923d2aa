#!/usr/bin/env bash
# Trains one sweep on one GPU with several processes at once, then writes its summary. A small
# model's steps leave the GPU mostly idle between kernel launches, so N processes train about N
# runs in the time of one; the sweep's workdir locks hand each process runs no other holds (a
# process skips a run another is training). Each process allocates GPU memory as it needs it, so
# several of these scripts can share one GPU (a fixed share each ran out on 2 x 4 processes).
#
#   bash benchmarks/gpu_sweeps.sh PROCESSES WORKDIR CONFIG [launch.py flags...]
#   bash benchmarks/gpu_sweeps.sh 4 runs/beyond_ml100k configs/beyond.py --config.sweep.num_seeds=1
#
# The last pass runs alone: it trains whatever a process left (one killed meanwhile, say) and
# writes summary.{csv,md,json}, the plots and sweep.json.
set -euo pipefail
cd "$(dirname "$0")/.."
processes=$1 workdir=$2 config=$3
shift 3
mkdir -p "$workdir"
export XLA_PYTHON_CLIENT_PREALLOCATE=false
for ((i = 1; i <= processes; i++)); do
  python3 launch.py --config="$config" --workdir="$workdir" "$@" >"$workdir.process$i.log" 2>&1 &
  sleep 3 # each takes the next free run
done
wait
python3 launch.py --config="$config" --workdir="$workdir" "$@" >>"$workdir.log" 2>&1
