#!/usr/bin/env bash
# The GPU path: the default run and the 400-coin per-coin run with trainer=gpu, each
# printed with its wall time and peak GPU memory (nvidia-smi sampled every 200 ms: the
# whole device, CUDA context included; and torch.cuda.max_memory_allocated of the run's
# process, from summary.json).
#
#   bench/gpu.sh                 # PYTHON=path/to/python to use another interpreter
#
# Needs an NVIDIA GPU and a CUDA build of torch (constraints.txt pins the CPU build: on a
# GPU machine install torch from the CUDA index first). Without either it stops at once
# with exit status 2 and says which is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
    echo "bench/gpu.sh: no NVIDIA GPU here (nvidia-smi is missing or finds none); the GPU path cannot run" >&2
    exit 2
fi
if ! "$PYTHON" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "bench/gpu.sh: torch $("$PYTHON" -c 'import torch; print(torch.__version__)') sees no CUDA GPU (a CPU build?): install a CUDA build of torch" >&2
    exit 2
fi

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader

run_case() {  # name, then train.py overrides
    local name=$1 dir="$out/$1" smi="$out/$1.smi"
    shift
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 >"$smi" &
    local sampler=$!
    local start end
    start=$(date +%s.%N)
    "$PYTHON" train.py trainer=gpu "$@" "hydra.run.dir=$dir" >"$out/$name.log" 2>&1 || {
        kill "$sampler"
        echo "bench/gpu.sh: $name failed; the end of its log:" >&2
        tail -30 "$out/$name.log" >&2
        exit 1
    }
    end=$(date +%s.%N)
    kill "$sampler"
    wait "$sampler" 2>/dev/null || true
    "$PYTHON" - "$name" "$start" "$end" "$smi" "$dir/summary.json" <<'PY'
import json, sys
name, start, end, smi, summary = sys.argv[1:]
used = [int(line) for line in open(smi) if line.strip().isdigit()]
peak = json.load(open(summary)).get("gpu_max_memory_allocated_bytes")
torch_peak = "n/a" if peak is None else f"{peak / 2**20:,.0f} MiB"
print(f"{name:<22} | {float(end) - float(start):8.1f} s | "
      f"{max(used, default=0):11,} MiB | {torch_peak:>12}")
PY
}

echo "case                   |       wall | nvidia-smi peak | torch peak (run process)"
run_case default
run_case per_coin_400 experiment=per_coin_400 "store.root=$out/artifacts"
