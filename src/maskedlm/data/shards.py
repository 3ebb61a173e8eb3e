"""Tokenize a corpus once into memory-mapped shards, cached by a hash of the inputs.

Layout of one prepared set, ``out_dir/<key>/`` (key = hash of the tokenizer fingerprint,
the corpus files' path/size/mtime and the settings)::

    meta.json                      counts, dtype, special ids, settings, language plan,
                                   and the size and SHA-256 of every file below
    {split}_tokens.bin             raw uint16 (vocab <= 65535) or uint32 token ids
    {split}_word_starts.bin        raw uint8 0/1, same length: first sub-word of a word
    {split}_sentences.npy          int64 token offset of every sentence unit, plus the end
    {split}_documents.npy          int64 sentence index of every document start, plus the end
    unigram.npy                    int64 (vocab_size,) token counts of the train split
    tokenizer/                     the tokenizer that made the ids

for split in ``train`` and ``valid``. As nanoGPT's ``prepare.py`` the ids are a flat
memmap; as cramming, preparation is a separate stage cached by its configuration.
Every input file is first tokenized on its own into a *piece*
(:mod:`maskedlm.data.pieces`), by ``workers`` processes in parallel; the pieces are then
assembled in file order, so the shards are the same bytes for any number of workers, and
a ``prepare`` killed midway keeps its finished pieces (in ``out_dir/.work-<key>/``) and
resumes from them. Memory stays bounded whatever the corpus size: a batch of sentences
per worker and a few MB of copy buffer. Shards are written to a temporary folder and
renamed into place, so a set either exists whole or not at all. Loading checks every file against its size and checksum
in ``meta.json`` (one extra read of every file), so a truncated or
altered shard is an error naming the file, never silent garbage.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import itertools
import json
import logging
import multiprocessing
import os
import shutil
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

import numpy as np

from maskedlm.data.corpus import (
    LanguagePlan,
    interleave_languages,
    plan_languages,
    resolve_files,
)
from maskedlm.data.defaults import LANGUAGE_ALPHA, TEXT_FIELD
from maskedlm.data.pieces import PieceJob, PieceReader, tokenize_piece, worker_init
from maskedlm.data.tokenizer import Tokenizer
from maskedlm.errors import MaskedLMError
from maskedlm.files import atomic_write_text
from maskedlm.progress import progress

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
SPLITS = ("train", "valid")
META_FILE = "meta.json"
_TMP_PREFIX = ".tmp-"
_WORK_PREFIX = ".work-"  # the pieces of a set being prepared, kept until it is whole
COPY_TOKENS = 1 << 22  # tokens copied from a piece at a time (8-16 MB)


def available_cores() -> int:
    """CPU cores this process may run on (the affinity mask, not the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class ShardSettings:
    """Settings that change the shards (and so the cache key)."""

    one_doc_per_line: bool = False
    alpha: float = LANGUAGE_ALPHA
    total_sentences: int | None = None
    seed: int = 0
    valid_fraction: float = 0.01
    max_valid_documents: int = 1000
    text_field: str = TEXT_FIELD

    def __post_init__(self) -> None:
        if not 0.0 <= self.valid_fraction < 1.0:
            raise MaskedLMError(f"valid_fraction: must be in [0, 1), got {self.valid_fraction}")
        if self.max_valid_documents < 1:
            raise MaskedLMError(
                f"max_valid_documents: must be >= 1, got {self.max_valid_documents}"
            )
        if not 0.0 <= self.alpha <= 1.0:
            raise MaskedLMError(f"alpha: must be in [0, 1], got {self.alpha}")
        if self.total_sentences is not None and self.total_sentences < 1:
            raise MaskedLMError(f"total_sentences: must be >= 1, got {self.total_sentences}")


def prepare_shards(
    corpus: Sequence[str] | Mapping[str, Sequence[str]],
    tokenizer: str | os.PathLike[str] | Tokenizer,
    out_dir: str | os.PathLike[str],
    *,
    one_doc_per_line: bool = False,
    alpha: float = LANGUAGE_ALPHA,
    total_sentences: int | None = None,
    seed: int = 0,
    valid_fraction: float = 0.01,
    max_valid_documents: int = 1000,
    text_field: str = TEXT_FIELD,
    workers: int | None = None,
    batch_sentences: int = 4096,
    show_progress: bool = True,
) -> Path:
    """Tokenize ``corpus`` (paths, or ``{lang: paths}``) into ``out_dir/<key>/``; cached.

    ``valid_fraction`` of the documents (at least 1, at most ``max_valid_documents``,
    per language) are held out for validation. A multilingual corpus is resampled with
    ``alpha`` (see :func:`maskedlm.data.corpus.plan_languages`). ``workers`` processes
    (default: the cores available, at most one per file) tokenize the files; the result
    does not depend on their number. The workers are spawned, so a script that calls this
    with more than one file and worker needs the ``if __name__ == "__main__":`` guard.

    >>> path = prepare_shards(["data/train.txt"], "runs/tok", "runs/shards")  # doctest: +SKIP
    >>> ShardSet.load(path).meta["splits"]["train"]["tokens"]  # doctest: +SKIP
    """
    settings = ShardSettings(
        one_doc_per_line, alpha, total_sentences, seed, valid_fraction, max_valid_documents,
        text_field,
    )
    if workers is not None and workers < 1:
        raise MaskedLMError(f"--workers: must be >= 1, got {workers}")
    if isinstance(corpus, str | os.PathLike):
        corpus = [corpus]
    corpora = dict(corpus) if isinstance(corpus, Mapping) else {"": list(corpus)}
    files = {lang: [str(p) for p in resolve_files(paths)] for lang, paths in corpora.items()}
    tok = tokenizer if isinstance(tokenizer, Tokenizer) else Tokenizer.load(tokenizer)
    identity = {
        "format_version": FORMAT_VERSION,
        "tokenizer": tok.fingerprint(),
        "corpus": {lang: [_file_identity(p) for p in paths] for lang, paths in files.items()},
        "settings": dataclasses.asdict(settings),
    }
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
    out = Path(out_dir)
    final = out / key
    if (final / META_FILE).is_file():
        log.info("shards cached: %s", final)
        return final

    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    _remove_stale(out, key)
    tmp = out / f"{_TMP_PREFIX}{key}-{os.getpid()}"
    tmp.mkdir()
    work = out / f"{_WORK_PREFIX}{key}"
    try:
        started = time.perf_counter()
        dtype = np.dtype(np.uint16 if tok.vocab_size <= 65535 else np.uint32)
        pieces = _tokenize_pieces(files, tok, work, settings, dtype, workers or available_cores(),
                                  batch_sentences, show_progress)
        meta = _write_shards(files, pieces, work, tok, tmp, settings, dtype)
        meta["elapsed_s"] = round(time.perf_counter() - started, 2)
        meta.update(identity, key=key, files=_file_sums(tmp))
        tok.save(tmp / "tokenizer")
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        try:
            os.rename(tmp, final)
        except OSError:  # another process finished the same set first
            if not (final / META_FILE).is_file():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, Exception):  # an error: nothing to resume (Ctrl-C keeps the pieces)
            shutil.rmtree(work, ignore_errors=True)
        if created and out.is_dir() and not any(out.iterdir()):  # no empty folder either
            out.rmdir()
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise MaskedLMError(f"{out}: no space left to write the shards ({e.strerror}); "
                                "nothing was written") from None
        raise
    log.info("shards written: %s", final)
    return final


