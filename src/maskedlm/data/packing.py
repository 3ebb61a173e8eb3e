"""Pack the sequences of a padded batch into fewer, fuller rows: pure NumPy.

ModernBERT trains on unpadded, packed sequences (Warner et al. 2024, sec. 2.1.3, after
Portes et al. 2023's MosaicBERT): a row holds several sequences one after the other,
and the encoder keeps attention inside each one (``sequence_ids``, see
:mod:`maskedlm.models.modernbert`). Here the sequences of one masked batch are placed
first-fit in order of decreasing length (Johnson 1973, "first-fit decreasing"), so that a
batch of ``B`` sequences computes ``sum(lengths)`` tokens and the little padding left
sits at row ends. Every sequence keeps its masking and targets; SBO boundaries are
positions in the row, so they move with their sequence.
"""

from __future__ import annotations

import numpy as np

Batch = dict[str, np.ndarray]
# per-token arrays that move with their sequence; fill value for the padding left over
_FILL = {"input_ids": 0, "token_type_ids": 0, "attention_mask": False, "word_starts": False,
         "special": True, "labels": -100, "sbo_left": 0, "sbo_right": 0, "sbo_pos": 0}
_POSITIONS = ("sbo_left", "sbo_right")  # positions inside the row: shifted by the offset


def first_fit_decreasing(lengths: np.ndarray, capacity: int) -> list[list[int]]:
    """Bins of item indices, each summing to at most ``capacity``; deterministic.

    >>> first_fit_decreasing(np.array([5, 3, 4, 2]), 7)
    [[0, 3], [2, 1]]
    """
    bins: list[list[int]] = []
    room: list[int] = []
    for i in np.argsort(-lengths, kind="stable").tolist():
        n = int(lengths[i])
        for b, r in enumerate(room):
            if n <= r:
                bins[b].append(i)
                room[b] -= n
                break
        else:
            bins.append([i])
            room.append(capacity - n)
    return bins


def pack_batch(batch: Batch, row_len: int, pad_id: int = 0) -> Batch:
    """A padded batch (one sequence per row, ``attention_mask`` marking its tokens) ->
    packed rows of at most ``row_len`` tokens, with ``sequence_ids`` (B', T') int64:
    the sequence's index in its row, -1 on padding. ``next_sentence_label`` cannot
    follow sequences into shared rows and is refused.

    >>> b = {"input_ids": np.array([[2, 7, 3, 0], [2, 8, 9, 3]]),
    ...      "attention_mask": np.array([[1, 1, 1, 0], [1, 1, 1, 1]], bool)}
    >>> pack_batch(b, 8)["sequence_ids"].tolist()
    [[0, 0, 0, 0, 1, 1, 1]]
    """
    if "next_sentence_label" in batch:
        raise ValueError("pack_batch: next_sentence_label is per sequence, not per packed row")
    lengths = batch["attention_mask"].sum(1).astype(np.int64)
    if len(lengths) and int(lengths.max()) > row_len:
        raise ValueError(f"pack_batch: a sequence of {int(lengths.max())} tokens exceeds row_len {row_len}")
    bins = first_fit_decreasing(lengths, row_len)
    T = max((int(lengths[b].sum()) for b in bins), default=0)
    fill = dict(_FILL, input_ids=pad_id)
    out: Batch = {k: np.full((len(bins), T), fill[k], dtype=batch[k].dtype)
                  for k in batch if k in fill}
    out["sequence_ids"] = np.full((len(bins), T), -1, dtype=np.int64)
    for r, members in enumerate(bins):
        at = 0
        for s, i in enumerate(members):
            n = int(lengths[i])
            for k in out:
                if k == "sequence_ids":
                    out[k][r, at:at + n] = s
                elif k in _POSITIONS:
                    target = batch["labels"][i, :n] != -100
                    out[k][r, at:at + n] = np.where(target, batch[k][i, :n] + at, 0)
                else:
                    out[k][r, at:at + n] = batch[k][i, :n]
            at += n
    return out
