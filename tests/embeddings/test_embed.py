"""The library behind `maskedlm embed`: reading sentences, vectors + row records, the files."""

import json

import numpy as np
import pytest
import torch

from maskedlm.api import MaskedLM
from maskedlm.data.tokenizer import train_tokenizer
from maskedlm.embeddings.embed import (
    check_unit_pool,
    embed_lines,
    embed_to_file,
    read_sentences,
    rows_path,
)
from maskedlm.embeddings.pooling import Standardizer, embed_subwords, embed_words, encode
from maskedlm.errors import MaskedLMError
from maskedlm.models.config import ModelConfig
from maskedlm.models.heads import BertForPreTraining

TEXT = ["The river bank was muddy after the rain .", "She deposited the money at the bank ."]


@pytest.fixture(scope="module")
def model() -> MaskedLM:
    torch.manual_seed(0)
    tok = train_tokenizer([TEXT] * 3, vocab_size=100, lowercase=True, show_progress=False)
    cfg = ModelConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2,
                      num_attention_heads=4, intermediate_size=64, max_position_embeddings=48)
    return MaskedLM(BertForPreTraining(cfg), tok)


def test_read_sentences_numbers_lines_and_skips_blanks(tmp_path):
    (tmp_path / "in.txt").write_text(f"  {TEXT[0]}\n\n \n{TEXT[1]}  \n")
    assert read_sentences(tmp_path / "in.txt") == [(1, TEXT[0]), (4, TEXT[1])]
    (tmp_path / "blank.txt").write_text("\n  \n")
    with pytest.raises(MaskedLMError, match=r"blank.txt: no sentences \(one per line\)"):
        read_sentences(tmp_path / "blank.txt")
    with pytest.raises(MaskedLMError, match="no such input file"):
        read_sentences(tmp_path / "absent.txt")


@pytest.mark.parametrize("unit,pool", [("word", "cls"), ("sentence", "first"), ("token", "mean")])
def test_pooling_without_meaning_for_the_unit_is_refused(unit, pool):
    with pytest.raises(MaskedLMError, match=unit):
        check_unit_pool(unit, pool)


def test_rows_say_what_each_vector_is(model):
    lines = [(2, TEXT[0]), (5, TEXT[1])]
    words, rows = embed_lines(model, lines, unit="word", pool="first", layers="0,2")
    want = embed_words(model, TEXT, pool="first", layers="0,2")
    np.testing.assert_allclose(words, np.concatenate(want), atol=1e-6)
    assert len(rows) == len(words) == 9 + 8
    assert rows[9] == {"line": 5, "word_index": 0, "word": "She"}  # as written
    subs, rows = embed_lines(model, lines, unit="subword")
    np.testing.assert_allclose(subs, np.concatenate(embed_subwords(model, TEXT)), atol=1e-6)
    want = model.tokenizer.hf.encode(TEXT[1], add_special_tokens=False).tokens
    assert [r["token"] for r in rows if r["line"] == 5] == want and len(subs) == len(rows)
    sents, rows = embed_lines(model, [(1, "bank river . money")], unit="sentence",
                              pretokenized=True, pool="cls")
    np.testing.assert_allclose(sents, encode(model, [["bank", "river", ".", "money"]], pool="cls"),
                               atol=1e-6)
    assert rows == [{"line": 1, "text": "bank river . money"}]


def test_embed_to_file_writes_npy_and_sidecar_and_standardizes(model, tmp_path):
    raw, _ = embed_lines(model, [(1, TEXT[0])])
    std = Standardizer(raw.mean(0), raw.std(0) + 1.0, len(raw), {})
    out = tmp_path / "v.npy"
    done = embed_to_file(model, [(1, TEXT[0])], out, standardize=std)
    assert done == {"out": str(out), "rows": str(tmp_path / "v.rows.jsonl"), "count": 9,
                    "dims": 32, "unit": "word"}
    got = np.load(out)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, (raw - std.mean) / std.std, atol=1e-5)
    side = [json.loads(ln) for ln in rows_path(out).read_text().splitlines()]
    assert [r["row"] for r in side] == list(range(9)) and side[4]["word"] == "muddy"
