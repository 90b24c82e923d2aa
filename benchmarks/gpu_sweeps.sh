#!/usr/bin/env bash
# Trains sweeps on one GPU with several processes at once, until a deadline. A small model's steps
# leave the GPU mostly idle between kernel launches, so N processes train about N runs in the time
# of one. Every process works down the same list of sweep commands (one per line on stdin); the
# runs' workdir locks hand each process runs no other holds (a process skips a run another is
# training). Processes allocate GPU memory as they need it.
#
#   python3 -m dmf_jax.report --commands | bash benchmarks/gpu_sweeps.sh 8 540   # the report's sweeps
#   echo "python launch.py --config=configs/beyond.py --workdir=runs/beyond_ml100k" |
#     bash benchmarks/gpu_sweeps.sh 4 300
#
# A lent machine's copy of the tree carries no git history of its own, so its runs would record a
# wrong commit: bring HEAD along (`git bundle create .device/head.bundle HEAD`, .device ignored and
# carried) and there run `git fetch -q .device/head.bundle HEAD && git reset -q FETCH_HEAD` first.
# A fresh machine has no runs/: `cp -r results runs` there first, and the recorded runs (a run
# with its results.json is finished) are not trained again.
#
# At the deadline every run still training is stopped with SIGTERM (it resumes from its last
# checkpoint). Once the processes end, one pass alone writes each sweep's summary, plots and
# sweep.json, in the time left. Logs: runs/gpu_sweeps.<pid>.process<i>.log (one set per call, so
# calls side by side keep their own).
set -uo pipefail
cd "$(dirname "$0")/.."
processes=$1 seconds=$2
deadline=$((SECONDS + seconds))
mapfile -t commands
export XLA_PYTHON_CLIENT_PREALLOCATE=false
mkdir -p runs

run_all() { # runs each command in turn while time is left
  local command left
  for command in "${commands[@]}"; do
    left=$((deadline - SECONDS))
    ((left > 10)) || return 0
    timeout -s TERM "$left" ${command/#python /python3 }
  done
}

for ((i = 1; i <= processes; i++)); do
  run_all >"runs/gpu_sweeps.$$.process$i.log" 2>&1 &
  sleep 3 # each takes the next free run
done
wait
run_all >>"runs/gpu_sweeps.$$.log" 2>&1
