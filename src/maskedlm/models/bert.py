"""The BERT encoder: embeddings, bidirectional self-attention blocks, pooler.

Post-LN Transformer as in Devlin et al. (2019), or pre-LN (``config.pre_layer_norm``:
LayerNorm before each sub-layer and once after the last block). Read top to bottom: ``Embeddings``
(token + position + segment), ``SelfAttention``, ``EncoderLayer`` (attention, then
feed-forward), ``Encoder``, ``Pooler``, and ``BertModel`` around them. Shapes: B batch,
T tokens, H hidden, nh heads, hd = H / nh, R rows computed by the last layer.

Query, key and value share one fused projection (``qkv``) that checkpoint.py splits
into the Hugging Face ``query``/``key``/``value`` tensors. Dropout, the word-embedding
table and attention are called from :mod:`maskedlm.models.kernels`, whose CPU fast
paths ``kernels.stock()`` turns off.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from maskedlm.models import kernels
from maskedlm.models.config import ModelConfig


def activation(name: str):
    if name == "relu":
        return F.relu
    if name in ("gelu_new", "gelu_pytorch_tanh"):
        return lambda x: F.gelu(x, approximate="tanh")
    return F.gelu  # exact erf GeLU, as BERT


class Embeddings(nn.Module):
    """Token + position + segment embeddings, then LayerNorm and dropout."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.word_embeddings = kernels.TokenEmbedding(config.vocab_size, config.hidden_size,
                                                      padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = kernels.Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None) -> torch.Tensor:
        T = input_ids.shape[1]
        x = self.word_embeddings(input_ids)  # (B, T, H)
        x = x + self.position_embeddings.weight[:T]
        if token_type_ids is None:
            x = x + self.token_type_embeddings.weight[0]
        else:
            x = x + self.token_type_embeddings(token_type_ids)
        return self.dropout(self.LayerNorm(x))


class SelfAttention(nn.Module):
    """Multi-head self-attention and its output projection (the block adds the residual).

    ``LayerNorm`` is the block's attention norm: after the residual (post-LN) or before
    the attention (pre-LN); it lives here for the Hugging Face key layout."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.head_dim = config.head_dim
        self.qkv = nn.Linear(config.hidden_size, 3 * config.hidden_size)
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.attn_dropout = config.attention_probs_dropout_prob
        self.dropout = kernels.Dropout(config.hidden_dropout_prob)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None,
                rows: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, T, H) -> (B, T, H) attention output before the residual; with ``rows``
        (B, R) only those positions', (B, R, H): their queries attend to every key, the
        other queries are not computed."""
        B, T, H = x.shape
        if rows is None:
            q, k, v = (self.qkv(x)
                       .view(B, T, 3, self.num_heads, self.head_dim)
                       .permute(2, 0, 3, 1, 4))  # 3 x (B, nh, T, hd)
        else:
            w, b = self.qkv.weight, self.qkv.bias
            k, v = (F.linear(x, w[H:], b[H:])
                    .view(B, T, 2, self.num_heads, self.head_dim)
                    .permute(2, 0, 3, 1, 4))  # 2 x (B, nh, T, hd)
            x = x.gather(1, rows[..., None].expand(-1, -1, H))  # (B, R, H)
            q = F.linear(x, w[:H], b[:H]).view(B, -1, self.num_heads, self.head_dim).transpose(1, 2)
        p = self.attn_dropout if self.training else 0.0
        y = kernels.attention(q, k, v, mask, p)  # (B, nh, R, hd)
        y = y.transpose(1, 2).reshape(B, -1, H)  # (B, R, H)
        return self.dropout(self.dense(y))


class EncoderLayer(nn.Module):
    """One block: attention, then GeLU feed-forward, each with a residual and LayerNorm.

    Post-LN (BERT): ``x = LN(x + f(x))``. Pre-LN (``config.pre_layer_norm``):
    ``x = x + f(LN(x))``, with one more LayerNorm after the last block (``Encoder``).
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.attention = SelfAttention(config)
        self.intermediate = nn.Linear(config.hidden_size, config.intermediate_size)
        self.output = nn.Linear(config.intermediate_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = kernels.Dropout(config.hidden_dropout_prob)
        self.act = activation(config.hidden_act)
        self.pre_ln = config.pre_layer_norm

    def ffn(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.output(self.act(self.intermediate(x))))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None,
                rows: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, T, H) -> (B, T, H), or (B, R, H) at ``rows`` (see ``BertModel.forward``)."""
        res = x if rows is None else x.gather(1, rows[..., None].expand(-1, -1, x.shape[-1]))
        if self.pre_ln:  # x + f(LN(x))
            x = res + self.attention(self.attention.LayerNorm(x), mask, rows)  # (B, R, H)
            return x + self.ffn(self.LayerNorm(x))
        x = self.attention.LayerNorm(res + self.attention(x, mask, rows))  # LN(x + f(x))
        return self.LayerNorm(x + self.ffn(x))


