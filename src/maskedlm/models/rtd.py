"""Replaced-token detection (ELECTRA; Clark et al. 2020, "ELECTRA: Pre-training Text
Encoders as Discriminators Rather Than Generators").

A small generator, an MLM model of the same architecture and depth at a fraction of
the width, fills the masked positions with tokens sampled from its softmax; the encoder
we keep, the discriminator, tells for every real token whether it was replaced. A
sampled token equal to the original counts as original. Total loss = MLM + lambda x RTD,
lambda = 50 (the paper, sec. 2 and appendix A).

Both networks share the embedding module (token, position and segment tables and their
LayerNorm), as ELECTRA's code does with ``shared_embeddings``; the narrower generator
reads it through a linear projection (ELECTRA's ``embeddings_project``) and its MLM
head projects back to the embedding width (transformers' ``ElectraGeneratorPredictions``:
dense hidden -> embedding size, activation, LayerNorm) before the decoder tied to the
shared word embeddings. Its vocabulary logits are computed at masked positions only.

Shapes: B batch, T tokens, H discriminator hidden, h generator hidden, N masked
positions, M real (non-padding) tokens, V vocabulary.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from maskedlm.errors import MaskedLMError
from maskedlm.models.bert import Rows, activation, init_weights
from maskedlm.models.config import GENERATOR_SCALE, RTD_WEIGHT, ModelConfig
from maskedlm.models.heads import (
    MaskedLMHead,
    PretrainingOutput,
    build_encoder,
    read_positions,
)
from maskedlm.models.losses import linear_cross_entropy
from maskedlm.models.modernbert import init_modernbert

# where config.json keeps the generator's shape (an extra key: transformers ignores it)
CONFIG_KEY = "rtd"


def generator_config(config: ModelConfig, scale: float = GENERATOR_SCALE) -> ModelConfig:
    """The generator's config: ``config`` at ``scale`` of its width (hidden size, heads
    and feed-forward together, as ELECTRA's generators), same depth.

    >>> generator_config(ModelConfig.from_name("mini", vocab_size=100)).hidden_size
    64
    """
    if not 0.0 < scale <= 1.0:
        raise MaskedLMError(f"--generator-scale must be in (0, 1], got {scale}")
    h = int(round(config.hidden_size * scale))
    heads = max(1, int(round(config.num_attention_heads * scale)))
    if h < 1 or h % heads:
        raise MaskedLMError(f"--generator-scale {scale}: a generator {h} wide with {heads} "
                            f"heads (hidden {config.hidden_size}, {config.num_attention_heads} "
                            "heads): choose a scale that divides evenly")
    ffn = max(1, config.intermediate_size * h // config.hidden_size)
    return dataclasses.replace(config, hidden_size=h, num_attention_heads=heads,
                               intermediate_size=ffn, nsp_head=False, sbo_head=False, extra={})


class ProjectedEmbeddings(nn.Module):
    """The discriminator's embedding module, projected to the generator's width.

    The shared module is held outside the registered submodules: the discriminator owns
    it (its parameters appear once in ``state_dict``, ``parameters()`` and the optimizer).
    """

    def __init__(self, shared: nn.Module, embedding_size: int, hidden_size: int,
                 arch: str) -> None:
        super().__init__()
        self._shared = (shared,)  # a tuple: not registered as a submodule
        self.bert_style = arch == "bert"  # ModernBERT's embeddings take no segments
        self.embeddings_project = (nn.Linear(embedding_size, hidden_size)
                                   if embedding_size != hidden_size else None)

    @property
    def shared(self) -> nn.Module:
        return self._shared[0]

    def share(self, embeddings: nn.Module) -> None:
        """Read ``embeddings`` from now on (an equal copy loaded with the encoder)."""
        self._shared = (embeddings,)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None
                ) -> torch.Tensor:
        x = self.shared(input_ids, token_type_ids) if self.bert_style else self.shared(input_ids)
        return x if self.embeddings_project is None else self.embeddings_project(x)  # (B, T, h)


class GeneratorHeads(nn.Module):
    """``cls.predictions``: the MLM head, from width h back to the shared embeddings'."""

    def __init__(self, config: ModelConfig, generator_hidden: int,
                 word_embeddings: nn.Embedding) -> None:
        super().__init__()
        self.predictions = MaskedLMHead(config, word_embeddings, in_features=generator_hidden)


