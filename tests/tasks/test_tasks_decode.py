"""Decoding and batching pieces: Viterbi, span enumeration, nested/flat decoding, metrics."""

import numpy as np
import torch

from maskedlm.tasks.common import length_grouped_batches, pad, sorted_batches
from maskedlm.tasks.data import bio_to_spans
from maskedlm.tasks.spans import (
    SpanHead,
    decode_spans,
    enumerate_spans,
    nested_inner,
    span_prf,
)
from maskedlm.tasks.tag import allowed_transitions, viterbi

LABELS = ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]


def test_viterbi_never_emits_i_after_o_or_other_type():
    rng = np.random.default_rng(0)
    start, trans = allowed_transitions(LABELS)
    for _ in range(200):
        lp = np.log(rng.dirichlet(np.ones(len(LABELS)) * 0.3, size=rng.integers(1, 12)))
        tags = [LABELS[k] for k in viterbi(lp, start, trans)]
        assert not tags[0].startswith("I-")
        for prev, cur in zip(tags, tags[1:], strict=False):
            if cur.startswith("I-"):
                assert prev in ("B-" + cur[2:], cur), tags


def test_viterbi_equals_argmax_when_argmax_is_valid():
    start, trans = allowed_transitions(LABELS)
    lp = np.log(np.array([[0.1, 0.1, 0.1, 0.6, 0.1], [0.1, 0.1, 0.1, 0.1, 0.6], [0.9, 0, 0, 0.05, 0.05]]) + 1e-9)
    assert viterbi(lp, start, trans) == lp.argmax(-1).tolist()


def test_enumerate_spans():
    spans = enumerate_spans(5, 3)
    assert len(spans) == 5 + 4 + 3 and all(j - i < 3 for i, j in spans)
    assert enumerate_spans(2, 8) == [(0, 0), (0, 1), (1, 1)]
    assert enumerate_spans(0, 3) == []


def test_nested_decoding_keeps_nested_drops_crossing():
    cands = [(0, 3, "DNA", 0.9), (0, 1, "protein", 0.8), (2, 4, "RNA", 0.7), (1, 2, "DNA", 0.6)]
    assert decode_spans(cands, flat=False) == [(0, 1, "protein", 0.8), (0, 3, "DNA", 0.9),
                                               (1, 2, "DNA", 0.6)]
    assert decode_spans(cands, flat=True) == [(0, 3, "DNA", 0.9)]
    assert decode_spans([(0, 1, "A", 0.5), (1, 2, "B", 0.4)], flat=True) == [(0, 1, "A", 0.5),
                                                                            (1, 2, "B", 0.4)]


def test_span_metrics_and_nested_count():
    gold = [[(0, 3, "DNA"), (0, 1, "protein"), (4, 5, "RNA")]]
    pred = [[(0, 3, "DNA"), (4, 5, "DNA")]]
    m = span_prf(gold, pred)
    assert (m["precision"], m["recall"]) == (0.5, 1 / 3)
    assert m["per_type"]["DNA"]["precision"] == 0.5 and m["per_type"]["RNA"]["recall"] == 0.0
    assert nested_inner(gold[0]) == {(0, 1, "protein")}


def test_bio_round_trip_through_spans():
    tags = ["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-LOC"]
    assert bio_to_spans(tags) == [(0, 2, "PER"), (3, 4, "LOC"), (4, 6, "LOC")]


def test_span_pooling_matches_direct_computation():
    torch.manual_seed(0)
    hidden = torch.randn(2, 7, 8)
    batch = {"span_b": torch.tensor([0, 1, 1]), "span_start": torch.tensor([1, 0, 2]),
             "span_end": torch.tensor([3, 0, 6]), "span_width": torch.tensor([2, 0, 4])}
    for repr_ in ("mean", "attention"):
        head = SpanHead(8, 3, repr_, max_width=5, dropout=0.0)
        got = head.pooled(hidden, batch)
        for n in range(3):
            b, s, e = (int(batch[k][n]) for k in ("span_b", "span_start", "span_end"))
            x = hidden[b, s:e + 1]
            if repr_ == "mean":
                want = x.mean(0)
            else:
                w = torch.softmax(10 * torch.tanh(head.attn(x).squeeze(-1) / 10), 0)
                want = (w[:, None] * x).sum(0)
            torch.testing.assert_close(got[n], want, rtol=1e-5, atol=1e-5)
        assert head(hidden, batch).shape == (3, 3)


def test_length_grouped_batches_cover_everything_with_little_padding():
    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 120, size=1000)
    batches = length_grouped_batches(lengths, 32, rng)
    assert sorted(np.concatenate(batches).tolist()) == list(range(1000))
    padded = sum(len(b) * lengths[b].max() for b in batches)
    assert padded / lengths.sum() < 1.05  # under 5% of the compute on padding
    assert [len(b) for b in sorted_batches([3, 1, 2], 2)] == [2, 1]
    assert pad([[1, 2], [3]], 0).tolist() == [[1, 2], [3, 0]]
