"""Statistical tests of token / whole-word / span masking with a seeded generator."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import shared_data

from maskedlm.data.masking import (
    IGNORE_INDEX,
    MaskedBatch,
    MaskingConfig,
    mask_batch,
    mask_sequence,
    masked_span_words,
    replacement_shares,
    sequence_keys,
    truncated_geometric_pmf,
)
from maskedlm.errors import MaskedLMError

PAD, UNK, CLS, SEP, MASK = 0, 1, 2, 3, 4
SPECIAL_IDS = (PAD, UNK, CLS, SEP, MASK)
VOCAB = 1000
SCHEMES = ("token", "whole_word", "span")
CHI2_999_9DOF = 27.88  # 0.999 quantile of chi-square with 9 degrees of freedom


def make_batch(rng: np.random.Generator, B: int = 64, T: int = 128, vocab: int = VOCAB,
               start_rate: float = 0.7):
    """[CLS] random ids [SEP] [PAD]...; ~70% word starts (``start_rate``); every other row has a [SEP]
    inside (as between documents or sentence pairs); the last row has no maskable token."""
    ids = rng.integers(5, vocab, size=(B, T))
    word_starts = rng.random((B, T)) < start_rate
    lengths = rng.integers(T // 2, T + 1, size=B)  # [CLS] .. [SEP] inclusive
    lengths[-1] = 2
    pos = np.arange(T)[None, :]
    ids[:, 0] = CLS
    inner = rng.integers(2, np.maximum(lengths - 2, 3), size=B)
    has_inner = (np.arange(B) % 2 == 0) & (lengths > 6)
    ids[pos == np.where(has_inner, inner, 0)[:, None]] = SEP
    ids[pos == lengths[:, None] - 1] = SEP
    ids[pos >= lengths[:, None]] = PAD
    special = np.isin(ids, SPECIAL_IDS)
    return ids, word_starts, special


def run(config: MaskingConfig, seed: int = 0, draws: int = 1, **batch_kw) -> list[tuple]:
    """``draws`` masked batches as (ids, word_starts, special, MaskedBatch)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(draws):
        ids, starts, special = make_batch(rng, **batch_kw)
        kw = {"vocab_size": batch_kw.get("vocab", VOCAB), "mask_id": MASK,
              "special_ids": SPECIAL_IDS}
        out.append((ids, starts, special, mask_batch(ids, starts, special, config, rng, **kw)))
    return out


def words_of(starts_row: np.ndarray, special_row: np.ndarray) -> list[list[int]]:
    """Token positions of each word, computed independently of the module."""
    words: list[list[int]] = []
    prev_special = True
    for t, (is_start, is_special) in enumerate(zip(starts_row, special_row, strict=True)):
        if is_special:
            prev_special = True
            continue
        if is_start or prev_special:
            words.append([])
        words[-1].append(t)
        prev_special = False
    return words


def span_of(mb: MaskedBatch, b: int, t: int) -> tuple[int, int]:
    return int(mb.sbo_left[b, t]), int(mb.sbo_right[b, t])


def spans_in_words(mb: MaskedBatch, starts: np.ndarray, special: np.ndarray) -> list[int]:
    """Words inside each SBO span, row by row, counted with :func:`words_of`."""
    out = []
    target = mb.labels != IGNORE_INDEX
    for b in range(len(target)):
        firsts = [w[0] for w in words_of(starts[b], special[b])]
        for t in np.flatnonzero(target[b] & (mb.sbo_pos[b] == 0)):
            left, right = span_of(mb, b, t)
            out.append(sum(1 for f in firsts if left < f < right))
    return out


