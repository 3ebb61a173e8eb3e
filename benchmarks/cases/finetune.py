"""Fine-tuning steps (SST-2 classification, CoNLL tagging) against ``transformers``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cases.common import autocast, data_file, minilm_dir, timed, update


def finetune_examples(data_root: Path, task: str, n: int):
    from maskedlm.tasks.data import read_conll, read_table
    if task == "classify":
        ex = read_table(data_file(data_root, "sst2/train.tsv"))
    else:
        ex = read_conll(data_file(data_root, "conll2003/train.txt"))
    return ex[:n]


def child_finetune_ours(p: dict[str, Any]) -> dict[str, Any]:
    import numpy as np
    import torch

    from maskedlm.checkpoint import load_model
    from maskedlm.data.tokenizer import Tokenizer
    from maskedlm.tasks.common import TaskModel, length_grouped_batches, to_device
    from maskedlm.tasks.finetune import FinetuneConfig, finetune_optimizer, make_task
    dev = p["device"]
    examples = finetune_examples(Path(p["data_root"]), p["task"], p["examples"])
    task = make_task(p["task"])
    task.fit_labels(examples)
    pretrained, ckpt = load_model(str(minilm_dir()))
    tok = Tokenizer.load(ckpt)
    feats = task.featurize(examples, tok, 128)
    torch.manual_seed(0)
    model = TaskModel(pretrained.bert, task.make_head(pretrained.config)).to(dev).train()
    opt = finetune_optimizer(model, FinetuneConfig(lr=3e-5))
    rng = np.random.default_rng(0)
    order = length_grouped_batches([len(f["input_ids"]) for f in feats], p["batch"], rng)
    it = iter(order * (p["repeats"] + 2))

    def step() -> int:
        idx = next(it)
        batch = to_device(task.collate([feats[i] for i in idx], tok.pad_id, rng), model.device)
        with autocast(dev, p["precision"]):
            loss = task.loss(model, batch)
        update(model, opt, loss)
        return len(idx)

    return timed(p, step)


def child_finetune_peer(p: dict[str, Any]) -> dict[str, Any]:
    import numpy as np
    import torch
    from transformers import (
        BertForSequenceClassification,
        BertForTokenClassification,
        BertTokenizerFast,
        DataCollatorForTokenClassification,
        DataCollatorWithPadding,
    )
    d, dev = str(minilm_dir()), p["device"]
    examples = finetune_examples(Path(p["data_root"]), p["task"], p["examples"])
    tok = BertTokenizerFast.from_pretrained(d)
    if p["task"] == "classify":
        labels = sorted({e.label for e in examples})
        feats = [dict(tok(e.text, truncation=True, max_length=128), labels=labels.index(e.label))
                 for e in examples]
        model = BertForSequenceClassification.from_pretrained(d, num_labels=len(labels),
                                                              attn_implementation="sdpa")
        collator = DataCollatorWithPadding(tok)
    else:
        labels = sorted({t for e in examples for t in e.tags})
        feats = []
        for e in examples:  # label the first sub-word of each word, -100 elsewhere
            enc = tok(e.words, is_split_into_words=True, truncation=True, max_length=128)
            prev, lab = None, []
            for wid in enc.word_ids():
                lab.append(-100 if wid is None or wid == prev else labels.index(e.tags[wid]))
                prev = wid
            feats.append(dict(enc, labels=lab))
        model = BertForTokenClassification.from_pretrained(d, num_labels=len(labels),
                                                           attn_implementation="sdpa")
        collator = DataCollatorForTokenClassification(tok)
    model.to(dev).train()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-5, weight_decay=0.01, fused=True)
    torch.manual_seed(0)
    perm = np.random.default_rng(0).permutation(len(feats))  # Trainer: random batches
    order = [perm[i:i + p["batch"]] for i in range(0, len(perm), p["batch"])]
    it = iter(order * (p["repeats"] + 2))

    def step() -> int:
        idx = next(it)
        batch = {k: v.to(dev) for k, v in collator([feats[i] for i in idx]).items()}
        with autocast(dev, p["precision"]):
            loss = model(**batch).loss
        update(model, opt, loss)
        return len(idx)

    return timed(p, step)
