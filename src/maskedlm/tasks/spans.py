"""Span-based NER: classify every span of up to ``max_span_length`` words.

Each candidate span (i, j) is represented as ``[z_i; z_j; g_ij]`` plus a width
embedding, as in the coreference model of Lee et al. (2017) and SpanNER (Fu et al.
2021): ``z_i`` the first subword of word i, ``z_j`` the last subword of word j and
``g_ij`` a summary of the span, either its mean (``mean``), nothing (``boundary``),
or a learned self-attention pooling with ``FFN_start``/``FFN_end`` boundary
projections (``attention``; Lee et al. 2017, eq. 3-5; Jurafsky & Martin, SLP3
ch. 11). A feed-forward classifier scores entity types plus NULL; training is
cross-entropy over all spans with NULL down-weighted or sampled. Decoding keeps the
non-NULL spans: all of them, minus crossing (non-nested) overlaps, for nested NER;
greedily the best-scoring non-overlapping ones with ``flat`` (Fu et al. 2021, sec. 3.3).

>>> enumerate_spans(3, 2)
[(0, 0), (0, 1), (1, 1), (1, 2), (2, 2)]
"""

from __future__ import annotations

import warnings
from collections import Counter
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from maskedlm.data.tokenizer import Tokenizer
from maskedlm.errors import MaskedLMError
from maskedlm.models.config import ModelConfig
from maskedlm.options import SpanOptions
from maskedlm.tasks.common import (
    Batch,
    Feature,
    TaskModel,
    encode_words,
    encoder_inputs,
    run_batches,
    span_text,
    split_inputs,
    warn_truncated,
)
from maskedlm.tasks.data import SpanSentence, read_spans

NULL = "NULL"
SPAN_REPRS = ("boundary", "mean", "attention")
Span = tuple[int, int, str]  # start, end (exclusive), label


def enumerate_spans(n_words: int, max_len: int) -> list[tuple[int, int]]:
    """All (i, j), j inclusive, with at most ``max_len`` words, ordered by start then end."""
    return [(i, j) for i in range(n_words) for j in range(i, min(n_words, i + max_len))]


def _ffn(size: int) -> nn.Module:
    return nn.Sequential(nn.Linear(size, size), nn.GELU())


class SpanHead(nn.Module):
    """Span representation + classifier: (B, T, H) states -> (N spans, types + 1) logits."""

    def __init__(self, hidden_size: int, n_labels: int, span_repr: str, max_width: int,
                 dropout: float, width_dim: int = 32) -> None:
        super().__init__()
        H = hidden_size
        self.span_repr = span_repr
        self.width = nn.Embedding(max_width, width_dim)  # Lee et al. (2017): width feature
        if span_repr == "attention":
            self.ffn_start, self.ffn_end = _ffn(H), _ffn(H)
            self.attn = nn.Linear(H, 1)
        D = 2 * H + (0 if span_repr == "boundary" else H) + width_dim
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(D, H), nn.GELU(),
                                        nn.Dropout(dropout), nn.Linear(H, n_labels))

    def pooled(self, hidden: torch.Tensor, batch: Batch) -> torch.Tensor:
        """g_ij for every span from prefix sums over the sequence: O(B*T*H), no (N, L, H) gather."""
        B, T, H = hidden.shape
        if self.span_repr == "mean":
            weights = torch.ones(B, T, 1, dtype=hidden.dtype, device=hidden.device)
        else:
            # Bounded scores (10 tanh(s/10)) keep every exp() within e^-20 of the sentence
            # maximum, so the float64 prefix-sum differences below stay exact enough.
            s = self.attn(hidden).double()
            s = 10.0 * torch.tanh(s / 10.0)
            weights = torch.exp(s - s.amax(dim=1, keepdim=True))  # (B, T, 1)
        weights = weights.double()
        zero = torch.zeros(B, 1, 1, dtype=torch.float64, device=hidden.device)
        cw = torch.cat([zero, weights.cumsum(1)], 1).reshape(B * (T + 1), 1)
        cx = torch.cat([zero.expand(B, 1, H), (weights * hidden.double()).cumsum(1)], 1)
        cx = cx.reshape(B * (T + 1), H)
        lo = batch["span_b"] * (T + 1) + batch["span_start"]
        hi = batch["span_b"] * (T + 1) + batch["span_end"] + 1
        return ((cx[hi] - cx[lo]) / (cw[hi] - cw[lo])).to(hidden.dtype)  # (N, H)

    def forward(self, hidden: torch.Tensor, batch: Batch) -> torch.Tensor:
        B, T, H = hidden.shape
        flat = hidden.reshape(B * T, H)
        zi = flat[batch["span_b"] * T + batch["span_start"]]  # (N, H)
        zj = flat[batch["span_b"] * T + batch["span_end"]]
        parts = [zi, zj]
        if self.span_repr == "attention":
            parts = [self.ffn_start(zi), self.ffn_end(zj)]
        if self.span_repr != "boundary":
            parts.append(self.pooled(hidden, batch))
        parts.append(self.width(batch["span_width"]))
        return self.classifier(torch.cat(parts, dim=-1))  # (N, C)


