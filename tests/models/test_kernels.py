"""The CPU kernels (dropout, embedding gradient, attention) against stock PyTorch, and
the switch that turns them off."""

import copy
from collections import Counter

import pytest
import torch
import torch.nn.functional as F

from maskedlm.models import kernels
from maskedlm.models.config import ModelConfig
from maskedlm.models.heads import BertForPreTraining
from maskedlm.models.kernels import (
    Dropout,
    TokenEmbedding,
    attention,
    attention_with_dropout,
    drop_mask,
    stock,
)


def test_drop_mask_rate_and_lanes():
    torch.manual_seed(0)
    m = drop_mask(torch.Size([1000, 403]), 0.1, torch.device("cpu"))
    assert m.shape == (1000, 403) and m.dtype == torch.bool
    assert abs(m.float().mean().item() - 0.1) < 0.003
    # every one of the four 16-bit lanes of a 64-bit draw is used (no stuck sign bit)
    lanes = drop_mask(torch.Size([400_000]), 0.3, torch.device("cpu")).view(-1, 4).float().mean(0)
    assert torch.allclose(lanes, torch.full((4,), 0.3), atol=0.005)
    torch.manual_seed(3)
    dropped = drop_mask(torch.Size([50, 70]), 0.2, torch.device("cpu"))
    torch.manual_seed(3)  # torch's seed decides the mask (it seeds the PCG64 stream)
    assert torch.equal(drop_mask(torch.Size([50, 70]), 0.2, torch.device("cpu")), dropped)
    assert not torch.equal(drop_mask(torch.Size([50, 70]), 0.2, torch.device("cpu")), dropped)
    torch.manual_seed(3)  # kept=True: the complement of the same draw
    assert torch.equal(drop_mask(torch.Size([50, 70]), 0.2, torch.device("cpu"), kept=True), ~dropped)


def test_dropout_forward_backward_share_the_mask_and_scale():
    torch.manual_seed(0)
    d = Dropout(0.25).train()
    x = torch.randn(64, 128, requires_grad=True)
    y = d(x)
    kept = y != 0
    assert abs(1 - kept.float().mean().item() - 0.25) < 0.02
    torch.testing.assert_close(y[kept], x[kept] / 0.75)
    y.sum().backward()
    torch.testing.assert_close(x.grad, kept.float() / 0.75)
    assert torch.equal(d.eval()(x), x)
    with pytest.raises(ValueError):
        Dropout(1.5)


def test_attention_with_dropout_is_sdpa_math_when_nothing_drops():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 4, 6, 8, generator=g) for _ in range(3))
    keep = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]], dtype=torch.bool)[:, None, None, :]
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=keep)
    torch.testing.assert_close(attention_with_dropout(q, k, v, keep, 0.0), ref)
    torch.manual_seed(0)
    out = attention_with_dropout(q, k, v, keep, 0.5)  # dropped probabilities, rescaled
    assert out.shape == ref.shape and not torch.allclose(out, ref)


@pytest.mark.parametrize("tile", [1 << 19, 2 * 4 * 6 * 7, 2 * 6 * 7, 1])  # all, 2 rows, 2 heads, 1 head
@pytest.mark.parametrize("mask_rows", [1, 6])  # a padding mask, or one per query row
def test_tiled_attention_with_dropout_matches_the_formula_and_its_gradients(monkeypatch, tile, mask_rows):
    monkeypatch.setattr(kernels, "ATTENTION_TILE", tile)
    g = torch.Generator().manual_seed(1)
    B, nh, R, T, hd, p = 3, 4, 6, 7, 8, 0.3
    q = torch.randn(B, nh, R, hd, generator=g, requires_grad=True)
    k, v = (torch.randn(B, nh, T, hd, generator=g, requires_grad=True) for _ in range(2))
    mask = torch.rand(B, 1, mask_rows, T, generator=g) > 0.3
    mask[..., 0] = True  # no empty row
    grad = torch.randn(B, nh, R, hd, generator=g)
    torch.manual_seed(5)
    out = attention_with_dropout(q, k, v, mask, p)
    out.backward(grad)
    torch.manual_seed(5)  # the same draw: the mask is the function's first use of the stream
    kept = ~drop_mask(torch.Size((B, nh, R, T)), p, q.device)
    assert 0 < kept.float().mean() < 1
    q64, k64, v64 = (t.detach().double().requires_grad_() for t in (q, k, v))
    scores = (q64 @ k64.transpose(-1, -2) / hd ** 0.5).masked_fill(~mask, float("-inf"))
    ref = (scores.softmax(-1) * kept / (1 - p)) @ v64
    ref.backward(grad.double())
    torch.testing.assert_close(out, ref.float())
    for ours, theirs in ((q, q64), (k, k64), (v, v64)):
        torch.testing.assert_close(ours.grad, theirs.grad.float())


