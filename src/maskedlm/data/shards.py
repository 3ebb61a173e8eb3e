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
Shards are written to a temporary folder and renamed into place, so a set either
exists whole or not at all. Loading checks every file against its size and checksum
in ``meta.json`` (one extra read of every file), so a truncated or
altered shard is an error naming the file, never silent garbage.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from maskedlm.data.corpus import (
    LanguagePlan,
    iter_documents,
    iter_multilingual_documents,
    plan_languages,
    resolve_files,
)
from maskedlm.data.tokenizer import Tokenizer
from maskedlm.errors import MaskedLMError
from maskedlm.progress import progress

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
SPLITS = ("train", "valid")
META_FILE = "meta.json"
_TMP_PREFIX = ".tmp-"


@dataclass(frozen=True)
class ShardSettings:
    """Settings that change the shards (and so the cache key)."""

    one_doc_per_line: bool = False
    alpha: float = 0.3  # XLM-R's language sampling exponent (Conneau et al. 2020)
    total_sentences: int | None = None
    seed: int = 0
    valid_fraction: float = 0.01
    max_valid_documents: int = 1000

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
    alpha: float = 0.3,
    total_sentences: int | None = None,
    seed: int = 0,
    valid_fraction: float = 0.01,
    max_valid_documents: int = 1000,
    batch_sentences: int = 4096,
    show_progress: bool = True,
) -> Path:
    """Tokenize ``corpus`` (paths, or ``{lang: paths}``) into ``out_dir/<key>/``; cached.

    ``valid_fraction`` of the documents (at least 1, at most ``max_valid_documents``,
    per language) are held out for validation. A multilingual corpus is resampled with
    ``alpha`` (see :func:`maskedlm.data.corpus.plan_languages`).

    >>> path = prepare_shards(["data/train.txt"], "runs/tok", "runs/shards")  # doctest: +SKIP
    >>> ShardSet.load(path).meta["splits"]["train"]["tokens"]  # doctest: +SKIP
    """
    settings = ShardSettings(
        one_doc_per_line, alpha, total_sentences, seed, valid_fraction, max_valid_documents
    )
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
    try:
        meta = _write_shards(files, tok, tmp, settings, batch_sentences, show_progress)
        meta.update(identity, key=key, files=_file_sums(tmp))
        tok.save(tmp / "tokenizer")
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        try:
            os.rename(tmp, final)
        except OSError:  # another process finished the same set first
            if not (final / META_FILE).is_file():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if created and not any(out.iterdir()):  # leave no empty folder behind either
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
    for tmp in out.glob(f"{_TMP_PREFIX}{key}-*"):
        pid = int(tmp.name.rsplit("-", 1)[1])
        try:
            if pid != os.getpid():
                os.kill(pid, 0)  # still running: leave its folder alone
                continue
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        shutil.rmtree(tmp, ignore_errors=True)


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
    doc_sentences: dict[str, np.ndarray], settings: ShardSettings, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Indices of held-out documents per language: a fraction, >= 1 overall, capped."""
    held: dict[str, np.ndarray] = {}
    for lang, counts in doc_sentences.items():
        n_docs = len(counts)
        n = min(round(settings.valid_fraction * n_docs), settings.max_valid_documents, n_docs - 1)
        held[lang] = np.sort(rng.choice(n_docs, size=max(n, 0), replace=False))
    if settings.valid_fraction > 0 and not any(len(h) for h in held.values()):
        lang = max(doc_sentences, key=lambda g: len(doc_sentences[g]))
        if len(doc_sentences[lang]) >= 2:
            held[lang] = np.array([rng.integers(len(doc_sentences[lang]))])
        else:
            log.warning("corpus has a single document: no validation split")
    return held


class _SplitWriter:
    """Appends tokenized sentences of one split to its files; keeps the offsets."""

    def __init__(self, directory: Path, split: str, dtype: np.dtype, n_langs: int) -> None:
        self.split = split
        self.dtype = dtype
        self._tokens: BinaryIO = open(directory / f"{split}_tokens.bin", "wb")  # noqa: SIM115
        self._starts: BinaryIO = open(directory / f"{split}_word_starts.bin", "wb")  # noqa: SIM115
        self.n_tokens = 0
        self.n_sentences = 0
        self.sentence_offsets: list[np.ndarray] = []
        self.document_starts: list[np.ndarray] = []
        self.last_doc = -1
        self.lang_tokens = np.zeros(n_langs, dtype=np.int64)
        self.lang_sentences = np.zeros(n_langs, dtype=np.int64)

    def append(
        self,
        ids: np.ndarray,
        starts: np.ndarray,
        lengths: np.ndarray,
        docs: np.ndarray,
        langs: np.ndarray,
    ) -> None:
        """Sentences given by lengths (ids/starts concatenated); ``docs`` = document number
        of each sentence. Empty sentences are dropped; a document starts where the
        document number changes, so documents left empty vanish."""
        keep = lengths > 0
        lengths, docs, langs = lengths[keep], docs[keep], langs[keep]
        if not len(lengths):
            return
        previous = np.concatenate([[self.last_doc], docs[:-1]])
        self.document_starts.append(self.n_sentences + np.flatnonzero(docs != previous))
        self.sentence_offsets.append(self.n_tokens + np.cumsum(lengths) - lengths)
        ids.astype(self.dtype).tofile(self._tokens)
        starts.astype(np.uint8).tofile(self._starts)
        np.add.at(self.lang_tokens, langs, lengths)
        np.add.at(self.lang_sentences, langs, 1)
        self.n_tokens += int(lengths.sum())
        self.n_sentences += len(lengths)
        self.last_doc = int(docs[-1])

    def close(self, directory: Path) -> dict[str, int]:
        self._tokens.close()
        self._starts.close()
        sentences = np.concatenate([*self.sentence_offsets, [self.n_tokens]]).astype(np.int64)
        documents = np.concatenate([*self.document_starts, [self.n_sentences]]).astype(np.int64)
        np.save(directory / f"{self.split}_sentences.npy", sentences)
        np.save(directory / f"{self.split}_documents.npy", documents)
        return {
            "tokens": self.n_tokens,
            "sentences": self.n_sentences,
            "documents": len(documents) - 1,
        }


def _write_shards(
    files: dict[str, list[str]],
    tok: Tokenizer,
    directory: Path,
    settings: ShardSettings,
    batch_sentences: int,
    show_progress: bool,
) -> dict[str, Any]:
    started = time.perf_counter()
    valid_rng, sample_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(settings.seed).spawn(2)
    )
    langs = list(files)
    doc_sentences: dict[str, np.ndarray] = {}
    with progress(None, "counting", unit="doc", enabled=show_progress) as bar:
        for lang, paths in files.items():
            counts = []
            for doc in iter_documents(paths, one_doc_per_line=settings.one_doc_per_line):
                counts.append(len(doc))
                bar.update()
            doc_sentences[lang] = np.asarray(counts, dtype=np.int64)
    if not sum(int(c.sum()) for c in doc_sentences.values()):
        raise MaskedLMError(f"{files[langs[0]][0]}: empty corpus (no sentences)")
    held = _choose_held_out(doc_sentences, settings, valid_rng)
    train_sentences = {g: int(c.sum() - c[held[g]].sum()) for g, c in doc_sentences.items()}
    train_docs = {g: len(c) - len(held[g]) for g, c in doc_sentences.items()}
    plan = _plan(train_sentences, train_docs, settings)

    dtype = np.dtype(np.uint16 if tok.vocab_size <= 65535 else np.uint32)
    writers = [_SplitWriter(directory, split, dtype, len(langs)) for split in SPLITS]
    unigram = np.zeros(tok.vocab_size, dtype=np.int64)
    # special tokens written literally in the text ("[CLS]") become [UNK]: in the shards a
    # special id only ever comes from the instance builder
    specials = np.array(sorted(tok.special_ids - {tok.unk_id}), dtype=np.int64)
    buffer: dict[str, list[Any]] = {"text": [], "split": [], "doc": [], "lang": []}

    def flush() -> None:
        if not buffer["text"]:
            return
        ids, starts, lengths = tok.encode_flat(buffer["text"])
        ids[np.isin(ids, specials)] = tok.unk_id
        split_of, doc_of, lang_of = (
            np.asarray(buffer[k], dtype=np.int64) for k in ("split", "doc", "lang")
        )
        for s, writer in enumerate(writers):
            sel = split_of == s
            tok_sel = np.repeat(sel, lengths)
            writer.append(ids[tok_sel], starts[tok_sel], lengths[sel], doc_of[sel], lang_of[sel])
            if s == 0:
                unigram[:] += np.bincount(ids[tok_sel], minlength=tok.vocab_size)
        for values in buffer.values():
            values.clear()

    total = sum(plan.target.values()) + sum(int(c[held[g]].sum()) for g, c in doc_sentences.items())
    docs = iter_multilingual_documents(
        files,
        plan,
        sample_rng,
        one_doc_per_line=settings.one_doc_per_line,
        held_out={g: h.tolist() for g, h in held.items()},
    )
    with progress(total, "tokenizing", unit="sentence", enabled=show_progress) as bar:
        for number, doc in enumerate(docs):
            n = len(doc.sentences)
            buffer["text"].extend(doc.sentences)
            buffer["split"].extend([int(doc.held_out)] * n)
            buffer["doc"].extend([number] * n)
            buffer["lang"].extend([langs.index(doc.lang)] * n)
            if len(buffer["text"]) >= batch_sentences:
                flush()
            bar.update(n)
        flush()
    counts = {w.split: w.close(directory) for w in writers}
    if counts["train"]["tokens"] == 0:
        raise MaskedLMError(f"{files[langs[0]][0]}: corpus gives no tokens for training")
    np.save(directory / "unigram.npy", unigram)
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
        "elapsed_s": round(time.perf_counter() - started, 2),
    }


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
