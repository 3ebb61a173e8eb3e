"""Replaced-token detection (ELECTRA): the model, its loss, the objective in ``pretrain``,
and what downstream reads from an RTD run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from maskedlm.errors import MaskedLMError
from maskedlm.models.config import ModelConfig
from maskedlm.models.rtd import RtdForPreTraining, generator_config, roc_auc
from maskedlm.pretrain import PretrainOptions, pretrain
from maskedlm.training.config import TrainConfig


def tiny_config(arch: str = "bert", **kw) -> ModelConfig:
    return ModelConfig(arch=arch, vocab_size=60, hidden_size=32, num_hidden_layers=2,
                       num_attention_heads=4, intermediate_size=64, max_position_embeddings=64,
                       nsp_head=False, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                       **kw)


def masked_batch(seed: int = 0, B: int = 4, T: int = 16):
    """ids with 3 masked positions per row ([MASK] = 4), their labels, and padding in row 0."""
    g = torch.Generator().manual_seed(seed)
    orig = torch.randint(5, 60, (B, T), generator=g)
    labels = torch.full_like(orig, -100)
    labels[:, 2:5] = orig[:, 2:5]
    ids = orig.clone()
    ids[:, 2:5] = 4
    mask = torch.ones_like(ids)
    mask[0, 12:] = 0
    ids[0, 12:] = 0
    return ids, labels, mask


class CopyingGenerator(RtdForPreTraining):
    """A generator that always proposes the original token."""

    def sample(self, logits, gold):
        return gold


@pytest.mark.parametrize("arch", ["bert", "modernbert"])
def test_copying_generator_drives_the_discriminator_to_original_everywhere(arch):
    torch.manual_seed(0)
    cfg = tiny_config(arch)
    model = CopyingGenerator(cfg, generator_config(cfg))
    ids, labels, mask = masked_batch()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(30):
        out = model(ids, labels, attention_mask=mask)
        assert out.rtd_replaced == 0  # the originals drawn back count as original
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    with torch.no_grad():
        out = model(ids, labels, attention_mask=mask)
    p_replaced = torch.sigmoid(out.rtd_logits)
    assert out.rtd_tokens == int(mask.sum()) and p_replaced.numel() == out.rtd_tokens
    assert float(p_replaced.max()) < 0.05


def test_replaced_targets_are_the_positions_where_the_sample_differs():
    torch.manual_seed(0)
    cfg = tiny_config()
    model = RtdForPreTraining(cfg, generator_config(cfg))
    ids, labels, mask = masked_batch()
    drawn = {}

    def sample(logits, gold):  # every other masked position gets its original back
        s = (gold + 1 - 5) % 55 + 5
        s[::2] = gold[::2]
        drawn["s"], drawn["gold"] = s, gold
        return s

    model.sample = sample
    out = model(ids, labels, attention_mask=mask)
    real = mask.bool()
    target = torch.zeros_like(ids, dtype=torch.bool)
    flat = target.view(-1)
    idx = (labels != -100).view(-1).nonzero().squeeze(1)
    flat[idx] = drawn["s"] != drawn["gold"]
    torch.testing.assert_close(out.rtd_targets, target[real].float())
    assert out.rtd_replaced == int(target.sum()) == len(idx) // 2


def test_padding_is_not_scored_and_does_not_change_the_loss():
    torch.manual_seed(0)
    cfg = tiny_config()
    model = RtdForPreTraining(cfg, generator_config(cfg)).eval()
    ids, labels, mask = masked_batch()
    torch.manual_seed(1)
    a = model(ids, labels, attention_mask=mask)
    ids2 = ids.clone()
    ids2[0, 12:] = 7  # other ids under the padding
    torch.manual_seed(1)
    b = model(ids2, labels, attention_mask=mask)
    assert a.rtd_tokens == b.rtd_tokens == int(mask.sum())
    torch.testing.assert_close(a.rtd_loss, b.rtd_loss)


def test_generator_is_narrower_and_shares_the_embeddings():
    cfg = ModelConfig.from_name("mini", vocab_size=100, nsp_head=False)
    gen = generator_config(cfg)
    assert (gen.hidden_size, gen.num_attention_heads, gen.intermediate_size,
            gen.num_hidden_layers) == (64, 1, 256, 4)
    assert generator_config(cfg, 0.5).hidden_size == 128
    model = RtdForPreTraining(cfg, gen)
    word = model.bert.embeddings.word_embeddings.weight
    assert model.generator.cls.predictions.decoder_weight is word
    assert model.generator.bert.embeddings.shared is model.bert.embeddings
    names = [n for n, _ in model.named_parameters()]
    assert not any(n.startswith("generator.bert.embeddings.shared") for n in names)
    assert sum(p.numel() for p in model.parameters()) == sum(
        t.numel() for k, t in model.state_dict().items() if "decoder_weight" not in k)
    # the generator's MLM loss alone reaches the shared table and positions
    ids, labels, mask = masked_batch()
    model.rtd_weight = 0.0
    model(ids, labels, attention_mask=mask).loss.backward()
    assert word.grad is not None and float(word.grad.abs().sum()) > 0
    assert float(model.bert.embeddings.position_embeddings.weight.grad.abs().sum()) > 0
    assert model.discriminator_predictions.dense.weight.grad.abs().sum() == 0
    with pytest.raises(MaskedLMError, match="generator-scale"):
        generator_config(cfg, 0.55)  # 141 wide, 2 heads


def test_roc_auc_matches_the_pairwise_definition():
    rng = np.random.default_rng(0)
    s = rng.integers(0, 5, 200).astype(float)  # many ties
    y = rng.random(200) < 0.3
    pos, neg = s[y], s[~y]
    pairs = (pos[:, None] > neg[None]).mean() + 0.5 * (pos[:, None] == neg[None]).mean()
    assert roc_auc(s, y) == pytest.approx(pairs)
    assert np.isnan(roc_auc(s, np.zeros(200, bool)))


# ----------------------------------------------------------------------------- the objective
def opts(data, out, **kw) -> PretrainOptions:
    train_kw = {k: kw.pop(k) for k in list(kw) if k in TrainConfig.__dataclass_fields__}
    # fp32 and a linear schedule unless a test says otherwise (not the budget recipe's)
    tcfg = TrainConfig(**{"max_steps": 6, "batch_size": 4, "log_every": 1, "progress": False,
                          "lr": 2e-3, "precision": "fp32", "schedule": "linear", **train_kw})
    kw.setdefault("seq_len", 32)
    kw.setdefault("objective", "rtd")
    return PretrainOptions(data=str(data), out=str(out), size="tiny",
                           eval_sequences=8, device="cpu", train=tcfg, **kw)


def records(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("recipe, arch", [("budget", "bert"), ("bert", "bert"),
                                          ("spanbert", "bert"), ("budget", "modernbert")])
def test_pretrain_rtd_logs_both_losses_and_the_heldout_metrics(tiny_data, tmp_path, recipe, arch):
    rec = pretrain(opts(tiny_data["shards"], tmp_path / "run", recipe=recipe, arch=arch))
    rows = [r for r in records(tmp_path / "run") if "loss" in r]
    assert len(rows) == 6
    for r in rows:
        assert r["loss"] == pytest.approx(r["mlm_loss"] + 50.0 * r["rtd_loss"])
        assert 0.0 <= r["rtd_accuracy"] <= 1.0
    for k in ("eval_rtd_accuracy", "eval_rtd_auc", "eval_mlm_accuracy", "eval_rtd_loss"):
        assert 0.0 <= rec[k] <= 1.0 or k == "eval_rtd_loss"
    assert 0.0 < rec["eval_replaced_share"] < 0.3
    run = json.loads((tmp_path / "run/run.json").read_text())
    assert run["options"]["objective"] == "rtd"
    cfg = json.loads((tmp_path / "run/checkpoint/config.json").read_text())
    assert cfg["rtd"]["generator_hidden_size"] == 32  # tiny: 128 / 4
    assert "sbo_loss" not in rows[0] and "nsp_loss" not in rows[0]


def test_rtd_run_loads_as_a_plain_encoder_and_fills_masks_with_its_generator(tiny_data, tmp_path):
    import maskedlm
    from maskedlm.checkpoint import is_rtd_checkpoint, load_model, load_rtd_model

    out = tmp_path / "run"
    pretrain(opts(tiny_data["shards"], out, max_steps=3, dropout=0.0))
    assert is_rtd_checkpoint(out)
    rtd, _ = load_rtd_model(out)
    plain, _ = load_model(out, warn_fresh=False)
    rtd.eval(), plain.eval()
    ids = torch.randint(5, plain.config.vocab_size, (2, 10))
    with torch.no_grad():
        torch.testing.assert_close(plain.bert(ids).last_hidden_state,
                                   rtd.bert(ids).last_hidden_state, rtol=0, atol=0)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "freshly initialised" MLM head: fill-mask is the generator's
        model = maskedlm.load(out)
    assert model.mlm is not model.model and model.mlm.config.hidden_size == 32
    preds = model.fill_mask("the [MASK] sat", top_k=3)
    assert len(preds) == 1 and len(preds[0]) == 3
    ids = [int(i) for i in model.tokenizer.encode("the [MASK] sat")["input_ids"]]
    at = ids.index(model.tokenizer.mask_id)
    with torch.no_grad():
        t = torch.tensor([ids])
        want = rtd.generator.mlm_logits(rtd.generator.bert(t).last_hidden_state,
                                        torch.tensor([at])).softmax(-1)
    assert preds[0][0]["score"] == pytest.approx(float(want.max()), rel=1e-5)


def test_rtd_resume_reproduces_an_uninterrupted_run(tiny_data, tmp_path, monkeypatch):
    from maskedlm.pretrain import PretrainBatches

    full = tmp_path / "full"
    pretrain(opts(tiny_data["shards"], full, save_every=3))
    killed = tmp_path / "killed"
    real = PretrainBatches.step_batches

    def crash_at_step_4(self, step):
        if step == 4:
            raise KeyboardInterrupt
        return real(self, step)

    monkeypatch.setattr(PretrainBatches, "step_batches", crash_at_step_4)
    with pytest.raises(KeyboardInterrupt):
        pretrain(opts(tiny_data["shards"], killed, save_every=3))
    monkeypatch.setattr(PretrainBatches, "step_batches", real)
    pretrain(opts(tiny_data["shards"], killed, save_every=3, resume=True))
    keys = ("step", "loss", "mlm_loss", "rtd_loss", "rtd_accuracy")
    a = [tuple(r.get(k) for k in keys) for r in records(full) if "loss" in r]
    b = [tuple(r.get(k) for k in keys) for r in records(killed) if "loss" in r]
    assert a == b and len(a) == 6
    from safetensors.torch import load_file
    wa = load_file(str(full / "checkpoint/model.safetensors"))
    wb = load_file(str(killed / "checkpoint/model.safetensors"))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_rtd_accumulation_equals_one_big_batch():
    """The loop divides the RTD loss by the step's real tokens (all micro-batches, all
    ranks), as the MLM loss by its targets: two micro-batches give one big batch's
    gradients, which data parallelism relies on too."""
    from maskedlm.training.dist import DistInfo
    from maskedlm.training.loop import forward_backward, new_window

    cfg = tiny_config()
    ids, labels, mask = masked_batch()
    big = {"input_ids": ids.numpy(), "labels": labels.numpy(), "attention_mask": mask.numpy()}
    halves = [{k: v[s] for k, v in big.items()} for s in (slice(0, 1), slice(1, 4))]
    grads = []
    for micro in ([big], halves):
        torch.manual_seed(0)
        model = CopyingGenerator(cfg, generator_config(cfg))
        window = new_window()
        forward_backward(model, model, micro, TrainConfig(precision="fp32"), DistInfo(), window)
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
        assert window["rtd_n"] == int(mask.sum())
    for n, g in grads[0].items():
        torch.testing.assert_close(grads[1][n], g, rtol=1e-4, atol=1e-6, msg=n)


def test_rtd_bad_options_are_user_errors(tiny_data, tmp_path):
    with pytest.raises(MaskedLMError, match="generator-scale"):
        opts(tiny_data["shards"], tmp_path / "x", generator_scale=1.5)
    with pytest.raises(MaskedLMError, match="rtd-weight"):
        opts(tiny_data["shards"], tmp_path / "x", rtd_weight=0.0)
    plain = tmp_path / "mlm"
    pretrain(opts(tiny_data["shards"], plain, objective="mlm", max_steps=2))
    with pytest.raises(MaskedLMError, match="another objective"):
        pretrain(opts(tiny_data["shards"], plain, resume=True, max_steps=4))


def test_bf16_autocast_step_is_finite():
    torch.manual_seed(0)
    cfg = tiny_config()
    model = RtdForPreTraining(cfg, generator_config(cfg))
    ids, labels, mask = masked_batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(ids, labels, attention_mask=mask)
    out.loss.backward()
    assert torch.isfinite(out.loss) and out.rtd_logits.dtype == torch.float32


@pytest.mark.slow
def test_two_process_torchrun_rtd_matches_single_process(tiny_data, tmp_path):
    args = ["pretrain", "--objective", "rtd", "--size", "tiny", "--seq-len", "32",
            "--log-every", "1", "--dropout", "0", "--device", "cpu", "--no-progress",
            "--eval-sequences", "8", "--max-steps", "4", "--data", str(tiny_data["shards"])]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                          "--nproc_per_node=2", "-m", "maskedlm.cli", *args, "--batch-size", "4",
                          "--out", str(tmp_path / "two")], env=env, capture_output=True, text=True)
    assert two.returncode == 0, two.stderr[-2000:]
    one = subprocess.run([sys.executable, "-m", "maskedlm.cli", *args, "--batch-size", "8",
                          "--out", str(tmp_path / "one")], env=env, capture_output=True, text=True)
    assert one.returncode == 0, one.stderr[-2000:]
    a = [r for r in records(tmp_path / "one") if "loss" in r]
    b = [r for r in records(tmp_path / "two") if "loss" in r]
    # the first step: the same weights, data and targets; the replacements are drawn per
    # rank, so the RTD loss agrees in distribution only: the MLM loss and counts exactly
    assert a[0]["mlm_loss"] == pytest.approx(b[0]["mlm_loss"], rel=1e-4)
    assert [r["tokens"] for r in a] == [r["tokens"] for r in b]


@pytest.mark.slow
def test_the_discriminator_learns_to_spot_uniformly_random_replacements(tiny_data, tmp_path, monkeypatch):
    """The positive direction of the copying-generator test: with replacements drawn
    uniformly from the vocabulary (an easy task: rare tokens in odd places) the
    discriminator's held-out AUC leaves chance within 150 tiny steps. A loss that does
    not reach the discriminator, or targets that do not mark the replaced tokens, stay
    at 0.5. (With the generator's own samples the task is contextual and far slower:
    docs/results/rtd.md.)"""
    from maskedlm.models import rtd

    def uniform(self, logits, gold):
        return torch.randint(5, logits.shape[1], (logits.shape[0],))
    monkeypatch.setattr(rtd.RtdForPreTraining, "sample", uniform)
    rec = pretrain(opts(tiny_data["shards"], tmp_path / "run", max_steps=150, batch_size=16,
                        log_every=50))
    assert rec["eval_rtd_auc"] > 0.75, rec
