"""Model configuration: one dataclass, a few named presets, two architectures.

``arch="bert"`` is the 2018 BERT encoder; ``arch="modernbert"`` the ModernBERT one
(Warner et al. 2024). Field names follow Hugging Face ``BertConfig``; ``config.json``
is written as ``BertConfig`` or ``ModernBertConfig`` (``to_dict``/``from_dict`` rename
the few fields the two spell differently), so it is shared with ``transformers`` in
both directions.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from maskedlm.errors import MaskedLMError

# lambda of ELECTRA (Clark et al. 2020, sec. 2: "We set lambda = 50")
RTD_WEIGHT = 50.0
# the generator's width as a share of the discriminator's; the paper's best are 1/4-1/2
# (sec. 3.2, Figure 3); ELECTRA-Small's generator is 1/4 wide (appendix, Table 6)
GENERATOR_SCALE = 0.25

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
ARCHS: tuple[str, ...] = ("bert", "modernbert")
# ModernBERT-base's gated feed-forward is 1.5 x hidden wide (1152 for 768; Warner et al.
# 2024, its config.json): the GLU's two input halves make it 3 x hidden of weights.
MODERNBERT_FFN_RATIO = 1.5
# Our field -> transformers' ModernBertConfig field, where the two names differ.
_MODERNBERT_NAMES = {"hidden_act": "hidden_activation", "layer_norm_eps": "norm_eps",
                     "hidden_dropout_prob": "mlp_dropout",
                     "attention_probs_dropout_prob": "attention_dropout"}
# Fields only one architecture has; to_dict leaves the other's out of config.json.
_BERT_ONLY = ("type_vocab_size", "pre_layer_norm")
_MODERNBERT_ONLY = ("global_attn_every_n_layers", "local_attention", "global_rope_theta",
                    "local_rope_theta", "embedding_dropout", "norm_bias", "attention_bias",
                    "mlp_bias", "classifier_bias", "decoder_bias", "classifier_activation")


@dataclass
class ModelConfig:
    """Architecture of an encoder and its pretraining heads.

    Fields set to None take their architecture's default in ``__post_init__`` (BERT:
    dropout 0.1, LayerNorm eps 1e-12, biases everywhere; ModernBERT: no dropout, eps
    1e-5, biases only in the decoder, as transformers' ``ModernBertConfig``).

    >>> ModelConfig.from_name("tiny", vocab_size=1000).hidden_size
    128
    >>> ModelConfig.from_name("mini", arch="modernbert").intermediate_size
    384
    """

    arch: str = "bert"

    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float | None = None
    attention_probs_dropout_prob: float | None = None
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    layer_norm_eps: float | None = None
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
    # ModernBERT (arch="modernbert"), as transformers' ModernBertConfig: every n-th layer
    # (0, n, 2n, ...) attends globally, the others within a window of ``local_attention``
    # tokens (|i - j| <= local_attention / 2); rotary positions with their own base per
    # kind of layer (ModernBERT: 160k global, 10k local).
    global_attn_every_n_layers: int = 3
    local_attention: int = 128
    global_rope_theta: float = 160_000.0
    local_rope_theta: float = 10_000.0
    embedding_dropout: float = 0.0
    # Bias switches (None: the architecture's default, see the class docstring).
    norm_bias: bool | None = None        # LayerNorms
    attention_bias: bool | None = None   # Wqkv, Wo
    mlp_bias: bool | None = None         # Wi, Wo
    classifier_bias: bool | None = None  # the prediction heads' dense layers
    decoder_bias: bool = True            # the vocabulary decoders
    classifier_activation: str | None = None  # the heads' activation (None: hidden_act)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_types(self)
        if self.arch not in ARCHS:
            raise MaskedLMError(f"config: arch must be one of {', '.join(ARCHS)}, got {self.arch!r}")
        modern = self.arch == "modernbert"
        defaults = dict(hidden_dropout_prob=0.0 if modern else 0.1,
                        attention_probs_dropout_prob=0.0 if modern else 0.1,
                        layer_norm_eps=1e-5 if modern else 1e-12,
                        norm_bias=not modern, attention_bias=not modern, mlp_bias=not modern,
                        classifier_bias=not modern, classifier_activation=self.hidden_act)
        for name, value in defaults.items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        if modern:
            self.pre_layer_norm = True  # ModernBERT blocks are pre-LN by construction
            if self.global_attn_every_n_layers < 1:
                raise MaskedLMError("config: global_attn_every_n_layers must be >= 1, "
                                    f"got {self.global_attn_every_n_layers}")
            if self.local_attention < 2 or self.local_attention % 2:
                raise MaskedLMError(f"config: local_attention must be an even number >= 2, "
                                    f"got {self.local_attention}")
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
        for name in ("hidden_act", "classifier_activation"):
            if getattr(self, name) not in ("gelu", "gelu_new", "gelu_pytorch_tanh", "relu"):
                raise MaskedLMError(f"config: unsupported {name} {getattr(self, name)!r}")

        _check_sizes(self)

    def is_global(self, layer: int) -> bool:
        """Whether ModernBERT layer ``layer`` attends globally (else within the window)."""
        return layer % self.global_attn_every_n_layers == 0

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @classmethod
    def from_name(cls, name: str, arch: str = "bert", **overrides: Any) -> ModelConfig:
        """A preset (tiny, mini, small, medium, base, large) of ``arch`` with optional
        overrides; the same depth, width and heads for both architectures."""
        if name not in PRESETS:
            raise MaskedLMError(f"unknown size {name!r}; choose one of {', '.join(PRESETS)}")
        layers, hidden, heads = PRESETS[name]
        ffn = int(MODERNBERT_FFN_RATIO * hidden) if arch == "modernbert" else 4 * hidden
        kw: dict[str, Any] = dict(arch=arch, num_hidden_layers=layers, hidden_size=hidden,
                                  num_attention_heads=heads, intermediate_size=ffn)
        kw.update(overrides)
        return cls(**kw)

    def to_dict(self) -> dict[str, Any]:
        """``config.json``: BertConfig fields, or ModernBertConfig's for ``modernbert``
        (with its ``layer_types`` and ``rope_parameters`` spelled out)."""
        d = dataclasses.asdict(self)
        d.update(d.pop("extra"))
        arch = d.pop("arch")
        if arch == "bert":
            for k in _MODERNBERT_ONLY:
                d.pop(k)
            d.update(model_type="bert", architectures=["BertForPreTraining"])
            return d
        for k in _BERT_ONLY:
            d.pop(k)
        for ours, hf in _MODERNBERT_NAMES.items():
            d[hf] = d.pop(ours)
        d["layer_types"] = ["full_attention" if self.is_global(i) else "sliding_attention"
                            for i in range(self.num_hidden_layers)]
        d["rope_parameters"] = {
            "full_attention": {"rope_type": "default", "rope_theta": self.global_rope_theta},
            "sliding_attention": {"rope_type": "default", "rope_theta": self.local_rope_theta}}
        d.update(model_type="modernbert", architectures=["ModernBertForMaskedLM"])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        if not isinstance(d, dict):
            raise MaskedLMError(f"config: a JSON object, got {type(d).__name__}")
        d = dict(d)
        if d.get("model_type", "bert") == "modernbert":
            d = _from_modernbert(d)
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
            d = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError) as e:
            raise MaskedLMError(f"{path}: cannot read config ({type(e).__name__})") from None
        if not isinstance(d, dict):
            raise MaskedLMError(f"{path}: a config is a JSON object, got {type(d).__name__}")
        return cls.from_dict(d)


# Bounds checked before any tensor is allocated: each well above the largest published
# encoder (XLM-R XXL: 48 layers, hidden 4096, vocab 250k; ModernBERT: 8192 positions), so
# a hostile or corrupt config.json fails in one line instead of in the allocator.
MAX_SIZES = {"vocab_size": 2_000_000, "hidden_size": 16_384, "num_hidden_layers": 512,
             "num_attention_heads": 1024, "intermediate_size": 131_072,
             "max_position_embeddings": 1_048_576, "type_vocab_size": 1024,
             "sbo_max_positions": 65_536, "global_attn_every_n_layers": 512,
             "local_attention": 1_048_576, "pad_token_id": 2_000_000}
MAX_PARAMETERS = 50e9  # the estimate below; about 200 GB of fp32 weights


def _check_types(c: ModelConfig) -> None:
    """Every numeric field a number of the right kind (a config.json may say "two")."""
    for f in dataclasses.fields(c):
        v = getattr(c, f.name)
        if f.name == "pad_token_id" and v is None:  # some configs say null: BERT's 0
            c.pad_token_id = v = 0
        if f.name in MAX_SIZES:
            if isinstance(v, bool) or not isinstance(v, int | float) or (
                    isinstance(v, float) and not v.is_integer()):
                raise MaskedLMError(f"config: {f.name} must be an integer, got {v!r}")
            setattr(c, f.name, int(v))
        elif f.name in ("initializer_range", "global_rope_theta", "local_rope_theta",
                        "embedding_dropout", "hidden_dropout_prob", "attention_probs_dropout_prob",
                        "layer_norm_eps") and v is not None:
            if isinstance(v, bool) or not isinstance(v, int | float) or v != v or v in (
                    float("inf"), float("-inf")):
                raise MaskedLMError(f"config: {f.name} must be a finite number, got {v!r}")
        elif f.name in ("hidden_act", "arch") and not isinstance(v, str):
            raise MaskedLMError(f"config: {f.name} must be a string, got {v!r}")


def _check_sizes(c: ModelConfig) -> None:
    for name, most in MAX_SIZES.items():
        if getattr(c, name) > most:
            raise MaskedLMError(f"config: {name} {getattr(c, name)} is over {most:,}; not a "
                                "model this toolkit builds (a corrupt config.json?)")
    if c.pad_token_id < 0 or c.pad_token_id >= c.vocab_size:
        raise MaskedLMError(f"config: pad_token_id {c.pad_token_id} is outside the vocabulary "
                            f"(0..{c.vocab_size - 1})")
    h = c.hidden_size
    params = (c.vocab_size + c.max_position_embeddings + c.type_vocab_size) * h \
        + c.num_hidden_layers * (4 * h * h + 3 * h * c.intermediate_size)
    if params > MAX_PARAMETERS:
        raise MaskedLMError(f"config: about {params / 1e9:.0f}B parameters "
                            f"({c.num_hidden_layers} layers, hidden {h}, vocab {c.vocab_size}); "
                            f"over the {MAX_PARAMETERS / 1e9:.0f}B this toolkit builds")


def _from_modernbert(d: dict[str, Any]) -> dict[str, Any]:
    """A ModernBertConfig dict (transformers 4.48+ or 5.x spelling) -> our field names."""
    d["arch"] = "modernbert"
    for ours, hf in _MODERNBERT_NAMES.items():
        if hf in d:
            d[ours] = d.pop(hf)
    types = d.pop("layer_types", None)
    if types:
        n = next((i for i, t in enumerate(types) if i and t == "full_attention"), len(types))
        want = ["full_attention" if i % n == 0 else "sliding_attention" for i in range(len(types))]
        if list(types) != want:
            raise MaskedLMError(f"config: layer_types {types} is not 'global every n-th layer' "
                                "(the only pattern ModernBERT defines)")
        d["global_attn_every_n_layers"] = n
    rope = d.pop("rope_parameters", None) or {}
    for kind, name in (("full_attention", "global_rope_theta"),
                       ("sliding_attention", "local_rope_theta")):
        params = rope.get(kind) or {}
        if params.get("rope_type", "default") != "default":
            raise MaskedLMError(f"config: rope_type {params['rope_type']!r} is not supported "
                                "(only the default rotary embedding)")
        if "rope_theta" in params:
            d[name] = params["rope_theta"]
    if d.pop("rope_scaling", None) is not None:
        raise MaskedLMError("config: rope_scaling is not supported")
    return d
