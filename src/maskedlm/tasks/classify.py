"""Sentence and sentence-pair classification from the final [CLS] vector (or the mean).

``[CLS] A [SEP]`` or ``[CLS] A [SEP] B [SEP]`` with segment ids 0/1; dropout and one
linear layer over the last layer's [CLS] state, softmax, cross-entropy (Devlin et al.
2019, sec. 4.1). ``pool="mean"`` reads the mean of the last layer over the real tokens
instead: an encoder pretrained without next sentence prediction (roberta, spanbert,
budget) never trains its [CLS] vector, and at small fine-tuning budgets the mean of its
token vectors is the better start (Reimers & Gurevych 2019 pool the same way). String
labels are mapped to ids and saved with the model.

>>> task = ClassifyTask(pair=False)
>>> task.fit_labels([TextExample("good", None, "1"), TextExample("bad", None, "0")])
>>> task.labels
['0', '1']
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from maskedlm.data.corpus import is_number
from maskedlm.data.tokenizer import Tokenizer
from maskedlm.errors import MaskedLMError
from maskedlm.models.config import ModelConfig
from maskedlm.options import ClassifyOptions
from maskedlm.tasks.common import (
    Batch,
    Feature,
    LinearHead,
    TaskModel,
    encoder_inputs,
    label_index,
    run_batches,
    warn_truncated,
)
from maskedlm.tasks.data import TextExample, read_table


class ClassifierHead(LinearHead):
    """dropout + linear over the [CLS] state (or the mean over real tokens):
    (B, T, H) -> (B, C) logits."""

    def __init__(self, hidden_size: int, n_labels: int, dropout: float, pool: str = "cls") -> None:
        super().__init__(hidden_size, n_labels, dropout)
        self.pool = pool

    def forward(self, hidden: torch.Tensor, batch: Batch) -> torch.Tensor:
        if self.pool == "cls":
            return self.out(self.dropout(hidden[:, 0]))
        keep = batch["attention_mask"][..., None].to(hidden.dtype)  # (B, T, 1)
        mean = (hidden * keep).sum(1) / keep.sum(1).clamp(min=1)  # (B, H)
        return self.out(self.dropout(mean))


def binary_f1(gold: np.ndarray, pred: np.ndarray, positive: int = 1) -> float:
    """F1 of the positive class.

    >>> binary_f1(np.array([1, 0, 1]), np.array([1, 1, 1]))
    0.8
    """
    tp = int(((pred == positive) & (gold == positive)).sum())
    fp = int(((pred == positive) & (gold != positive)).sum())
    fn = int(((pred != positive) & (gold == positive)).sum())
    return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)


class ClassifyTask:
    """``classify`` (one sentence) or ``pair`` (two) classification."""

    metric = "accuracy"

    def __init__(self, pair: bool, labels: list[str] | None = None,
                 columns: dict[str, Any] | None = None, dropout: float = ClassifyOptions.dropout,
                 pool: str = ClassifyOptions.pool) -> None:
        if pool not in ("cls", "mean"):
            raise MaskedLMError(f"--pool must be cls or mean, got {pool!r}")
        self.pool = pool
        self.pair = pair
        self.kind = "pair" if pair else "classify"
        self.labels = list(labels or [])
        self.columns = dict(columns or {})
        self.dropout = dropout

    def options(self) -> dict[str, Any]:
        return {"pair": self.pair, "columns": self.columns, "dropout": self.dropout,
                "pool": self.pool}

    def read(self, path: str, require_labels: bool = True) -> list[TextExample]:
        return read_table(path, pair=self.pair, require_labels=require_labels, **self.columns)

    def fit_labels(self, examples: list[TextExample]) -> None:
        found = {e.label for e in examples if e.label is not None}
        # numeric labels in numeric order, so GLUE's "0"/"1" keep their meaning
        key = (lambda s: (0, float(s), s)) if all(is_number(x) for x in found) else (lambda s: (1, 0.0, s))
        self.labels = sorted(found, key=key)
        if len(self.labels) < 2:
            raise MaskedLMError(f"{examples[0].where.rsplit(':', 1)[0]}: training data has "
                                f"{len(self.labels)} distinct label(s); classification needs 2")

    def featurize(self, examples: list[TextExample], tok: Tokenizer, max_length: int) -> list[Feature]:
        index = label_index(self.labels)
        feats, cut = [], 0
        for e in examples:
            if e.label is not None and e.label not in index:
                raise MaskedLMError(f"{e.where}: label {e.label!r} not seen in training "
                                    f"(known: {', '.join(self.labels)})")
            pair = e.pair if self.pair else None
            enc = tok.encode(e.text, pair)
            if len(enc["input_ids"]) > max_length:
                cut += 1
                enc = tok.encode(e.text, pair, max_length=max_length)
            feats.append({"input_ids": enc["input_ids"].tolist(),
                          "token_type_ids": enc["token_type_ids"].tolist(),
                          "label": -100 if e.label is None else index[e.label]})
        warn_truncated(cut, len(examples), max_length, "examples")
        return feats

    def make_head(self, config: ModelConfig) -> nn.Module:
        return ClassifierHead(config.hidden_size, len(self.labels), self.dropout, self.pool)

    def collate(self, feats: list[Feature], pad_id: int, rng: np.random.Generator | None) -> Batch:
        batch = encoder_inputs(feats, pad_id)
        batch["labels"] = torch.tensor([f["label"] for f in feats])
        return batch

    def loss(self, model: TaskModel, batch: Batch) -> torch.Tensor:
        ids = batch["input_ids"]  # the head reads [CLS] only: the last layer computes nothing else
        cls = torch.zeros(ids.shape[0], 1, dtype=torch.long, device=ids.device)
        logits = model.head(model.hidden(batch, rows=cls if self.pool == "cls" else None), batch)
        return F.cross_entropy(logits.float(), batch["labels"])

    def _probs(self, model: TaskModel, feats: list[Feature], pad_id: int, batch_size: int) -> np.ndarray:
        probs = np.zeros((len(feats), len(self.labels)), dtype=np.float32)
        for idx, _, logits in run_batches(model, self, feats, pad_id, batch_size):
            probs[idx] = logits.float().softmax(-1).numpy()
        return probs

    def evaluate(self, model: TaskModel, examples: list[TextExample], tok: Tokenizer,
                 max_length: int, batch_size: int) -> dict[str, Any]:
        """accuracy (+ f1 of the second label when binary) and the example count."""
        feats = self.featurize(examples, tok, max_length)
        pred = self._probs(model, feats, tok.pad_id, batch_size).argmax(-1)
        gold = np.array([f["label"] for f in feats])
        out: dict[str, Any] = {"accuracy": float((pred == gold).mean()), "examples": len(feats)}
        if len(self.labels) == 2:
            out["f1"] = binary_f1(gold, pred)
        return out

    def predict(self, model: TaskModel, inputs: list[Any], tok: Tokenizer, max_length: int,
                batch_size: int) -> list[dict[str, Any]]:
        """Inputs are strings, or (text, pair) tuples for ``pair``."""
        examples = []
        for x in inputs:
            text, pair = (x if isinstance(x, tuple | list) else (x, None))
            if self.pair and pair is None:
                raise MaskedLMError("pair classification needs two texts (text, pair)")
            examples.append(TextExample(text, pair, None, "input"))
        probs = self._probs(model, self.featurize(examples, tok, max_length), tok.pad_id, batch_size)
        return [{"label": self.labels[int(p.argmax())], "score": float(p.max()),
                 "probs": {lab: float(v) for lab, v in zip(self.labels, p, strict=True)}}
                for p in probs]
