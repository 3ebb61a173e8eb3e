"""Sentence encoding with MiniLM: ``maskedlm.load(...).encode`` against ``BertModel``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cases.common import autocast, data_file, minilm_dir, timed


def ud_sentences(data_root: Path, n: int) -> list[str]:
    path = data_file(data_root, "ud_en_ewt/en_ewt-ud-dev.conllu")
    out = [line[len("# text = "):].strip() for line in path.read_text(encoding="utf-8").splitlines()
           if line.startswith("# text = ")]
    return out[:n]


def child_encode_ours(p: dict[str, Any]) -> dict[str, Any]:
    import maskedlm
    from maskedlm.embeddings.pooling import encode, tokenize
    texts = ud_sentences(Path(p["data_root"]), p["sentences"])
    model = maskedlm.load(str(minilm_dir()), device=p["device"])
    real = sum(len(x.ids) + 2 for x in tokenize(model.tokenizer, texts))  # with [CLS], [SEP]
    def step() -> int:
        with autocast(p["device"], p["precision"]):
            encode(model, texts)
        return real

    return {**timed(p, step, steps=1), "real_tokens": real}


def child_encode_peer(p: dict[str, Any]) -> dict[str, Any]:
    import torch
    from transformers import BertModel, BertTokenizerFast
    texts = ud_sentences(Path(p["data_root"]), p["sentences"])
    d, dev = str(minilm_dir()), p["device"]
    tok = BertTokenizerFast.from_pretrained(d)
    model = BertModel.from_pretrained(d, attn_implementation="sdpa").to(dev).eval()
    def step() -> int:
        real = 0
        for s in range(0, len(texts), 32):  # the usual loop: batches in order, padded per batch
            enc = tok(texts[s:s + 32], padding=True, truncation=True, max_length=512,
                      return_tensors="pt").to(dev)
            real += int(enc["attention_mask"].sum())
            with torch.inference_mode(), autocast(dev, p["precision"]):
                h = model(**enc).last_hidden_state
                m = enc["attention_mask"].unsqueeze(-1).to(h.dtype)
                ((h * m).sum(1) / m.sum(1)).float().cpu().numpy()
        return real

    return timed(p, step, steps=1)
