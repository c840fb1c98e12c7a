#!/usr/bin/env bash
# Issue 25's GPU checks in one device call, each phase under its own time limit so a slow one cannot eat the rest:
#   tests     tests/test_cuda.py and tests/test_device.py: a tiny run trains and validates on the GPU (fp32, bf16);
#   update    bench update on the GPU shapes (Qwen2.5-0.5B, SmolLM2-135M; random init, bf16);
#   entropy   bench entropy on the GPU;
#   rollout   bench rollout on the GPU, Qwen2.5-0.5B's shape first: our sampler and HF generate(), then the static
#             KV cache levers: HF generate() with a static cache (compiled by transformers), our loop over a static
#             cache (replicate/bench/static_decode.py) eager and compiled to CUDA graphs; recompiles and graph
#             breaks are logged. Each bench rewrites its JSON after each shape (rollout also after its first calls,
#             which hold the compiles), so a phase cut off at its limit keeps what it finished.
# Here first: bash scripts/device_wheels.sh. Then run(command="bash scripts/device_check.sh", carry=[".whl"],
# timeout_s=480): about 7 minutes; a rerun can name phases: bash scripts/device_check.sh rollout.
# Exit 0 when every phase passed, 1 when one failed or ran out of time, 2 without a GPU, 3 when the project does
# not import there. Without a GPU it stops at once; DEVICE=cpu runs the same flow on a CPU (a dry run of the script).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-results/device}
PY=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
mkdir -p "$OUT"

phase() {  # phase NAME SECONDS COMMAND...: one line with its exit status and seconds, whatever happens
  local name=$1 limit=$2 t0=$SECONDS rc; shift 2
  echo "== $name (limit ${limit}s)"
  timeout -k 10 "$limit" "$@"; rc=$?
  echo "== $name: exit $rc in $((SECONDS - t0))s"
  [ "$rc" -eq 0 ] || failed+=("$name:$rc")
}

preflight() {  # the GPU, the carried wheels unpacked (no pip needed), and the project importing, before any phase
  if [ "$DEVICE" = cuda ] && ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "device_check: no CUDA GPU here (torch.cuda.is_available() is False); run it on the lent GPU machine"
    return 2
  fi
  if [ -d .whl ]; then
    for w in .whl/*.whl; do "$PY" -m zipfile -e "$w" /tmp/site || { echo "device_check: cannot unpack $w"; return 3; }; done
    export PYTHONPATH=/tmp/site:$PWD
  else
    export PYTHONPATH=$PWD
  fi
  "$PY" - <<'PY' || { echo "device_check: the project does not import here (carry .whl: bash scripts/device_wheels.sh)"; return 3; }
import torch, transformers, typing_extensions, importlib.metadata as md
import math_verify, replicate.specs, replicate.bench.core  # noqa: F401  (pydantic, the verifier, the bench)
print("gpu", torch.cuda.get_device_name() if torch.cuda.is_available() else None, "| torch", torch.__version__, "| transformers", transformers.__version__,
      "| typing_extensions", md.version("typing_extensions"), "| pydantic", md.version("pydantic"))
PY
}

main() {
  preflight || return $?
  export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
  failed=()
  local phases=("$@")
  [ ${#phases[@]} -gt 0 ] || phases=(tests update entropy rollout)
  for p in "${phases[@]}"; do
    case $p in
      tests) phase tests 90 "$PY" -m pytest tests/test_cuda.py tests/test_device.py -q -p no:cacheprovider ;;
      update) phase update 75 "$PY" -m replicate bench update --device $DEVICE --reps 3 --out "$OUT" ;;
      entropy) phase entropy 45 "$PY" -m replicate bench entropy --device $DEVICE --out "$OUT" ;;
      rollout) TORCH_LOGS=recompiles,graph_breaks phase rollout 240 \
                 "$PY" -m replicate bench rollout --device $DEVICE --reps 2 --out "$OUT" ;;
      *) echo "device_check: no phase $p (tests, update, entropy, rollout)"; return 2 ;;
    esac
  done
  ls -l "$OUT"
  if [ ${#failed[@]} -gt 0 ]; then echo "device_check: failed or cut off: ${failed[*]}"; return 1; fi
  echo "device_check: every phase passed"
}

main "$@" 2>&1 | tee "$OUT/log.txt"
exit "${PIPESTATUS[0]}"