def _remove_stale(out: Path, key: str) -> None:
    """Remove what a killed run left: its temp folder, or a set without meta.json."""
    if (out / key).is_dir():
        shutil.rmtree(out / key)
    leftovers = [*out.glob(f"{_TMP_PREFIX}{key}-*"), *out.glob(f"{_WORK_PREFIX}{key}/.*-*")]
    for tmp in leftovers:
        if not _alive(int(tmp.name.rsplit("-", 1)[1])):
            shutil.rmtree(tmp, ignore_errors=True)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)  # still running: leave its folder alone
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


DATA_FILES = tuple(f"{split}_{name}" for split in SPLITS for name in
                   ("tokens.bin", "word_starts.bin", "sentences.npy", "documents.npy")) + ("unigram.npy",)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 23):
            h.update(chunk)
    return h.hexdigest()


def _file_sums(directory: Path) -> dict[str, dict[str, Any]]:
    """``{name: {"bytes", "sha256"}}`` of the data files, for meta.json."""
    return {name: {"bytes": (directory / name).stat().st_size, "sha256": _sha256(directory / name)}
            for name in DATA_FILES}


def verify_shard_files(path: Path, meta: dict[str, Any]) -> None:
    """Check every data file against meta.json: present, same size, same SHA-256, and the
    offsets consistent with the token counts; a one-line error naming the file otherwise."""
    dtype = np.dtype(meta["dtype"])
    for split in SPLITS:
        expected = int(meta["splits"][split]["tokens"]) * dtype.itemsize
        for name in ("tokens", "word_starts"):
            file = path / f"{split}_{name}.bin"
            size = expected if name == "tokens" else expected // dtype.itemsize
            if not file.is_file() or file.stat().st_size != size:
                raise MaskedLMError(f"{file}: missing or truncated (expected {size} bytes, as "
                                    f"{META_FILE} says); prepare the shards again")
    for name, want in meta.get("files", {}).items():  # sets prepared before checksums: sizes only
        file = path / name
        if not file.is_file():
            raise MaskedLMError(f"{file}: missing; prepare the shards again")
        if file.stat().st_size != want["bytes"]:
            raise MaskedLMError(f"{file}: {file.stat().st_size} bytes, {META_FILE} says "
                                f"{want['bytes']} (truncated?); prepare the shards again")
        if _sha256(file) != want["sha256"]:
            raise MaskedLMError(f"{file}: checksum differs from {META_FILE} (the file was altered "
                                "or damaged); prepare the shards again")


