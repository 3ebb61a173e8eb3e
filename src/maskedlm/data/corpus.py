"""Read raw text corpora as documents made of sentence units.

A *document* is a ``list[str]`` of sentence units. Sentence units are what BERT's
next-sentence prediction cuts between (Devlin et al. 2019 feed "one sentence per
line"); for RoBERTa/SpanBERT they only mark where packing may break.

Formats (files, folders searched recursively, or globs):

* ``.txt`` -- documents separated by blank lines, one paragraph per line. WikiText-style
  heading lines (`` = Title = ``) are kept as text without the ``=`` marks and do not
  end a document, so a title followed by a blank line stays with its book.
  With ``one_doc_per_line`` every non-empty line is its own document.
* ``.jsonl`` or ``.json`` -- one JSON object per line (JSON Lines, as Dolma, C4 and the
  Pile ship them) with a ``text`` field (``text_field``), one document each.
* ``.parquet`` -- one document per row of the ``text`` column (``text_field``), read in
  record batches with pyarrow (FineWeb, CulturaX, Wikipedia on the Hub).
* ``.gz`` or ``.zst`` of a text or JSON file, streamed (``zstandard``).

Every paragraph is split into sentences with a small regex (see :func:`split_sentences`).
Files are streamed (lines, or parquet record batches); nothing reads a whole file into
memory. A bad input is refused with one line naming the file and its line or row: a
parquet file without the text column, a truncated ``.gz``/``.zst``, a record whose text
is missing, null or not a string. Nothing is skipped silently.

Multilingual corpora are sampled with the exponentially smoothed distribution
q_i = p_i^alpha / sum_j p_j^alpha (Conneau & Lample 2019; XLM-R uses alpha = 0.3,
Conneau et al. 2020; Jurafsky & Martin, SLP3 eq. 11.7): :func:`plan_languages` computes
the shares and :func:`iter_multilingual_documents` follows them.
"""

from __future__ import annotations

import ast
import bisect
import glob
import gzip
import inspect
import itertools
import json
import os
import re
import sysconfig
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from maskedlm.data.defaults import LANGUAGE_ALPHA, TEXT_FIELD, TOKENIZER_SAMPLE_MB
from maskedlm.errors import MaskedLMError
from maskedlm.files import atomic_write_bytes

COMPRESSIONS = ("", ".gz", ".zst")
# what a folder is searched for: text and JSON Lines, plain or compressed, and parquet
TEXT_SUFFIXES = tuple(b + c for b in (".txt", ".jsonl", ".json") for c in COMPRESSIONS) + (
    ".parquet",
)
# `tokenizer train` reads at most about this much of a corpus (bytes on disk): a vocabulary
# is settled long before (BERT's 30k WordPiece came from a sample of its corpus too)
TOKENIZER_SAMPLE_BYTES = TOKENIZER_SAMPLE_MB * 1e6
PARQUET_BATCH_ROWS = 1024  # rows per record batch: a few MB of web text at most
_ZST_CHUNK = 1 << 20  # compressed bytes read at a time

# A sentence ends at . ! ? (plus closing quotes/brackets) followed by whitespace and an
# opening quote or an upper-case letter. Deliberately simple: no models, no NLTK.
_SENTENCE_END = re.compile(
    r"([.!?]+[\"'”’»)\]]*)"  # the end mark and closing quotes, kept with the sentence
    r"\s+(?=[\"'“‘«(\[¿¡]?[0-9A-ZÀ-ÖØ-ÞΑ-ΩА-Я])"  # the next one starts like a sentence
)
# Titles and initials that end in a period without ending the sentence.
_ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof st mt jr sr messrs mme mlle rev gen col capt lt sgt gov hon "
    "no vol p pp fig ch sec vs etc cf e.g i.e".split()
)
# Units longer than this are cut at a space: a run-on "sentence" of 60k characters
# (tables of contents, lists) would otherwise become one huge NSP unit.
MAX_UNIT_CHARS = 2000


