"""Training sequences per recipe, as token index ranges into the shards.

* ``bert`` -- sentence pairs for next sentence prediction, following Google's
  ``create_pretraining_data.py`` (Devlin et al. 2019): ``[CLS] A [SEP] B [SEP]``.
* ``roberta`` -- FULL-SENTENCES (Liu et al. 2019, sec. 4.2): whole sentences packed
  contiguously across document boundaries, an extra ``[SEP]`` between documents;
  ``[CLS] ... [SEP]``.
* ``spanbert`` -- single contiguous segments that never cross a document boundary
  (Joshi et al. 2020, sec. 3.3): ``[CLS] ... [SEP]``.

Building is cheap (a few int64 arrays); :meth:`InstanceSet.get` gathers the tokens of a
batch from the memmap in one indexing operation and pads it to its longest sequence.
"""

from __future__ import annotations

import random
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

import numpy as np

from maskedlm.data.shards import ShardSet
from maskedlm.errors import MaskedLMError

Recipe = Literal["bert", "roberta", "spanbert"]
RECIPES: tuple[str, ...] = ("budget", "bert", "roberta", "spanbert")
# The sequences each recipe trains on: ``budget`` packs full sentences as ``roberta``.
SEQUENCES: dict[str, str] = {"budget": "roberta", "bert": "bert", "roberta": "roberta",
                             "spanbert": "spanbert"}
MIN_SEQ_LEN = 8
# SpanBERT: the last block of a document is kept only if it has at least this many tokens
# (fewer leave nothing for span masking to work with; spans average 3.8 words).
MIN_BLOCK_TOKENS = 8