def decode_spans(cands: list[tuple[int, int, str, float]], flat: bool) -> list[tuple[int, int, str, float]]:
    """Keep the best-scoring spans without overlap (flat) or without crossing (nested).

    >>> decode_spans([(0, 2, "ORG", 0.9), (1, 2, "PER", 0.8), (1, 3, "LOC", 0.7)], flat=False)
    [(0, 2, 'ORG', 0.9), (1, 2, 'PER', 0.8)]
    >>> decode_spans([(0, 2, "ORG", 0.9), (1, 2, "PER", 0.8)], flat=True)
    [(0, 2, 'ORG', 0.9)]
    """
    kept: list[tuple[int, int, str, float]] = []
    for s, e, lab, score in sorted(cands, key=lambda c: -c[3]):
        ok = True
        for ks, ke, _, _ in kept:
            overlap = s < ke and ks < e
            nested = (ks <= s and e <= ke) or (s <= ks and ke <= e)
            if overlap and (flat or not nested):
                ok = False
                break
        if ok:
            kept.append((s, e, lab, score))
    return sorted(kept, key=lambda c: (c[0], c[1]))


def span_prf(gold: list[list[Span]], pred: list[list[Span]]) -> dict[str, Any]:
    """Exact-match micro P/R/F1 and per type.

    >>> span_prf([[(0, 1, "PER")]], [[(0, 1, "PER"), (2, 3, "LOC")]])["precision"]
    0.5
    """
    tp, ng, np_ = Counter(), Counter(), Counter()
    for g, p in zip(gold, pred, strict=True):
        gs, ps = set(g), set(p)
        for x in gs & ps:
            tp[x[2]] += 1
        for x in gs:
            ng[x[2]] += 1
        for x in ps:
            np_[x[2]] += 1

    def prf(t: int, n_pred: int, n_gold: int) -> dict[str, float]:
        p = t / n_pred if n_pred else 0.0
        r = t / n_gold if n_gold else 0.0
        return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0}

    out: dict[str, Any] = prf(sum(tp.values()), sum(np_.values()), sum(ng.values()))
    out["per_type"] = {k: {**prf(tp[k], np_[k], ng[k]), "support": ng[k]}
                       for k in sorted(set(ng) | set(np_))}
    return out


def nested_inner(spans: list[Span]) -> set[Span]:
    """Gold entities that lie inside another entity of the same sentence."""
    return {a for a in spans for b in spans
            if a != b and b[0] <= a[0] and a[1] <= b[1] and (a[0], a[1]) != (b[0], b[1])}


