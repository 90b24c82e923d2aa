#!/usr/bin/env bash
# The benchmark on one GPU, in about 12 minutes: whole epochs (every step timed) of the ML-1M-shaped
# synthetic set, and of ML-100k and Amazon Music when $DMF_DATA_DIR holds them, with full-ranking
# evaluation of all their users. Writes benchmarks/results/<machine>.{json,md}; on the GPU, also
# three seeds of ML-100k trained one by one against vmapped together (benchmarks/vmap_seeds.py),
# and the 1M x 1M synthetic set with lazy_adam and exact Adam (2,000 steps each, then the
# evaluation of its million users: <machine>-large.{json,md}; most of its time is the host's data
# generation and split).
#
#   bash benchmarks/gpu.sh           # on a machine with a GPU and jax's CUDA plugin
#   bash benchmarks/gpu.sh --cpu     # the same steps on the CPU, shortened: a test of the script
#
# The GPU machines here cannot reach a package registry: a missing pure-Python dependency
# (ml-collections) is installed from wheels in .whl/ when that folder exists.
set -euo pipefail
cd "$(dirname "$0")/.."

platform=gpu
if [[ "${1:-}" == "--cpu" ]]; then
  platform=cpu
  shift
fi

if ! python3 -c "import ml_collections" 2>/dev/null; then
  python3 -m pip install -q --no-index --find-links .whl ml-collections
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

datasets=ml1m_synth
for name in ml100k amusic; do
  case $name in
    ml100k) file=ml-100k/u.data ;;
    amusic) file=amazon-music/Amazon_ratings_Digital_Music_pruned.txt ;;
  esac
  if [[ -n "${DMF_DATA_DIR:-}" && -f "$DMF_DATA_DIR/$file" ]]; then
    datasets="$name,$datasets"
  fi
done

if [[ $platform == gpu ]]; then
  export JAX_PLATFORMS=cuda
  python3 -c "import jax; assert jax.default_backend() == 'gpu', jax.devices()"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  steps=(--full-epochs)
else
  export JAX_PLATFORMS=cpu
  datasets=ml100k
  steps=(--max-steps=200)
fi

python3 -m benchmarks.run --datasets="$datasets" --epochs=3 "${steps[@]}" "$@"

machine=$(python3 -c "from benchmarks import run; print(run.machine_name(run.machine_info()))")
for arg in "$@"; do
  [[ $arg == --name=* ]] && machine=${arg#--name=}
done

if [[ $platform == gpu && $datasets == *ml100k* ]]; then
  python3 -m benchmarks.vmap_seeds --dataset=ml100k --seeds=3 |
    tee "benchmarks/results/$machine-vmap_seeds.txt"
fi

# lazy_adam and exact Adam on the 1M x 1M synthetic set: a fixed number of steps each, then the
# evaluation of every user (sampled metrics) and of eval.full_ranking_users of them (full ranking).
if [[ $platform == gpu ]]; then
  python3 -m benchmarks.run --datasets=large_synth --optimizers=lazy_adam,adam --epochs=1 \
    --max-steps=2000 --name="$machine-large"
fi
