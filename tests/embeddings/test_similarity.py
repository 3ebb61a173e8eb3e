"""Similarity in context (WiC), Spearman, thresholds and type-level word similarity."""

import numpy as np
import pytest
import torch

from maskedlm.api import MaskedLM
from maskedlm.data.tokenizer import train_tokenizer
from maskedlm.embeddings.similarity import (
    choose_threshold,
    evaluate_wic,
    evaluate_word_pairs,
    find_occurrences,
    rankdata,
    read_wic,
    read_word_pairs,
    similarity_in_context,
    spearman,
)
from maskedlm.errors import MaskedLMError
from maskedlm.models.config import ModelConfig
from maskedlm.models.heads import BertForPreTraining

CORPUS = [
    "The cat sat on the mat .",
    "A dog chased the cat across the yard .",
    "The dog slept by the fire .",
    "He sold his car to buy a boat .",
    "The boat drifted across the lake .",
]


@pytest.fixture(scope="module")
def model() -> MaskedLM:
    torch.manual_seed(0)
    tok = train_tokenizer([CORPUS] * 3, vocab_size=100, lowercase=True, show_progress=False)
    cfg = ModelConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2,
                      num_attention_heads=4, intermediate_size=64, max_position_embeddings=64)
    return MaskedLM(BertForPreTraining(cfg), tok)


def test_rankdata_and_spearman_by_hand():
    np.testing.assert_array_equal(rankdata(np.array([3.0, 1.0, 2.0])), [3, 1, 2])
    np.testing.assert_array_equal(rankdata(np.array([5.0, 5.0, 1.0, 5.0])), [3, 3, 1, 3])
    # ranks a = 1 2 3 4 5, b = 2 1 4 3 5: d^2 = 4, rho = 1 - 6 * 4 / (5 * 24) = 0.8
    assert spearman([1, 2, 3, 4, 5], [20, 10, 40, 30, 50]) == pytest.approx(0.8)
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    # with ties: Pearson of average ranks a = 1.5 1.5 3 4, b = 1 2 3 4
    ra, rb = np.array([1.5, 1.5, 3, 4]), np.array([1.0, 2, 3, 4])
    want = np.corrcoef(ra, rb)[0, 1]
    assert spearman([7, 7, 8, 9], [1, 2, 3, 4]) == pytest.approx(want)
    assert spearman([1, 1, 1], [1, 2, 3]) == 0.0


def test_threshold_selection():
    t, acc = choose_threshold(np.array([0.9, 0.8, 0.3, 0.2]), np.array([1, 1, 0, 0], bool))
    assert acc == 1.0 and 0.3 < t < 0.8 and t == pytest.approx(0.55)
    # best is to call everything True
    t, acc = choose_threshold(np.array([0.1, 0.2, 0.3]), np.array([1, 1, 0], bool))
    assert acc == pytest.approx(2 / 3)
    assert ((np.array([0.1, 0.2, 0.3]) >= t) == np.array([1, 1, 0], bool)).mean() == acc
    # all False
    t, acc = choose_threshold(np.array([0.5, 0.6]), np.array([0, 0], bool))
    assert acc == 1.0 and t > 0.6
    # ties cannot be split by a threshold
    t, acc = choose_threshold(np.array([0.5, 0.5, 0.1]), np.array([1, 0, 0], bool))
    assert acc == pytest.approx(2 / 3)


def _wic(tmp_path, name, rows):
    data = "".join(f"{lemma}\tN\t{i}-{j}\t{s1}\t{s2}\n" for lemma, i, j, s1, s2, _ in rows)
    (tmp_path / f"{name}.data.txt").write_text(data)
    (tmp_path / f"{name}.gold.txt").write_text("".join(f"{g}\n" for *_, g in rows))


ROWS = [
    ("cat", 1, 1, "The cat sat on the mat .", "A cat chased the dog .", "T"),
    ("boat", 1, 7, "The boat drifted across the lake .", "He sold his car to buy a boat .", "F"),
    ("dog", 1, 2, "The dog slept by the fire .", "A dog chased the cat .", "T"),
    ("cat", 1, 1, "A cat is here .", "The cat slept by the boat .", "F"),
]


def test_wic_reading_and_evaluation(model, tmp_path):
    _wic(tmp_path, "train", ROWS)
    _wic(tmp_path, "dev", ROWS[:2])
    pairs = read_wic(tmp_path / "train.data.txt", tmp_path / "train.gold.txt")
    assert pairs[1].words2[pairs[1].index2] == "boat" and not pairs[1].label
    result = evaluate_wic(model, tmp_path)
    assert set(result) == {"dev_accuracy", "train_accuracy", "threshold"}
    assert 0.5 <= result["train_accuracy"] <= 1.0 and 0.0 <= result["dev_accuracy"] <= 1.0
    s = similarity_in_context(model, (CORPUS[0].split(), 1), (CORPUS[0].split(), 1))
    assert s == pytest.approx(1.0, abs=1e-5)
    (tmp_path / "bad.data.txt").write_text("cat\tN\t9-1\tThe cat\tA cat\n")
    (tmp_path / "bad.gold.txt").write_text("T\n")
    with pytest.raises(MaskedLMError, match="bad.data.txt:1: target index"):
        read_wic(tmp_path / "bad.data.txt", tmp_path / "bad.gold.txt")


def test_read_word_pairs_formats(tmp_path):
    simlex = tmp_path / "simlex.txt"
    simlex.write_text("word1\tword2\tPOS\tSimLex999\tconc(w1)\nold\tnew\tA\t1.58\t2.72\n"
                      "Smart\tintelligent\tA\t9.2\t1.75\n")
    assert read_word_pairs(simlex) == [("old", "new", 1.58), ("smart", "intelligent", 9.2)]
    ws = tmp_path / "ws.tsv"
    ws.write_text("# comment\n# another\nlove\tsex\t6.77\ntiger\tcat\t7.35\n")
    assert read_word_pairs(ws) == [("love", "sex", 6.77), ("tiger", "cat", 7.35)]
    ws.write_text("love\tsex\t6.77\ntiger\tcat\n")
    with pytest.raises(MaskedLMError, match="ws.tsv:2"):
        read_word_pairs(ws)


def test_type_level_similarity(model, tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text("\n\n".join(CORPUS) + "\n")
    sentences, where = find_occurrences([corpus], {"cat", "boat", "zebra"}, max_occurrences=1)
    assert len(where["cat"]) == 1 and where["zebra"] == [] and len(where["boat"]) == 1
    pairs = tmp_path / "p.tsv"
    pairs.write_text("cat\tdog\t8\ncat\tboat\t2\ndog\tboat\t3\ncat\tzebra\t5\n")
    result = evaluate_word_pairs(model, pairs, [corpus], max_occurrences=5)
    assert result["pairs"] == 3 and result["missing"] == 1
    assert -1.0 <= result["spearman"] <= 1.0
