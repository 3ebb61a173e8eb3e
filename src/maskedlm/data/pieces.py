"""One corpus file tokenized into a *piece*: the unit that `prepare` parallelizes and resumes.

``prepare`` tokenizes every input file on its own, in worker processes, into
``<work>/<index>/``::

    piece.json            counts, the file's identity, the piece format
    tokens.bin            token ids in the shards' dtype (uint16/uint32), special ids -> [UNK]
    word_starts.bin       uint8 0/1, same length
    sentence_tokens.bin   int32 tokens of every sentence unit (0 when it tokenizes to nothing)
    document_sentences.bin int64 sentence units of every document
    document_tokens.bin   int64 tokens of every document

A piece depends on its file, the tokenizer and the reading settings only, so the shards
assembled from the pieces in file order are the same bytes for any number of workers. A
piece is written to a temporary folder and renamed into place when whole: a killed
``prepare`` keeps the files it finished and tokenizes the others when run again.
Memory is one batch of sentences per worker.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from maskedlm.data.corpus import iter_file_documents
from maskedlm.data.tokenizer import Tokenizer

PIECE_VERSION = 1
PIECE_FILE = "piece.json"


@dataclass(frozen=True)
class PieceJob:
    """What a worker needs to tokenize one file (picklable: the tokenizer travels as JSON)."""

    index: int
    path: str
    work: str
    tokenizer_file: str  # a tokenizer.json, loaded once per worker
    lowercase: bool
    special: tuple[tuple[str, str], ...]
    dtype: str
    one_doc_per_line: bool
    text_field: str
    batch_sentences: int


def piece_dir(work: str | os.PathLike[str], index: int) -> Path:
    return Path(work) / f"{index:06d}"


def read_piece_info(work: str | os.PathLike[str], index: int, path: str) -> dict[str, Any] | None:
    """The ``piece.json`` of a finished piece of ``path``, or None when it must be made."""
    file = piece_dir(work, index) / PIECE_FILE
    try:
        info = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if (info.get("version") != PIECE_VERSION or info.get("path") != path
            or info.get("index") != index):
        return None
    return dict(info)


@functools.lru_cache(maxsize=2)
def _tokenizer(tokenizer_file: str, lowercase: bool,
               special: tuple[tuple[str, str], ...]) -> tuple[Tokenizer, np.ndarray]:
    from tokenizers import Tokenizer as HFTokenizer

    tok = Tokenizer(HFTokenizer.from_file(tokenizer_file), lowercase=lowercase,
                    special=dict(special))
    specials = np.array(sorted(tok.special_ids - {tok.unk_id}), dtype=np.int64)
    return tok, specials


def worker_init() -> None:
    """Pool initializer: one thread per worker process (the pool is the parallelism)."""
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    os.environ["RAYON_NUM_THREADS"] = "1"


def tokenize_piece(job: PieceJob) -> dict[str, Any]:
    """Tokenize ``job.path`` into its piece folder (atomically) and return its piece.json.

    >>> info = tokenize_piece(job)  # doctest: +SKIP
    >>> info["tokens"], info["documents"]  # doctest: +SKIP
    """
    done = read_piece_info(job.work, job.index, job.path)
    if done is not None:
        return done
    tok, specials = _tokenizer(job.tokenizer_file, job.lowercase, job.special)
    final = piece_dir(job.work, job.index)
    tmp = Path(job.work) / f".{final.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        with _PieceWriter(tmp, np.dtype(job.dtype)) as writer:
            docs = iter_file_documents(job.path, one_doc_per_line=job.one_doc_per_line,
                                       text_field=job.text_field)
            texts: list[str] = []
            doc_sizes: list[int] = []
            for doc in docs:
                texts.extend(doc)
                doc_sizes.append(len(doc))
                if len(texts) >= job.batch_sentences:
                    writer.write(tok, specials, texts, doc_sizes)
                    texts, doc_sizes = [], []
            writer.write(tok, specials, texts, doc_sizes)
        st = os.stat(job.path)
        info = {"version": PIECE_VERSION, "index": job.index, "path": job.path,
                "size": st.st_size,
                "mtime_ns": st.st_mtime_ns, **writer.counts()}
        (tmp / PIECE_FILE).write_text(json.dumps(info) + "\n", encoding="utf-8")
        try:
            os.rename(tmp, final)
        except OSError:  # another prepare of the same set finished this piece first
            if read_piece_info(job.work, job.index, job.path) is None:
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return info


class _PieceWriter:
    def __init__(self, directory: Path, dtype: np.dtype) -> None:
        self.dtype = dtype
        names = ("tokens", "word_starts", "sentence_tokens", "document_sentences",
                 "document_tokens")
        self.files: dict[str, BinaryIO] = {n: open(directory / f"{n}.bin", "wb") for n in names}  # noqa: SIM115
        self.tokens = self.sentences = self.documents = 0

    def __enter__(self) -> _PieceWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        for f in self.files.values():
            f.close()

    def write(self, tok: Tokenizer, specials: np.ndarray, texts: list[str],
              doc_sizes: list[int]) -> None:
        if not texts:
            return
        ids, starts, lengths = tok.encode_flat(texts)
        # special tokens written literally in the text ("[CLS]") become [UNK]: in the shards
        # a special id only ever comes from the instance builder
        ids[np.isin(ids, specials)] = tok.unk_id
        sizes = np.asarray(doc_sizes, dtype=np.int64)
        doc_tokens = np.add.reduceat(lengths, np.cumsum(sizes) - sizes) if len(sizes) else sizes
        ids.astype(self.dtype).tofile(self.files["tokens"])
        starts.astype(np.uint8).tofile(self.files["word_starts"])
        lengths.astype(np.int32).tofile(self.files["sentence_tokens"])
        sizes.tofile(self.files["document_sentences"])
        doc_tokens.astype(np.int64).tofile(self.files["document_tokens"])
        self.tokens += len(ids)
        self.sentences += len(lengths)
        self.documents += len(sizes)

    def counts(self) -> dict[str, int]:
        return {"tokens": self.tokens, "sentences": self.sentences, "documents": self.documents}


class PieceReader:
    """Read ranges of documents of one finished piece (only the per-document arrays are
    held in memory; tokens and sentence lengths are read range by range)."""

    def __init__(self, work: str | os.PathLike[str], index: int, dtype: np.dtype) -> None:
        self.dir = piece_dir(work, index)
        self.dtype = dtype
        self.doc_sentences = np.fromfile(self.dir / "document_sentences.bin", dtype=np.int64)
        doc_tokens = np.fromfile(self.dir / "document_tokens.bin", dtype=np.int64)
        self.sentence_at = np.concatenate([[0], np.cumsum(self.doc_sentences)])
        self.token_at = np.concatenate([[0], np.cumsum(doc_tokens)])

    @property
    def n_documents(self) -> int:
        return len(self.doc_sentences)

    def _read(self, name: str, dtype: np.dtype, start: int, stop: int) -> np.ndarray:
        with open(self.dir / f"{name}.bin", "rb") as f:
            return np.fromfile(f, dtype=dtype, count=stop - start,
                               offset=start * np.dtype(dtype).itemsize)

    def chunks(self, a: int, b: int, max_tokens: int) -> Iterator[tuple[int, int]]:
        """Split documents [a, b) into consecutive ranges of about ``max_tokens`` tokens."""
        while a < b:
            stop = int(np.searchsorted(self.token_at, self.token_at[a] + max_tokens, "right")) - 1
            stop = min(max(stop, a + 1), b)
            yield a, stop
            a = stop

    def documents(self, a: int, b: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Documents [a, b): (ids, word_starts uint8, sentence lengths, sentences per doc)."""
        t0, t1 = int(self.token_at[a]), int(self.token_at[b])
        s0, s1 = int(self.sentence_at[a]), int(self.sentence_at[b])
        return (self._read("tokens", self.dtype, t0, t1),
                self._read("word_starts", np.dtype(np.uint8), t0, t1),
                self._read("sentence_tokens", np.dtype(np.int32), s0, s1).astype(np.int64),
                self.doc_sentences[a:b])