# ---------------------------------------------------------------- budget


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("mask_prob", [0.15, 0.3])
def test_exact_budget_is_met_unless_no_free_word_fits(scheme, mask_prob):
    short = 0  # long words (30% word starts) leave some rows short of the budget
    for _, starts, special, mb in run(MaskingConfig(scheme=scheme, mask_prob=mask_prob), draws=5,
                                      start_rate=0.3):
        n_maskable = (~special).sum(axis=1)
        budget = np.array([math.ceil(round(mask_prob * n, 9)) for n in n_maskable])
        target = mb.labels != IGNORE_INDEX
        n_targets = target.sum(axis=1)
        assert (n_targets <= budget).all()  # never above the budget (ceil, SpanBERT's code)
        assert mb.n_masked == n_targets.sum() and mb.n_maskable == n_maskable.sum()
        for b in np.flatnonzero(n_targets < budget):
            # below the budget only when every untouched word is longer than what is left
            assert scheme != "token"
            left = budget[b] - n_targets[b]
            free = [w for w in words_of(starts[b], special[b]) if not target[b, w].any()]
            assert all(len(w) > left for w in free), (b, left)
            short += 1
    if scheme != "token":
        assert short > 0


@pytest.mark.parametrize("scheme", SCHEMES)
def test_bernoulli_mean_fraction(scheme):
    results = run(MaskingConfig(scheme=scheme, budget="bernoulli"), draws=20)
    masked = sum(mb.n_masked for *_, mb in results)
    maskable = sum(mb.n_maskable for *_, mb in results)
    assert abs(masked / maskable - 0.15) < 0.01
    # Unlike "exact", per-row counts scatter around the rule.
    _, _, special, mb = results[0]
    budget = np.ceil(0.15 * (~special).sum(axis=1) - 1e-9)
    assert np.abs((mb.labels != IGNORE_INDEX).sum(axis=1) - budget).max() > 1


def test_no_maskable_tokens_gives_no_targets():
    ids = np.array([[CLS, SEP, PAD, PAD], [CLS, SEP, PAD, PAD]])
    for scheme in SCHEMES:
        for budget in ("exact", "bernoulli"):
            mb = mask_batch(ids, np.ones_like(ids, bool), np.isin(ids, SPECIAL_IDS),
                            MaskingConfig(scheme=scheme, budget=budget), np.random.default_rng(0),
                            vocab_size=VOCAB, mask_id=MASK)
            assert mb.n_masked == 0 and mb.n_maskable == 0
            assert (mb.labels == IGNORE_INDEX).all() and (mb.input_ids == ids).all()
            assert sum(mb.replacement_counts.values()) == 0


# ---------------------------------------------------------------- 80/10/10


@pytest.mark.parametrize("scheme", ["token", "whole_word"])
@pytest.mark.parametrize("ratios", [(0.8, 0.1), (0.5, 0.3)])
def test_replacement_shares_per_token(scheme, ratios):
    mask_ratio, random_ratio = ratios
    config = MaskingConfig(scheme=scheme, mask_ratio=mask_ratio, random_ratio=random_ratio)
    counts = {"mask": 0, "random": 0, "keep": 0}
    by_ids = {"mask": 0, "random": 0, "keep": 0}
    for ids, _, _, mb in run(config, draws=30):
        for k, v in mb.replacement_counts.items():
            counts[k] += v
        target = mb.labels != IGNORE_INDEX
        out = mb.input_ids[target]
        by_ids["mask"] += int((out == MASK).sum())
        by_ids["keep"] += int((out == ids[target]).sum())
        by_ids["random"] += int(((out != MASK) & (out != ids[target])).sum())
    assert counts["mask"] == by_ids["mask"]
    expected = {"mask": mask_ratio, "random": random_ratio, "keep": 1 - mask_ratio - random_ratio}
    for shares in (replacement_shares(counts), replacement_shares(by_ids)):
        for k in expected:
            assert abs(shares[k] - expected[k]) < 0.02, (k, shares)


def test_replacement_shares_per_span():
    counts = {"mask": 0, "random": 0, "keep": 0}
    by_ids = {"mask": 0, "random": 0, "keep": 0}
    for ids, _, _, mb in run(MaskingConfig(scheme="span"), draws=80):
        for k, v in mb.replacement_counts.items():
            counts[k] += v
        for b, t in zip(*np.nonzero((mb.labels != IGNORE_INDEX) & (mb.sbo_pos == 0)), strict=True):
            left, right = span_of(mb, b, t)
            out, orig = mb.input_ids[b, left + 1:right], ids[b, left + 1:right]
            if (out == MASK).all():
                by_ids["mask"] += 1
            elif (out == orig).all():
                by_ids["keep"] += 1
            else:  # a random span has no [MASK] at all
                assert not (out == MASK).any()
                by_ids["random"] += 1
    assert sum(counts.values()) > 15000
    assert counts["mask"] == by_ids["mask"]
    for shares in (replacement_shares(counts), replacement_shares(by_ids)):
        assert abs(shares["mask"] - 0.8) < 0.02
        assert abs(shares["random"] - 0.1) < 0.02
        assert abs(shares["keep"] - 0.1) < 0.02


