"""The one module that reads and writes checkpoints.

A checkpoint is a directory: ``config.json`` (Hugging Face ``BertConfig`` fields, or
``ModernBertConfig`` ones), ``model.safetensors`` in the Hugging Face
``BertForPreTraining`` (or ``ModernBertForMaskedLM``) key layout (the SBO head under
``cls.span_boundary.*``, which ``transformers`` ignores), the tokenizer
files, and, for a training run, ``training_state.pt``. A run directory holds its
latest checkpoint in ``checkpoint/`` next to ``metrics.jsonl``.

Everything is written through :mod:`maskedlm.files` (a temporary directory swapped into
place), so a killed process never leaves a half-written checkpoint, and weights that are
not finite are never written (:func:`check_finite`).

The key mappings to and from ``transformers`` live here (``to_hf_state_dict``,
``from_hf_state_dict``): ``load_model`` reads BERT, ``RobertaPreLayerNorm`` (our pre-LN
runs) and ModernBERT directories; writing them is :mod:`maskedlm.export`'s.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from maskedlm.errors import MaskedLMError
from maskedlm.files import (  # noqa: F401 - re-exported: the names checkpoints were written with
    LOCK_NAME,
    RunLock,
    atomic_save_figure,
    atomic_write_dir,
    atomic_write_stream,
    atomic_write_text,
    check_output_dir,
    recover_interrupted_swap,
    writing,
)
from maskedlm.models.config import ModelConfig
from maskedlm.models.heads import BertForPreTraining
from maskedlm.models.rtd import CONFIG_KEY as RTD_CONFIG_KEY
from maskedlm.models.rtd import RtdForPreTraining

WEIGHTS_NAME = "model.safetensors"
LEGACY_WEIGHTS_NAME = "pytorch_model.bin"
CONFIG_NAME = "config.json"
TRAINING_STATE_NAME = "training_state.pt"
CHECKPOINT_SUBDIR = "checkpoint"
# transformers' pre-LN BERT: a pre-LN ``bert`` run is written as, and read from, this family
PRELN_MODEL_TYPE = "roberta-prelayernorm"
SUPPORTED_MODEL_TYPES = ("bert", "modernbert", PRELN_MODEL_TYPE)

_LAYER = re.compile(r"^bert\.encoder\.layer\.(\d+)\.(.*)$")
# our per-layer names -> Hugging Face's (qkv is split separately)
_LAYER_TO_HF = {
    "attention.dense.": "attention.output.dense.",
    "attention.LayerNorm.": "attention.output.LayerNorm.",
    "intermediate.": "intermediate.dense.",
    "output.": "output.dense.",
    "LayerNorm.": "output.LayerNorm.",
}
_TIED = ("cls.predictions.decoder_weight", "cls.span_boundary.decoder_weight",
         "generator.cls.predictions.decoder_weight")  # the RTD generator's (models/rtd.py)
# ModernBERT: our key prefix -> ModernBertForMaskedLM's (first match wins, both ways);
# inside the encoder the names are transformers' own (models/modernbert.py).
_MODERNBERT_TO_HF = (
    ("bert.embeddings.word_embeddings.", "model.embeddings.tok_embeddings."),
    ("bert.", "model."),
    ("cls.predictions.transform.dense.", "head.dense."),
    ("cls.predictions.transform.LayerNorm.", "head.norm."),
    ("cls.predictions.bias", "decoder.bias"),
)


# ----------------------------------------------------------------------------- key layout
def to_hf_state_dict(model: BertForPreTraining) -> dict[str, torch.Tensor]:
    """Our parameters under Hugging Face ``BertForPreTraining`` names (``modernbert``:
    ``ModernBertForMaskedLM`` names)."""
    modern = model.config.arch == "modernbert"
    out: dict[str, torch.Tensor] = {}
    for key, t in model.state_dict().items():
        if key in _TIED:
            continue  # tied to bert.embeddings.word_embeddings.weight
        t = t.detach().contiguous()
        if modern:
            out[_swap_prefix(key, _MODERNBERT_TO_HF) or key] = t
            continue
        m = _LAYER.match(key)
        if not m:
            out[key] = t
            continue
        prefix, rest = f"bert.encoder.layer.{m.group(1)}.", m.group(2)
        if rest.startswith("attention.qkv."):
            kind = rest.rsplit(".", 1)[1]
            for name, part in zip(("query", "key", "value"), t.chunk(3, dim=0), strict=True):
                out[f"{prefix}attention.self.{name}.{kind}"] = part.contiguous()
            continue
        renamed = _swap_prefix(rest, _LAYER_TO_HF.items())
        out[key if renamed is None else prefix + renamed] = t
    return out


# A pre-LN BERT, from BERT's Hugging Face names (to_hf_state_dict) to transformers'
# RobertaPreLayerNormForMaskedLM ones, and back (first match wins). The blocks compute
# the same function: x + attn(LN_a(x)), then x + ffn(LN_f(x)); only the LayerNorms'
# names differ (LN_a is ``attention.LayerNorm``, LN_f ``intermediate.LayerNorm``), our
# final LayerNorm is the model's ``LayerNorm``, the MLM head is ``lm_head``.
_PRELN_TO_HF = (
    (r"^bert\.encoder\.layer\.(\d+)\.attention\.output\.LayerNorm\.",
     r"roberta_prelayernorm.encoder.layer.\1.attention.LayerNorm."),
    (r"^bert\.encoder\.layer\.(\d+)\.output\.LayerNorm\.",
     r"roberta_prelayernorm.encoder.layer.\1.intermediate.LayerNorm."),
    (r"^bert\.encoder\.final_norm\.", "roberta_prelayernorm.LayerNorm."),
    (r"^bert\.", "roberta_prelayernorm."),
    (r"^cls\.predictions\.transform\.dense\.", "lm_head.dense."),
    (r"^cls\.predictions\.transform\.LayerNorm\.", "lm_head.layer_norm."),
    (r"^cls\.predictions\.bias$", "lm_head.bias"),
)
_PRELN_FROM_HF = (
    (r"^roberta_prelayernorm\.encoder\.layer\.(\d+)\.attention\.LayerNorm\.",
     r"bert.encoder.layer.\1.attention.output.LayerNorm."),
    (r"^roberta_prelayernorm\.encoder\.layer\.(\d+)\.intermediate\.LayerNorm\.",
     r"bert.encoder.layer.\1.output.LayerNorm."),
    (r"^roberta_prelayernorm\.LayerNorm\.", "bert.encoder.final_norm."),
    (r"^roberta_prelayernorm\.", "bert."),
    (r"^lm_head\.dense\.", "cls.predictions.transform.dense."),
    (r"^lm_head\.layer_norm\.", "cls.predictions.transform.LayerNorm."),
    (r"^lm_head\.bias$", "cls.predictions.bias"),
)
_POSITIONS = "bert.embeddings.position_embeddings.weight"


def _resub(name: str, rules: Iterable[tuple[str, str]]) -> str:
    for pattern, new in rules:
        renamed, n = re.subn(pattern, new, name)
        if n:
            return renamed
    return name


def to_preln_state_dict(model: BertForPreTraining) -> dict[str, torch.Tensor]:
    """A pre-LN ``bert`` model under ``RobertaPreLayerNormForMaskedLM`` names.

    RoBERTa numbers positions from ``pad_token_id + 1`` (fairseq's ``make_positions``;
    padding takes position ``pad_token_id``), so our position table is shifted down by
    ``pad_token_id + 1`` rows, the rows in front zero: a right-padded input gets the
    same vectors as ours at every real token.
    """
    out: dict[str, torch.Tensor] = {}
    for key, t in to_hf_state_dict(model).items():
        if key == _POSITIONS:
            t = torch.cat([t.new_zeros(model.config.pad_token_id + 1, t.shape[1]), t])
        out[_resub(key, _PRELN_TO_HF)] = t
    return out


def from_preln_state_dict(state: dict[str, torch.Tensor], pad_token_id: int
                          ) -> dict[str, torch.Tensor]:
    """``RobertaPreLayerNorm{Model,ForMaskedLM}`` names -> ours (see :func:`to_preln_state_dict`)."""
    bert: dict[str, torch.Tensor] = {}
    for key, t in state.items():
        if key.startswith(("embeddings.", "encoder.", "LayerNorm.", "pooler.")):
            key = "roberta_prelayernorm." + key  # a RobertaPreLayerNormModel file
        if key.startswith("lm_head.decoder."):
            continue  # tied to the word embeddings and to lm_head.bias
        key = _resub(key, _PRELN_FROM_HF)
        bert[key] = t[pad_token_id + 1:] if key == _POSITIONS else t
    return from_hf_state_dict(bert)


def _swap_prefix(name: str, pairs: Iterable[tuple[str, str]]) -> str | None:
    """``name`` with the first matching ``old`` prefix replaced by ``new``; None if none does."""
    for old, new in pairs:
        if name.startswith(old):
            return new + name[len(old):]
    return None

def normalize_hf_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Accept the layouts found in the wild and return ``BertForPreTraining`` names.

    Handles ``BertModel`` files (no ``bert.`` prefix), legacy ``LayerNorm.gamma/beta``,
    stale ``position_ids`` buffers and the separately stored tied decoder.
    """
    out: dict[str, torch.Tensor] = {}
    for key, t in state.items():
        key = key.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")
        if key.endswith("position_ids") or key.endswith("token_type_ids"):
            continue  # buffers, not weights
        if key.startswith(("embeddings.", "encoder.", "pooler.")):
            key = "bert." + key
        if key == "cls.predictions.decoder.weight":
            continue  # tied to the input embeddings
        if key == "cls.predictions.decoder.bias":
            out.setdefault("cls.predictions.bias", t)
            continue
        out[key] = t
    return out


