"""``maskedlm finetune {classify,pair,tag,spans,qa}``, ``evaluate`` and ``predict``.

The main CLI calls :func:`register`; handlers raise ``MaskedLMError`` for user errors
(exit code 2) and return an exit status.

>>> from maskedlm.cli import main
>>> main(["predict", "runs/ner", "Jane Villanueva of United Airlines", "--json"])  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from maskedlm.cli.pretrain import add_progress_args, add_resume_arg
from maskedlm.errors import MaskedLMError


def _common(p: argparse.ArgumentParser, lr: float = 5e-5) -> None:
    p.add_argument("--model", required=True, help="our checkpoint/run or a Hugging Face BERT dir")
    p.add_argument("--train", required=True, help="labelled training file (the task's format)")
    p.add_argument("--dev", default=None,
                   help="labelled dev file for evaluation and early stopping "
                        "(default: none; the last step is kept)")
    p.add_argument("--out", required=True, help="run directory to write")
    p.add_argument("--overwrite", action="store_true",
                   help="write into an --out that exists but is not a fine-tuning run made by "
                        "maskedlm (a run of another kind, an input or a file never is replaced; "
                        "docs/reliability.md)")
    p.add_argument("--epochs", type=float, default=3.0, help="passes over the training set")
    p.add_argument("--lr", type=float, default=lr, help="peak learning rate of the encoder")
    p.add_argument("--head-lr", type=float, default=None,
                   help="learning rate of the task head (default: --lr; 5e-4 for spans)")
    p.add_argument("--batch-size", type=int, default=32, help="examples per step")
    p.add_argument("--max-length", type=int, default=256, help="subwords per sequence")
    p.add_argument("--warmup-ratio", type=float, default=0.1,
                   help="share of the steps with a linear warm-up")
    p.add_argument("--weight-decay", type=float, default=0.01, help="AdamW weight decay")
    p.add_argument("--clip-grad", type=float, default=1.0, help="gradient norm clip (0: none)")
    p.add_argument("--freeze", default="none", metavar="{none,embeddings,bottom:K,encoder}",
                   help="what stays fixed: nothing; the embeddings; embeddings + bottom K layers; "
                        "the whole encoder (head only: for very little labelled data)")
    p.add_argument("--eval-every", type=int, default=0, help="steps between dev evaluations (0: each epoch)")
    p.add_argument("--patience", type=int, default=0,
                   help="stop after this many evaluations without dev improvement (0: never)")
    p.add_argument("--seed", type=int, default=0, help="seed of init, shuffling and dropout")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                   help="bf16 autocast: faster on GPUs and on CPUs with native bf16")
    p.add_argument("--train-limit", type=int, default=None, help="random subsample of the training set (default: all of it)")
    p.add_argument("--dropout", type=float, default=0.1, help="dropout in the task head")
    add_resume_arg(p)
    add_progress_args(p)


def _columns(p: argparse.ArgumentParser) -> None:
    p.add_argument("--text-column", default=None,
                   help="name or 0-based index (default: the usual GLUE names; column 0 without a "
                        "header)")
    p.add_argument("--pair-column", default=None,
                   help="pair: name or index of the second text (default: the usual GLUE names; "
                        "column 1 without a header)")
    p.add_argument("--label-column", default=None,
                   help="name or index of the label (default: the usual GLUE names; the column after "
                        "the text(s) without a header)")
    p.add_argument("--no-header", action="store_true", help="the table has no header row")
    p.add_argument("--pool", choices=["cls", "mean"], default="cls",
                   help="classify from the [CLS] vector (default) or the mean of the last layer "
                        "(encoders pretrained without NSP)")


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``finetune``, ``evaluate`` and ``predict`` to the main parser."""
    ft = sub.add_parser("finetune", help="fine-tune an encoder on a task")
    fsub = ft.add_subparsers(dest="task", required=True, metavar="TASK")
    for kind, text in (("classify", "sentence classification from [CLS]"),
                       ("pair", "sentence-pair classification from [CLS]")):
        p = fsub.add_parser(kind, help=text)
        _common(p)
        _columns(p)
        p.set_defaults(func=run_finetune)
    p = fsub.add_parser("tag", help="per-token tagging (BIO NER, POS) from CoNLL / CoNLL-U")
    _common(p)
    p.add_argument("--label-subwords", choices=["all", "first"], default="all",
                   help="train on every sub-word of a word or on its first only")
    p.add_argument("--viterbi", action=argparse.BooleanOptionalAction, default=True,
                   help="BIO-constrained Viterbi decoding (entity tag sets only)")
    p.set_defaults(func=run_finetune)
    p = fsub.add_parser("spans", help="span-based (nested) NER from JSONL spans or CoNLL BIO")
    _common(p)
    p.add_argument("--max-span-length", type=int, default=8, help="words")
    p.add_argument("--span-repr", choices=["boundary", "mean", "attention"], default="attention",
                   help="span vector: end points, mean, or attention-pooled (Lee et al. 2017)")
    p.add_argument("--flat", action="store_true", help="remove overlapping spans (flat NER)")
    p.add_argument("--null-weight", type=float, default=1.0, help="loss weight of NULL spans")
    p.add_argument("--null-sample", type=float, default=1.0,
                   help="fraction of NULL spans kept per training batch")
    p.add_argument("--threshold", type=float, default=None,
                   help="entity when 1 - p(NULL) >= this (default: argmax)")
    p.add_argument("--calibrate", action="store_true",
                   help="after training, pick the NULL threshold with the best dev F1 and save it")
    p.set_defaults(func=run_finetune, head_lr_default=5e-4)
    p = fsub.add_parser("qa", help="extractive question answering from SQuAD-format JSON")
    _common(p)
    p.add_argument("--dev-articles", type=int, default=0,
                   help="hold out the last N articles of --train as the dev split (instead of --dev)")
    p.add_argument("--doc-stride", type=int, default=128,
                   help="tokens shared by consecutive windows of a long context")
    p.add_argument("--max-query-length", type=int, default=64, help="question subwords kept")
    p.add_argument("--max-answer-length", type=int, default=30, help="longest answer, in subwords")
    p.add_argument("--null-threshold", type=float, default=0.0,
                   help="SQuAD v2.0: no answer when the null score beats the best span by more")
    p.add_argument("--calibrate", action="store_true",
                   help="SQuAD v2.0: after training, pick the null threshold with the best dev F1")
    p.set_defaults(func=run_finetune, max_length=384, epochs=2.0)

    p = fsub.add_parser("contrastive", help="sentence embeddings: SimCSE, pairs, NLI triples "
                                             "(in-batch negatives, gradient cache)")
    _common(p)
    _contrastive(p)
    # SimCSE's settings (Gao, Yao & Chen 2021, sec. 3 and appendix A): lr 3e-5, batch 64,
    # 32 tokens, one epoch
    for action in p._actions:
        action.default = {"lr": 3e-5, "batch_size": 64, "max_length": 32,
                          "epochs": 1.0}.get(action.dest, action.default)
    p.set_defaults(func=run_finetune)

    p = sub.add_parser("evaluate", help="metrics of a fine-tuned run on a labelled file")
    p.add_argument("run", help="a fine-tuned run directory")
    p.add_argument("--data", required=True, help="labelled file in the training format")
    p.add_argument("--batch-size", type=int, default=64, help="examples per forward pass")
    p.add_argument("--viterbi", action=argparse.BooleanOptionalAction, default=None,
                   help="tag: BIO-constrained Viterbi or argmax decoding (default: as trained)")
    p.add_argument("--threshold", type=float, default=None,
                   help="spans: entity when 1 - p(NULL) >= this; qa: no answer when the null "
                        "score beats the best span by more (default: the saved one)")
    p.add_argument("--predictions", default=None, metavar="FILE",
                   help="qa: write the answers as {id: text} JSON for the official SQuAD script (default: none)")
    p.add_argument("--json", action="store_true", help="print JSON")
    _backend(p)
    p.set_defaults(func=run_evaluate)

    p = sub.add_parser("predict", help="labels, entities or answers of a fine-tuned run")
    p.add_argument("run", help="a fine-tuned run directory")
    p.add_argument("text", nargs="*", help="sentences, one argument each (not for a qa run)")
    p.add_argument("--pair", action="append", default=None,
                   help="second sentence for a pair run, once per TEXT (default: none)")
    p.add_argument("--question", action="append", default=None, help="qa: a question (default: none)")
    p.add_argument("--context", action="append", default=None,
                   help="qa: the passage to answer from, once per --question (default: none)")
    p.add_argument("--json", action="store_true", help="one JSON line per input")
    _backend(p)
    p.set_defaults(func=run_predict)


