"""kernels.rotary (fused, its own backward) against the stock formula, forward + backward.

    PYTHONPATH=src python benchmarks/rotary_kernel.py

One ModernBERT-mini layer's queries and keys (B 32, T 128, 4 heads of 64), fp32, CPU;
15 interleaved timings of each after 3 warm-ups; medians and their ratio.
"""

from __future__ import annotations

import os
import statistics
import time

import torch

from maskedlm.models import kernels


def main() -> None:
    torch.manual_seed(0)
    B, T, nh, hd = 32, 128, 4, 64
    x = torch.randn(B, T, 2, nh, hd)
    ang = torch.randn(B, T, 1, 1, hd // 2)
    cos, sin = ang.cos(), ang.sin()

    def step(use_stock: bool) -> float:
        xx = x.clone().requires_grad_(True)
        t = time.perf_counter()
        with kernels.stock(use_stock):
            y = kernels.rotary(xx, cos, sin)
            y.backward(torch.ones_like(y))
        return time.perf_counter() - t

    print(f"load average {os.getloadavg()[0]:.1f}, {torch.get_num_threads()} threads")
    for _ in range(3):
        step(True), step(False)
    times: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(15):
        for use_stock in (False, True):
            times[use_stock].append(step(use_stock))
    fused, stock = statistics.median(times[False]), statistics.median(times[True])
    print(f"fused {fused * 1e3:.1f} ms, stock {stock * 1e3:.1f} ms, stock / fused {stock / fused:.2f}")


if __name__ == "__main__":
    main()
