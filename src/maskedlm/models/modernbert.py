"""The ModernBERT encoder (Warner et al. 2024), as transformers' ``ModernBertModel`` defines it.

Pre-LN blocks without biases (``config.*_bias`` switches them on), a GeGLU feed-forward,
rotary positions (Su et al. 2021) with one base for global and one for local layers,
every ``global_attn_every_n_layers``-th layer global and the others within a window of
``local_attention`` tokens, a LayerNorm on the embeddings and one after the last block.
Parameter names are transformers' (``Wqkv``, ``Wo``, ``Wi``, ``attn_norm``, ...), so the
checkpoint module maps a key by its prefix only. Same interface as
:class:`maskedlm.models.bert.BertModel`, so the heads, tasks and embeddings run on either.

Packed rows: ``sequence_ids`` (B, T) tells which sequence of a row each token belongs
to; attention stays within a sequence (a block-diagonal mask, intersected with the
window on local layers) and positions restart at every sequence. Padding is one more
"sequence" that only attends to itself, so no row of the mask is empty. Attention is
SDPA with that boolean mask on every device (one code path); dense masks cost
(B, T, T) bytes, small next to the activations at the lengths we train. The rotation
itself is :func:`maskedlm.models.kernels.rotary`.

Every decision that depends on the input (padding present, window spanning the row)
is taken with tensor ops while ``torch.onnx.export`` traces the model, so the exported
graph keeps each local layer local at every length (``export-onnx``).

Shapes: B batch, T tokens, H hidden, nh heads, hd = H / nh, R rows the last layer computes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from maskedlm.models import kernels
from maskedlm.models.bert import EncoderOutput, activation
from maskedlm.models.config import ModelConfig


def norm(config: ModelConfig) -> nn.LayerNorm:
    return nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps, bias=bool(config.norm_bias))


class Rotary(nn.Module):
    """cos/sin tables of rotary position embeddings for one base ``theta``."""

    def __init__(self, head_dim: int, theta: float) -> None:
        super().__init__()
        inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """positions (B, T) long -> cos, sin (B, T, hd/2) float32."""
        freqs = positions[..., None].float() * self.inv_freq  # (B, T, hd/2)
        return freqs.cos(), freqs.sin()


class Embeddings(nn.Module):
    """Token embeddings, LayerNorm, dropout (no position or segment tables)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.word_embeddings = kernels.TokenEmbedding(config.vocab_size, config.hidden_size,
                                                      padding_idx=config.pad_token_id)
        self.norm = norm(config)
        self.dropout = kernels.Dropout(config.embedding_dropout)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.norm(self.word_embeddings(input_ids)))  # (B, T, H)


class Attention(nn.Module):
    """Fused ``Wqkv``, rotary queries and keys, SDPA under a mask, output ``Wo``."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.num_heads, self.head_dim = config.num_attention_heads, config.head_dim
        H = config.hidden_size
        self.Wqkv = nn.Linear(H, 3 * H, bias=bool(config.attention_bias))
        self.Wo = nn.Linear(H, H, bias=bool(config.attention_bias))
        self.p = float(config.attention_probs_dropout_prob or 0.0)
        self.dropout = kernels.Dropout(self.p)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                mask: torch.Tensor | None, rows: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, T, H) normed -> (B, T, H), or (B, R, H) for the queries at ``rows``;
        cos/sin (B or 1, T, hd/2); mask (B, 1, R or T, T) True where a query sees a key."""
        B, T, H = x.shape
        nh, hd = self.num_heads, self.head_dim
        w, b = self.Wqkv.weight, self.Wqkv.bias
        if rows is None:  # queries and keys rotated in one call
            qkv = self.Wqkv(x).view(B, T, 3, nh, hd)
            qk = kernels.rotary(qkv[:, :, :2], cos[:, :, None, None], sin[:, :, None, None])
            q, k, v = qk[:, :, 0], qk[:, :, 1], qkv[:, :, 2]  # (B, T, nh, hd)
        else:
            kv = F.linear(x, w[H:], None if b is None else b[H:]).view(B, T, 2, nh, hd)
            k, v = kernels.rotary(kv[:, :, 0], cos[:, :, None], sin[:, :, None]), kv[:, :, 1]
            q = F.linear(x.gather(1, rows[..., None].expand(-1, -1, H)), w[:H],
                         None if b is None else b[:H]).view(B, -1, nh, hd)  # (B, R, nh, hd)
            at = rows[..., None].expand(-1, -1, cos.shape[-1])
            q = kernels.rotary(q, cos.expand(B, -1, -1).gather(1, at)[:, :, None],
                       sin.expand(B, -1, -1).gather(1, at)[:, :, None])
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # (B, nh, T or R, hd)
        y = kernels.attention(q, k, v, mask, self.p if self.training else 0.0)  # (B, nh, R, hd)
        return self.dropout(self.Wo(y.transpose(1, 2).reshape(B, -1, H)))


