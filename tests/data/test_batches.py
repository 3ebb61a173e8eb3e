"""The pretraining batch source: every sequence's masking is a function of the sequence
alone (not of batch size, accumulation, rank count or resumption); one vectorized call
masks a whole batch."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from maskedlm.data.batches import PretrainBatches
from maskedlm.data.masking import recipe_masking
from maskedlm.data.shards import ShardSet
from maskedlm.data.tokenizer import Tokenizer

PER_TOKEN = ("input_ids", "labels", "token_type_ids", "sbo_left", "sbo_right", "sbo_pos")


@dataclass
class Rank:  # maskedlm.training.dist.DistInfo without torch
    rank: int = 0
    world_size: int = 1


def source(tiny_data, recipe: str, batch: int, accum: int, rank: Rank, seq_len: int = 32,
           whole_word: bool = False) -> PretrainBatches:
    return PretrainBatches(ShardSet.load(tiny_data["shards"]), recipe, seq_len,
                           recipe_masking(recipe, whole_word=whole_word),
                           Tokenizer.load(tiny_data["tokenizer"]), batch, accum, 5, rank)


def sequences(batches: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
    """Each row without its padding, in batch order."""
    rows = []
    for b in batches:
        for r, n in enumerate(b["attention_mask"].sum(1).tolist()):
            rows.append({k: b[k][r, :n] for k in PER_TOKEN if k in b})
            if "next_sentence_label" in b:
                rows[-1]["next_sentence_label"] = b["next_sentence_label"][r]
    return rows


def same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(("recipe", "whole_word"), [("budget", False), ("bert", False),
                                                    ("spanbert", False), ("roberta", True)])
def test_masks_do_not_depend_on_batch_size_accumulation_or_ranks(tiny_data, recipe, whole_word):
    one = source(tiny_data, recipe, 12, 1, Rank(), whole_word=whole_word)
    steps = one.epoch_len // 12 + 2  # past the end of the first epoch: a straddling batch too
    want = sequences([b for s in range(steps) for b in one.step_batches(s)])
    # 2 ranks x 2 micro-batches x 3 sequences: global order is step, micro-batch, rank, row
    two = [source(tiny_data, recipe, 3, 2, Rank(r, 2), whole_word=whole_word) for r in (0, 1)]
    got = []
    for s in range(steps):
        per_rank = [src.step_batches(s) for src in two]
        for m in range(2):
            got += sequences([per_rank[0][m]]) + sequences([per_rank[1][m]])
    assert len(got) == len(want) == 12 * steps
    assert all(same(a, b) for a, b in zip(got, want, strict=True))
    assert sum(int((w["labels"] != -100).sum()) for w in want) > 0


def test_step_batches_are_a_function_of_the_step(tiny_data):
    """What a resumed run relies on: step s is the same whatever was built before it."""
    fresh = source(tiny_data, "spanbert", 8, 2, Rank())
    used = source(tiny_data, "spanbert", 8, 2, Rank())
    for s in (0, 1, 5):
        used.step_batches(s)
    late = used.step_batches(9)
    assert all(same(a, b) for a, b in zip(sequences(fresh.step_batches(9)), sequences(late),
                                           strict=True))


def test_masking_is_dynamic_across_epochs_and_fixed_on_eval(tiny_data):
    src = source(tiny_data, "budget", 4, 1, Rank())
    steps = src.epoch_len // 4  # whole steps inside each of the first two epochs

    def by_text(epoch: int) -> dict[tuple[int, ...], np.ndarray]:
        rows = sequences([b for s in range(epoch * steps + epoch, (epoch + 1) * steps)
                          for b in src.step_batches(s)])
        return {tuple(np.where(r["labels"] != -100, r["labels"], r["input_ids"]).tolist()):
                r["labels"] for r in rows}
    first, second = by_text(0), by_text(1)
    both = first.keys() & second.keys()  # the same sequences, visited in another order
    assert len(both) > 20
    assert sum(np.array_equal(first[k], second[k]) for k in both) < 0.1 * len(both)
    a, b = src.eval_batches(), src.eval_batches()
    assert all(np.array_equal(x["labels"], y["labels"]) for x, y in zip(a, b, strict=True))
