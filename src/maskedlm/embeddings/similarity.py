"""Similarity of words in context (WiC) and of word types (SimLex-999, WordSim-353).

>>> from maskedlm.embeddings.similarity import evaluate_wic, evaluate_word_pairs
>>> evaluate_wic(model, "data/wic")  # doctest: +SKIP
{'dev_accuracy': 0.62, 'train_accuracy': 0.64, 'threshold': 0.55}

WiC (Pilehvar & Camacho-Collados 2019): the cosine of the target word's two contextual
vectors is thresholded; the threshold is the one that maximises train accuracy and
is then applied unchanged to dev.

Type-level similarity: a word's vector is the average of its contextual vectors over
up to ``max_occurrences`` sentences of a corpus (Bommasani et al. 2020 call this a
"pooled" static embedding); the cosine of two such vectors is compared with human
ratings by Spearman's rank correlation.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from maskedlm.data.corpus import is_number, read_text_lines
from maskedlm.embeddings.pooling import Standardizer, cosine, iter_word_vectors, tokenize
from maskedlm.errors import MaskedLMError
from maskedlm.options import VectorOptions, WordPairOptions

if TYPE_CHECKING:
    from maskedlm.embeddings.pooling import Embedder


# ----------------------------------------------------------------------------- statistics
def rankdata(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n, ties sharing their average rank (as ``scipy.stats.rankdata``).

    >>> rankdata(np.array([10.0, 20.0, 10.0, 30.0]))
    array([1.5, 3. , 1.5, 4. ])
    """
    x = np.asarray(x, dtype=np.float64)
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = np.arange(1, len(x) + 1)
    sorted_x = x[order]
    # average the ranks inside each run of equal values
    bounds = np.flatnonzero(np.diff(sorted_x)) + 1
    for a, b in zip(np.r_[0, bounds], np.r_[bounds, len(x)], strict=True):
        if b - a > 1:
            ranks[order[a:b]] = (a + 1 + b) / 2
    return ranks


