"""Run an exported ONNX graph (``maskedlm export-onnx``) through ONNX Runtime.

The objects here stand in for the PyTorch modules the rest of the package calls, so
the embedding functions and the task decoders run unchanged on either backend:
:class:`OnnxEncoder` is called like ``BertModel`` (ids, segments, mask -> an
``EncoderOutput``), :class:`OnnxTaskModel` has ``TaskModel.infer`` (a collated batch
-> the head's logits). Tensors cross the boundary as NumPy arrays on the CPU.

>>> import maskedlm
>>> model = maskedlm.load("runs/mini-onnx", backend="onnx")  # doctest: +SKIP
>>> model.encode(["A cat sat.", "A dog sat."]).shape  # doctest: +SKIP
(2, 256)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from maskedlm.errors import MaskedLMError
from maskedlm.models.bert import EncoderOutput
from maskedlm.models.config import ModelConfig

ONNX_FILE = "model.onnx"
ONNX_META = "onnx.json"
BACKENDS = ("torch", "onnx")
# ONNX Runtime's type strings -> NumPy dtypes, to feed each input the type the graph was traced with
_DTYPES = {"tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(bool)": np.bool_,
           "tensor(float)": np.float32, "tensor(double)": np.float64}


def is_onnx_dir(path: str | Path) -> bool:
    return (Path(path) / ONNX_FILE).is_file()


def check_backend(backend: str, device: str | torch.device) -> None:
    if backend not in BACKENDS:
        raise MaskedLMError(f"--backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "onnx" and torch.device(device).type != "cpu":
        raise MaskedLMError(f"--backend onnx runs on the CPU (ONNX Runtime's CPU provider), "
                            f"not on {device}")


class OnnxSession:
    """One ``onnxruntime.InferenceSession`` over ``DIR/model.onnx`` and its ``onnx.json``."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        path = Path(path)
        if not is_onnx_dir(path):
            raise MaskedLMError(f"{path}: no {ONNX_FILE}; write one with `maskedlm export-onnx "
                                f"MODEL {path}`")
        try:
            import onnxruntime as ort
        except ImportError:
            raise MaskedLMError("--backend onnx needs onnxruntime: pip install 'maskedlm[onnx]'") from None
        try:
            self.meta: dict[str, Any] = json.loads((path / ONNX_META).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise MaskedLMError(f"{path / ONNX_META}: cannot read ({type(e).__name__})") from None
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(path / ONNX_FILE), opts,
                                                providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise MaskedLMError(f"{path / ONNX_FILE}: cannot load ({str(e).splitlines()[0][:120]})") from None
        self.path = path
        self.inputs = {i.name: _DTYPES.get(i.type, np.int64) for i in self.session.get_inputs()}
        self.outputs = [o.name for o in self.session.get_outputs()]

    def run(self, feeds: dict[str, Any], outputs: list[str] | None = None) -> list[np.ndarray]:
        """Outputs for ``feeds`` (tensors or arrays); keys the graph does not take are ignored."""
        missing = [k for k in self.inputs if k not in feeds]
        if missing:
            raise MaskedLMError(f"{self.path / ONNX_FILE}: the graph needs input(s) {missing}")
        arrays = {k: _numpy(feeds[k]).astype(dt, copy=False) for k, dt in self.inputs.items()}
        return self.session.run(outputs, arrays)


def _numpy(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


class OnnxEncoder:
    """Called like :class:`maskedlm.models.bert.BertModel`; runs the exported encoder graph."""

    def __init__(self, session: OnnxSession, config: ModelConfig) -> None:
        self.session = session
        self.config = config

    def __call__(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, output_hidden_states: bool = False,
                 rows: torch.Tensor | None = None) -> EncoderOutput:
        ids = _numpy(input_ids)
        feeds = {"input_ids": ids,
                 "attention_mask": np.ones_like(ids) if attention_mask is None else attention_mask,
                 "token_type_ids": np.zeros_like(ids) if token_type_ids is None else token_type_ids}
        if output_hidden_states:
            last, stacked = self.session.run(feeds, ["last_hidden_state", "hidden_states"])
            states = list(torch.from_numpy(stacked).unbind(0))
        else:
            (last,), states = self.session.run(feeds, ["last_hidden_state"]), None
        x = torch.from_numpy(last)  # (B, T, H)
        if rows is not None:  # the positions the caller asked for, as BertModel(rows=) returns
            x = x.gather(1, rows.cpu()[..., None].expand(-1, -1, x.shape[-1]))
        return EncoderOutput(x, states)


class OnnxPretrained:
    """The part of ``BertForPreTraining`` that :class:`maskedlm.api.MaskedLM` uses for vectors."""

    def __init__(self, session: OnnxSession, config: ModelConfig) -> None:
        self.bert = OnnxEncoder(session, config)
        self.config = config

    def to(self, device: str | torch.device) -> OnnxPretrained:
        check_backend("onnx", device)
        return self

    def eval(self) -> OnnxPretrained:
        return self

    def mlm_logits(self, hidden: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        raise MaskedLMError(f"{self.bert.session.path}: the ONNX graph holds the encoder only; "
                            "fill-mask needs the PyTorch checkpoint")


class OnnxTaskModel:
    """Stands in for ``TaskModel`` at inference: ``infer(batch)`` runs encoder + head in ONNX."""

    training = False

    def __init__(self, session: OnnxSession) -> None:
        self.session = session
        self.device = torch.device("cpu")

    def infer(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.from_numpy(self.session.run(batch, ["logits"])[0])

    def eval(self) -> OnnxTaskModel:
        return self

    def train(self, mode: bool = True) -> OnnxTaskModel:
        if mode:
            raise MaskedLMError("an ONNX graph cannot be trained; fine-tune the PyTorch run")
        return self

    def to(self, device: str | torch.device) -> OnnxTaskModel:
        check_backend("onnx", device)
        return self


def read_onnx_config(path: str | Path) -> ModelConfig:
    """The encoder's config.json written beside the graph."""
    try:
        return ModelConfig.from_dict(json.loads((Path(path) / "config.json").read_text()))
    except (OSError, json.JSONDecodeError) as e:
        raise MaskedLMError(f"{path}/config.json: cannot read ({type(e).__name__})") from None
