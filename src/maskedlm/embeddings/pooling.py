"""Contextual embeddings of words, sub-words and sentences from any loaded encoder.

>>> import maskedlm
>>> from maskedlm.embeddings.pooling import encode, embed_words
>>> model = maskedlm.load("all-MiniLM-L6-v2/")  # doctest: +SKIP
>>> encode(model, ["A sentence.", "Another one."]).shape  # doctest: +SKIP
(2, 384)
>>> [v.shape for v in embed_words(model, ["He sat on the bank ."], layers="last4-mean")]  # doctest: +SKIP
[(6, 384)]

Layers: ``last``, ``last4-sum``, ``last4-mean`` (the usual choices for word vectors;
Devlin et al. 2019, sec. 5.3) or an explicit list ``N,M,..`` averaged, where 0 is the
embedding output, k the output of layer k and negative numbers count from the end.

How it runs: every input is split into words and sub-words once; inputs longer than
the model's positions are cut into overlapping windows and every sub-word takes its
vector from the window where it sits most centrally (never truncated); windows are
sorted by length and batched under a token budget, so padding stays small.

Standardization z = (x - mu) / sigma per dimension, fitted on a corpus (Timkey &
van Schijndel 2021, "All bark and no bite"), removes the few "rogue" dimensions that
dominate cosine; anisotropy is the expected cosine of random word-instance pairs
(Ethayarajh 2019, "How contextual are contextualized word representations?").
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch

from maskedlm.data.corpus import sample_sentences
from maskedlm.errors import MaskedLMError
from maskedlm.files import atomic_write_stream
from maskedlm.options import AnisotropyOptions, CorpusSampleOptions, VectorOptions

if TYPE_CHECKING:
    from maskedlm.data.tokenizer import Tokenizer
    from maskedlm.models.config import ModelConfig
    from maskedlm.models.heads import BertForPreTraining

UNITS = ("word", "subword", "sentence")
POOLS = ("mean", "first", "cls")
Sentence = str | Sequence[str]  # raw text, or a list of words (pre-tokenized)


class Embedder(Protocol):
    """What this package reads of a loaded model: :class:`maskedlm.api.MaskedLM` is one.
    A protocol, so that ``api`` (which calls these functions) is not imported back."""

    model: BertForPreTraining  # its .bert encoder is run
    tokenizer: Tokenizer
    device: torch.device

    @property
    def config(self) -> ModelConfig: ...


# ----------------------------------------------------------------------------- layers
@dataclass(frozen=True)
class Layers:
    """Which hidden states to combine: indices into ``[embeddings, layer 1, .., layer L]``."""

    indices: tuple[int, ...]
    reduce: str  # "sum" | "mean"
    spec: str

    @classmethod
    def parse(cls, spec: str, num_layers: int) -> Layers:
        """``last`` | ``last4-sum`` | ``last4-mean`` | ``N,M,..`` for a model of ``num_layers``.

        >>> Layers.parse("last4-sum", 6).indices
        (3, 4, 5, 6)
        """
        spec = spec.strip()
        if spec == "last":
            return cls((num_layers,), "mean", spec)
        if spec in ("last4-sum", "last4-mean"):
            if num_layers < 4:
                raise MaskedLMError(f"--layers {spec}: the model has only {num_layers} layers")
            return cls(tuple(range(num_layers - 3, num_layers + 1)), spec[6:], spec)
        try:
            raw = [int(p) for p in spec.split(",") if p.strip()]
        except ValueError:
            raw = []
        if not raw:
            raise MaskedLMError(f"--layers {spec!r}: expected last, last4-sum, last4-mean or N,M,..")
        idx = []
        for i in raw:
            j = i if i >= 0 else num_layers + 1 + i
            if not 0 <= j <= num_layers:
                raise MaskedLMError(f"--layers {spec!r}: layer {i} out of range 0..{num_layers} "
                                    "(0 = embeddings, negative counts from the end)")
            idx.append(j)
        return cls(tuple(idx), "mean", spec)

    def combine(self, hidden_states: Sequence[torch.Tensor]) -> torch.Tensor:
        """(B, T, H) from the selected states, summed or averaged."""
        picked = [hidden_states[i] for i in self.indices]
        out = picked[0] if len(picked) == 1 else torch.stack(picked).sum(0)
        return out / len(picked) if self.reduce == "mean" and len(picked) > 1 else out


# ----------------------------------------------------------------------------- words
@dataclass
class Pieces:
    """One input as sub-words: ``ids`` (n,) without specials, ``word_starts`` (W,), ``words``."""

    ids: np.ndarray
    word_starts: np.ndarray
    words: list[str]


def _from_word_ids(ids: Sequence[int], word_ids: Sequence[int | None], n_words: int,
                   unk_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Group sub-words by word; a word that yields no sub-word gets [UNK] so it keeps a row."""
    per_word: list[list[int]] = [[] for _ in range(n_words)]
    for tid, w in zip(ids, word_ids, strict=True):
        if w is not None:
            per_word[w].append(tid)
    for p in per_word:
        if not p:
            p.append(unk_id)
    lengths = np.fromiter((len(p) for p in per_word), dtype=np.int64, count=n_words)
    starts = np.cumsum(lengths) - lengths  # (W,), empty for an empty input
    flat = np.fromiter((t for p in per_word for t in p), dtype=np.int64, count=int(lengths.sum()))
    return flat, starts


