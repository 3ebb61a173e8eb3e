"""CPU kernels the blocks call by name: dropout, the word-embedding gradient, attention,
and ModernBERT's rotary positions.

Each one is a measured saving on CPU (figures: ``torch.profiler`` on this 2-core machine,
``benchmarks/RESULTS.md``) and computes what stock PyTorch computes: the same function
with another random stream (dropout), the same numbers (embedding, attention) or the same
to rounding (rotary). CUDA takes PyTorch's fused kernels, except for the rotary function,
which runs (as it always has) on every device.

One switch turns them all off, to compare against stock PyTorch (``nn.Embedding``,
``F.dropout``, SDPA with ``dropout_p``, transformers' rotary formula; ONNX export runs
under it): the context manager :func:`stock`, or the
environment variable ``MASKEDLM_STOCK_KERNELS=1``; both are read at call time.

>>> with stock():  # doctest: +SKIP
...     loss = model(**batch).loss  # nn.Embedding, F.dropout and SDPA inside
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

_STOCK: ContextVar[bool | None] = ContextVar("maskedlm_stock_kernels", default=None)


def stock_enabled() -> bool:
    """True inside :func:`stock` (or when ``MASKEDLM_STOCK_KERNELS`` is set to a value
    other than ``0``): the blocks then use stock PyTorch everywhere."""
    inside = _STOCK.get()
    if inside is not None:
        return inside
    return os.environ.get("MASKEDLM_STOCK_KERNELS", "0") not in ("", "0")


@contextmanager
def stock(enabled: bool = True) -> Iterator[None]:
    """Within this block the model uses stock PyTorch kernels (``stock(False)``: ours,
    whatever the environment says). Forward passes pick their kernels, backward follows.

    >>> with stock():  # doctest: +SKIP
    ...     out = model(ids)
    """
    token = _STOCK.set(enabled)
    try:
        yield
    finally:
        _STOCK.reset(token)


# ----------------------------------------------------------------------------- dropout
def drop_mask(shape: torch.Size, p: float, device: torch.device, kept: bool = False) -> torch.Tensor:
    """Bernoulli(p) boolean mask, True where dropped (``kept=True``: its complement from
    the same draw, True where kept), from 16 random bits per element.

    The 64-bit words come from NumPy's PCG64 on the CPU: about 3x faster than ``torch.randint``
    over the int64 range (Mersenne Twister) on this machine, 6 ms against 18 ms for the 3 M
    words of one MiniLM QA layer's attention mask. The generator is seeded with two draws
    from torch's default generator, so ``torch.manual_seed`` and saved RNG states still
    decide every mask. Each 16-bit lane of a word is compared with p * 2^16.
    """
    n = math.prod(shape)
    n_words = (n + 3) // 4
    if device.type == "cpu":
        seed = torch.randint(0, 2**63 - 1, (2,), dtype=torch.int64).tolist()
        words = torch.from_numpy(np.random.PCG64(seed).random_raw(n_words).view(np.int64))
    else:
        words = torch.randint(-2**63, 2**63 - 1, (n_words,), dtype=torch.int64, device=device)
    lanes = words.view(torch.int16)[:n].view(shape)
    threshold = round(p * 65536) - 32768
    return lanes >= threshold if kept else lanes < threshold


class DropoutFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, p: float) -> torch.Tensor:  # type: ignore[override]
        drop = drop_mask(x.shape, p, x.device)
        ctx.scale = 1.0 / (1.0 - p)
        ctx.save_for_backward(drop)
        return x.mul(ctx.scale).masked_fill_(drop, 0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        (drop,) = ctx.saved_tensors
        return grad.mul(ctx.scale).masked_fill_(drop, 0), None


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Inverted dropout; on CPU from a cheap 16-bit mask, elsewhere ``F.dropout``.

    On CPU, dropout is the largest cost after the matmuls: ``F.dropout`` (``bernoulli_``)
    draws one Mersenne-Twister number per element, about 9 ns each on this machine, 9%
    of a mini pretraining step (32 x 128). Here :func:`drop_mask` gives 64 random bits per
    four elements (2^-16 resolution on p) and a 1-byte mask is kept for the backward:
    a dropout forward + backward about 4x cheaper.
    """
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu" or p >= 1.0 or stock_enabled():
        return F.dropout(x, p, True)
    return DropoutFunction.apply(x, p)