def from_modernbert_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``ModernBertForMaskedLM`` (or ``ModernBertModel``) names -> ours."""
    out: dict[str, torch.Tensor] = {}
    back = [(hf, ours) for ours, hf in _MODERNBERT_TO_HF]
    for key, t in state.items():
        if key.startswith(("embeddings.", "layers.", "final_norm.")):
            key = "model." + key  # a ModernBertModel file
        if key == "decoder.weight":
            continue  # tied to the input embeddings
        out[_swap_prefix(key, back) or key] = t
    return out


def from_electra_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """transformers' ``ElectraForPreTraining`` names (embeddings as wide as the encoder)
    -> those of our replaced-token detection model's discriminator (models/rtd.py)."""
    if any(k.startswith("electra.embeddings_project.") for k in state):
        raise MaskedLMError("an ELECTRA discriminator with embeddings narrower than its encoder "
                            "(embeddings_project) has no equivalent here")
    renamed = {("bert." + k[len("electra."):] if k.startswith("electra.") else k): t
               for k, t in state.items() if not k.startswith("generator")}
    return from_hf_state_dict(renamed, "bert")


def from_hf_state_dict(state: dict[str, torch.Tensor], arch: str = "bert") -> dict[str, torch.Tensor]:
    """Hugging Face names -> our parameter names (fusing query/key/value)."""
    if arch == "modernbert":
        return from_modernbert_state_dict(state)
    state = normalize_hf_keys(state)
    out: dict[str, torch.Tensor] = {}
    qkv: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    for key, t in state.items():
        m = _LAYER.match(key)
        if not m:
            out[key] = t
            continue
        prefix, rest = f"bert.encoder.layer.{m.group(1)}.", m.group(2)
        sm = re.match(r"attention\.self\.(query|key|value)\.(weight|bias)$", rest)
        if sm:
            qkv.setdefault((prefix, sm.group(2)), {})[sm.group(1)] = t
            continue
        renamed = _swap_prefix(rest, ((hf, ours) for ours, hf in _LAYER_TO_HF.items()))
        out[key if renamed is None else prefix + renamed] = t
    for (prefix, kind), parts in qkv.items():
        if set(parts) != {"query", "key", "value"}:
            raise MaskedLMError(f"{prefix}attention.self: missing {sorted({'query', 'key', 'value'} - set(parts))}")
        out[f"{prefix}attention.qkv.{kind}"] = torch.cat([parts["query"], parts["key"], parts["value"]])
    return out