def split_sentences(paragraph: str) -> list[str]:
    """Split a paragraph into sentence units with a regex; never returns empty units.

    >>> split_sentences("Mr. Smith left. He was tired! Was he?  Yes.")
    ['Mr. Smith left.', 'He was tired!', 'Was he?', 'Yes.']
    """
    parts = _SENTENCE_END.split(paragraph.strip())  # [text, end, text, end, ..., text]
    units: list[str] = []
    for piece in map("".join, itertools.zip_longest(parts[::2], parts[1::2], fillvalue="")):
        piece = piece.strip()
        if not piece:
            continue
        if units and _ends_with_abbreviation(units[-1]):
            units[-1] = f"{units[-1]} {piece}"
        else:
            units.append(piece)
    return [cut for unit in units for cut in _cut_long(unit)]


def _ends_with_abbreviation(text: str) -> bool:
    last = text[text.rfind(" ") + 1 :]
    if len(last) > 8 or not last.endswith("."):  # fast path: no abbreviation is longer
        return False
    last = last.lstrip("\"'“‘(")
    word = last[:-1]
    # single initials ("P. G. Wodehouse"), a known abbreviation, or a bare list number
    return (
        (len(word) == 1 and word.isupper())
        or word.lower() in _ABBREVIATIONS
        or (word.isdigit() and text == last)
    )


def _cut_long(unit: str) -> list[str]:
    if len(unit) <= MAX_UNIT_CHARS:
        return [unit]
    cuts = []
    while len(unit) > MAX_UNIT_CHARS:
        at = unit.rfind(" ", 0, MAX_UNIT_CHARS)
        at = at if at > 0 else MAX_UNIT_CHARS
        cuts.append(unit[:at].strip())
        unit = unit[at:].strip()
    if unit:
        cuts.append(unit)
    return [c for c in cuts if c]


# ----------------------------------------------------------------------------- files