def _load_npy(file: Path) -> np.ndarray:
    try:
        return np.load(file)
    except (OSError, ValueError, EOFError) as e:
        raise MaskedLMError(f"{file}: unreadable ({str(e).splitlines()[0][:100]})") from None


def _file_identity(path: str) -> dict[str, Any]:
    st = os.stat(path)
    return {"path": path, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _choose_held_out(
    n_docs: dict[str, int], settings: ShardSettings, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Indices of held-out documents per language: a fraction, >= 1 overall, capped."""
    held: dict[str, np.ndarray] = {}
    for lang, n_lang in n_docs.items():
        n = min(round(settings.valid_fraction * n_lang), settings.max_valid_documents, n_lang - 1)
        held[lang] = np.sort(rng.choice(n_lang, size=max(n, 0), replace=False))
    if settings.valid_fraction > 0 and not any(len(h) for h in held.values()):
        lang = max(n_docs, key=lambda g: n_docs[g])
        if n_docs[lang] >= 2:
            held[lang] = np.array([rng.integers(n_docs[lang])])
        else:
            log.warning("corpus has a single document: no validation split")
    return held


def _tokenize_pieces(
    files: dict[str, list[str]],
    tok: Tokenizer,
    work: Path,
    settings: ShardSettings,
    dtype: np.dtype,
    workers: int,
    batch_sentences: int,
    show_progress: bool,
) -> list[dict[str, Any]]:
    """Tokenize every file into its piece (those a killed run finished are kept); returns
    each file's piece.json, in file order."""
    from maskedlm.data.pieces import read_piece_info

    work.mkdir(parents=True, exist_ok=True)
    tok_file = work / "tokenizer.json"
    if not tok_file.is_file():
        atomic_write_text(tok_file, tok.hf.to_str())
    paths = [p for lang in files for p in files[lang]]
    jobs = [PieceJob(i, p, str(work), str(tok_file), tok.lowercase,
                     tuple(tok.special_tokens.items()), dtype.name, settings.one_doc_per_line,
                     settings.text_field, batch_sentences) for i, p in enumerate(paths)]
    infos: dict[int, dict[str, Any]] = {}
    for job in jobs:
        info = read_piece_info(work, job.index, job.path)
        if info is not None:
            infos[job.index] = info
    todo = [job for job in jobs if job.index not in infos]
    if infos:
        log.info("resuming: %d of %d files already tokenized in %s", len(infos), len(jobs), work)
    total_mb = sum(os.path.getsize(job.path) for job in todo) / 1e6
    with progress(round(total_mb, 1), "tokenizing", unit="MB", enabled=show_progress) as bar:
        n = min(workers, len(todo))
        if n <= 1:
            done: Iterator[dict[str, Any]] = map(tokenize_piece, todo)
            pool = None
        else:
            # spawn, not fork: the parent may hold torch or tokenizers threads
            # a fresh worker every 16 files: allocator fragmentation cannot add up on a
            # corpus of thousands of files
            pool = multiprocessing.get_context("spawn").Pool(n, initializer=worker_init,
                                                             maxtasksperchild=16)
            done = pool.imap_unordered(tokenize_piece, todo)
        try:
            for info in done:
                infos[info["index"]] = info
                bar.update(round(info["size"] / 1e6, 1))
        finally:
            if pool is not None:
                pool.terminate()
                pool.join()
    return [infos[i] for i in range(len(jobs))]


class _DocRef(NamedTuple):
    """A document as sampled: its language, piece, index in the piece, split."""

    lang: int
    reader: PieceReader
    doc: int
    held_out: bool
    sentences: int


def _language_docs(lang: int, readers: Sequence[tuple[int, Path]], dtype: np.dtype, rate: float,
                   rng: np.random.Generator, held_out: frozenset[int]) -> Iterator[_DocRef]:
    # As corpus._iter_language, on document indices: pass k keeps each training document
    # with probability min(1, rate - k); held-out documents come once, in the first pass.
    for k in range(max(1, int(np.ceil(rate)))):
        keep = min(1.0, rate - k)
        index = 0
        for piece, work in readers:
            reader = PieceReader(work, piece, dtype)
            for doc, size in enumerate(reader.doc_sentences.tolist()):
                if index in held_out:
                    if k == 0:
                        yield _DocRef(lang, reader, doc, True, size)
                elif keep >= 1.0 or rng.random() < keep:
                    yield _DocRef(lang, reader, doc, False, size)
                index += 1


class _SplitWriter:
    """Appends whole documents of one split to its files; offsets go to raw files that
    become .npy at the end, so nothing grows with the corpus in memory."""

    def __init__(self, directory: Path, split: str, n_langs: int, vocab_size: int) -> None:
        self.directory, self.split = directory, split
        names = ("tokens.bin", "word_starts.bin", "sentences.raw", "documents.raw")
        self._files: dict[str, BinaryIO] = {
            n: open(directory / f"{split}_{n}", "wb") for n in names  # noqa: SIM115
        }
        self.n_tokens = 0
        self.n_sentences = 0
        self.n_documents = 0
        self.lang_tokens = np.zeros(n_langs, dtype=np.int64)
        self.lang_sentences = np.zeros(n_langs, dtype=np.int64)
        self.unigram = np.zeros(vocab_size, dtype=np.int64)

    def append(self, ids: np.ndarray, starts: np.ndarray, lengths: np.ndarray,
               doc_sizes: np.ndarray, lang: int) -> None:
        """Whole documents (``doc_sizes`` sentence units each, ``lengths`` tokens per unit).
        Sentences without tokens are dropped, and documents left empty vanish."""
        doc_of = np.repeat(np.arange(len(doc_sizes)), doc_sizes)
        keep = lengths > 0
        lengths, doc_of = lengths[keep], doc_of[keep]
        if not len(lengths):
            return
        new_doc = np.ones(len(doc_of), dtype=bool)
        new_doc[1:] = doc_of[1:] != doc_of[:-1]
        f = self._files
        f["documents.raw"].write((self.n_sentences + np.flatnonzero(new_doc)).astype(np.int64))
        f["sentences.raw"].write((self.n_tokens + np.cumsum(lengths) - lengths).astype(np.int64))
        ids.tofile(f["tokens.bin"])
        starts.tofile(f["word_starts.bin"])
        self.unigram += np.bincount(ids, minlength=len(self.unigram))
        self.lang_tokens[lang] += len(ids)
        self.lang_sentences[lang] += len(lengths)
        self.n_tokens += len(ids)
        self.n_sentences += len(lengths)
        self.n_documents += int(new_doc.sum())

    def close(self) -> dict[str, int]:
        for f in self._files.values():
            f.close()
        for name, end in (("sentences", self.n_tokens), ("documents", self.n_sentences)):
            _raw_to_npy(self.directory / f"{self.split}_{name}.raw", end,
                        self.directory / f"{self.split}_{name}.npy")
        return {"tokens": self.n_tokens, "sentences": self.n_sentences,
                "documents": self.n_documents}


def _raw_to_npy(raw: Path, end: int, npy: Path) -> None:
    """int64 values in ``raw`` plus ``end`` as the .npy that np.save would write, streamed."""
    n = raw.stat().st_size // 8 + 1
    with open(npy, "wb") as out, open(raw, "rb") as f:
        header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.int64)),
                  "fortran_order": False, "shape": (n,)}
        np.lib.format.write_array_header_1_0(out, header)
        shutil.copyfileobj(f, out, 1 << 22)
        out.write(np.array([end], dtype=np.int64).tobytes())
    raw.unlink()


