"""Pictures of senses: the instances of one word in 2-D, coloured by sense or cluster.

>>> from maskedlm.embeddings.plots import plot_word_senses
>>> plot_word_senses(model, "die", corpus=["books/"], out="die.png")  # doctest: +SKIP

As Jurafsky & Martin (SLP3, Fig. 11.7) after Coenen et al. (2019, "Visualizing and
measuring the geometry of BERT"): each dot is one occurrence of the word, projected
with UMAP (McInnes et al. 2018) when ``umap-learn`` is installed, else with PCA (an SVD
of the centred vectors). Dots are coloured by SemCor sense tag when given, otherwise
by k-means cluster (k-means++ seeding, Arthur & Vassilvitskii 2007). A sense is
labelled by its WordNet synset and a short gloss (``die.v.01: pass from physical life…``).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from maskedlm.errors import MaskedLMError
from maskedlm.files import atomic_save_figure
from maskedlm.options import PlotOptions, VectorOptions

if TYPE_CHECKING:
    from maskedlm.embeddings.pooling import Embedder
    from maskedlm.embeddings.wsd import SenseInventory


def kmeans(x: np.ndarray, k: int, rng: np.random.Generator, iters: int = 100) -> np.ndarray:
    """Lloyd's k-means with k-means++ seeding; returns a cluster label per row.

    >>> kmeans(np.array([[0.0], [0.1], [5.0], [5.1]]), 2, np.random.default_rng(0)).tolist()
    [0, 0, 1, 1]
    """
    n = len(x)
    k = max(1, min(k, n))
    centres = [x[int(rng.integers(n))]]
    for _ in range(1, k):
        d2 = ((x[:, None, :] - np.array(centres)[None]) ** 2).sum(-1).min(1)
        if d2.sum() <= 0:
            break
        centres.append(x[int(rng.choice(n, p=d2 / d2.sum()))])
    c = np.array(centres)
    labels = np.zeros(n, dtype=np.int64)
    for it in range(iters):
        new = ((x[:, None, :] - c[None]) ** 2).sum(-1).argmin(1)
        if it and np.array_equal(new, labels):
            break
        labels = new
        c = np.array([x[labels == j].mean(0) if (labels == j).any() else c[j] for j in range(len(c))])
    # number clusters by first appearance, so labels are stable across seeds' orderings
    order = {lab: i for i, lab in enumerate(dict.fromkeys(labels.tolist()))}
    return np.array([order[v] for v in labels.tolist()], dtype=np.int64)


def project_2d(x: np.ndarray, method: str = "auto", seed: int = 0) -> tuple[np.ndarray, str]:
    """(N, 2) coordinates and the method used: ``umap`` (if installed), else ``pca``."""
    if method not in ("auto", "umap", "pca"):
        raise MaskedLMError(f"--projection {method!r}: expected auto, umap or pca")
    if method in ("auto", "umap") and len(x) > 3:
        try:
            import umap  # type: ignore[import-not-found]
        except ImportError:
            if method == "umap":
                raise MaskedLMError("--projection umap: umap-learn is not installed") from None
        else:
            reducer = umap.UMAP(n_components=2, n_neighbors=min(15, len(x) - 1), random_state=seed)
            return np.asarray(reducer.fit_transform(x)), "umap"
    centred = x - x.mean(0)
    u, s, _ = np.linalg.svd(centred, full_matrices=False)
    coords = u[:, :2] * s[:2]
    if coords.shape[1] < 2:
        coords = np.pad(coords, ((0, 0), (0, 2 - coords.shape[1])))
    return coords, "pca"


def corpus_instances(paths: Sequence[str | os.PathLike[str]], word: str, max_instances: int,
                     ) -> list[tuple[list[str], int]]:
    """Up to ``max_instances`` (words, index) occurrences of ``word`` (case-insensitive)."""
    from maskedlm.embeddings.similarity import find_occurrences

    w = word.lower()
    sentences, where = find_occurrences(paths, {w}, max_instances)
    if not where[w]:
        raise MaskedLMError(f"{os.fspath(paths[0])}: the word {word!r} does not occur in the corpus")
    return [(sentences[s], j) for s, j in where[w]]


def semcor_instances(path: str | os.PathLike[str], lemma: str, inventory: SenseInventory,
                     max_instances: int) -> list[tuple[list[str], int, str]]:
    """Up to ``max_instances`` SemCor tokens of ``lemma`` with their (first) sense key."""
    from maskedlm.embeddings.wsd import normalize_lemma, read_semcor

    target = normalize_lemma(lemma)
    sentences, _ = read_semcor(path, inventory)
    out = [(s.words, t.index, t.keys[0]) for s in sentences for t in s.targets
           if normalize_lemma(t.lemma) == target]
    if not out:
        raise MaskedLMError(f"{path}: no sense-tagged token of the lemma {lemma!r}")
    return out[:max_instances]


def _snippet(words: Sequence[str], i: int, width: int = 4) -> str:
    left = " ".join(words[max(0, i - width):i])
    right = " ".join(words[i + 1:i + 1 + width])
    return f"…{left} [{words[i]}] {right}…"


def draw(coords: np.ndarray, labels: Sequence[str], snippets: Sequence[str], title: str,
         out: str | os.PathLike[str], annotate: int = 2, top: int = 8) -> Path:
    """Scatter plot, one colour per label (the ``top`` most frequent; others grey), PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = Counter(labels)
    shown = [lab for lab, _ in counts.most_common(top)]
    fig, ax = plt.subplots(figsize=(9, 7), dpi=110)
    cmap = plt.get_cmap("tab10")
    lab_arr = np.array(labels)
    other = ~np.isin(lab_arr, shown)
    if other.any():
        ax.scatter(coords[other, 0], coords[other, 1], s=14, c="lightgrey", label="other")
    for ci, lab in enumerate(shown):
        idx = np.flatnonzero(lab_arr == lab)
        ax.scatter(coords[idx, 0], coords[idx, 1], s=18, color=cmap(ci % 10),
                   label=f"{lab} ({len(idx)})")
        # annotate the instance nearest the group's centre (its most typical context),
        # then the farthest ones, so that labels do not pile up on each other
        order = idx[np.argsort(((coords[idx] - coords[idx].mean(0)) ** 2).sum(1))]
        picks = [order[0], *order[::-1][:annotate - 1]] if annotate > 0 else []
        for j in list(dict.fromkeys(picks)):
            ax.annotate(snippets[j], coords[j], fontsize=6.5, alpha=0.85,
                        xytext=(4, 4), textcoords="offset points")
    ax.set_title(title)
    ax.legend(fontsize=7, loc="best")
    ax.set_xticks([])
    ax.set_yticks([])
    try:
        return atomic_save_figure(fig, out, dpi=fig.dpi, tight=False, bbox_inches="tight")
    finally:
        plt.close(fig)