def _contrastive(p: argparse.ArgumentParser) -> None:
    """``finetune contrastive``: --train is a sentence, pair/triple or NLI file, or --corpus."""
    train = next(a for a in p._actions if a.dest == "train")
    train.required = False
    train.help = ("sentences (.txt: SimCSE, positive = the same sentence under another dropout "
                  "mask), anchor<TAB>positive[<TAB>negative] pairs (.tsv, .jsonl) or NLI (.csv) "
                  "(default: none; --corpus instead)")
    p.add_argument("--corpus", action="append", default=[], metavar="PATH",
                   help="instead of --train: SimCSE on the sentences of a pretraining corpus "
                        "(files, folders, globs; repeatable)")
    p.add_argument("--max-sentences", type=int, default=100000,
                   help="with --corpus: a uniform sample of this many sentences (5..64 words)")
    p.add_argument("--format", choices=["auto", "sentences", "pairs", "nli"], default="auto",
                   help="of --train/--dev; nli: SNLI/MultiNLI CSV -> (premise, entailment, "
                        "contradiction) triples; auto: by extension (.txt, .tsv/.jsonl, .csv)")
    p.add_argument("--dev-fraction", type=float, default=0.0,
                   help="hold out this seeded share of the training pairs as the dev split "
                        "(instead of --dev)")
    p.add_argument("--pool", choices=["mean", "cls", "max"], default="mean",
                   help="sentence vector from the last layer (unit length)")
    p.add_argument("--temperature", type=float, default=0.05,
                   help="of the InfoNCE softmax (SimCSE's 0.05 = sentence-transformers' scale 20)")
    p.add_argument("--matryoshka", default="", metavar="D,D,..",
                   help="also train the first D dimensions as embeddings, e.g. 256,128,64 "
                        "(default: none)")
    p.add_argument("--chunk", type=int, default=64,
                   help="sentences per forward pass, sorted by length")
    p.add_argument("--grad-cache", action=argparse.BooleanOptionalAction, default=None,
                   help="gradient cache (Gao et al. 2021): memory of one chunk, not of the "
                        "batch (default: when a batch holds more than 4 chunks)")
    p.add_argument("--encoder-dropout", type=float, default=0.1,
                   help="dropout of the encoder while training (SimCSE's positives differ by "
                        "their dropout masks)")


