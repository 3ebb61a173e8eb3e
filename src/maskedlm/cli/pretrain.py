"""``maskedlm pretrain``, ``tokenizer``, ``prepare``, ``fill-mask``, ``mask-preview``, and the
exports ``export-hf``, ``export-st``, ``export-onnx``.

The main CLI (:mod:`maskedlm.cli`) calls :func:`register`; handlers raise
``MaskedLMError`` for user errors (exit code 2) and return an exit status.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable

from maskedlm.cli.args import add_fields, from_args

Handler = Callable[[argparse.Namespace], int | None]


# ----------------------------------------------------------------------------- pretrain
def add_masking_args(p: argparse.ArgumentParser) -> None:
    from maskedlm.options import MASKING_FIELDS, PretrainOptions
    from maskedlm.training.config import TrainConfig

    add_fields(p, PretrainOptions, MASKING_FIELDS)
    add_fields(p, TrainConfig, ["seed"])


def add_pretrain(sub: argparse._SubParsersAction) -> None:
    from maskedlm.options import MASKING_FIELDS, PretrainOptions
    from maskedlm.training.config import TrainConfig

    p = sub.add_parser("pretrain", help="pretrain a BERT/RoBERTa/SpanBERT encoder",
                       description="With no arguments: a tiny encoder with the budget recipe on the "
                                   "standard library's docstrings (about 3 minutes on 2 CPU cores).")
    add_masking_args(p)
    add_fields(p, PretrainOptions, skip=MASKING_FIELDS)
    add_fields(p, TrainConfig, skip=["seed"])
    p.set_defaults(func=run_pretrain)


def add_overwrite_arg(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--overwrite", action="store_true",
                   help=f"write into an output directory that exists but is not {what} made by "
                        "maskedlm (without it such a directory is refused; a run directory, an "
                        "input or an existing file never is replaced; docs/reliability.md)")


def run_pretrain(a: argparse.Namespace) -> int:
    from maskedlm.api import first_look
    from maskedlm.options import PretrainOptions
    from maskedlm.pretrain import pretrain
    from maskedlm.training.config import TrainConfig

    opts = from_args(PretrainOptions, a, train=from_args(TrainConfig, a), command=a.command_line)
    record = pretrain(opts)
    if int(os.environ.get("RANK", "0")) != 0:
        return 0
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in record.items()}))
    if opts.default_job or opts.corpus:
        look = first_look(opts.out, record, opts.default_job)
        if "accuracy" in look:
            print(f"held-out masked-token accuracy {look['accuracy']:.3f}; a model that always "
                  f"answers the most frequent token {look['baseline_token']!r} scores "
                  f"{look['baseline_share']:.3f}")
        for prompt, preds in look["prompts"]:
            shown = ", ".join(f"{d['token']} ({d['score']:.2f})" for d in preds)
            print(f"{prompt}\n    -> {shown}")
    print(f"saved to {opts.out}/checkpoint; try: maskedlm fill-mask {opts.out} \"...[MASK]...\"")
    return 0


# ----------------------------------------------------------------------------- data
CORPUS_HELP = ("text to {} (files, folders, globs): .txt, .jsonl/.json (one object a line), "
               "each plain, .gz or .zst, and .parquet; LANG=PATH for each language")


def add_corpus_reading_args(p: argparse.ArgumentParser) -> None:
    """How the corpus is read, as ``pretrain`` reads it."""
    from maskedlm.options import PretrainOptions

    add_fields(p, PretrainOptions, ["text_field", "one_doc_per_line", "alpha"])


def add_tokenizer(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tokenizer", help="train a WordPiece tokenizer")
    tsub = p.add_subparsers(dest="tokenizer_cmd", required=True)
    from maskedlm.options import PretrainOptions, TokenizerOptions

    t = tsub.add_parser("train", help="train a WordPiece vocabulary on a corpus")
    t.add_argument("--corpus", action="append", required=True, metavar="[LANG=]PATH",
                   help=CORPUS_HELP.format("train on"))
    add_corpus_reading_args(t)
    add_fields(t, TokenizerOptions, ["sample_mb", "vocab_size"])
    t.add_argument("--out", required=True, help="tokenizer directory to write")
    add_overwrite_arg(t, "a tokenizer")
    add_fields(t, PretrainOptions, ["uncased"])
    add_fields(t, TokenizerOptions, ["seed"])
    t.set_defaults(func=run_tokenizer_train)


def run_tokenizer_train(a: argparse.Namespace) -> int:
    from maskedlm.data.corpus import iter_corpus_documents, parse_corpus_args
    from maskedlm.data.tokenizer import train_tokenizer
    from maskedlm.errors import MaskedLMError
    from maskedlm.files import check_output_dir, write_marker

    corpus = parse_corpus_args(a.corpus)
    if a.sample_mb < 0:
        raise MaskedLMError(f"--sample-mb must be >= 0, got {a.sample_mb}")
    # before the training: never a run, a checkpoint (its tokenizer would be replaced) or a file
    check_output_dir(a.out, "tokenizer", overwrite=a.overwrite, whole=False)
    sample = a.sample_mb * 1e6 if a.sample_mb else None
    tok = train_tokenizer(lambda: iter_corpus_documents(corpus, alpha=a.alpha, seed=a.seed,
                                                        one_doc_per_line=a.one_doc_per_line,
                                                        text_field=a.text_field,
                                                        sample_bytes=sample),
                          vocab_size=a.vocab_size, lowercase=a.uncased)
    tok.save(a.out)
    write_marker(a.out, "tokenizer")
    print(f"tokenizer: {tok.vocab_size} tokens -> {a.out}")
    return 0


def add_prepare(sub: argparse._SubParsersAction) -> None:
    from maskedlm.options import PrepareOptions, RunOptions

    p = sub.add_parser("prepare", help="tokenize a corpus once into memmap shards (cached)")
    p.add_argument("--corpus", action="append", required=True, metavar="[LANG=]PATH",
                   help=CORPUS_HELP.format("tokenize"))
    add_corpus_reading_args(p)
    add_fields(p, PrepareOptions, ["workers"])
    p.add_argument("--tokenizer", required=True, help="a tokenizer directory")
    p.add_argument("--out", required=True, help="folder for the shards (a cache keyed by config)")
    add_fields(p, PrepareOptions, ["seq_len", "seed"])
    add_fields(p, RunOptions, ["progress"])
    p.set_defaults(func=run_prepare)


def run_prepare(a: argparse.Namespace) -> int:
    from maskedlm.data.corpus import parse_corpus_args
    from maskedlm.data.instances import check_seq_len
    from maskedlm.data.shards import ShardSet, prepare_shards

    check_seq_len(a.seq_len)
    path = prepare_shards(parse_corpus_args(a.corpus), a.tokenizer, a.out,
                          one_doc_per_line=a.one_doc_per_line, alpha=a.alpha, seed=a.seed,
                          text_field=a.text_field, workers=a.workers,
                          show_progress=a.progress)
    meta = ShardSet.load(path).meta
    print(json.dumps({"shards": str(path), **{k: meta[k] for k in meta
                                               if k in ("train_tokens", "valid_tokens", "dtype",
                                                        "languages")}}))
    return 0


# ----------------------------------------------------------------------------- using a model
def add_fill_mask(sub: argparse._SubParsersAction) -> None:
    from maskedlm.options import FillMaskOptions

    p = sub.add_parser("fill-mask", help="predict the words behind [MASK]")
    p.add_argument("model", help="a run, a checkpoint or a Hugging Face BERT or ModernBert directory")
    p.add_argument("text", nargs="+", help="prompts with one or more [MASK]")
    add_fields(p, FillMaskOptions)
    p.add_argument("--json", action="store_true", help="one JSON line per prompt")
    p.set_defaults(func=run_fill_mask)


def run_fill_mask(a: argparse.Namespace) -> int:
    from maskedlm.api import load
    from maskedlm.errors import MaskedLMError

    model = load(a.model)
    if not hasattr(model, "fill_mask"):
        raise MaskedLMError(f"{a.model}: a fine-tuned run (task.json); fill-mask needs a pretrained "
                            "encoder (its --model), or use `maskedlm predict`")
    for text in a.text:
        preds = model.fill_mask(text, top_k=a.top_k)
        if a.json:
            print(json.dumps(preds))
            continue
        print(text)
        for i, cands in enumerate(preds):
            print(f"  [MASK] #{i + 1}: " + ", ".join(f"{c['token']} {c['score']:.3f}" for c in cands))
    return 0


def add_exports(sub: argparse._SubParsersAction) -> None:
    from maskedlm.options import ExportOptions

    p = sub.add_parser("export-hf", help="write a directory transformers' BertForMaskedLM "
                                         "(ModernBertForMaskedLM for --arch modernbert, "
                                         "BertForQuestionAnswering for a qa run) loads (+ a model card)")
    p.add_argument("model", help="a run, a checkpoint or a fine-tuned qa run (post-LN)")
    p.add_argument("out", help="directory to write")
    add_overwrite_arg(p, "an earlier export-hf")
    p.set_defaults(func=run_export)
    p = sub.add_parser("export-st", help="write a directory sentence_transformers."
                                         "SentenceTransformer loads (+ a model card)")
    p.add_argument("model", help="a run, a checkpoint or a Hugging Face BERT dir (post-LN)")
    p.add_argument("out", help="directory to write")
    add_fields(p, ExportOptions, ["pool", "normalize"])
    add_overwrite_arg(p, "an earlier export-st")
    p.set_defaults(func=run_export)
    p = sub.add_parser("export-onnx", help="write an ONNX graph of the encoder, or of encoder and "
                                           "task head for a fine-tuned run (+ a model card)")
    p.add_argument("model", help="a run, a checkpoint, a Hugging Face BERT dir or a fine-tuned run")
    p.add_argument("out", help="directory to write (model.onnx, onnx.json, config, tokenizer)")
    add_fields(p, ExportOptions, ["quantize"])
    add_overwrite_arg(p, "an earlier export-onnx")
    p.set_defaults(func=run_export)


def run_export(a: argparse.Namespace) -> int:
    from maskedlm import export

    if a.command == "export-hf":
        out = export.export_hf(a.model, a.out, a.command_line, overwrite=a.overwrite)
    elif a.command == "export-st":
        out = export.export_st(a.model, a.out, a.pool, a.normalize, a.command_line,
                               overwrite=a.overwrite)
    else:
        out = export.export_onnx(a.model, a.out, a.quantize, a.command_line, overwrite=a.overwrite)
    print(f"exported to {out} (model card: {out}/README.md)")
    return 0


def add_mask_preview(sub: argparse._SubParsersAction) -> None:
    from maskedlm.options import PreviewOptions

    p = sub.add_parser("mask-preview", help="show what a recipe's masking does to real data")
    add_masking_args(p)
    p.add_argument("--data", required=True, help="shards made by `maskedlm prepare`")
    add_fields(p, PreviewOptions)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run_mask_preview)


def run_mask_preview(a: argparse.Namespace) -> int:
    from maskedlm.data.preview import mask_preview

    result = mask_preview(a.data, recipe=a.recipe, whole_word=a.whole_word, n=a.n,
                          sequences=a.sequences if a.stats else 0, seq_len=a.seq_len, seed=a.seed,
                          budget=a.masking_budget, random_source=a.random_source,
                          merge_spans=a.merge_spans, mask_rate=a.mask_rate,
                          mask_replace=a.mask_replace)
    if a.json:
        print(json.dumps(result["stats"] if a.stats else result["examples"]))
        return 0
    for ex in result["examples"]:
        print("original: " + ex["original"])
        print("masked:   " + ex["masked"])
        print()
    if a.stats:
        print(json.dumps(result["stats"], indent=2))
    return 0


# ----------------------------------------------------------------------------- registration
def register(sub: argparse._SubParsersAction) -> None:
    """Add pretrain, tokenizer, prepare, fill-mask, mask-preview and the exports to ``maskedlm``."""
    for add in (add_pretrain, add_tokenizer, add_prepare, add_fill_mask, add_mask_preview,
                add_exports):
        add(sub)