def tokenize(tokenizer: Tokenizer, sentences: Sequence[Sentence]) -> list[Pieces]:
    """Split texts (by the tokenizer's pre-tokenizer) or word lists into :class:`Pieces`.

    >>> tokenize(model.tokenizer, ["unaffable words", ["a", "list"]])[0].word_starts  # doctest: +SKIP
    array([0, 3])
    """
    hf = tokenizer.hf
    out: list[Pieces | None] = [None] * len(sentences)
    texts = [(i, s) for i, s in enumerate(sentences) if isinstance(s, str)]
    lists = [(i, [str(w) for w in s]) for i, s in enumerate(sentences) if not isinstance(s, str)]
    if texts:
        for (i, text), enc in zip(texts, hf.encode_batch([t for _, t in texts], add_special_tokens=False),
                                  strict=True):
            # renumber the words that produced sub-words; an added token (None) is a word
            order: dict[Any, int] = {}
            wids = [order.setdefault(w if w is not None else ("tok", k), len(order))
                    for k, w in enumerate(enc.word_ids)]
            ids, starts = _from_word_ids(enc.ids, wids, len(order), tokenizer.unk_id)
            spans: dict[int, list[int]] = {}
            for w, (a, b) in zip(wids, enc.offsets, strict=True):
                spans.setdefault(w, [a, b])[1] = b
            out[i] = Pieces(ids, starts, [text[a:b] for a, b in spans.values()])
    if lists:
        encs = hf.encode_batch([ws if ws else [""] for _, ws in lists], is_pretokenized=True,
                               add_special_tokens=False)
        for (i, ws), enc in zip(lists, encs, strict=True):
            ids, starts = _from_word_ids(enc.ids, enc.word_ids, len(ws), tokenizer.unk_id)
            out[i] = Pieces(ids, starts, ws)
    return [p for p in out if p is not None]


# ----------------------------------------------------------------------------- windows
def windows(n: int, length: int, stride: int) -> list[tuple[int, int, int]]:
    """Cover ``n`` sub-words with windows of ``length``: ``(start, keep_from, keep_to)``.

    Consecutive windows start ``stride`` apart (the last one ends at ``n``); each
    sub-word is kept from the window where it is most central, so every token sees
    at least ``(length - stride) / 2`` tokens of context on each side when it exists.

    >>> windows(10, 6, 3)
    [(0, 0, 4), (3, 4, 6), (4, 6, 10)]
    """
    if length < 1 or not 1 <= stride <= length:
        raise MaskedLMError(f"window length {length} / stride {stride}: need 1 <= stride <= length")
    starts = [0]
    while starts[-1] + length < n:
        starts.append(min(starts[-1] + stride, n - length))
    out = []
    for k, s in enumerate(starts):
        keep_from = 0 if k == 0 else out[-1][2]
        # boundary: halfway between the centres of this window and the next
        keep_to = n if k == len(starts) - 1 else (s + starts[k + 1] + length) // 2
        out.append((s, keep_from, keep_to))
    return out