class Generator(nn.Module):
    """The small MLM model: shared embeddings -> projection -> encoder -> MLM head.

    ``self.bert`` takes the encoder's arguments and ``mlm_logits`` the MLM model's, so
    fill-mask runs on it as on :class:`~maskedlm.models.heads.BertForPreTraining`."""

    def __init__(self, config: ModelConfig, shared_embeddings: nn.Module,
                 discriminator_config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.bert = build_encoder(config)
        self.bert.embeddings = ProjectedEmbeddings(shared_embeddings,
                                                   discriminator_config.hidden_size,
                                                   config.hidden_size, config.arch)
        self.cls = GeneratorHeads(discriminator_config, config.hidden_size,
                                  shared_embeddings.word_embeddings)

    def mlm_logits(self, hidden: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Vocabulary logits at flat ``positions`` of a (B, T, h) hidden tensor."""
        return self.cls.predictions(hidden.reshape(-1, hidden.shape[-1])[positions])


class DiscriminatorHead(nn.Module):
    """dense -> activation -> dense to one logit per token (transformers'
    ``ElectraDiscriminatorPredictions``; positive: replaced)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.act = activation(config.hidden_act)
        self.dense_prediction = nn.Linear(config.hidden_size, 1)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """(..., H) -> (...) logits."""
        return self.dense_prediction(self.act(self.dense(hidden))).squeeze(-1)


class RtdForPreTraining(nn.Module):
    """Discriminator (``bert``, ``discriminator_predictions``) + ``generator``.

    The discriminator's encoder sits where :class:`BertForPreTraining` keeps its own, so
    a checkpoint of this model loads as a plain encoder everywhere downstream.

    >>> cfg = ModelConfig.from_name("tiny", vocab_size=100, nsp_head=False)
    >>> model = RtdForPreTraining(cfg, generator_config(cfg))
    """

    # the training loop passes the step's global count of real tokens (token_normalizer)
    uses_token_normalizer = True

    def __init__(self, config: ModelConfig, gen_config: ModelConfig,
                 rtd_weight: float = RTD_WEIGHT) -> None:
        super().__init__()
        if config.nsp_head or config.sbo_head:  # ELECTRA has neither; the recipes' data stays
            config = dataclasses.replace(config, nsp_head=False, sbo_head=False)
        config.extra = {**config.extra, CONFIG_KEY: {
            "generator_hidden_size": gen_config.hidden_size,
            "generator_num_attention_heads": gen_config.num_attention_heads,
            "generator_intermediate_size": gen_config.intermediate_size,
            "rtd_weight": rtd_weight}}
        self.config = config
        self.rtd_weight = float(rtd_weight)
        self.bert = build_encoder(config)
        self.discriminator_predictions = DiscriminatorHead(config)
        self.generator = Generator(gen_config, self.bert.embeddings, config)
        if config.arch == "modernbert":
            init_modernbert(self, config)
        else:
            init_weights(self, config.initializer_range)

    @classmethod
    def from_config(cls, config: ModelConfig) -> RtdForPreTraining:
        """The model a checkpoint's ``config.json`` (with its ``rtd`` entry) describes."""
        info = config.extra.get(CONFIG_KEY)
        if not isinstance(info, dict):
            raise MaskedLMError("config: not a replaced-token detection run (no 'rtd' entry)")
        try:
            gen = dataclasses.replace(
                config, hidden_size=int(info["generator_hidden_size"]),
                num_attention_heads=int(info["generator_num_attention_heads"]),
                intermediate_size=int(info["generator_intermediate_size"]),
                nsp_head=False, sbo_head=False, extra={})
            return cls(config, gen, float(info.get("rtd_weight", RTD_WEIGHT)))
        except (KeyError, TypeError, ValueError) as e:
            raise MaskedLMError(f"config: bad 'rtd' entry ({type(e).__name__}: {e})") from None

    def sample(self, logits: torch.Tensor, gold: torch.Tensor) -> torch.Tensor:
        """Replacements for the N masked positions: one draw from the generator's softmax
        (N, V) each, from torch's global generator (seeded per step by the loop, so a
        resumed run draws the same tokens). ``gold`` (the originals) is unused here.

        Inverse-CDF sampling: one uniform number per row against the cumulative softmax.
        ``torch.multinomial`` draws an exponential variate for each of the N x V entries
        instead, which took a third of a mini RTD step on the CPU (5.1 of 16.4 s)."""
        cdf = logits.float().softmax(-1).cumsum_(-1)  # (N, V)
        u = torch.rand(cdf.shape[0], 1, device=cdf.device) * cdf[:, -1:]  # rounding: total < 1
        return torch.searchsorted(cdf, u).squeeze(1).clamp_(max=cdf.shape[1] - 1)

    def discriminator_logits(self, input_ids: torch.Tensor,
                             token_type_ids: torch.Tensor | None = None,
                             attention_mask: torch.Tensor | None = None,
                             sequence_ids: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T) logits of "replaced" for every position."""
        packed = {} if sequence_ids is None else {"sequence_ids": sequence_ids}
        hidden = self.bert(input_ids, token_type_ids, attention_mask, **packed).last_hidden_state
        return self.discriminator_predictions(hidden)

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor,
                token_type_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None,
                sequence_ids: torch.Tensor | None = None,
                normalizer: float | None = None,
                token_normalizer: float | None = None,
                **unused: Any) -> PretrainingOutput:
        """The MLM loss is summed over the masked positions and divided by ``normalizer``
        (default: this batch's count), the RTD loss summed over real tokens and divided
        by ``token_normalizer`` (default: this batch's count), as in
        :meth:`BertForPreTraining.forward`. ``unused``: the recipes' NSP and SBO arrays."""
        B, T = input_ids.shape
        packed = {} if sequence_ids is None else {"sequence_ids": sequence_ids}
        # -- generator: MLM at the masked positions only
        needed, idx, _, _ = read_positions(labels)
        rows = Rows.of(needed)
        g = self.generator.bert(input_ids, token_type_ids, attention_mask,
                                rows=None if rows is None else rows.rows, **packed).last_hidden_state
        at = (lambda p: p) if rows is None else rows.flat
        n = int(idx.numel())
        norm = float(normalizer) if normalizer else float(max(n, 1))
        gold = labels.reshape(-1)[idx]  # (N,)
        head = self.generator.cls.predictions
        t = head.transform(g.reshape(-1, g.shape[-1])[at(idx)])  # (N, H)
        mlm, correct = linear_cross_entropy(t, head.decoder_weight, head.bias, gold, 1.0 / norm)
        # -- replacements, without gradient
        with torch.no_grad():
            sampled = self.sample(F.linear(t.detach(), head.decoder_weight, head.bias), gold)
            corrupted = input_ids.reshape(-1).clone()
            corrupted[idx] = sampled.to(corrupted.dtype)
            original = input_ids.reshape(-1).clone()
            original[idx] = gold
            replaced = (corrupted != original).view(B, T)  # a draw of the original is original
            corrupted = corrupted.view(B, T)
        # -- discriminator: one binary decision per real token
        real = (torch.ones_like(input_ids, dtype=torch.bool) if attention_mask is None
                else attention_mask.bool())
        logits = self.discriminator_logits(corrupted, token_type_ids, attention_mask,
                                           sequence_ids)[real].float()  # (M,)
        target = replaced[real].float()
        m = int(real.sum())
        tnorm = float(token_normalizer) if token_normalizer else float(max(m, 1))
        rtd_sum = F.binary_cross_entropy_with_logits(logits, target, reduction="sum")
        loss = mlm + self.rtd_weight * rtd_sum / tnorm
        return PretrainingOutput(
            loss=loss, mlm_loss=mlm.detach() * norm, mlm_correct=correct, n_targets=n,
            rtd_loss=rtd_sum.detach(), rtd_correct=((logits > 0) == (target > 0.5)).sum(),
            rtd_tokens=m, rtd_replaced=int(target.sum()),
            rtd_logits=logits.detach(), rtd_targets=target.detach())


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` for binary ``labels`` (the Mann-Whitney
    statistic, ties at their average rank); NaN when one class is absent.

    >>> roc_auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1]))
    0.75
    """
    labels = np.asarray(labels).astype(bool)
    pos, neg = int(labels.sum()), int((~labels).sum())
    if pos == 0 or neg == 0:
        return float("nan")
    _, inverse, counts = np.unique(np.asarray(scores, dtype=np.float64), return_inverse=True,
                                   return_counts=True)
    upper = np.cumsum(counts)  # rank of the last member of each group of ties (1-based)
    avg_rank = (upper - (counts - 1) / 2.0)[inverse]
    return float((avg_rank[labels].sum() - pos * (pos + 1) / 2.0) / (pos * neg))