class Dropout(nn.Module):
    """``nn.Dropout`` with the CPU fast path of :func:`dropout`."""

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability must be in [0, 1], got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


# ----------------------------------------------------------------------------- embedding
class ReusedGradLookup(torch.autograd.Function):
    """``F.embedding`` whose backward writes into a spare (V, H) tensor of the module."""

    @staticmethod
    def forward(ctx, weight: torch.Tensor, ids: torch.Tensor, module: TokenEmbedding) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(ids)
        ctx.module = module
        return F.embedding(ids, weight, module.padding_idx)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        (ids,) = ctx.saved_tensors
        module: TokenEmbedding = ctx.module
        buf, module._spare = module._spare, None
        weight = module.weight
        # Reuse only a tensor nobody else can see: the parameter's .grad was reset to
        # None (no accumulation into it) and no Python name holds the old gradient
        # (getrefcount: ``buf`` and its own argument), and it is not a view of something else.
        if (buf is None or weight.grad is not None or sys.getrefcount(buf) > 2 or buf._base is not None
                or buf.shape != weight.shape or buf.dtype != grad.dtype or buf.device != grad.device):
            buf = None
        if buf is None:
            buf = torch.zeros(weight.shape, dtype=grad.dtype, device=grad.device)
        else:
            buf.zero_()
        buf.index_add_(0, ids.reshape(-1), grad.reshape(-1, grad.shape[-1]))
        if module.padding_idx is not None:  # the padding row gets no gradient
            buf[module.padding_idx] = 0
        return buf, None, None