@dataclass
class _Window:
    sent: int
    start: int
    keep_from: int
    keep_to: int
    first: bool
    last: bool
    ids: np.ndarray  # with [CLS] ... [SEP]


def _plan(pieces: Sequence[Pieces], cls_id: int, sep_id: int, length: int,
          stride: int) -> list[_Window]:
    plan = []
    for i, p in enumerate(pieces):
        spans = windows(len(p.ids), length, stride)
        for k, (s, a, b) in enumerate(spans):
            ids = np.concatenate([[cls_id], p.ids[s:s + length], [sep_id]]).astype(np.int64)
            plan.append(_Window(i, s, a, b, k == 0, k == len(spans) - 1, ids))
    plan.sort(key=lambda w: (len(w.ids), w.sent))  # group by length, stable
    return plan


def default_batch_tokens(device: torch.device | str) -> int:
    """Padded tokens per inference batch: small on CPU, large on GPU.

    On CPU a batch whose activations stay in cache is faster than a big one: MiniLM
    encodes UD sentences about 1.4x faster at 512 tokens per batch than at 8,192 on the
    2-core machine of benchmarks/RESULTS.md. A GPU wants big batches to fill its cores.
    """
    return 512 if torch.device(device).type == "cpu" else 16384


def _batches(plan: list[_Window], batch_tokens: int) -> Iterator[list[_Window]]:
    batch: list[_Window] = []
    for w in plan:  # sorted by length, so the newest window is the longest
        if batch and (len(batch) + 1) * len(w.ids) > batch_tokens:
            yield batch
            batch = []
        batch.append(w)
    if batch:
        yield batch


def iter_token_vectors(model: Embedder, pieces: Sequence[Pieces], *, layers: str = VectorOptions.layers,
                       max_length: int | None = None, stride: int | None = None,
                       batch_tokens: int | None = None, progress: bool = False
                       ) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(input index, (n + 2, H) float32)``: [CLS], every sub-word, [SEP].

    Inputs come back in batch (length) order, each as soon as all its windows ran.
    ``max_length`` defaults to the model's positions; ``stride`` to half a window;
    ``batch_tokens`` (padded tokens per forward pass) to :func:`default_batch_tokens`.

    >>> for i, vecs in iter_token_vectors(model, tokenize(model.tokenizer, ["Hi ."])):  # doctest: +SKIP
    ...     print(i, vecs.shape)
    0 (4, 384)
    """
    cfg = model.config
    spec = Layers.parse(layers, cfg.num_hidden_layers)
    length = (max_length or cfg.max_position_embeddings) - 2
    if length < 1 or length + 2 > cfg.max_position_embeddings:
        raise MaskedLMError(f"max_length {max_length}: must be in 3..{cfg.max_position_embeddings}")
    stride = stride or max(1, length // 2)
    tok = model.tokenizer
    plan = _plan(pieces, tok.cls_id, tok.sep_id, length, stride)
    remaining = np.zeros(len(pieces), dtype=np.int64)
    for w in plan:
        remaining[w.sent] += 1
    pending: dict[int, np.ndarray] = {}
    all_states = spec.indices != (cfg.num_hidden_layers,)
    bar = _progress(len(plan), progress)
    for batch in _batches(plan, batch_tokens or default_batch_tokens(model.device)):
        T = max(len(w.ids) for w in batch)
        ids = torch.full((len(batch), T), tok.pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), T), dtype=torch.long)
        for r, w in enumerate(batch):
            ids[r, :len(w.ids)] = torch.from_numpy(w.ids)
            mask[r, :len(w.ids)] = 1
        with torch.inference_mode():
            out = model.model.bert(ids.to(model.device), attention_mask=mask.to(model.device),
                                   output_hidden_states=all_states)
            h = spec.combine(out.hidden_states) if all_states else out.last_hidden_state
            hidden = h.float().cpu().numpy()  # (B, T, H)
        for r, w in enumerate(batch):
            n = len(pieces[w.sent].ids)
            buf = pending.get(w.sent)
            if buf is None:
                buf = pending[w.sent] = np.empty((n + 2, hidden.shape[-1]), dtype=np.float32)
            # window row 1 + (p - start) holds sub-word p
            buf[1 + w.keep_from:1 + w.keep_to] = hidden[r, 1 + w.keep_from - w.start:1 + w.keep_to - w.start]
            if w.first:
                buf[0] = hidden[r, 0]
            if w.last:
                buf[n + 1] = hidden[r, len(w.ids) - 1]
            remaining[w.sent] -= 1
            if remaining[w.sent] == 0:
                yield w.sent, pending.pop(w.sent)
        if bar is not None:
            bar.update(len(batch))
    if bar is not None:
        bar.close()


def _progress(total: int, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm
    return tqdm(total=total, unit="win", desc="embedding", leave=False)


# ----------------------------------------------------------------------------- pooling
def pool_words(tokens: np.ndarray, word_starts: np.ndarray, pool: str = VectorOptions.pool) -> np.ndarray:
    """(n + 2, H) token vectors -> (W, H): a word's sub-words averaged, or its first one.

    >>> pool_words(np.arange(8.0).reshape(4, 2), np.array([0, 1]))
    array([[2., 3.],
           [4., 5.]])
    """
    content = tokens[1:-1]
    if pool == "first":
        return content[word_starts]
    if pool != "mean":
        raise MaskedLMError(f"--pool {pool!r}: words are pooled with mean or first")
    if len(word_starts) == 0:
        return np.zeros((0, tokens.shape[1]), dtype=tokens.dtype)
    sums = np.add.reduceat(content, word_starts, axis=0)
    counts = np.diff(np.append(word_starts, len(content)))
    return (sums / counts[:, None]).astype(tokens.dtype)


def pool_sentence(tokens: np.ndarray, pool: str = VectorOptions.pool) -> np.ndarray:
    """(n + 2, H) -> (H,): mean or max over all tokens with [CLS]/[SEP] (as
    sentence-transformers pools), or the [CLS] vector."""
    if pool == "cls":
        return tokens[0]
    if pool == "max":
        return tokens.max(0)
    if pool != "mean":
        raise MaskedLMError(f"--pool {pool!r}: sentences are pooled with mean, max or cls")
    return tokens.mean(0)


def iter_word_vectors(model: Embedder, pieces: Sequence[Pieces], *, layers: str = VectorOptions.layers,
                      pool: str = VectorOptions.pool, **kw: Any) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(input index, (W, H))`` one vector per word, in batch order (streaming)."""
    for i, tokens in iter_token_vectors(model, pieces, layers=layers, **kw):
        yield i, pool_words(tokens, pieces[i].word_starts, pool)


