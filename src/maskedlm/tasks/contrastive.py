"""Sentence embeddings by contrastive training: SimCSE, supervised pairs and NLI triples.

Every example is an anchor with a positive (and, optionally, a hard negative); the
other examples' positives and negatives in the batch are the anchor's negatives, and
the loss is InfoNCE over cosine similarities divided by a temperature (van den Oord et
al. 2018; sentence-transformers calls it MultipleNegativesRankingLoss). Without a
positive the example is unsupervised SimCSE (Gao, Yao & Chen 2021): the positive is the
anchor itself under another dropout mask, and the temperature is theirs, 0.05.

Large batches fit in memory with gradient caching (Gao, Zhang, Han & Callan 2021,
"Scaling Deep Contrastive Learning Batch Size under Memory Limited Setup"): all
sentences are first encoded without a graph, the loss is taken over the full batch of
vectors, and then each chunk is encoded again with a graph (under the same dropout
masks) and back-propagated from its cached vector gradients. The loss and gradients
equal the uncached ones. Under ``torch.distributed`` the vectors of every rank are
gathered so that each anchor sees the whole global batch as negatives; the gradient of
another rank's vectors flows back to that rank.

>>> task = ContrastiveTask(pool="mean", matryoshka=[64])
>>> task.kind, task.metric
('contrastive', 'retrieval_accuracy')
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from maskedlm.data.tokenizer import Tokenizer
from maskedlm.errors import MaskedLMError
from maskedlm.models import kernels
from maskedlm.models.config import ModelConfig
from maskedlm.options import ContrastiveOptions
from maskedlm.tasks.common import Batch, Feature, TaskModel, pad

POOLS = ("mean", "cls", "max")
SIMCSE_TEMPERATURE = ContrastiveOptions.temperature  # Gao, Yao & Chen 2021, sec. 3


@dataclass
class PairExample:
    """An anchor, its positive (None: itself, SimCSE) and an optional hard negative."""

    anchor: str
    positive: str | None
    negative: str | None
    where: str


# ----------------------------------------------------------------------------- reading
def _open_text(path: Path) -> io.TextIOBase:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def read_sentences(path: str | os.PathLike[str]) -> list[PairExample]:
    """A text file (or .gz), one sentence per line; blank lines skipped."""
    path = Path(path)
    out = []
    with _open_text(path) as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                out.append(PairExample(line.strip(), None, None, f"{path}:{n}"))
    if not out:
        raise MaskedLMError(f"{path}: no sentences (one per line)")
    return out


def read_pairs(path: str | os.PathLike[str]) -> list[PairExample]:
    """(anchor, positive[, negative]) rows: a TSV without a header, or JSONL objects with
    ``anchor``/``positive``/``negative`` (or ``sentence1``/``sentence2``/``sentence3``)."""
    path = Path(path)
    name = path.name.removesuffix(".gz")
    out: list[PairExample] = []
    with _open_text(path) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{n}"
            if name.endswith((".jsonl", ".json")):
                try:
                    row = json.loads(line)
                    cols = [row.get(k) or row.get(alt) for k, alt in
                            (("anchor", "sentence1"), ("positive", "sentence2"),
                             ("negative", "sentence3"))]
                except (json.JSONDecodeError, AttributeError):
                    raise MaskedLMError(f"{where}: not a JSON object") from None
                cols = [c for c in cols if c is not None]
            else:
                cols = line.rstrip("\r\n").split("\t")
            if len(cols) < 2:
                raise MaskedLMError(f"{where}: one column; a pair file needs anchor<TAB>positive"
                                    "[<TAB>negative] (or JSON anchor/positive[/negative])")
            if len(cols) > 3:
                raise MaskedLMError(f"{where}: {len(cols)} columns; expected 2 or 3")
            if not all(str(c).strip() for c in cols):
                raise MaskedLMError(f"{where}: an empty sentence")
            out.append(PairExample(str(cols[0]).strip(), str(cols[1]).strip(),
                                   str(cols[2]).strip() if len(cols) == 3 else None, where))
    if not out:
        raise MaskedLMError(f"{path}: no pairs")
    return out


def read_nli(path: str | os.PathLike[str]) -> list[PairExample]:
    """SNLI/MultiNLI CSV (``pairID,sentence1,sentence2,label``; .gz allowed) -> triples
    (premise, an entailed hypothesis, a contradicting one), as supervised SimCSE builds
    them: one triple per premise that has both."""
    path = Path(path)
    by_premise: dict[str, dict[str, tuple[str, int]]] = {}
    with _open_text(path) as f:
        reader = csv.DictReader(f)
        need = {"sentence1", "sentence2", "label"}
        if not reader.fieldnames or not need <= set(reader.fieldnames):
            raise MaskedLMError(f"{path}: an NLI file needs a header with sentence1, sentence2 "
                                f"and label (found {reader.fieldnames})")
        for n, row in enumerate(reader, 2):
            label = (row["label"] or "").strip()
            if label in ("entailment", "contradiction") and row["sentence1"] and row["sentence2"]:
                by_premise.setdefault(row["sentence1"].strip(), {}).setdefault(
                    label, (row["sentence2"].strip(), n))
    out = [PairExample(p, h["entailment"][0], h["contradiction"][0],
                       f"{path}:{h['entailment'][1]}")
           for p, h in by_premise.items() if len(h) == 2]
    if not out:
        raise MaskedLMError(f"{path}: no premise with both an entailment and a contradiction")
    return out


def corpus_sentences(paths: Sequence[str], limit: int | None, rng: np.random.Generator,
                     min_words: int = 5, max_words: int = 64) -> list[PairExample]:
    """Sentences of a pretraining corpus (files, folders, globs; as ``--corpus``): a
    uniform sample of ``limit`` (reservoir sampling) of those with 5..64 words."""
    from maskedlm.data.corpus import sample_sentences

    kept = sample_sentences(list(paths), limit, rng, min_words=min_words, max_words=max_words)
    return [PairExample(s, None, None, f"{paths[0]}:#{i}") for i, s in enumerate(kept)]


def parse_matryoshka(spec: str) -> list[int]:
    """``--matryoshka 256,128,64`` as sizes (empty: none).

    >>> parse_matryoshka("256,128"), parse_matryoshka("")
    ([256, 128], [])
    """
    try:
        return [int(x) for x in spec.split(",") if x.strip()]
    except ValueError:
        raise MaskedLMError(f"--matryoshka {spec!r}: expected sizes like 256,128,64") from None


def training_pairs(task: ContrastiveTask, train: str | None, corpus: Sequence[str],
                   dev: str | None, dev_fraction: float, max_sentences: int | None, seed: int
                   ) -> tuple[list[PairExample], list[PairExample] | str | None]:
    """The training examples of ``finetune contrastive`` (``train``, a file, or ``corpus``,
    SimCSE on a pretraining corpus: exactly one of them) and its dev split: ``dev`` as
    given, or a seeded ``dev_fraction`` held out of the training pairs."""
    if bool(train) == bool(corpus):
        raise MaskedLMError("finetune contrastive: give --train FILE or --corpus PATH (one of them)")
    rng = np.random.default_rng(seed)
    pairs = task.read(train) if train else corpus_sentences(corpus, max_sentences, rng)
    if not dev_fraction:
        return pairs, dev
    if dev or not 0 < dev_fraction < 1:
        raise MaskedLMError("--dev-fraction must be in (0, 1) and excludes --dev")
    order = rng.permutation(len(pairs))
    n_dev = max(1, int(round(dev_fraction * len(pairs))))
    if n_dev >= len(pairs):
        raise MaskedLMError(f"--dev-fraction {dev_fraction} leaves no training pairs")
    held = set(order[:n_dev].tolist())
    return ([e for i, e in enumerate(pairs) if i not in held],
            [e for i, e in enumerate(pairs) if i in held])


def read_examples(path: str | os.PathLike[str], fmt: str = "auto") -> list[PairExample]:
    """``fmt``: sentences (.txt), pairs (.tsv/.jsonl), nli (.csv), or auto by extension."""
    path = Path(path)
    if not path.is_file():
        raise MaskedLMError(f"{path}: no such file")
    name = path.name.removesuffix(".gz")
    if fmt == "auto":
        fmt = ("nli" if name.endswith(".csv") else
               "pairs" if name.endswith((".tsv", ".jsonl", ".json")) else "sentences")
    if fmt == "nli":
        return read_nli(path)
    if fmt == "pairs":
        return read_pairs(path)
    if fmt == "sentences":
        return read_sentences(path)
    raise MaskedLMError(f"--format must be auto, sentences, pairs or nli, got {fmt!r}")


# ----------------------------------------------------------------------------- pooling
def pool_hidden(hidden: torch.Tensor, mask: torch.Tensor, pool: str) -> torch.Tensor:
    """(B, T, H) last states, (B, T) mask -> (B, H): mean or max over the real tokens
    ([CLS] and [SEP] included, as sentence-transformers pools), or the [CLS] state."""
    if pool == "cls":
        return hidden[:, 0]
    keep = mask[..., None].to(hidden.dtype)  # (B, T, 1)
    if pool == "max":
        return hidden.masked_fill(keep == 0, torch.finfo(hidden.dtype).min).amax(1)
    return (hidden * keep).sum(1) / keep.sum(1).clamp(min=1)


class SentencePooler(nn.Module):
    """The "head" of a sentence embedder: pooling and L2 normalisation, no parameters."""

    def __init__(self, pool: str = "mean", normalize: bool = True) -> None:
        super().__init__()
        self.pool = pool
        self.normalize = normalize

    def forward(self, hidden: torch.Tensor, batch: Batch) -> torch.Tensor:
        v = pool_hidden(hidden, batch["attention_mask"], self.pool).float()
        return F.normalize(v, dim=-1) if self.normalize else v


def set_dropout(encoder: nn.Module, p: float) -> None:
    """Every dropout of the encoder (hidden, attention, embeddings) to ``p``: SimCSE's
    positives differ only by their dropout masks, and encoders pretrained with the budget
    recipe (ModernBERT's) have none."""
    for m in encoder.modules():
        if isinstance(m, kernels.Dropout):
            m.p = p
        elif isinstance(getattr(m, "attn_dropout", None), float):  # BERT attention
            m.attn_dropout = p
        elif isinstance(getattr(m, "p", None), float):  # ModernBERT attention
            m.p = p


# ----------------------------------------------------------------------------- gradient cache
class _CachedChunk(torch.autograd.Function):
    """Vectors of one chunk computed without a graph; in backward the chunk is encoded
    again with a graph, under the dropout masks of the first pass (the RNG state is
    replayed), and back-propagated from the incoming vector gradient. This is the
    "representation gradient cache" of Gao et al. (2021), written as an autograd function
    so that ``loss.backward()`` in the ordinary loop runs it."""

    @staticmethod
    def forward(ctx: Any, anchor: torch.Tensor, run: Callable[[], torch.Tensor],
                device: torch.device) -> torch.Tensor:  # type: ignore[override]
        ctx.run, ctx.device = run, device
        ctx.cpu_rng = torch.get_rng_state()
        ctx.cuda_rng = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
        ctx.autocast = (torch.is_autocast_enabled(device.type),
                        torch.get_autocast_dtype(device.type))
        return run()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[None, None, None]:  # type: ignore[override]
        devices = [ctx.device] if ctx.cuda_rng is not None else []
        with torch.random.fork_rng(devices=devices, device_type=ctx.device.type):
            torch.set_rng_state(ctx.cpu_rng)
            if ctx.cuda_rng is not None:
                torch.cuda.set_rng_state(ctx.cuda_rng, ctx.device)
            enabled, dtype = ctx.autocast
            with torch.enable_grad(), torch.autocast(ctx.device.type, dtype=dtype, enabled=enabled):
                out = ctx.run()
        torch.autograd.backward(out, grad)
        return None, None, None


def length_chunks(lengths: Sequence[int], chunk: int) -> list[np.ndarray]:
    """Indices sorted by length, cut into chunks of ``chunk``: each chunk is padded only
    to its own longest sentence (a batch's short sentences no longer pay for its longest).

    >>> [c.tolist() for c in length_chunks([5, 9, 2, 7], 2)]
    [[2, 0], [3, 1]]
    """
    order = np.argsort(np.asarray(lengths), kind="stable")
    return [order[i:i + chunk] for i in range(0, len(order), chunk)]


def embed_batch(model: TaskModel, ids: torch.Tensor, lengths: torch.Tensor, chunk: int,
                cache: bool) -> torch.Tensor:
    """(N, T) padded ids -> (N, D) sentence vectors with gradients, encoded in length-sorted
    chunks of ``chunk`` sentences; ``cache``: through the gradient cache (activations of
    one chunk alive at a time) instead of one graph over all chunks."""
    device = ids.device
    anchor = torch.empty(0, device=device, requires_grad=True)
    parts, where = [], []
    for idx in length_chunks(lengths.tolist(), chunk):
        t = int(lengths[idx].max())
        sub = ids[torch.as_tensor(idx, device=device), :t]  # (c, t)
        mask = torch.arange(t, device=device)[None, :] < lengths[idx].to(device)[:, None]
        batch = {"input_ids": sub, "attention_mask": mask}

        def run(batch: Batch = batch) -> torch.Tensor:
            return model.head(model.hidden(batch), batch)

        parts.append(_CachedChunk.apply(anchor, run, device) if cache else run())
        where.append(torch.as_tensor(idx, device=device))
    out = torch.cat(parts)
    inverse = torch.empty_like(torch.cat(where))
    inverse[torch.cat(where)] = torch.arange(len(inverse), device=device)
    return out[inverse]


# ----------------------------------------------------------------------------- the loss
class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward sums every rank's gradient of a slice into its owner."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        grad = grad.contiguous()
        dist.all_reduce(grad)  # the sum over ranks of d(loss_r)/d(all vectors)
        n = grad.shape[0] // dist.get_world_size()
        r = dist.get_rank()
        return grad[r * n:(r + 1) * n]


def gather(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """(N, D) per rank -> (world * N, D) and this rank's row offset; as is without DDP."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x, 0
    return _GatherWithGrad.apply(x), dist.get_rank() * x.shape[0]


def info_nce(anchors: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor | None,
             temperature: float, dims: Sequence[int] = ()) -> torch.Tensor:
    """InfoNCE with in-batch negatives over the global batch (all ranks).

    ``anchors`` and ``positives`` (B, D) are this rank's; every rank's positives and hard
    negatives are candidates. Returns this rank's share of the global mean loss (the
    ranks' shares sum to it). ``dims``: Matryoshka sizes (Kusupati et al. 2022), each a
    loss on the first d dimensions renormalised, summed with the full one as
    sentence-transformers' MatryoshkaLoss does.
    """
    all_pos, offset = gather(positives)
    if negatives is not None:
        all_neg, _ = gather(negatives)
    n_global = all_pos.shape[0]
    targets = torch.arange(anchors.shape[0], device=anchors.device) + offset
    total = anchors.new_zeros(())
    for d in [anchors.shape[1], *dims]:
        a = F.normalize(anchors[:, :d], dim=-1)
        c = F.normalize(all_pos[:, :d], dim=-1)
        if negatives is not None:
            c = torch.cat([c, F.normalize(all_neg[:, :d], dim=-1)])
        logits = a @ c.T / temperature  # (B, world * B [+ world * B])
        total = total + F.cross_entropy(logits, targets, reduction="sum") / n_global
    return total


# ----------------------------------------------------------------------------- the task
class ContrastiveTask:
    """``finetune contrastive``: the task protocol of :mod:`maskedlm.tasks.common`."""

    kind = "contrastive"
    # info_nce returns each rank's share of the global mean: the ranks' gradients are summed
    loss_is_global_share = True
    metric = "retrieval_accuracy"

    def __init__(self, labels: list[str] | None = None, pool: str = ContrastiveOptions.pool,
                 temperature: float = SIMCSE_TEMPERATURE, matryoshka: Sequence[int] = (),
                 chunk: int = ContrastiveOptions.chunk,
                 grad_cache: bool | None = ContrastiveOptions.grad_cache,
                 encoder_dropout: float | None = ContrastiveOptions.encoder_dropout,
                 format: str = ContrastiveOptions.format) -> None:
        if pool not in POOLS:
            raise MaskedLMError(f"--pool must be one of {', '.join(POOLS)}, got {pool!r}")
        if not temperature > 0:
            raise MaskedLMError(f"--temperature must be > 0, got {temperature}")
        if chunk < 1:
            raise MaskedLMError(f"--chunk must be >= 1, got {chunk}")
        if any(d < 1 for d in matryoshka):
            raise MaskedLMError(f"--matryoshka sizes must be >= 1, got {list(matryoshka)}")
        if encoder_dropout is not None and not 0.0 <= encoder_dropout < 1.0:
            raise MaskedLMError(f"--encoder-dropout must be in [0, 1), got {encoder_dropout}")
        self.labels: list[str] = []
        self.pool = pool
        self.temperature = temperature
        self.matryoshka = sorted({int(d) for d in matryoshka}, reverse=True)
        self.chunk = chunk
        self.grad_cache = grad_cache  # None: when a batch holds more than 4 chunks
        self.encoder_dropout = encoder_dropout
        self.format = format
        self._dropout_set: int | None = None

    def options(self) -> dict[str, Any]:
        return {"pool": self.pool, "temperature": self.temperature,
                "matryoshka": self.matryoshka, "chunk": self.chunk, "grad_cache": self.grad_cache,
                "encoder_dropout": self.encoder_dropout, "format": self.format}

    def encode_defaults(self) -> dict[str, Any]:
        """How ``maskedlm.load(run).encode`` pools: as trained, unit length."""
        return {"pool": self.pool, "normalize": True}

    def read(self, path: str) -> list[PairExample]:
        return read_examples(path, self.format)

    def fit_labels(self, examples: list[PairExample]) -> None:
        if not examples:
            raise MaskedLMError("no training examples")

    def check_model(self, config: ModelConfig) -> None:
        too_big = [d for d in self.matryoshka if d > config.hidden_size]
        if too_big:
            raise MaskedLMError(f"--matryoshka {','.join(map(str, too_big))}: larger than the "
                                f"model's hidden size {config.hidden_size}")

    def featurize(self, examples: list[PairExample], tok: Tokenizer, max_length: int) -> list[Feature]:
        texts = [t for e in examples for t in (e.anchor, e.positive, e.negative) if t is not None]
        encs = tok.hf.encode_batch(texts)
        ids = iter(e.ids for e in encs)
        feats, cut = [], 0
        for e in examples:
            seqs = []
            for t in (e.anchor, e.positive, e.negative):
                if t is None:
                    seqs.append(None)
                    continue
                s = list(next(ids))
                if len(s) > max_length:
                    cut += 1
                    s = s[:max_length - 1] + [s[-1]]  # keep [SEP]
                seqs.append(s)
            # "input_ids" is one slot for every example: the loop groups batches by its
            # length, and contrastive batches must stay random (a batch of same-length
            # sentences makes length a shortcut the negatives no longer cover).
            feats.append({"input_ids": [0], "anchor": seqs[0], "positive": seqs[1],
                          "negative": seqs[2]})
        if cut:
            warnings.warn(f"{cut} of {len(texts)} sentences exceed --max-length {max_length} "
                          "subwords and were truncated", stacklevel=2)
        return feats

    def make_head(self, config: ModelConfig) -> nn.Module:
        self.check_model(config)
        return SentencePooler(self.pool, normalize=True)

    def collate(self, feats: list[Feature], pad_id: int, rng: np.random.Generator | None) -> Batch:
        """All sentences of the batch in one (N, T) tensor: anchors, positives (the anchors
        again for SimCSE), hard negatives; ``counts`` = (B, negatives)."""
        anchors = [f["anchor"] for f in feats]
        positives = [f["positive"] if f["positive"] is not None else f["anchor"] for f in feats]
        negatives = [f["negative"] for f in feats if f["negative"] is not None]
        seqs = anchors + positives + negatives
        return {"input_ids": pad(seqs, pad_id), "lengths": torch.tensor([len(s) for s in seqs]),
                "counts": torch.tensor([len(feats), len(negatives)])}

    def _use_cache(self, n: int) -> bool:
        # the cache costs a second forward pass (about a third more compute): worth it
        # only when one graph over the whole batch would not fit
        return self.grad_cache if self.grad_cache is not None else n > 4 * self.chunk

    def loss(self, model: TaskModel, batch: Batch) -> torch.Tensor:
        if self.encoder_dropout is not None and self._dropout_set != id(model):
            set_dropout(model.encoder, self.encoder_dropout)
            self._dropout_set = id(model)
        ids, lengths = batch["input_ids"], batch["lengths"].cpu()
        vecs = embed_batch(model, ids, lengths, self.chunk, self._use_cache(len(ids)))
        b, n_neg = (int(x) for x in batch["counts"])
        return info_nce(vecs[:b], vecs[b:2 * b], vecs[2 * b:] if n_neg else None,
                        self.temperature, self.matryoshka)

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def _vectors(self, model: TaskModel, seqs: list[list[int]], pad_id: int,
                 batch_size: int) -> torch.Tensor:
        was = model.training
        model.eval()
        try:
            parts, where = [], []
            for idx in length_chunks([len(s) for s in seqs], batch_size):
                ids = pad([seqs[i] for i in idx], pad_id).to(model.device)
                lens = torch.tensor([len(seqs[i]) for i in idx], device=model.device)
                mask = torch.arange(ids.shape[1], device=model.device)[None] < lens[:, None]
                batch = {"input_ids": ids, "attention_mask": mask}
                parts.append(model.infer(batch).float().cpu())
                where.extend(idx.tolist())
            out = torch.empty(len(seqs), parts[0].shape[1])
            out[torch.as_tensor(where)] = torch.cat(parts)
            return out
        finally:
            model.train(was)

    def evaluate(self, model: TaskModel, examples: list[PairExample], tok: Tokenizer,
                 max_length: int, batch_size: int) -> dict[str, Any]:
        """Retrieval on held-out pairs: how often an anchor's nearest candidate (all
        positives and hard negatives of the split) is its own positive; and the mean
        InfoNCE loss over the whole split as one batch."""
        if any(e.positive is None for e in examples):
            raise MaskedLMError(f"{examples[0].where.rsplit(':', 1)[0]}: the dev split needs pairs "
                                "(anchor<TAB>positive); sentences alone have no positive to find")
        feats = self.featurize(examples, tok, max_length)
        a = self._vectors(model, [f["anchor"] for f in feats], tok.pad_id, batch_size)
        p = self._vectors(model, [f["positive"] for f in feats], tok.pad_id, batch_size)
        negs = [f["negative"] for f in feats if f["negative"] is not None]
        cands = torch.cat([p, self._vectors(model, negs, tok.pad_id, batch_size)]) if negs else p
        sims = F.normalize(a, dim=-1) @ F.normalize(cands, dim=-1).T  # (n, n [+ negs])
        gold = torch.arange(len(a))
        acc = float((sims.argmax(1) == gold).float().mean())
        loss = float(F.cross_entropy(sims / self.temperature, gold))
        return {"retrieval_accuracy": acc, "loss": loss, "examples": len(examples)}

    def predict(self, model: TaskModel, inputs: list[Any], tok: Tokenizer, max_length: int,
                batch_size: int) -> list[dict[str, Any]]:
        """One ``{"embedding": [...]}`` per input text."""
        seqs = [s[:max_length - 1] + [s[-1]] if len(s) > max_length else s
                for s in (e.ids for e in tok.hf.encode_batch([str(x) for x in inputs]))]
        vecs = self._vectors(model, seqs, tok.pad_id, batch_size)
        return [{"embedding": v.tolist()} for v in vecs]
