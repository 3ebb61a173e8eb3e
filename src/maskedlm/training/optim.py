"""AdamW, the learning-rate schedules and the gradient guard, for both loops."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from maskedlm.errors import MaskedLMError
from maskedlm.training.config import TrainConfig


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: no weight decay on biases, LayerNorm and the SBO/MLM output bias."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "LayerNorm" in name else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]



def adamw(params: Iterable[Any], lr: float, betas: tuple[float, float] = (0.9, 0.999),
          eps: float = 1e-8) -> torch.optim.AdamW:
    """AdamW with the fused kernel (one pass over all parameters; CPU and CUDA), falling
    back to the per-tensor loop where the build lacks it. The fused kernel is many times
    faster on CPU, where the vocabulary x hidden embedding update otherwise costs a good
    part of a step; transformers' Trainer also picks it by default with torch >= 2.8."""
    params = list(params)
    try:
        return torch.optim.AdamW(params, lr=lr, betas=betas, eps=eps, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(params, lr=lr, betas=betas, eps=eps)


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """The pretraining optimizer: :func:`adamw` over :func:`param_groups`, RoBERTa's betas."""
    return adamw(param_groups(model, cfg.weight_decay), cfg.lr, (cfg.beta1, cfg.beta2), cfg.eps)


def lr_shape(frac: float, warmup: float, kind: str = "linear", decay: float = 0.2) -> float:
    """The learning-rate multiplier at ``frac`` (0..1) of the run.

    >>> lr_shape(0.5, 0.1, "wsd", 0.2), round(lr_shape(0.9, 0.1, "wsd", 0.2), 3)
    (1.0, 0.293)
    """
    if frac < warmup:
        return max(1e-3, frac / warmup)
    if frac >= 1.0:
        return 0.0
    if kind == "wsd":
        into = (frac - (1.0 - decay)) / decay  # share of the decay phase done
        return 1.0 if into <= 0 else max(0.0, 1.0 - math.sqrt(min(1.0, into)))
    return max(0.0, (1.0 - frac) / (1.0 - warmup))


def linear_schedule(warmup: int, total: int, progress: Callable[[], float] | None = None,
                    kind: str = "linear", decay: float = 0.2) -> Callable[[int], float]:
    """Warmup to the peak, then ``kind`` decay (see :func:`lr_shape`) ending at ``total``.

    With ``progress`` (the used share of a wall-clock budget), the schedule follows
    whichever runs out first, steps or time, as in cramming (Geiping & Goldstein 2023).
    """
    def f(step: int) -> float:
        if progress is not None:  # warmup and decay over the used share of the budget
            frac = max(step / max(1, total), progress())
            return lr_shape(frac, max(warmup / max(1, total), 1e-6), kind, decay)
        if step < warmup:
            return (step + 1) / max(1, warmup)
        return lr_shape(step / max(1, total), warmup / max(1, total), kind, decay)
    return f



def clip_and_check(model: nn.Module, clip_grad: float, step: int, kept: str,
                   loss: torch.Tensor | None = None, what: str = "loss") -> torch.Tensor:
    """Clip the gradient norm to ``clip_grad`` (0: no clipping; the norm is still computed)
    and stop with one line when it, or ``loss``, is NaN/inf: nothing is stepped or saved
    after that, so the last checkpoint (``kept`` says where) stays the last good one."""
    gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad or math.inf)
    finite = bool(torch.isfinite(gnorm)) and (loss is None or bool(torch.isfinite(loss.detach())))
    if not finite:
        raise MaskedLMError(f"step {step}: the {what} or gradients turned NaN/inf; lower --lr or "
                            f"use --precision fp32 ({kept})")
    return gnorm