def test_bf16_attention_on_cpu_is_computed_in_fp32_with_bf16_gradients():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 4, 6, 8, generator=g).bfloat16().requires_grad_() for _ in range(3))
    keep = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]], dtype=torch.bool)[:, None, None, :]
    ref_in = [t.detach().float().requires_grad_() for t in (q, k, v)]
    ref = F.scaled_dot_product_attention(*ref_in, attn_mask=keep)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = attention(q, k, v, keep, 0.0)
    assert out.dtype == torch.bfloat16
    # one rounding of the fp32 result, where bf16 SDPA rounds its intermediate products too
    torch.testing.assert_close(out, ref.bfloat16(), atol=0, rtol=0)
    w = torch.randn(out.shape, generator=g)
    (out.float() * w).sum().backward()
    (ref * w).sum().backward()
    for ours, theirs in zip((q, k, v), ref_in, strict=True):
        assert ours.grad.dtype == torch.bfloat16
        torch.testing.assert_close(ours.grad.float(), theirs.grad, atol=2e-2, rtol=2e-2)
    with stock(), torch.autocast("cpu", dtype=torch.bfloat16):  # stock: bf16 SDPA as it is
        plain = attention(q, k, v, keep, 0.0)
    assert plain.dtype == torch.bfloat16 and not torch.equal(plain, out)


def test_token_embedding_reuses_its_gradient_and_matches_stock_embedding():
    torch.manual_seed(0)
    ours = TokenEmbedding(50, 8, padding_idx=0)
    stock = torch.nn.Embedding(50, 8, padding_idx=0)
    stock.weight.data.copy_(ours.weight.data)
    ptrs = []
    for step in range(4):
        ids = torch.randint(0, 50, (3, 7))
        ids[0, -2:] = 0  # padding gets no gradient
        up = torch.randn(3, 7, 8)
        for emb in (ours, stock):
            emb.weight.grad = None  # zero_grad(set_to_none=True)
            (emb(ids) * up).sum().backward()
            if step == 3:  # accumulate a second backward into the same .grad
                (emb(ids) * up).sum().backward()
        torch.testing.assert_close(ours.weight.grad, stock.weight.grad, rtol=1e-6, atol=1e-6)
        ptrs.append(ours.weight.grad.data_ptr())
    assert len(set(ptrs)) == 1  # one tensor, zeroed in place each step

    held = ours.weight.grad  # someone keeps the old gradient: it must not be overwritten
    before = held.clone()
    ours.weight.grad = None
    ours(torch.tensor([[1, 2, 3]])).sum().backward()
    torch.testing.assert_close(held, before)
    assert ours.weight.grad.data_ptr() != held.data_ptr()
    with torch.no_grad():
        torch.testing.assert_close(ours(ids), stock(ids))


# ----------------------------------------------------------------------------- the switch
def _tiny(dropout: float) -> ModelConfig:
    return ModelConfig(vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                       intermediate_size=64, max_position_embeddings=64, sbo_head=True,
                       hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)


def _batch():
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, 120, (4, 16), generator=g)
    ids[:, 0], ids[:, -1] = 2, 3
    mask = torch.ones_like(ids)
    mask[1, 12:] = 0  # padding, so attention takes its mask
    labels = torch.full_like(ids, -100)
    labels[:, 3:6] = ids[:, 3:6]
    masked = ids.clone()
    masked[:, 3:6] = 4
    return dict(input_ids=masked, labels=labels, attention_mask=mask,
                sbo_left=torch.full_like(ids, 2), sbo_right=torch.full_like(ids, 6),
                sbo_pos=(torch.arange(16) - 3).clamp(min=0).expand(4, -1))


