"""The same code on CUDA (``-m cuda``; skipped without a GPU): both architectures,
packed rows, bf16 autocast and a short pretraining run. ``benchmarks/gpu_check.sh`` runs these."""

from __future__ import annotations

import json

import pytest
import torch

from maskedlm.models.config import ModelConfig
from maskedlm.models.heads import BertForPreTraining

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def tiny(arch: str) -> ModelConfig:
    return ModelConfig(arch=arch, vocab_size=120, hidden_size=64, num_hidden_layers=4,
                       num_attention_heads=4, intermediate_size=96, max_position_embeddings=64,
                       local_attention=8, nsp_head=False, sbo_head=True,
                       hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


@pytest.mark.parametrize("arch", ["bert", "modernbert"])
def test_cuda_losses_and_gradients_match_cpu(arch):
    torch.manual_seed(0)
    model = BertForPreTraining(tiny(arch))
    ids = torch.randint(5, 120, (4, 24))
    labels = torch.full_like(ids, -100)
    labels[:, 3:6] = ids[:, 3:6]
    mask = torch.ones_like(ids)
    mask[1, 18:] = 0
    batch = dict(input_ids=ids, labels=labels, attention_mask=mask,
                 sbo_left=torch.full_like(ids, 2), sbo_right=torch.full_like(ids, 6),
                 sbo_pos=torch.zeros_like(ids))
    if arch == "modernbert":
        batch["sequence_ids"] = torch.tensor([[0] * 12 + [1] * 12] * 4)
    cpu = model(**batch)
    cpu.loss.backward()
    g_cpu = model.cls.predictions.transform.dense.weight.grad.clone()
    model.zero_grad()
    gpu_model = model.cuda()
    out = gpu_model(**{k: v.cuda() for k, v in batch.items()})
    out.loss.backward()
    torch.testing.assert_close(out.loss.cpu(), cpu.loss, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(gpu_model.cls.predictions.transform.dense.weight.grad.cpu(), g_cpu,
                               rtol=1e-3, atol=1e-4)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        bf = gpu_model(**{k: v.cuda() for k, v in batch.items()})
    assert abs(float(bf.loss.detach()) - float(cpu.loss.detach())) < 0.05 * float(cpu.loss.detach())


def test_cuda_packed_rows_keep_sequences_apart():
    torch.manual_seed(0)
    enc = BertForPreTraining(tiny("modernbert")).bert.cuda().eval()
    row = torch.randint(5, 120, (1, 20), device="cuda").repeat(2, 1)
    row[1, 12:] = torch.randint(5, 120, (8,), device="cuda")
    seq = torch.tensor([[0] * 12 + [1] * 8] * 2, device="cuda")
    with torch.no_grad():
        out = enc(row, sequence_ids=seq).last_hidden_state
    torch.testing.assert_close(out[0, :12], out[1, :12], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("arch", ["bert", "modernbert"])
def test_cuda_pretraining_run_in_bf16(tiny_data, tmp_path, arch):
    from maskedlm.pretrain import PretrainOptions, pretrain
    from maskedlm.training.config import TrainConfig
    tcfg = TrainConfig(max_steps=5, batch_size=8, log_every=1, progress=False, precision="bf16")
    rec = pretrain(PretrainOptions(recipe="spanbert", arch=arch, data=str(tiny_data["shards"]),
                                   out=str(tmp_path / "run"), seq_len=64, eval_sequences=8,
                                   device="cuda", train=tcfg))
    assert 0.0 <= rec["eval_mlm_accuracy"] <= 1.0
    cfg = json.loads((tmp_path / "run/checkpoint/config.json").read_text())
    assert cfg["model_type"] == arch