class Encoder(nn.Module):
    """The stack of ``num_hidden_layers`` blocks (``BertModel.forward`` runs it)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.layer = nn.ModuleList(EncoderLayer(config) for _ in range(config.num_hidden_layers))
        # pre-LN leaves the residual stream unnormalised: one LayerNorm after the last block
        self.final_norm = (nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
                           if config.pre_layer_norm else None)


class Pooler(nn.Module):
    """dense + tanh over the [CLS] vector, used by next sentence prediction."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(hidden[:, 0]))  # (B, T, H) -> (B, H)


@dataclass
class EncoderOutput:
    last_hidden_state: torch.Tensor               # (B, T, H)
    hidden_states: list[torch.Tensor] | None = None  # embeddings + every layer, when asked


def attention_bias(attention_mask: torch.Tensor | None) -> torch.Tensor | None:
    """Turn a (B, T) keep-mask into the (B, 1, 1, T) boolean mask SDPA broadcasts.

    Returns None when nothing is padded, so SDPA can take its fastest kernel.
    """
    if attention_mask is None:
        return None
    attention_mask = attention_mask.bool()
    if bool(attention_mask.all()):
        return None
    return attention_mask[:, None, None, :]


class BertModel(nn.Module):
    """The encoder: ``BertModel(config)(input_ids) -> EncoderOutput``.

    >>> m = BertModel(ModelConfig.from_name("tiny", vocab_size=100))
    >>> m(torch.tensor([[2, 7, 3]])).last_hidden_state.shape
    torch.Size([1, 3, 128])
    """

    def __init__(self, config: ModelConfig, add_pooler: bool = False) -> None:
        super().__init__()
        self.config = config
        self.embeddings = Embeddings(config)
        self.encoder = Encoder(config)
        self.pooler = Pooler(config) if add_pooler else None

    @property
    def blocks(self) -> nn.ModuleList:
        """The encoder blocks, bottom first (both architectures have this)."""
        return self.encoder.layer

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None,
                output_hidden_states: bool = False,
                rows: torch.Tensor | None = None) -> EncoderOutput:
        """``rows`` (B, R) long: compute the last layer only at these positions of each
        sequence and return (B, R, H) for them (the heads read nothing else). The other
        positions' last-layer queries, attention output and feed-forward are skipped, an
        exact saving of up to 10/12 of a layer; keys and values still use every token.
        """
        mask = attention_bias(attention_mask)
        x = self.embeddings(input_ids, token_type_ids)
        states = [x] if output_hidden_states else None
        last = len(self.encoder.layer) - 1
        for i, layer in enumerate(self.encoder.layer):
            x = layer(x, mask, rows if i == last else None)
            if i == last and self.encoder.final_norm is not None:
                x = self.encoder.final_norm(x)
            if states is not None:
                states.append(x)
        return EncoderOutput(x, states)


@dataclass
class Rows:
    """Which positions the last layer computes: ``rows`` (B, R) for ``BertModel(rows=)``,
    and ``flat(p)`` mapping flat (B*T) positions to flat (B*R) positions of its output."""

    rows: torch.Tensor  # (B, R) long
    slot: torch.Tensor  # (B, T) long: slot of a needed position in its row
    T: int

    def flat(self, positions: torch.Tensor) -> torch.Tensor:
        b, t = positions // self.T, positions % self.T
        return b * self.rows.shape[1] + self.slot[b, t]

    @staticmethod
    def of(needed: torch.Tensor, max_share: float = 0.75) -> Rows | None:
        """``needed`` (B, T) bool -> Rows, or None when most positions are needed anyway.

        The needed positions come first in each row, in order (so [CLS], when needed,
        stays at slot 0); shorter rows are filled with other positions, computed and
        ignored.
        """
        B, T = needed.shape
        R = int(needed.sum(1).max()) if B else 0
        if R == 0 or R > max_share * T:
            return None
        rows = torch.sort((~needed).to(torch.int8), dim=1, stable=True).indices[:, :R]
        slot = torch.zeros(B, T, dtype=torch.long, device=needed.device)
        slot.scatter_(1, rows, torch.arange(R, device=needed.device).expand(B, R))
        return Rows(rows, slot, T)


def init_weights(module: nn.Module, std: float) -> None:
    """BERT's initialisation: N(0, 0.02) weights, zero biases, unit LayerNorm."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=std)
            if m.padding_idx is not None:
                with torch.no_grad():
                    m.weight[m.padding_idx].zero_()
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
