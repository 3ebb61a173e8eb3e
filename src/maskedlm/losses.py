"""Vocabulary cross-entropy fused with its decoder, computed in row chunks.

The MLM and SBO decoders end in ``cross_entropy(h @ W^T + b, gold)`` over a 30k
vocabulary. Done the plain way, autograd keeps the logits, their log-softmax and, in
the backward pass, two more logits-sized gradients: four (N, V) float tensors, the
largest allocations of a small model's step. Here the forward pass computes, chunk by
chunk of rows, the logits, the loss, the argmax and at once the softmax gradient, and
turns it into the gradients of ``h``, ``W`` and ``b``; only those are kept for the
backward pass, which just scales them. One (chunk, V) buffer is alive at a time. The
same idea is Liger-Kernel's fused linear cross-entropy and Wijmans et al. (2025), "Cut
Your Losses in Large-Vocabulary Language Models"; this is a plain PyTorch version.
"""

from __future__ import annotations

import torch

# Rows per chunk: about 32 MB of fp32 logits at a 30k vocabulary.
CHUNK_ELEMENTS = 1 << 23


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,  # type: ignore[override]
                target: torch.Tensor, chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        grads = need_h or need_w or need_b
        loss = torch.zeros((), dtype=torch.float32, device=h.device)
        correct = torch.zeros((), dtype=torch.long, device=h.device)
        grad_h = torch.empty_like(h) if need_h else None
        grad_w = torch.zeros_like(weight, dtype=torch.float32) if need_w else None
        grad_b = torch.zeros_like(bias, dtype=torch.float32) if need_b else None
        for s in range(0, h.shape[0], chunk):
            hc, tc = h[s:s + chunk], target[s:s + chunk]
            logits = (hc @ weight.t() if bias is None else torch.addmm(bias, hc, weight.t())).float()
            top, arg = logits.max(-1)
            correct += (arg == tc).sum()
            logits -= top[:, None]
            gold = logits.gather(1, tc[:, None]).squeeze(1)
            probs = logits.exp_()  # in place: the chunk's logits are not needed any more
            total = probs.sum(-1)
            loss += (total.log() - gold).sum()
            if not grads:
                continue
            probs /= total[:, None]  # d(loss)/d(logits) = softmax - one_hot(gold)
            probs[torch.arange(len(tc), device=tc.device), tc] -= 1.0
            g = probs.to(hc.dtype) if hc.dtype != torch.float32 else probs
            if need_h:
                grad_h[s:s + chunk] = g @ weight.to(g.dtype)
            if need_w:
                grad_w += (g.t() @ hc).float()
            if need_b:
                grad_b += probs.sum(0)
        ctx.save_for_backward(*(x for x in (grad_h, grad_w, grad_b) if x is not None))
        ctx.has = (need_h, need_w, need_b)
        ctx.dtypes = (h.dtype, weight.dtype, None if bias is None else bias.dtype)
        ctx.mark_non_differentiable(correct)
        return loss, correct

    @staticmethod
    def backward(ctx, grad_loss: torch.Tensor, _grad_correct: torch.Tensor):  # type: ignore[override]
        saved = iter(ctx.saved_tensors)
        out = [next(saved).mul(grad_loss).to(dtype) if has else None
               for has, dtype in zip(ctx.has, ctx.dtypes)]
        return out[0], out[1], out[2], None, None


def linear_cross_entropy(h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                         target: torch.Tensor, chunk: int | None = None
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed cross-entropy of ``h @ weight^T + bias`` against ``target``, and the number
    of rows whose argmax is the target, without materialising all the logits.

    h (N, H), weight (V, H), bias (V,), target (N,) -> (loss sum, correct count).

    >>> h, w, t = torch.randn(5, 8), torch.randn(11, 8), torch.tensor([0, 3, 3, 10, 2])
    >>> loss, _ = linear_cross_entropy(h, w, None, t)
    >>> bool(torch.isclose(loss, torch.nn.functional.cross_entropy(h @ w.t(), t, reduction="sum")))
    True
    """
    if chunk is None:
        chunk = max(1, CHUNK_ELEMENTS // weight.shape[0])
    return _LinearCrossEntropy.apply(h, weight, bias, target, chunk)
