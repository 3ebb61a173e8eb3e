"""Masking throughput: our NumPy masking against ``DataCollatorForLanguageModeling``."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from cases.common import MLM_PROB, batch_source, minilm_dir, timed, unmasked_examples


def child_masking_ours(p: dict[str, Any]) -> dict[str, Any]:
    source, _ = batch_source(Path(p["data_root"]), p["recipe"], p["seq_len"], p["batch"],
                             p["scheme"])
    source.step_batches(0)
    steps = iter(range(1, 1 << 30))
    return timed(p, lambda: len(source.step_batches(next(steps))[0]["input_ids"]))


def child_masking_peer(p: dict[str, Any]) -> dict[str, Any]:
    from transformers import BertTokenizerFast, DataCollatorForLanguageModeling
    source, _ = batch_source(Path(p["data_root"]), "roberta", p["seq_len"], p["batch"])
    hf_tok = BertTokenizerFast.from_pretrained(str(minilm_dir()))
    examples = [unmasked_examples(source, s) for s in range(p["steps"] * (p["repeats"] + 1))]
    whole = p["scheme"] != "token"
    if whole:  # the peer's whole-word masking needs each token's character offsets
        examples = [[_with_offsets(hf_tok, e, p["seq_len"]) for e in ex] for ex in examples]
    with warnings.catch_warnings():  # its whole-word masking has no random replacement
        warnings.simplefilter("ignore")
        collator = DataCollatorForLanguageModeling(hf_tok, mlm_probability=MLM_PROB,
                                                   whole_word_mask=whole, seed=0)
    data = iter(examples)
    return timed(p, lambda: len(collator(next(data))["input_ids"]))


def _with_offsets(hf_tok, example: dict[str, list[int]], length: int) -> dict[str, Any]:
    """Re-tokenize the decoded text so the peer gets the offset mapping it asks for."""
    text = hf_tok.decode(example["input_ids"], skip_special_tokens=True)
    enc = hf_tok(text, return_offsets_mapping=True, truncation=True, padding="max_length",
                 max_length=length)  # equal lengths: offsets are not padded
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
            "offset_mapping": [list(o) for o in enc["offset_mapping"]]}
