#!/usr/bin/env bash
# Issue 25's GPU arms in one device call, each phase under its own time limit so a slow one cannot eat the rest:
#   1. tests/test_cuda.py and tests/test_device.py: a tiny run trains and validates on the GPU (fp32 and bf16);
#   2. bench update + entropy on the GPU shapes (SmolLM2-135M, Qwen2.5-0.5B, random init, bf16);
#   3. bench rollout on the GPU (Qwen2.5-0.5B's shape first): our sampler and HF generate(), then the static KV
#      cache levers: HF generate() with a static cache (compiled by transformers), our loop over a static cache
#      (replicate/bench/static_decode.py) eager and compiled to CUDA graphs; first calls hold the compiles, and the
#      JSON is rewritten after each shape, so a phase cut off at its limit keeps the shapes it finished.
# Here first: bash scripts/device_wheels.sh. Then run(command="bash scripts/device_check.sh", carry=[".whl"],
# timeout_s=480): about 7 minutes, leaving a rerun's room in a 15-minute lease. Without a GPU it stops at once.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-results/device}
mkdir -p "$OUT"
exec > >(tee "$OUT/log.txt") 2>&1
PY=${PYTHON:-python3}
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "device_check: no CUDA GPU here (torch.cuda.is_available() is False); run it on the lent GPU machine"
  exit 2
fi
if [ -d .whl ]; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "device_check: the carried wheels did not install"; exit 3; }
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
"$PY" -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
phase() {  # phase NAME SECONDS COMMAND...: one line with its exit status and seconds, whatever happens
  local name=$1 limit=$2 t0=$SECONDS; shift 2
  echo "== $name (limit ${limit}s)"
  timeout "$limit" "$@"; local rc=$?
  echo "== $name: exit $rc in $((SECONDS - t0))s"
}
phase cuda-tests 90 "$PY" -m pytest tests/test_cuda.py tests/test_device.py -q -p no:cacheprovider
phase bench-update 60 "$PY" -m replicate bench update --device cuda --out "$OUT"
phase bench-entropy 30 "$PY" -m replicate bench entropy --device cuda --out "$OUT"
phase bench-rollout 240 "$PY" -m replicate bench rollout --device cuda --reps 3 --out "$OUT"
ls -l "$OUT"
