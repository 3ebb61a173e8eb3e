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

Handler = Callable[[argparse.Namespace], int | None]


# ----------------------------------------------------------------------------- pretrain
def add_masking_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--recipe", choices=["budget", "bert", "roberta", "spanbert"], default="budget",
                   help="budget (default): the most from little compute; bert, roberta, spanbert: "
                        "as their papers")
    p.add_argument("--whole-word", action="store_true",
                   help="bert/roberta: select whole words instead of single subwords")
    p.add_argument("--masking-budget", choices=["exact", "bernoulli"], default=None,
                   help="exact: ceil(15%%) of maskable tokens (default); bernoulli: per-token coin flips")
    p.add_argument("--random-source", choices=["uniform", "unigram"], default=None,
                   help="random replacements from the vocabulary (default) or corpus unigram frequencies")
    p.add_argument("--merge-spans", action=argparse.BooleanOptionalAction, default=None,
                   help="spanbert: merge touching spans for SBO boundaries, as the SpanBERT code "
                        "(default: on for --recipe spanbert)")
    p.add_argument("--seq-len", type=int, default=128, help="tokens per training sequence")
    p.add_argument("--seed", type=int, default=0, help="seed of masking, sampling and init")
    p.add_argument("--mask-rate", type=float, default=None,
                   help="share of tokens with a target (default: 0.30 for --recipe budget, as "
                        "ModernBERT; 0.15 otherwise, as BERT)")
    p.add_argument("--mask-replace", choices=["80-10-10", "mask"], default=None,
                   help="targets become [MASK]/random/kept 80/10/10 (default) or all [MASK] (NeoBERT)")


def add_pretrain(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pretrain", help="pretrain a BERT/RoBERTa/SpanBERT encoder",
                       description="With no arguments: a tiny encoder with the budget recipe on the "
                                   "standard library's docstrings (about 3 minutes on 2 CPU cores).")
    add_masking_args(p)
    p.add_argument("--size", default="tiny", help="tiny, mini, small, medium, base, large")
    p.add_argument("--arch", choices=["bert", "modernbert"], default=None,
                   help="bert (default): the 2018 encoder; modernbert: ModernBERT blocks (pre-LN, "
                        "GeGLU, rotary, local/global attention) on packed rows; with --init: "
                        "the checkpoint's")
    p.add_argument("--objective", choices=["mlm", "rtd"], default="mlm",
                   help="mlm (default): the recipe's masked-LM objective; rtd: replaced-token "
                        "detection (ELECTRA): a small generator fills the masks and the encoder "
                        "learns to spot its replacements at every token")
    p.add_argument("--generator-scale", type=float, default=0.25,
                   help="rtd: the generator's width as a share of the encoder's (default 1/4, "
                        "as ELECTRA-Small)")
    p.add_argument("--rtd-weight", type=float, default=50.0,
                   help="rtd: lambda in MLM + lambda x RTD (default 50, as ELECTRA)")
    p.add_argument("--data", help="shards made by `maskedlm prepare` (default: prepared from --corpus, or the "
                        "standard library's docstrings when neither is given)")
    p.add_argument("--corpus", action="append", default=[], metavar="[LANG=]PATH",
                   help="text to pretrain on (files, folders, globs); repeat for several languages")
    p.add_argument("--tokenizer", help="a tokenizer directory, ours or Hugging Face (default: the --init model's, "
                        "or one trained on the corpus)")
    p.add_argument("--init", help="continue pretraining from a checkpoint or a Hugging Face BERT or ModernBert dir "
                        "(default: random initialisation)")
    p.add_argument("--out", default="runs/default", help="run directory (checkpoint, metrics, curves)")
    add_overwrite_arg(p, "a pretraining run")
    p.add_argument("--vocab-size", type=int, default=None,
                   help="WordPiece vocabulary trained on the corpus (default: 8000 for the "
                        "default job, 30000 otherwise)")
    p.add_argument("--uncased", action="store_true", help="lowercase and strip accents")
    p.add_argument("--one-doc-per-line", action="store_true",
                   help="each line is a document (else blank lines separate documents)")
    add_text_field_arg(p)
    p.add_argument("--alpha", type=float, default=0.3, help="language sampling exponent")
    p.add_argument("--max-steps", type=int, default=None,
                   help="optimizer steps (default: 1000, or as many as --max-time allows; 1600 for the "
                        "embedded default job)")
    p.add_argument("--max-time", type=float, default=0.0, help="wall-clock budget in seconds")
    p.add_argument("--batch-size", type=int, default=None,
                   help="sequences per process and micro-step (default: 64 for --recipe budget, 32 otherwise)")
    p.add_argument("--grad-accum", type=int, default=1, help="micro-steps per optimizer step")
    p.add_argument("--lr", type=float, default=None,
                   help="peak learning rate (default: 2e-3 for --recipe budget; 1e-3 for tiny/mini "
                        "and 5e-4 for larger sizes otherwise; 1e-4 with --init)")
    p.add_argument("--weight-decay", type=float, default=0.01, help="AdamW weight decay")
    p.add_argument("--warmup-ratio", type=float, default=0.06,
                   help="share of the steps with a linear warm-up")
    p.add_argument("--clip-grad", type=float, default=1.0, help="gradient norm clip (0: none)")
    p.add_argument("--precision", choices=["fp32", "bf16", "auto"], default=None,
                   help="auto: bf16 where the chip has it natively (default for --recipe budget; "
                        "fp32 otherwise)")
    p.add_argument("--dropout", type=float, default=None,
                   help="dropout in the encoder (default: 0 for --recipe budget, 0.1 otherwise)")
    p.add_argument("--pre-ln", action=argparse.BooleanOptionalAction, default=None,
                   help="pre-LayerNorm blocks (default: on for --recipe budget; post-LN, as BERT, "
                        "otherwise)")
    p.add_argument("--schedule", choices=["linear", "wsd"], default=None,
                   help="linear decay, or warmup-stable-decay with a 1-sqrt decay "
                        "(default: wsd for --recipe budget, linear otherwise)")
    p.add_argument("--decay-ratio", type=float, default=0.2,
                   help="share of the run the wsd decay takes")
    p.add_argument("--log-every", type=int, default=10, help="steps between metrics.jsonl lines")
    p.add_argument("--eval-every", type=int, default=0,
                   help="steps between held-out evaluations (0: at the end only)")
    p.add_argument("--save-every", type=int, default=0,
                   help="steps between checkpoints (0: at the end only)")
    p.add_argument("--eval-sequences", type=int, default=256, help="held-out sequences per evaluation")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    add_resume_arg(p)
    add_progress_args(p)
    p.set_defaults(func=run_pretrain)


