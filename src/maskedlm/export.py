"""Exports for the tools users deploy with, each with a model card (``README.md``).

* :func:`export_hf`: the ``transformers`` layout: ``BertForMaskedLM`` (post-LN runs),
  ``RobertaPreLayerNormForMaskedLM`` (pre-LN runs, the default recipe's),
  ``ModernBertForMaskedLM`` (``--arch modernbert``); ``AutoModel`` loads each.
* :func:`export_st`: the ``sentence-transformers`` layout (``SentenceTransformer(dir)``):
  the transformers files at the top, ``modules.json``, ``1_Pooling/`` and, when asked,
  ``2_Normalize/``, as sentence-transformers itself saves a model.
* :func:`export_onnx`: ``model.onnx`` with dynamic batch and sequence axes, the encoder
  (``last_hidden_state`` and all ``hidden_states``) or, for a fine-tuned run, encoder and
  task head (``logits``); optionally int8 weights (ONNX Runtime's dynamic quantization).

The card's YAML header is the Hugging Face Hub's (``library_name``, ``pipeline_tag``,
``language``, ``tags``; the license is left to the user); its body says what the run
did, from the files the run wrote (``run.json``, ``metrics.jsonl``, ``task.json``, a
``scorecard.json``), and the command line.

>>> export_st("runs/bert-mini", "runs/bert-mini-st", pool="mean", normalize=True)  # doctest: +SKIP
>>> export_onnx("runs/sst2", "runs/sst2-onnx", quantize="int8")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import shutil
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from maskedlm import __version__
from maskedlm.checkpoint import (
    CONFIG_NAME,
    PRELN_MODEL_TYPE,
    WEIGHTS_NAME,
    is_rtd_checkpoint,
    load_model,
    load_rtd_model,
    read_config,
    resolve_checkpoint_dir,
    to_hf_state_dict,
    to_preln_state_dict,
)
from maskedlm.data.tokenizer import Tokenizer
from maskedlm.errors import MaskedLMError
from maskedlm.files import atomic_write_dir, atomic_write_text, check_output_dir, temp_path
from maskedlm.models import kernels
from maskedlm.models.rtd import CONFIG_KEY as RTD_CONFIG_KEY
from maskedlm.onnx_backend import ONNX_FILE, ONNX_META
from maskedlm.options import ExportOptions
from maskedlm.scorecard import CARD_FILE, load_card, markdown

CARD_NAME = "README.md"
ST_POOLS = ("mean", "cls", "max")
QUANTIZE = ("none", "int8")
OPSET = 17  # scaled_dot_product_attention exports from opset 14; 17 has LayerNormalization
_PIPELINE = {"classify": "text-classification", "pair": "text-classification",
             "tag": "token-classification", "spans": "token-classification",
             "qa": "question-answering", "contrastive": "sentence-similarity"}


def _sentence_run(model: str | Path) -> dict[str, Any] | None:
    """The options of a ``finetune contrastive`` run (pooling, Matryoshka sizes), else None."""
    task = _read_json(Path(model) / "task.json")
    return task.get("options") or {} if task and task.get("task") == "contrastive" else None


# ----------------------------------------------------------------------------- transformers
def export_hf(model: str | Path, out: str | Path, command: list[str] | None = None,
              overwrite: bool = False) -> Path:
    """``transformers`` directory + model card. ``out`` is never a run or the input; an
    existing directory that is not an earlier export-hf needs ``overwrite``.

    >>> export_hf("runs/bert-mini", "runs/bert-mini-hf")  # doctest: +SKIP
    """
    check_output_dir(out, "export-hf", overwrite=overwrite, inputs=[model])
    task = _read_json(Path(model) / "task.json")
    if task and task.get("task") == "qa":  # BertForQuestionAnswering
        path = export_hf_qa(model, out, overwrite=overwrite)
    elif is_rtd_checkpoint(model):  # replaced-token detection: the discriminator
        path = export_hf_rtd(model, out, overwrite=overwrite)
    else:
        path = write_hf_dir(model, out, overwrite=overwrite)
    write_model_card(model, path, "export-hf", command)
    return path


def write_hf_dir(path: str | Path, out: str | Path, overwrite: bool = False) -> Path:
    """Write a directory that ``transformers`` loads with the same logits:
    ``BertForMaskedLM`` (``BertForPreTraining`` with NSP) for a post-LN run,
    ``RobertaPreLayerNormForMaskedLM`` for a pre-LN one, ``ModernBertForMaskedLM`` for a
    ``modernbert`` one. ``out`` may not be a run, the input, or a directory that is not
    ours unless ``overwrite``."""
    check_output_dir(out, "export-hf", overwrite=overwrite, inputs=[path])
    # an RTD run has no MLM head on its discriminator: export-st reads the encoder only
    model, ckpt = load_model(path, warn_fresh=not is_rtd_checkpoint(path))
    modern = model.config.arch == "modernbert"
    preln = model.config.pre_layer_norm and not modern
    if preln and model.config.classifier_activation != "gelu":
        raise MaskedLMError(f"{ckpt}: RobertaPreLayerNorm's MLM head uses the exact GeLU; this "
                            f"run's head uses {model.config.classifier_activation!r}")
    tokenizer = Tokenizer.load(ckpt)

    def write(tmp: Path) -> None:
        d = model.config.to_dict()
        if modern:  # ModernBertConfig's defaults are ModernBERT's own vocabulary's ids
            d.update(cls_token_id=tokenizer.cls_id, sep_token_id=tokenizer.sep_id,
                     bos_token_id=tokenizer.cls_id, eos_token_id=tokenizer.sep_id)
        elif preln:  # RoBERTa's positions start at pad + 1 (to_preln_state_dict)
            d.pop("pre_layer_norm")
            d.update(model_type=PRELN_MODEL_TYPE, architectures=["RobertaPreLayerNormForMaskedLM"],
                     max_position_embeddings=d["max_position_embeddings"] + d["pad_token_id"] + 1,
                     bos_token_id=tokenizer.cls_id, eos_token_id=tokenizer.sep_id)
        else:
            d["architectures"] = ["BertForPreTraining" if model.config.nsp_head else "BertForMaskedLM"]
        d["tie_word_embeddings"] = True
        (tmp / CONFIG_NAME).write_text(json.dumps(d, indent=2) + "\n")
        state = to_preln_state_dict(model) if preln else to_hf_state_dict(model)
        save_file(state, str(tmp / WEIGHTS_NAME), metadata={"format": "pt"})
        tokenizer.save(tmp)
    return atomic_write_dir(Path(out), write, purpose="export-hf", overwrite=overwrite, inputs=[path])


def export_hf_qa(path: str | Path, out: str | Path, overwrite: bool = False) -> Path:
    """Write a QA run as a directory ``transformers.BertForQuestionAnswering`` loads with the
    same start/end logits (the encoder under ``bert.*``, the head as ``qa_outputs``)."""
    check_output_dir(out, "export-hf", overwrite=overwrite, inputs=[path])
    from maskedlm.tasks.finetune import load_task  # tasks sit below export

    m = load_task(path)
    if m.task.kind != "qa":
        raise MaskedLMError(f"{path}: a {m.task.kind} run, not a QA run")
    pretrained, _ = load_model(path, warn_fresh=False)  # the run's fine-tuned encoder
    config = pretrained.config
    if config.pre_layer_norm:
        raise MaskedLMError(f"{path}: a pre-LN encoder has no Hugging Face BERT equivalent "
                            "(BertModel is post-LN); export-hf needs a post-LN run")

    def write(tmp: Path) -> None:
        d = config.to_dict()
        d["architectures"] = ["BertForQuestionAnswering"]
        (tmp / CONFIG_NAME).write_text(json.dumps(d, indent=2) + "\n")
        state = {k: v for k, v in to_hf_state_dict(pretrained).items()
                 if k.startswith("bert.") and not k.startswith("bert.pooler.")}
        state |= {f"qa_outputs.{k}": v.detach().contiguous()
                  for k, v in m.model.head.qa_outputs.state_dict().items()}  # type: ignore[union-attr]
        save_file(state, str(tmp / WEIGHTS_NAME), metadata={"format": "pt"})
        m.tokenizer.save(tmp)
    return atomic_write_dir(Path(out), write, purpose="export-hf", overwrite=overwrite,
                            inputs=[path])


# ----------------------------------------------------------------------------- sentence-transformers
def export_st(model: str | Path, out: str | Path, pool: str = ExportOptions.pool,
              normalize: bool = ExportOptions.normalize,
              command: list[str] | None = None, overwrite: bool = False) -> Path:
    """A directory ``sentence_transformers.SentenceTransformer(out)`` loads offline.

    >>> export_st("runs/bert-mini", "runs/bert-mini-st", pool="cls")  # doctest: +SKIP
    """
    if pool not in ST_POOLS:
        raise MaskedLMError(f"--pool must be one of {', '.join(ST_POOLS)}, got {pool!r}")
    sentence = _sentence_run(model)
    if sentence is not None:  # a contrastive run: exported as it was trained
        if pool not in ("mean", sentence.get("pool", "mean")):  # mean: the CLI default
            warnings.warn(f"{model} was trained with {sentence.get('pool')} pooling; "
                          f"exporting with it, not --pool {pool}", stacklevel=2)
        pool, normalize = sentence.get("pool", "mean"), True
    out = Path(out)
    check_output_dir(out, "export-st", overwrite=overwrite, inputs=[model])
    hf_tmp = temp_path(out, suffix=".hf")  # a dead writer's is removed as stale
    try:
        write_hf_dir(model, hf_tmp)  # the transformers layout sentence-transformers reads
        config = json.loads((hf_tmp / CONFIG_NAME).read_text())
        # a pre-LN run's RoBERTa position table is longer by pad + 1 rows than it reads
        config["max_position_embeddings"] = read_config(hf_tmp).max_position_embeddings

        def write(tmp: Path) -> None:
            for f in hf_tmp.iterdir():
                shutil.copy2(f, tmp / f.name)
            modules = [{"idx": 0, "name": "0", "path": "",
                        "type": "sentence_transformers.models.Transformer"},
                       {"idx": 1, "name": "1", "path": "1_Pooling",
                        "type": "sentence_transformers.models.Pooling"}]
            if normalize:
                modules.append({"idx": 2, "name": "2", "path": "2_Normalize",
                                "type": "sentence_transformers.models.Normalize"})
                (tmp / "2_Normalize").mkdir()
            (tmp / "modules.json").write_text(json.dumps(modules, indent=2) + "\n")
            (tmp / "sentence_bert_config.json").write_text(json.dumps(
                {"max_seq_length": config["max_position_embeddings"], "do_lower_case": False},
                indent=2) + "\n")
            (tmp / "1_Pooling").mkdir()
            # The boolean keys every sentence-transformers version reads (newer ones
            # convert them to their single ``pooling_mode``).
            pooling = {"word_embedding_dimension": config["hidden_size"],
                       "pooling_mode_cls_token": pool == "cls",
                       "pooling_mode_mean_tokens": pool == "mean",
                       "pooling_mode_max_tokens": pool == "max",
                       "pooling_mode_mean_sqrt_len_tokens": False}
            (tmp / "1_Pooling" / "config.json").write_text(json.dumps(pooling, indent=2) + "\n")

        atomic_write_dir(out, write, purpose="export-st", overwrite=overwrite, inputs=[model])
    finally:
        shutil.rmtree(hf_tmp, ignore_errors=True)
    write_model_card(model, out, "export-st", command,
                     st={"pool": pool, "normalize": normalize,
                         "matryoshka": (sentence or {}).get("matryoshka") or []})
    return out


# ----------------------------------------------------------------------------- ONNX
class _EncoderGraph(torch.nn.Module):
    """(ids, mask, segments) -> last_hidden_state (B, T, H), hidden_states (L + 1, B, T, H)."""

    def __init__(self, bert: torch.nn.Module) -> None:
        super().__init__()
        self.bert = bert

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.bert(input_ids, token_type_ids, attention_mask, output_hidden_states=True)
        return out.last_hidden_state, torch.stack(out.hidden_states)


class _TaskGraph(torch.nn.Module):
    """The batch tensors a fine-tuned run's inference reads, in order -> the head's logits."""

    def __init__(self, model: torch.nn.Module, names: list[str]) -> None:
        super().__init__()
        self.model = model
        self.names = names

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        return self.model.infer(dict(zip(self.names, tensors, strict=True)))


class _UsedKeys(dict):
    """A batch that records which keys inference reads (those become the graph's inputs)."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.used: list[str] = []

    def __getitem__(self, key: str) -> Any:
        if key not in self.used:
            self.used.append(key)
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:
        return self[key] if key in self else default


def _sample_batch(task: Any, tok: Tokenizer, max_length: int) -> dict[str, torch.Tensor]:
    """Two inputs of different lengths, so the padded-attention path is the one traced."""
    from maskedlm.tasks.data import QAExample, SpanSentence, TaggedSentence, TextExample

    words = [["the", "cat", "sat", "on", "the", "mat", "today"], ["a", "dog"]]
    if task.kind in ("classify", "pair"):
        pair = "it was there" if task.kind == "pair" else None
        examples: list[Any] = [TextExample(" ".join(w), pair, task.labels[0], "sample")
                               for w in words]
    elif task.kind == "tag":
        examples = [TaggedSentence(w, [task.labels[0]] * len(w), "sample") for w in words]
    elif task.kind == "qa":
        examples = [QAExample(str(k), "where did it sit ?", " ".join(w), where="sample")
                    for k, w in enumerate(words)]
    else:
        examples = [SpanSentence(w, [], "sample") for w in words]
    return task.collate(task.featurize(examples, tok, max_length), tok.pad_id, None)


def export_onnx(model: str | Path, out: str | Path, quantize: str = ExportOptions.quantize,
                command: list[str] | None = None, overwrite: bool = False) -> Path:
    """``model.onnx`` (+ ``onnx.json``, config, tokenizer, a fine-tuned run's ``task.json``)
    that ``maskedlm.load(out, backend="onnx")`` and ONNX Runtime run.

    >>> export_onnx("runs/bert-mini", "runs/bert-mini-onnx", quantize="int8")  # doctest: +SKIP
    """
    if quantize not in QUANTIZE:
        raise MaskedLMError(f"--quantize must be one of {', '.join(QUANTIZE)}, got {quantize!r}")
    check_output_dir(out, "export-onnx", overwrite=overwrite, inputs=[model])
    try:
        import onnx  # noqa: F401 - torch.onnx.export writes through it
        if quantize == "int8":
            from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError:
        raise MaskedLMError("export-onnx needs onnx and onnxruntime: "
                            "pip install 'maskedlm[onnx]'") from None
    src = Path(model)
    # a contrastive run is an encoder: its graph is the encoder's; task.json (pooling,
    # normalisation) goes beside it, and load(out, backend="onnx").encode pools as trained
    sentence = _sentence_run(src)
    fine_tuned = (src / "task.json").is_file() and sentence is None
    if fine_tuned:
        from maskedlm.tasks.finetune import load_task

        predictor = load_task(src)
        tok, config = predictor.tokenizer, predictor.model.encoder.config
        batch = _UsedKeys(_sample_batch(predictor.task, tok, predictor.max_length))
        with torch.no_grad():
            predictor.model.infer(batch)
        names = batch.used
        graph: torch.nn.Module = _TaskGraph(predictor.model, names)
        args = tuple(batch[k] for k in names)
        outputs = ["logits"]
        axes = {k: {d: f"{k}_{d}" for d in range(batch[k].dim())} for k in names}
        axes["logits"] = {d: f"logits_{d}" for d in range(2)}
    else:
        pretrained, ckpt = load_model(src, warn_fresh=False)
        tok, config = Tokenizer.load(ckpt), pretrained.config
        graph = _EncoderGraph(pretrained.bert)
        ids = torch.tensor([[tok.cls_id, 7, 8, 9, 10, tok.sep_id], [tok.cls_id, 7, tok.sep_id, 0, 0, 0]])
        ids[1, 3:] = tok.pad_id
        mask = (torch.arange(6)[None] < torch.tensor([[6], [3]])).long()
        names, args = ["input_ids", "attention_mask", "token_type_ids"], (ids, mask, torch.zeros_like(ids))
        outputs = ["last_hidden_state", "hidden_states"]
        seq = {0: "batch", 1: "sequence"}
        axes = {**{k: seq for k in names}, "last_hidden_state": seq,
                "hidden_states": {1: "batch", 2: "sequence"}}

    def write(tmp: Path) -> None:
        fp32 = tmp / ONNX_FILE
        with torch.no_grad(), kernels.stock(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notes
            graph.eval()
            torch.onnx.export(graph, args, str(fp32), input_names=names, output_names=outputs,
                              dynamic_axes=axes, opset_version=OPSET, dynamo=False)
        if quantize == "int8":
            # Dynamic quantization: int8 weights (a scale per output channel),
            # activations quantized per batch at run time (ONNX Runtime's recipe for
            # transformer encoders on CPU).
            int8 = tmp / "model.int8.onnx"
            root = logging.getLogger()
            level = root.level
            root.setLevel(logging.ERROR)  # its advice to pre-process is logged on the root logger
            try:
                # Per-channel scales: on SST-2 dev (MiniLM fine-tuned on 3,000 examples)
                # per-tensor int8 lost 1.1 points of accuracy, per-channel none (+0.5).
                quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8,
                                 per_channel=True)
            finally:
                root.setLevel(level)
            fp32.unlink()
            int8.rename(fp32)
        config.save(tmp / CONFIG_NAME)
        tok.save(tmp)
        if fine_tuned or sentence is not None:
            shutil.copy2(src / "task.json", tmp / "task.json")
        meta = {"maskedlm": __version__, "source": str(src), "inputs": names, "outputs": outputs,
                "quantize": quantize, "opset": OPSET, "task": fine_tuned}
        (tmp / ONNX_META).write_text(json.dumps(meta, indent=2) + "\n")

    atomic_write_dir(Path(out), write, purpose="export-onnx", overwrite=overwrite, inputs=[model])
    write_model_card(model, Path(out), "export-onnx", command, onnx={"quantize": quantize},
                     st=None if sentence is None else {"pool": sentence.get("pool", "mean"),
                                                       "normalize": True, "matryoshka":
                                                       sentence.get("matryoshka") or []})
    return Path(out)


# ----------------------------------------------------------------------------- ELECTRA
def electra_config(config: Any) -> dict[str, Any]:
    """transformers' ``ElectraConfig`` for our post-LN BERT discriminator (embeddings as
    wide as the encoder: no ``embeddings_project``)."""
    d = config.to_dict()
    keep = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
            "intermediate_size", "hidden_act", "hidden_dropout_prob",
            "attention_probs_dropout_prob", "max_position_embeddings", "type_vocab_size",
            "initializer_range", "layer_norm_eps", "pad_token_id")
    out = {k: d[k] for k in keep}
    out.update(embedding_size=config.hidden_size, model_type="electra",
               architectures=["ElectraForPreTraining"], position_embedding_type="absolute")
    return out


