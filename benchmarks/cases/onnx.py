"""Sentence encoding through ONNX Runtime (fp32 and int8 graphs of MiniLM) against our
PyTorch path (``encode/ours``) and ``transformers`` (``encode/peer``), same sentences.

The graphs are written once by ``maskedlm.export.export_onnx`` into
``benchmarks/.cache`` (outside the timed windows); ONNX Runtime gets the same thread
count as PyTorch. int8 is ONNX Runtime's dynamic quantization (int8 weights, activations
quantized per batch), the recipe sentence-transformers' own ONNX benchmark uses on CPU.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cases.common import CACHE, minilm_dir, timed
from cases.encode import ud_sentences


def onnx_dir(quantize: str) -> Path:
    """The cached export of MiniLM (``quantize``: none or int8)."""
    from maskedlm.export import export_onnx

    out = CACHE / f"onnx-minilm-{quantize}"
    if not (out / "model.onnx").is_file():
        export_onnx(minilm_dir(), out, quantize=quantize)
    return out


def child_encode_onnx(p: dict[str, Any]) -> dict[str, Any]:
    from maskedlm.api import MaskedLM, st_pooling
    from maskedlm.data.tokenizer import Tokenizer
    from maskedlm.embeddings.pooling import encode, tokenize
    from maskedlm.onnx_backend import OnnxPretrained, OnnxSession, read_onnx_config

    path = onnx_dir("none" if p["quantize"] == "fp32" else p["quantize"])
    texts = ud_sentences(Path(p["data_root"]), p["sentences"])
    session = OnnxSession(path, threads=p["threads"])
    model = MaskedLM(OnnxPretrained(session, read_onnx_config(path)), Tokenizer.load(path), path,
                     encode_defaults=st_pooling(minilm_dir()))
    real = sum(len(x.ids) + 2 for x in tokenize(model.tokenizer, texts))

    def step() -> int:
        encode(model, texts)
        return real

    return {**timed(p, step, steps=1), "real_tokens": real}
