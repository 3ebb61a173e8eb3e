"""Pretraining steps: our loop against ``transformers``' ``BertForMaskedLM`` (or, for
``arch="modernbert"``, ``ModernBertForMaskedLM``) + ``DataCollatorForLanguageModeling`` + AdamW."""

from __future__ import annotations

import json
import statistics
import tempfile
from pathlib import Path
from typing import Any

from cases.common import (
    MLM_PROB,
    Memory,
    autocast,
    batch_source,
    last_layer_share,
    minilm_dir,
    timed,
    train_flops_per_token,
    unmasked_examples,
    update,
)


def child_pretrain_ours(p: dict[str, Any]) -> dict[str, Any]:
    import torch

    from maskedlm.models.config import ModelConfig
    from maskedlm.models.heads import BertForPreTraining
    from maskedlm.training.config import TrainConfig
    from maskedlm.training.dist import DistInfo
    from maskedlm.training.loop import train
    arch = p.get("arch", "bert")
    source, tok = batch_source(Path(p["data_root"]), p["recipe"], p["seq_len"], p["batch"],
                               pack=arch == "modernbert")  # ModernBERT trains on packed rows
    source.step_batches(0)  # build the epoch's instances before timing
    mem = Memory(p["device"])
    sbo = p["recipe"] == "spanbert"
    cfg = ModelConfig.from_name(p["size"], arch=arch, vocab_size=tok.vocab_size,
                                pad_token_id=tok.pad_id, sbo_head=sbo, nsp_head=False)
    torch.manual_seed(0)
    model = BertForPreTraining(cfg)
    n, r = p["steps"], p["repeats"]
    tc = TrainConfig(max_steps=n * (r + 1), batch_size=p["batch"], log_every=n, lr=1e-4, schedule="linear",
                     precision=p["precision"], progress=False)
    with tempfile.TemporaryDirectory() as tmp:
        train(model, source, tc, Path(tmp), lambda *a: None, DistInfo(device=torch.device(p["device"])))
        rows = [json.loads(x) for x in (Path(tmp) / "metrics.jsonl").read_text().splitlines()]
    windows = [row["tokens_per_s"] for row in rows[1:]]  # rows[0] is the warm-up window
    return {"value": statistics.median(windows), "windows": windows, "peak_mb": mem.peak_mb(),
            "data_wait_frac": max(row["data_wait_frac"] for row in rows[1:]),
            "flops_per_token": train_flops_per_token(
                cfg.hidden_size, cfg.num_hidden_layers, p["seq_len"], cfg.vocab_size,
                ffn_width(cfg), MLM_PROB, sbo, last_layer_share(source))}


def ffn_width(cfg) -> int:
    """The BERT feed-forward width with the same weights: a GeGLU's Wi is two halves."""
    return int(cfg.intermediate_size * (1.5 if cfg.arch == "modernbert" else 1))


def peer_model(ours, tok, seq_len: int):
    """transformers' model for our config ``ours``: BertForMaskedLM or ModernBertForMaskedLM."""
    from transformers import BertConfig, BertForMaskedLM, ModernBertConfig, ModernBertForMaskedLM
    shape = dict(vocab_size=tok.vocab_size, hidden_size=ours.hidden_size,
                 num_hidden_layers=ours.num_hidden_layers,
                 num_attention_heads=ours.num_attention_heads,
                 intermediate_size=ours.intermediate_size,
                 max_position_embeddings=max(512, seq_len), attn_implementation="sdpa")
    if ours.arch == "bert":
        return BertForMaskedLM(BertConfig(**shape))
    return ModernBertForMaskedLM(ModernBertConfig(
        **shape, pad_token_id=tok.pad_id, cls_token_id=tok.cls_id, sep_token_id=tok.sep_id,
        bos_token_id=tok.cls_id, eos_token_id=tok.sep_id,
        local_attention=ours.local_attention,
        global_attn_every_n_layers=ours.global_attn_every_n_layers))


def child_pretrain_peer(p: dict[str, Any]) -> dict[str, Any]:
    import torch
    from transformers import BertTokenizerFast, DataCollatorForLanguageModeling

    from maskedlm.models.config import ModelConfig
    source, tok = batch_source(Path(p["data_root"]), "roberta", p["seq_len"], p["batch"])
    n, r, dev = p["steps"], p["repeats"], p["device"]
    examples = [unmasked_examples(source, s) for s in range(n * (r + 1))]
    hf_tok = BertTokenizerFast.from_pretrained(str(minilm_dir()))
    collator = DataCollatorForLanguageModeling(hf_tok, mlm_probability=MLM_PROB, seed=0)
    mem = Memory(dev)
    ours = ModelConfig.from_name(p["size"], arch=p.get("arch", "bert"), vocab_size=tok.vocab_size)
    torch.manual_seed(0)
    model = peer_model(ours, tok, p["seq_len"]).to(dev).train()
    cfg = model.config
    decay = [p_ for n_, p_ in model.named_parameters() if p_.ndim > 1]
    no_decay = [p_ for n_, p_ in model.named_parameters() if p_.ndim <= 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01},  # Trainer's default:
                             {"params": no_decay, "weight_decay": 0.0}], lr=1e-4, fused=True)
    data = iter(examples)

    def step() -> int:
        batch = {k: v.to(dev) for k, v in collator(next(data)).items()}
        with autocast(dev, p["precision"]):
            loss = model(**batch).loss
        update(model, opt, loss)
        return int(batch["attention_mask"].sum())

    return {**timed(p, step), "peak_mb": mem.peak_mb(),
            "flops_per_token": train_flops_per_token(
                cfg.hidden_size, cfg.num_hidden_layers, p["seq_len"], cfg.vocab_size,
                ffn_width(ours), 1.0)}