def resolve_files(paths: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Expand files, folders (recursive) and globs into a sorted, de-duplicated file list.

    >>> resolve_files(["data/*.txt"])  # doctest: +SKIP
    [PosixPath('data/a.txt'), PosixPath('data/b.txt')]
    """
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    if not paths:
        raise MaskedLMError("corpus: no corpus path given")
    files: list[Path] = []
    for item in paths:
        text = os.fspath(item)
        path = Path(text)
        if path.is_file():
            found = [path]
        elif path.is_dir():
            found = sorted(
                p for p in path.rglob("*") if p.is_file() and p.name.endswith(TEXT_SUFFIXES)
            )
            if not found:
                raise MaskedLMError(
                    f"{text}: folder holds no corpus files ({', '.join(TEXT_SUFFIXES)})"
                )
        else:
            found = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
            if not found:
                raise MaskedLMError(f"{text}: no such file, folder or matching glob")
        files.extend(found)
    unique = list(dict.fromkeys(p.resolve() for p in files))
    return unique


def file_format(path: str | os.PathLike[str]) -> str:
    """``"parquet"``, ``"jsonl"`` (``.jsonl``/``.json``, compressed or not) or ``"txt"``.

    >>> file_format("c4-train.00000-of-01024.json.gz"), file_format("fr/part-0.parquet")
    ('jsonl', 'parquet')
    """
    name = os.fspath(path).lower()
    if name.endswith(".parquet"):
        return "parquet"
    for c in COMPRESSIONS:
        if c and name.endswith(c):
            name = name[: -len(c)]
            break
    return "jsonl" if name.endswith((".jsonl", ".json")) else "txt"


def _zst_lines(f: Any, path: Path) -> Iterator[bytes]:
    """Lines of a zstd stream (several frames allowed), decompressed a chunk at a time.

    zstandard's stream reader ends quietly on a cut file; the frame state here does not."""
    import zstandard

    dctx = zstandard.ZstdDecompressor()
    dobj = dctx.decompressobj()
    tail = b""
    in_frame = False
    while chunk := f.read(_ZST_CHUNK):
        while chunk:
            try:
                data = dobj.decompress(chunk)
            except zstandard.ZstdError as e:
                raise MaskedLMError(f"{path}: not a valid .zst file ({e})") from None
            in_frame = not dobj.eof
            chunk = dobj.unused_data if dobj.eof else b""
            if dobj.eof:
                dobj = dctx.decompressobj()
            if data:
                lines = (tail + data).split(b"\n")
                tail = lines.pop()
                for line in lines:
                    yield line + b"\n"
    if in_frame:
        raise MaskedLMError(f"{path}: truncated .zst file (the stream ends inside a frame)")
    if tail:
        yield tail


def _iter_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Yield (line number, decoded line without newline); reject binary and non-UTF-8."""
    name = path.name.lower()
    opener = gzip.open if name.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            raw_lines = _zst_lines(f, path) if name.endswith(".zst") else f
            for lineno, raw in enumerate(raw_lines, 1):
                if b"\x00" in raw:
                    raise MaskedLMError(f"{path}:{lineno}: binary file (NUL byte), not text")
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise MaskedLMError(
                        f"{path}:{lineno}: not UTF-8 (byte {e.start}: {e.reason})"
                    ) from None
                if lineno == 1:
                    line = line.lstrip("\ufeff")
                yield lineno, line.rstrip("\r\n")
    except (OSError, EOFError) as e:  # gzip.BadGzipFile is an OSError; a cut .gz EOFError
        raise MaskedLMError(f"{path}: cannot read ({e})") from None


def read_text_lines(path: str | os.PathLike[str], what: str = "file") -> list[str]:
    """The lines of a UTF-8 text file (``.gz`` too), or a one-line error naming it: no such
    ``what``, binary, not UTF-8.

    >>> read_text_lines("pairs.tsv", "word-pair file")[:1]  # doctest: +SKIP
    ['cat\tdog\t7.5']
    """
    p = Path(path)
    if not p.is_file():
        raise MaskedLMError(f"{p}: no such {what}")
    return [line for _, line in _iter_lines(p)]


def _is_heading(line: str) -> bool:
    s = line.strip()
    return len(s) >= 5 and s.startswith("= ") and s.endswith(" =")


Take = Callable[[], bool]  # the sampling decision for the next document


def _take_all() -> bool:
    return True


def _sampler(keep: float, seed: int, index: int) -> Take:
    """Keep each document with probability ``keep``, drawn from a generator of its own file
    (seed, file index), so a sample does not depend on what else is read."""
    if keep >= 1.0:
        return _take_all
    rng = np.random.default_rng([seed, index])
    return lambda: bool(rng.random() < keep)


def _txt_sentences(line: str) -> list[str]:
    return split_sentences(line.strip().strip("=") if _is_heading(line) else line)


def _iter_txt(path: Path, one_doc_per_line: bool, take: Take = _take_all) -> Iterator[list[str]]:
    lines: list[str] = []  # the raw lines of the document being read: split once taken
    only_headings = True
    for _, line in _iter_lines(path):
        if one_doc_per_line:
            if line.strip() and take():
                sentences = split_sentences(line)
                if sentences:
                    yield sentences
            continue
        if not line.strip():
            if lines and not only_headings:
                if take():
                    yield [s for ln in lines for s in _txt_sentences(ln)]
                lines, only_headings = [], True
            continue
        lines.append(line)
        only_headings = only_headings and _is_heading(line)
    if lines and take():
        doc = [s for ln in lines for s in _txt_sentences(ln)]
        if doc:
            yield doc


def _text_document(text: str) -> list[str]:
    return [s for para in text.split("\n") for s in split_sentences(para)]


def _iter_jsonl(path: Path, text_field: str, take: Take = _take_all) -> Iterator[list[str]]:
    for lineno, line in _iter_lines(path):
        if not line.strip() or not take():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise MaskedLMError(
                f"{path}:{lineno}: bad JSON ({e.msg} at column {e.colno})"
            ) from None
        if not isinstance(record, dict):
            raise MaskedLMError(f"{path}:{lineno}: not a JSON object")
        text = record.get(text_field)
        if not isinstance(text, str):
            what = "missing" if text_field not in record else (
                "null" if text is None else f"a {type(text).__name__}, not a string")
            raise MaskedLMError(f"{path}:{lineno}: field {text_field!r} is {what}")
        doc = _text_document(text)
        if doc:
            yield doc


def _iter_parquet(path: Path, text_field: str, take: Take = _take_all) -> Iterator[list[str]]:
    """One document per row of ``text_field``, read in record batches of
    :data:`PARQUET_BATCH_ROWS` rows (only that column is read)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as e:
        raise MaskedLMError(f"{path}: not a readable parquet file ({_first_line(e)})") from None
    names = pf.schema_arrow.names
    if text_field not in names:
        shown = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
        raise MaskedLMError(f"{path}: no column {text_field!r} (columns: {shown}); "
                            "name the text column with --text-field")
    kind = pf.schema_arrow.field(text_field).type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)
            or pa.types.is_string_view(kind)):
        raise MaskedLMError(f"{path}: column {text_field!r} holds {kind}, not strings")
    row = 0
    try:
        for batch in pf.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=[text_field]):
            column = batch.column(0)
            if column.null_count:
                first = row + int(pc.index(column.is_null(), True).as_py()) + 1
                raise MaskedLMError(f"{path}: row {first}: {text_field!r} is null")
            # sampling: only the rows taken become Python strings
            texts = (column.to_pylist() if take is _take_all
                     else [column[i].as_py() for i in range(len(column)) if take()])
            for text in texts:
                doc = _text_document(text)
                if doc:
                    yield doc
            row += len(column)
    except (pa.ArrowException, OSError) as e:
        raise MaskedLMError(f"{path}: after row {row}: cannot read ({_first_line(e)})") from None


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:200]


