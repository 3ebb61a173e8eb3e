"""The BERT encoder: embeddings, bidirectional self-attention blocks, pooler.

Post-LN Transformer as in Devlin et al. (2019). Attention goes through
``torch.nn.functional.scaled_dot_product_attention`` with a padding mask; query, key
and value share one fused projection (``qkv``) that checkpoint.py splits into the
Hugging Face ``query``/``key``/``value`` tensors.

On CPU, dropout is the largest cost after the matmuls: ``torch.nn.functional.dropout``
draws one Mersenne-Twister number per element (about 9 ns each on this machine, 9% of
a mini pretraining step), and SDPA's CPU flash kernel refuses dropout, so its math
fallback pays that price again on the attention probabilities. ``Dropout`` below draws
64 random bits per four elements instead (2^-16 resolution on p) and saves a 1-byte
mask, which makes a dropout forward + backward about 4x cheaper; the attention of a
training step on CPU is then written out with it. CUDA keeps PyTorch's fused kernels.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from maskedlm.config import ModelConfig


def activation(name: str):
    if name == "relu":
        return F.relu
    if name in ("gelu_new", "gelu_pytorch_tanh"):
        return lambda x: F.gelu(x, approximate="tanh")
    return F.gelu  # exact erf GeLU, as BERT


def drop_mask(shape: torch.Size, p: float, device: torch.device) -> torch.Tensor:
    """Bernoulli(p) boolean mask, True where dropped, from 16 random bits per element.

    ``randint`` over the full int64 range gives 64 uniform bits per draw (``random_()``
    would leave the top bit 0); each 16-bit lane is compared with p * 2^16.
    """
    n = math.prod(shape)
    words = torch.randint(-2**63, 2**63 - 1, ((n + 3) // 4,), dtype=torch.int64, device=device)
    lanes = words.view(torch.int16)[:n].view(shape)
    return lanes < round(p * 65536) - 32768


class _Dropout(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, p: float) -> torch.Tensor:  # type: ignore[override]
        drop = drop_mask(x.shape, p, x.device)
        ctx.scale = 1.0 / (1.0 - p)
        ctx.save_for_backward(drop)
        return x.masked_fill(drop, 0).mul_(ctx.scale)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        (drop,) = ctx.saved_tensors
        return grad.masked_fill(drop, 0).mul_(ctx.scale), None


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Inverted dropout; the cheap mask above on CPU, ``F.dropout`` elsewhere."""
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu" or p >= 1.0:
        return F.dropout(x, p, True)
    return _Dropout.apply(x, p)


class Dropout(nn.Module):
    """``nn.Dropout`` with the CPU fast path of :func:`dropout`."""

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability must be in [0, 1], got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class _ReusedGradLookup(torch.autograd.Function):
    """``F.embedding`` whose backward writes into a spare (V, H) tensor of the module."""

    @staticmethod
    def forward(ctx, weight: torch.Tensor, ids: torch.Tensor, module: TokenEmbedding) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(ids)
        ctx.module = module
        return F.embedding(ids, weight, module.padding_idx)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        (ids,) = ctx.saved_tensors
        module: TokenEmbedding = ctx.module
        buf, module._spare = module._spare, None
        weight = module.weight
        # Reuse only a tensor nobody else can see: the parameter's .grad was reset to
        # None (no accumulation into it) and no Python name holds the old gradient
        # (getrefcount: ``buf`` and its own argument), and it is not a view of something else.
        if (buf is None or weight.grad is not None or sys.getrefcount(buf) > 2 or buf._base is not None
                or buf.shape != weight.shape or buf.dtype != grad.dtype or buf.device != grad.device):
            buf = None
        if buf is None:
            buf = torch.zeros(weight.shape, dtype=grad.dtype, device=grad.device)
        else:
            buf.zero_()
        buf.index_add_(0, ids.reshape(-1), grad.reshape(-1, grad.shape[-1]))
        if module.padding_idx is not None:  # the padding row gets no gradient
            buf[module.padding_idx] = 0
        return buf, None, None