# ----------------------------------------------------------------------------- writing
def check_finite(model: torch.nn.Module, where: str = "the model") -> None:
    """Raise a one-line error naming the first parameter holding NaN or inf: such weights
    never reach a checkpoint (the previous, finite one is kept)."""
    for name, p in model.named_parameters():
        if not bool(torch.isfinite(p.detach()).all()):
            raise MaskedLMError(f"{where}: parameter {name} holds NaN/inf values; not saved "
                                "(lower --lr; the last finite checkpoint is kept)")


def save_checkpoint(path: str | Path, model: BertForPreTraining, tokenizer: Any,
                    training_state: dict[str, Any] | None = None,
                    extra_files: dict[str, str] | None = None, purpose: str | None = "checkpoint",
                    overwrite: bool = False) -> Path:
    """Write ``model`` (+ tokenizer, + optional training state) as a checkpoint directory.

    ``purpose`` marks the directory and refuses one that is not ours (see
    :func:`maskedlm.files.check_output_dir`); None for a run's own ``checkpoint/``, which
    its run lock already guards. Weights holding NaN or inf are refused."""
    check_finite(model, str(path))

    def write(tmp: Path) -> None:
        model.config.save(tmp / CONFIG_NAME)
        save_file(to_hf_state_dict(model), str(tmp / WEIGHTS_NAME), metadata={"format": "pt"})
        if tokenizer is not None:
            tokenizer.save(tmp)
        if training_state is not None:
            torch.save(training_state, tmp / TRAINING_STATE_NAME)
        for name, text in (extra_files or {}).items():
            (tmp / name).write_text(text)
    return atomic_write_dir(Path(path), write, purpose=purpose, overwrite=overwrite)


