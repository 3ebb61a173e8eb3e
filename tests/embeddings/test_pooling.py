"""Contextual embeddings: layers, pooling, windows, batching, standardization, anisotropy."""

import numpy as np
import pytest
import torch

from maskedlm.api import MaskedLM
from maskedlm.data.corpus import sample_sentences
from maskedlm.data.tokenizer import train_tokenizer
from maskedlm.embeddings.pooling import (
    Layers,
    Standardizer,
    anisotropy,
    corpus_anisotropy,
    corpus_word_vectors,
    embed_subwords,
    embed_words,
    encode,
    fit_corpus_standardizer,
    fit_standardizer,
    sample_corpus_vectors,
    tokenize,
    windows,
)
from maskedlm.errors import MaskedLMError
from maskedlm.models.config import ModelConfig
from maskedlm.models.heads import BertForPreTraining

TEXT = [
    "The river bank was muddy after the rain .",
    "She deposited the money at the bank on Monday .",
    "Unbelievably , the fisherman sat on the bank all day .",
    "A bank is a financial institution that accepts deposits .",
    "They walked along the bank of the river and watched the boats .",
]


@pytest.fixture(scope="module")
def model() -> MaskedLM:
    torch.manual_seed(0)
    tok = train_tokenizer([TEXT] * 3, vocab_size=120, lowercase=True, show_progress=False)
    cfg = ModelConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=4,
                      num_attention_heads=4, intermediate_size=64, max_position_embeddings=48)
    return MaskedLM(BertForPreTraining(cfg), tok)


def manual_states(model: MaskedLM, ids: np.ndarray) -> list[torch.Tensor]:
    """Every hidden state of one [CLS] ids [SEP] pass, (T, H) each."""
    tok = model.tokenizer
    x = torch.tensor([[tok.cls_id, *ids.tolist(), tok.sep_id]])
    with torch.no_grad():
        return [h[0] for h in model.model.bert(x, output_hidden_states=True).hidden_states]


def test_layers_parse():
    assert Layers.parse("last", 6).indices == (6,)
    assert Layers.parse("last4-sum", 6) == Layers((3, 4, 5, 6), "sum", "last4-sum")
    assert Layers.parse("last4-mean", 4).indices == (1, 2, 3, 4)
    assert Layers.parse("0,-1", 6).indices == (0, 6)
    for bad in ("last4-sum", "7", "x", "-8", ""):
        with pytest.raises(MaskedLMError, match="--layers"):
            Layers.parse(bad, 2 if bad == "last4-sum" else 6)


def test_shapes_of_every_unit(model):
    pieces = tokenize(model.tokenizer, TEXT)
    words = embed_words(model, TEXT)
    assert [w.shape for w in words] == [(len(p.words), 32) for p in pieces]
    assert [len(p.words) for p in pieces] == [len(t.split()) for t in TEXT]
    assert encode(model, TEXT).shape == (5, 32)
    assert encode(model, TEXT, pool="cls").shape == (5, 32)
    assert [s.shape[0] for s in embed_subwords(model, TEXT)] == [len(p.ids) for p in pieces]
    unit = encode(model, TEXT, normalize=True)
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, rtol=1e-5)
    # the thin methods on the loaded model give the same arrays
    np.testing.assert_array_equal(model.encode(TEXT, normalize=True), unit)
    assert all(np.array_equal(a, b) for a, b in zip(model.embed_words(TEXT), words, strict=True))


def test_pretokenized_words_keep_their_rows(model):
    words = ["took place", "unbelievably", "", "."]
    p = tokenize(model.tokenizer, [words])[0]
    assert p.words == words and len(p.word_starts) == 4
    assert p.ids[p.word_starts[2]] == model.tokenizer.unk_id  # an empty word still gets a row
    assert embed_words(model, [words])[0].shape == (4, 32)
    empty = tokenize(model.tokenizer, [[], ""])
    assert [len(p.word_starts) for p in empty] == [0, 0]
    assert [v.shape for v in embed_words(model, [[], "", "bank"])] == [(0, 32), (0, 32), (1, 32)]


@pytest.mark.parametrize("layers", ["last", "last4-mean", "last4-sum", "0,2"])
def test_subword_mean_and_first_match_a_manual_pass(model, layers):
    text = TEXT[2]
    p = tokenize(model.tokenizer, [text])[0]
    assert len(p.ids) > len(p.words)  # some word is split, so pooling matters
    states = manual_states(model, p.ids)
    spec = Layers.parse(layers, 4)
    picked = torch.stack([states[i] for i in spec.indices])
    h = (picked.sum(0) if spec.reduce == "sum" else picked.mean(0)).numpy()[1:-1]
    bounds = list(p.word_starts) + [len(p.ids)]
    want_mean = np.stack([h[a:b].mean(0) for a, b in zip(bounds, bounds[1:], strict=False)])
    got = embed_words(model, [text], layers=layers)[0]
    np.testing.assert_allclose(got, want_mean, atol=1e-5)
    got_first = embed_words(model, [text], layers=layers, pool="first")[0]
    np.testing.assert_allclose(got_first, h[p.word_starts], atol=1e-5)