def iter_file_documents(
    path: str | os.PathLike[str],
    *,
    one_doc_per_line: bool = False,
    text_field: str = TEXT_FIELD,
    take: Take = _take_all,
) -> Iterator[list[str]]:
    """The documents of one corpus file, in file order, by its :func:`file_format`.

    ``take`` decides, before a document is parsed and split, whether it is kept (sampling).

    >>> next(iter_file_documents("fineweb/000_00000.parquet"))[:1]  # doctest: +SKIP
    ['How AP reported in all formats from tornado-stricken regions.']
    """
    p = Path(path)
    kind = file_format(p)
    if kind == "parquet":
        return _iter_parquet(p, text_field, take)
    if kind == "jsonl":
        return _iter_jsonl(p, text_field, take)
    return _iter_txt(p, one_doc_per_line, take)


def iter_documents(
    paths: Sequence[str | os.PathLike[str]],
    *,
    one_doc_per_line: bool = False,
    text_field: str = TEXT_FIELD,
    keep: float = 1.0,
    seed: int = 0,
) -> Iterator[list[str]]:
    """Stream the documents (lists of sentence units) of every file under ``paths``.

    ``keep`` < 1 keeps each document with that probability, seeded per file by ``seed``
    (the same sample on every pass).

    Path errors are raised at once; read errors and an empty corpus when iterated.

    >>> for doc in iter_documents(["corpus/"]):  # doctest: +SKIP
    ...     print(len(doc), doc[0])
    """
    files = resolve_files(paths)

    def generate() -> Iterator[list[str]]:
        any_text = False
        for index, path in enumerate(files):
            docs = iter_file_documents(
                path, one_doc_per_line=one_doc_per_line, text_field=text_field,
                take=_sampler(keep, seed, index),
            )
            for doc in docs:
                any_text = True
                yield doc
        if not any_text:
            what = "no text" if keep >= 1.0 else f"no document sampled at {keep:.2g}"
            raise MaskedLMError(f"{files[0]}: empty corpus ({what} in {len(files)} file(s))")

    return generate()


