"""Pretraining heads around the encoder: MLM, next sentence prediction, span boundary.

The vocabulary decoders are tied to the input word embeddings and have their own
bias. Following MosaicBERT and cramming (Geiping & Goldstein 2023), vocabulary
logits are computed only at positions that have a target ("sparse prediction").
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from maskedlm.errors import MaskedLMError
from maskedlm.models.bert import BertModel, Rows, activation, init_weights
from maskedlm.models.config import ModelConfig
from maskedlm.models.losses import linear_cross_entropy
from maskedlm.models.modernbert import ModernBertModel, init_modernbert

Encoder = BertModel | ModernBertModel


def build_encoder(config: ModelConfig, add_pooler: bool = False) -> Encoder:
    """The encoder of ``config.arch``; ``add_pooler`` (next sentence prediction) is BERT's.

    >>> build_encoder(ModelConfig.from_name("tiny", arch="modernbert", vocab_size=100)).pooler is None
    True
    """
    if config.arch == "modernbert":
        if add_pooler:
            raise MaskedLMError("next sentence prediction needs BERT's pooler and sentence pairs; "
                                "--arch modernbert has neither (use --recipe roberta, spanbert or budget)")
        return ModernBertModel(config)
    return BertModel(config, add_pooler=add_pooler)


def decoder_bias(config: ModelConfig) -> nn.Parameter | None:
    """The vocabulary decoder's own bias, or None where ``config.decoder_bias`` is off."""
    return nn.Parameter(torch.zeros(config.vocab_size)) if config.decoder_bias else None


class PredictionTransform(nn.Module):
    """dense -> GeLU -> LayerNorm, before the tied decoder (ModernBERT's ``head``: its
    biases follow ``classifier_bias`` and ``norm_bias``)."""

    def __init__(self, config: ModelConfig, in_features: int | None = None) -> None:
        super().__init__()
        self.dense = nn.Linear(in_features or config.hidden_size, config.hidden_size,
                               bias=bool(config.classifier_bias))
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps,
                                      bias=bool(config.norm_bias))
        self.act = activation(config.classifier_activation or config.hidden_act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.act(self.dense(x)))