def _write_shards(
    files: dict[str, list[str]],
    pieces: list[dict[str, Any]],
    work: Path,
    tok: Tokenizer,
    directory: Path,
    settings: ShardSettings,
    dtype: np.dtype,
) -> dict[str, Any]:
    """Assemble the pieces into the shards: hold out, sample languages, copy documents."""
    valid_rng, sample_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(settings.seed).spawn(2)
    )
    langs = list(files)
    first = list(itertools.accumulate((len(files[g]) for g in langs), initial=0))
    lang_pieces = {g: list(range(first[i], first[i + 1])) for i, g in enumerate(langs)}
    n_docs = {g: sum(pieces[p]["documents"] for p in lang_pieces[g]) for g in langs}
    n_sentences = {g: sum(pieces[p]["sentences"] for p in lang_pieces[g]) for g in langs}
    if not sum(n_sentences.values()):
        raise MaskedLMError(f"{files[langs[0]][0]}: empty corpus (no sentences)")
    held = _choose_held_out(n_docs, settings, valid_rng)
    held_sentences = {g: _held_sentences(lang_pieces[g], pieces, work, dtype, held[g])
                      for g in langs}
    train_sentences = {g: n_sentences[g] - held_sentences[g] for g in langs}
    train_docs = {g: n_docs[g] - len(held[g]) for g in langs}
    plan = _plan(train_sentences, train_docs, settings)

    streams = {i: _language_docs(i, [(p, work) for p in lang_pieces[g]], dtype, plan.rate(g),
                                 sample_rng, frozenset(held[g].tolist()))
               for i, g in enumerate(langs)}
    targets = {i: plan.target[g] for i, g in enumerate(langs)}
    writers = [_SplitWriter(directory, split, len(langs), tok.vocab_size) for split in SPLITS]
    run: list[Any] = []  # [reader, first doc, end doc, split, lang]: consecutive documents

    def flush() -> None:
        if run:
            reader, a, b, split, lang = run
            for lo, hi in reader.chunks(a, b, COPY_TOKENS):
                writers[split].append(*reader.documents(lo, hi), lang)

    for ref in interleave_languages(streams, targets, sample_rng,
                                    lambda r: 0 if r.held_out else r.sentences):
        split = int(ref.held_out)
        if run and run[0] is ref.reader and run[2] == ref.doc and run[3] == split:
            run[2] += 1
            continue
        flush()
        run = [ref.reader, ref.doc, ref.doc + 1, split, ref.lang]
    flush()
    counts = {w.split: w.close() for w in writers}
    if counts["train"]["tokens"] == 0:
        raise MaskedLMError(f"{files[langs[0]][0]}: corpus gives no tokens for training")
    np.save(directory / "unigram.npy", writers[0].unigram)
    plan_info = plan.to_dict()
    for i, lang in enumerate(langs):
        plan_info["languages"][lang]["written"] = {
            w.split: {"tokens": int(w.lang_tokens[i]), "sentences": int(w.lang_sentences[i])}
            for w in writers
        }
    return {
        "dtype": dtype.name,
        "vocab_size": tok.vocab_size,
        "special_ids": {
            "pad": tok.pad_id,
            "unk": tok.unk_id,
            "cls": tok.cls_id,
            "sep": tok.sep_id,
            "mask": tok.mask_id,
        },
        "lowercase": tok.lowercase,
        "splits": counts,
        # flat copies for quick reporting (`maskedlm prepare` prints these)
        "train_tokens": counts["train"]["tokens"],
        "valid_tokens": counts["valid"]["tokens"],
        "languages": plan_info,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _held_sentences(piece_ids: list[int], pieces: list[dict[str, Any]], work: Path,
                    dtype: np.dtype, held: np.ndarray) -> int:
    """Sentence units in the held-out documents (indices over the language's pieces)."""
    total, start = 0, 0
    for p in piece_ids:
        stop = start + pieces[p]["documents"]
        local = held[(held >= start) & (held < stop)] - start
        if len(local):
            total += int(PieceReader(work, p, dtype).doc_sentences[local].sum())
        start = stop
    return total


def _plan(
    sentences: dict[str, int], documents: dict[str, int], settings: ShardSettings
) -> LanguagePlan:
    if len(sentences) == 1 and settings.total_sentences is None:
        lang, n = next(iter(sentences.items()))  # one language: the corpus as it is
        return LanguagePlan(
            settings.alpha, {lang: n}, {lang: 1.0}, {lang: 1.0}, {lang: n}, documents
        )
    return plan_languages(
        sentences, settings.alpha, total_sentences=settings.total_sentences, documents=documents
    )


# ------------------------------------------------------------------------ loading


class ShardSet:
    """A prepared set of shards: memmapped tokens and their sentence/document offsets.

    >>> shards = ShardSet.load("runs/shards")  # doctest: +SKIP
    >>> shards.tokens("train")[:10]  # doctest: +SKIP
    """

    def __init__(self, path: Path, meta: dict[str, Any]) -> None:
        self.path = path
        self.meta = meta
        self.dtype = np.dtype(meta["dtype"])
        self.vocab_size: int = int(meta["vocab_size"])
        self.special_ids: dict[str, int] = dict(meta["special_ids"])
        self._cache: dict[tuple[str, str], np.ndarray] = {}

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ShardSet:
        """Load a prepared set: its own folder, or the ``out_dir`` holding it (the most
        recently prepared set when there are several)."""
        p = Path(path)
        if not (p / META_FILE).is_file():
            if not p.is_dir():
                raise MaskedLMError(f"{p}: no such shard folder")
            found = [
                d for d in p.iterdir() if not d.name.startswith(".") and (d / META_FILE).is_file()
            ]
            if not found:
                raise MaskedLMError(f"{p}: no prepared shards ({META_FILE}) in this folder")
            p = max(found, key=lambda d: (d / META_FILE).stat().st_mtime_ns)
            if len(found) > 1:
                log.info("%d shard sets in %s; using the most recent, %s", len(found), path, p.name)
        try:
            meta = json.loads((p / META_FILE).read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise MaskedLMError(f"{p / META_FILE}: not valid JSON ({e})") from None
        if not isinstance(meta, dict):
            raise MaskedLMError(f"{p / META_FILE}: not a shard description (a JSON object)")
        if meta.get("format_version") != FORMAT_VERSION:
            raise MaskedLMError(
                f"{p / META_FILE}: format_version {meta.get('format_version')} is not "
                f"{FORMAT_VERSION}; prepare the shards again"
            )
        try:
            shards = cls(p, meta)
            verify_shard_files(p, meta)
            for split in SPLITS:
                sentences, documents = shards.sentence_offsets(split), shards.document_offsets(split)
                if (len(sentences) - 1 != meta["splits"][split]["sentences"]
                        or int(sentences[-1]) != meta["splits"][split]["tokens"]
                        or int(documents[-1]) != len(sentences) - 1):
                    raise MaskedLMError(f"{p / META_FILE}: does not match "
                                        f"{split}_sentences.npy/{split}_documents.npy; "
                                        "prepare the shards again")
        except (KeyError, TypeError, ValueError, IndexError) as e:
            raise MaskedLMError(f"{p / META_FILE}: malformed ({type(e).__name__}: {e}); "
                                "prepare the shards again") from None
        return shards

    @property
    def splits(self) -> tuple[str, ...]:
        """Splits that hold tokens."""
        return tuple(s for s in SPLITS if self.meta["splits"][s]["tokens"] > 0)

    def _check(self, split: str) -> None:
        if split not in SPLITS:
            raise MaskedLMError(f"split: must be one of {SPLITS}, got {split!r}")

    def _memmap(self, split: str, name: str, dtype: np.dtype) -> np.ndarray:
        self._check(split)
        key = (split, name)
        if key not in self._cache:
            n = int(self.meta["splits"][split]["tokens"])
            file = self.path / f"{split}_{name}.bin"
            self._cache[key] = (
                np.memmap(file, dtype=dtype, mode="r", shape=(n,)) if n else np.zeros(0, dtype)
            )
        return self._cache[key]

    def tokens(self, split: str) -> np.ndarray:
        """Token ids of ``split`` as a read-only memmap (uint16 or uint32)."""
        return self._memmap(split, "tokens", self.dtype)

    def word_starts(self, split: str) -> np.ndarray:
        """Bool memmap, True at the first sub-word of each word."""
        return self._memmap(split, "word_starts", np.dtype(np.bool_))

    def sentence_offsets(self, split: str) -> np.ndarray:
        """int64 (n_sentences + 1,): token offset of each sentence unit, then the end."""
        self._check(split)
        return _load_npy(self.path / f"{split}_sentences.npy")

    def document_offsets(self, split: str) -> np.ndarray:
        """int64 (n_documents + 1,): sentence index of each document start, then the end."""
        self._check(split)
        return _load_npy(self.path / f"{split}_documents.npy")

    def tokenizer(self) -> Tokenizer:
        """The tokenizer the shards were made with."""
        return Tokenizer.load(self.path / "tokenizer")

    def unigram_counts(self) -> np.ndarray:
        """int64 (vocab_size,): how often each id occurs in the train split."""
        return _load_npy(self.path / "unigram.npy")

    def unigram_probs(self) -> np.ndarray:
        """float64 (vocab_size,): unigram distribution of the train split."""
        counts = self.unigram_counts().astype(np.float64)
        return counts / max(counts.sum(), 1.0)

    def __repr__(self) -> str:
        s = self.meta["splits"]
        train, valid = s["train"]["tokens"], s["valid"]["tokens"]
        return f"ShardSet({self.path}, train={train:,} tokens, valid={valid:,})"
