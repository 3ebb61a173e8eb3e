"""Shards: layout, totals, caching, splits, unigram counts, atomic writes."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import numpy as np
import pytest

from maskedlm.data.corpus import iter_documents
from maskedlm.data.shards import SPLITS, ShardSet, prepare_shards
from maskedlm.data.tokenizer import Tokenizer, train_tokenizer
from maskedlm.errors import MaskedLMError

WORDS = "the cat dog sat on mat and ran far away from home with a red ball in garden".split()


def write_corpus(path: Path, n_docs: int = 50, seed: int = 0, prefix: str = "") -> Path:
    """Documents (blank-line separated) of 2-6 sentences; each starts with its number,
    so every document is unique."""
    rng = np.random.default_rng(seed)
    docs = []
    for d in range(n_docs):
        sents = [
            " ".join(
                [
                    f"{prefix}doc{d}",
                    *(WORDS[i] for i in rng.integers(0, len(WORDS), rng.integers(3, 10))),
                ]
            ).capitalize()
            + "."
            for _ in range(rng.integers(2, 7))
        ]
        docs.append("\n".join(sents))
    path.write_text("\n\n".join(docs) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("shards")
    corpus = write_corpus(root / "corpus.txt")
    tok = train_tokenizer(iter_documents([corpus]), vocab_size=200, show_progress=False)
    tok.save(root / "tok")
    shards = prepare_shards(
        [str(corpus)], root / "tok", root / "out", valid_fraction=0.1, show_progress=False
    )
    return {"root": root, "corpus": corpus, "tok": root / "tok", "shards": shards}


def _documents(shards: ShardSet, split: str) -> list[tuple[int, ...]]:
    tokens, sent, docs = (
        shards.tokens(split),
        shards.sentence_offsets(split),
        shards.document_offsets(split),
    )
    return [
        tuple(tokens[sent[a] : sent[b]].tolist()) for a, b in zip(docs[:-1], docs[1:], strict=True)
    ]


def test_layout_and_dtype(setup: dict[str, Path]) -> None:
    path = setup["shards"]
    names = {p.name for p in path.iterdir()}
    for split in SPLITS:
        assert {
            f"{split}_tokens.bin",
            f"{split}_word_starts.bin",
            f"{split}_sentences.npy",
            f"{split}_documents.npy",
        } <= names
    assert {"meta.json", "unigram.npy", "tokenizer"} <= names
    shards = ShardSet.load(path)
    assert shards.dtype == np.uint16 and shards.tokens("train").dtype == np.uint16
    assert shards.word_starts("train").dtype == bool
    assert len(shards.word_starts("train")) == len(shards.tokens("train"))
    assert shards.tokenizer().fingerprint() == Tokenizer.load(setup["tok"]).fingerprint()
    assert shards.vocab_size == shards.tokenizer().vocab_size
    assert shards.special_ids == {"pad": 0, "unk": 1, "cls": 2, "sep": 3, "mask": 4}


def test_totals_match_tokenizing_the_corpus(setup: dict[str, Path]) -> None:
    shards = ShardSet.load(setup["shards"])
    tok = Tokenizer.load(setup["tok"])
    docs = list(iter_documents([setup["corpus"]]))
    encoded = [
        tuple(np.concatenate([ids for ids, _ in tok.encode_words(doc)]).tolist()) for doc in docs
    ]
    meta = shards.meta["splits"]
    assert meta["train"]["documents"] + meta["valid"]["documents"] == len(docs) == 50
    assert meta["train"]["sentences"] + meta["valid"]["sentences"] == sum(map(len, docs))
    assert meta["train"]["tokens"] + meta["valid"]["tokens"] == sum(map(len, encoded))
    assert sorted(_documents(shards, "train") + _documents(shards, "valid")) == sorted(encoded)
    train = _documents(shards, "train")
    assert train == [e for e in encoded if e in set(train)]  # train keeps corpus order


def test_word_starts_and_offsets(setup: dict[str, Path]) -> None:
    shards = ShardSet.load(setup["shards"])
    tok = shards.tokenizer()
    sent = shards.sentence_offsets("train")
    assert sent[0] == 0 and sent[-1] == len(shards.tokens("train")) and (np.diff(sent) > 0).all()
    docs = shards.document_offsets("train")
    assert docs[0] == 0 and docs[-1] == len(sent) - 1
    starts = shards.word_starts("train")
    assert starts[sent[:-1]].all()  # every sentence starts a word
    pieces = tok.convert_ids_to_tokens(shards.tokens("train")[:200])
    assert all(s == (not p.startswith("##")) for p, s in zip(pieces, starts[:200], strict=True))


def test_valid_split_holds_whole_other_documents(setup: dict[str, Path]) -> None:
    shards = ShardSet.load(setup["shards"])
    valid, train = _documents(shards, "valid"), _documents(shards, "train")
    assert len(valid) == 5  # 10% of 50
    assert not set(valid) & set(train)
    assert shards.splits == ("train", "valid")


def test_unigram_counts_sum_to_train_tokens(setup: dict[str, Path]) -> None:
    shards = ShardSet.load(setup["shards"])
    counts = shards.unigram_counts()
    assert counts.shape == (shards.vocab_size,) and counts.dtype == np.int64
    assert counts.sum() == len(shards.tokens("train"))
    assert (counts == np.bincount(shards.tokens("train"), minlength=shards.vocab_size)).all()
    assert shards.unigram_probs().sum() == pytest.approx(1.0)


def test_second_prepare_is_cached(setup: dict[str, Path]) -> None:
    path = setup["shards"]
    before = {p.name: p.stat().st_mtime_ns for p in path.iterdir()}
    t0 = time.perf_counter()
    again = prepare_shards(
        [str(setup["corpus"])],
        setup["tok"],
        setup["root"] / "out",
        valid_fraction=0.1,
        show_progress=False,
    )
    assert time.perf_counter() - t0 < 1.0
    assert again == path
    assert {p.name: p.stat().st_mtime_ns for p in path.iterdir()} == before
    assert [p.name for p in (setup["root"] / "out").iterdir()] == [path.name]  # no temp dirs


def test_cache_key_follows_inputs(setup: dict[str, Path], tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "c.txt", n_docs=10)
    out = tmp_path / "out"
    a = prepare_shards([str(corpus)], setup["tok"], out, show_progress=False)
    b = prepare_shards([str(corpus)], setup["tok"], out, seed=1, show_progress=False)
    with open(corpus, "a", encoding="utf-8") as f:
        f.write("\nOne more doc.\n")
    c = prepare_shards([str(corpus)], setup["tok"], out, show_progress=False)
    assert len({a, b, c}) == 3
    os.utime(c / "meta.json", ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))
    assert ShardSet.load(out).path == c  # the parent folder: the most recent set


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(MaskedLMError, match="no such shard folder"):
        ShardSet.load(tmp_path / "nope")
    with pytest.raises(MaskedLMError, match="no prepared shards"):
        ShardSet.load(tmp_path)


def _damage_truncate(d: Path) -> str:
    f = d / "train_tokens.bin"
    f.write_bytes(f.read_bytes()[:-2])
    return "train_tokens.bin: missing or truncated"


def _damage_flip_a_byte(d: Path) -> str:
    f = d / "train_tokens.bin"
    b = bytearray(f.read_bytes())
    b[len(b) // 2] ^= 0xFF
    f.write_bytes(bytes(b))
    return "train_tokens.bin: checksum differs from meta.json"


def _damage_truncate_npy(d: Path) -> str:
    f = d / "valid_sentences.npy"
    f.write_bytes(f.read_bytes()[:-8])
    return r"valid_sentences.npy: \d+ bytes, meta.json says \d+ \(truncated\?\)"


def _damage_unigram(d: Path) -> str:
    np.save(d / "unigram.npy", np.zeros(3, dtype=np.int64))
    return "unigram.npy: .* bytes, meta.json says"


def _damage_meta_counts(d: Path) -> str:
    meta = json.loads((d / "meta.json").read_text())
    meta["splits"]["train"]["tokens"] -= 1
    (d / "meta.json").write_text(json.dumps(meta))
    return "train_tokens.bin: missing or truncated"


def _damage_meta_sentences(d: Path) -> str:
    meta = json.loads((d / "meta.json").read_text())
    meta["splits"]["valid"]["sentences"] += 1
    (d / "meta.json").write_text(json.dumps(meta))
    return "meta.json: does not match valid_sentences.npy"


def _damage_meta_of_another_set(d: Path) -> str:
    meta = json.loads((d / "meta.json").read_text())
    del meta["splits"]
    (d / "meta.json").write_text(json.dumps(meta))
    return r"meta.json: malformed \(KeyError"


def _damage_meta_not_an_object(d: Path) -> str:
    (d / "meta.json").write_text("[1, 2]")
    return "meta.json: not a shard description"


@pytest.mark.parametrize("damage", [_damage_truncate, _damage_flip_a_byte, _damage_truncate_npy,
                                    _damage_unigram, _damage_meta_counts, _damage_meta_sentences,
                                    _damage_meta_of_another_set, _damage_meta_not_an_object])
def test_damaged_shards_are_one_line_errors_naming_the_file(
    setup: dict[str, Path], tmp_path: Path, damage
) -> None:
    import shutil

    d = tmp_path / "copy"
    shutil.copytree(setup["shards"], d)
    ShardSet.load(d)  # whole
    expected = damage(d)
    with pytest.raises(MaskedLMError) as info:
        ShardSet.load(d)
    msg = str(info.value)
    assert str(d) in msg and re.search(expected, msg) and "\n" not in msg, msg


def test_meta_records_sizes_and_checksums(setup: dict[str, Path]) -> None:
    import hashlib

    meta = ShardSet.load(setup["shards"]).meta
    f = setup["shards"] / "train_tokens.bin"
    assert meta["files"]["train_tokens.bin"] == {
        "bytes": f.stat().st_size, "sha256": hashlib.sha256(f.read_bytes()).hexdigest()}
    assert len(meta["files"]) == 9


def test_disk_full_while_preparing_is_one_line_and_leaves_nothing(
    setup: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    def full(*a, **kw) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "save", full)
    with pytest.raises(MaskedLMError, match="no space left to write the shards"):
        prepare_shards([str(setup["corpus"])], setup["tok"], tmp_path / "out", show_progress=False)
    assert not (tmp_path / "out").exists()  # not even an empty folder


def test_failed_prepare_leaves_nothing(
    setup: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(self: Tokenizer, texts: list[str]) -> None:
        raise RuntimeError("interrupted")

    monkeypatch.setattr(Tokenizer, "encode_flat", boom)
    with pytest.raises(RuntimeError):
        prepare_shards([str(setup["corpus"])], setup["tok"], tmp_path / "out", show_progress=False)
    assert not (tmp_path / "out").exists()  # not even an empty folder


def test_empty_corpus_and_single_document(setup: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "empty.txt").write_text("\n\n", encoding="utf-8")
    with pytest.raises(MaskedLMError, match="empty corpus"):
        prepare_shards(
            [str(tmp_path / "empty.txt")], setup["tok"], tmp_path / "out", show_progress=False
        )
    (tmp_path / "one.txt").write_text("The cat sat. The dog ran.\n", encoding="utf-8")
    one = ShardSet.load(
        prepare_shards(
            [str(tmp_path / "one.txt")], setup["tok"], tmp_path / "out", show_progress=False
        )
    )
    assert one.meta["splits"]["valid"]["documents"] == 0 and one.splits == ("train",)
    assert len(one.tokens("valid")) == 0 and one.document_offsets("valid").tolist() == [0]


def test_literal_special_tokens_in_text_become_unk(setup: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "c.txt").write_text("the [CLS] cat [MASK] sat [UNK].\n", encoding="utf-8")
    shards = ShardSet.load(
        prepare_shards(
            [str(tmp_path / "c.txt")], setup["tok"], tmp_path / "out", show_progress=False
        )
    )
    ids = shards.tokens("train").tolist()
    assert ids.count(1) == 3 and not {0, 2, 3, 4} & set(ids)


def test_uint32_for_large_vocabularies(tmp_path: Path) -> None:
    words = [f"w{i}" for i in range(70_000)]
    (tmp_path / "tok").mkdir()
    (tmp_path / "tok" / "vocab.txt").write_text(
        "\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n"
    )
    (tmp_path / "c.txt").write_text("w1 w69999 w5\nw3\n\nw42\n", encoding="utf-8")
    shards = ShardSet.load(
        prepare_shards(
            [str(tmp_path / "c.txt")], tmp_path / "tok", tmp_path / "out", show_progress=False
        )
    )
    assert shards.dtype == np.uint32
    tokens = np.concatenate([shards.tokens("train"), shards.tokens("valid")]).tolist()
    assert sorted(tokens) == sorted([6, 70_004, 10, 8, 47])


def test_multilingual_shards_record_the_plan(setup: dict[str, Path], tmp_path: Path) -> None:
    en = write_corpus(tmp_path / "en.txt", n_docs=90, seed=1)
    wo = write_corpus(tmp_path / "wo.txt", n_docs=10, seed=2, prefix="wo")
    path = prepare_shards(
        {"en": [str(en)], "wo": [str(wo)]},
        setup["tok"],
        tmp_path / "out",
        alpha=0.3,
        valid_fraction=0.1,
        show_progress=False,
    )
    meta = json.loads((path / "meta.json").read_text())
    langs = meta["languages"]["languages"]
    assert set(langs) == {"en", "wo"} and meta["languages"]["alpha"] == 0.3
    assert langs["wo"]["q"] > langs["wo"]["p"] and langs["en"]["q"] < langs["en"]["p"]
    written = {g: langs[g]["written"]["train"]["sentences"] for g in langs}
    share = written["wo"] / sum(written.values())
    assert share == pytest.approx(langs["wo"]["q"], abs=0.1)
    assert {g: langs[g]["written"]["valid"]["sentences"] > 0 for g in langs} == {
        "en": True,
        "wo": True,
    }


def test_leftovers_of_a_killed_run_are_replaced(setup: dict[str, Path], tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "c.txt", n_docs=10)
    path = prepare_shards([str(corpus)], setup["tok"], tmp_path / "out", show_progress=False)
    (path / "meta.json").unlink()  # a set without meta.json is incomplete
    (tmp_path / "out" / f".tmp-{path.name}-99999999").mkdir()  # a dead process's temp folder
    again = prepare_shards([str(corpus)], setup["tok"], tmp_path / "out", show_progress=False)
    assert again == path and ShardSet.load(again).meta["splits"]["train"]["documents"] == 9
    assert [p.name for p in (tmp_path / "out").iterdir()] == [path.name]


# ------------------------------------------------------------- parallel, resumable prepare


def _mixed_corpus(folder: Path, n_files: int = 5, n_docs: int = 40) -> Path:
    """Files of every format with documents of different sizes."""
    import gzip

    import pyarrow as pa
    import pyarrow.parquet as pq
    import zstandard

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n_files):
        text = write_corpus(folder / f"tmp{i}.txt", n_docs=n_docs * (1 + i % 3), seed=i,
                            prefix=f"f{i}").read_text(encoding="utf-8")
        (folder / f"tmp{i}.txt").unlink()
        docs = [d for d in text.split("\n\n") if d.strip()]
        kind = i % 4
        if kind == 0:
            (folder / f"{i:02d}.txt").write_text(text, encoding="utf-8")
        elif kind == 1:
            lines = "".join(json.dumps({"text": d}) + "\n" for d in docs)
            (folder / f"{i:02d}.jsonl.zst").write_bytes(
                zstandard.ZstdCompressor().compress(lines.encode()))
        elif kind == 2:
            pq.write_table(pa.table({"text": docs}), folder / f"{i:02d}.parquet",
                           row_group_size=7)
        else:
            with gzip.open(folder / f"{i:02d}.txt.gz", "wt", encoding="utf-8") as f:
                f.write(text)
    return folder


def _data_bytes(path: Path) -> dict[str, bytes]:
    from maskedlm.data.shards import DATA_FILES

    return {name: (path / name).read_bytes() for name in DATA_FILES}


def test_shards_are_the_same_bytes_for_any_worker_count(
    setup: dict[str, Path], tmp_path: Path
) -> None:
    """One process or three: the same shards, byte for byte (files finish out of order)."""
    corpus = _mixed_corpus(tmp_path / "corpus", n_files=6)
    one = prepare_shards([str(corpus)], setup["tok"], tmp_path / "one", workers=1,
                         valid_fraction=0.05, show_progress=False)
    three = prepare_shards([str(corpus)], setup["tok"], tmp_path / "three", workers=3,
                           valid_fraction=0.05, show_progress=False)
    assert one.name == three.name  # the worker count is not part of the cache key
    assert _data_bytes(one) == _data_bytes(three)
    shards = ShardSet.load(three)
    n_docs = sum(shards.meta["splits"][s]["documents"] for s in SPLITS)
    assert n_docs == len(list(iter_documents([corpus])))
    assert [p.name for p in (tmp_path / "three").iterdir()] == [three.name]  # no work left


def test_killed_prepare_resumes_from_finished_files(
    setup: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """kill -9 midway, run again: the finished files are not tokenized again and the shards
    are the bytes of an uninterrupted run."""
    import signal
    import subprocess
    import sys

    import maskedlm.data.shards as shards_module

    corpus = _mixed_corpus(tmp_path / "corpus", n_files=24, n_docs=150)
    out = tmp_path / "out"
    code = ("import sys\nfrom maskedlm.data.shards import prepare_shards\n"
            "if __name__ == '__main__':\n"
            f"    prepare_shards([{str(corpus)!r}], {str(setup['tok'])!r}, {str(out)!r}, "
            "workers=1, valid_fraction=0.05, show_progress=False)\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.Popen([sys.executable, "-c", code], env=env)
    pieces: list[Path] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        pieces = [p for p in out.glob(".work-*/[0-9]*") if p.is_dir()]
        if len(pieces) >= 2:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = len([p for p in out.glob(".work-*/[0-9]*") if p.is_dir()])
    assert 2 <= finished < 24, "the run was not killed midway"
    assert not list(out.glob("*/meta.json"))

    clean = prepare_shards([str(corpus)], setup["tok"], tmp_path / "clean", workers=2,
                           valid_fraction=0.05, show_progress=False)
    calls: list[str] = []
    real = shards_module.tokenize_piece
    monkeypatch.setattr(shards_module, "tokenize_piece",
                        lambda job: calls.append(job.path) or real(job))
    resumed = prepare_shards([str(corpus)], setup["tok"], out, workers=1,
                             valid_fraction=0.05, show_progress=False)
    assert len(calls) == 24 - finished
    assert _data_bytes(resumed) == _data_bytes(clean)
    assert [p.name for p in out.iterdir()] == [resumed.name]


def test_text_field_is_read_and_keys_the_cache(setup: dict[str, Path], tmp_path: Path) -> None:
    lines = [{"body": "The cat sat on the mat.", "text": "A dog ran home."}] * 3
    path = tmp_path / "c.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in lines), encoding="utf-8")
    body = prepare_shards([str(path)], setup["tok"], tmp_path / "out", text_field="body",
                          valid_fraction=0.0, show_progress=False)
    text = prepare_shards([str(path)], setup["tok"], tmp_path / "out", valid_fraction=0.0,
                          show_progress=False)
    assert body != text
    tok = Tokenizer.load(setup["tok"])
    decoded = tok.decode(ShardSet.load(body).tokens("train"))
    assert "cat sat on the mat" in decoded and "dog" not in decoded


def test_cli_tokenizer_and_prepare_read_web_formats(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """`tokenizer train` and `prepare --workers 2 --text-field` on a folder of parquet,
    .jsonl.zst, .txt.gz and .txt; a bad file is one line and exit 2."""
    from maskedlm.cli import main

    corpus = _mixed_corpus(tmp_path / "corpus", n_files=4)
    assert main(["tokenizer", "train", "--corpus", str(corpus), "--vocab-size", "300",
                 "--sample-mb", "0.004", "--out", str(tmp_path / "tok")]) == 0
    assert main(["prepare", "--corpus", str(corpus), "--tokenizer", str(tmp_path / "tok"),
                 "--out", str(tmp_path / "shards"), "--workers", "2", "--no-progress"]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["train_tokens"] > 1000
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"content": ["A cat."]}), corpus / "zz.parquet")
    assert main(["prepare", "--corpus", str(corpus), "--tokenizer", str(tmp_path / "tok"),
                 "--out", str(tmp_path / "shards"), "--workers", "2", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "zz.parquet: no column 'text'" in err[0]
    assert not list((tmp_path / "shards").glob(".*"))  # no temp or work folder left