# ---------------------------------------------------------------- span lengths


def test_truncated_geometric_pmf_mean():
    pmf = truncated_geometric_pmf(0.2, 10)
    assert pmf.shape == (10,) and math.isclose(pmf.sum(), 1.0)
    assert np.allclose(pmf[1:] / pmf[:-1], 0.8)
    assert abs((np.arange(1, 11) * pmf).sum() - 3.8) < 0.01  # Joshi et al. 2020, mean 3.8
    with pytest.raises(MaskedLMError):
        truncated_geometric_pmf(0.0, 10)


@pytest.mark.parametrize(("p", "max_words"), [(0.2, 10), (0.5, 4)])
def test_drawn_span_length_histogram_matches_truncated_geometric(p, max_words):
    """The lengths *drawn* (``span_lengths``); the spans as masked are tested below."""
    config = MaskingConfig(scheme="span", span_p=p, max_span_words=max_words)
    lengths = np.concatenate([mb.span_lengths for *_, mb in run(config, draws=40)])
    pmf = truncated_geometric_pmf(p, max_words)
    observed = np.bincount(lengths, minlength=max_words + 1)[1:]
    assert len(observed) == max_words  # nothing longer than max_words
    expected = pmf * len(lengths)
    chi2 = float(((observed - expected) ** 2 / expected).sum())
    if max_words == 10:
        assert len(lengths) > 5000
        assert chi2 < CHI2_999_9DOF
        assert abs(lengths.mean() - 3.8) < 0.1
    else:
        assert chi2 < 16.27  # 0.999 quantile, 3 degrees of freedom


# ---------------------------------------------------------------- spans as masked, on real text


@pytest.fixture(scope="module")
def prose(tmp_path_factory) -> tuple[dict[str, np.ndarray], int]:
    """SpanBERT blocks of 128 tokens (~1,900) from the first 2,500 lines of the Gutenberg
    training text, with an 8k WordPiece vocabulary trained on them; and the vocabulary size."""
    import gzip
    import itertools

    from maskedlm.data.instances import build_instances
    from maskedlm.data.shards import ShardSet, prepare_shards
    from maskedlm.data.tokenizer import train_tokenizer

    path = shared_data("gutenberg/gutenberg_train.txt.gz")
    root = tmp_path_factory.mktemp("prose")
    with gzip.open(path, "rt", encoding="utf-8") as f:
        lines = list(itertools.islice(f, 2500))
    (root / "prose.txt").write_text("".join(lines), encoding="utf-8")
    tok = train_tokenizer([lines], vocab_size=8000, show_progress=False)
    tok.save(root / "tok")
    shards = ShardSet.load(prepare_shards([str(root / "prose.txt")], root / "tok", root / "shards",
                                          show_progress=False))
    inst = build_instances(shards, "train", "spanbert", 128, np.random.default_rng(0))
    assert len(inst) > 1500
    return inst.get(range(len(inst))), tok.vocab_size


def mask_prose(prose, config: MaskingConfig, seed: int = 0) -> MaskedBatch:
    b, vocab = prose
    return mask_batch(b["input_ids"], b["word_starts"], b["special"], config,
                      np.random.default_rng(seed), vocab_size=vocab, mask_id=MASK,
                      special_ids=SPECIAL_IDS)