@dataclass(repr=False)
class InstanceSet:
    """Sequences of one split for one recipe.

    ``start``/``end`` are token ranges into the split (for ``roberta`` into the split with
    a [SEP] inserted before every document but the first); ``b_start``/``b_end`` and
    ``next_sentence_label`` (0 = IsNext, 1 = NotNext, as Hugging Face) exist for ``bert``.

    >>> batch = build_instances(shards, "train", "bert", 128, rng).get([0, 1])  # doctest: +SKIP
    >>> batch["input_ids"].shape  # doctest: +SKIP
    (2, 128)
    """

    recipe: str
    max_seq_len: int
    tokens: np.ndarray
    word_starts: np.ndarray
    cls_id: int
    sep_id: int
    pad_id: int
    start: np.ndarray
    end: np.ndarray
    b_start: np.ndarray | None = None
    b_end: np.ndarray | None = None
    next_sentence_label: np.ndarray | None = None
    target_length: np.ndarray | None = None  # bert: the sampled target of each pair
    seps: np.ndarray | None = None  # roberta: positions of the inserted document [SEP]s

    def __len__(self) -> int:
        return len(self.start)

    def __repr__(self) -> str:
        return (
            f"InstanceSet({self.recipe!r}, {len(self)} sequences, max_seq_len={self.max_seq_len})"
        )

    @cached_property
    def lengths(self) -> np.ndarray:
        """Sequence lengths with special tokens, int64 (n,)."""
        n = self.end - self.start + 2
        if self.b_start is not None and self.b_end is not None:
            n += self.b_end - self.b_start + 1
        return n

    def get(self, indices: Sequence[int] | np.ndarray) -> dict[str, np.ndarray]:
        """A padded batch (T = longest sequence): input_ids, token_type_ids (int64, (B, T)),
        attention_mask, word_starts, special (bool, (B, T); special = [CLS]/[SEP]/[PAD])
        and, for ``bert``, next_sentence_label (int64, (B,)). One gather for the batch."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        lengths = self.lengths[idx] if len(idx) else np.zeros(0, np.int64)
        B, T = len(idx), int(lengths.max(initial=2))
        col = np.arange(T)[None, :]
        start, end = self.start[idx][:, None], self.end[idx][:, None]
        n_a = end - start
        # [CLS] A [SEP] (B [SEP]) [PAD]...: where each column's token comes from
        in_a = (col >= 1) & (col <= n_a)
        src = np.where(in_a, start + col - 1, 0)
        is_sep = col == n_a + 1
        types = np.zeros((B, T), dtype=np.int64)
        if self.b_start is not None and self.b_end is not None:
            b_start = self.b_start[idx][:, None]
            n_b = self.b_end[idx][:, None] - b_start
            in_b = (col >= n_a + 2) & (col < n_a + 2 + n_b)
            src = np.where(in_b, b_start + col - n_a - 2, src)
            in_a |= in_b
            is_sep |= col == n_a + 2 + n_b
            types[(col >= n_a + 2) & (col <= n_a + 2 + n_b)] = 1
        if self.recipe == "roberta" and self.seps is not None and len(self.seps):
            # a virtual position v is a document [SEP] or the token v - (#[SEP]s before v)
            k = np.searchsorted(self.seps, src, side="right")
            doc_sep = in_a & (k > 0) & (self.seps[np.maximum(k - 1, 0)] == src)
            src -= k
            is_sep |= doc_sep
            in_a &= ~doc_sep
        flat = src[in_a]
        ids = np.full((B, T), self.pad_id, dtype=np.int64)
        ids[in_a] = self.tokens[flat]
        ids[is_sep] = self.sep_id
        ids[:, 0] = self.cls_id
        starts = np.zeros((B, T), dtype=bool)
        starts[in_a] = self.word_starts[flat]
        special = ~in_a
        attention = col < lengths[:, None]
        # a segment cut mid-word still starts with a word (masking treats it as one)
        prev_special = np.ones_like(special)
        prev_special[:, 1:] = special[:, :-1]
        starts |= prev_special & ~special
        batch = {
            "input_ids": ids,
            "token_type_ids": types,
            "attention_mask": attention,
            "word_starts": starts,
            "special": special,
        }
        if self.next_sentence_label is not None:
            batch["next_sentence_label"] = self.next_sentence_label[idx].astype(np.int64)
        return batch


# Absolute position embeddings: BERT's table has 512 rows; a longer one is allowed for
# continued pretraining on long documents, up to where attention's memory stops fitting.
MAX_SEQ_LEN = 4096


def check_seq_len(seq_len: int) -> None:
    """A one-line error for a ``--seq-len`` outside [8, :data:`MAX_SEQ_LEN`]."""
    if not 8 <= seq_len <= MAX_SEQ_LEN:
        raise MaskedLMError(f"--seq-len must be in [8, {MAX_SEQ_LEN}], got {seq_len}")


def build_instances(
    shards: ShardSet,
    split: str,
    recipe: str,
    max_seq_len: int,
    rng: np.random.Generator,
    *,
    short_seq_prob: float = 0.1,
    pack: Literal["sentences", "tokens"] = "sentences",
) -> InstanceSet:
    """Build the sequences of one epoch; deterministic given ``rng``.

    ``short_seq_prob`` (bert): share of pairs given a random shorter target length, 0.1 as
    BERT. ``pack`` (roberta): ``"sentences"`` packs whole sentences (FULL-SENTENCES);
    ``"tokens"`` fills every sequence to ``max_seq_len`` and may cut sentences.
    ``roberta`` and ``spanbert`` cut the corpus the same way every epoch (``rng`` unused).

    >>> inst = build_instances(ShardSet.load("shards/"), "train", "spanbert", 128,
    ...                        np.random.default_rng(0))  # doctest: +SKIP
    >>> len(inst), inst.get([0])["input_ids"].shape  # doctest: +SKIP
    """
    if recipe not in RECIPES:
        raise MaskedLMError(f"recipe: must be one of {', '.join(RECIPES)}, got {recipe!r}")
    recipe = SEQUENCES[recipe]
    if max_seq_len < MIN_SEQ_LEN:
        raise MaskedLMError(f"max_seq_len: must be >= {MIN_SEQ_LEN}, got {max_seq_len}")
    if not 0.0 <= short_seq_prob <= 1.0:
        raise MaskedLMError(f"short_seq_prob: must be in [0, 1], got {short_seq_prob}")
    if pack not in ("sentences", "tokens"):
        raise MaskedLMError(f"pack: must be 'sentences' or 'tokens', got {pack!r}")
    sentences = shards.sentence_offsets(split)
    documents = shards.document_offsets(split)
    base = InstanceSet(
        recipe=recipe,
        max_seq_len=max_seq_len,
        tokens=shards.tokens(split),
        word_starts=shards.word_starts(split),
        cls_id=shards.special_ids["cls"],
        sep_id=shards.special_ids["sep"],
        pad_id=shards.special_ids["pad"],
        start=np.zeros(0, np.int64),
        end=np.zeros(0, np.int64),
    )
    if len(documents) < 2:  # an empty split
        if recipe == "bert":
            base.b_start, base.b_end = np.zeros(0, np.int64), np.zeros(0, np.int64)
            base.next_sentence_label = np.zeros(0, np.int64)
        return base
    if recipe == "bert":
        _bert_pairs(base, sentences, documents, rng, short_seq_prob)
    elif recipe == "roberta":
        _full_sentences(base, sentences, documents, fill=pack == "tokens")
    else:
        _doc_blocks(base, sentences, documents)
    return base


def _fit_pair(la: int, lb: int, budget: int) -> tuple[int, int]:
    """Lengths after Google's truncate_seq_pair: trim the longer segment one token at a
    time (B on ties) until the pair fits ``budget``."""
    excess = la + lb - budget
    if excess <= 0:
        return la, lb
    if la > lb and la - excess >= lb:
        return la - excess, lb
    if lb > la and lb - excess >= la:
        return la, lb - excess
    return (budget + 1) // 2, budget // 2  # both trimmed, alternating


def _bert_pairs(
    inst: InstanceSet,
    sentences: np.ndarray,
    documents: np.ndarray,
    rng: np.random.Generator,
    short_seq_prob: float,
) -> None:
    """Google's create_instances_from_document, over every document of the split."""
    r = random.Random(int(rng.integers(2**63)))  # fast scalar draws, seeded from rng
    off, docs = sentences.tolist(), documents.tolist()
    n_docs = len(docs) - 1
    max_tokens = inst.max_seq_len - 3  # [CLS] A [SEP] B [SEP]
    out: list[tuple[int, int, int, int, int, int]] = []
    for d in range(n_docs):
        i, doc_end = docs[d], docs[d + 1]
        while i < doc_end:
            # Google draws the target once per document; we draw it per pair so that a
            # book-length document is not all short pairs (the share stays short_seq_prob).
            target = max_tokens if r.random() >= short_seq_prob else r.randint(2, max_tokens)
            j = min(bisect_left(off, off[i] + target, i + 1, doc_end + 1), doc_end)  # chunk [i, j)
            a_end = i + 1 if j - i == 1 else r.randint(i + 1, j - 1)
            if j - i == 1 or r.random() < 0.5:
                label = 1  # NotNext: B from a random other document
                k = d
                if n_docs > 1:  # with one document Google's loop falls back to the same one
                    k = r.randrange(n_docs - 1)
                    k += k >= d
                rs = r.randint(docs[k], docs[k + 1] - 1)
                target_b = target - (off[a_end] - off[i])
                re_ = min(
                    bisect_left(off, off[rs] + target_b, rs + 1, docs[k + 1] + 1), docs[k + 1]
                )
                b0, b1 = off[rs], off[re_]
                next_i = a_end  # the unused sentences of the chunk go back
            else:
                label = 0  # IsNext: the rest of the chunk
                b0, b1 = off[a_end], off[j]
                next_i = j
            a0, a1 = off[i], off[a_end]
            la, lb = _fit_pair(a1 - a0, b1 - b0, max_tokens)
            a0, a1 = _trim(a0, a1, la, r)
            b0, b1 = _trim(b0, b1, lb, r)
            out.append((a0, a1, b0, b1, label, target))
            i = next_i
    arr = np.array(out, dtype=np.int64).reshape(-1, 6)
    inst.start, inst.end, inst.b_start, inst.b_end = arr[:, 0], arr[:, 1], arr[:, 2], arr[:, 3]
    inst.next_sentence_label, inst.target_length = arr[:, 4], arr[:, 5]


