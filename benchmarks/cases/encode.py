"""Sentence encoding: ``maskedlm.load(...).encode`` against ``BertModel`` with MiniLM, or
against ``ModernBertModel`` with a ModernBERT checkpoint of MiniLM's shape
(``p["model"] == "modernbert"``: random weights, MiniLM's vocabulary; speed does not
depend on the values, and no ModernBERT weights are available offline)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from cases.common import CACHE, autocast, data_file, minilm_dir, timed


def model_dir(p: dict[str, Any]) -> Path:
    if p.get("model", "minilm") == "minilm":
        return minilm_dir()
    out = CACHE / "modernbert-minilm-shape"
    if not (out / "config.json").is_file():
        import torch
        from transformers import ModernBertConfig, ModernBertForMaskedLM
        src = minilm_dir()
        from maskedlm.data.tokenizer import Tokenizer
        tok = Tokenizer.load(src)
        cfg = ModernBertConfig(vocab_size=tok.vocab_size, hidden_size=384, num_hidden_layers=6,
                               num_attention_heads=12, intermediate_size=576,
                               max_position_embeddings=512, pad_token_id=tok.pad_id,
                               cls_token_id=tok.cls_id, sep_token_id=tok.sep_id,
                               bos_token_id=tok.cls_id, eos_token_id=tok.sep_id)
        torch.manual_seed(0)
        tmp = out.with_suffix(".tmp")
        ModernBertForMaskedLM(cfg).save_pretrained(tmp)
        for f in src.iterdir():
            if f.name.startswith(("vocab", "tokenizer", "special_tokens")):
                shutil.copy(f, tmp / f.name)
        tmp.replace(out)
    return out


def ud_sentences(data_root: Path, n: int) -> list[str]:
    path = data_file(data_root, "ud_en_ewt/en_ewt-ud-dev.conllu")
    out = [line[len("# text = "):].strip() for line in path.read_text(encoding="utf-8").splitlines()
           if line.startswith("# text = ")]
    return out[:n]


def child_encode_ours(p: dict[str, Any]) -> dict[str, Any]:
    import maskedlm
    from maskedlm.embeddings.pooling import encode, tokenize
    texts = ud_sentences(Path(p["data_root"]), p["sentences"])
    model = maskedlm.load(str(model_dir(p)), device=p["device"], warn_fresh=False)
    real = sum(len(x.ids) + 2 for x in tokenize(model.tokenizer, texts))  # with [CLS], [SEP]
    def step() -> int:
        with autocast(p["device"], p["precision"]):
            encode(model, texts)
        return real

    return {**timed(p, step, steps=1), "real_tokens": real}


def child_encode_peer(p: dict[str, Any]) -> dict[str, Any]:
    import torch
    from transformers import BertModel, BertTokenizerFast, ModernBertModel
    texts = ud_sentences(Path(p["data_root"]), p["sentences"])
    d, dev = str(model_dir(p)), p["device"]
    tok = BertTokenizerFast.from_pretrained(d)
    cls = BertModel if p.get("model", "minilm") == "minilm" else ModernBertModel
    model = cls.from_pretrained(d, attn_implementation="sdpa").to(dev).eval()
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