@pytest.mark.data
@pytest.mark.parametrize(("merge", "mean", "two_or_more"), [(True, 3.45, 0.73), (False, 3.15, 0.70)])
def test_spans_as_masked_on_real_text(prose, merge, mean, two_or_more):
    """SpanBERT's spans as the model sees them, at seq 128 (reference measured on this text:
    3.4 words merged, 3.15 unmerged, ~70% of two or more words): the budget and other spans
    cut the drawn lengths (mean 3.8, Joshi et al. 2020) short; merging joins touching ones."""
    b, _ = prose
    mb = mask_prose(prose, MaskingConfig(scheme="span", merge_adjacent=merge))
    words = np.array(spans_in_words(mb, b["word_starts"], b["special"]))
    assert len(words) > 8000 and words.min() >= 1
    assert abs(words.mean() - mean) < 0.12
    assert abs((words >= 2).mean() - two_or_more) < 0.03
    assert abs(np.mean(mb.span_lengths) - 3.8) < 0.1 and words.mean() < np.mean(mb.span_lengths)
    if merge:  # runs of targets are the merged spans
        assert words.max() > 10
        runs = masked_span_words(mb.labels, b["word_starts"], b["special"])
        assert sorted(runs.tolist()) == sorted(words.tolist())
    else:
        assert words.max() == 10
    # the module's own count (mask-preview --stats) agrees span by span
    got = masked_span_words(mb.labels, b["word_starts"], b["special"], mb.sbo_left, mb.sbo_right)
    assert got.tolist() == words.tolist()


@pytest.mark.data
def test_span_starts_uniform_over_words(prose):
    """Each span starts at a word drawn uniformly among the free words that fit the budget:
    not biased to a part of the sequence, nor to long words (as a start drawn uniformly
    over *tokens* would be)."""
    b, _ = prose
    starts, special = b["word_starts"], b["special"]
    # A budget of one token: one single-token word per row, uniform among them.
    mb = mask_prose(prose, MaskingConfig(scheme="span", mask_prob=1e-3), seed=1)
    target = mb.labels != IGNORE_INDEX
    observed, expected = np.zeros(10), np.zeros(10)
    for r in range(len(target)):
        singles = [w[0] for w in words_of(starts[r], special[r]) if len(w) == 1]
        chosen = np.flatnonzero(target[r])
        assert len(chosen) == 1 and chosen[0] in singles
        deciles = np.arange(len(singles)) * 10 // len(singles)
        observed[deciles[singles.index(chosen[0])]] += 1
        expected += np.bincount(deciles, minlength=10) / len(singles)
    assert float(((observed - expected) ** 2 / expected).sum()) < CHI2_999_9DOF
    # The full scheme, spans apart: starts fall on multi-token words at their share of
    # *words*, spread over the sequence (every decile within 15% of its share).
    mb = mask_prose(prose, MaskingConfig(scheme="span", merge_adjacent=False), seed=2)
    first = (mb.labels != IGNORE_INDEX) & (mb.sbo_pos == 0)
    n_words = n_long = n_long_tokens = n_tokens = long_starts = n_starts = 0
    at = np.zeros(10)
    share = np.zeros(10)
    for r in range(len(first)):
        words = words_of(starts[r], special[r])
        span_firsts = set(np.flatnonzero(first[r]).tolist())
        is_start = np.array([w[0] in span_firsts for w in words])
        is_long = np.array([len(w) > 1 for w in words])
        n_words += len(words)
        n_long += int(is_long.sum())
        n_tokens += sum(len(w) for w in words)
        n_long_tokens += sum(len(w) for w in words if len(w) > 1)
        n_starts += int(is_start.sum())
        long_starts += int((is_start & is_long).sum())
        deciles = np.arange(len(words)) * 10 // len(words)
        at += np.bincount(deciles[is_start], minlength=10)
        share += np.bincount(deciles, minlength=10) / len(words) * is_start.sum()
    assert n_long_tokens / n_tokens - n_long / n_words > 0.03  # the two rules differ here
    assert abs(long_starts / n_starts - n_long / n_words) < 0.015
    assert np.abs(at / share - 1).max() < 0.15


# ---------------------------------------------------------------- whole words, specials