def count_documents(
    paths: Sequence[str | os.PathLike[str]],
    *,
    one_doc_per_line: bool = False,
    text_field: str = TEXT_FIELD,
    keep: float = 1.0,
    seed: int = 0,
) -> np.ndarray:
    """Sentence units per document, in corpus order (int64), by a streaming pass.

    >>> count_documents(["corpus.txt"]).sum()  # doctest: +SKIP
    12345
    """
    docs = iter_documents(paths, one_doc_per_line=one_doc_per_line, text_field=text_field,
                          keep=keep, seed=seed)
    counts = [len(doc) for doc in docs]
    return np.asarray(counts, dtype=np.int64)


# ----------------------------------------------------------------------- multilingual

_LANG_ITEM = re.compile(r"^([A-Za-z][A-Za-z0-9_-]{0,31})=(.+)$")


def parse_corpus_args(items: Sequence[str]) -> dict[str, list[str]]:
    """Group ``PATH`` / ``LANG=PATH`` items by language ("" when none is given).

    >>> parse_corpus_args(["en=a.txt", "fr=b.txt", "en=c.txt"])
    {'en': ['a.txt', 'c.txt'], 'fr': ['b.txt']}
    """
    corpora: dict[str, list[str]] = {}
    for item in items:
        match = _LANG_ITEM.match(item)
        lang, path = (
            (match.group(1), match.group(2)) if match and not Path(item).exists() else ("", item)
        )
        corpora.setdefault(lang, []).append(path)
    if "" in corpora and len(corpora) > 1:
        raise MaskedLMError(
            f"corpus {corpora[''][0]!r}: give a language to every corpus (LANG=PATH) or to none"
        )
    return corpora


def language_sampling_weights(counts: Mapping[str, int], alpha: float = LANGUAGE_ALPHA) -> dict[str, float]:
    """Smoothed sampling shares q_i = p_i^alpha / sum_j p_j^alpha, p_i = share of sentences.

    alpha = 1 keeps the natural shares, alpha = 0 is uniform; XLM-R uses 0.3
    (Conneau et al. 2020), which upweights low-resource languages.

    >>> language_sampling_weights({"en": 90, "wo": 10}, alpha=1.0)
    {'en': 0.9, 'wo': 0.1}
    """
    if not 0.0 <= alpha <= 1.0:
        raise MaskedLMError(f"alpha: must be in [0, 1], got {alpha}")
    total = sum(counts.values())
    if total <= 0:
        raise MaskedLMError("corpus: empty corpus (no sentences in any language)")
    p = {lang: n / total for lang, n in counts.items()}
    w = {lang: (share**alpha if share > 0 else 0.0) for lang, share in p.items()}
    norm = sum(w.values())
    return {lang: v / norm for lang, v in w.items()}


@dataclass(frozen=True)
class LanguagePlan:
    """How many sentences of each language a run uses, and why (p, q).

    ``target`` may exceed ``sentences`` (upsampled by repetition) or fall below it
    (downsampled by dropping documents at random).
    """

    alpha: float
    sentences: dict[str, int]
    p: dict[str, float]
    q: dict[str, float]
    target: dict[str, int]
    documents: dict[str, int] = field(default_factory=dict)

    def rate(self, lang: str) -> float:
        """Expected number of times each document of ``lang`` is used."""
        return self.target[lang] / self.sentences[lang] if self.sentences[lang] else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "alpha": self.alpha,
            "languages": {
                lang: {
                    "documents": self.documents.get(lang),
                    "sentences": self.sentences[lang],
                    "p": round(self.p[lang], 6),
                    "q": round(self.q[lang], 6),
                    "target_sentences": self.target[lang],
                    "rate": round(self.rate(lang), 6),
                }
                for lang in self.sentences
            },
        }


