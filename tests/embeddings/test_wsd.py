"""1-NN word sense disambiguation: inventory, centroids, Raganato reading, scoring."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SHARED_DATA

from maskedlm.api import MaskedLM
from maskedlm.data.tokenizer import train_tokenizer
from maskedlm.embeddings.pooling import embed_words, fit_standardizer
from maskedlm.embeddings.wsd import (
    DictInventory,
    PosTagger,
    SenseCentroids,
    TaggedSentence,
    Target,
    evaluate,
    mfs_predictions,
    nearest_sense,
    predict_text,
    read_conllu_tags,
    read_gold,
    read_raganato,
    read_semcor,
    score,
    train_centroids,
    train_from_semcor,
    word_spans,
)
from maskedlm.errors import MaskedLMError
from maskedlm.models.config import ModelConfig
from maskedlm.models.heads import BertForPreTraining

DATA = SHARED_DATA

# A toy inventory in WordNet's shape: senses in frequency order, MFS first.
INVENTORY = DictInventory({
    ("bank", "n"): ["bank%1:17:01::", "bank%1:14:00::"],
    ("river", "n"): ["river%1:17:00::"],
    ("lend", "v"): ["lend%2:40:00::", "lend%2:42:00::"],
}, glosses={"bank%1:17:01::": "sloping land beside water"})

XML = """<?xml version="1.0" encoding="UTF-8" ?>
<corpus lang="en" source="toy">
<text id="d000">
<sentence id="d000.s000">
<wf lemma="he" pos="PRON">He</wf>
<wf lemma="sit" pos="VERB">sat</wf>
<wf lemma="on" pos="ADP">on</wf>
<wf lemma="the" pos="DET">the</wf>
<instance id="d000.s000.t000" lemma="bank" pos="NOUN">bank</instance>
<wf lemma="of" pos="ADP">of</wf>
<wf lemma="the" pos="DET">the</wf>
<instance id="d000.s000.t001" lemma="river" pos="NOUN">river</instance>
<wf lemma="." pos=".">.</wf>
</sentence>
<sentence id="d000.s001">
<wf lemma="the" pos="DET">The</wf>
<instance id="d000.s001.t000" lemma="bank" pos="NOUN">bank</instance>
<instance id="d000.s001.t001" lemma="lend" pos="VERB">lent</instance>
<wf lemma="him" pos="PRON">him</wf>
<instance id="d000.s001.t002" lemma="zebra" pos="NOUN">zebras</instance>
</sentence>
</text>
</corpus>
"""
GOLD = """d000.s000.t000 bank%1:17:01::
d000.s000.t001 river%1:17:00:: river%9:99:99::
d000.s001.t000 bank%1:14:00::
d000.s001.t001 lend%2:40:00::
d000.s001.t002 zebra%1:05:00::
"""


@pytest.fixture(scope="module")
def model() -> MaskedLM:
    torch.manual_seed(0)
    text = ["He sat on the bank of the river .", "The bank lent him zebras ."]
    tok = train_tokenizer([text] * 3, vocab_size=80, lowercase=True, show_progress=False)
    cfg = ModelConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2,
                      num_attention_heads=4, intermediate_size=64, max_position_embeddings=32)
    return MaskedLM(BertForPreTraining(cfg), tok)


@pytest.fixture()
def files(tmp_path) -> tuple[Path, Path]:
    (tmp_path / "toy.data.xml").write_text(XML)
    (tmp_path / "toy.gold.key.txt").write_text(GOLD)
    return tmp_path / "toy.data.xml", tmp_path / "toy.gold.key.txt"


def test_read_raganato_and_gold(files):
    sentences = read_raganato(files[0])
    assert sentences[0].words[4] == "bank" and len(sentences[0].words) == 9
    t = sentences[1].targets[1]
    assert (t.id, t.index, t.lemma, t.pos) == ("d000.s001.t001", 2, "lend", "v")
    gold = read_gold(files[1])
    assert gold["d000.s000.t001"] == ["river%1:17:00::", "river%9:99:99::"]


def test_bad_files_give_one_line_errors(tmp_path):
    (tmp_path / "bad.xml").write_text("<corpus><sentence>\n<wf>x</wf>\n")
    with pytest.raises(MaskedLMError, match=r"bad.xml:\d+: bad XML"):
        read_raganato(tmp_path / "bad.xml")
    (tmp_path / "bad.key").write_text("a bank%1:17:01::\nb\n")
    with pytest.raises(MaskedLMError, match="bad.key:2"):
        read_gold(tmp_path / "bad.key")


def test_score_by_hand():
    gold = {"a": ["x%1", "x%2"], "b": ["y%1"], "c": ["z%1"], "d": ["w%1"]}
    s = score({"a": "x%2", "b": "y%2", "c": None}, gold)
    assert s["precision"] == pytest.approx(1 / 2) and s["recall"] == pytest.approx(1 / 4)
    assert s["f1"] == pytest.approx(2 * 0.5 * 0.25 / 0.75)
    assert score({}, gold) == {"precision": 0.0, "recall": 0.0, "f1": 0.0}


def test_nearest_sense_and_fallbacks():
    c = SenseCentroids(["a%1", "b%1"], np.array([[1.0, 0.0], [0.0, 2.0]], np.float32),
                       np.array([3, 1]))
    p = nearest_sense(np.array([0.9, 0.2]), ["b%1", "a%1"], c)
    assert (p.key, p.source) == ("a%1", "1nn") and p.score == pytest.approx(0.9 / np.hypot(0.9, 0.2))
    assert nearest_sense(np.array([0.1, 5.0]), ["b%1", "a%1"], c).key == "b%1"
    assert nearest_sense(np.array([1.0, 0.0]), ["c%1", "c%2"], c).source == "mfs"
    assert nearest_sense(np.array([1.0, 0.0]), ["c%1", "c%2"], c).key == "c%1"
    assert nearest_sense(np.array([1.0, 0.0]), [], c).source == "none"


def test_centroids_are_means_of_tagged_vectors(model, tmp_path):
    s = [TaggedSentence("He sat on the bank of the river .".split(),
                        [Target(4, "bank", "n", ["bank%1:17:01::"]), Target(7, "river", "n", ["river%1:17:00::"])]),
         TaggedSentence("The bank of the river".split(), [Target(1, "bank", "n", ["bank%1:17:01::"])]),
         TaggedSentence("no tags here".split(), [])]
    c = train_centroids(model, s)
    v = embed_words(model, [x.words for x in s[:2]])
    np.testing.assert_allclose(c.vectors[c.row["bank%1:17:01::"]], (v[0][4] + v[1][1]) / 2, atol=1e-5)
    np.testing.assert_allclose(c.vectors[c.row["river%1:17:00::"]], v[0][7], atol=1e-5)
    assert c.counts.tolist() == [2, 1] and c.info["annotations"] == 3
    c.standardizer = fit_standardizer([np.concatenate(v)])
    back = SenseCentroids.load(c.save(tmp_path / "senses"))
    assert back.keys == c.keys and back.info == c.info
    np.testing.assert_array_equal(back.vectors, c.vectors)
    np.testing.assert_array_equal(back.standardizer.mean, c.standardizer.mean)
    with pytest.raises(MaskedLMError, match="not a sense-centroid folder"):
        SenseCentroids.load(tmp_path)


def test_evaluate_one_nn_against_mfs(model, files):
    # Trained on the test sentences themselves, every instance is its own centroid,
    # so 1-NN is right wherever a candidate exists; MFS misses the second "bank".
    sentences = read_raganato(files[0])
    gold = read_gold(files[1])
    for s in sentences:
        for t in s.targets:
            t.keys = [k for k in gold[t.id] if INVENTORY.is_known(k)]
        s.targets = [t for t in s.targets if t.keys]
    centroids = train_centroids(model, sentences)
    with pytest.warns(UserWarning, match="2 gold key"):
        r = evaluate(model, centroids, INVENTORY, *files)
    assert r["instances"] == 5 and r["unknown_gold_keys"] == 2
    assert r["precision"] == 1.0 and r["recall"] == pytest.approx(4 / 5)
    assert r["f1"] == pytest.approx(2 * 0.8 / 1.8)
    # MFS: 3 right of 4 answered, 5 gold
    p, rec = 3 / 4, 3 / 5
    assert r["mfs_f1"] == pytest.approx(2 * p * rec / (p + rec))
    assert r["fallbacks"] == {"1nn": 4, "mfs": 0, "none": 1}
    mfs = mfs_predictions(INVENTORY, read_raganato(files[0]))
    assert mfs["d000.s001.t000"].key == "bank%1:17:01::" and mfs["d000.s001.t002"].key is None


def test_predict_text_skips_function_words(model):
    s = [TaggedSentence("He sat on the bank".split(), [Target(4, "bank", "n", ["bank%1:17:01::"])])]
    out = predict_text(model, train_centroids(model, s), INVENTORY, "He sat on the bank of the river .")
    assert [(r["word"], r["sense_key"], r["source"]) for r in out] == [
        ("bank", "bank%1:17:01::", "1nn"), ("river", "river%1:17:00::", "mfs")]
    assert out[0]["definition"] == "sloping land beside water"


# A toy treebank: "bank" is a noun after a determiner, a verb after a pronoun.
TREEBANK = [("He sat on the bank , by the river .", "PRON VERB ADP DET NOUN PUNCT ADP DET NOUN PUNCT"),
            ("They bank the money .", "PRON VERB DET NOUN PUNCT"),
            ("We bank the money at the bank .", "PRON VERB DET NOUN ADP DET NOUN PUNCT"),
            ("The river ran by the bank .", "DET NOUN VERB ADP DET NOUN PUNCT")]
POS_INVENTORY = DictInventory({
    ("bank", "n"): ["bank%1:17:01::", "bank%1:14:00::"], ("bank", "v"): ["bank%2:40:00::"],
    ("river", "n"): ["river%1:17:00::"], ("money", "n"): ["money%1:21:00::"],
})


def write_conllu(path: Path, sentences) -> Path:
    blocks = []
    for words, tags in sentences:
        lines = [f"# text = {words}"]
        lines += [f"{i}\t{w}\t_\t{t}\t_\t_\t0\t_\t_\t_"
                  for i, (w, t) in enumerate(zip(words.split(), tags.split(), strict=True), 1)]
        blocks.append("\n".join(lines))
    path.write_text("\n\n".join(blocks) + "\n")
    return path


def test_word_spans_split_punctuation_off_words():
    text = 'He sat on the bank, by the river. "Banks lend," she said.'
    words = [text[a:b] for a, b in word_spans(text)]
    assert words == ["He", "sat", "on", "the", "bank", ",", "by", "the", "river", ".", '"',
                     "Banks", "lend", ",", '"', "she", "said", "."]


def test_predict_text_reads_raw_text_and_keeps_to_the_tagged_part_of_speech(model, tmp_path):
    tagger = PosTagger.train([write_conllu(tmp_path / "toy.conllu", TREEBANK * 5)])
    assert tagger.tag("They bank the money .".split())[1] == "VERB"
    # only the verb sense of "bank" is trained
    verb_use = [TaggedSentence("They bank the money".split(), [Target(1, "bank", "v", ["bank%2:40:00::"])])]
    centroids = train_centroids(model, verb_use)
    text = "He sat on the bank, by the river."
    out = predict_text(model, centroids, POS_INVENTORY, text, tagger=tagger)
    assert [(r["word"], r["pos"], r["sense_key"], r["source"]) for r in out] == [
        ("bank", "NOUN", "bank%1:17:01::", "mfs"),  # a noun: the verb's centroid is no candidate
        ("river", "NOUN", "river%1:17:00::", "mfs")]  # "river." is found
    assert [text[r["start"]:r["end"]] for r in out] == ["bank", "river"]
    verb = predict_text(model, centroids, POS_INVENTORY, "We bank the money.", tagger=tagger)
    assert [(r["word"], r["pos"], r["sense_key"], r["source"]) for r in verb] == [
        ("bank", "VERB", "bank%2:40:00::", "1nn"), ("money", "NOUN", "money%1:21:00::", "mfs")]
    # without a tagger every part of speech is a candidate: the noun takes the verb sense
    untagged = predict_text(model, centroids, POS_INVENTORY, text)
    assert untagged[0]["pos"] is None and untagged[0]["sense_key"] == "bank%2:40:00::"
    # the tagger travels with the centroids
    centroids.tagger = tagger
    back = SenseCentroids.load(centroids.save(tmp_path / "senses"))
    assert back.tagger is not None and back.tagger.info["sentences"] == 20
    assert predict_text(model, back, POS_INVENTORY, text) == out


def test_bad_conllu_names_file_and_line(tmp_path):
    (tmp_path / "bad.conllu").write_text("# c\n1\tHe\t_\tPRON\t_\t_\t0\t_\t_\t_\n2\tsat\tVERB\n")
    with pytest.raises(MaskedLMError, match=r"bad.conllu:3: 3 columns"):
        read_conllu_tags(tmp_path / "bad.conllu")
    (tmp_path / "empty.conllu").write_text("# nothing\n")
    with pytest.raises(MaskedLMError, match="empty.conllu: no sentences"):
        read_conllu_tags(tmp_path / "empty.conllu")


@pytest.mark.slow
@pytest.mark.data
def test_wsd_predict_on_raw_text_with_wordnet_and_a_ud_trained_tagger(model, tmp_path):
    """Real WordNet, NLTK's perceptron trained on UD English ParTUT: "bank," is a noun
    with noun senses only, "banked" a verb with verb senses only, "river." is found."""
    pytest.importorskip("nltk", reason="pip install 'maskedlm[wsd]'")
    from maskedlm.embeddings.wsd import WordNetInventory

    wn = WordNetInventory(DATA / "wordnet" / "dict")
    tagger = PosTagger.train([DATA / "ud_en_partut" / "en_partut-ud-train.conllu"])
    centroids = train_centroids(model, [TaggedSentence(["bank"], [Target(0, "bank", "v", ["bank%2:40:00::"])])])
    out = {r["word"]: r for r in predict_text(
        model, centroids, wn, "He sat on the bank, by the river. She banked her money.", tagger=tagger)}
    assert {"bank", "river", "banked", "money"} <= set(out)
    assert out["bank"]["pos"] == "NOUN" and out["bank"]["sense_key"].startswith("bank%1:")
    assert out["river"]["sense_key"] == "river%1:17:00::"
    assert out["banked"]["pos"] == "VERB" and out["banked"]["sense_key"].startswith("bank%2:")
    untagged = {r["word"]: r for r in predict_text(model, centroids, wn, "He sat on the bank, by the river.")}
    assert untagged["bank"]["sense_key"] == "bank%2:40:00::"  # the only trained candidate


def test_read_semcor_filters_unknown_keys(tmp_path):
    rec = {"tokens": ["The", "river_bank", "was", "muddy"], "pos": ["DT", "NN", "VB", "JJ"],
           "lemmas": [None, "bank", None, "muddy"],
           "sense_keys": [None, ["bank%1:17:01::", "bank%1:99:00::"], None, ["muddy%3:00:00::"]]}
    path = tmp_path / "s.jsonl"
    path.write_text(json.dumps(rec) + "\n")
    sentences, stats = read_semcor(path, INVENTORY)
    assert sentences[0].words[1] == "river bank"
    assert [(t.index, t.keys, t.pos) for t in sentences[0].targets] == [(1, ["bank%1:17:01::"], "n")]
    assert stats == {"sentences": 1, "annotations": 1, "dropped_keys": 2, "dropped_tokens": 1}
    path.write_text("{not json\n")
    with pytest.raises(MaskedLMError, match="s.jsonl:1"):
        read_semcor(path, INVENTORY)


def test_train_from_semcor_writes_a_sense_folder_that_records_its_sources(model, tmp_path):
    recs = [{"tokens": "He sat on the bank of the river .".split(),
             "lemmas": [None, None, None, None, "bank", None, None, "river", None],
             "sense_keys": [None] * 4 + [["bank%1:17:01::"], None, None,
                                         ["river%1:17:00::", "river%9:99:99::"], None]},
            {"tokens": "The bank lent him zebras .".split(), "lemmas": [None, "bank"] + [None] * 4,
             "sense_keys": [None, ["bank%1:14:00::"]] + [None] * 4}]
    semcor = tmp_path / "semcor.jsonl"
    semcor.write_text("".join(json.dumps(r) + "\n" for r in recs))
    tagger = PosTagger.train([write_conllu(tmp_path / "toy.conllu", TREEBANK)])
    c, stats = train_from_semcor(model, semcor, INVENTORY, tmp_path / "senses", tagger=tagger,
                                 max_sentences=1)
    assert stats["dropped_keys"] == 1 and stats["read_seconds"] >= 0  # river%9:99:99:: unknown
    assert c.keys == ["bank%1:17:01::", "river%1:17:00::"]  # sentence 2 is past max_sentences
    want = train_centroids(model, read_semcor(semcor, INVENTORY)[0][:1])
    np.testing.assert_array_equal(c.vectors, want.vectors)
    back = SenseCentroids.load(tmp_path / "senses")
    assert back.info["semcor"] == str(semcor.resolve()) and back.info["dropped_keys"] == 1
    assert "wordnet" not in back.info and back.tagger is not None  # a DictInventory has no folder
    with pytest.raises(MaskedLMError, match="is the input"):  # refused before reading SemCor
        train_from_semcor(model, tmp_path / "nowhere.jsonl", INVENTORY, tmp_path)


@pytest.mark.slow
@pytest.mark.data
def test_wordnet_inventory():
    pytest.importorskip("nltk", reason="pip install 'maskedlm[wsd]'")
    from maskedlm.embeddings.wsd import WordNetInventory

    wn = WordNetInventory(DATA / "wordnet" / "dict")
    bank = wn.candidates("bank", "n")
    assert bank[0] == "bank%1:17:01::" and len(bank) == 10  # WordNet 3.0: 10 noun senses
    assert wn.candidates("Take place", "v") == ["take_place%2:30:00::"]
    assert wn.is_known("refer%2:32:01::") and not wn.is_known("refer%2:99:99::")
    assert wn.candidates("qwertyuiop", "n") == []
    assert ("bank", "n") in wn.analyses("banks") and ("sit", "v") in wn.analyses("sat")
    assert "sloping land" in wn.definition("bank%1:17:01::")
    assert "several%5:00:00:some:00" in wn.candidates("several", "a")  # satellites under 'a'
    with pytest.raises(MaskedLMError, match="not a WordNet"):
        WordNetInventory(DATA / "wordnet")


@pytest.mark.slow
@pytest.mark.data
def test_semcor_annotations_match_raganato():
    pytest.importorskip("nltk", reason="pip install 'maskedlm[wsd]'")
    from maskedlm.embeddings.wsd import WordNetInventory

    wn = WordNetInventory(DATA / "wordnet" / "dict")
    sentences, stats = read_semcor(DATA / "semcor" / "semcor3.0.jsonl.gz", wn)
    # Raganato et al. (2017): 37,176 sentences and 226,036 annotations after key filtering
    assert stats["sentences"] == len(sentences) == 37176
    assert stats["annotations"] == 226036


def test_sense_labels_are_a_name_and_a_short_gloss():
    from maskedlm.embeddings.wsd import DictInventory, sense_label, short_gloss

    gloss = "pass from physical life and lose all bodily attributes and functions"
    cut = short_gloss(gloss, 30)
    assert len(cut) <= 30 and cut.endswith("…") and gloss.startswith(cut[:-1])
    assert short_gloss("a short one", 30) == "a short one"
    inv = DictInventory({("die", "v"): ["die%2:39:00::"]}, {"die%2:39:00::": gloss})
    assert sense_label(inv, "die%2:39:00::", 30) == f"die%2:39:00::: {cut}"  # no synsets: the key
    assert sense_label(inv, "unknown%1:00:00::") == "unknown%1:00:00::"


@pytest.mark.slow
@pytest.mark.data
def test_cli_wsd_train_saves_the_tagger_and_predict_uses_it(tmp_path, capsys, recwarn):
    pytest.importorskip("nltk", reason="pip install 'maskedlm[wsd]'")
    from conftest import save_tiny_encoder

    from maskedlm.cli import main

    ckpt = save_tiny_encoder(tmp_path / "model", "he sat on the bank by the river they money".split())
    semcor = tmp_path / "semcor.jsonl"
    semcor.write_text(json.dumps({"tokens": "They bank the money".split(), "lemmas": [None, "bank", None, None],
                                  "sense_keys": [None, ["bank%2:40:00::"], None, None]}) + "\n")
    args = ["wsd", "train", str(ckpt), "--semcor", str(semcor), "--wordnet",
            str(DATA / "wordnet" / "dict"), "--out", str(tmp_path / "senses"), "--no-progress"]
    assert main(args + ["--pos-train", str(write_conllu(tmp_path / "toy.conllu", TREEBANK * 5))]) == 0
    assert (tmp_path / "senses" / "pos_tagger.json").is_file()
    capsys.readouterr()
    assert main(["wsd", "predict", str(tmp_path / "senses"), "He sat on the bank, by the river.",
                 "--json", "--no-progress"]) == 0
    out = {r["word"]: r for r in json.loads(capsys.readouterr().out)}
    assert out["bank"]["pos"] == "NOUN" and out["bank"]["sense_key"].startswith("bank%1:")
    assert out["river"]["pos"] == "NOUN" and not [w for w in recwarn if "pos_tagger" in str(w.message)]
    code = main(args + ["--pos-train", str(tmp_path / "semcor.jsonl")])
    assert code == 2 and "semcor.jsonl:1: 1 columns" in capsys.readouterr().err