class SpanTask:
    """Span classification NER (nested by default, ``flat`` for CoNLL-style data)."""

    kind = "spans"
    metric = "f1"

    def __init__(self, labels: list[str] | None = None,
                 max_span_length: int = SpanOptions.max_span_length,
                 span_repr: str = SpanOptions.span_repr, flat: bool = SpanOptions.flat,
                 null_weight: float = SpanOptions.null_weight,
                 null_sample: float = SpanOptions.null_sample,
                 threshold: float | None = SpanOptions.threshold,
                 dropout: float = SpanOptions.dropout) -> None:
        if span_repr not in SPAN_REPRS:
            raise MaskedLMError(f"--span-repr must be one of {', '.join(SPAN_REPRS)}, got {span_repr!r}")
        if max_span_length < 1:
            raise MaskedLMError(f"--max-span-length must be >= 1, got {max_span_length}")
        if not 0 < null_sample <= 1:
            raise MaskedLMError(f"--null-sample must be in (0, 1], got {null_sample}")
        if threshold is not None and not 0 < threshold < 1:
            raise MaskedLMError(f"--threshold must be in (0, 1), got {threshold}")
        self.labels = list(labels or [])  # labels[0] is NULL
        self.max_span_length, self.span_repr, self.flat = max_span_length, span_repr, flat
        self.null_weight, self.null_sample, self.threshold = null_weight, null_sample, threshold
        self.dropout = dropout

    def options(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("max_span_length", "span_repr", "flat", "null_weight",
                                              "null_sample", "threshold", "dropout")}

    def read(self, path: str) -> list[SpanSentence]:
        return read_spans(path)

    def fit_labels(self, examples: list[SpanSentence]) -> None:
        types = sorted({lab for s in examples for _, _, lab in s.spans})
        if not types:
            raise MaskedLMError(f"{examples[0].where.rsplit(':', 1)[0]}: no entities in training data")
        self.labels = [NULL, *types]

    def featurize(self, examples: list[SpanSentence], tok: Tokenizer, max_length: int) -> list[Feature]:
        index = {lab: i for i, lab in enumerate(self.labels)}
        encs, cut = encode_words(tok, [s.words for s in examples], max_length)
        warn_truncated(cut, len(examples), max_length, "sentences")
        feats, too_long = [], 0
        for s, enc in zip(examples, encs, strict=True):
            gold: dict[tuple[int, int], int] = {}
            for a, b, lab in s.spans:
                if lab not in index:
                    raise MaskedLMError(f"{s.where}: entity type {lab!r} not seen in training")
                if not 0 <= a < b <= len(s.words):
                    raise MaskedLMError(f"{s.where}: span [{a}, {b}) outside the sentence")
                too_long += b - a > self.max_span_length
                gold[(a, b - 1)] = index[lab]  # one label per span: the last listed wins
            spans = enumerate_spans(enc.n_words, self.max_span_length)
            ij = np.array(spans, dtype=np.int64).reshape(-1, 2)
            first, last = np.array(enc.first, dtype=np.int64), np.array(enc.last, dtype=np.int64)
            # columns: start subword, end subword, width - 1, label
            table = np.stack([first[ij[:, 0]], last[ij[:, 1]], ij[:, 1] - ij[:, 0],
                              np.array([gold.get(sp, 0) for sp in spans], dtype=np.int64)], 1)
            feats.append({"input_ids": enc.input_ids, "spans": spans, "table": table})
        if too_long:
            warnings.warn(f"{too_long} gold entities are longer than --max-span-length "
                          f"{self.max_span_length} words; they count as missed", stacklevel=2)
        return feats

    def make_head(self, config: ModelConfig) -> nn.Module:
        return SpanHead(config.hidden_size, len(self.labels), self.span_repr,
                        self.max_span_length, self.dropout)

    def collate(self, feats: list[Feature], pad_id: int, rng: np.random.Generator | None) -> Batch:
        batch = encoder_inputs(feats, pad_id)
        tables, owners = [], []
        for b, f in enumerate(feats):
            t = f["table"]
            if rng is not None and self.null_sample < 1:  # training: sample NULL spans
                t = t[(t[:, 3] != 0) | (rng.random(len(t)) < self.null_sample)]
            tables.append(t)
            owners.append(np.full(len(t), b, dtype=np.int64))
        table = torch.from_numpy(np.concatenate(tables))
        batch["span_b"] = torch.from_numpy(np.concatenate(owners))
        for k, name in enumerate(("span_start", "span_end", "span_width", "span_labels")):
            batch[name] = table[:, k].contiguous()
        return batch

    def loss(self, model: TaskModel, batch: Batch) -> torch.Tensor:
        hidden = model.hidden(batch)
        if batch["span_labels"].numel() == 0:  # every span cut by --max-length
            return hidden.sum() * 0.0
        logits = model.head(hidden, batch).float()
        weight = torch.ones(len(self.labels), device=logits.device)
        weight[0] = self.null_weight
        return F.cross_entropy(logits, batch["span_labels"], weight=weight)

    # ------------------------------------------------------------------ decoding
    def span_probs(self, model: TaskModel, sentences: list[list[str]], tok: Tokenizer,
                   max_length: int, batch_size: int) -> list[tuple[list[tuple[int, int]], np.ndarray]]:
        """Per sentence: its candidate spans (i, j inclusive) and their (N, C) probabilities."""
        fake = [SpanSentence(w, [], "input") for w in sentences]
        feats = self.featurize(fake, tok, max_length)
        out: list[tuple[list[tuple[int, int]], np.ndarray]] = [([], np.zeros((0, 0)))] * len(sentences)
        for idx, batch, logits in run_batches(model, self, feats, tok.pad_id, batch_size):
            probs = logits.float().softmax(-1).numpy()
            owner = batch["span_b"].numpy()
            for b, i in enumerate(idx):
                out[i] = (feats[i]["spans"], probs[owner == b])
        return out

    def decode(self, spans: list[tuple[int, int]], probs: np.ndarray,
               threshold: float | None = None) -> list[tuple[int, int, str, float]]:
        """Entities of one sentence: argmax != NULL, or ``1 - p(NULL) >= threshold``."""
        threshold = self.threshold if threshold is None else threshold
        if not len(spans):
            return []
        best = probs[:, 1:].argmax(-1) + 1
        score = probs[np.arange(len(best)), best]
        keep = (1 - probs[:, 0] >= threshold) if threshold else score > probs[:, 0]
        cands = [(spans[k][0], spans[k][1] + 1, self.labels[best[k]], float(score[k]))
                 for k in np.flatnonzero(keep)]
        return decode_spans(cands, self.flat)

    def _decode(self, model: TaskModel, sentences: list[list[str]], tok: Tokenizer,
                max_length: int, batch_size: int) -> list[list[tuple[int, int, str, float]]]:
        return [self.decode(sp, p) for sp, p in
                self.span_probs(model, sentences, tok, max_length, batch_size)]

    def calibrate(self, model: TaskModel, examples: list[SpanSentence], tok: Tokenizer,
                  max_length: int, batch_size: int,
                  grid: tuple[float, ...] = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
                  ) -> dict[str, Any]:
        """Choose the NULL threshold with the best F1 on labelled ``examples`` and keep it.

        Returns ``{"threshold": t, "f1": {t: f1, ...}}``; argmax decoding competes as t=None.
        """
        probs = self.span_probs(model, [s.words for s in examples], tok, max_length, batch_size)
        gold = [s.spans for s in examples]
        table: dict[float | None, float] = {}
        for t in (None, *grid):
            pred = [[(a, b, lab) for a, b, lab, _ in self.decode(sp, p, t or 0.0)] for sp, p in probs]
            table[t] = span_prf(gold, pred)["f1"]
        self.threshold = max(table, key=lambda t: table[t])  # type: ignore[arg-type]
        return {"threshold": self.threshold, "f1": {str(k): v for k, v in table.items()}}

    def evaluate(self, model: TaskModel, examples: list[SpanSentence], tok: Tokenizer,
                 max_length: int, batch_size: int) -> dict[str, Any]:
        """Exact-match P/R/F1 (+ per type) and, for nested data, inner entities found."""
        self.featurize(examples, tok, max_length)  # label and span checks with file:line
        pred = self._decode(model, [s.words for s in examples], tok, max_length, batch_size)
        pred_spans = [[(s, e, lab) for s, e, lab, _ in p] for p in pred]
        out = span_prf([s.spans for s in examples], pred_spans)
        inner = [nested_inner(s.spans) for s in examples]
        out["nested_gold"] = sum(len(x) for x in inner)
        out["nested_found"] = sum(len(x & set(p)) for x, p in zip(inner, pred_spans, strict=True))
        out["examples"] = len(examples)
        return out

    def predict(self, model: TaskModel, inputs: list[Any], tok: Tokenizer, max_length: int,
                batch_size: int) -> list[dict[str, Any]]:
        """Inputs are raw strings or lists of words; entities carry word offsets."""
        words, texts, offsets = split_inputs(tok, inputs)
        decoded = self._decode(model, words, tok, max_length, batch_size)
        return [{"words": w, "entities": [{"start": s, "end": e, "label": lab, "score": score,
                                           "text": span_text(t, w, o, s, e)}
                                          for s, e, lab, score in d]}
                for w, t, o, d in zip(words, texts, offsets, decoded, strict=True)]
