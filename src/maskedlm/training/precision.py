"""Precision: bf16 autocast where the chip computes bf16 natively, fp32 elsewhere."""

from __future__ import annotations

from contextlib import nullcontext

import torch


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 matmuls natively: CUDA with bf16 support, or a CPU
    with AVX512-BF16 or AMX (where bf16 autocast ran 1.6-2.0x our fp32 pretraining,
    benchmarks/RESULTS.md); elsewhere bf16 is emulated and slower than fp32."""
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        cpu = torch.cpu
        return bool(getattr(cpu, "_is_avx512_bf16_supported", lambda: False)()
                    or getattr(cpu, "_is_amx_tile_supported", lambda: False)())
    return False


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` -> ``bf16`` where :func:`native_bf16`, else ``fp32``; others unchanged."""
    if precision != "auto":
        return precision
    return "bf16" if native_bf16(device) else "fp32"


def autocast(precision: str, device: torch.device):
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()