class MaskedLMHead(nn.Module):
    """Transform, then logits against the tied word embeddings plus a bias."""

    def __init__(self, config: ModelConfig, word_embeddings: nn.Embedding,
                 in_features: int | None = None) -> None:
        super().__init__()
        # in_features: a narrower encoder's width (the RTD generator, models/rtd.py)
        self.transform = PredictionTransform(config, in_features=in_features)
        self.decoder_weight = word_embeddings.weight  # tied: the same Parameter
        self.bias = decoder_bias(config)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """(N, H) hidden states at target positions -> (N, V) logits."""
        return F.linear(self.transform(hidden), self.decoder_weight, self.bias)

    def loss(self, hidden: torch.Tensor, gold: torch.Tensor, scale: float = 1.0
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """(scale x summed cross-entropy, correct count) at (N, H) target states; no (N, V)
        logits are kept (see losses.py)."""
        return linear_cross_entropy(self.transform(hidden), self.decoder_weight, self.bias,
                                    gold, scale)


class SpanBoundaryHead(nn.Module):
    """SpanBERT's Span Boundary Objective (Joshi et al. 2020, sec. 3.2).

    h0 = [z_{s-1}; z_{e+1}; p_{i-s+1}], two layers of Linear -> GeLU -> LayerNorm,
    then the vocabulary decoder tied to the input embeddings with its own bias.
    """

    def __init__(self, config: ModelConfig, word_embeddings: nn.Embedding) -> None:
        super().__init__()
        self.position_embeddings = nn.Embedding(config.sbo_max_positions, config.hidden_size)
        self.layer1 = PredictionTransform(config, in_features=3 * config.hidden_size)
        self.layer2 = PredictionTransform(config)
        self.decoder_weight = word_embeddings.weight
        self.bias = decoder_bias(config)

    def forward(self, left: torch.Tensor, right: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """left/right (N, H) boundary states, pos (N,) 0-based offsets -> (N, V) logits."""
        return F.linear(self.hidden(left, right, pos), self.decoder_weight, self.bias)

    def hidden(self, left: torch.Tensor, right: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        pos = pos.clamp(max=self.position_embeddings.num_embeddings - 1)
        h = torch.cat([left, right, self.position_embeddings(pos)], dim=-1)
        return self.layer2(self.layer1(h))

    def loss(self, left: torch.Tensor, right: torch.Tensor, pos: torch.Tensor,
             gold: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        """scale x summed cross-entropy of the span boundary predictions."""
        return linear_cross_entropy(self.hidden(left, right, pos), self.decoder_weight,
                                    self.bias, gold, scale)[0]


class PretrainingHeads(nn.Module):
    """Container whose attribute names give the Hugging Face ``cls.*`` key layout."""

    def __init__(self, config: ModelConfig, word_embeddings: nn.Embedding) -> None:
        super().__init__()
        self.predictions = MaskedLMHead(config, word_embeddings)
        self.seq_relationship = nn.Linear(config.hidden_size, 2) if config.nsp_head else None
        self.span_boundary = SpanBoundaryHead(config, word_embeddings) if config.sbo_head else None


def read_positions(labels: torch.Tensor, sbo_left: torch.Tensor | None = None,
                   sbo_right: torch.Tensor | None = None, with_cls: bool = False
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Where the pretraining heads read the encoder output, for labels (B, T).

    Returns (needed (B, T) bool: targets, SBO boundaries, [CLS] when ``with_cls``;
    flat target positions (N,); flat left and right SBO boundary positions (N,) or None).
    """
    T = labels.shape[1]
    needed = labels != -100
    idx = needed.reshape(-1).nonzero().squeeze(1)  # (N,) flat in B*T
    left = right = None
    if sbo_left is not None and sbo_right is not None:
        row = idx // T * T  # flat offset of each target's sequence
        left = row + sbo_left.reshape(-1)[idx]
        right = row + sbo_right.reshape(-1)[idx]
        needed.view(-1)[left] = True
        needed.view(-1)[right] = True
    if with_cls:
        needed[:, 0] = True
    return needed, idx, left, right


@dataclass
class PretrainingOutput:
    loss: torch.Tensor
    mlm_loss: torch.Tensor           # summed over targets (see ``normalizer``)
    mlm_correct: torch.Tensor        # number of targets predicted right
    n_targets: int
    sbo_loss: torch.Tensor | None = None
    nsp_loss: torch.Tensor | None = None
    nsp_correct: torch.Tensor | None = None
    # replaced-token detection (models/rtd.py): summed binary loss over the real tokens,
    # right decisions, real tokens, replaced tokens; per-token logits and targets (M,)
    rtd_loss: torch.Tensor | None = None
    rtd_correct: torch.Tensor | None = None
    rtd_tokens: int = 0
    rtd_replaced: int = 0
    rtd_logits: torch.Tensor | None = None
    rtd_targets: torch.Tensor | None = None


class BertForPreTraining(nn.Module):
    """Encoder + MLM head (+ NSP, + SBO when the config asks for them).

    >>> cfg = ModelConfig.from_name("tiny", vocab_size=100, sbo_head=True)
    >>> model = BertForPreTraining(cfg)
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.bert = build_encoder(config, add_pooler=config.nsp_head)
        self.cls = PretrainingHeads(config, self.bert.embeddings.word_embeddings)
        if config.arch == "modernbert":
            init_modernbert(self, config)
        else:
            init_weights(self, config.initializer_range)

    def mlm_logits(self, hidden: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Vocabulary logits at flat ``positions`` of a (B, T, H) hidden tensor."""
        return self.cls.predictions(hidden.reshape(-1, hidden.shape[-1])[positions])

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor,
                token_type_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None,
                next_sentence_label: torch.Tensor | None = None,
                sbo_left: torch.Tensor | None = None, sbo_right: torch.Tensor | None = None,
                sbo_pos: torch.Tensor | None = None,
                sequence_ids: torch.Tensor | None = None,
                normalizer: float | None = None,
                nsp_normalizer: float | None = None) -> PretrainingOutput:
        """Losses are sums over targets divided by ``normalizer`` (default: this batch's
        target count) and, for NSP, over sequences divided by ``nsp_normalizer``, so that
        accumulation and data parallelism can divide by the global counts and reproduce
        one big batch exactly. ``sequence_ids`` (B, T): packed rows (ModernBERT only; see
        :mod:`maskedlm.models.modernbert`)."""
        B, T = input_ids.shape
        targets = labels.reshape(-1)
        head = self.cls.span_boundary
        sbo = head is not None and sbo_left is not None
        nsp = self.cls.seq_relationship is not None and next_sentence_label is not None
        needed, idx, left_pos, right_pos = read_positions(
            labels, sbo_left if sbo else None, sbo_right if sbo else None, with_cls=nsp)
        rows = Rows.of(needed)  # the last layer runs only where a head reads
        packed = {} if sequence_ids is None else {"sequence_ids": sequence_ids}
        hidden = self.bert(input_ids, token_type_ids, attention_mask,
                           rows=None if rows is None else rows.rows, **packed).last_hidden_state
        at = (lambda p: p) if rows is None else rows.flat
        flat = hidden.reshape(-1, hidden.shape[-1])
        n = int(idx.numel())
        norm = float(normalizer) if normalizer else float(max(n, 1))
        gold = targets[idx]
        mlm, correct = self.cls.predictions.loss(flat[at(idx)], gold, 1.0 / norm)
        out = PretrainingOutput(loss=mlm, mlm_loss=mlm.detach() * norm,
                                mlm_correct=correct, n_targets=n)
        if sbo:
            sbo_loss = head.loss(flat[at(left_pos)], flat[at(right_pos)],
                                 sbo_pos.reshape(-1)[idx], gold, 1.0 / norm)
            out.loss = out.loss + sbo_loss
            out.sbo_loss = sbo_loss.detach() * norm
        if nsp:
            nsp_logits = self.cls.seq_relationship(self.bert.pooler(hidden)).float()
            nsp_sum = F.cross_entropy(nsp_logits, next_sentence_label, reduction="sum")
            out.loss = out.loss + nsp_sum / float(nsp_normalizer or B)
            out.nsp_loss = nsp_sum.detach()
            out.nsp_correct = (nsp_logits.argmax(-1) == next_sentence_label).sum()
        return out