def _train_steps(model, steps: int = 3):
    """Losses and gradients of a few AdamW steps (zero_grad(set_to_none=True), as train())."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses, grads = [], []
    for _ in range(steps):
        loss = model(**_batch()).loss
        loss.backward()
        losses.append(loss.detach())
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
        opt.step()
        opt.zero_grad(set_to_none=True)
    return losses, grads


def test_a_training_step_is_the_same_with_stock_kernels():
    # dropout 0 so both runs are deterministic: the embedding gradient and attention differ
    torch.manual_seed(0)
    ours = BertForPreTraining(_tiny(0.0)).train()
    stock_model = copy.deepcopy(ours)
    losses, grads = _train_steps(ours)
    with kernels.stock():
        stock_losses, stock_grads = _train_steps(stock_model)
    torch.testing.assert_close(torch.stack(losses), torch.stack(stock_losses), rtol=1e-6, atol=1e-6)
    for g, s in zip(grads, stock_grads, strict=True):
        assert g.keys() == s.keys() and "bert.embeddings.word_embeddings.weight" in g
        for name in g:
            torch.testing.assert_close(g[name], s[name], rtol=1e-5, atol=1e-6, msg=name)


def test_stock_switch_takes_the_stock_path(monkeypatch):
    calls: Counter = Counter()

    def counting(name, fn):
        def wrapped(*a, **kw):
            calls[name] += 1
            return fn(*a, **kw)
        return wrapped

    monkeypatch.setattr(kernels.DropoutFunction, "apply", counting("dropout", kernels.DropoutFunction.apply))
    monkeypatch.setattr(kernels.ReusedGradLookup, "apply",
                        counting("embedding", kernels.ReusedGradLookup.apply))
    monkeypatch.setattr(kernels, "attention_with_dropout",
                        counting("attention", kernels.attention_with_dropout))
    sdpa = F.scaled_dot_product_attention
    monkeypatch.setattr(F, "scaled_dot_product_attention",
                        lambda *a, **kw: calls.update(sdpa_dropout=kw["dropout_p"] > 0) or sdpa(*a, **kw))
    monkeypatch.delenv("MASKEDLM_STOCK_KERNELS", raising=False)
    torch.manual_seed(0)
    model = BertForPreTraining(_tiny(0.1)).train()

    model(**_batch()).loss.backward()
    assert calls["dropout"] > 0 and calls["embedding"] == 1 and calls["attention"] == 2
    assert calls["sdpa_dropout"] == 0

    calls.clear()
    with kernels.stock():
        assert kernels.stock_enabled()
        model(**_batch()).loss.backward()
    assert not kernels.stock_enabled()
    assert calls["dropout"] == calls["embedding"] == calls["attention"] == 0
    assert calls["sdpa_dropout"] == 2  # SDPA with dropout_p, once a layer

    calls.clear()
    monkeypatch.setenv("MASKEDLM_STOCK_KERNELS", "1")  # read at call time
    model(**_batch()).loss.backward()
    assert calls["dropout"] == calls["embedding"] == calls["attention"] == 0
    with kernels.stock(False):  # the context manager wins over the environment
        assert not kernels.stock_enabled()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_rotary_kernel_matches_the_stock_formula_forward_and_backward(dtype):
    torch.manual_seed(0)
    x = torch.randn(2, 7, 3, 16).to(dtype)
    ang = torch.randn(2, 7, 1, 8)
    cos, sin = ang.cos(), ang.sin()
    outs, grads = [], []
    for use_stock in (False, True):
        xx = x.clone().requires_grad_(True)
        with stock(use_stock):
            y = kernels.rotary(xx, cos, sin)
            (y.float() * torch.arange(y.numel()).view(y.shape).sin()).sum().backward()
        outs.append(y.detach().float())
        grads.append(xx.grad.float())
    assert outs[0].dtype == torch.float32 and y.dtype == dtype
    tol = dict(atol=1e-6, rtol=1e-6) if dtype == torch.float32 else dict(atol=1e-2, rtol=1e-2)
    torch.testing.assert_close(outs[0], outs[1], **tol)
    torch.testing.assert_close(grads[0], grads[1], **tol)
    assert (outs[0] - x.float()).abs().max() > 0.1  # it did rotate