def _matryoshka(spec: str) -> list[int]:
    try:
        return [int(x) for x in spec.split(",") if x.strip()]
    except ValueError:
        raise MaskedLMError(f"--matryoshka {spec!r}: expected sizes like 256,128,64") from None


def _backend(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", choices=["torch", "onnx"], default="torch",
                   help="onnx: run a directory written by `maskedlm export-onnx` from the run, "
                        "with ONNX Runtime")


def _task_options(a: argparse.Namespace) -> dict[str, Any]:
    if a.task in ("classify", "pair"):
        cols = {"text_column": a.text_column, "pair_column": a.pair_column,
                "label_column": a.label_column, "header": not a.no_header}
        return {"columns": {k: v for k, v in cols.items() if v is not None}, "dropout": a.dropout,
                "pool": a.pool}
    if a.task == "tag":
        return {"label_subwords": a.label_subwords, "viterbi": a.viterbi, "dropout": a.dropout}
    if a.task == "contrastive":
        return {"pool": a.pool, "temperature": a.temperature, "matryoshka": _matryoshka(a.matryoshka),
                "chunk": a.chunk, "grad_cache": a.grad_cache, "encoder_dropout": a.encoder_dropout,
                "format": a.format}
    if a.task == "qa":
        return {"doc_stride": a.doc_stride, "max_query_length": a.max_query_length,
                "max_answer_length": a.max_answer_length, "threshold": a.null_threshold}
    return {"max_span_length": a.max_span_length, "span_repr": a.span_repr, "flat": a.flat,
            "null_weight": a.null_weight, "null_sample": a.null_sample,
            "threshold": a.threshold, "dropout": a.dropout}


