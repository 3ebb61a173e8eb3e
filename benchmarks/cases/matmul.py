"""The matmul peak: the FLOP/s that model FLOP utilisation is measured against."""

from __future__ import annotations

import time
from typing import Any

from cases.common import sync


def child_matmul(p: dict[str, Any]) -> dict[str, Any]:
    import torch
    n, dev = 2048, p["device"]
    dtype = torch.bfloat16 if p["precision"] == "bf16" else torch.float32
    a = torch.randn(n, n, device=dev).to(dtype)
    b = torch.randn(n, n, device=dev).to(dtype)
    reps = 10 if dev == "cpu" else 200
    best = 0.0
    for _ in range(p["repeats"] + 1):
        sync(dev)
        t = time.perf_counter()
        for _ in range(reps):
            a @ b
        sync(dev)
        best = max(best, 2 * n**3 * reps / (time.perf_counter() - t))
    return {"value": best / 1e9, "windows": [best / 1e9]}