def electra_state_dict(model: Any) -> dict[str, torch.Tensor]:
    """An RTD model's discriminator under ``ElectraForPreTraining`` names (``electra.*``,
    ``discriminator_predictions.*``); the generator is left out."""
    out = {}
    for key, t in to_hf_state_dict(model).items():
        if key.startswith("bert."):
            out["electra." + key[len("bert."):]] = t
        elif key.startswith("discriminator_predictions."):
            out[key] = t
    return out


def export_hf_rtd(model: str | Path, out: str | Path, overwrite: bool = False) -> Path:
    """A replaced-token detection run for ``transformers``: ``ElectraForPreTraining`` for a
    post-LN BERT discriminator (its per-token "replaced" logits included); a ModernBERT
    one as ``ModernBertModel`` (transformers has no ModernBERT discriminator head);
    other encoders as :func:`write_hf_dir` writes them."""
    rtd, ckpt = load_rtd_model(model)
    config = rtd.config
    if config.arch == "bert" and config.pre_layer_norm:
        return write_hf_dir(model, out, overwrite=overwrite)  # RobertaPreLayerNorm's layout
    tokenizer = Tokenizer.load(ckpt)

    def write(tmp: Path) -> None:
        if config.arch == "bert":
            d, weights = electra_config(config), electra_state_dict(rtd)
        else:
            d = {k: v for k, v in config.to_dict().items() if k != RTD_CONFIG_KEY}
            d.update(architectures=["ModernBertModel"], cls_token_id=tokenizer.cls_id,
                     sep_token_id=tokenizer.sep_id, bos_token_id=tokenizer.cls_id,
                     eos_token_id=tokenizer.sep_id)
            weights = {k: v for k, v in to_hf_state_dict(rtd).items() if k.startswith("model.")}
        (tmp / CONFIG_NAME).write_text(json.dumps(d, indent=2) + "\n")
        save_file(weights, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        tokenizer.save(tmp)
    return atomic_write_dir(Path(out), write, purpose="export-hf", overwrite=overwrite,
                            inputs=[model])


# ----------------------------------------------------------------------------- model cards
def _run_dir(model: str | Path) -> Path:
    """The run directory behind ``model`` (a run, its checkpoint/ or a plain model dir)."""
    p = Path(model)
    if (p / CONFIG_NAME).is_file() and p.name == "checkpoint" and (p.parent / "run.json").is_file():
        return p.parent
    return p


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _metrics(run: Path) -> tuple[dict[str, Any], int]:
    """The last logged training record with an evaluation merged in, and the tokens seen."""
    last: dict[str, Any] = {}
    tokens = 0
    try:
        lines = (run / "metrics.jsonl").read_text().splitlines()
    except OSError:
        return last, tokens
    for ln in lines:
        try:
            r = json.loads(ln)
        except json.JSONDecodeError:
            continue
        tokens += int(r.get("tokens", 0)) if "mlm_loss" in r else 0
        last.update(r)
    return last, tokens


def _find_scorecard(run: Path) -> dict[str, Any] | None:
    for p in (run / CARD_FILE, Path("runs") / f"scorecard-{run.name}" / CARD_FILE):
        if p.is_file():
            try:
                return load_card(p)
            except MaskedLMError:
                return None
    return None


def model_card(model: str | Path, kind: str, command: list[str] | None = None,
               st: dict[str, Any] | None = None, onnx: dict[str, Any] | None = None) -> str:
    """The README.md text for an export of ``model`` (``kind``: export-hf, -st, -onnx).

    >>> print(model_card("runs/bert-mini", "export-st", st={"pool": "mean"}))  # doctest: +SKIP
    """
    run = _run_dir(model)
    ckpt = resolve_checkpoint_dir(model)
    cfg = _read_json(ckpt / CONFIG_NAME) or {}
    info = _read_json(run / "run.json") or {}
    task = _read_json(run / "task.json")
    last, tokens = _metrics(run)
    langs = sorted(k for k in ((info.get("languages") or {}).get("languages") or {}) if k)
    library = {"export-hf": "transformers", "export-st": "sentence-transformers",
               "export-onnx": "onnx"}[kind]
    if task:
        pipeline = _PIPELINE.get(task["task"], "text-classification")
    elif kind == "export-st":
        pipeline = "sentence-similarity"
    elif kind == "export-onnx":
        pipeline = "feature-extraction"
    else:
        pipeline = "fill-mask"
    tags = ["maskedlm", "bert", *(["sentence-transformers", "feature-extraction"] if st else []),
            *(["onnx"] if onnx else [])]
    head = ["---", f"library_name: {library}", f"pipeline_tag: {pipeline}"]
    head += ["language:", *(f"- {x}" for x in langs)] if langs else [
        "# language: the language code(s) of the training text (not recorded by the run)"]
    head += ["# license: yours to choose (https://huggingface.co/docs/hub/repositories-licenses)",
             "tags:", *(f"- {t}" for t in tags), "---", ""]
    name = run.name if run.name != "checkpoint" else run.parent.name
    lines = [f"# {name}", "",
             f"A BERT-style encoder written by maskedlm {__version__} (`maskedlm {kind}`)."]
    if command:
        lines += ["", "Exported with:", "", "```", " ".join(command), "```"]
    lines += ["", "## Architecture", "", "| field | value |", "|---|---|"]
    arch = {"layers": cfg.get("num_hidden_layers"), "hidden size": cfg.get("hidden_size"),
            "attention heads": cfg.get("num_attention_heads"),
            "feed-forward size": cfg.get("intermediate_size"), "vocabulary": cfg.get("vocab_size"),
            "max positions": cfg.get("max_position_embeddings"),
            "normalisation": "pre-LN" if cfg.get("pre_layer_norm") else "post-LN (as BERT)",
            "parameters": f"{info['parameters'] / 1e6:.2f}M" if info.get("parameters") else None}
    lines += [f"| {k} | {v} |" for k, v in arch.items() if v is not None]
    opts = info.get("options") or {}
    if opts or not task:
        lines += ["", "## Training", ""]
    if opts:
        train = opts.get("train") or {}
        facts = {"recipe": opts.get("recipe"), "data": info.get("data"),
                 "corpus": ", ".join(opts.get("corpus") or []) or None,
                 "sequence length": opts.get("seq_len"), "steps": last.get("step"),
                 "tokens seen": f"{tokens:,}" if tokens else None,
                 "batch size": train.get("batch_size"), "peak learning rate": train.get("lr"),
                 "schedule": train.get("schedule"), "precision": train.get("precision"),
                 "final training loss": _round(last.get("loss")),
                 "held-out masked-token accuracy": _round(last.get("eval_mlm_accuracy")),
                 "wall-clock seconds": _round(last.get("elapsed_s"))}
        lines += ["| field | value |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in facts.items() if v is not None]
        if opts.get("command"):
            lines += ["", "Pretrained with:", "", "```", " ".join(opts["command"]), "```"]
    elif not task:
        lines += [f"No run record beside the weights ({ckpt}): a model imported from elsewhere."]
    if task:
        best = task.get("metrics") or {}
        ft = task.get("finetune") or {}
        labels = ", ".join(f"`{x}`" for x in task.get("labels", []))
        lines += ["", "## Fine-tuning", "", f"Task `{task['task']}`"
                  + (f" with labels {labels}." if labels else ".")]
        facts = {"best step": best.get("step"), "epochs": ft.get("epochs"), "learning rate": ft.get("lr"),
                 "batch size": ft.get("batch_size"), "max length": task.get("max_length"),
                 "frozen": ft.get("freeze"), "seed": ft.get("seed")}
        facts.update({f"dev {k}": _round(v) for k, v in (best.get("dev") or {}).items()
                      if isinstance(v, int | float) and not isinstance(v, bool)})
        lines += ["", "| field | value |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in facts.items() if v is not None]
    card = _find_scorecard(run)
    if card:
        lines += ["", "## Scorecard", "", markdown([card]).rstrip()]
    lines += ["", "## Use", "", *_usage(kind, st, onnx, task), ""]
    return "\n".join(head + lines)


def _usage(kind: str, st: dict[str, Any] | None, onnx: dict[str, Any] | None,
           task: dict[str, Any] | None) -> list[str]:
    if kind == "export-st":
        return [*_sentence_usage(st), "", "```python", "from sentence_transformers import SentenceTransformer",
                'model = SentenceTransformer("PATH")',
                'vectors = model.encode(["A cat sat on the mat.", "A dog lay on the rug."])',
                "```"]
    if kind == "export-onnx":
        pre = [*_sentence_usage(st), ""] if st else []
        if st:  # a contrastive run's encoder: pooled and normalised by encode()
            task = None
        q = (onnx or {}).get("quantize", "none")
        what = "encoder and task head (`logits`)" if task else "encoder (`last_hidden_state`, `hidden_states`)"
        call = ('load("PATH", backend="onnx").predict("A gripping film.")' if task
                else 'load("PATH", backend="onnx").encode(["A cat sat on the mat."])')
        return [*pre, f"An ONNX graph of the {what}; weights {'int8 (dynamic quantization)' if q == 'int8' else 'fp32'};"
                " dynamic batch and sequence axes.", "", "```python", "from maskedlm import load",
                call, "```", "", "or `maskedlm " + ("predict PATH TEXT" if task else
                                                    "embed PATH --input FILE --out X.npy")
                + " --backend onnx`."]
    if task and task.get("task") == "qa":
        return ["```python", "from transformers import pipeline",
                'qa = pipeline("question-answering", model="PATH")',
                'qa(question="Who led the Normans?", context="Rollo led the Normans.")', "```"]
    return ["```python", "from transformers import pipeline",
            'fill = pipeline("fill-mask", model="PATH")', 'fill("The capital of France is [MASK].")',
            "```"]


def _sentence_usage(st: dict[str, Any] | None) -> list[str]:
    """How the sentence vectors are made (pooling, normalisation, Matryoshka sizes)."""
    st = st or {}
    norm = ", normalised to unit length" if st.get("normalize") else ""
    lines = [f"Sentence vectors: {st.get('pool', 'mean')} pooling of the last layer{norm}."]
    if st.get("matryoshka"):
        sizes = ", ".join(str(d) for d in st["matryoshka"])
        lines += ["", f"Trained with Matryoshka sizes {sizes} (Kusupati et al. 2022): the first "
                  "d dimensions of a vector, renormalised, are a d-dimensional embedding."]
    return lines


def _round(v: Any) -> Any:
    return round(v, 4) if isinstance(v, float) else v


def write_model_card(model: str | Path, out: Path, kind: str, command: list[str] | None = None,
                     **extra: Any) -> Path:
    """Write ``out/README.md`` for an export of ``model``."""
    path = Path(out) / CARD_NAME
    atomic_write_text(path, model_card(model, kind, command, **extra))
    return path
