"""Reading corpora: formats, errors, sentence splitting, language sampling."""

from __future__ import annotations

import gzip
import json
import os
from collections import Counter
from itertools import islice
from pathlib import Path

import numpy as np
import pytest

from maskedlm.data.corpus import (
    count_documents,
    iter_corpus_documents,
    iter_documents,
    iter_multilingual_documents,
    language_sampling_weights,
    parse_corpus_args,
    plan_languages,
    resolve_files,
    split_sentences,
    stdlib_corpus,
    write_stdlib_corpus,
)
from maskedlm.errors import MaskedLMError

WORDS = "the cat dog sat on mat and ran far away from home with a red ball in garden".split()


def make_documents(n_docs: int, seed: int = 0, tag: str = "") -> list[list[str]]:
    """``n_docs`` documents of 2-6 sentences of 3-9 words (first word capitalized)."""
    rng = np.random.default_rng(seed)
    docs = []
    for d in range(n_docs):
        doc = []
        for _ in range(rng.integers(2, 7)):
            words = [WORDS[i] for i in rng.integers(0, len(WORDS), rng.integers(3, 10))]
            doc.append(" ".join([f"{tag}doc{d}", *words]).capitalize() + ".")
        docs.append(doc)
    return docs


def write_txt(path: Path, docs: list[list[str]]) -> Path:
    path.write_text("".join("\n".join(doc) + "\n\n" for doc in docs), encoding="utf-8")
    return path


# ---------------------------------------------------------------------------- formats


def test_txt_documents_are_separated_by_blank_lines(tmp_path: Path) -> None:
    docs = make_documents(5)
    path = write_txt(tmp_path / "a.txt", docs)
    assert list(iter_documents([path])) == docs


