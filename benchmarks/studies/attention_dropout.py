"""Attention with dropout on the probabilities, forward + backward, on CPU: stock SDPA with
``dropout_p`` (what ``transformers``' BERT calls in training), the untiled math path
with our cheap dropout (the kernel before the tiling), and ``kernels.attention_with_dropout``
(tiled), interleaved in one process, the best of ``--reps`` runs each. q, k and v are
the heads of a fused qkv projection (strided views), as in the models.

    python benchmarks/studies/attention_dropout.py                 # MiniLM QA shape and others
    python benchmarks/studies/attention_dropout.py --tiles 17,19,21  # the tile-size sweep
"""

from __future__ import annotations

import argparse
import json
import time
from functools import partial

import torch
import torch.nn.functional as F

from maskedlm.models import kernels
from maskedlm.runtime import tune_allocator

SHAPES = [(32, 12, 176, 32), (32, 12, 384, 32), (64, 4, 128, 64), (32, 12, 64, 32), (16, 12, 512, 64)]


def untiled(q, k, v, mask, p):
    scores = (q * q.shape[-1] ** -0.5) @ k.transpose(-1, -2)
    if mask is not None:
        scores.masked_fill_(~mask, float("-inf"))
    return kernels.dropout(scores.softmax(-1), p, True) @ v


def sdpa(q, k, v, mask, p):
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--tiles", default="19", help="log2 tile sizes to time, comma-separated")
    ap.add_argument("--p", type=float, default=0.1)
    a = ap.parse_args()
    tune_allocator()
    torch.manual_seed(0)
    for B, nh, T, hd in SHAPES:
        x = torch.randn(B, T, 3 * nh * hd, requires_grad=True)
        grad = torch.randn(B, nh, T, hd)
        mask = torch.ones(B, 1, 1, T, dtype=torch.bool)
        mask[::2, ..., T - T // 8:] = False  # padding in half the rows
        systems = {"sdpa": sdpa, "untiled": untiled}
        for t in a.tiles.split(","):
            systems[f"tiled_2^{t}"] = partial(_with_tile, int(t))
        best = {name: float("inf") for name in systems}
        for _ in range(a.reps):
            for name, fn in systems.items():
                t0 = time.perf_counter()
                q, k, v = x.view(B, T, 3, nh, hd).permute(2, 0, 3, 1, 4).unbind(0)
                fn(q, k, v, mask, a.p).backward(grad)
                x.grad = None
                best[name] = min(best[name], time.perf_counter() - t0)
        ms = {name: round(s * 1e3, 1) for name, s in best.items()}
        print(json.dumps({"shape": [B, nh, T, hd], "ms": ms,
                          "sdpa_over_tiled": round(best["sdpa"] / best[f"tiled_2^{a.tiles.split(',')[0]}"], 2)}))


def _with_tile(log2: int, q, k, v, mask, p):
    saved, kernels.ATTENTION_TILE = kernels.ATTENTION_TILE, 1 << log2
    try:
        return kernels.attention_with_dropout(q, k, v, mask, p)
    finally:  # the forward keeps the tile size for its backward
        kernels.ATTENTION_TILE = saved


if __name__ == "__main__":
    main()
