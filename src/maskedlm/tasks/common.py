"""Pieces every task shares: the encoder+head model, word alignment, length-grouped batches.

A task (classify, tag, spans) is an object with a small protocol (:class:`Task`); the
one fine-tuning loop in ``finetune.py`` only talks to that protocol.

>>> batches = length_grouped_batches([5, 9, 7, 3], batch_size=2, rng=np.random.default_rng(0))
>>> sorted(len(b) for b in batches)
[2, 2]
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from maskedlm.data.tokenizer import Tokenizer
from maskedlm.models.config import ModelConfig
from maskedlm.models.heads import Encoder

Feature = dict[str, Any]
Batch = dict[str, torch.Tensor]


class TaskModel(nn.Module):
    """An encoder with a task head: ``head(hidden (B, T, H), batch) -> outputs``."""

    def __init__(self, encoder: Encoder, head: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def hidden(self, batch: Batch, rows: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T, H) final states, or (B, R, H) at ``rows`` (see ``BertModel.forward``)."""
        return self.encoder(batch["input_ids"], batch.get("token_type_ids"),
                            batch.get("attention_mask"), rows=rows).last_hidden_state

    def infer(self, batch: Batch) -> torch.Tensor:
        """The head's outputs for a collated batch: what inference (and ONNX export) runs."""
        return self.head(self.hidden(batch), batch)


class Task(Protocol):
    """What the fine-tuning loop needs from a task."""

    kind: str
    labels: list[str]
    metric: str  # the dev metric early stopping maximises

    def read(self, path: str) -> list[Any]: ...
    def fit_labels(self, examples: list[Any]) -> None: ...
    def featurize(self, examples: list[Any], tok: Tokenizer, max_length: int) -> list[Feature]: ...
    def make_head(self, config: ModelConfig) -> nn.Module: ...
    def collate(self, feats: list[Feature], pad_id: int, rng: np.random.Generator | None) -> Batch: ...
    def loss(self, model: TaskModel, batch: Batch) -> torch.Tensor: ...
    def evaluate(self, model: TaskModel, examples: list[Any], tok: Tokenizer, max_length: int,
                 batch_size: int) -> dict[str, Any]: ...
    def predict(self, model: TaskModel, inputs: list[Any], tok: Tokenizer, max_length: int,
                batch_size: int) -> list[dict[str, Any]]: ...
    def options(self) -> dict[str, Any]: ...


# ----------------------------------------------------------------------------- words -> subwords
@dataclass
class WordEncoding:
    """``[CLS] subwords [SEP]`` of a word sequence and where each word's subwords lie."""

    input_ids: list[int]
    first: list[int]  # position (in input_ids) of each kept word's first subword
    last: list[int]   # ... and of its last subword
    n_words: int      # words kept; fewer than the sentence has when truncated


def encode_words(tok: Tokenizer, sentences: Sequence[Sequence[str]], max_length: int
                 ) -> tuple[list[WordEncoding], int]:
    """Subword-encode pre-split words; words beyond ``max_length`` are cut (never split).

    Returns the encodings and how many sentences were truncated. A word the tokenizer
    turns into nothing (a lone zero-width space) becomes ``[UNK]`` so it keeps a slot.

    >>> enc, cut = encode_words(tok, [["Jane", "Villanueva"]], 16)  # doctest: +SKIP
    >>> enc[0].first, enc[0].last  # doctest: +SKIP
    ([1, 2], [1, 4])
    """
    room = max_length - 2
    encs = tok.hf.encode_batch([list(s) for s in sentences], is_pretokenized=True,
                               add_special_tokens=False)
    out, truncated = [], 0
    for words, e in zip(sentences, encs, strict=True):
        pieces: list[list[int]] = [[] for _ in words]
        for tid, w in zip(e.ids, e.word_ids, strict=True):
            if w is not None:
                pieces[w].append(tid)
        ids, first, last = [tok.cls_id], [], []
        for p in pieces:
            p = p or [tok.unk_id]
            if len(ids) - 1 + len(p) > room:
                truncated += 1
                break
            first.append(len(ids))
            ids.extend(p)
            last.append(len(ids) - 1)
        ids.append(tok.sep_id)
        out.append(WordEncoding(ids, first, last, len(first)))
    return out, truncated


def warn_truncated(n: int, total: int, max_length: int, what: str) -> None:
    if n:
        warnings.warn(f"{n} of {total} {what} exceed --max-length {max_length} subwords and were "
                      "truncated; their cut-off words count as missed in the metrics",
                      stacklevel=3)