def plot_word_senses(model: Embedder, word: str, out: str | os.PathLike[str], *,
                     corpus: Sequence[str | os.PathLike[str]] = (), semcor: str | None = None,
                     inventory: SenseInventory | None = None, max_instances: int = PlotOptions.max_instances,
                     clusters: int = PlotOptions.clusters, projection: str = PlotOptions.projection,
                     seed: int = PlotOptions.seed,
                     layers: str = VectorOptions.layers, **kw: Any) -> dict[str, Any]:
    """Embed the instances of ``word``, project them to 2-D and draw the PNG ``out``."""
    from maskedlm.embeddings.similarity import targets_in_context

    rng = np.random.default_rng(seed)
    if semcor is not None:
        if inventory is None:
            raise MaskedLMError("--senses semcor needs --wordnet (to check the sense keys)")
        from maskedlm.embeddings.wsd import sense_label

        tagged = semcor_instances(semcor, word, inventory, max_instances)
        items = [(w, i) for w, i, _ in tagged]
        names = {k: sense_label(inventory, k) for k in dict.fromkeys(k for *_, k in tagged)}
        labels = [names[k] for _, _, k in tagged]
    else:
        if not corpus:
            raise MaskedLMError("plot-senses: give --corpus (or --senses semcor)")
        items = corpus_instances(corpus, word, max_instances)
        labels = []
    if len(items) < 2:
        raise MaskedLMError(f"plot-senses: only {len(items)} instance of {word!r}; need at least 2")
    vecs = targets_in_context(model, items, layers=layers, **kw)
    if not labels:
        labels = [f"cluster {c + 1}" for c in kmeans(vecs, clusters, rng)]
    coords, used = project_2d(vecs, projection, seed)
    title = f"{word!r}: {len(items)} instances, {used.upper()} of layers {layers}, " + \
        ("SemCor senses" if semcor is not None else f"k-means k={clusters}")
    path = draw(coords, labels, [_snippet(w, i) for w, i in items], title, out)
    return {"out": str(path), "instances": len(items), "projection": used,
            "labels": dict(Counter(labels).most_common())}
