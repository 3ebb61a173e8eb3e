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