def embed_words(model: Embedder, sentences: Sequence[Sentence], *, layers: str = VectorOptions.layers,
                pool: str = VectorOptions.pool, standardize: Standardizer | None = None,
                **kw: Any) -> list[np.ndarray]:
    """One (W, H) float32 array per sentence: a vector per word, sub-words pooled.

    Texts are split into words by the tokenizer's pre-tokenizer; lists are taken as words.

    >>> embed_words(model, [["He", "sat", "on", "the", "bank"]])[0].shape  # doctest: +SKIP
    (5, 384)
    """
    pieces = tokenize(model.tokenizer, sentences)
    out: list[np.ndarray] = [np.empty(0)] * len(pieces)
    for i, vecs in iter_word_vectors(model, pieces, layers=layers, pool=pool, **kw):
        out[i] = standardize.apply(vecs) if standardize is not None else vecs
    return out


def encode(model: Embedder, texts: Sequence[Sentence], *, layers: str = VectorOptions.layers,
           pool: str = VectorOptions.pool, standardize: Standardizer | None = None, normalize: bool = False,
           **kw: Any) -> np.ndarray:
    """(N, H) float32 sentence vectors (mean over tokens, or [CLS]); optionally unit length.

    >>> v = encode(model, ["A cat sat.", "A dog sat."], normalize=True)  # doctest: +SKIP
    >>> float(v[0] @ v[1])  # doctest: +SKIP
    0.83
    """
    pieces = tokenize(model.tokenizer, texts)
    out = np.zeros((len(pieces), model.config.hidden_size), dtype=np.float32)
    for i, tokens in iter_token_vectors(model, pieces, layers=layers, **kw):
        out[i] = pool_sentence(tokens, pool)
    if standardize is not None:  # affine, so it commutes with the mean
        out = standardize.apply(out)
    if normalize:
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    return out