def run_finetune(a: argparse.Namespace) -> int:
    from maskedlm.tasks.finetune import FinetuneConfig, finetune, make_task

    task = make_task(a.task, **_task_options(a))
    cfg = FinetuneConfig(
        epochs=a.epochs, lr=a.lr, head_lr=a.head_lr or getattr(a, "head_lr_default", None),
        batch_size=a.batch_size, max_length=a.max_length, warmup_ratio=a.warmup_ratio,
        weight_decay=a.weight_decay, clip_grad=a.clip_grad, freeze=a.freeze,
        eval_every=a.eval_every, patience=a.patience, seed=a.seed, train_limit=a.train_limit,
        progress=not a.no_progress, progress_every=a.progress_every, device=a.device,
        precision=a.precision, resume=a.resume, overwrite=a.overwrite)
    train, dev_data = a.train, a.dev
    if getattr(a, "dev_articles", 0):
        train, dev_data = _hold_out_articles(task, a.train, a.dev, a.dev_articles)
    if a.task == "contrastive":
        train, dev_data = _contrastive_data(task, a)
    summary = finetune(task, a.model, train, dev_data, a.out, cfg)
    dev = {k: v for k, v in summary["best"].get("dev", {}).items() if k != "per_type"}
    if getattr(a, "calibrate", False):
        if not dev_data:
            raise MaskedLMError("--calibrate needs --dev")
        dev["calibration"] = _calibrate(a.out, dev_data)
    print(json.dumps({"out": summary["out"], "task": summary["task"], "steps": summary["steps"],
                      "best_step": summary["best"]["step"], "dev": dev,
                      "train_examples_per_s": summary["train_examples_per_s"]}))
    return 0


def _contrastive_data(task: Any, a: argparse.Namespace) -> tuple[Any, Any]:
    """--train or --corpus; --dev or a --dev-fraction held out of the training pairs."""
    import numpy as np

    from maskedlm.tasks.contrastive import corpus_sentences

    if bool(a.train) == bool(a.corpus):
        raise MaskedLMError("finetune contrastive: give --train FILE or --corpus PATH (one of them)")
    rng = np.random.default_rng(a.seed)
    train = task.read(a.train) if a.train else corpus_sentences(a.corpus, a.max_sentences, rng)
    if not a.dev_fraction:
        return train, a.dev
    if a.dev or not 0 < a.dev_fraction < 1:
        raise MaskedLMError("--dev-fraction must be in (0, 1) and excludes --dev")
    order = rng.permutation(len(train))
    n_dev = max(1, int(round(a.dev_fraction * len(train))))
    if n_dev >= len(train):
        raise MaskedLMError(f"--dev-fraction {a.dev_fraction} leaves no training pairs")
    held = set(order[:n_dev].tolist())
    return ([e for i, e in enumerate(train) if i not in held],
            [e for i, e in enumerate(train) if i in held])


def _hold_out_articles(task: Any, train: str, dev: str | None, n: int) -> tuple[list, list]:
    """QA: the last ``n`` articles of ``train`` (in file order) become the dev split."""
    if dev:
        raise MaskedLMError("give --dev or --dev-articles, not both")
    examples = task.read(train)
    titles = list(dict.fromkeys(ex.title for ex in examples))
    if not 0 < n < len(titles):
        raise MaskedLMError(f"--dev-articles {n}: {train} has {len(titles)} articles; "
                            "keep at least one for training")
    held = set(titles[-n:])
    return ([ex for ex in examples if ex.title not in held],
            [ex for ex in examples if ex.title in held])