# ----------------------------------------------------------------------------- reading
def resolve_checkpoint_dir(path: str | Path) -> Path:
    """A run directory, a checkpoint directory or a Hugging Face model directory."""
    path = Path(path)
    recover_interrupted_swap(path)
    recover_interrupted_swap(path / CHECKPOINT_SUBDIR)
    if not path.exists():
        raise MaskedLMError(f"{path}: no such checkpoint directory")
    if not path.is_dir():
        raise MaskedLMError(f"{path}: a checkpoint is a directory, not a file")
    if (path / CONFIG_NAME).is_file():
        return path
    if (path / CHECKPOINT_SUBDIR / CONFIG_NAME).is_file():
        return path / CHECKPOINT_SUBDIR
    raise MaskedLMError(f"{path}: not a checkpoint (no {CONFIG_NAME})")


def read_config(ckpt: Path) -> ModelConfig:
    try:
        raw = json.loads((ckpt / CONFIG_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as e:  # RecursionError: nested too deep
        raise MaskedLMError(f"{ckpt / CONFIG_NAME}: cannot read ({type(e).__name__})") from None
    if not isinstance(raw, dict):
        raise MaskedLMError(f"{ckpt / CONFIG_NAME}: a config is a JSON object, got {type(raw).__name__}")
    model_type = raw.get("model_type", "bert")
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise MaskedLMError(f"{ckpt / CONFIG_NAME}: model_type {model_type!r} is not a BERT "
                            f"encoder (supported: {', '.join(SUPPORTED_MODEL_TYPES)})")
    if raw.get("position_embedding_type", "absolute") != "absolute":
        raise MaskedLMError(f"{ckpt / CONFIG_NAME}: position_embedding_type "
                            f"{raw['position_embedding_type']!r} is not supported (only absolute)")
    if model_type == PRELN_MODEL_TYPE:  # positions shifted by pad + 1 (to_preln_state_dict)
        raw = {**raw, "model_type": "bert", "pre_layer_norm": True,
               "max_position_embeddings": int(raw.get("max_position_embeddings", 514))
               - int(raw.get("pad_token_id", 1)) - 1}
    try:
        return ModelConfig.from_dict(raw)
    except MaskedLMError as e:
        raise MaskedLMError(f"{ckpt / CONFIG_NAME}: {e}") from None


def _model_type(ckpt: Path) -> str:
    return json.loads((ckpt / CONFIG_NAME).read_text()).get("model_type", "bert")


def read_weights(ckpt: Path) -> tuple[dict[str, torch.Tensor], Path]:
    st, pt = ckpt / WEIGHTS_NAME, ckpt / LEGACY_WEIGHTS_NAME
    try:
        if st.is_file():
            return load_file(str(st)), st
        if pt.is_file():
            return torch.load(pt, map_location="cpu", weights_only=True), pt
    except (SafetensorError, RuntimeError, OSError, EOFError) as e:
        bad = st if st.is_file() else pt
        raise MaskedLMError(f"{bad}: corrupt weights file ({str(e).splitlines()[0][:120]})") from None
    raise MaskedLMError(f"{ckpt}: no weights ({WEIGHTS_NAME} or {LEGACY_WEIGHTS_NAME})")


def load_model(path: str | Path, *, nsp_head: bool | None = None, sbo_head: bool | None = None,
               config_overrides: dict[str, Any] | None = None, warn_fresh: bool = True
               ) -> tuple[BertForPreTraining, Path]:
    """Build a :class:`BertForPreTraining` from our checkpoint or a Hugging Face BERT or
    ModernBert directory.

    Heads missing from the file (an MLM head for sentence encoders, the SBO head for
    a BERT checkpoint continued with the spanbert recipe) start freshly initialised,
    with a warning that says so (``warn_fresh=False`` for callers that use the encoder
    alone, such as fine-tuning).
    """
    ckpt = resolve_checkpoint_dir(path)
    config = read_config(ckpt)
    raw, wfile = read_weights(ckpt)
    if _model_type(ckpt) == PRELN_MODEL_TYPE:
        state = from_preln_state_dict(raw, config.pad_token_id)
    else:
        state = from_hf_state_dict(raw, config.arch)
    has_nsp = "cls.seq_relationship.weight" in state
    has_sbo = any(k.startswith("cls.span_boundary.") for k in state)
    config.nsp_head = has_nsp if nsp_head is None else nsp_head
    config.sbo_head = has_sbo if sbo_head is None else sbo_head
    for k, v in (config_overrides or {}).items():
        setattr(config, k, v)
    model = BertForPreTraining(config)
    expected = model.state_dict()
    for key, t in state.items():
        if key in expected and tuple(expected[key].shape) != tuple(t.shape):
            raise MaskedLMError(f"{wfile}: tensor {key} has shape {tuple(t.shape)}, "
                                f"config.json implies {tuple(expected[key].shape)}")
    state = {k: v for k, v in state.items() if k in expected}
    missing = [k for k in expected if k not in state and k not in _TIED]
    encoder_missing = [k for k in missing if k.startswith("bert.") and not k.startswith("bert.pooler.")]
    if encoder_missing:
        raise MaskedLMError(f"{wfile}: missing tensor {encoder_missing[0]}"
                            + (f" (+{len(encoder_missing) - 1} more)" if len(encoder_missing) > 1 else ""))
    model.load_state_dict(state, strict=False)
    fresh = sorted({k.split(".")[1] for k in missing if k.startswith("cls.")}
                   | ({"pooler"} if any(k.startswith("bert.pooler.") for k in missing) else set()))
    if fresh and warn_fresh:
        warnings.warn(f"{wfile}: no weights for the {', '.join(fresh)} head(s); "
                      "they are freshly initialised", stacklevel=2)
    return model, ckpt


def is_rtd_checkpoint(path: str | Path) -> bool:
    """Whether ``path`` holds a replaced-token detection run: its config's ``rtd`` entry
    and the generator's weights (a fine-tuned copy keeps the entry, not the generator)."""
    ckpt = resolve_checkpoint_dir(path)
    try:
        raw = json.loads((ckpt / CONFIG_NAME).read_text())
    except (OSError, ValueError, RecursionError):  # the model's reader says what is wrong
        return False
    if not isinstance(raw, dict) or not isinstance(raw.get(RTD_CONFIG_KEY), dict) or not (ckpt / WEIGHTS_NAME).is_file():
        return False
    from safetensors import safe_open
    try:
        with safe_open(str(ckpt / WEIGHTS_NAME), framework="pt") as f:
            return any(k.startswith("generator.") for k in f.keys())  # noqa: SIM118
    except (SafetensorError, OSError):
        return False


def load_rtd_model(path: str | Path, config_overrides: dict[str, Any] | None = None
                   ) -> tuple[RtdForPreTraining, Path]:
    """The generator and discriminator of a replaced-token detection run (to resume it,
    or for fill-mask with its generator); :func:`load_model` reads the same checkpoint
    as a plain encoder."""
    ckpt = resolve_checkpoint_dir(path)
    config = read_config(ckpt)
    for k, v in (config_overrides or {}).items():
        setattr(config, k, v)
    model = RtdForPreTraining.from_config(config)
    raw, wfile = read_weights(ckpt)
    state = from_hf_state_dict(raw, config.arch)
    expected = model.state_dict()
    for key, t in state.items():
        if key in expected and tuple(expected[key].shape) != tuple(t.shape):
            raise MaskedLMError(f"{wfile}: tensor {key} has shape {tuple(t.shape)}, "
                                f"config.json implies {tuple(expected[key].shape)}")
    missing = [k for k in expected if k not in state and k not in _TIED]
    if missing:
        raise MaskedLMError(f"{wfile}: missing tensor {missing[0]} of the replaced-token "
                            "detection model" + (f" (+{len(missing) - 1} more)" if len(missing) > 1 else ""))
    model.load_state_dict({k: v for k, v in state.items() if k in expected}, strict=False)
    return model, ckpt


def save_training_state(run_dir: str | Path, state: dict[str, Any]) -> Path:
    """Write ``run_dir/training_state.pt`` through a temporary file (the old one stays whole)."""
    return atomic_write_stream(Path(run_dir) / TRAINING_STATE_NAME, lambda f: torch.save(state, f))


def load_training_state(path: str | Path) -> dict[str, Any] | None:
    f = Path(path) / TRAINING_STATE_NAME
    if not f.is_file():
        return None
    try:
        return torch.load(f, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable state is a user-facing error
        raise MaskedLMError(f"{f}: corrupt training state ({type(e).__name__})") from None
