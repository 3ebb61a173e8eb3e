"""The pretraining batch source: shards -> instances -> masked (and packed) NumPy batches.

:class:`PretrainBatches` is the data half of the training loop's ``BatchSource``
protocol (``maskedlm.train``): it returns the NumPy micro-batches of any global step;
the loop above turns them into tensors. Nothing here imports torch.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from maskedlm.data.instances import InstanceSet, build_instances
from maskedlm.data.masking import MaskingConfig, mask_batch
from maskedlm.data.packing import Batch, pack_batch
from maskedlm.data.shards import ShardSet
from maskedlm.data.tokenizer import Tokenizer
from maskedlm.errors import MaskedLMError


class RankInfo(Protocol):
    """Where this process sits in the job: ``maskedlm.train.DistInfo`` is one."""

    rank: int
    world_size: int


class PretrainBatches:
    """A ``BatchSource`` (see ``maskedlm.train``) over prepared shards.

    Instances are rebuilt for every epoch (new NSP pairs for ``bert``) and visited in
    a seeded permutation. Each sequence is masked with a generator seeded by
    ``(seed, epoch, instance)``, so masking is dynamic across epochs and independent of
    batch size, process count and resumption.

    >>> src = PretrainBatches(ShardSet.load("shards/"), "budget", 128, recipe_masking("budget"),
    ...                       tok, 64, 1, 0, DistInfo())  # doctest: +SKIP
    >>> [b["input_ids"].shape for b in src.step_batches(0)]  # doctest: +SKIP
    [(64, 128)]
    """

    def __init__(self, shards: ShardSet, recipe: str, seq_len: int, masking: MaskingConfig,
                 tokenizer: Tokenizer, batch_size: int, grad_accum: int, seed: int,
                 di: RankInfo, eval_sequences: int = 256,
                 eval_masking: MaskingConfig | None = None, pack: bool = False) -> None:
        self.shards, self.recipe, self.seq_len, self.masking = shards, recipe, seq_len, masking
        self.tok = tokenizer
        self.batch_size, self.grad_accum, self.seed, self.di = batch_size, grad_accum, seed, di
        self.eval_sequences = eval_sequences
        self.eval_masking = eval_masking or masking
        self.pack = pack  # several sequences per row (data/packing.py), for ModernBERT
        self.unigram = shards.unigram_probs() if masking.random_source == "unigram" else None
        self._epochs: dict[int, tuple[InstanceSet, np.ndarray]] = {}
        # Epoch length is fixed by epoch 0 (bert pairs vary slightly between epochs).
        self.epoch_len = len(self._instances(0)[0])
        if self.epoch_len == 0:
            raise MaskedLMError(f"{shards.path}: no training sequences could be built")

    def _instances(self, epoch: int) -> tuple[InstanceSet, np.ndarray]:
        if epoch not in self._epochs:
            rng = np.random.default_rng([self.seed, epoch, 1])
            inst = build_instances(self.shards, "train", self.recipe, self.seq_len, rng)
            perm = np.random.default_rng([self.seed, epoch, 2]).permutation(len(inst))
            self._epochs[epoch] = (inst, perm)
            for old in [e for e in self._epochs if e < epoch - 1]:  # keep two epochs
                del self._epochs[old]
        return self._epochs[epoch]

    def _mask(self, batch: Batch, keys: list[tuple[int, int]],
              masking: MaskingConfig | None = None) -> Batch:
        out = dict(batch)
        out["input_ids"] = batch["input_ids"].copy()
        out["labels"] = np.full_like(batch["input_ids"], -100)
        for k in ("sbo_left", "sbo_right", "sbo_pos"):
            out[k] = np.zeros_like(batch["input_ids"])
        lengths = batch["attention_mask"].sum(1)
        for r, key in enumerate(keys):
            # Each sequence is masked without its padding, so that its targets do not depend
            # on the batch it lands in (batch size, accumulation, ranks).
            L = int(lengths[r])
            rng = np.random.default_rng([self.seed, key[0], key[1], 3])
            m = mask_batch(batch["input_ids"][r:r + 1, :L], batch["word_starts"][r:r + 1, :L],
                           batch["special"][r:r + 1, :L], masking or self.masking, rng,
                           vocab_size=self.tok.vocab_size, mask_id=self.tok.mask_id,
                           special_ids=sorted(self.tok.special_ids), unigram_probs=self.unigram)
            for k in ("input_ids", "labels", "sbo_left", "sbo_right", "sbo_pos"):
                out[k][r, :L] = getattr(m, k)[0]
        if self.recipe != "spanbert":
            for k in ("sbo_left", "sbo_right", "sbo_pos"):
                out.pop(k)
        if self.recipe != "bert":
            out.pop("next_sentence_label", None)
        if self.pack:
            out = pack_batch(out, self.seq_len, pad_id=self.tok.pad_id)
        return out

    def step_batches(self, step: int) -> list[Batch]:
        """This rank's micro-batches of global ``step`` (deterministic in ``step``)."""
        B, W = self.batch_size, self.di.world_size
        per_step = B * self.grad_accum * W
        out = []
        for m in range(self.grad_accum):
            # global sequence numbers of this rank's micro-batch
            base = step * per_step + m * B * W + self.di.rank * B
            keys, idx = [], []
            for g in range(base, base + B):
                epoch, pos = divmod(g, self.epoch_len)
                _, perm = self._instances(epoch)
                keys.append((epoch, int(perm[pos % len(perm)])))
                idx.append(keys[-1][1])
            epoch = keys[0][0]
            inst, _ = self._instances(epoch)
            if any(k[0] != epoch for k in keys):  # a batch straddling two epochs
                parts = [self._instances(k[0])[0].get([k[1]]) for k in keys]
                batch = _stack_padded(parts)
            else:
                batch = inst.get(idx)
            out.append(self._mask(batch, keys))
        return out

    def eval_batches(self) -> list[Batch]:
        """Held-out batches of the valid split, masked with a fixed seed."""
        inst = build_instances(self.shards, "valid", self.recipe, self.seq_len,
                               np.random.default_rng([self.seed, 999]))
        n = min(len(inst), self.eval_sequences)
        batches = []
        for s in range(0, n, self.batch_size):
            idx = list(range(s, min(n, s + self.batch_size)))
            batches.append(self._mask(inst.get(idx), [(1_000_000, i) for i in idx],
                                      self.eval_masking))
        return batches


def _stack_padded(parts: list[Batch]) -> Batch:
    T = max(p["input_ids"].shape[1] for p in parts)
    out: Batch = {}
    for k in parts[0]:
        arrs = []
        for p in parts:
            a = p[k]
            if a.ndim == 2 and a.shape[1] < T:
                a = np.pad(a, ((0, 0), (0, T - a.shape[1])),
                           constant_values=True if k == "special" else 0)
            arrs.append(a)
        out[k] = np.concatenate(arrs)
    return out