def _trim(s: int, e: int, keep: int, r: random.Random) -> tuple[int, int]:
    """Cut [s, e) to ``keep`` tokens, each token from the front or the back with p = 1/2
    (as Google, "to add more randomness and avoid biases")."""
    cut = e - s - keep
    if cut <= 0:
        return s, e
    front = r.getrandbits(cut).bit_count()  # Binomial(cut, 1/2)
    return s + front, e - (cut - front)


def _full_sentences(
    inst: InstanceSet, sentences: np.ndarray, documents: np.ndarray, fill: bool
) -> None:
    """RoBERTa FULL-SENTENCES in a *virtual* stream that has a [SEP] before every document
    but the first; a sequence is a range of it."""
    room = inst.max_seq_len - 2  # [CLS] ... [SEP]
    n_sent = len(sentences) - 1
    is_first = np.zeros(n_sent, dtype=np.int64)
    is_first[documents[:-1]] = 1
    k = np.cumsum(is_first) - 1  # [SEP]s before each sentence
    inst.seps = sentences[documents[1:-1]] + np.arange(len(documents) - 2)
    total = int(sentences[-1]) + len(inst.seps)
    if fill:
        inst.start = np.arange(0, total, room, dtype=np.int64)
        inst.end = np.minimum(inst.start + room, total)
        return
    vstart = (sentences[:-1] + k).tolist()
    vend = (sentences[1:] + k).tolist()
    starts: list[int] = []
    ends: list[int] = []
    a = 0
    while a < n_sent:
        b = bisect_right(vend, vstart[a] + room, a)  # sentences [a, b) fit
        if b > a:
            starts.append(vstart[a])
            ends.append(vend[b - 1])
            a = b
        else:  # one sentence longer than a sequence: cut it into full blocks
            cuts = list(range(vstart[a], vend[a], room))
            starts.extend(cuts)
            ends.extend(min(c + room, vend[a]) for c in cuts)
            a += 1
    inst.start = np.array(starts, dtype=np.int64)
    inst.end = np.array(ends, dtype=np.int64)


def _doc_blocks(inst: InstanceSet, sentences: np.ndarray, documents: np.ndarray) -> None:
    """SpanBERT: cut each document into consecutive blocks of max_seq_len - 2 tokens; a
    last block under MIN_BLOCK_TOKENS is dropped."""
    room = inst.max_seq_len - 2
    doc_start = sentences[documents[:-1]]
    doc_end = sentences[documents[1:]]
    n_blocks = -(-(doc_end - doc_start) // room)  # ceil
    doc = np.repeat(np.arange(len(doc_start)), n_blocks)
    first_block = np.cumsum(n_blocks) - n_blocks
    m = np.arange(len(doc)) - np.repeat(first_block, n_blocks)
    start = doc_start[doc] + m * room
    end = np.minimum(start + room, doc_end[doc])
    keep = end - start >= min(MIN_BLOCK_TOKENS, room)
    inst.start, inst.end = start[keep], end[keep]