def plan_languages(
    sentences: Mapping[str, int],
    alpha: float = LANGUAGE_ALPHA,
    *,
    total_sentences: int | None = None,
    documents: Mapping[str, int] | None = None,
) -> LanguagePlan:
    """Turn per-language sentence counts into a sampling plan (targets = q_i * total).

    ``total_sentences`` defaults to the corpus size, so a run sees as many sentences as
    the corpus holds, redistributed across languages.

    >>> plan_languages({"en": 900, "wo": 100}, alpha=0.3).target["wo"] > 100
    True
    """
    q = language_sampling_weights(sentences, alpha)
    total = sum(sentences.values()) if total_sentences is None else int(total_sentences)
    if total <= 0:
        raise MaskedLMError(f"total_sentences: must be positive, got {total}")
    p = {lang: n / sum(sentences.values()) for lang, n in sentences.items()}
    target = {lang: round(q[lang] * total) for lang in sentences}
    return LanguagePlan(alpha, dict(sentences), p, q, target, dict(documents or {}))


class CorpusDocument(NamedTuple):
    """A document as sampled: language, index within its language, held out or not."""

    lang: str
    index: int
    sentences: list[str]
    held_out: bool


def _iter_language(
    lang: str,
    paths: Sequence[str],
    rate: float,
    rng: np.random.Generator,
    one_doc_per_line: bool,
    held_out: frozenset[int],
    text_field: str = TEXT_FIELD,
    keep_docs: float = 1.0,
    sample_seed: int = 0,
) -> Iterator[CorpusDocument]:
    # Pass k keeps each training document with probability min(1, rate - k): whole passes
    # repeat a small language, the last pass (or the only one) subsamples.
    passes = max(1, int(np.ceil(rate)))
    for k in range(passes):
        keep = min(1.0, rate - k)
        docs = iter_documents(paths, one_doc_per_line=one_doc_per_line, text_field=text_field,
                              keep=keep_docs, seed=sample_seed)
        for index, doc in enumerate(docs):
            if index in held_out:
                if k == 0:
                    yield CorpusDocument(lang, index, doc, True)
            elif keep >= 1.0 or rng.random() < keep:
                yield CorpusDocument(lang, index, doc, False)


def iter_multilingual_documents(
    corpora: Mapping[str, Sequence[str]],
    plan: LanguagePlan,
    rng: np.random.Generator,
    *,
    one_doc_per_line: bool = False,
    held_out: Mapping[str, Sequence[int]] | None = None,
    text_field: str = TEXT_FIELD,
    keep_docs: float = 1.0,
    sample_seed: int = 0,
) -> Iterator[CorpusDocument]:
    """Sample documents of every language following ``plan``, languages interleaved.

    Held-out documents (by index within their language) are yielded exactly once with
    ``held_out=True`` and never repeated into training. With a single language at
    rate 1 this is the corpus in order.

    >>> plan = plan_languages({"en": 900, "wo": 100})
    >>> docs = iter_multilingual_documents({"en": ["en.txt"], "wo": ["wo.txt"]}, plan,
    ...                                    np.random.default_rng(0))  # doctest: +SKIP
    """
    held_out = held_out or {}
    streams = {
        lang: _iter_language(
            lang, paths, plan.rate(lang), rng, one_doc_per_line,
            frozenset(held_out.get(lang, ())), text_field, keep_docs, sample_seed,
        )
        for lang, paths in corpora.items()
    }
    yield from interleave_languages(streams, plan.target, rng,
                                    lambda d: 0 if d.held_out else len(d.sentences))


def interleave_languages(streams: dict[Any, Iterator[Any]], target: Mapping[Any, int],
                         rng: np.random.Generator, size: Callable[[Any], int]) -> Iterator[Any]:
    """The items of every language's stream, interleaved so that what each language delivers
    follows ``target``: the next language is drawn in proportion to what it still has to
    deliver (``size`` of an item; 0 for items that do not count, such as held-out ones).
    ``streams`` is consumed. The same draws give the same order wherever it is used (the
    documents of ``prepare`` and of ``tokenizer train`` are sampled alike)."""
    emitted = dict.fromkeys(streams, 0)
    while streams:
        langs = list(streams)
        if len(langs) == 1:
            lang = langs[0]
        else:
            left = list(itertools.accumulate(max(target[g] - emitted[g], 1) for g in langs))
            lang = langs[bisect.bisect_right(left, rng.random() * left[-1])]
        item = next(streams[lang], None)
        if item is None:
            del streams[lang]
            continue
        emitted[lang] += size(item)
        yield item