def embed_subwords(model: Embedder, sentences: Sequence[Sentence], *, layers: str = VectorOptions.layers,
                   **kw: Any) -> list[np.ndarray]:
    """One (n, H) array per sentence: a vector per sub-word (no [CLS]/[SEP])."""
    pieces = tokenize(model.tokenizer, sentences)
    out: list[np.ndarray] = [np.empty(0)] * len(pieces)
    for i, tokens in iter_token_vectors(model, pieces, layers=layers, **kw):
        out[i] = tokens[1:-1]
    return out


# ----------------------------------------------------------------------------- standardization
@dataclass
class Standardizer:
    """Per-dimension mean and standard deviation; ``apply`` gives z = (x - mean) / std."""

    mean: np.ndarray
    std: np.ndarray
    count: int
    info: dict[str, str]

    def apply(self, x: np.ndarray) -> np.ndarray:
        if x.shape[-1] != self.mean.shape[0]:
            raise MaskedLMError(f"{self.info.get('path', 'standardize')}: fitted on {self.mean.shape[0]}-"
                                f"dimensional vectors, these have {x.shape[-1]} (another model?)")
        return ((x - self.mean) / self.std).astype(np.float32)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write an .npz (mean, std, count, info) atomically."""
        info = np.array([f"{k}={v}" for k, v in self.info.items() if k != "path"])
        return atomic_write_stream(path, lambda f: np.savez(
            f, mean=self.mean, std=self.std, count=np.int64(self.count), info=info))

    @classmethod
    def load(cls, path: str | os.PathLike[str], dim: int | None = None) -> Standardizer:
        """Read a stats file; ``dim`` checks it against the model's hidden size."""
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as z:
                mean, std, count = z["mean"], z["std"], int(z["count"])
                info = dict(s.split("=", 1) for s in z["info"].tolist())
        except (OSError, EOFError, KeyError, ValueError, zipfile.BadZipFile) as e:
            raise MaskedLMError(f"{path}: not a standardization stats file ({type(e).__name__})") from None
        if mean.ndim != 1 or mean.shape != std.shape:
            raise MaskedLMError(f"{path}: mean/std must be 1-D arrays of the same size")
        if dim is not None and mean.shape[0] != dim:
            raise MaskedLMError(f"{path}: fitted on {mean.shape[0]}-dimensional vectors, the model "
                                f"has hidden size {dim} (stats of another model?)")
        return cls(mean.astype(np.float32), std.astype(np.float32), count, {**info, "path": str(path)})


def fit_standardizer(batches: Iterable[np.ndarray], info: dict[str, str] | None = None,
                     eps: float = 1e-6) -> Standardizer:
    """Mean and std per dimension over all rows of ``batches`` (float64 running sums).

    >>> fit_standardizer([np.array([[1.0, 2.0], [3.0, 2.0]])]).mean
    array([2., 2.], dtype=float32)
    """
    n, s, ss = 0, None, None
    for x in batches:
        x = np.asarray(x, dtype=np.float64)
        if x.size == 0:
            continue
        n += x.shape[0]
        s = x.sum(0) if s is None else s + x.sum(0)
        ss = (x * x).sum(0) if ss is None else ss + (x * x).sum(0)
    if n == 0 or s is None or ss is None:
        raise MaskedLMError("standardize fit: no vectors (empty corpus?)")
    mean = s / n
    std = np.sqrt(np.maximum(ss / n - mean * mean, 0.0))
    # a constant dimension would divide by zero; eps keeps it at ~0 instead
    return Standardizer(mean.astype(np.float32), np.maximum(std, eps).astype(np.float32), n,
                        dict(info or {}))