@pytest.mark.parametrize("scheme", ["whole_word", "span"])
@pytest.mark.parametrize("budget", ["exact", "bernoulli"])
def test_selections_are_whole_words(scheme, budget):
    for _, starts, special, mb in run(MaskingConfig(scheme=scheme, budget=budget), draws=3):
        target = mb.labels != IGNORE_INDEX
        n_partial = n_full = 0
        for b in range(len(target)):
            for word in words_of(starts[b], special[b]):
                hit = target[b, word]
                n_partial += int(hit.any() and not hit.all())
                n_full += int(hit.all())
        assert n_partial == 0 and n_full > 0


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("budget", ["exact", "bernoulli"])
def test_special_tokens_never_masked(scheme, budget):
    for ids, _, special, mb in run(MaskingConfig(scheme=scheme, budget=budget), draws=3):
        target = mb.labels != IGNORE_INDEX
        assert not (target & special).any()
        assert (mb.input_ids[special] == ids[special]).all()
        assert (mb.input_ids[~target] == ids[~target]).all()
        assert (mb.labels[target] == ids[target]).all()
        assert (mb.labels[~target] == IGNORE_INDEX).all()
        assert mb.input_ids.dtype == np.int64 and mb.labels.dtype == np.int64


# ---------------------------------------------------------------- span boundary objective


@pytest.mark.parametrize("scheme", SCHEMES)
def test_sbo_targets_with_merged_spans(scheme):
    for _, _, _, mb in run(MaskingConfig(scheme=scheme, mask_prob=0.4), draws=2):
        target = mb.labels != IGNORE_INDEX
        for name in ("sbo_left", "sbo_right", "sbo_pos"):
            assert (getattr(mb, name)[~target] == 0).all()
        for b, i in zip(*np.nonzero(target), strict=True):
            left, right = span_of(mb, b, i)
            assert left < i < right
            assert target[b, left + 1:right].all()
            assert not target[b, left] and not target[b, right]
            assert mb.sbo_pos[b, i] == i - left - 1


def test_sbo_without_merging_keeps_spans_apart():
    config = MaskingConfig(scheme="span", mask_prob=0.5, merge_adjacent=False)
    n_touching = 0
    for _, _, _, mb in run(config, draws=3):
        target = mb.labels != IGNORE_INDEX
        for b, i in zip(*np.nonzero(target), strict=True):
            left, right = span_of(mb, b, i)
            assert left < i < right and mb.sbo_pos[b, i] == i - left - 1
            inside = np.arange(left + 1, right)
            assert target[b, inside].all()
            # Every token of the span names the same boundaries.
            assert (mb.sbo_left[b, inside] == left).all() and (mb.sbo_right[b, inside] == right).all()
            n_touching += int(target[b, left] and mb.sbo_pos[b, i] == 0)
        # One replacement choice per sampled span: nothing merged.
        assert sum(mb.replacement_counts.values()) == len(mb.span_lengths)
    assert n_touching > 0


@pytest.mark.parametrize("merge", [True, False])
def test_two_adjacent_spans_constructed(merge):
    ids = np.array([CLS, 10, 11, SEP])
    config = MaskingConfig(scheme="span", mask_prob=1.0, max_span_words=1, merge_adjacent=merge)
    mb = mask_sequence(ids, np.ones(4, bool), np.isin(ids, SPECIAL_IDS), config,
                       np.random.default_rng(0), vocab_size=VOCAB, mask_id=MASK)
    assert mb.span_lengths == [1, 1]
    if merge:  # one span 1..2 with boundaries 0 and 3
        assert mb.sbo_left[0].tolist() == [0, 0, 0, 0]
        assert mb.sbo_right[0].tolist() == [0, 3, 3, 0]
        assert mb.sbo_pos[0].tolist() == [0, 0, 1, 0]
        assert sum(mb.replacement_counts.values()) == 1
    else:  # two one-word spans; the left one is the right one's boundary
        assert mb.sbo_left[0].tolist() == [0, 0, 1, 0]
        assert mb.sbo_right[0].tolist() == [0, 2, 3, 0]
        assert mb.sbo_pos[0].tolist() == [0, 0, 0, 0]
        assert sum(mb.replacement_counts.values()) == 2