def iter_corpus_documents(
    corpora: Mapping[str, Sequence[str]] | Sequence[str],
    *,
    alpha: float = LANGUAGE_ALPHA,
    seed: int = 0,
    one_doc_per_line: bool = False,
    total_sentences: int | None = None,
    text_field: str = TEXT_FIELD,
    sample_bytes: float | None = TOKENIZER_SAMPLE_BYTES,
) -> Iterator[list[str]]:
    """Documents of a corpus, languages resampled by ``alpha`` when there are several.

    The stream to train a tokenizer on (XLM-R trains its vocabulary on the same smoothed
    language distribution, Conneau et al. 2020). One language: the corpus as it is.
    A corpus larger than ``sample_bytes`` on disk is sampled: each document is kept with
    probability ``sample_bytes / size on disk``, seeded by ``seed`` per file, so the sample
    spreads over every file (compressed files give a few times more text than their size).

    >>> corpora = parse_corpus_args(["en=en.txt", "wo=wo.txt"])
    >>> docs = iter_corpus_documents(corpora, alpha=0.3)  # doctest: +SKIP
    """
    if not isinstance(corpora, Mapping):
        corpora = {"": list(corpora)}
    files = {g: resolve_files(p) for g, p in corpora.items()}
    size = sum(f.stat().st_size for paths in files.values() for f in paths)
    keep = 1.0 if sample_bytes is None or size <= sample_bytes else sample_bytes / size
    common = {"one_doc_per_line": one_doc_per_line, "text_field": text_field}
    if len(corpora) == 1 and total_sentences is None:
        return iter_documents(next(iter(files.values())), **common, keep=keep, seed=seed)
    counts = {g: count_documents(p, **common, keep=keep, seed=seed) for g, p in files.items()}
    plan = plan_languages(
        {g: int(c.sum()) for g, c in counts.items()},
        alpha,
        total_sentences=total_sentences,
        documents={g: len(c) for g, c in counts.items()},
    )
    rng = np.random.default_rng(seed)
    docs = iter_multilingual_documents(files, plan, rng, **common, keep_docs=keep,
                                       sample_seed=seed)
    return (doc.sentences for doc in docs)


# ------------------------------------------------------------------- stdlib corpus

_SKIP_DIRS = frozenset(
    "test tests idlelib lib2to3 site-packages dist-packages encodings __pycache__ "
    "turtledemo pydoc_data ensurepip".split()
)
_MIN_PARAGRAPH_WORDS = 4


def _docstrings(tree: ast.AST) -> Iterator[str]:
    """Module, class and function docstrings in source order."""
    nodes = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    if isinstance(tree, nodes):
        doc = ast.get_docstring(tree, clean=True)
        if doc:
            yield doc
    for child in ast.iter_child_nodes(tree):
        if isinstance(child, ast.stmt):  # also defs nested in if/try/with blocks
            yield from _docstrings(child)


_CODE_CHARS = frozenset("=[]{}<>*/\\@#$%^~`|_")


def _looks_like_code(text: str) -> bool:
    letters = sum(c.isalpha() or c == " " for c in text)
    code = sum(c in _CODE_CHARS for c in text)
    return letters < 0.75 * len(text) or code > 0.03 * len(text)


def _paragraphs(docstring: str) -> Iterator[str]:
    """Prose paragraphs of a docstring: doctests, literal blocks and code-like blocks
    are dropped as whole blocks, so kept paragraphs stay coherent."""
    blocks: list[list[str]] = [[]]
    for line in inspect.cleandoc(docstring).splitlines():
        if line.strip():
            blocks[-1].append(line)
        elif blocks[-1]:
            blocks.append([])
    literal_indent = None  # indentation of the paragraph that ended with "::"
    for block in blocks:
        if not block:
            continue
        indent = len(block[0]) - len(block[0].lstrip())
        if literal_indent is not None and indent > literal_indent:
            continue  # reST literal block
        literal_indent = indent if block[-1].rstrip().endswith("::") else None
        lines = [ln.strip() for ln in block if len(set(ln.strip())) > 1]  # drop ==== rules
        text = " ".join(lines).replace("::", ":")
        if (
            not lines
            or any(ln.startswith((">>>", "...", "$ ", "|", "+-")) for ln in lines)
            or len(text.split()) < _MIN_PARAGRAPH_WORDS
            or _looks_like_code(text)
        ):
            continue
        yield text