def test_long_paragraph_is_split_into_sentences(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_text("First one here. Second one! Third? Yes.\n\nOther doc.\n", encoding="utf-8")
    assert list(iter_documents([path])) == [
        ["First one here.", "Second one!", "Third?", "Yes."],
        ["Other doc."],
    ]


def test_wikitext_title_stays_with_its_book(tmp_path: Path) -> None:
    path = tmp_path / "books.txt"
    path.write_text(
        " = Book One (Author) = \n\nPara one.\nPara two.\n\n = Book Two (Author) = \n\nText.\n",
        encoding="utf-8",
    )
    assert list(iter_documents([path])) == [
        ["Book One (Author)", "Para one.", "Para two."],
        ["Book Two (Author)", "Text."],
    ]


def test_one_doc_per_line(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_text("A b. C d.\nE f.\n\nG h.\n", encoding="utf-8")
    assert list(iter_documents([path], one_doc_per_line=True)) == [
        ["A b.", "C d."],
        ["E f."],
        ["G h."],
    ]


def test_jsonl_gz_folder_and_glob(tmp_path: Path) -> None:
    docs = make_documents(6)
    folder = tmp_path / "corpus"
    (folder / "sub").mkdir(parents=True)
    write_txt(folder / "a.txt", docs[:2])
    with gzip.open(folder / "sub" / "b.jsonl.gz", "wt", encoding="utf-8") as f:
        for doc in docs[2:4]:
            f.write(json.dumps({"text": " ".join(doc), "id": 1}) + "\n")
    with gzip.open(folder / "c.txt.gz", "wt", encoding="utf-8") as f:
        f.write("".join("\n".join(doc) + "\n\n" for doc in docs[4:]))
    (folder / "notes.md").write_text("ignored")
    assert list(iter_documents([folder])) == docs[:2] + docs[4:] + docs[2:4]  # sorted paths
    assert list(iter_documents([str(folder / "*.txt*")])) == docs[:2] + docs[4:]
    assert list(iter_documents([folder / "sub" / "b.jsonl.gz"])) == docs[2:4]
    assert count_documents([folder]).tolist() == [len(d) for d in docs[:2] + docs[4:] + docs[2:4]]


def test_jsonl_paragraphs_become_sentences(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text(json.dumps({"text": "One. Two.\n\nThree."}) + "\n\n", encoding="utf-8")
    assert list(iter_documents([path])) == [["One.", "Two.", "Three."]]


def write_parquet(path: Path, texts: list, column: str = "text", **extra: list) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({column: texts, **extra}), path, row_group_size=3)
    return path


def write_jsonl_zst(path: Path, records: list[dict], frames: int = 1) -> Path:
    import zstandard

    lines = [json.dumps(r) + "\n" for r in records]
    step = -(-len(lines) // frames)
    cctx = zstandard.ZstdCompressor()
    path.write_bytes(b"".join(cctx.compress("".join(lines[i:i + step]).encode())
                              for i in range(0, len(lines), step)))
    return path


def test_parquet_zst_json_gz_mixed_in_a_folder(tmp_path: Path) -> None:
    """Every web-corpus format read in one folder, in sorted path order, with the text
    column or key named by ``text_field``; a multi-frame .zst reads whole."""
    import zstandard

    docs = make_documents(14)
    folder = tmp_path / "web"
    folder.mkdir()
    joined = [" ".join(d) for d in docs]
    write_parquet(folder / "a.parquet", joined[:7], column="content", id=list(range(7)))
    write_jsonl_zst(folder / "b.jsonl.zst", [{"content": t} for t in joined[7:10]], frames=2)
    with gzip.open(folder / "c.json.gz", "wt", encoding="utf-8") as f:
        f.writelines(json.dumps({"content": t}) + "\n" for t in joined[10:12])
    (folder / "d.txt.zst").write_bytes(zstandard.ZstdCompressor().compress(
        "".join("\n".join(d) + "\n\n" for d in docs[12:]).encode()))
    got = list(iter_documents([folder], text_field="content"))
    assert got == docs
    assert list(iter_documents([str(folder / "*.parquet")], text_field="content")) == docs[:7]


def test_culturax_style_language_folders(tmp_path: Path) -> None:
    """``fr=dir/ de=dir/`` of parquet files go through the alpha sampling."""
    for lang, n in (("fr", 40), ("de", 4)):
        (tmp_path / lang).mkdir()
        for part in range(2):
            docs = make_documents(n // 2, seed=part, tag=f"{lang}{part}")
            write_parquet(tmp_path / lang / f"part-{part}.parquet", [" ".join(d) for d in docs])
    corpora = parse_corpus_args([f"fr={tmp_path / 'fr'}/", f"de={tmp_path / 'de'}/"])
    assert sorted(corpora) == ["de", "fr"]
    got = list(iter_corpus_documents(corpora, alpha=0.0, seed=0))
    de = sum(doc[0].lower().startswith("de") for doc in got)
    fr = sum(doc[0].lower().startswith("fr") for doc in got)
    # alpha = 0: uniform over languages, so German (a tenth of the text) is upsampled to ~half
    assert de > 4 and abs(de - fr) < 0.35 * (de + fr)


# ----------------------------------------------------------------------------- errors


def test_bad_jsonl_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "Fine."}\n{"text": oops}\n', encoding="utf-8")
    with pytest.raises(MaskedLMError, match=r"bad\.jsonl:2: bad JSON") as e:
        list(iter_documents([path]))
    assert "\n" not in str(e.value)


def test_jsonl_missing_text_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "Fine."}\n{"body": "x"}\n', encoding="utf-8")
    with pytest.raises(MaskedLMError, match=r"bad\.jsonl:2: field 'text'"):
        list(iter_documents([path]))


def test_bad_records_are_refused_naming_file_and_row(tmp_path: Path) -> None:
    """Null, non-string or missing text is refused (not skipped) with the file and row/line;
    so is a parquet file without the column and a truncated .zst."""
    write_parquet(tmp_path / "nulls.parquet", ["Fine.", "Also fine.", "Three.", "Four.", None])
    with pytest.raises(MaskedLMError, match=r"nulls\.parquet: row 5: 'text' is null"):
        list(iter_documents([tmp_path / "nulls.parquet"]))
    write_parquet(tmp_path / "other.parquet", ["Fine."], column="body")
    with pytest.raises(MaskedLMError, match=r"other\.parquet: no column 'text' \(columns: body\)"):
        list(iter_documents([tmp_path / "other.parquet"]))
    write_parquet(tmp_path / "ints.parquet", [1, 2])
    with pytest.raises(MaskedLMError, match=r"ints\.parquet: column 'text' holds int64"):
        list(iter_documents([tmp_path / "ints.parquet"]))
    (tmp_path / "junk.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(MaskedLMError, match=r"junk\.parquet: not a readable parquet file"):
        list(iter_documents([tmp_path / "junk.parquet"]))
    write_jsonl_zst(tmp_path / "n.jsonl.zst", [{"text": "Fine."}, {"text": None}, {"text": 3}])
    with pytest.raises(MaskedLMError, match=r"n\.jsonl\.zst:2: field 'text' is null"):
        list(iter_documents([tmp_path / "n.jsonl.zst"]))
    records = [{"text": f"Document {i} is here."} for i in range(20_000)]
    data = write_jsonl_zst(tmp_path / "whole.jsonl.zst", records).read_bytes()
    assert len(list(iter_documents([tmp_path / "whole.jsonl.zst"]))) == 20_000
    (tmp_path / "cut.jsonl.zst").write_bytes(data[: len(data) // 2])
    with pytest.raises(MaskedLMError, match=r"cut\.jsonl\.zst: truncated \.zst") as e:
        list(iter_documents([tmp_path / "cut.jsonl.zst"]))
    assert "\n" not in str(e.value)
    with gzip.open(tmp_path / "whole.json.gz", "wt") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)
    cut = (tmp_path / "whole.json.gz").read_bytes()
    (tmp_path / "cut.json.gz").write_bytes(cut[: len(cut) // 2])
    with pytest.raises(MaskedLMError, match=r"cut\.json\.gz: cannot read"):
        list(iter_documents([tmp_path / "cut.json.gz"]))


def test_binary_file_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "model.txt"
    path.write_bytes(b"Some text.\n\x00\x01\x02binary\n")
    with pytest.raises(MaskedLMError, match=r"model\.txt:2: binary"):
        list(iter_documents([path]))


def test_non_utf8_file_names_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.txt"
    path.write_bytes("Fine line.\nCaf\u00e9 au lait.\n".encode("latin-1"))
    with pytest.raises(MaskedLMError, match=r"latin1\.txt:2: not UTF-8"):
        list(iter_documents([path]))


def test_empty_corpus(tmp_path: Path) -> None:
    (tmp_path / "empty.txt").write_text("\n\n   \n", encoding="utf-8")
    with pytest.raises(MaskedLMError, match="empty corpus"):
        list(iter_documents([tmp_path / "empty.txt"]))


def test_missing_paths(tmp_path: Path) -> None:
    with pytest.raises(MaskedLMError, match="no such file"):
        iter_documents([tmp_path / "nope.txt"])  # raised at once, not when iterated
    with pytest.raises(MaskedLMError, match="no such file"):
        resolve_files([str(tmp_path / "*.txt")])
    (tmp_path / "d").mkdir()
    with pytest.raises(MaskedLMError, match="folder holds no"):
        resolve_files([tmp_path / "d"])


# ---------------------------------------------------------------------- sentences


def test_split_sentences_keeps_abbreviations_and_initials() -> None:
    text = "Mr. Smith met P. G. Wodehouse. “Is it true?” he asked. Yes! 1. A list item."
    assert split_sentences(text) == [
        "Mr. Smith met P. G. Wodehouse.",
        "“Is it true?” he asked.",
        "Yes!",
        "1. A list item.",
    ]


def test_split_sentences_cuts_run_on_text() -> None:
    units = split_sentences("word " * 2000)
    assert len(units) > 1 and all(len(u) <= 2000 for u in units)
    assert sum(len(u.split()) for u in units) == 2000


# -------------------------------------------------------------------- multilingual


def test_parse_corpus_args() -> None:
    assert parse_corpus_args(["a.txt", "b/"]) == {"": ["a.txt", "b/"]}
    assert parse_corpus_args(["en=a.txt", "wo=b.txt", "en=c.txt"]) == {
        "en": ["a.txt", "c.txt"],
        "wo": ["b.txt"],
    }
    with pytest.raises(MaskedLMError, match="LANG=PATH"):
        parse_corpus_args(["en=a.txt", "b.txt"])


def test_language_weights() -> None:
    counts = {"en": 900, "fr": 90, "wo": 10}
    q1 = language_sampling_weights(counts, alpha=1.0)
    assert q1 == pytest.approx({"en": 0.9, "fr": 0.09, "wo": 0.01})
    q0 = language_sampling_weights(counts, alpha=0.0)
    assert q0 == pytest.approx({g: 1 / 3 for g in counts})
    q = language_sampling_weights(counts, alpha=0.3)
    assert sum(q.values()) == pytest.approx(1.0)
    assert q["wo"] > 0.01 * 5 and q["en"] < 0.9  # the small language is upweighted
    p = np.array([0.9, 0.09, 0.01])
    assert list(q.values()) == pytest.approx(list(p**0.3 / (p**0.3).sum()))
    with pytest.raises(MaskedLMError, match="alpha"):
        language_sampling_weights(counts, alpha=1.5)


def _lines(path: Path, lang: str, n: int) -> Path:
    path.write_text(
        "".join(f"{lang.capitalize()} sentence {i}.\n" for i in range(n)), encoding="utf-8"
    )
    return path


def test_multilingual_sampling_follows_q(tmp_path: Path) -> None:
    corpora = {
        "en": [str(_lines(tmp_path / "en.txt", "en", 900))],
        "wo": [str(_lines(tmp_path / "wo.txt", "wo", 100))],
    }
    plan = plan_languages({"en": 900, "wo": 100}, alpha=0.3, total_sentences=20_000)
    assert plan.p == pytest.approx({"en": 0.9, "wo": 0.1})
    assert plan.target["wo"] == round(plan.q["wo"] * 20_000)
    docs = list(
        iter_multilingual_documents(corpora, plan, np.random.default_rng(0), one_doc_per_line=True)
    )
    got = Counter(d.lang for d in docs)
    share = got["wo"] / sum(got.values())
    assert share == pytest.approx(plan.q["wo"], abs=0.02)
    assert sum(got.values()) == pytest.approx(20_000, rel=0.05)
    # a downsampled language (rate < 1) uses each document at most once
    small = plan_languages({"en": 900, "wo": 100}, alpha=1.0, total_sentences=500)
    docs = list(
        iter_multilingual_documents(corpora, small, np.random.default_rng(1), one_doc_per_line=True)
    )
    en = [d.index for d in docs if d.lang == "en"]
    assert len(en) == len(set(en)) and len(en) == pytest.approx(450, rel=0.15)


def test_held_out_documents_appear_once_and_never_in_training(tmp_path: Path) -> None:
    corpora = {
        "en": [str(_lines(tmp_path / "en.txt", "en", 50))],
        "wo": [str(_lines(tmp_path / "wo.txt", "wo", 10))],
    }
    plan = plan_languages({"en": 50, "wo": 10}, alpha=0.0)  # wo upsampled ~3x
    docs = list(
        iter_multilingual_documents(
            corpora, plan, np.random.default_rng(0), one_doc_per_line=True, held_out={"wo": [3]}
        )
    )
    wo = [d for d in docs if d.lang == "wo"]
    assert [d.held_out for d in wo if d.index == 3] == [True]
    assert len([d for d in wo if d.index == 5]) >= 2  # repeated by upsampling


def test_iter_corpus_documents(tmp_path: Path) -> None:
    docs = make_documents(4)
    path = write_txt(tmp_path / "a.txt", docs)
    assert list(iter_corpus_documents([str(path)])) == docs
    assert list(iter_corpus_documents({"": [str(path)]})) == docs
    corpora = {
        "en": [str(_lines(tmp_path / "en.txt", "en", 90))],
        "wo": [str(_lines(tmp_path / "wo.txt", "wo", 10))],
    }
    out = list(iter_corpus_documents(corpora, alpha=0.0, one_doc_per_line=True))
    assert sum(d[0].startswith("Wo") for d in out) == pytest.approx(50, abs=12)


# ------------------------------------------------------------------- stdlib corpus


def test_stdlib_corpus_is_prose() -> None:
    docs = list(islice(stdlib_corpus(), 20))
    assert len(docs) == 20
    sentences = [s for d in docs for s in d]
    assert not any(s.lstrip().startswith(">>>") for s in sentences)
    assert sum(s[:1].isupper() for s in sentences) > 0.8 * len(sentences)


@pytest.mark.slow
def test_stdlib_corpus_is_deterministic_and_cached(tmp_path: Path) -> None:
    path = write_stdlib_corpus(tmp_path / "stdlib.txt")
    size = path.stat().st_size
    assert size > 1_000_000
    mtime = path.stat().st_mtime_ns
    os.utime(path, ns=(mtime - 10**9, mtime - 10**9))
    write_stdlib_corpus(path)  # same content: the file (and its mtime) is kept
    assert path.stat().st_mtime_ns == mtime - 10**9
    assert list(iter_documents([path]))[:3] == list(islice(stdlib_corpus(), 3))


def test_tokenizer_sample_spreads_over_every_file_and_is_seeded(tmp_path: Path) -> None:
    """A corpus larger than ``sample_bytes`` is sampled document by document in every file
    (not the first files read whole), the same documents for the same seed."""
    for i in range(4):
        docs = make_documents(150, seed=i, tag=f"f{i}x")
        if i < 2:
            write_txt(tmp_path / f"part{i}.txt", docs)
        else:
            write_parquet(tmp_path / f"part{i}.parquet", [" ".join(d) for d in docs])
    size = sum(p.stat().st_size for p in tmp_path.iterdir())
    whole = list(iter_corpus_documents([str(tmp_path)], sample_bytes=size))
    assert len(whole) == 600
    sample = list(iter_corpus_documents([str(tmp_path)], sample_bytes=size / 4, seed=1))
    per_file = Counter(doc[0].split("x")[0] for doc in sample)
    assert sorted(per_file) == ["F0", "F1", "F2", "F3"]
    assert all(15 <= n <= 60 for n in per_file.values()), per_file  # ~37.5 each
    assert 100 <= len(sample) <= 200  # ~150 of 600 (binomial sd ~11)
    assert sample == list(iter_corpus_documents([str(tmp_path)], sample_bytes=size / 4, seed=1))
    assert sample != list(iter_corpus_documents([str(tmp_path)], sample_bytes=size / 4, seed=2))
    assert all(doc in whole for doc in sample)