def _calibrate(run: str, dev: str | list) -> dict[str, Any]:
    """Choose the spans NULL / QA null-score threshold on dev and store it in task.json."""
    from maskedlm.files import atomic_write_text
    from maskedlm.tasks.finetune import TASK_FILE, load_task

    m = load_task(run)
    examples = dev if isinstance(dev, list) else m.task.read(dev)
    result = m.task.calibrate(m.model, examples, m.tokenizer, m.max_length,  # type: ignore[attr-defined]
                              m.batch_size)
    meta_file = m.path / TASK_FILE  # type: ignore[operator]
    meta = json.loads(meta_file.read_text())
    meta["options"]["threshold"] = result["threshold"]
    meta["calibration"] = result
    atomic_write_text(meta_file, json.dumps(meta, indent=2) + "\n")
    return result


def run_evaluate(a: argparse.Namespace) -> int:
    from maskedlm.tasks.finetune import load_task

    m = load_task(a.run, backend=a.backend)
    m.batch_size = a.batch_size
    if a.viterbi is not None and m.task.kind == "tag":
        m.task.viterbi = a.viterbi  # type: ignore[attr-defined]
    if a.threshold is not None:
        if m.task.kind not in ("spans", "qa"):
            raise MaskedLMError(f"--threshold applies to spans and qa runs, {a.run} is {m.task.kind}")
        m.task.threshold = a.threshold  # type: ignore[attr-defined]
    if a.predictions and m.task.kind != "qa":
        raise MaskedLMError(f"--predictions applies to qa runs, {a.run} is {m.task.kind}")
    metrics = m.evaluate(a.data)
    if a.predictions:
        from pathlib import Path

        from maskedlm.files import atomic_write_text
        atomic_write_text(Path(a.predictions), json.dumps(m.task.predictions, indent=1) + "\n")  # type: ignore[attr-defined]
    if a.json:
        print(json.dumps(metrics))
        return 0
    for k, v in metrics.items():
        if k == "per_type":
            for t, row in v.items():
                print(f"  {t:<12} p={row['precision']:.4f} r={row['recall']:.4f} "
                      f"f1={row['f1']:.4f} n={row['support']}")
        else:
            print(f"{k:<13} {v:.4f}" if isinstance(v, float) else f"{k:<13} {v}")
    return 0


def run_predict(a: argparse.Namespace) -> int:
    from maskedlm.tasks.finetune import load_task

    m = load_task(a.run, backend=a.backend)
    inputs: list[Any] = list(a.text)
    if m.task.kind == "qa":
        if a.text or not a.question or not a.context or len(a.question) != len(a.context):
            raise MaskedLMError("predict: a qa run takes --question Q --context C (one --context "
                                "per --question) and no TEXT")
        inputs = list(zip(a.question, a.context, strict=True))
    elif not inputs:
        raise MaskedLMError("predict: give at least one TEXT")
    elif a.question or a.context:
        raise MaskedLMError(f"--question/--context apply to qa runs, {a.run} is {m.task.kind}")
    if m.task.kind == "pair":
        if not a.pair or len(a.pair) != len(a.text):
            raise MaskedLMError("predict: a pair run needs one --pair per TEXT")
        inputs = list(zip(a.text, a.pair, strict=True))
    for x, result in zip(inputs, m.predict_many(inputs), strict=True):
        if a.json:
            print(json.dumps(result))
        elif "answer" in result:
            print(f"{result['answer'] or '(no answer)'}\t{result['score']:.4f}\t{x[0]}")
        elif "label" in result:
            print(f"{result['label']}\t{result['score']:.4f}\t{x}")
        elif "entities" in result:
            ents = ", ".join(f"{e['text']} [{e['label']} {e['score']:.2f}]" for e in result["entities"])
            print(f"{x}\n    -> {ents or '(none)'}")
        else:
            print(" ".join(f"{w}/{t}" for w, t in zip(result["words"], result["tags"], strict=True)))
    return 0