def add_progress_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-progress", action="store_true", help="no progress bar or progress lines")
    p.add_argument("--progress-every", type=float, default=30.0, metavar="SECONDS",
                   help="when stderr is not a terminal (a log file, CI, a scheduler): one plain "
                        "progress line this often instead of a live bar")


def add_overwrite_arg(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--overwrite", action="store_true",
                   help=f"write into an output directory that exists but is not {what} made by "
                        "maskedlm (without it such a directory is refused; a run directory, an "
                        "input or an existing file never is replaced; docs/reliability.md)")


def _resume_value(value: str) -> str:
    if value != "auto":
        raise argparse.ArgumentTypeError(f"takes no value or 'auto', got {value!r}")
    return value


def add_resume_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--resume", nargs="?", const=True, default=False, type=_resume_value,
                   metavar="auto",
                   help="continue the run in --out (a stopped run exits with code 75); "
                        "--resume auto: continue if --out holds one, else start fresh, so that a "
                        "scheduler or torchrun --max-restarts can rerun the same command")


def run_pretrain(a: argparse.Namespace) -> int:
    from maskedlm.errors import MaskedLMError
    from maskedlm.pretrain import PretrainOptions, pretrain, recipe_defaults
    from maskedlm.train import TrainConfig

    default_job = not (a.data or a.corpus or a.init)
    if a.max_time < 0:
        raise MaskedLMError(f"--max-time must be >= 0 seconds, got {a.max_time}")
    max_time = a.max_time
    # With a wall-clock budget and no step count, time alone ends the run (and its schedule).
    # The embedded default is a fixed number of steps instead (about 3 minutes on an idle
    # 2-core CPU): on a busy machine a time budget left it at the unigram plateau, answering
    # "the, is, a" to every prompt; a step budget shows the same result everywhere.
    max_steps = a.max_steps if a.max_steps is not None else (
        10**9 if max_time else DEFAULT_JOB_STEPS if default_job else 1000)
    d = recipe_defaults(a.recipe, a.size, a.init)
    # `is None`, not `or`: an explicit 0 must reach the checks, not become the default
    tcfg = TrainConfig(max_steps=max_steps,
                       batch_size=d["batch_size"] if a.batch_size is None else a.batch_size,
                       grad_accum=a.grad_accum,
                       lr=d["lr"] if a.lr is None else a.lr, weight_decay=a.weight_decay,
                       warmup_ratio=a.warmup_ratio, clip_grad=a.clip_grad,
                       precision=a.precision or d["precision"], seed=a.seed,
                       log_every=a.log_every, eval_every=a.eval_every, save_every=a.save_every,
                       max_time=max_time, progress=not a.no_progress,
                       progress_every=a.progress_every,
                       schedule=a.schedule or d["schedule"], decay_ratio=a.decay_ratio)
    opts = PretrainOptions(
        recipe=a.recipe, size=a.size, arch=a.arch, out=a.out, data=a.data, corpus=a.corpus,
        tokenizer=a.tokenizer, init=a.init,
        vocab_size=a.vocab_size if a.vocab_size is not None else (8000 if default_job else 30000),
        uncased=a.uncased, one_doc_per_line=a.one_doc_per_line, text_field=a.text_field,
        alpha=a.alpha, seq_len=a.seq_len,
        whole_word=a.whole_word, masking_budget=a.masking_budget, random_source=a.random_source,
        merge_spans=a.merge_spans, mask_rate=a.mask_rate, mask_replace=a.mask_replace,
        pre_layer_norm=a.pre_ln, eval_sequences=a.eval_sequences, dropout=a.dropout,
        resume=a.resume, overwrite=a.overwrite, device=a.device, train=tcfg,
        command=a.command_line, objective=a.objective, generator_scale=a.generator_scale,
        rtd_weight=a.rtd_weight)
    record = pretrain(opts)
    if int(os.environ.get("RANK", "0")) != 0:
        return 0
    summary = {k: round(v, 4) if isinstance(v, float) else v for k, v in record.items()}
    print(json.dumps(summary))
    if default_job or a.corpus:
        from maskedlm.api import load
        from maskedlm.pretrain import unigram_baseline

        if "eval_mlm_accuracy" in record:
            token, share = unigram_baseline(a.out)
            print(f"held-out masked-token accuracy {record['eval_mlm_accuracy']:.3f}; a model that "
                  f"always answers the most frequent token {token!r} scores {share:.3f}")
        model = load(a.out)
        for prompt in DEFAULT_PROMPTS if default_job else PROSE_PROMPTS:
            preds = model.fill_mask(prompt, top_k=5)
            shown = ", ".join(f"{d['token']} ({d['score']:.2f})" for d in preds[0])
            print(f"{prompt}\n    -> {shown}")
    print(f"saved to {a.out}/checkpoint; try: maskedlm fill-mask {a.out} \"...[MASK]...\"")
    return 0