def test_batching_by_length_does_not_change_vectors(model):
    alone = [embed_subwords(model, [t])[0] for t in TEXT]
    together = embed_subwords(model, TEXT, batch_tokens=40)  # several padded batches
    for a, b in zip(alone, together, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_windows_cover_every_position_once():
    assert windows(5, 10, 5) == [(0, 0, 5)]
    for n, length, stride in [(10, 6, 3), (100, 16, 8), (47, 10, 1), (33, 8, 8)]:
        spans = windows(n, length, stride)
        kept = np.concatenate([np.arange(a, b) for _, a, b in spans])
        np.testing.assert_array_equal(kept, np.arange(n))
        for s, a, b in spans:
            assert s <= a < b <= s + length
        assert spans[-1][0] + length == n


def test_short_input_single_window_equals_single_pass(model):
    p = tokenize(model.tokenizer, [TEXT[4]])[0]
    h = manual_states(model, p.ids)[-1].numpy()
    for max_length in (None, len(p.ids) + 2):
        got = embed_subwords(model, [TEXT[4]], max_length=max_length)[0]
        np.testing.assert_allclose(got, h[1:-1], atol=1e-5)


def test_long_input_is_windowed_not_cut(model):
    long = " ".join(TEXT * 4)
    p = tokenize(model.tokenizer, [long])[0]
    assert len(p.ids) > 48  # beyond the model's positions
    got = embed_subwords(model, [long])[0]
    assert got.shape == (len(p.ids), 32) and np.isfinite(got).all()
    # the first window's kept sub-words come from a plain pass over that window
    (s, a, b), *_ = windows(len(p.ids), 46, 23)
    h = manual_states(model, p.ids[s:s + 46])[-1].numpy()[1:-1]
    np.testing.assert_allclose(got[a:b], h[a:b], atol=1e-5)
    assert len(embed_words(model, [long])[0]) == len(p.words)
    with pytest.raises(MaskedLMError, match="max_length"):
        embed_subwords(model, [long], max_length=100)


def test_standardizer_stats_and_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal([5.0, -3.0, 0.0], [2.0, 0.5, 1.0], size=(1000, 3))
    std = fit_standardizer([x[:300], x[300:]], info={"layers": "last"})
    np.testing.assert_allclose(std.mean, x.mean(0), rtol=1e-5)
    np.testing.assert_allclose(std.std, x.std(0), rtol=1e-5)
    z = std.apply(x)
    np.testing.assert_allclose(z.mean(0), 0.0, atol=1e-4)
    np.testing.assert_allclose(z.std(0), 1.0, atol=1e-4)
    back = Standardizer.load(std.save(tmp_path / "s.npz"), dim=3)
    np.testing.assert_array_equal(back.mean, std.mean)
    assert back.count == 1000 and back.info["layers"] == "last"
    with pytest.raises(MaskedLMError, match="s.npz: fitted on 3-dimensional"):
        Standardizer.load(tmp_path / "s.npz", dim=32)
    with pytest.raises(MaskedLMError, match="another model"):
        back.apply(np.zeros((2, 4)))
    with pytest.raises(MaskedLMError, match="empty corpus"):
        fit_standardizer([])


def test_anisotropy():
    assert anisotropy(np.tile([[0.3, -1.0, 2.0]], (50, 1)), pairs=100) == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    iso = rng.normal(size=(2000, 64))
    assert abs(anisotropy(iso, pairs=5000, rng=rng)) < 0.02
    assert anisotropy(iso + 10.0, pairs=5000, rng=rng) > 0.9  # a common direction
    with pytest.raises(MaskedLMError):
        anisotropy(np.ones((1, 3)))


def test_sample_sentences(tmp_path):
    (tmp_path / "c.txt").write_text("\n".join(TEXT) + "\n\nToo short.\n")
    got = sample_sentences([tmp_path], 3, np.random.default_rng(0))
    assert len(got) == 3 and set(got) <= set(TEXT)
    assert len(sample_sentences([tmp_path], 100, np.random.default_rng(0))) == 5
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "e.txt").write_text("\n")
    with pytest.raises(MaskedLMError, match="empty corpus"):
        sample_sentences([tmp_path / "empty"], 3, np.random.default_rng(0))


def test_corpus_statistics_sample_seeded_sentences(model, tmp_path):
    (tmp_path / "books.txt").write_text("\n\n".join(TEXT * 4) + "\n")
    corpus = [str(tmp_path / "books.txt")]
    vecs = sample_corpus_vectors(model, corpus, max_sentences=6, seed=3, layers="last4-mean")
    picked = sample_sentences(corpus, 6, np.random.default_rng(3))
    np.testing.assert_array_equal(vecs, corpus_word_vectors(model, picked, layers="last4-mean"))
    std = fit_corpus_standardizer(model, corpus, max_sentences=6, seed=3, layers="last4-mean")
    assert std.count == len(vecs) and std.info["corpus"] == corpus[0]
    assert std.info["layers"] == "last4-mean" and std.info["pool"] == "mean"
    np.testing.assert_allclose(std.mean, vecs.mean(0), atol=1e-5)
    raw = corpus_anisotropy(model, corpus, pairs=400, max_sentences=6, seed=3, layers="last4-mean")
    assert raw == anisotropy(vecs, 400, np.random.default_rng(4))  # the pairs: seed + 1
    z = corpus_anisotropy(model, corpus, pairs=400, max_sentences=6, seed=3, layers="last4-mean",
                          standardize=std)
    assert abs(z) < abs(raw)  # fitted on the very same vectors: their mean is 0