# ----------------------------------------------------------------------------- anisotropy
def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine of two (N, H) arrays (or two vectors)."""
    num = (a * b).sum(-1)
    den = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
    return num / np.maximum(den, 1e-12)


def anisotropy(vectors: np.ndarray, pairs: int = AnisotropyOptions.pairs, rng: np.random.Generator | None = None
               ) -> float:
    """Expected cosine between random pairs of distinct rows (Ethayarajh 2019, sec. 3.2).

    >>> anisotropy(np.ones((5, 3)), pairs=10)
    1.0
    """
    n = len(vectors)
    if n < 2:
        raise MaskedLMError("anisotropy: need at least 2 word instances")
    rng = rng or np.random.default_rng(0)
    i = rng.integers(0, n, size=pairs)
    j = (i + rng.integers(1, n, size=pairs)) % n  # uniform over the other rows
    return float(np.clip(cosine(vectors[i], vectors[j]), -1.0, 1.0).mean())


# ----------------------------------------------------------------------------- corpora
# sample_sentences lives in maskedlm.data.corpus (fine-tuning samples sentences too)



def corpus_word_vectors(model: Embedder, sentences: Sequence[Sentence], *, layers: str = VectorOptions.layers,
                        pool: str = VectorOptions.pool, **kw: Any) -> np.ndarray:
    """All word instances of ``sentences`` stacked into one (N, H) float32 array."""
    pieces = tokenize(model.tokenizer, sentences)
    parts = [v for _, v in sorted(iter_word_vectors(model, pieces, layers=layers, pool=pool, **kw),
                                  key=lambda t: t[0])]
    return np.concatenate(parts) if parts else np.zeros((0, model.config.hidden_size), np.float32)


def sample_corpus_vectors(model: Embedder, corpus: Sequence[str | os.PathLike[str]], *,
                          max_sentences: int = CorpusSampleOptions.max_sentences,
                          seed: int = CorpusSampleOptions.seed, layers: str = VectorOptions.layers,
                          pool: str = VectorOptions.pool, **kw: Any) -> np.ndarray:
    """Word vectors, stacked (N, H), of a uniform sample of ``max_sentences`` corpus
    sentences of 3..64 words (:func:`maskedlm.data.corpus.sample_sentences`, seeded).

    >>> sample_corpus_vectors(model, ["books/"], max_sentences=100).shape  # doctest: +SKIP
    (2417, 384)
    """
    sentences = sample_sentences(corpus, max_sentences, np.random.default_rng(seed))
    return corpus_word_vectors(model, sentences, layers=layers, pool=pool, **kw)


def fit_corpus_standardizer(model: Embedder, corpus: Sequence[str | os.PathLike[str]], *,
                            max_sentences: int = CorpusSampleOptions.max_sentences,
                          seed: int = CorpusSampleOptions.seed, layers: str = VectorOptions.layers,
                            pool: str = VectorOptions.pool, **kw: Any) -> Standardizer:
    """:func:`fit_standardizer` on :func:`sample_corpus_vectors`; its ``info`` records the
    model, layers, pooling and corpus (``maskedlm standardize fit``).

    >>> fit_corpus_standardizer(model, ["books/"]).save("stats.npz")  # doctest: +SKIP
    """
    vecs = sample_corpus_vectors(model, corpus, max_sentences=max_sentences, seed=seed,
                                 layers=layers, pool=pool, **kw)
    return fit_standardizer([vecs], info={"model": str(getattr(model, "path", None)),
                                          "layers": layers, "pool": pool,
                                          "corpus": ",".join(str(p) for p in corpus)})


def corpus_anisotropy(model: Embedder, corpus: Sequence[str | os.PathLike[str]], *,
                      pairs: int = AnisotropyOptions.pairs,
                      max_sentences: int = AnisotropyOptions.max_sentences,
                      seed: int = AnisotropyOptions.seed,
                      standardize: Standardizer | None = None, layers: str = VectorOptions.layers,
                      pool: str = VectorOptions.pool, **kw: Any) -> float:
    """:func:`anisotropy` of the (optionally standardized) word vectors of a corpus sample;
    the pairs are drawn with seed ``seed + 1``, the sentences with ``seed``.

    >>> corpus_anisotropy(model, ["books/"], pairs=1000)  # doctest: +SKIP
    0.31
    """
    vecs = sample_corpus_vectors(model, corpus, max_sentences=max_sentences, seed=seed,
                                 layers=layers, pool=pool, **kw)
    if standardize is not None:
        vecs = standardize.apply(vecs)
    return anisotropy(vecs, pairs, np.random.default_rng(seed + 1))