def test_spans_respect_max_words_and_stay_contiguous():
    config = MaskingConfig(scheme="span", mask_prob=0.3, max_span_words=3, merge_adjacent=False)
    n_words = []
    for _, starts, special, mb in run(config, draws=3):
        target = mb.labels != IGNORE_INDEX
        for b, i in zip(*np.nonzero(target & (mb.sbo_pos == 0)), strict=True):
            left, right = span_of(mb, b, i)
            assert not special[b, left + 1:right].any()  # never across an inner [SEP]
        n_words += spans_in_words(mb, starts, special)
    counts = np.bincount(n_words, minlength=4)
    assert counts[0] == 0 and len(counts) == 4  # 1 to 3 words ...
    assert counts[2] > 0.15 * len(n_words) and counts[3] > 0.1 * len(n_words)  # ... all used


# ---------------------------------------------------------------- random replacements


@pytest.mark.parametrize("scheme", SCHEMES)
def test_uniform_random_never_special(scheme):
    vocab = 12  # ids 5..11 are the only legal replacements
    config = MaskingConfig(scheme=scheme, mask_ratio=0.0, random_ratio=1.0)
    drawn = np.concatenate([
        mb.input_ids[mb.labels != IGNORE_INDEX] for *_, mb in run(config, draws=10, vocab=vocab)])
    assert not np.isin(drawn, SPECIAL_IDS).any()
    shares = np.bincount(drawn, minlength=vocab)[5:] / len(drawn)
    assert np.abs(shares - 1 / 7).max() < 0.02


def test_unigram_random_follows_probs():
    probs = np.zeros(VOCAB)
    probs[[7, 9]] = [0.6, 0.2]
    probs[CLS] = probs[MASK] = 0.1  # special ids are excluded, then renormalized
    rng = np.random.default_rng(0)
    config = MaskingConfig(mask_ratio=0.0, random_ratio=1.0, random_source="unigram")
    drawn = []
    for _ in range(10):
        ids, starts, special = make_batch(rng)
        mb = mask_batch(ids, starts, special, config, rng, vocab_size=VOCAB, mask_id=MASK,
                        special_ids=SPECIAL_IDS, unigram_probs=probs)
        drawn.append(mb.input_ids[mb.labels != IGNORE_INDEX])
    drawn = np.concatenate(drawn)
    assert set(np.unique(drawn).tolist()) == {7, 9}
    assert abs((drawn == 7).mean() - 0.75) < 0.02
    with pytest.raises(MaskedLMError, match="unigram_probs"):
        mask_batch(ids, starts, special, config, rng, vocab_size=VOCAB, mask_id=MASK)


# ---------------------------------------------------------------- seeding, config, errors


@pytest.mark.parametrize("scheme", SCHEMES)
def test_same_seed_same_output(scheme):
    config = MaskingConfig(scheme=scheme)
    a, b, c = run(config, seed=1)[0][3], run(config, seed=1)[0][3], run(config, seed=2)[0][3]
    for name in ("input_ids", "labels", "sbo_left", "sbo_right", "sbo_pos"):
        assert np.array_equal(getattr(a, name), getattr(b, name))
    assert a.span_lengths == b.span_lengths and a.replacement_counts == b.replacement_counts
    assert not np.array_equal(a.labels, c.labels)


