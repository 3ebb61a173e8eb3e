"""Vectors of a text file's sentences, words or sub-words, written as ``.npy`` with a
``.rows.jsonl`` sidecar that says what each row is (``maskedlm embed``).

>>> import maskedlm
>>> from maskedlm.embeddings.embed import embed_to_file, read_sentences
>>> model = maskedlm.load("all-MiniLM-L6-v2/")  # doctest: +SKIP
>>> embed_to_file(model, read_sentences("in.txt"), "vecs.npy", unit="word")  # doctest: +SKIP
{'out': 'vecs.npy', 'rows': 'vecs.rows.jsonl', 'count': 23, 'dims': 384, 'unit': 'word'}

Row ``r`` of ``vecs.npy`` (float32, one row a vector) is line ``r`` of the sidecar:
``{"row": r, "line": n, "word_index": j, "word": w}`` for words,
``{"row": r, "line": n, "subword_index": j, "token": t}`` for sub-words (no [CLS]/[SEP]),
``{"row": r, "line": n, "text": s}`` for sentences; ``line`` is the 1-based line of the
input file (blank lines are skipped, not renumbered).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from maskedlm.data.corpus import read_text_lines
from maskedlm.embeddings.pooling import (
    UNITS,
    Embedder,
    Standardizer,
    iter_token_vectors,
    pool_sentence,
    pool_words,
    tokenize,
)
from maskedlm.errors import MaskedLMError
from maskedlm.files import atomic_write_stream, atomic_write_text
from maskedlm.options import EmbedOptions, VectorOptions

Line = tuple[int, str]  # (1-based line number, the line's text without surrounding space)


def read_sentences(path: str | os.PathLike[str]) -> list[Line]:
    """The non-blank lines of a text file, one sentence a line, with their line numbers.

    >>> read_sentences("in.txt")[:2]  # doctest: +SKIP
    [(1, 'He sat on the bank .'), (3, 'The bank lent him money .')]
    """
    path = Path(path)
    lines = [(n, ln.strip()) for n, ln in enumerate(read_text_lines(path, "input file"), 1)
             if ln.strip()]
    if not lines:
        raise MaskedLMError(f"{path}: no sentences (one per line)")
    return lines


def check_unit_pool(unit: str, pool: str) -> None:
    """Refuse a pooling that has no meaning for the unit: [CLS] for a word, the first
    sub-word for a sentence (``mean`` fits both; sub-words are not pooled)."""
    if unit not in UNITS:
        raise MaskedLMError(f"unit {unit!r}: expected one of {', '.join(UNITS)}")
    if unit == "word" and pool == "cls" or unit == "sentence" and pool == "first":
        raise MaskedLMError(f"--pool {pool} does not apply to --unit {unit}")


def embed_lines(model: Embedder, lines: Sequence[Line], *, unit: str = EmbedOptions.unit, pool: str = VectorOptions.pool,
                layers: str = VectorOptions.layers, pretokenized: bool = False,
                standardize: Standardizer | None = None,
                **kw: Any) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """One (N, H) float32 array of all ``unit`` vectors of ``lines``, in order, and a
    record per row (see the module's docstring); ``pretokenized`` lines are split into
    words at spaces, others by the tokenizer. ``kw``: ``max_length``, ``batch_tokens``,
    ``progress`` of :func:`~maskedlm.embeddings.pooling.iter_token_vectors`.

    >>> vecs, rows = embed_lines(model, [(1, "He sat .")], unit="word")  # doctest: +SKIP
    >>> vecs.shape, rows[1]  # doctest: +SKIP
    ((3, 384), {'line': 1, 'word_index': 1, 'word': 'sat'})
    """
    check_unit_pool(unit, pool)
    pieces = tokenize(model.tokenizer, [ln.split() if pretokenized else ln for _, ln in lines])
    parts: list[np.ndarray] = [np.empty(0)] * len(pieces)
    for i, tokens in iter_token_vectors(model, pieces, layers=layers, **kw):
        if unit == "word":
            parts[i] = pool_words(tokens, pieces[i].word_starts, pool)
        elif unit == "subword":
            parts[i] = tokens[1:-1]
        else:
            parts[i] = pool_sentence(tokens, pool)[None]
    rows: list[dict[str, Any]] = []
    for (n, text), p in zip(lines, pieces, strict=True):
        if unit == "word":
            rows += [{"line": n, "word_index": j, "word": w} for j, w in enumerate(p.words)]
        elif unit == "subword":
            toks = model.tokenizer.convert_ids_to_tokens(p.ids.tolist())
            rows += [{"line": n, "subword_index": j, "token": t} for j, t in enumerate(toks)]
        else:
            rows.append({"line": n, "text": text})
    vecs = np.concatenate(parts).astype(np.float32)
    if standardize is not None:
        vecs = standardize.apply(vecs)
    return vecs, rows


def rows_path(out: str | os.PathLike[str]) -> Path:
    """The sidecar beside ``out``: ``vecs.npy`` -> ``vecs.rows.jsonl``."""
    return Path(out).with_suffix(".rows.jsonl")


def write_vectors(out: str | os.PathLike[str], vectors: np.ndarray,
                  rows: Sequence[dict[str, Any]]) -> Path:
    """Write ``vectors`` to ``out`` (``.npy``) and ``rows`` to its sidecar, each atomically;
    returns the sidecar's path."""
    sidecar = rows_path(out)
    atomic_write_stream(Path(out), lambda f: np.save(f, vectors))
    atomic_write_text(sidecar, "".join(json.dumps({"row": r, **row}) + "\n"
                                       for r, row in enumerate(rows)))
    return sidecar


def embed_to_file(model: Embedder, lines: Sequence[Line], out: str | os.PathLike[str], *,
                  unit: str = EmbedOptions.unit, pool: str = VectorOptions.pool, layers: str = VectorOptions.layers,
                  pretokenized: bool = False, standardize: Standardizer | None = None,
                  **kw: Any) -> dict[str, Any]:
    """:func:`embed_lines` then :func:`write_vectors`: ``out`` (.npy) and its
    ``.rows.jsonl``; returns where they are, how many vectors and their size.

    >>> embed_to_file(model, read_sentences("in.txt"), "v.npy", unit="sentence")  # doctest: +SKIP
    {'out': 'v.npy', 'rows': 'v.rows.jsonl', 'count': 2, 'dims': 384, 'unit': 'sentence'}
    """
    vecs, rows = embed_lines(model, lines, unit=unit, pool=pool, layers=layers,
                             pretokenized=pretokenized, standardize=standardize, **kw)
    sidecar = write_vectors(out, vecs, rows)
    return {"out": str(Path(out)), "rows": str(sidecar), "count": int(vecs.shape[0]),
            "dims": int(vecs.shape[1]), "unit": unit}
