"""Semantic textual similarity: Spearman and Pearson between cosine and gold scores.

Reads the STS Benchmark files (SentEval/GLUE layout: ``genre, file, year, id, score,
sentence1, sentence2`` and, on some lines, two attribution fields; scores 0..5) and plain
``sentence1<TAB>sentence2<TAB>score`` files. The figure is Spearman's rho x 100 between
the cosine of the two sentence vectors and the gold score, as SimCSE and
sentence-transformers report it (Reimers & Gurevych 2019; Gao, Yao & Chen 2021).

>>> import maskedlm
>>> model = maskedlm.load("runs/simcse")  # doctest: +SKIP
>>> evaluate_sts(model, read_sts("stsb/sts-dev.csv"))["spearman"]  # doctest: +SKIP
76.2
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from maskedlm.embeddings.similarity import spearman
from maskedlm.errors import MaskedLMError

if TYPE_CHECKING:
    from maskedlm.embeddings.pooling import Embedder

STSB_RANGE = (0.0, 5.0)  # STS Benchmark scores (Cer et al. 2017)


@dataclass
class STSPair:
    sentence1: str
    sentence2: str
    score: float
    where: str


def _score(text: str, where: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise MaskedLMError(f"{where}: score {text!r} is not a number") from None
    if not math.isfinite(v):
        raise MaskedLMError(f"{where}: score {text!r} is not finite")
    return v


def read_sts(path: str | os.PathLike[str], score_range: tuple[float, float] | None = None
             ) -> list[STSPair]:
    """STS-B lines (7 or 9 tab-separated fields; score range 0..5) or plain 3-column
    ``sentence1<TAB>sentence2<TAB>score`` lines (any range, or ``score_range``). Split on
    tabs only: STS-B sentences hold quotes that CSV quoting would merge across lines."""
    path = Path(path)
    if not path.is_file():
        raise MaskedLMError(f"{path}: no such file")
    pairs: list[STSPair] = []
    layout = None
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{n}"
            fields = line.rstrip("\r\n").split("\t")
            this = "stsb" if len(fields) in (7, 9) else "plain" if len(fields) == 3 else None
            if this is None:
                raise MaskedLMError(f"{where}: {len(fields)} tab-separated fields; expected "
                                    "sentence1<TAB>sentence2<TAB>score or the STS-B layout (7 or 9)")
            if layout is None:
                layout = this
            elif this != layout:
                raise MaskedLMError(f"{where}: {len(fields)} fields, but the file began as "
                                    f"{'STS-B' if layout == 'stsb' else 'a 3-column TSV'}")
            s1, s2, sc = (fields[5], fields[6], fields[4]) if layout == "stsb" else fields
            if not s1.strip() or not s2.strip():
                raise MaskedLMError(f"{where}: an empty sentence")
            score = _score(sc, where)
            lo, hi = STSB_RANGE if layout == "stsb" else (score_range or (-math.inf, math.inf))
            if not lo <= score <= hi:
                raise MaskedLMError(f"{where}: score {score} outside the file's range {lo:g}..{hi:g}")
            pairs.append(STSPair(s1, s2, score, where))
    if len(pairs) < 2:
        raise MaskedLMError(f"{path}: {len(pairs)} scored pair(s); a correlation needs at least 2")
    return pairs


def pearson(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float:
    """Pearson's r.

    >>> round(pearson([1, 2, 3], [2, 4, 7]), 4)
    0.9934
    """
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    x, y = x - x.mean(), y - y.mean()
    den = math.sqrt(float((x * x).sum() * (y * y).sum()))
    return float((x * y).sum() / den) if den > 0 else 0.0


def evaluate_sts(model: Embedder, pairs: Sequence[STSPair], **encode_kw: Any) -> dict[str, Any]:
    """``spearman`` and ``pearson`` x 100 of cosine vs gold, and the pair count. Each
    distinct sentence is encoded once; ``encode_kw`` go to ``model.encode`` (a contrastive
    run or a sentence-transformers directory pools as trained; a raw encoder by the mean).

    >>> evaluate_sts(model, read_sts("sts-dev.csv"))  # doctest: +SKIP
    {'spearman': 82.03, 'pearson': 84.4, 'pairs': 1500}
    """
    texts = list(dict.fromkeys(s for p in pairs for s in (p.sentence1, p.sentence2)))
    index = {t: i for i, t in enumerate(texts)}
    vecs = model.encode(texts, **{"normalize": True, **encode_kw})  # type: ignore[attr-defined]
    vecs = vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
    a = vecs[[index[p.sentence1] for p in pairs]]
    b = vecs[[index[p.sentence2] for p in pairs]]
    cos = (a * b).sum(1)
    gold = np.array([p.score for p in pairs])
    return {"spearman": round(100 * spearman(cos, gold), 4),
            "pearson": round(100 * pearson(cos, gold), 4), "pairs": len(pairs)}