# ----------------------------------------------------------------------------- batching
def length_grouped_batches(lengths: Sequence[int], batch_size: int, rng: np.random.Generator,
                           mega: int = 50) -> list[np.ndarray]:
    """Shuffle, then sort by length inside windows of ``mega`` batches, then shuffle batches.

    Batches hold examples of nearly equal length, so padding (wasted compute) is small,
    while the order stays random across epochs (the "length-grouped sampler" of
    Hugging Face's Trainer, with its 50-batch mega-batches).
    """
    perm = rng.permutation(len(lengths))
    lens = np.asarray(lengths)
    batches = []
    window = batch_size * mega
    for s in range(0, len(perm), window):
        chunk = perm[s:s + window]
        chunk = chunk[np.argsort(-lens[chunk], kind="stable")]
        batches.extend(chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size))
    order = rng.permutation(len(batches))
    return [batches[i] for i in order]


def sorted_batches(lengths: Sequence[int], batch_size: int) -> list[np.ndarray]:
    """Inference batches: all examples sorted by length (least padding), in order."""
    order = np.argsort(-np.asarray(lengths), kind="stable")
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def pad(seqs: Sequence[Sequence[int]], value: int) -> torch.Tensor:
    """Right-pad integer lists into a (B, T) long tensor."""
    T = max(len(s) for s in seqs)
    out = torch.full((len(seqs), T), value, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, :len(s)] = torch.as_tensor(s, dtype=torch.long)
    return out


def encoder_inputs(feats: Sequence[Feature], pad_id: int) -> Batch:
    """input_ids, attention_mask (and token_type_ids when the features have them)."""
    ids = pad([f["input_ids"] for f in feats], pad_id)
    lengths = torch.tensor([len(f["input_ids"]) for f in feats])
    batch = {"input_ids": ids,
             "attention_mask": torch.arange(ids.shape[1])[None, :] < lengths[:, None]}
    if "token_type_ids" in feats[0]:
        batch["token_type_ids"] = pad([f["token_type_ids"] for f in feats], 0)
    return batch


@torch.no_grad()
def run_batches(model: TaskModel, task: Task, feats: list[Feature], pad_id: int,
                batch_size: int) -> Iterator[tuple[np.ndarray, Batch, Any]]:
    """Yield (indices, batch, head outputs) over ``feats`` in length-sorted batches, eval mode.
    ``model`` is a ``TaskModel`` or anything with its ``infer`` (an ONNX graph)."""
    was_training = model.training
    model.eval()
    try:
        for idx in sorted_batches([len(f["input_ids"]) for f in feats], batch_size):
            batch = to_device(task.collate([feats[i] for i in idx], pad_id, None), model.device)
            out = model.infer(batch)
            yield idx, to_device(batch, torch.device("cpu")), out.cpu()
    finally:
        model.train(was_training)


def to_device(batch: Batch, device: torch.device) -> Batch:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def label_index(labels: Sequence[str]) -> dict[str, int]:
    return {lab: i for i, lab in enumerate(labels)}


def split_words(tok: Tokenizer, text: str) -> tuple[list[str], list[tuple[int, int]]]:
    """Raw text -> words and their character offsets, with the tokenizer's pre-tokenizer
    (BERT's: whitespace and punctuation), so words match what the model saw in training.

    >>> split_words(tok, "Jane's car")  # doctest: +SKIP
    (['Jane', "'", 's', 'car'], [(0, 4), (4, 5), (5, 6), (7, 10)])
    """
    pre = tok.hf.pre_tokenizer
    if pre is None:
        pieces, pos = [], 0
        for w in text.split():
            start = text.index(w, pos)
            pieces.append((w, (start, start + len(w))))
            pos = start + len(w)
    else:
        pieces = pre.pre_tokenize_str(text)
    return [w for w, _ in pieces], [tuple(o) for _, o in pieces]


def span_text(text: str | None, words: list[str], offsets: list[tuple[int, int]] | None,
              start: int, end: int) -> str:
    """The surface text of words ``[start, end)``: a slice of the raw text when known."""
    if text is not None and offsets:
        return text[offsets[start][0]:offsets[end - 1][1]]
    return " ".join(words[start:end])


class LinearHead(nn.Module):
    """dropout + linear (N(0, 0.02) weights, zero bias), the task heads' output layer."""

    def __init__(self, hidden_size: int, n_labels: int, dropout: float) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(hidden_size, n_labels)
        nn.init.normal_(self.out.weight, std=0.02)
        nn.init.zeros_(self.out.bias)


def split_inputs(tok: Tokenizer, inputs: list[Any]
                 ) -> tuple[list[list[str]], list[str | None], list[Any]]:
    """Raw strings or lists of words -> (words, text or None, word offsets or None) each."""
    words, texts, offsets = [], [], []
    for x in inputs:
        if isinstance(x, str):
            w, o = split_words(tok, x)
            words.append(w), texts.append(x), offsets.append(o)
        else:
            words.append(list(x)), texts.append(None), offsets.append(None)
    return words, texts, offsets
