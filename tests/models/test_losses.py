"""The fused decoder cross-entropy against its plain PyTorch form."""

import pytest
import torch
import torch.nn.functional as F

from maskedlm.models.losses import linear_cross_entropy


def _plain(h, w, b, t):
    logits = F.linear(h, w, b)
    return F.cross_entropy(logits, t, reduction="sum"), (logits.argmax(-1) == t).sum()


@pytest.mark.parametrize("chunk", [1, 3, 7, 100])
@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("scale,upstream", [(1.0, 1.7), (0.25, 1.0)])
def test_linear_cross_entropy_matches_plain_loss_and_grads(chunk, with_bias, scale, upstream):
    g = torch.Generator().manual_seed(0)
    h = torch.randn(7, 16, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(50, 16, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(50, generator=g, dtype=torch.float64, requires_grad=True) if with_bias else None
    t = torch.randint(0, 50, (7,), generator=g)
    t[0] = int(F.linear(h, w, b)[0].argmax())  # at least one right answer to count
    loss, correct = linear_cross_entropy(h, w, b, t, scale=scale, chunk=chunk)
    (upstream * loss).backward()  # upstream 1: the gradients precomputed in forward, as they are
    got = [x.grad.clone() for x in (h, w, b) if x is not None]
    for x in (h, w, b):
        if x is not None:
            x.grad = None
    ref_loss, ref_correct = _plain(h, w, b, t)
    ref_loss = scale * ref_loss
    (upstream * ref_loss).backward()
    torch.testing.assert_close(loss.double(), ref_loss, rtol=1e-6, atol=1e-6)
    assert int(correct) == int(ref_correct) >= 1
    for a, x in zip(got, [x for x in (h, w, b) if x is not None], strict=True):
        torch.testing.assert_close(a, x.grad, rtol=1e-5, atol=1e-5)


def test_linear_cross_entropy_without_grad_and_under_bf16_autocast():
    g = torch.Generator().manual_seed(1)
    h, w, b = torch.randn(9, 32, generator=g), torch.randn(40, 32, generator=g), torch.randn(40, generator=g)
    t = torch.randint(0, 40, (9,), generator=g)
    with torch.no_grad():
        loss, _ = linear_cross_entropy(h, w, b, t, chunk=4)
    torch.testing.assert_close(loss, _plain(h, w, b, t)[0])
    h.requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, _ = linear_cross_entropy(h, w, b, t, chunk=4)
        ref, _ = _plain(h, w, b, t)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, ref.float(), rtol=2e-2, atol=0.5)
    loss.backward()
    assert h.grad.dtype == torch.float32 and torch.isfinite(h.grad).all()
