import numpy as np
import pytest

from maskedlm.data.packing import first_fit_decreasing, pack_batch


def padded_batch(lengths, T=10, seed=0):
    rng = np.random.default_rng(seed)
    B = len(lengths)
    mask = np.arange(T)[None] < np.array(lengths)[:, None]
    ids = np.where(mask, rng.integers(5, 50, (B, T)), 0)
    labels = np.where(mask & (rng.random((B, T)) < 0.4), ids, -100)
    labels[:, 0] = -100
    left = np.where(labels != -100, np.maximum(np.arange(T)[None] - 1, 0), 0)
    right = np.where(labels != -100, np.minimum(np.arange(T)[None] + 1, np.array(lengths)[:, None] - 1), 0)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels, "sbo_left": left,
            "sbo_right": right, "sbo_pos": np.zeros_like(ids), "special": ~mask,
            "token_type_ids": np.zeros_like(ids)}


def test_first_fit_decreasing_respects_capacity_and_places_everything():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 30, 200)
    bins = first_fit_decreasing(lengths, 32)
    assert sorted(i for b in bins for i in b) == list(range(200))
    assert all(lengths[b].sum() <= 32 for b in bins)
    assert len(bins) <= int(np.ceil(lengths.sum() / 32 * 11 / 9)) + 1  # near the ideal count


def test_packed_rows_hold_every_sequence_unchanged_with_shifted_boundaries():
    b = padded_batch([10, 4, 3, 6, 5, 2], T=10)
    p = pack_batch(b, 10)
    assert p["input_ids"].shape[0] < 6 and p["input_ids"].shape[1] == 10
    assert int(p["attention_mask"].sum()) == int(b["attention_mask"].sum())  # nothing lost
    assert ((p["sequence_ids"] >= 0) == p["attention_mask"]).all()
    found = 0
    for r in range(p["input_ids"].shape[0]):
        for s in range(int(p["sequence_ids"][r].max()) + 1):
            at = np.flatnonzero(p["sequence_ids"][r] == s)
            assert (np.diff(at) == 1).all()  # contiguous
            n = len(at)
            i = next(i for i in range(6) if int(b["attention_mask"][i].sum()) == n
                     and (b["input_ids"][i, :n] == p["input_ids"][r, at]).all())
            found += 1
            assert (p["labels"][r, at] == b["labels"][i, :n]).all()
            tgt = b["labels"][i, :n] != -100
            # the boundaries point at the same tokens, now positions in the row
            assert (p["input_ids"][r, p["sbo_left"][r, at][tgt]] == b["input_ids"][i, b["sbo_left"][i, :n][tgt]]).all()
            assert (p["input_ids"][r, p["sbo_right"][r, at][tgt]] == b["input_ids"][i, b["sbo_right"][i, :n][tgt]]).all()
    assert found == 6


def test_packing_refuses_what_cannot_follow_sequences():
    b = padded_batch([3, 4])
    with pytest.raises(ValueError, match="exceeds"):
        pack_batch(b, 3)
    b["next_sentence_label"] = np.zeros(2, np.int64)
    with pytest.raises(ValueError, match="next_sentence_label"):
        pack_batch(b, 10)
