"""Training sequences: BERT sentence pairs, RoBERTa full sentences, SpanBERT blocks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from maskedlm.data.corpus import iter_documents
from maskedlm.data.instances import MIN_BLOCK_TOKENS, InstanceSet, build_instances
from maskedlm.data.shards import ShardSet, prepare_shards
from maskedlm.data.tokenizer import train_tokenizer
from maskedlm.errors import MaskedLMError

WORDS = "the cat dog sat on mat and ran far away from home with a red ball in garden".split()
CLS, SEP, PAD = 2, 3, 0


def write_corpus(path: Path, n_docs: int, seed: int = 0) -> Path:
    """Documents of 1-12 sentences of 2-14 words; every 25th document holds a 90-word
    sentence (longer than the sequences built here)."""
    rng = np.random.default_rng(seed)
    docs = []
    for d in range(n_docs):
        sents = []
        for _ in range(rng.integers(1, 13)):
            n = 90 if d % 25 == 0 and not sents else rng.integers(2, 15)
            sents.append(
                " ".join(WORDS[i] for i in rng.integers(0, len(WORDS), n)).capitalize() + "."
            )
        docs.append("\n".join(sents))
    path.write_text("\n\n".join(docs) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> ShardSet:
    root = tmp_path_factory.mktemp("instances")
    corpus = write_corpus(root / "corpus.txt", n_docs=200)
    tok = train_tokenizer(iter_documents([corpus]), vocab_size=200, show_progress=False)
    tok.save(root / "tok")
    return ShardSet.load(
        prepare_shards(
            [str(corpus)], root / "tok", root / "out", valid_fraction=0.05, show_progress=False
        )
    )


def _doc_of(shards: ShardSet, token_positions: np.ndarray) -> np.ndarray:
    """Document index of each token position of the train split."""
    doc_tok = shards.sentence_offsets("train")[shards.document_offsets("train")]
    return np.searchsorted(doc_tok, token_positions, side="right") - 1


def _assert_rows_come_from_the_shards(inst: InstanceSet, shards: ShardSet) -> None:
    """Every row's tokens and word starts are those of its ranges in the shards (a word
    start is forced only on the first token after a special one)."""
    tokens, ws = shards.tokens("train"), shards.word_starts("train")
    batch = inst.get(np.arange(len(inst)))
    keep = batch["attention_mask"] & ~batch["special"]
    for r in range(len(inst)):
        ranges = [(inst.start[r], inst.end[r])]
        if inst.b_start is not None and inst.b_end is not None:
            ranges.append((inst.b_start[r], inst.b_end[r]))
        want_ids = np.concatenate([tokens[s:e] for s, e in ranges])
        want_ws = np.concatenate([np.r_[True, ws[s + 1:e]] for s, e in ranges])
        assert np.array_equal(batch["input_ids"][r][keep[r]], want_ids)
        assert np.array_equal(batch["word_starts"][r][keep[r]], want_ws)


# ----------------------------------------------------------------------------- bert


@pytest.fixture(scope="module")
def bert(shards: ShardSet) -> InstanceSet:
    return build_instances(shards, "train", "bert", 32, np.random.default_rng(0))


def test_bert_format(bert: InstanceSet, shards: ShardSet) -> None:
    batch = bert.get(np.arange(len(bert)))
    ids, types, att = batch["input_ids"], batch["token_type_ids"], batch["attention_mask"]
    assert ids.shape[1] <= 32 and (bert.lengths <= 32).all()
    assert (ids[:, 0] == CLS).all()
    for r in range(len(ids)):
        row = ids[r][att[r]]
        seps = np.flatnonzero(row == SEP)
        assert len(seps) == 2 and seps[1] == len(row) - 1 and seps[0] >= 2  # A non-empty
        assert seps[1] - seps[0] >= 2  # B non-empty
        t = types[r][att[r]]
        assert (t[: seps[0] + 1] == 0).all() and (t[seps[0] + 1 :] == 1).all()
    assert (types[~att] == 0).all() and (ids[~att] == PAD).all()
    assert batch["next_sentence_label"].shape == (len(bert),)
    _assert_rows_come_from_the_shards(bert, shards)


def test_bert_pairs_follow_documents(bert: InstanceSet, shards: ShardSet) -> None:
    label = bert.next_sentence_label
    assert label is not None and bert.b_start is not None and bert.b_end is not None
    doc_a = _doc_of(shards, bert.start)
    assert (doc_a == _doc_of(shards, bert.end - 1)).all()
    doc_b = _doc_of(shards, bert.b_start)
    assert (doc_b == _doc_of(shards, bert.b_end - 1)).all()
    is_next = label == 0
    assert (doc_a[is_next] == doc_b[is_next]).all()
    assert (bert.b_start[is_next] >= bert.end[is_next]).all()  # B follows A ...
    assert (
        bert.b_start[is_next] - bert.end[is_next] < 32
    ).all()  # ... after a truncated gap at most
    # untruncated IsNext pairs meet exactly at a sentence boundary
    sentences = set(shards.sentence_offsets("train").tolist())
    whole = is_next & (bert.lengths < 32)
    assert whole.sum() > 10 and all(int(b) in sentences for b in bert.b_start[whole])
    assert (bert.b_start[whole] == bert.end[whole]).all()
    assert (doc_a[~is_next] != doc_b[~is_next]).all()


def test_bert_is_next_about_half(shards: ShardSet, tmp_path: Path) -> None:
    # long documents: almost every chunk has >= 2 sentences (a 1-sentence chunk is NotNext)
    rng = np.random.default_rng(0)
    docs = [
        "\n".join(
            " ".join(WORDS[i] for i in rng.integers(0, len(WORDS), 6)).capitalize() + "."
            for _ in range(60)
        )
        for _ in range(80)
    ]
    (tmp_path / "long.txt").write_text("\n\n".join(docs) + "\n", encoding="utf-8")
    long = ShardSet.load(
        prepare_shards(
            [str(tmp_path / "long.txt")],
            shards.path / "tokenizer",
            tmp_path / "out",
            show_progress=False,
        )
    )
    inst = build_instances(long, "train", "bert", 64, np.random.default_rng(0))
    assert inst.next_sentence_label is not None and len(inst) > 600
    assert (inst.next_sentence_label == 0).mean() == pytest.approx(0.5, abs=0.07)


def test_bert_short_sequences(shards: ShardSet) -> None:
    inst = build_instances(shards, "train", "bert", 64, np.random.default_rng(1))
    assert inst.target_length is not None
    short = (inst.target_length < 61).mean()
    assert 0.05 < short < 0.2  # short_seq_prob = 0.1
    none = build_instances(
        shards, "train", "bert", 64, np.random.default_rng(1), short_seq_prob=0.0
    )
    assert none.target_length is not None and (none.target_length == 61).all()


def test_bert_is_deterministic(shards: ShardSet, bert: InstanceSet) -> None:
    again = build_instances(shards, "train", "bert", 32, np.random.default_rng(0))
    assert np.array_equal(again.start, bert.start) and np.array_equal(again.b_end, bert.b_end)
    other = build_instances(shards, "train", "bert", 32, np.random.default_rng(1))
    assert len(other.start) != len(bert.start) or not np.array_equal(other.start, bert.start)


def test_bert_on_a_single_document_split(shards: ShardSet) -> None:
    # the valid split may hold one document: NotNext then falls back to it, as Google's code
    inst = build_instances(shards, "valid", "bert", 32, np.random.default_rng(0))
    assert len(inst) > 0 and set(np.unique(inst.next_sentence_label)) <= {0, 1}


# -------------------------------------------------------------------------- roberta


def test_roberta_packs_full_sentences_across_documents(shards: ShardSet) -> None:
    inst = build_instances(shards, "train", "roberta", 48, np.random.default_rng(0))
    assert (inst.lengths <= 48).all()
    assert inst.seps is not None
    tokens = shards.tokens("train")
    n_docs = len(shards.document_offsets("train")) - 1
    assert len(inst.seps) == n_docs - 1
    # the sequences tile the virtual stream; one may skip the [SEP] that ends a document
    gaps = inst.start[1:] - inst.end[:-1]
    assert set(np.unique(gaps)) <= {0, 1}
    assert np.isin(inst.end[:-1][gaps == 1], inst.seps).all()
    # sequences start and end at sentence boundaries, except cuts of over-long sentences
    vstart, vend = _virtual_sentences(shards, inst)
    sentence_of = {int(v): i for i, v in enumerate(vstart)}
    starts_ok = np.array([int(s) in sentence_of for s in inst.start])
    assert starts_ok.mean() > 0.95
    ends_ok = np.isin(inst.end, vend)
    assert ends_ok.mean() > 0.95
    whole = starts_ok & ends_ok  # the rest are pieces of sentences longer than a sequence
    for i in np.flatnonzero(whole[:-1] & starts_ok[1:]):  # greedy: the next sentence did not fit
        assert vend[sentence_of[int(inst.start[i + 1])]] - inst.start[i] > 46
    batch = inst.get(np.arange(len(inst)))
    ids, att, special = batch["input_ids"], batch["attention_mask"], batch["special"]
    assert (batch["token_type_ids"] == 0).all() and (ids[:, 0] == CLS).all()
    inner_seps = ((ids == SEP) & att).sum() - len(inst)
    assert inner_seps == n_docs - 1 - (gaps == 1).sum()  # one per boundary inside a sequence
    assert 0 < inner_seps
    assert sorted(ids[att & ~special].tolist()) == sorted(tokens.tolist())  # every token once
    # in order, with their word starts (one is forced after each [CLS] and inner [SEP])
    real = att & ~special
    assert ids[real].tolist() == tokens.tolist()
    prev_special = np.ones_like(special)
    prev_special[:, 1:] = special[:, :-1]
    forced = (prev_special & real)[real]
    ws = shards.word_starts("train")
    assert np.array_equal(batch["word_starts"][real] & ~forced, ws & ~forced)
    assert batch["word_starts"][real][forced].all()


def _virtual_sentences(shards: ShardSet, inst: InstanceSet) -> tuple[np.ndarray, np.ndarray]:
    """Start and end of every sentence in the stream with a [SEP] before each document."""
    sent = shards.sentence_offsets("train")
    assert inst.seps is not None
    real_doc_starts = inst.seps - np.arange(len(inst.seps))
    seps_before = np.searchsorted(real_doc_starts, sent[:-1], side="right")
    return sent[:-1] + seps_before, sent[1:] + seps_before


def test_roberta_token_packing_fills_every_sequence(shards: ShardSet) -> None:
    inst = build_instances(shards, "train", "roberta", 48, np.random.default_rng(0), pack="tokens")
    assert (inst.lengths[:-1] == 48).all() and inst.lengths[-1] <= 48
    batch = inst.get(range(len(inst)))
    real = batch["attention_mask"] & ~batch["special"]
    assert real.sum() == len(shards.tokens("train"))


# ------------------------------------------------------------------------- spanbert


def test_spanbert_blocks_stay_inside_documents(shards: ShardSet) -> None:
    inst = build_instances(shards, "train", "spanbert", 40, np.random.default_rng(0))
    assert (inst.lengths <= 40).all() and (inst.lengths >= MIN_BLOCK_TOKENS + 2).all()
    assert (_doc_of(shards, inst.start) == _doc_of(shards, inst.end - 1)).all()
    # every token is covered except document tails shorter than MIN_BLOCK_TOKENS
    covered = (inst.end - inst.start).sum()
    doc_tok = shards.sentence_offsets("train")[shards.document_offsets("train")]
    dropped = np.diff(doc_tok) % 38
    expected = len(shards.tokens("train")) - dropped[dropped < MIN_BLOCK_TOKENS].sum()
    assert covered == expected
    batch = inst.get([0, 1, 2])
    assert (batch["token_type_ids"] == 0).all()
    assert "next_sentence_label" not in batch
    _assert_rows_come_from_the_shards(inst, shards)


# ---------------------------------------------------------------------------- batches


def test_get_pads_to_the_longest_in_batch(shards: ShardSet) -> None:
    inst = build_instances(shards, "train", "spanbert", 64, np.random.default_rng(0))
    order = np.argsort(inst.lengths)
    idx = [int(order[0]), int(order[len(order) // 2])]
    batch = inst.get(idx)
    T = int(inst.lengths[idx].max())
    for key in ("input_ids", "token_type_ids", "attention_mask", "word_starts", "special"):
        assert batch[key].shape == (2, T)
    assert batch["input_ids"].dtype == np.int64 and batch["attention_mask"].dtype == bool
    att, special, ids = batch["attention_mask"], batch["special"], batch["input_ids"]
    assert (att.sum(axis=1) == inst.lengths[idx]).all()
    assert (special == np.isin(ids, [CLS, SEP, PAD])).all()
    assert not (batch["word_starts"] & special).any()
    assert batch["word_starts"][:, 1].all()  # the first token after [CLS] starts a word
    row = ids[0][att[0]]
    s, e = int(inst.start[idx[0]]), int(inst.end[idx[0]])
    assert row[1:-1].tolist() == shards.tokens("train")[s:e].tolist()


def test_errors_and_empty_split(shards: ShardSet, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(MaskedLMError, match="max_seq_len"):
        build_instances(shards, "train", "bert", 7, rng)
    with pytest.raises(MaskedLMError, match="recipe"):
        build_instances(shards, "train", "gpt", 128, rng)
    with pytest.raises(MaskedLMError, match="split"):
        build_instances(shards, "test", "bert", 128, rng)
    (tmp_path / "one.txt").write_text("The cat sat.\n", encoding="utf-8")
    one = ShardSet.load(
        prepare_shards(
            [str(tmp_path / "one.txt")],
            shards.path / "tokenizer",
            tmp_path / "out",
            show_progress=False,
        )
    )
    for recipe in ("bert", "roberta", "spanbert"):
        empty = build_instances(one, "valid", recipe, 16, rng)
        assert len(empty) == 0 and empty.get([])["input_ids"].shape[0] == 0
