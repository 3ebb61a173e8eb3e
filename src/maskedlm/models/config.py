"""Model configuration: one dataclass, a few named presets.

Field names follow Hugging Face ``BertConfig`` so that ``config.json`` is shared
with ``transformers`` in both directions.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from maskedlm.errors import MaskedLMError

# (layers, hidden, heads); intermediate = 4 * hidden as in BERT (Devlin et al. 2019)
# and the compact models of Turc et al. 2019 ("Well-Read Students Learn Better").
PRESETS: dict[str, tuple[int, int, int]] = {
    "tiny": (2, 128, 2),
    "mini": (4, 256, 4),
    "small": (4, 512, 8),
    "medium": (8, 512, 8),
    "base": (12, 768, 12),
    "large": (24, 1024, 16),
}


@dataclass
class ModelConfig:
    """Architecture of a BERT encoder and its pretraining heads.

    >>> ModelConfig.from_name("tiny", vocab_size=1000).hidden_size
    128
    """

    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0
    # Span Boundary Objective: relative positions 1..max_span_length inside a span
    # (SpanBERT clips span lengths at 10 words; subwords can make a span longer,
    # so the table is larger than 10, as in the SpanBERT code's max_targets=200).
    sbo_max_positions: int = 200
    # Which pretraining heads the model carries besides MLM (the recipe decides).
    nsp_head: bool = True
    sbo_head: bool = False
    # Pre-LN blocks (LayerNorm before attention and feed-forward, one final LayerNorm),
    # as in cramming (Geiping & Goldstein 2023), ModernBERT and NeoBERT: they train
    # stably at the high learning rates that small budgets need. BERT itself is post-LN.
    pre_layer_norm: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                     "intermediate_size", "max_position_embeddings", "type_vocab_size"):
            if int(getattr(self, name)) <= 0:
                raise MaskedLMError(f"config: {name} must be positive, got {getattr(self, name)}")
        if self.hidden_size % self.num_attention_heads:
            raise MaskedLMError(
                f"config: hidden_size {self.hidden_size} is not divisible by "
                f"num_attention_heads {self.num_attention_heads}")
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            if not 0.0 <= float(getattr(self, name)) < 1.0:
                raise MaskedLMError(f"config: {name} must be in [0, 1), got {getattr(self, name)}")
        if self.hidden_act not in ("gelu", "gelu_new", "gelu_pytorch_tanh", "relu"):
            raise MaskedLMError(f"config: unsupported hidden_act {self.hidden_act!r}")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @classmethod
    def from_name(cls, name: str, **overrides: Any) -> ModelConfig:
        """A preset (tiny, mini, small, medium, base, large) with optional overrides."""
        if name not in PRESETS:
            raise MaskedLMError(f"unknown size {name!r}; choose one of {', '.join(PRESETS)}")
        layers, hidden, heads = PRESETS[name]
        kw: dict[str, Any] = dict(num_hidden_layers=layers, hidden_size=hidden,
                                  num_attention_heads=heads, intermediate_size=4 * hidden)
        kw.update(overrides)
        return cls(**kw)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        extra = d.pop("extra")
        d.update(extra)
        d.update(model_type="bert", architectures=["BertForPreTraining"])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        kw = {k: v for k, v in d.items() if k in known}
        extra = {k: v for k, v in d.items()
                 if k not in known and k not in ("model_type", "architectures")}
        return cls(**kw, extra=extra)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> ModelConfig:
        path = Path(path)
        try:
            d = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise MaskedLMError(f"{path}: cannot read config ({e})") from None
        return cls.from_dict(d)