@pytest.mark.parametrize("vary", ["instance", "epoch", "seed"])
def test_row_keys_give_independent_rows(vary):
    """4,000 copies of one sequence, each with its own key: targets fall uniformly over the
    positions and two neighbouring keys share no more targets than chance (hypergeometric:
    10 * 10 / 62 on average)."""
    n, T = 4000, 64
    ids = np.full((n, T), 10)
    ids[:, 0], ids[:, -1] = CLS, SEP
    special = np.isin(ids, SPECIAL_IDS)
    i = np.arange(n)
    keys = {"instance": sequence_keys(0, 0, i), "epoch": sequence_keys(0, i, 7),
            "seed": sequence_keys(i, 0, 7)}[vary]
    mb = mask_batch(ids, np.ones_like(special), special, MaskingConfig(), keys,
                    vocab_size=VOCAB, mask_id=MASK)
    target = mb.labels != IGNORE_INDEX
    assert (target.sum(1) == 10).all()  # ceil(0.15 * 62)
    per_position = target[:, 1:-1].sum(0)
    expected = n * 10 / 62
    assert float(((per_position - expected) ** 2 / expected).sum()) < 100.9  # 0.999, 61 dof
    shared = (target[1:] & target[:-1]).sum(1)
    assert abs(shared.mean() - 100 / 62) < 0.1
    # the same key gives the same row, whatever else is in the batch
    again = mask_batch(ids[:3][::-1], np.ones((3, T), bool), special[:3], MaskingConfig(),
                       keys[:3][::-1].copy(), vocab_size=VOCAB, mask_id=MASK)
    assert np.array_equal(again.labels[::-1], mb.labels[:3])
    with pytest.raises(MaskedLMError, match="keys"):
        mask_batch(ids[:3], special[:3], special[:3], MaskingConfig(), keys[:2],
                   vocab_size=VOCAB, mask_id=MASK)


def test_config_defaults():
    config = MaskingConfig()
    assert (config.scheme, config.mask_prob, config.mask_ratio, config.random_ratio) == (
        "token", 0.15, 0.8, 0.1)
    assert (config.budget, config.random_source, config.merge_adjacent) == ("exact", "uniform", True)
    assert (config.span_p, config.max_span_words) == (0.2, 10)


@pytest.mark.parametrize("bad", [
    {"scheme": "ngram"}, {"budget": "round"}, {"random_source": "zipf"}, {"mask_prob": 0.0},
    {"mask_prob": 1.5}, {"mask_ratio": 0.95}, {"random_ratio": -0.1}, {"span_p": 0.0},
    {"max_span_words": 0},
])
def test_config_rejects_bad_values(bad):
    with pytest.raises(MaskedLMError):
        MaskingConfig(**bad)


def test_input_errors():
    ids = np.array([[CLS, 10, 11, SEP]])
    starts, special = np.ones_like(ids, bool), np.isin(ids, SPECIAL_IDS)
    rng = np.random.default_rng(0)
    with pytest.raises(MaskedLMError, match="shape"):
        mask_batch(ids, starts[:, :3], special, MaskingConfig(), rng, vocab_size=VOCAB, mask_id=MASK)
    with pytest.raises(MaskedLMError, match="start and end"):
        mask_batch(ids, starts, special & False, MaskingConfig(), rng, vocab_size=VOCAB, mask_id=MASK)
    with pytest.raises(MaskedLMError, match="mask_id"):
        mask_batch(ids, starts, special, MaskingConfig(), rng, vocab_size=VOCAB, mask_id=VOCAB)


def test_replacement_shares_handles_zero():
    assert replacement_shares({"mask": 0, "random": 0, "keep": 0}) == {
        "mask": 0.0, "random": 0.0, "keep": 0.0}
    assert replacement_shares({"mask": 2, "random": 1, "keep": 1})["mask"] == 0.5


def test_recipe_masking_rates_and_all_mask_replacement():
    from maskedlm.data.masking import BUDGET_MASK_RATE, recipe_masking

    assert recipe_masking("budget").mask_prob == BUDGET_MASK_RATE == 0.3
    assert recipe_masking("budget").scheme == "token" and recipe_masking("roberta").mask_prob == 0.15
    assert recipe_masking("spanbert", mask_rate=0.25).mask_prob == 0.25
    cfg = recipe_masking("roberta", mask_replace="mask")
    assert (cfg.mask_ratio, cfg.random_ratio) == (1.0, 0.0)
    ids = np.tile(np.arange(10, 74), (8, 1))
    ids[:, 0], ids[:, -1] = 2, 3
    special = np.zeros_like(ids, dtype=bool)
    special[:, [0, -1]] = True
    out = mask_batch(ids, np.ones_like(special), special, cfg, np.random.default_rng(0),
                     vocab_size=100, mask_id=4)
    targets = out.labels != -100
    assert targets.any() and (out.input_ids[targets] == 4).all()  # every target is [MASK]
    with pytest.raises(MaskedLMError):
        recipe_masking("roberta", mask_replace="70-20-10")