# 1,600 steps took 181 s on the idle 2-core CPU: held-out accuracy 0.309 against 0.058 for
# always answering '.' (800 steps: 0.183; docs/results/budget-recipe.md)
DEFAULT_JOB_STEPS = 1600
DEFAULT_PROMPTS = (
    "If the file does not exist, an [MASK] is raised.",
    "Return the [MASK] of the file.",
    "This function is [MASK] for internal use only.",
)
# For a run on the user's own --corpus: plain English prose, not docstrings.
PROSE_PROMPTS = (
    "She opened the [MASK] and walked into the room.",
    "He did not know what to [MASK].",
    "It was a cold [MASK] in the middle of winter.",
)


# ----------------------------------------------------------------------------- data
CORPUS_HELP = ("text to {} (files, folders, globs): .txt, .jsonl/.json (one object a line), "
               "each plain, .gz or .zst, and .parquet; LANG=PATH for each language")


def add_text_field_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--text-field", default="text",
                   help="the parquet column or JSON key that holds the text (default: text)")


def add_tokenizer(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tokenizer", help="train a WordPiece tokenizer")
    tsub = p.add_subparsers(dest="tokenizer_cmd", required=True)
    t = tsub.add_parser("train", help="train a WordPiece vocabulary on a corpus")
    t.add_argument("--corpus", action="append", required=True, metavar="[LANG=]PATH",
                   help=CORPUS_HELP.format("train on"))
    add_text_field_arg(t)
    t.add_argument("--sample-mb", type=float, default=1000.0,
                   help="train on a seeded sample of about this many MB of the corpus files "
                        "(each document kept with probability MB / corpus size on disk, in "
                        "every file); a smaller corpus is read whole (0: always whole)")
    t.add_argument("--vocab-size", type=int, default=30000, help="WordPiece vocabulary size")
    t.add_argument("--out", required=True, help="tokenizer directory to write")
    add_overwrite_arg(t, "a tokenizer")
    t.add_argument("--uncased", action="store_true", help="lowercase and strip accents")
    t.add_argument("--one-doc-per-line", action="store_true",
                   help="each line is a document (else blank lines separate documents)")
    t.add_argument("--alpha", type=float, default=0.3, help="language sampling exponent")
    t.add_argument("--seed", type=int, default=0,
                   help="seed of the language sampling and of the sample")
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
    p = sub.add_parser("prepare", help="tokenize a corpus once into memmap shards (cached)")
    p.add_argument("--corpus", action="append", required=True, metavar="[LANG=]PATH",
                   help=CORPUS_HELP.format("tokenize"))
    add_text_field_arg(p)
    p.add_argument("--workers", type=int, default=None,
                   help="processes that tokenize files in parallel (default: the cores "
                        "available); the shards are the same for any number")
    p.add_argument("--tokenizer", required=True, help="a tokenizer directory")
    p.add_argument("--out", required=True, help="folder for the shards (a cache keyed by config)")
    p.add_argument("--seq-len", type=int, default=512,
                   help="recorded for reference; sequences are cut at training time")
    p.add_argument("--one-doc-per-line", action="store_true",
                   help="each line is a document (else blank lines separate documents)")
    p.add_argument("--alpha", type=float, default=0.3, help="language sampling exponent")
    p.add_argument("--seed", type=int, default=0, help="seed of the train/valid split")
    p.add_argument("--no-progress", action="store_true", help="no progress bar or progress lines")
    p.set_defaults(func=run_prepare)


def run_prepare(a: argparse.Namespace) -> int:
    from maskedlm.data.corpus import parse_corpus_args
    from maskedlm.data.instances import check_seq_len
    from maskedlm.data.shards import ShardSet, prepare_shards

    check_seq_len(a.seq_len)
    path = prepare_shards(parse_corpus_args(a.corpus), a.tokenizer, a.out,
                          one_doc_per_line=a.one_doc_per_line, alpha=a.alpha, seed=a.seed,
                          text_field=a.text_field, workers=a.workers,
                          show_progress=not a.no_progress)
    meta = ShardSet.load(path).meta
    print(json.dumps({"shards": str(path), **{k: meta[k] for k in meta
                                               if k in ("train_tokens", "valid_tokens", "dtype",
                                                        "languages")}}))
    return 0


# ----------------------------------------------------------------------------- using a model
def add_fill_mask(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fill-mask", help="predict the words behind [MASK]")
    p.add_argument("model", help="a run, a checkpoint or a Hugging Face BERT or ModernBert directory")
    p.add_argument("text", nargs="+", help="prompts with one or more [MASK]")
    p.add_argument("--top-k", type=int, default=5, help="candidates per [MASK]")
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
    p.add_argument("--pool", choices=["mean", "cls", "max"], default="mean",
                   help="sentence vector from the last layer's tokens")
    p.add_argument("--normalize", action="store_true", help="unit-length vectors (a Normalize module)")
    add_overwrite_arg(p, "an earlier export-st")
    p.set_defaults(func=run_export)
    p = sub.add_parser("export-onnx", help="write an ONNX graph of the encoder, or of encoder and "
                                           "task head for a fine-tuned run (+ a model card)")
    p.add_argument("model", help="a run, a checkpoint, a Hugging Face BERT dir or a fine-tuned run")
    p.add_argument("out", help="directory to write (model.onnx, onnx.json, config, tokenizer)")
    p.add_argument("--quantize", choices=["none", "int8"], default="none",
                   help="int8: ONNX Runtime's dynamic quantization of the weights")
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
    p = sub.add_parser("mask-preview", help="show what a recipe's masking does to real data")
    add_masking_args(p)
    p.add_argument("--data", required=True, help="shards made by `maskedlm prepare`")
    p.add_argument("--n", type=int, default=3, help="examples to print")
    p.add_argument("--stats", action="store_true", help="statistics over --sequences sequences")
    p.add_argument("--sequences", type=int, default=200, help="sequences the statistics cover")
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