class MLP(nn.Module):
    """GeGLU: ``Wo(act(a) * gate)`` with ``a, gate = Wi(x).chunk(2)`` (Shazeer 2020)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        bias = bool(config.mlp_bias)
        self.Wi = nn.Linear(config.hidden_size, 2 * config.intermediate_size, bias=bias)
        self.Wo = nn.Linear(config.intermediate_size, config.hidden_size, bias=bias)
        self.act = activation(config.hidden_act)
        self.dropout = kernels.Dropout(float(config.hidden_dropout_prob or 0.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, gate = self.Wi(x).chunk(2, dim=-1)
        return self.Wo(self.dropout(self.act(a) * gate))


class EncoderLayer(nn.Module):
    """``x + attn(attn_norm(x))``, then ``x + mlp(mlp_norm(x))``. Layer 0 has no
    ``attn_norm``: the embedding LayerNorm just ran."""

    def __init__(self, config: ModelConfig, index: int) -> None:
        super().__init__()
        self.is_global = config.is_global(index)
        self.attn_norm = norm(config) if index else nn.Identity()
        self.attn = Attention(config)
        self.mlp_norm = norm(config)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                mask: torch.Tensor | None, rows: torch.Tensor | None = None) -> torch.Tensor:
        res = x if rows is None else x.gather(1, rows[..., None].expand(-1, -1, x.shape[-1]))
        x = res + self.attn(self.attn_norm(x), cos, sin, mask, rows)  # (B, R, H)
        return x + self.mlp(self.mlp_norm(x))


def positions_in_sequence(sequence_ids: torch.Tensor) -> torch.Tensor:
    """(B, T) sequence ids of packed rows -> (B, T) positions restarting at each sequence.

    >>> positions_in_sequence(torch.tensor([[0, 0, 0, 1, 1, 2]])).tolist()
    [[0, 1, 2, 0, 1, 0]]
    """
    B, T = sequence_ids.shape
    idx = torch.arange(T, device=sequence_ids.device).expand(B, T)
    start = torch.ones_like(sequence_ids)
    start[:, 1:] = (sequence_ids[:, 1:] != sequence_ids[:, :-1]).long()
    # each token's sequence start: the n-th start index, n = starts up to the token - 1;
    # sorting (not cummax) so that ONNX has the same ops (opset 17 has no CumMax)
    starts = torch.where(start.bool(), idx, T).sort(1).values  # (B, T) start indices first
    return idx - starts.gather(1, start.cumsum(1) - 1)


def _tracing() -> bool:
    """True while ``torch.onnx.export`` (or ``torch.jit.trace``) records the model: a
    Python branch on the input would be frozen into the graph, so none is taken."""
    return torch.jit.is_tracing()


def attention_masks(sequence_ids: torch.Tensor | None, T: int, window: int, device: torch.device
                    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(global, local) boolean masks, True where query i may attend key j.

    Global: same sequence ((B, 1, T, T)), or None when the batch is one unpadded sequence
    per row (SDPA then takes its unmasked kernel). Local: the same, and |i - j| <=
    window / 2 (transformers' bidirectional sliding window), (B or 1, 1, T, T), or
    the global mask when the window spans the row.
    """
    same = None if sequence_ids is None else \
        sequence_ids[:, None, :, None] == sequence_ids[:, None, None, :]  # (B, 1, T, T)
    if T - 1 <= window // 2 and not _tracing():  # the window holds the row: local = global
        return same, same
    i = torch.arange(T, device=device)
    band = ((i[:, None] - i[None, :]).abs() <= window // 2)[None, None]  # (1, 1, T, T)
    return same, band if same is None else same & band


class ModernBertModel(nn.Module):
    """The encoder: ``ModernBertModel(config)(input_ids) -> EncoderOutput``.

    >>> m = ModernBertModel(ModelConfig.from_name("tiny", arch="modernbert", vocab_size=100))
    >>> m(torch.tensor([[2, 7, 3]])).last_hidden_state.shape
    torch.Size([1, 3, 128])
    """

    pooler = None  # no next sentence prediction: ModernBERT has no pooler

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.embeddings = Embeddings(config)
        self.layers = nn.ModuleList(EncoderLayer(config, i) for i in range(config.num_hidden_layers))
        self.final_norm = norm(config)
        self.rope_global = Rotary(config.head_dim, config.global_rope_theta)
        self.rope_local = Rotary(config.head_dim, config.local_rope_theta)

    @property
    def blocks(self) -> nn.ModuleList:
        """The encoder blocks, bottom first (as ``BertModel.blocks``)."""
        return self.layers

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None,
                output_hidden_states: bool = False,
                rows: torch.Tensor | None = None,
                sequence_ids: torch.Tensor | None = None) -> EncoderOutput:
        """As ``BertModel.forward`` (``token_type_ids`` are ignored: ModernBERT has no
        segments), plus ``sequence_ids`` (B, T) for packed rows (module docstring);
        ``attention_mask`` then marks the padding, which is given its own id."""
        B, T = input_ids.shape
        if attention_mask is not None and (_tracing() or not bool(attention_mask.all())):
            pad = ~attention_mask.bool()
            base = torch.zeros_like(input_ids) if sequence_ids is None else sequence_ids
            sequence_ids = base.masked_fill(pad, -1)
        if sequence_ids is None:
            positions = torch.arange(T, device=input_ids.device)[None]
        else:
            positions = positions_in_sequence(sequence_ids)
        full, local = attention_masks(sequence_ids, T, self.config.local_attention, input_ids.device)
        rope = {True: self.rope_global(positions), False: self.rope_local(positions)}
        x = self.embeddings(input_ids)
        states = [x] if output_hidden_states else None
        last = len(self.layers) - 1
        for n, layer in enumerate(self.layers):
            r = rows if n == last else None
            mask = full if layer.is_global else local
            if r is not None and mask is not None:  # the rows' queries only
                mask = mask.expand(B, -1, -1, -1).gather(2, r[:, None, :, None].expand(-1, 1, -1, T))
            x = layer(x, *rope[layer.is_global], mask, r)
            if n == last:
                x = self.final_norm(x)
            if states is not None:
                states.append(x)
        return EncoderOutput(x, states)


def init_modernbert(module: nn.Module, config: ModelConfig) -> None:
    """ModernBERT's initialisation (its transformers ``_init_weights``): normal weights
    cut at 2 sigma, sigma = initializer_range, divided by sqrt(2 x layers) for the
    projections back into the residual stream (Wo) and the heads' dense layers, as
    Megatron's scaled init; zero biases, unit LayerNorms."""
    std = config.initializer_range
    out_std = std / (2.0 * config.num_hidden_layers) ** 0.5
    for name, m in module.named_modules():
        if isinstance(m, (nn.Linear, nn.Embedding)):
            s = out_std if name.endswith(("Wo", "dense")) else std
            nn.init.trunc_normal_(m.weight, std=s, a=-2 * s, b=2 * s)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)
            if isinstance(m, nn.Embedding) and m.padding_idx is not None:
                with torch.no_grad():
                    m.weight[m.padding_idx].zero_()
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