def spearman(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float:
    """Spearman's rho: the Pearson correlation of the (tie-averaged) ranks.

    >>> round(spearman([1, 2, 3, 4], [10, 20, 40, 30]), 3)
    0.8
    """
    ra, rb = rankdata(np.asarray(a)), rankdata(np.asarray(b))
    if len(ra) != len(rb) or len(ra) < 2:
        raise MaskedLMError(f"spearman: need two equally long lists of >= 2 values, got {len(ra)}, {len(rb)}")
    ra, rb = ra - ra.mean(), rb - rb.mean()
    den = np.sqrt((ra * ra).sum() * (rb * rb).sum())
    return float((ra * rb).sum() / den) if den > 0 else 0.0


def choose_threshold(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """The threshold t maximising accuracy of ``score >= t`` -> True; (t, accuracy).

    Only midpoints between distinct consecutive scores (and the two extremes) are
    tried, so the choice does not depend on where ties fall. Compare in float64.

    >>> choose_threshold(np.array([0.1, 0.4, 0.35, 0.8]), np.array([False, True, False, True]))
    (0.375, 1.0)
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=bool)
    if len(scores) == 0:
        raise MaskedLMError("threshold: no scores")
    order = np.argsort(-scores, kind="mergesort")
    s, y = scores[order], labels[order]
    # predicting the top k as True: correct = true positives in top k + negatives below
    tp = np.r_[0, np.cumsum(y)]
    fp = np.r_[0, np.cumsum(~y)]
    correct = tp + (len(y) - y.sum()) - fp
    cut_ok = np.r_[True, s[1:] != s[:-1], True]  # k where s[k-1] > s[k]
    k = int(np.argmax(np.where(cut_ok, correct, -1)))
    if k == 0:
        t = float(s[0]) + 1e-6 * max(1.0, abs(float(s[0])))  # above all, even in float32
    elif k == len(s):
        t = float(s[-1])
    else:
        t = float((s[k - 1] + s[k]) / 2)
    return t, float(correct[k] / len(y))


# ----------------------------------------------------------------------------- WiC
@dataclass
class WicPair:
    lemma: str
    words1: list[str]
    index1: int
    words2: list[str]
    index2: int
    label: bool


def read_wic(data: str | os.PathLike[str], gold: str | os.PathLike[str]) -> list[WicPair]:
    """Read WiC ``*.data.txt`` (TSV) and ``*.gold.txt`` (T/F lines) into pairs."""
    data, gold = Path(data), Path(gold)
    labels = [ln.strip() for ln in read_text_lines(gold, "WiC file") if ln.strip()]
    lines = [ln for ln in read_text_lines(data, "WiC file") if ln.strip()]
    if len(labels) != len(lines):
        raise MaskedLMError(f"{gold}: {len(labels)} labels for {len(lines)} lines of {data}")
    pairs = []
    for n, (line, lab) in enumerate(zip(lines, labels, strict=True), 1):
        cols = line.split("\t")
        if len(cols) != 5 or lab not in ("T", "F"):
            raise MaskedLMError(f"{data}:{n}: expected lemma, POS, i-j, sentence1, sentence2 and a T/F label")
        try:
            i1, i2 = (int(v) for v in cols[2].split("-"))
        except ValueError:
            raise MaskedLMError(f"{data}:{n}: bad index field {cols[2]!r} (expected i-j)") from None
        w1, w2 = cols[3].split(), cols[4].split()
        if not (0 <= i1 < len(w1) and 0 <= i2 < len(w2)):
            raise MaskedLMError(f"{data}:{n}: target index {cols[2]} outside the sentences")
        pairs.append(WicPair(cols[0], w1, i1, w2, i2, lab == "T"))
    return pairs


def targets_in_context(model: Embedder, items: Sequence[tuple[Sequence[str], int]], *,
                       layers: str = VectorOptions.layers, pool: str = VectorOptions.pool,
                       standardize: Standardizer | None = None, **kw: Any) -> np.ndarray:
    """(N, H): the vector of word ``index`` in each pre-tokenized sentence."""
    pieces = tokenize(model.tokenizer, [list(words) for words, _ in items])
    out = np.zeros((len(items), model.config.hidden_size), dtype=np.float32)
    for i, vecs in iter_word_vectors(model, pieces, layers=layers, pool=pool, **kw):
        out[i] = vecs[items[i][1]]
    return standardize.apply(out) if standardize is not None else out


def similarity_in_context(model: Embedder, a: tuple[Sequence[str], int],
                          b: tuple[Sequence[str], int], **kw: Any) -> float:
    """Cosine of two word instances, each given as (words, index).

    >>> similarity_in_context(model, ("I sat by the bank".split(), 4),
    ...                       ("The bank lent money".split(), 1))  # doctest: +SKIP
    0.41
    """
    v = targets_in_context(model, [a, b], **kw)
    return float(cosine(v[0], v[1]))


def wic_scores(model: Embedder, pairs: Sequence[WicPair], **kw: Any) -> np.ndarray:
    """Cosine of the target in sentence 1 and sentence 2, per pair."""
    items = [(p.words1, p.index1) for p in pairs] + [(p.words2, p.index2) for p in pairs]
    v = targets_in_context(model, items, **kw)
    return cosine(v[:len(pairs)], v[len(pairs):])


def evaluate_wic(model: Embedder, directory: str | os.PathLike[str], train_limit: int | None = None,
                 **kw: Any) -> dict[str, float]:
    """Threshold chosen on ``train`` (its first ``train_limit`` pairs), accuracy reported
    on ``dev`` of a WiC folder."""
    d = Path(directory)
    train = read_wic(d / "train.data.txt", d / "train.gold.txt")[:train_limit]
    dev = read_wic(d / "dev.data.txt", d / "dev.gold.txt")
    s_train = wic_scores(model, train, **kw)
    t, train_acc = choose_threshold(s_train, np.array([p.label for p in train]))
    s_dev = wic_scores(model, dev, **kw)
    dev_acc = float(((s_dev.astype(np.float64) >= t) == np.array([p.label for p in dev])).mean())
    return {"dev_accuracy": dev_acc, "train_accuracy": train_acc, "threshold": t}


# ----------------------------------------------------------------------------- word types
_WORD = re.compile(r"\w+|[^\w\s]")


def read_word_pairs(path: str | os.PathLike[str]) -> list[tuple[str, str, float]]:
    """SimLex-999 (header, score column ``SimLex999``) or WordSim-353 (``#`` comments) TSV."""
    path = Path(path)
    pairs: list[tuple[str, str, float]] = []
    col, first = 2, True
    for n, line in enumerate(read_text_lines(path, "word-pair file"), 1):
        if not line.strip() or line.startswith("#"):
            continue
        cols = line.split("\t")
        if first:  # a header names its columns; SimLex's score is "SimLex999"
            first = False
            if "SimLex999" in cols:
                col = cols.index("SimLex999")
                continue
            if len(cols) > col and not is_number(cols[col]):
                continue
        if len(cols) <= col or not is_number(cols[col]):
            raise MaskedLMError(f"{path}:{n}: expected word1<TAB>word2<TAB>score")
        pairs.append((cols[0].strip().lower(), cols[1].strip().lower(), float(cols[col])))
    if not pairs:
        raise MaskedLMError(f"{path}: no word pairs")
    return pairs



def find_occurrences(paths: Sequence[str | os.PathLike[str]], words: set[str],
                     max_occurrences: int, max_words: int = 64
                     ) -> tuple[list[list[str]], dict[str, list[tuple[int, int]]]]:
    """Sentences (as word lists) holding ``words`` (lower-cased match), up to N per word.

    Returns the sentences and, per word, its (sentence, position) occurrences.
    """
    from maskedlm.data.corpus import iter_documents

    sentences: list[list[str]] = []
    where: dict[str, list[tuple[int, int]]] = {w: [] for w in words}
    open_words = set(words)
    for doc in iter_documents(list(paths)):
        for s in doc:
            toks = _WORD.findall(s)
            if len(toks) > max_words:
                continue
            hits = [(j, t.lower()) for j, t in enumerate(toks) if t.lower() in open_words]
            if not hits:
                continue
            sid = len(sentences)
            sentences.append(toks)
            for j, w in hits:
                if len(where[w]) < max_occurrences:
                    where[w].append((sid, j))
                    if len(where[w]) == max_occurrences:
                        open_words.discard(w)
            if not open_words:
                return sentences, where
    return sentences, where


def type_vectors(model: Embedder, words: set[str], corpus: Sequence[str | os.PathLike[str]], *,
                 max_occurrences: int = WordPairOptions.max_occurrences, layers: str = VectorOptions.layers, pool: str = VectorOptions.pool,
                 standardize: Standardizer | None = None, **kw: Any) -> dict[str, np.ndarray]:
    """Average contextual vector of each word over its corpus occurrences (absent words left out)."""
    sentences, where = find_occurrences(corpus, words, max_occurrences)
    wanted: dict[int, list[tuple[int, str]]] = {}
    for w, occ in where.items():
        for sid, j in occ:
            wanted.setdefault(sid, []).append((j, w))
    used = sorted(wanted)
    pieces = tokenize(model.tokenizer, [sentences[s] for s in used])
    sums = {w: np.zeros(model.config.hidden_size, dtype=np.float64) for w, occ in where.items() if occ}
    for i, vecs in iter_word_vectors(model, pieces, layers=layers, pool=pool, **kw):
        if standardize is not None:  # before averaging; the same as after, it is affine
            vecs = standardize.apply(vecs)
        for j, w in wanted[used[i]]:
            sums[w] += vecs[j]
    return {w: (sums[w] / len(where[w])).astype(np.float32) for w in sums}


def evaluate_word_pairs(model: Embedder, pairs_path: str | os.PathLike[str],
                        corpus: Sequence[str | os.PathLike[str]], **kw: Any) -> dict[str, Any]:
    """Spearman between human ratings and cosines of corpus-averaged contextual vectors."""
    pairs = read_word_pairs(pairs_path)
    vecs = type_vectors(model, {w for a, b, _ in pairs for w in (a, b)}, corpus, **kw)
    found = [(a, b, s) for a, b, s in pairs if a in vecs and b in vecs]
    if len(found) < 2:
        raise MaskedLMError(f"{pairs_path}: fewer than 2 pairs have both words in the corpus")
    model_sim = [float(cosine(vecs[a], vecs[b])) for a, b, _ in found]
    return {"spearman": spearman(model_sim, [s for _, _, s in found]), "pairs": len(found),
            "missing": len(pairs) - len(found)}