class TokenEmbedding(nn.Embedding):
    """The word-embedding table: ``nn.Embedding`` that reuses its gradient tensor on CPU.

    PyTorch's embedding backward allocates a fresh zeroed (V, H) gradient every step. For
    a 30k x 384 table that is 47 MB, above glibc's largest mmap threshold (32 MB), so each
    step maps it fresh from the kernel and page-faults it in: ~12 ms on this CPU, about 6%
    of a MiniLM fine-tuning step, where zeroing a tensor already in memory takes 1 ms.
    Here the gradient of the previous step, once ``zero_grad(set_to_none=True)`` has let
    go of it, is zeroed in place and filled with ``index_add_``: the same values and the
    same autograd semantics (accumulation, tied weights and DDP take the gradient from
    autograd as usual). CUDA, eval and the ``max_norm``/``sparse`` options take
    the stock path.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._spare: torch.Tensor | None = None
        self.weight.register_post_accumulate_grad_hook(self._keep)

    def _keep(self, weight: torch.Tensor) -> None:
        self._spare = weight.grad

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if (ids.device.type != "cpu" or not torch.is_grad_enabled() or not self.weight.requires_grad
                or self.max_norm is not None or self.sparse or self.scale_grad_by_freq):
            return super().forward(ids)
        return _ReusedGradLookup.apply(self.weight, ids, self)


class Embeddings(nn.Module):
    """Token + position + segment embeddings, then LayerNorm and dropout."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.word_embeddings = TokenEmbedding(config.vocab_size, config.hidden_size,
                                              padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = Dropout(config.hidden_dropout_prob)

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
    """Multi-head self-attention with its output projection, residual and LayerNorm."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.head_dim = config.head_dim
        self.qkv = nn.Linear(config.hidden_size, 3 * config.hidden_size)
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.attn_dropout = config.attention_probs_dropout_prob
        self.dropout = Dropout(config.hidden_dropout_prob)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None,
                rows: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, T, H) -> (B, T, H); with ``rows`` (B, R) only those positions' outputs,
        (B, R, H): their queries attend to every key, the other queries are not computed."""
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
        if p > 0.0 and x.device.type == "cpu":
            y = attention_with_dropout(q, k, v, mask, p)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        y = y.transpose(1, 2).reshape(B, -1, H)
        return self.LayerNorm(x + self.dropout(self.dense(y)))


def attention_with_dropout(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                           mask: torch.Tensor | None, p: float) -> torch.Tensor:
    """softmax(q k^T / sqrt(d) + mask) with dropout, times v: SDPA's math path, with the
    cheap dropout. q, k, v (B, nh, T, hd); mask (B, 1, 1, T) True where kept."""
    scores = (q * q.shape[-1] ** -0.5) @ k.transpose(-1, -2)  # (B, nh, T, T)
    if mask is not None:
        scores.masked_fill_(~mask, float("-inf"))  # [CLS] is never masked: no empty row
    return dropout(scores.softmax(-1), p, True) @ v


class EncoderLayer(nn.Module):
    """One post-LN block: attention, then GeLU feed-forward, each with residual + LayerNorm."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.attention = SelfAttention(config)
        self.intermediate = nn.Linear(config.hidden_size, config.intermediate_size)
        self.output = nn.Linear(config.intermediate_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = Dropout(config.hidden_dropout_prob)
        self.act = activation(config.hidden_act)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None,
                rows: torch.Tensor | None = None) -> torch.Tensor:
        x = self.attention(x, mask, rows)
        return self.LayerNorm(x + self.dropout(self.output(self.act(self.intermediate(x)))))


class Encoder(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.layer = nn.ModuleList(EncoderLayer(config) for _ in range(config.num_hidden_layers))


class Pooler(nn.Module):
    """dense + tanh over the [CLS] vector, used by next sentence prediction."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(hidden[:, 0]))


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
