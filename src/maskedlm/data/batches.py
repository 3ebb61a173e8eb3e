"""The pretraining batch source: shards -> instances -> masked (and packed) NumPy batches.

:class:`PretrainBatches` is the data half of the training loop's ``BatchSource``
protocol (``maskedlm.training.loop``): it returns the NumPy micro-batches of any global step;
the loop above turns them into tensors. Nothing here imports torch.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from maskedlm.data.instances import InstanceSet, build_instances
from maskedlm.data.masking import MaskingConfig, mask_batch, sequence_keys
from maskedlm.data.packing import Batch, pack_batch
from maskedlm.data.shards import ShardSet
from maskedlm.data.tokenizer import Tokenizer
from maskedlm.errors import MaskedLMError


class RankInfo(Protocol):
    """Where this process sits in the job: ``maskedlm.training.dist.DistInfo`` is one."""

    rank: int
    world_size: int


class PretrainBatches:
    """A ``BatchSource`` (see ``maskedlm.training.loop``) over prepared shards.

    Instances are rebuilt for every epoch (new NSP pairs for ``bert``) and visited in
    a seeded permutation. Each sequence is masked from its own random stream, keyed by
    ``(seed, epoch, instance)`` (:func:`~maskedlm.data.masking.sequence_keys`), so masking
    is dynamic across epochs and independent of batch size, process count and resumption;
    a whole micro-batch is masked in one vectorized call.

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
        self._special_ids = sorted(tokenizer.special_ids)
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

    def _mask(self, batch: Batch, epoch: np.ndarray, index: np.ndarray,
              masking: MaskingConfig | None = None) -> Batch:
        """Mask a batch in one call; row r draws from the key of its (epoch, instance), so its
        targets do not depend on the batch it lands in (batch size, accumulation, ranks)."""
        m = mask_batch(batch["input_ids"], batch["word_starts"], batch["special"],
                       masking or self.masking, sequence_keys(self.seed, epoch, index),
                       vocab_size=self.tok.vocab_size, mask_id=self.tok.mask_id,
                       special_ids=self._special_ids, unigram_probs=self.unigram)
        out = dict(batch, input_ids=m.input_ids, labels=m.labels)
        if self.recipe == "spanbert":
            out.update(sbo_left=m.sbo_left, sbo_right=m.sbo_right, sbo_pos=m.sbo_pos)
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
            epoch, pos = np.divmod(np.arange(base, base + B, dtype=np.int64), self.epoch_len)
            index = np.empty_like(pos)
            for e in np.unique(epoch).tolist():  # one epoch, two when the batch straddles them
                perm = self._instances(e)[1]
                index[epoch == e] = perm[pos[epoch == e] % len(perm)]
            first = int(epoch[0])
            if (epoch != first).any():
                parts = [self._instances(int(e))[0].get([i]) for e, i in zip(epoch, index, strict=True)]
                batch = _stack_padded(parts)
            else:
                batch = self._instances(first)[0].get(index)
            out.append(self._mask(batch, epoch, index))
        return out

    def eval_batches(self) -> list[Batch]:
        """Held-out batches of the valid split, masked with a fixed seed."""
        inst = build_instances(self.shards, "valid", self.recipe, self.seq_len,
                               np.random.default_rng([self.seed, 999]))
        n = min(len(inst), self.eval_sequences)
        batches = []
        for s in range(0, n, self.batch_size):
            idx = np.arange(s, min(n, s + self.batch_size))
            batches.append(self._mask(inst.get(idx), np.full_like(idx, 1_000_000), idx,
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
