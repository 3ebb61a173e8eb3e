"""What the end-to-end fine-tuning benchmarks share: the flags both systems take, and
running each system in a fresh Python process of its own (``--only``), so neither
inherits the other's warm allocator or random state."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch


def add_system_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                   help="autocast on both sides")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--only", choices=["ours", "transformers"], default=None)
    p.add_argument("--ours-out", default=None, help="keep our run directory here")
    p.add_argument("--no-progress", action="store_true")


def run_systems(a: argparse.Namespace, script: str,
                ours: Callable[[argparse.Namespace, Path], dict],
                peer: Callable[[argparse.Namespace], dict]) -> list[dict] | None:
    """With ``--only``: run that system here, print its JSON line, return None. Without:
    rerun ``script`` once per system and return their results (ours first)."""
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.only:
        with tempfile.TemporaryDirectory() as tmp:
            r = (ours(a, Path(a.ours_out) if a.ours_out else Path(tmp) / "ours")
                 if a.only == "ours" else peer(a))
        print(json.dumps(r), flush=True)
        return None
    results = []
    for system in ("ours", "transformers"):
        cmd = [sys.executable, script, *sys.argv[1:], "--only", system]
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
        if proc.returncode:
            sys.exit(f"{system} run failed (exit {proc.returncode}): {' '.join(cmd)}")
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(json.dumps(results[-1]), flush=True)
    return results


def train_peer(model: torch.nn.Module, rows: list[dict], collate: Callable[[list[dict]], dict],
               a: argparse.Namespace) -> dict:
    """The peer's training loop, as transformers' Trainer would run it (Trainer itself needs
    ``accelerate``, which the project does not depend on), built from transformers' own
    pieces: fused AdamW (Trainer's default with torch >= 2.8) with weight decay 0.01 off
    biases and norms, 10% linear warm-up then linear decay, its length-grouped sampler
    (mega-batches of 50), gradient clipping at 1, ``a.epochs`` passes of ``a.batch_size``.
    Returns the steps, the examples seen, the time spent in steps and the wall time."""
    import time

    import numpy as np
    from transformers import get_linear_schedule_with_warmup
    from transformers.trainer_pt_utils import get_length_grouped_indices

    from maskedlm.training.precision import autocast
    total = int(round(a.epochs * int(np.ceil(len(rows) / a.batch_size))))
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01},
                             {"params": no_decay, "weight_decay": 0.0}], lr=a.lr, fused=True)
    sched = get_linear_schedule_with_warmup(opt, int(0.1 * total), total)
    gen = torch.Generator().manual_seed(a.seed)
    model.train()
    step, seen, train_time = 0, 0, 0.0
    t0 = time.perf_counter()
    while step < total:
        order = list(get_length_grouped_indices([len(r["input_ids"]) for r in rows],
                                                a.batch_size, generator=gen))
        for s in range(0, len(order), a.batch_size):
            t1 = time.perf_counter()
            batch = collate([rows[i] for i in order[s:s + a.batch_size]])
            with autocast(a.precision, torch.device("cpu")):
                loss = model(**batch).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            train_time += time.perf_counter() - t1
            step, seen = step + 1, seen + len(batch["input_ids"])
            if step >= total:
                break
    model.eval()
    return {"steps": step, "seen": seen, "train_time": train_time,
            "wall": time.perf_counter() - t0}
