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

# Rows per chunk: about 32 MB of fp32 logits (and as much for their softmax) at 30k words.
CHUNK_ELEMENTS = 1 << 23


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,  # type: ignore[override]
                target: torch.Tensor, scale: float, chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        grads = need_h or need_w or need_b
        loss = torch.zeros((), dtype=torch.float32, device=h.device)
        correct = torch.zeros((), dtype=torch.long, device=h.device)
        grad_h = torch.empty_like(h) if need_h else None
        grad_w: torch.Tensor | None = None  # the first chunk writes them, later ones add
        grad_b: torch.Tensor | None = None
        for s in range(0, h.shape[0], chunk):
            hc, tc = h[s:s + chunk], target[s:s + chunk]
            logits = (hc @ weight.t() if bias is None else torch.addmm(bias, hc, weight.t())).float()
            top, arg = logits.max(-1)
            correct += (arg == tc).sum()
            gold = logits.gather(1, tc[:, None]).squeeze(1)
            # softmax's own kernel, not exp() by hand: exp of very negative logits makes
            # denormals, 10-20x slower on x86. log-sum-exp = top - log p(top), and
            # p(top) >= 1/V cannot underflow.
            probs = torch.softmax(logits, -1)
            del logits
            p_top = probs.gather(1, arg[:, None]).squeeze(1)
            loss += (top - p_top.log() - gold).sum()
            if not grads:
                continue
            probs *= scale  # d(scale * loss)/d(logits) = scale * (softmax - one_hot(gold))
            probs[torch.arange(len(tc), device=tc.device), tc] -= scale
            g = probs.to(hc.dtype) if hc.dtype != torch.float32 else probs
            if need_h:
                grad_h[s:s + chunk] = g @ weight.to(g.dtype)
            if need_w:
                if grad_w is None:
                    grad_w = (g.t() @ hc).float()
                elif g.dtype == torch.float32 and hc.dtype == torch.float32:
                    grad_w.addmm_(g.t(), hc)  # in place: no (V, H) temporary
                else:
                    grad_w += (g.t() @ hc).float()
            if need_b:
                grad_b = probs.sum(0) if grad_b is None else grad_b.add_(probs.sum(0))
        # intermediates, not inputs or outputs: kept on ctx rather than save_for_backward
        ctx.grads = (grad_h, grad_w, grad_b)
        ctx.dtypes = (h.dtype, weight.dtype, None if bias is None else bias.dtype)
        ctx.mark_non_differentiable(correct)
        return loss * scale, correct

    @staticmethod
    def backward(ctx, grad_loss: torch.Tensor, _grad_correct: torch.Tensor):  # type: ignore[override]
        # The forward pass already has d(loss)/d(input); skip the (V, H)-sized multiply in
        # the usual case of loss.backward() straight on this loss (grad 1).
        one = grad_loss.device.type == "cpu" and float(grad_loss) == 1.0
        out = [None if g is None else (g if one else g * grad_loss).to(dtype)
               for g, dtype in zip(ctx.grads, ctx.dtypes, strict=True)]
        ctx.grads = None
        return out[0], out[1], out[2], None, None, None


def linear_cross_entropy(h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                         target: torch.Tensor, scale: float = 1.0, chunk: int | None = None
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """``scale`` times the summed cross-entropy of ``h @ weight^T + bias`` against
    ``target``, and the number of rows whose argmax is the target, without keeping the
    (N, V) logits. Pass the loss normaliser as ``scale`` (e.g. 1 / number of targets):
    the gradients are then final when ``backward`` starts from this loss.

    h (N, H), weight (V, H), bias (V,), target (N,) -> (loss, correct count).

    >>> h, w, t = torch.randn(5, 8), torch.randn(11, 8), torch.tensor([0, 3, 3, 10, 2])
    >>> loss, _ = linear_cross_entropy(h, w, None, t)
    >>> bool(torch.isclose(loss, torch.nn.functional.cross_entropy(h @ w.t(), t, reduction="sum")))
    True
    """
    if chunk is None:
        chunk = max(1, CHUNK_ELEMENTS // weight.shape[0])
    return _LinearCrossEntropy.apply(h, weight, bias, target, float(scale), chunk)
