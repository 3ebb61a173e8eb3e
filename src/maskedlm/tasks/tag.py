"""Sequence tagging (NER with BIO tags, POS): a softmax over the tag set at every token.

Subword alignment both ways (Devlin et al. 2019, sec. 5.3): train on the first
subword of each word only (``first``), or on all of them (``all``; the continuation
pieces of a ``B-X`` word get ``I-X``). Decoding always reads the first subword.
Entity F1 comes from ``seqeval`` (conlleval-compatible). Optional BIO-constrained
Viterbi decoding forbids ``I-X`` unless it follows ``B-X``/``I-X``; with a softmax
tagger this is the decoding-time half of a CRF (Lample et al. 2016) at no training cost.

>>> task = TagTask(label_subwords="first")
>>> task.fit_labels([TaggedSentence(["Jane", "runs"], ["B-PER", "O"])])
>>> task.labels
['O', 'B-PER', 'I-PER']
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from maskedlm.data.tokenizer import Tokenizer
from maskedlm.errors import MaskedLMError
from maskedlm.models.bert import Rows
from maskedlm.models.config import ModelConfig
from maskedlm.options import TagOptions
from maskedlm.tasks.common import (
    Batch,
    Feature,
    LinearHead,
    TaskModel,
    encode_words,
    encoder_inputs,
    label_index,
    run_batches,
    span_text,
    split_inputs,
    warn_truncated,
)
from maskedlm.tasks.data import TaggedSentence, bio_to_spans, is_bio, read_tagged


class TokenHead(LinearHead):
    """dropout + linear, evaluated only where needed (labelled or first subwords)."""

    def logits(self, hidden: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """(B, T, H) states, (N,) flat positions -> (N, C) logits."""
        flat = hidden.reshape(-1, hidden.shape[-1])
        return self.out(self.dropout(flat[positions]))

    def forward(self, hidden: torch.Tensor, batch: Batch) -> torch.Tensor:
        return self.logits(hidden, batch["first_pos"])  # (words in batch, C)


def allowed_transitions(labels: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """BIO constraints: (start (C,), trans (C, C)) boolean, ``I-X`` only after ``B-X``/``I-X``."""
    C = len(labels)
    start = np.array([not lab.startswith("I-") for lab in labels])
    trans = np.ones((C, C), dtype=bool)
    for j, cur in enumerate(labels):
        if cur.startswith("I-"):
            for i, prev in enumerate(labels):
                trans[i, j] = prev in ("B-" + cur[2:], cur)
    return start, trans


def viterbi(log_probs: np.ndarray, start: np.ndarray, trans: np.ndarray) -> list[int]:
    """Best tag sequence under hard transition constraints.

    >>> lp = np.log(np.array([[0.3, 0.3, 0.4], [0.1, 0.1, 0.8]]))  # O, B-X, I-X: argmax [2, 2]
    >>> s, t = allowed_transitions(["O", "B-X", "I-X"])
    >>> viterbi(lp, s, t)
    [1, 2]
    """
    n = len(log_probs)
    if n == 0:
        return []
    penalty = np.where(trans, 0.0, -np.inf)
    score = np.where(start, log_probs[0], -np.inf)
    back = np.zeros((n, log_probs.shape[1]), dtype=np.int64)
    for t in range(1, n):
        cand = score[:, None] + penalty  # (prev, cur)
        back[t] = cand.argmax(0)
        score = cand.max(0) + log_probs[t]
    path = [int(score.argmax())]
    for t in range(n - 1, 0, -1):
        path.append(int(back[t, path[-1]]))
    return path[::-1]


class TagTask:
    """Per-token classification; entity F1 for BIO tag sets, accuracy otherwise."""

    kind = "tag"

    def __init__(self, labels: list[str] | None = None,
                 label_subwords: str = TagOptions.label_subwords,
                 viterbi: bool = TagOptions.viterbi, dropout: float = TagOptions.dropout) -> None:
        if label_subwords not in ("all", "first"):
            raise MaskedLMError(f"--label-subwords must be all or first, got {label_subwords!r}")
        self.labels = list(labels or [])
        self.label_subwords = label_subwords
        self.viterbi = viterbi
        self.dropout = dropout

    @property
    def bio(self) -> bool:
        return is_bio(set(self.labels))

    @property
    def metric(self) -> str:  # type: ignore[override]
        return "f1" if self.bio else "accuracy"

    def options(self) -> dict[str, Any]:
        return {"label_subwords": self.label_subwords, "viterbi": self.viterbi,
                "dropout": self.dropout}

    def read(self, path: str) -> list[TaggedSentence]:
        return read_tagged(path)

    def fit_labels(self, examples: list[TaggedSentence]) -> None:
        tags = {t for s in examples for t in s.tags}
        if is_bio(tags):  # every type gets both B- and I-, "O" first
            types = sorted({t[2:] for t in tags if t != "O"})
            self.labels = ["O"] + [f"{p}-{x}" for x in types for p in "BI"]
        else:
            self.labels = sorted(tags)

    def featurize(self, examples: list[TaggedSentence], tok: Tokenizer, max_length: int) -> list[Feature]:
        index = label_index(self.labels)
        encs, cut = encode_words(tok, [s.words for s in examples], max_length)
        warn_truncated(cut, len(examples), max_length, "sentences")
        feats = []
        for s, enc in zip(examples, encs, strict=True):
            if len(s.tags) != len(s.words):
                raise MaskedLMError(f"{s.where}: {len(s.words)} words but {len(s.tags)} tags")
            labels = [-100] * len(enc.input_ids)
            for w, (a, b) in enumerate(zip(enc.first, enc.last, strict=True)):
                tag = s.tags[w]
                if tag not in index:
                    raise MaskedLMError(f"{s.where}: word {w + 1} ({s.words[w]!r}) has tag {tag!r}, "
                                        "not seen in training")
                labels[a] = index[tag]
                if self.label_subwords == "all":
                    cont = "I-" + tag[2:] if self.bio and tag.startswith("B-") else tag
                    labels[a + 1:b + 1] = [index[cont]] * (b - a)
            feats.append({"input_ids": enc.input_ids, "labels": labels, "first": enc.first})
        return feats

    def make_head(self, config: ModelConfig) -> nn.Module:
        return TokenHead(config.hidden_size, len(self.labels), self.dropout)

    def collate(self, feats: list[Feature], pad_id: int, rng: np.random.Generator | None) -> Batch:
        batch = encoder_inputs(feats, pad_id)
        T = batch["input_ids"].shape[1]
        labels = torch.full((len(feats), T), -100, dtype=torch.long)
        first = []
        for i, f in enumerate(feats):
            labels[i, :len(f["labels"])] = torch.tensor(f["labels"])
            first.extend(i * T + p for p in f["first"])
        flat = labels.reshape(-1)
        batch["label_pos"] = flat.ne(-100).nonzero().squeeze(1)
        batch["label_ids"] = flat[batch["label_pos"]]
        batch["first_pos"] = torch.tensor(first, dtype=torch.long)
        return batch

    def loss(self, model: TaskModel, batch: Batch) -> torch.Tensor:
        B, T = batch["input_ids"].shape
        pos = batch["label_pos"]
        needed = torch.zeros(B * T, dtype=torch.bool, device=pos.device)
        needed[pos] = True
        rows = Rows.of(needed.view(B, T))  # the last layer only where there is a label
        if rows is None:
            logits = model.head.logits(model.hidden(batch), pos)
        else:
            logits = model.head.logits(model.hidden(batch, rows=rows.rows), rows.flat(pos))
        return F.cross_entropy(logits.float(), batch["label_ids"])

    # ------------------------------------------------------------------ decoding
    def _decode(self, model: TaskModel, sentences: list[list[str]], tok: Tokenizer,
                max_length: int, batch_size: int, use_viterbi: bool | None = None
                ) -> list[tuple[list[str], list[float]]]:
        """Tags and their probabilities for each sentence (cut-off words: ``O``/"_", 0)."""
        fake = [TaggedSentence(w, [self.labels[0]] * len(w), "input") for w in sentences]
        feats = self.featurize(fake, tok, max_length)
        use_viterbi = self.viterbi and self.bio if use_viterbi is None else use_viterbi and self.bio
        start, trans = allowed_transitions(self.labels)
        out: list[tuple[list[str], list[float]]] = [([], [])] * len(sentences)
        for idx, _, logits in run_batches(model, self, feats, tok.pad_id, batch_size):
            lp = logits.float().log_softmax(-1).numpy()
            offset = 0
            for i in idx:
                n = len(feats[i]["first"])
                rows = lp[offset:offset + n]
                offset += n
                path = viterbi(rows, start, trans) if use_viterbi else rows.argmax(-1).tolist()
                fill = len(sentences[i]) - n
                tags = [self.labels[k] for k in path] + ["O" if self.bio else "_"] * fill
                probs = [float(np.exp(rows[t, k])) for t, k in enumerate(path)] + [0.0] * fill
                out[i] = (tags, probs)
        return out

    def evaluate(self, model: TaskModel, examples: list[TaggedSentence], tok: Tokenizer,
                 max_length: int, batch_size: int, use_viterbi: bool | None = None) -> dict[str, Any]:
        """seqeval entity P/R/F1 (+ per type) for BIO tags, token accuracy always."""
        self.featurize(examples, tok, max_length)  # label checks with file:line
        decoded = self._decode(model, [s.words for s in examples], tok, max_length, batch_size,
                               use_viterbi)
        gold = [s.tags for s in examples]
        pred = [tags for tags, _ in decoded]
        n = sum(len(g) for g in gold)
        acc = sum(a == b for g, p in zip(gold, pred, strict=True) for a, b in zip(g, p, strict=True)) / n
        out: dict[str, Any] = {"accuracy": acc, "examples": len(examples)}
        if not self.bio:
            # one tag per token: micro P/R/F1 all equal accuracy
            out.update(f1=acc, precision=acc, recall=acc)
            return out
        from seqeval.metrics import classification_report, f1_score, precision_score, recall_score

        out.update(f1=f1_score(gold, pred), precision=precision_score(gold, pred),
                   recall=recall_score(gold, pred))
        report = classification_report(gold, pred, output_dict=True, zero_division=0)
        out["per_type"] = {k: {"precision": float(v["precision"]), "recall": float(v["recall"]),
                               "f1": float(v["f1-score"]), "support": int(v["support"])}
                           for k, v in report.items() if not k.endswith(" avg")}
        out = {k: float(v) if isinstance(v, np.floating) else v for k, v in out.items()}
        return out

    def predict(self, model: TaskModel, inputs: list[Any], tok: Tokenizer, max_length: int,
                batch_size: int) -> list[dict[str, Any]]:
        """Inputs are raw strings or lists of words; entities carry word offsets."""
        words, texts, offsets = split_inputs(tok, inputs)
        results = []
        decoded = self._decode(model, words, tok, max_length, batch_size)
        for w, text, off, (tags, probs) in zip(words, texts, offsets, decoded, strict=True):
            item: dict[str, Any] = {"words": w, "tags": tags}
            if self.bio:
                item["entities"] = [
                    {"start": s, "end": e, "label": lab, "score": float(np.mean(probs[s:e])),
                     "text": span_text(text, w, off, s, e)}
                    for s, e, lab in bio_to_spans(tags)]
            results.append(item)
        return results