def _module_documents(root: Path) -> Iterator[list[str]]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS and not d.startswith("."))
        for name in sorted(filenames):
            if not name.endswith(".py") or name.startswith("test_"):
                continue
            try:
                tree = ast.parse((Path(dirpath) / name).read_text(encoding="utf-8"))
            except (SyntaxError, UnicodeDecodeError, ValueError, OSError):
                continue
            yield [
                s
                for ds in _docstrings(tree)
                for para in _paragraphs(ds)
                for s in split_sentences(para)
            ]


def _pydoc_topic_documents() -> Iterator[list[str]]:
    # The language reference topics that pydoc ships (pydoc_data/topics.py): real prose.
    try:
        from pydoc_data.topics import topics
    except ImportError:  # some distributions strip it
        return
    for key in sorted(topics):
        yield [s for para in _paragraphs(topics[key]) for s in split_sentences(para)]


def stdlib_corpus() -> Iterator[list[str]]:
    """The embedded default corpus: English docstrings of the Python standard library.

    One document per module (sorted walk, so deterministic for a given Python), then one
    per pydoc language-reference topic; about 1.5 MB of prose in about 5 s.

    >>> sum(len(doc) for doc in stdlib_corpus()) > 10_000  # doctest: +SKIP
    True
    """
    root = Path(sysconfig.get_paths()["stdlib"])
    for doc in itertools.chain(_module_documents(root), _pydoc_topic_documents()):
        if doc:
            yield doc


def write_stdlib_corpus(path: str | os.PathLike[str]) -> Path:
    """Write :func:`stdlib_corpus` as a ``.txt`` corpus (one sentence a line, blank line
    between documents), atomically; returns the path.

    An identical existing file is left untouched, so its mtime (part of the shard
    cache key) stays the same from run to run.

    >>> write_stdlib_corpus("/tmp/stdlib.txt")  # doctest: +SKIP
    PosixPath('/tmp/stdlib.txt')
    """
    path = Path(path)
    data = "".join("\n".join(doc) + "\n\n" for doc in stdlib_corpus()).encode("utf-8")
    if path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_bytes(path, data)


def is_number(text: str) -> bool:
    """True if ``float(text)`` parses: a score or label column, not a header.

    >>> is_number("3.5"), is_number("label")
    (True, False)
    """
    try:
        float(text)
    except ValueError:
        return False
    return True


def sample_sentences(paths: Sequence[str | os.PathLike[str]], max_sentences: int | None,
                     rng: np.random.Generator, *, min_words: int = 3,
                     max_words: int = 64) -> list[str]:
    """A uniform sample (reservoir, Vitter's algorithm R) of corpus sentences of sane length;
    ``max_sentences=None`` keeps them all.

    >>> sample_sentences(["books/"], 1000, np.random.default_rng(0))  # doctest: +SKIP
    """
    if max_sentences is not None and max_sentences < 1:
        raise MaskedLMError(f"--max-sentences must be >= 1, got {max_sentences}")
    kept: list[str] = []
    seen = 0
    for doc in iter_documents(list(paths)):
        for s in doc:
            if not min_words <= len(s.split()) <= max_words:
                continue
            if max_sentences is None or len(kept) < max_sentences:
                kept.append(s)
            else:
                j = int(rng.integers(0, seen + 1))
                if j < max_sentences:
                    kept[j] = s
            seen += 1
    if not kept:
        raise MaskedLMError(f"{os.fspath(paths[0])}: no sentence of {min_words}..{max_words} words "
                            "in the corpus")
    return kept
