"""Token, whole-word and span masking with Span Boundary Objective targets: pure NumPy.

Targets are chosen among the *maskable* positions only: the caller marks [CLS], [SEP]
and [PAD] in a boolean ``special`` array and those are never masked. Sequences must
start and end with a special token, so that every span has a left and a right boundary.

Schemes (``MaskingConfig.scheme``):

- ``"token"`` (default): BERT (Devlin et al. 2019). 15% of the tokens; each target
  becomes [MASK] (80%), a random token (10%) or stays itself (10%), chosen per token.
- ``"whole_word"``: BERT's whole-word masking. Whole words (a word-start token plus the
  non-start tokens after it) are selected until 15% of the tokens are covered; the
  80/10/10 choice is still made *per token*, as Google BERT's
  ``create_pretraining_data.py`` does.
- ``"span"``: SpanBERT (Joshi et al. 2020). Span lengths in words follow a geometric
  distribution p=0.2 truncated at 10 words and renormalized (mean 3.8 words); a span
  starts at the first token of a word and covers whole words; 80/10/10 is chosen per
  span (the whole span is [MASK], random tokens, or kept).

Budget (``budget``, default ``"exact"``): ``ceil(mask_prob * n_maskable)`` tokens per
sequence (SpanBERT's code uses ceil). Words are never split: a word or span is cut, at
word granularity, to what is left of the budget, and the sampler keeps placing words or
spans until the budget is met or no free word fits the remainder. So ``n_masked`` equals
the budget whenever a short enough free word is left (always with single-token words)
and is otherwise below it by less than the shortest free word. ``"bernoulli"`` selects
each token (``token``) or word (``whole_word``) independently with ``mask_prob``; for
``span`` the budget is drawn from Binomial(n_maskable, mask_prob).

Other defaults: ``mask_ratio=0.8``, ``random_ratio=0.1`` (keep = the rest);
``random_source="uniform"`` (uniform over the vocabulary minus special ids and [MASK],
as Google BERT and transformers do; ``"unigram"`` follows given corpus frequencies as
SpanBERT's code does); ``merge_adjacent=True`` (SpanBERT's code merges touching spans
into one, which then shares SBO boundaries and one 80/10/10 choice).

Randomness: every draw for a sequence comes from a counter-based stream keyed by that
sequence alone (one uint64 key per row, :func:`sequence_keys`) and indexed by position,
so a row's masking does not depend on the other rows, their number or the padding, and a
whole batch is masked with a handful of array operations. A ``np.random.Generator``
passed instead of keys draws one key per row.

Spans never overlap and never cross a special token: a span stops early at an already
masked word or a special token. For the SBO targets every scheme has spans: single
tokens (``token``), words (``whole_word``) or sampled spans (``span``), merged when they
touch and ``merge_adjacent`` is set.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from maskedlm.errors import MaskedLMError

IGNORE_INDEX = -100
_CHOICES = {
    "scheme": ("token", "whole_word", "span"),
    "budget": ("exact", "bernoulli"),
    "random_source": ("uniform", "unigram"),
}


@dataclass
class MaskingConfig:
    """How targets are chosen and replaced; see the module docstring for the schemes.

    Defaults: scheme="token", mask_prob=0.15, mask_ratio=0.8, random_ratio=0.1
    (Devlin et al. 2019), budget="exact" (ceil, as in SpanBERT's code),
    random_source="uniform", merge_adjacent=True (SpanBERT's code), span_p=0.2 and
    max_span_words=10 (Joshi et al. 2020).

    >>> MaskingConfig(scheme="span").max_span_words
    10
    """

    scheme: Literal["token", "whole_word", "span"] = "token"
    mask_prob: float = 0.15
    mask_ratio: float = 0.8
    random_ratio: float = 0.1
    budget: Literal["exact", "bernoulli"] = "exact"
    random_source: Literal["uniform", "unigram"] = "uniform"
    merge_adjacent: bool = True
    span_p: float = 0.2
    max_span_words: int = 10

    def __post_init__(self) -> None:
        for name, allowed in _CHOICES.items():
            if getattr(self, name) not in allowed:
                raise MaskedLMError(
                    f"masking: {name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        if not 0.0 < self.mask_prob <= 1.0:
            raise MaskedLMError(f"masking: mask_prob must be in (0, 1], got {self.mask_prob}")
        if self.mask_ratio < 0 or self.random_ratio < 0 or self.mask_ratio + self.random_ratio > 1 + 1e-9:
            raise MaskedLMError(
                "masking: mask_ratio and random_ratio must be >= 0 with a sum <= 1, got "
                f"{self.mask_ratio} and {self.random_ratio}")
        if not 0.0 < self.span_p <= 1.0:
            raise MaskedLMError(f"masking: span_p must be in (0, 1], got {self.span_p}")
        if int(self.max_span_words) < 1:
            raise MaskedLMError(f"masking: max_span_words must be >= 1, got {self.max_span_words}")


@dataclass
class MaskedBatch:
    """Masked inputs, MLM labels, SBO targets and raw statistics for one batch.

    SBO arrays hold, at every target position i of a span s..e (else 0): ``sbo_left`` =
    s-1, ``sbo_right`` = e+1, ``sbo_pos`` = i-s (0-based).
    """

    input_ids: np.ndarray  # (B, T) int64, after replacement
    labels: np.ndarray  # (B, T) int64, original id at targets, -100 elsewhere
    sbo_left: np.ndarray  # (B, T) int64
    sbo_right: np.ndarray  # (B, T) int64
    sbo_pos: np.ndarray  # (B, T) int64
    span_lengths: list[int] = field(default_factory=list)  # in words, before truncation/merging
    replacement_counts: dict[str, int] = field(default_factory=dict)  # mask / random / keep
    n_masked: int = 0
    n_maskable: int = 0


# ``budget`` masks more than BERT's 15%: Wettig et al. (2023, "Should You Mask 15% in
# Masked Language Modeling?") find 40% better for large models and learning faster at
# small compute; ModernBERT (Warner et al. 2024) trains with 30%.
BUDGET_MASK_RATE = 0.3


def recipe_masking(recipe: str, *, whole_word: bool = False, budget: str | None = None,
                   random_source: str | None = None,
                   merge_spans: bool | None = None, mask_rate: float | None = None,
                   mask_replace: str | None = None) -> MaskingConfig:
    """A pretraining recipe's masking scheme with the user's overrides (None: default).

    >>> recipe_masking("spanbert", budget="bernoulli").scheme
    'span'
    """
    scheme = "span" if recipe == "spanbert" else ("whole_word" if whole_word else "token")
    kw: dict[str, Any] = {"scheme": scheme}
    if recipe == "budget":
        kw["mask_prob"] = BUDGET_MASK_RATE
    if budget:
        kw["budget"] = budget
    if random_source:
        kw["random_source"] = random_source
    if merge_spans is not None:
        kw["merge_adjacent"] = merge_spans
    if mask_rate is not None:
        kw["mask_prob"] = mask_rate
    if mask_replace == "mask":  # every target becomes [MASK], as NeoBERT (Breton et al. 2025)
        kw["mask_ratio"], kw["random_ratio"] = 1.0, 0.0
    elif mask_replace not in (None, "80-10-10"):
        raise MaskedLMError(f"--mask-replace must be 80-10-10 or mask, got {mask_replace!r}")
    return MaskingConfig(**kw)


def truncated_geometric_pmf(p: float, max_len: int) -> np.ndarray:
    """P(l) proportional to p (1-p)^(l-1) for l = 1..max_len; index 0 is length 1.

    With p=0.2 and max_len=10 (Joshi et al. 2020) the mean is 3.8 words.

    >>> round(float((np.arange(1, 11) * truncated_geometric_pmf(0.2, 10)).sum()), 1)
    3.8
    """
    if not 0.0 < p <= 1.0 or max_len < 1:
        raise MaskedLMError(f"masking: need 0 < p <= 1 and max_len >= 1, got {p} and {max_len}")
    pmf = p * (1.0 - p) ** np.arange(max_len, dtype=np.float64)
    return pmf / pmf.sum()


def replacement_shares(counts: Mapping[str, int]) -> dict[str, float]:
    """Turn raw mask/random/keep counts into shares (all 0.0 when there are none).

    >>> replacement_shares({"mask": 8, "random": 1, "keep": 1})["mask"]
    0.8
    """
    total = sum(counts.get(k, 0) for k in ("mask", "random", "keep"))
    return {k: (counts.get(k, 0) / total if total else 0.0) for k in ("mask", "random", "keep")}


# Counter-based uniforms: SplitMix64 (Steele, Lea & Flood 2014, "Fast splittable
# pseudorandom number generators"; Java's SplittableRandom) evaluated at counter n of the
# stream seeded by a row's key: mix(key + n * golden). It passes BigCrush as a generator and
# needs no state, so the draws of a whole batch are one vectorized expression. NumPy's
# generators are keyed per object: one per row cost ~25-45 us each on the 2-core machine.
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX = (np.uint64(30), np.uint64(0xBF58476D1CE4E5B9), np.uint64(27),
        np.uint64(0x94D049BB133111EB), np.uint64(31))
# One counter per (position, purpose): the draws never share a counter.
_ORDER, _LENGTH, _BUDGET, _REPLACE, _RANDOM_ID = range(5)
_STREAMS = np.uint64(5)


def _mix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's output function on a fresh uint64 array (modified in place)."""
    s1, m1, s2, m2, s3 = _MIX
    x ^= x >> s1
    x *= m1
    x ^= x >> s2
    x *= m2
    x ^= x >> s3
    return x


def sequence_keys(seed: int | np.ndarray, *ids: np.ndarray | int) -> np.ndarray:
    """One uint64 masking key per sequence from a seed and integer ids that name it
    (e.g. epoch and instance); arrays broadcast. Keys passed to :func:`mask_batch` make
    each row's masking a function of its key and its tokens only.

    >>> k = sequence_keys(0, 3, np.arange(4))
    >>> k.dtype, len(set(k.tolist())), bool(k[2] == sequence_keys(0, 3, 2))
    (dtype('uint64'), 4, True)
    """
    seed = seed % 2**64 if isinstance(seed, int) else np.asarray(seed, dtype=np.int64)
    key = _mix64(np.atleast_1d(np.asarray(seed).astype(np.uint64)) + _GOLDEN)
    for part in ids:
        n = np.atleast_1d(np.asarray(part, dtype=np.int64)).astype(np.uint64) + np.uint64(1)
        key = _mix64(key + n * _GOLDEN)
    return key


def _uniform(keys: np.ndarray, flat: np.ndarray, T: int, stream: int) -> np.ndarray:
    """Uniforms in [0, 1) for flat positions ``flat`` of a (B, T) batch, one stream each."""
    flat = np.asarray(flat, dtype=np.int64)
    row, pos = np.divmod(flat, T)
    counter = pos.astype(np.uint64) * _STREAMS + np.uint64(stream + 1)
    x = _mix64(keys[row] + counter * _GOLDEN)
    return (x >> np.uint64(11)).astype(np.float64) * 2.0 ** -53


def masked_span_words(labels: np.ndarray, word_starts: np.ndarray, special: np.ndarray,
                      sbo_left: np.ndarray | None = None, sbo_right: np.ndarray | None = None
                      ) -> np.ndarray:
    """Length in words of every span *as masked* (after truncation and merging), int64 (n,).

    With ``sbo_left``/``sbo_right`` a span is what the SBO head predicts from one pair of
    boundaries (merged spans when ``merge_adjacent``, else each placed span); without
    them, a maximal run of consecutive targets. A word starts at a word-start token or
    after a special token, as :func:`mask_batch` counts them. Compare with
    ``MaskedBatch.span_lengths``, the lengths as *drawn*.

    >>> labels = np.array([[-100, 7, 8, -100, 9, -100]])
    >>> starts, special = np.array([[0, 1, 1, 1, 1, 0]], bool), np.array([[1, 0, 0, 0, 0, 1]], bool)
    >>> masked_span_words(labels, starts, special).tolist()
    [2, 1]
    """
    labels = np.asarray(labels)
    target = labels != IGNORE_INDEX
    B, T = target.shape
    special = np.asarray(special, dtype=bool)
    prev_special = np.ones_like(special)
    prev_special[:, 1:] = special[:, :-1]
    word_first = ~special & (np.asarray(word_starts, dtype=bool) | prev_special)
    n_before = np.zeros((B, T + 1), dtype=np.int64)  # word starts before each position
    np.cumsum(word_first, axis=1, out=n_before[:, 1:])
    if sbo_left is not None and sbo_right is not None:
        # the first target of each span is the one right after its left boundary
        r, c = np.nonzero(target & (np.asarray(sbo_left) == np.arange(T) - 1))
        first, end = c, np.asarray(sbo_right)[r, c]
    else:
        edge = np.diff(np.pad(target, ((0, 0), (1, 1))).astype(np.int8), axis=1)
        r, first = np.nonzero(edge == 1)
        _, end = np.nonzero(edge == -1)  # row-major order pairs each run's start and end
    return n_before[r, end] - n_before[r, first]


def _words(word_starts: np.ndarray, special: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flat start index and length of every word; a special token always ends a word."""
    prev_special = np.ones_like(special)
    prev_special[:, 1:] = special[:, :-1]
    starts = ~special & (word_starts | prev_special)
    pos = np.flatnonzero(~special.ravel())  # maskable positions, row-major
    first = np.flatnonzero(starts.ravel()[pos])  # index into pos of each word's first token
    return pos[first], np.diff(np.append(first, len(pos)))


def _place_spans(word_start: np.ndarray, word_len: np.ndarray, T: int, budgets: np.ndarray,
                 lengths: np.ndarray | None, keys: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Place spans of ``lengths`` words (1 if None) at free words in random order per row.

    Visiting a row's words in a random permutation and skipping taken or too long ones
    samples each start uniformly among the free words that fit. Returns flat span
    starts, exclusive ends and the sampled length of each placed span.
    """
    word_row = word_start // T
    order = np.argsort(word_row + _uniform(keys, word_start, T, _ORDER)).tolist()  # by row
    bounds = np.searchsorted(word_row, np.arange(len(budgets) + 1)).tolist()
    starts, lens = word_start.tolist(), word_len.tolist()
    want_list = None if lengths is None else lengths.tolist()
    free = [True] * len(starts)
    out_s: list[int] = []
    out_e: list[int] = []
    sampled: list[int] = []
    for b, left in enumerate(budgets.tolist()):
        last = bounds[b + 1]
        for w in order[bounds[b]:last]:
            if left <= 0:
                break
            if not free[w] or lens[w] > left:
                continue
            want = 1 if want_list is None else want_list[w]  # drawn at the start word
            sampled.append(want)
            s, e, j = starts[w], starts[w] + lens[w], w + 1
            left -= lens[w]
            free[w] = False
            # Extend over following whole words of the same segment while free and in budget.
            while j - w < want and j < last and free[j] and starts[j] == e and lens[j] <= left:
                e += lens[j]
                left -= lens[j]
                free[j] = False
                j += 1
            out_s.append(s)
            out_e.append(e)
    return np.asarray(out_s, dtype=np.int64), np.asarray(out_e, dtype=np.int64), sampled


def _choose_spans(word_starts: np.ndarray, special: np.ndarray, budgets: np.ndarray,
                  config: MaskingConfig, keys: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Sorted, disjoint flat spans [s, e) of the targets and the sampled span lengths."""
    B, T = special.shape
    if config.scheme == "token":
        u = _uniform(keys, np.arange(B * T), T, _ORDER).reshape(B, T)
        if config.budget == "bernoulli":
            chosen = (u < config.mask_prob) & ~special
        else:
            u[special] = 2.0  # maskable first, in random order
            chosen = np.zeros((B, T), dtype=bool)
            np.put_along_axis(chosen, np.argsort(u, axis=1), np.arange(T) < budgets[:, None], axis=1)
        s = np.flatnonzero(chosen)
        return s, s + 1, []
    word_start, word_len = _words(word_starts, special)
    if config.scheme == "whole_word" and config.budget == "bernoulli":
        pick = _uniform(keys, word_start, T, _ORDER) < config.mask_prob
        return word_start[pick], word_start[pick] + word_len[pick], [1] * int(pick.sum())
    lengths = None
    if config.scheme == "span":  # at most one span per word
        cdf = np.cumsum(truncated_geometric_pmf(config.span_p, config.max_span_words))
        lengths = 1 + np.minimum(np.searchsorted(cdf, _uniform(keys, word_start, T, _LENGTH),
                                                 side="right"), config.max_span_words - 1)
    s, e, span_lengths = _place_spans(word_start, word_len, T, budgets, lengths, keys)
    order = np.argsort(s)
    return s[order], e[order], span_lengths


def _random_ids(u: np.ndarray, config: MaskingConfig, vocab_size: int,
                excluded: np.ndarray, unigram_probs: np.ndarray | None) -> np.ndarray:
    """A replacement id for each uniform in ``u``, never a special id nor [MASK]."""
    n = len(u)
    if config.random_source == "uniform":
        n_allowed = vocab_size - len(excluded)
        if n and n_allowed <= 0:
            raise MaskedLMError("masking: no non-special id left to draw random replacements from")
        # The r-th allowed id is r plus the number of excluded ids at or below it
        # (``excluded`` is sorted and unique), so no vocabulary-sized array is built.
        r = np.minimum((u * n_allowed).astype(np.int64), max(n_allowed, 1) - 1)
        return r + np.searchsorted(excluded - np.arange(len(excluded)), r, side="right")
    if unigram_probs is None or np.shape(unigram_probs) != (vocab_size,):
        raise MaskedLMError(f"masking: random_source='unigram' needs unigram_probs of shape ({vocab_size},)")
    probs = np.array(unigram_probs, dtype=np.float64)
    if (probs < 0).any() or not np.isfinite(probs).all():
        raise MaskedLMError("masking: unigram_probs must be finite and non-negative")
    probs[excluded] = 0.0
    cdf = np.cumsum(probs)
    if n and cdf[-1] <= 0:
        raise MaskedLMError("masking: unigram_probs has no mass outside the special ids")
    # side="right" never lands on a zero-probability id.
    ids = np.searchsorted(cdf, u * cdf[-1], side="right")
    return np.minimum(ids, vocab_size - 1).astype(np.int64)


def mask_batch(input_ids: np.ndarray, word_starts: np.ndarray, special: np.ndarray,
               config: MaskingConfig, rng: np.random.Generator | np.ndarray, *, vocab_size: int,
               mask_id: int, special_ids: Sequence[int] = (),
               unigram_probs: np.ndarray | None = None) -> MaskedBatch:
    """Choose targets, replace them 80/10/10 and build MLM labels and SBO targets.

    ``input_ids`` (B, T) int, ``word_starts`` (B, T) bool (True where a token begins a
    word), ``special`` (B, T) bool (True at [CLS], [SEP], [PAD]; never masked; column 0
    and column T-1 must be special). All randomness comes from ``rng``: a (B,) uint64
    array of per-row keys (:func:`sequence_keys`; row r's masking then depends on
    ``rng[r]`` and row r only), or a ``np.random.Generator`` that draws them.

    >>> ids = np.array([[2, 10, 11, 12, 13, 3, 0]])
    >>> starts = np.array([[1, 1, 0, 1, 1, 1, 1]], dtype=bool)
    >>> special = np.isin(ids, (0, 2, 3))
    >>> out = mask_batch(ids, starts, special, MaskingConfig(scheme="span", mask_prob=0.5),
    ...                  np.random.default_rng(0), vocab_size=100, mask_id=4)
    >>> out.n_masked, out.n_maskable
    (2, 4)
    """
    input_ids = np.asarray(input_ids)
    word_starts = np.asarray(word_starts, dtype=bool)
    special = np.asarray(special, dtype=bool)
    if input_ids.ndim != 2 or word_starts.shape != input_ids.shape or special.shape != input_ids.shape:
        raise MaskedLMError(
            f"masking: input_ids, word_starts and special must share one (B, T) shape, got "
            f"{input_ids.shape}, {word_starts.shape}, {special.shape}")
    B, T = input_ids.shape
    if not 0 <= mask_id < vocab_size:
        raise MaskedLMError(f"masking: mask_id {mask_id} is outside the vocabulary of {vocab_size}")
    if B and T and not (special[:, 0].all() and special[:, -1].all()):
        raise MaskedLMError("masking: every sequence must start and end with a special token "
                            "([CLS] ... [SEP] or [PAD]) so that spans have boundaries")
    if isinstance(rng, np.random.Generator):
        keys = rng.integers(0, 2**64, size=B, dtype=np.uint64)
    else:
        keys = np.asarray(rng)
        if keys.shape != (B,) or keys.dtype != np.uint64:
            raise MaskedLMError(f"masking: keys must be a ({B},) uint64 array, got "
                                f"{keys.shape} {keys.dtype}")
    n_maskable = (~special).sum(axis=1)  # (B,)
    if config.budget == "exact":
        # ceil as in SpanBERT's code; the epsilon keeps 0.15 * 20 from rounding up to 4.
        budgets = np.ceil(config.mask_prob * n_maskable - 1e-9).astype(np.int64)
    elif config.scheme == "span":  # Binomial(n_maskable, p): one Bernoulli per maskable token
        u = _uniform(keys, np.arange(B * T), T, _BUDGET).reshape(B, T)
        budgets = ((u < config.mask_prob) & ~special).sum(axis=1)
    else:  # token and whole_word draw each unit on its own: no budget
        budgets = n_maskable
    s, e, span_lengths = _choose_spans(word_starts, special, budgets, config, keys)
    if config.merge_adjacent and len(s):
        new = np.ones(len(s), dtype=bool)
        new[1:] = s[1:] != e[:-1]  # spans are disjoint, so only touching ones merge
        s, e = s[new], e[np.append(new[1:], True)]
    # Expand spans to flat target positions and their offsets inside the span.
    lens = e - s
    offset = np.arange(lens.sum()) - np.repeat(np.cumsum(lens) - lens, lens)
    target = np.repeat(s, lens) + offset
    row_base = np.repeat((s // T) * T, lens)
    # 80/10/10 per span for SpanBERT (Joshi et al. 2020), per token otherwise (Devlin et al. 2019).
    unit = _uniform(keys, s if config.scheme == "span" else target, T, _REPLACE)  # one per unit
    u = np.repeat(unit, lens) if config.scheme == "span" else unit
    is_mask = u < config.mask_ratio
    is_random = ~is_mask & (u < config.mask_ratio + config.random_ratio)
    excluded = np.array(sorted({int(i) for i in (*special_ids, mask_id) if 0 <= int(i) < vocab_size}),
                        dtype=np.int64)

    out_ids = input_ids.astype(np.int64, copy=True)
    flat_ids = out_ids.reshape(-1)
    labels = np.full(B * T, IGNORE_INDEX, dtype=np.int64)
    labels[target] = flat_ids[target]
    flat_ids[target[is_mask]] = mask_id
    flat_ids[target[is_random]] = _random_ids(_uniform(keys, target[is_random], T, _RANDOM_ID),
                                              config, vocab_size, excluded, unigram_probs)
    sbo = np.zeros((3, B * T), dtype=np.int64)
    sbo[0, target] = np.repeat(s, lens) - 1 - row_base
    sbo[1, target] = np.repeat(e, lens) - row_base
    sbo[2, target] = offset
    n_mask = int((unit < config.mask_ratio).sum())
    n_random = int((unit < config.mask_ratio + config.random_ratio).sum()) - n_mask
    return MaskedBatch(
        input_ids=out_ids, labels=labels.reshape(B, T), sbo_left=sbo[0].reshape(B, T),
        sbo_right=sbo[1].reshape(B, T), sbo_pos=sbo[2].reshape(B, T), span_lengths=span_lengths,
        replacement_counts={"mask": n_mask, "random": n_random, "keep": len(unit) - n_mask - n_random},
        n_masked=len(target), n_maskable=int(n_maskable.sum()))


def mask_sequence(input_ids: np.ndarray, word_starts: np.ndarray, special: np.ndarray,
                  config: MaskingConfig, rng: np.random.Generator | np.ndarray,
                  **kwargs: Any) -> MaskedBatch:
    """:func:`mask_batch` for one (T,) sequence; the result keeps a batch axis of 1.

    >>> ids = np.array([2, 10, 11, 3])
    >>> mask_sequence(ids, np.ones(4, bool), np.isin(ids, (2, 3)), MaskingConfig(),
    ...               np.random.default_rng(0), vocab_size=100, mask_id=4).n_masked
    1
    """
    return mask_batch(np.asarray(input_ids)[None], np.asarray(word_starts)[None],
                      np.asarray(special)[None], config, rng, **kwargs)


if __name__ == "__main__":
    gen = np.random.default_rng(0)
    B, T = 32, 512
    ids = gen.integers(5, 30000, size=(B, T))
    starts = gen.random((B, T)) < 0.7
    spec = np.zeros((B, T), dtype=bool)
    spec[:, 0] = spec[:, -1] = True
    for scheme in _CHOICES["scheme"]:
        cfg = MaskingConfig(scheme=scheme)
        mask_batch(ids, starts, spec, cfg, gen, vocab_size=30000, mask_id=4, special_ids=range(5))
        t0 = time.perf_counter()
        for _ in range(20):
            mask_batch(ids, starts, spec, cfg, gen, vocab_size=30000, mask_id=4, special_ids=range(5))
        print(f"{scheme:>10}: {(time.perf_counter() - t0) / 20 * 1e3:.2f} ms per {B}x{T} batch")
    print("mean span length:", math.fsum(np.arange(1, 11) * truncated_geometric_pmf(0.2, 10)))
