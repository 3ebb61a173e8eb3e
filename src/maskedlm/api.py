"""The small public API: ``model = maskedlm.load(path)``, then use it.

>>> import maskedlm
>>> model = maskedlm.load("runs/span-mini")  # doctest: +SKIP
>>> model.fill_mask("Please turn [MASK] homework in.")  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from maskedlm.checkpoint import is_rtd_checkpoint, load_model, load_rtd_model
from maskedlm.data.tokenizer import Tokenizer
from maskedlm.errors import MaskedLMError
from maskedlm.models.heads import BertForPreTraining
from maskedlm.onnx_backend import OnnxPretrained, OnnxSession, check_backend, read_onnx_config
from maskedlm.options import FillMaskOptions, RunOptions


class MaskedLM:
    """A loaded encoder with its tokenizer; plain Python/NumPy in and out."""

    def __init__(self, model: BertForPreTraining, tokenizer: Tokenizer, path: Path | None = None,
                 device: str | torch.device = "cpu",
                 encode_defaults: dict[str, Any] | None = None,
                 mlm: torch.nn.Module | None = None) -> None:
        self.model = model.to(device).eval()
        # what fill_mask runs: the model itself, or a replaced-token detection run's generator
        self.mlm = model if mlm is None else mlm.to(device).eval()
        self.tokenizer = tokenizer
        self.path = path
        self.device = torch.device(device)
        # A sentence-transformers directory's pooling and normalisation, so encode()
        # gives the vectors SentenceTransformer(path).encode() gives.
        self.encode_defaults = dict(encode_defaults or {})

    @property
    def config(self):
        return self.model.config

    def encode(self, texts: list[str], **kw: Any) -> np.ndarray:
        """(N, H) sentence vectors; see :func:`maskedlm.embeddings.encode` for options.

        >>> model.encode(["A cat sat.", "A dog sat."], normalize=True).shape  # doctest: +SKIP
        (2, 384)
        """
        from maskedlm.embeddings.pooling import encode
        return encode(self, texts, **{**self.encode_defaults, **kw})

    def embed_words(self, sentences: list[str] | list[list[str]], **kw: Any) -> list[np.ndarray]:
        """A (words, H) array per sentence; see :func:`maskedlm.embeddings.embed_words`.

        >>> model.embed_words([["He", "sat", "on", "the", "bank"]])[0].shape  # doctest: +SKIP
        (5, 384)
        """
        from maskedlm.embeddings.pooling import embed_words
        return embed_words(self, sentences, **kw)

    @torch.no_grad()
    def fill_mask(self, text: str, top_k: int = FillMaskOptions.top_k) -> list[list[dict[str, Any]]]:
        """For every ``[MASK]`` in ``text``, the ``top_k`` tokens with softmax scores.

        >>> model.fill_mask("The [MASK] of France is Paris.", top_k=1)  # doctest: +SKIP
        [[{'token': 'capital', 'score': 0.61}]]
        """
        if top_k < 1:
            raise MaskedLMError(f"--top-k must be >= 1, got {top_k}")
        if not isinstance(text, str):
            raise MaskedLMError(f"fill_mask: the prompt must be a string, got {type(text).__name__}")
        width = self.config.max_position_embeddings
        enc = self.tokenizer.encode(text, max_length=width)
        ids = torch.as_tensor(np.asarray(enc["input_ids"]), device=self.device)[None]
        positions = (ids[0] == self.tokenizer.mask_id).nonzero().squeeze(1)
        if positions.numel() == 0:
            raise MaskedLMError(f"no [MASK] token in the prompt {_clip(text)}")
        everywhere = int((np.asarray(self.tokenizer.encode(text)["input_ids"])
                          == self.tokenizer.mask_id).sum())
        if everywhere > positions.numel():
            raise MaskedLMError(f"the prompt has {everywhere} [MASK]s but only {positions.numel()} "
                                f"fit in the model's {width} positions; shorten it "
                                f"({_clip(text)})")
        tt = torch.as_tensor(np.asarray(enc["token_type_ids"]), device=self.device)[None]
        hidden = self.mlm.bert(ids, tt).last_hidden_state
        probs = self.mlm.mlm_logits(hidden, positions).float().softmax(-1)
        scores, idx = probs.topk(min(top_k, probs.shape[-1]), dim=-1)
        return [[{"token": self.tokenizer.convert_ids_to_tokens([int(i)])[0], "score": float(s)}
                 for s, i in zip(srow, irow, strict=True)]
                for srow, irow in zip(scores.tolist(), idx.tolist(), strict=True)]


def _clip(text: str, most: int = 80) -> str:
    """``text`` quoted for an error line, cut to ``most`` characters (a prompt may be 100k)."""
    return repr(text) if len(text) <= most else f"{text[:most]!r}... ({len(text)} characters)"


def load(path: str | Path, device: str | torch.device = RunOptions.device, warn_fresh: bool = True,
         backend: str = RunOptions.backend) -> Any:
    """Load our checkpoint, a run directory, a Hugging Face BERT directory or a
    sentence-transformers directory as a :class:`MaskedLM`; a fine-tuned run (with
    ``task.json``) as a task predictor. A checkpoint without an MLM head gets a fresh
    one and a warning, unless ``warn_fresh=False`` (callers that only use the encoder's
    vectors). ``backend="onnx"`` runs a directory written by ``maskedlm export-onnx``
    through ONNX Runtime instead of PyTorch.

    >>> model = load("runs/span-mini")  # doctest: +SKIP
    >>> load("runs/ner").predict("Anna met Bob in Lima.")  # doctest: +SKIP
    >>> load("runs/mini-onnx", backend="onnx").encode(["A cat sat."])  # doctest: +SKIP
    """
    check_backend(backend, device)
    sentence = sentence_embedder_defaults(path)
    mlm = None
    if (Path(path) / "task.json").is_file() and sentence is None:
        from maskedlm.tasks import load_task
        return load_task(path, device, backend)
    if backend == "onnx":
        session = OnnxSession(path)  # first: its error says how to make one
        model: Any = OnnxPretrained(session, read_onnx_config(path))
        ckpt = Path(path)
    else:
        rtd = is_rtd_checkpoint(path)  # the encoder is its discriminator, fill-mask its generator
        model, ckpt = load_model(path, warn_fresh=warn_fresh and not rtd)
        if rtd:
            mlm = load_rtd_model(ckpt)[0].generator
            mlm.bert.embeddings.share(model.bert.embeddings)  # the same weights, one copy
    tokenizer = Tokenizer.load(ckpt)
    if tokenizer.vocab_size != model.config.vocab_size:
        raise MaskedLMError(f"{ckpt}: tokenizer has {tokenizer.vocab_size} tokens but the "
                            f"embedding table has {model.config.vocab_size}")
    return MaskedLM(model, tokenizer, ckpt, device, encode_defaults=sentence or st_pooling(ckpt),
                    mlm=mlm)


# What the first screen shows after ``maskedlm pretrain``: prompts of the embedded
# docstrings for the default job (chosen among 15 candidates, docs/results/budget-recipe.md),
# plain English prose for a run on the user's own corpus.
DEFAULT_PROMPTS = (
    "If the file does not exist, an [MASK] is raised.",
    "Return the [MASK] of the file.",
    "This function is [MASK] for internal use only.",
)
PROSE_PROMPTS = (
    "She opened the [MASK] and walked into the room.",
    "He did not know what to [MASK].",
    "It was a cold [MASK] in the middle of winter.",
)


def first_look(run: str | Path, record: dict[str, Any], default_job: bool) -> dict[str, Any]:
    """What a finished pretraining run learned, for its first screen: held-out accuracy
    against the unigram baseline (when it was evaluated) and the top 5 answers to a few
    prompts (:data:`DEFAULT_PROMPTS` for the embedded default job, else
    :data:`PROSE_PROMPTS`).

    >>> first_look("runs/default", record, default_job=True)["prompts"][0]  # doctest: +SKIP
    ('If the file does not exist, an [MASK] is raised.', [{'token': 'exception', ...}, ...])
    """
    from maskedlm.pretrain import unigram_baseline

    look: dict[str, Any] = {}
    if "eval_mlm_accuracy" in record:
        token, share = unigram_baseline(run)
        look.update(accuracy=record["eval_mlm_accuracy"], baseline_token=token,
                    baseline_share=share)
    model = load(run)
    look["prompts"] = [(prompt, model.fill_mask(prompt, top_k=5)[0])
                       for prompt in (DEFAULT_PROMPTS if default_job else PROSE_PROMPTS)]
    return look


def sentence_embedder_defaults(path: str | Path) -> dict[str, Any] | None:
    """``encode()`` defaults of a ``finetune contrastive`` run (or its ONNX export): the
    pooling it was trained with, unit length; None for any other directory."""
    import json

    task_file = Path(path) / "task.json"
    if not task_file.is_file():
        return None
    try:
        meta = json.loads(task_file.read_text())
    except (OSError, json.JSONDecodeError):
        return None  # load_task reports the corrupt file
    if not isinstance(meta, dict) or meta.get("task") != "contrastive":
        return None
    return {"pool": (meta.get("options") or {}).get("pool", "mean"), "normalize": True}


def st_pooling(path: Path) -> dict[str, Any]:
    """``encode()`` defaults of a sentence-transformers directory (its pooling and
    normalisation modules, per ``modules.json``); empty for any other directory."""
    import json

    modules_file = Path(path) / "modules.json"
    if not modules_file.is_file():
        return {}
    root = Path(path).resolve()
    try:
        modules = json.loads(modules_file.read_text(encoding="utf-8"))
        out: dict[str, Any] = {"normalize": any(m["type"].endswith(".Normalize") for m in modules)}
        for m in modules:
            if m["type"].endswith(".Pooling"):
                folder = (root / m["path"]).resolve()  # never read outside the model folder
                if folder != root and root not in folder.parents:
                    raise MaskedLMError(f"{modules_file}: module path {str(m['path'])[:80]!r} "
                                        "leads outside the model folder; not read")
                cfg = json.loads((folder / "config.json").read_text(encoding="utf-8"))
                out["pool"] = cfg.get("pooling_mode") or next(
                    k[len("pooling_mode_"):].replace("_tokens", "").replace("_token", "")
                    for k, v in cfg.items() if k.startswith("pooling_mode_") and v)
    except (OSError, ValueError, RecursionError, KeyError, TypeError, AttributeError,
            StopIteration) as e:
        raise MaskedLMError(f"{modules_file}: not a sentence-transformers layout we read "
                            f"({type(e).__name__})") from None
    if out.get("pool", "mean") not in ("mean", "cls", "max"):
        raise MaskedLMError(f"{modules_file}: pooling {out['pool']!r} is not one of mean, cls, max")
    return out