class TokenEmbedding(nn.Embedding):
    """The word-embedding table: ``nn.Embedding`` that reuses its gradient tensor on CPU.

    PyTorch's embedding backward allocates a fresh zeroed (V, H) gradient every step. For
    a 30k x 384 table that is 47 MB, above glibc's largest mmap threshold (32 MB), so each
    step maps it fresh from the kernel and page-faults it in: ~12 ms on this CPU, about 6%
    of a MiniLM fine-tuning step, where zeroing a tensor already in memory takes 1 ms.
    Here the gradient of the previous step, once ``zero_grad(set_to_none=True)`` has let
    go of it, is zeroed in place and filled with ``index_add_``: the same values and the
    same autograd semantics (accumulation, tied weights and DDP take the gradient from
    autograd as usual). CUDA, eval, :func:`stock` and the ``max_norm``/``sparse``
    options take the stock path.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._spare: torch.Tensor | None = None
        self.weight.register_post_accumulate_grad_hook(self._keep)

    def _keep(self, weight: torch.Tensor) -> None:
        self._spare = weight.grad

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if (ids.device.type != "cpu" or not torch.is_grad_enabled() or not self.weight.requires_grad
                or self.max_norm is not None or self.sparse or self.scale_grad_by_freq
                or stock_enabled()):
            return super().forward(ids)
        return ReusedGradLookup.apply(self.weight, ids, self)


# ----------------------------------------------------------------------------- attention
def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None,
              dropout_p: float) -> torch.Tensor:
    """softmax(q k^T / sqrt(d) + mask) v with dropout on the probabilities: SDPA, except
    for dropout on CPU. q (B, nh, R, hd), k and v (B, nh, T, hd); mask (B, 1, 1, T) True
    where kept, or None. Returns (B, nh, R, hd).

    SDPA's CPU flash kernel refuses dropout, and its math fallback then pays
    ``bernoulli_`` (above: ~9 ns an element) on the (B, nh, T, T) probabilities too; the
    same math written out here uses the cheap :func:`dropout`.
    """
    if 0.0 < dropout_p < 1.0 and q.device.type == "cpu" and not stock_enabled():
        return attention_with_dropout(q, k, v, mask, dropout_p)
    if q.dtype == torch.bfloat16 and q.device.type == "cpu" and not stock_enabled():
        return attention_fp32(q, k, v, mask)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)


def attention_fp32(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                   mask: torch.Tensor | None) -> torch.Tensor:
    """SDPA of bf16 q, k, v computed in fp32 and returned in bf16 (CPU only).

    With torch 2.13 on this CPU (avx512_bf16), SDPA's flash kernel ran forward + backward
    of a (64, 4, 128, 64) mini-model batch in 192-228 ms in bf16 and in 96-157 ms in fp32,
    casts included (one thread, with and without a block-diagonal mask): the bf16 kernel
    gains nothing from bf16 there, and the fp32 result is the more precise one. Autocast is
    off inside, or it would cast the inputs back to bf16.
    """
    with torch.autocast("cpu", enabled=False):
        y = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=mask)
    return y.to(q.dtype)


def attention_with_dropout(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                           mask: torch.Tensor | None, p: float) -> torch.Tensor:
    """softmax(q k^T / sqrt(d) + mask) with dropout, times v, on CPU. q (B, nh, R, hd), k
    and v (B, nh, T, hd); mask broadcastable to (B, 1, R, T), True where kept (no row
    may be all False). Returns (B, nh, R, hd) in q's dtype, computed in fp32.

    SDPA's math path, but tiled: :class:`_TiledAttention` walks the (B, nh) pairs in
    tiles of about :data:`ATTENTION_TILE` scores, so each tile's scores, probabilities and
    their gradients stay in cache, and recomputes the scores in the backward instead of
    keeping the (B, nh, R, T) probabilities; only the 1-byte dropout mask is kept.
    """
    return _TiledAttention.apply(q, k, v, mask, p)


ATTENTION_TILE = 1 << 19
"""Scores per tile of :func:`attention_with_dropout` (2 MB in fp32). On this 2-core CPU
(torch 2.13, ``benchmarks/studies/attention_dropout.py``: best of 7 interleaved runs, heads from
a fused qkv projection, padding in half the rows), forward + backward of one MiniLM
layer's attention (B 32, 12 heads, T 176, head size 32) took 163 ms in SDPA with
``dropout_p``, 126 ms untiled with the cheap dropout and 78 ms in tiles of 2^19; tiled
was the fastest at T 64, 128, 384 and 512 too, with 2^17 and 2^21 within 15% of 2^19."""


def _tiles(B: int, nh: int, R: int, T: int, tile: int) -> Iterator[tuple[slice, slice]]:
    """Tiles of the flattened (B nh) axis, each with the batch rows it covers: whole rows
    while a row's nh R T scores fit in ``tile``, else heads of one row."""
    per_row = nh * R * T
    if per_row <= tile:
        step = tile // per_row
        for b in range(0, B, step):
            rows = slice(b, min(b + step, B))
            yield slice(rows.start * nh, rows.stop * nh), rows
    else:
        step = max(1, tile // (R * T))
        for b in range(B):
            for h in range(0, nh, step):
                yield slice(b * nh + h, b * nh + min(h + step, nh)), slice(b, b + 1)


class _TiledAttention(torch.autograd.Function):
    """Attention with dropout on the probabilities, tile by tile (see
    :func:`attention_with_dropout`). The dropout scale 1/(1-p) is applied to the (R, hd)
    outputs and gradients rather than to the (R, T) probabilities: the same product,
    fewer multiplies. Heads are flattened to (B nh, ., hd) so every tile is contiguous
    and ``bmm`` writes into the result in place."""

    @staticmethod
    def forward(ctx, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,  # type: ignore[override]
                mask: torch.Tensor | None, p: float) -> torch.Tensor:
        with torch.autocast("cpu", enabled=False):
            B, nh, R, hd = q.shape
            T = k.shape[-2]
            # one contiguous fp32 copy each: the heads of a fused qkv projection are strided
            # views, and every tile would copy its slice of them otherwise
            qs = (q.float().contiguous() * hd ** -0.5).view(B * nh, R, hd)
            kf, vf = k.float().contiguous().view(B * nh, T, hd), v.float().contiguous().view(B * nh, T, hd)
            bias = None
            if mask is not None:  # (B or 1, 1, R or 1, T): 0 where kept, -inf elsewhere
                bias = torch.zeros(mask.shape, dtype=torch.float32).masked_fill_(~mask, float("-inf"))
            keep = drop_mask(torch.Size((B * nh, R, T)), p, q.device, kept=True).view(torch.uint8)
            out = torch.empty(B * nh, R, hd, dtype=torch.float32)
            tile = ATTENTION_TILE
            for t, rows in _tiles(B, nh, R, T, tile):
                probs = _probs(qs[t], kf[t], bias, rows)
                torch.bmm(probs.mul_(keep[t]), vf[t], out=out[t])
            out.mul_(1.0 / (1.0 - p))
        ctx.save_for_backward(qs, kf, vf, bias, keep)
        ctx.p, ctx.dtypes, ctx.nh, ctx.tile = p, (q.dtype, k.dtype, v.dtype), nh, tile
        return out.view(B, nh, R, hd).to(q.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        qs, kf, vf, bias, keep = ctx.saved_tensors
        nh = ctx.nh
        with torch.autocast("cpu", enabled=False):
            BH, R, hd = qs.shape
            T = kf.shape[1]
            g = (grad.float().contiguous() * (1.0 / (1.0 - ctx.p))).view(BH, R, hd)
            dq, dk, dv = torch.empty_like(qs), torch.empty_like(kf), torch.empty_like(vf)
            for t, rows in _tiles(BH // nh, nh, R, T, ctx.tile):
                probs = _probs(qs[t], kf[t], bias, rows)
                kept = keep[t]
                torch.bmm(probs.mul(kept).transpose(1, 2), g[t], out=dv[t])
                dprobs = torch.bmm(g[t], vf[t].transpose(1, 2)).mul_(kept)
                dscores = torch._softmax_backward_data(dprobs, probs, -1, torch.float32)
                torch.bmm(dscores, kf[t], out=dq[t])
                torch.bmm(dscores.transpose(1, 2), qs[t], out=dk[t])
            dq.mul_(hd ** -0.5)
        B = BH // nh
        qt, kt, vt = ctx.dtypes
        return (dq.view(B, nh, R, hd).to(qt), dk.view(B, nh, T, hd).to(kt),
                dv.view(B, nh, T, hd).to(vt), None, None)


def _probs(qs: torch.Tensor, k: torch.Tensor, bias: torch.Tensor | None, rows: slice) -> torch.Tensor:
    """softmax(qs k^T + bias) for one tile: qs (n, R, hd) already scaled, k (n, T, hd),
    the n heads lying in batch ``rows`` of ``bias`` (B or 1, 1, R or 1, T)."""
    scores = torch.bmm(qs, k.transpose(1, 2))
    if bias is not None:
        b = bias[rows] if bias.shape[0] > 1 else bias
        scores.view(b.shape[0], -1, *scores.shape[1:]).add_(b)
    return scores.softmax(-1)


# ----------------------------------------------------------------------------- rotary positions
def rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary position embedding (Su et al. 2021) of x (..., hd), computed in float32 as
    transformers' ModernBERT does (``x * cos + rotate_half(x) * sin``); cos, sin (..., hd/2)
    broadcast against x. Returns x's dtype.

    The rotation is elementwise and memory-bound on CPU: :class:`_Rotate` writes both
    halves into one output (no concatenated tables, no negated copy) and saves only the
    tables for the backward. On every device, as before it moved here; :func:`stock`
    (and ONNX export, which runs under it) takes the plain formula.
    """
    if stock_enabled():
        xf = x.to(torch.promote_types(x.dtype, torch.float32))
        x1, x2 = xf.chunk(2, dim=-1)
        full_cos, full_sin = torch.cat([cos, cos], -1), torch.cat([sin, sin], -1)
        return (xf * full_cos + torch.cat([-x2, x1], -1) * full_sin).to(x.dtype)
    return _Rotate.apply(x, cos, sin)


def _rotated(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """(x1, x2) -> (x1 cos - x2 sin, x2 cos + x1 sin) over the halves of x's last dim,
    in float32, written into one output."""
    xf = x.to(torch.promote_types(x.dtype, torch.float32))
    x1, x2 = xf.chunk(2, dim=-1)
    out = torch.empty_like(xf)
    o1, o2 = out.chunk(2, dim=-1)
    torch.mul(x1, cos, out=o1).addcmul_(x2, sin, value=-1.0)
    torch.mul(x2, cos, out=o2).addcmul_(x1, sin)
    return out.to(x.dtype)


class _Rotate(torch.autograd.Function):
    """A rotation's gradient is the inverse rotation (sin -> -sin): nothing is saved but
    the tables."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(cos, sin)
        return _rotated(x, cos, sin)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        cos, sin = ctx.saved_tensors
        return _rotated(grad, cos, -sin), None, None
