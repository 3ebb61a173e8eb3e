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

from maskedlm.cli.args import add_fields, from_args
from maskedlm.errors import MaskedLMError


def _common(p: argparse.ArgumentParser) -> None:
    from maskedlm.training.config import FinetuneConfig

    p.add_argument("--model", required=True, help="our checkpoint/run or a Hugging Face BERT dir")
    p.add_argument("--train", required=True, help="labelled training file (the task's format)")
    p.add_argument("--dev",
                   help="labelled dev file for evaluation and early stopping "
                        "(default: none; the last step is kept)")
    p.add_argument("--out", required=True, help="run directory to write")
    add_fields(p, FinetuneConfig)


def _columns(p: argparse.ArgumentParser) -> None:
    p.add_argument("--text-column",
                   help="name or 0-based index (default: the usual GLUE names; column 0 without a "
                        "header)")
    p.add_argument("--pair-column",
                   help="pair: name or index of the second text (default: the usual GLUE names; "
                        "column 1 without a header)")
    p.add_argument("--label-column",
                   help="name or index of the label (default: the usual GLUE names; the column after "
                        "the text(s) without a header)")
    p.add_argument("--no-header", action="store_true", help="the table has no header row")


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``finetune``, ``evaluate`` and ``predict`` to the main parser."""
    from maskedlm import options

    ft = sub.add_parser("finetune", help="fine-tune an encoder on a task")
    fsub = ft.add_subparsers(dest="task", required=True, metavar="TASK")
    for kind, text in (("classify", "sentence classification from [CLS]"),
                       ("pair", "sentence-pair classification from [CLS]")):
        p = fsub.add_parser(kind, help=text)
        _common(p)
        _task_args(p, kind)
        _columns(p)
        p.set_defaults(func=run_finetune)
    p = fsub.add_parser("tag", help="per-token tagging (BIO NER, POS) from CoNLL / CoNLL-U")
    _common(p)
    _task_args(p, "tag")
    p.set_defaults(func=run_finetune)
    p = fsub.add_parser("spans", help="span-based (nested) NER from JSONL spans or CoNLL BIO")
    _common(p)
    _task_args(p, "spans")
    p.add_argument("--calibrate", action="store_true",
                   help="after training, pick the NULL threshold with the best dev F1 and save it")
    p.set_defaults(func=run_finetune)
    p = fsub.add_parser("qa", help="extractive question answering from SQuAD-format JSON")
    _common(p)
    add_fields(p, options.QAData)
    _task_args(p, "qa")
    p.add_argument("--calibrate", action="store_true",
                   help="SQuAD v2.0: after training, pick the null threshold with the best dev F1")
    p.set_defaults(func=run_finetune)

    p = fsub.add_parser("contrastive", help="sentence embeddings: SimCSE, pairs, NLI triples "
                                             "(in-batch negatives, gradient cache)")
    _common(p)
    _contrastive(p)
    p.set_defaults(func=run_finetune)

    p = sub.add_parser("evaluate", help="metrics of a fine-tuned run on a labelled file")
    p.add_argument("run", help="a fine-tuned run directory")
    p.add_argument("--data", required=True, help="labelled file in the training format")
    add_fields(p, options.EvaluateOptions)
    p.add_argument("--json", action="store_true", help="print JSON")
    _backend(p)
    p.set_defaults(func=run_evaluate)

    p = sub.add_parser("predict", help="labels, entities or answers of a fine-tuned run")
    p.add_argument("run", help="a fine-tuned run directory")
    p.add_argument("text", nargs="*", help="sentences, one argument each (not for a qa run)")
    p.add_argument("--pair", action="append",
                   help="second sentence for a pair run, once per TEXT (default: none)")
    p.add_argument("--question", action="append", help="qa: a question (default: none)")
    p.add_argument("--context", action="append",
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
    from maskedlm.options import ContrastiveData

    add_fields(p, ContrastiveData)
    _task_args(p, "contrastive")


def _task_args(p: argparse.ArgumentParser, kind: str) -> None:
    """The task's own options (``maskedlm.options.TASK_OPTIONS``), one flag per field."""
    from maskedlm.options import TASK_OPTIONS

    add_fields(p, TASK_OPTIONS[kind])


def _backend(p: argparse.ArgumentParser) -> None:
    from maskedlm.options import RunOptions

    add_fields(p, RunOptions, ["backend"])


def task_options(a: argparse.Namespace) -> dict[str, Any]:
    """The task's options from its flags, as ``make_task`` takes them."""
    import dataclasses

    from maskedlm.options import TASK_OPTIONS

    options = dataclasses.asdict(from_args(TASK_OPTIONS[a.task], a))
    if a.task in ("classify", "pair"):
        cols = {"text_column": a.text_column, "pair_column": a.pair_column,
                "label_column": a.label_column, "header": False if a.no_header else None}
        options["columns"] = {k: v for k, v in cols.items() if v is not None}
    if a.task == "contrastive":
        from maskedlm.tasks.contrastive import parse_matryoshka

        options["matryoshka"] = parse_matryoshka(options["matryoshka"])
    return options


def run_finetune(a: argparse.Namespace) -> int:
    from maskedlm.tasks.finetune import calibrate, finetune, make_task
    from maskedlm.training.config import FinetuneConfig

    task = make_task(a.task, **task_options(a))
    cfg = from_args(FinetuneConfig, a)
    train, dev_data = a.train, a.dev
    if getattr(a, "dev_articles", 0):
        from maskedlm.tasks.qa import hold_out_articles

        if a.dev:
            raise MaskedLMError("give --dev or --dev-articles, not both")
        train, dev_data = hold_out_articles(task.read(a.train), a.dev_articles, a.train)
    if a.task == "contrastive":
        from maskedlm.tasks.contrastive import training_pairs

        train, dev_data = training_pairs(task, a.train, a.corpus, a.dev, a.dev_fraction,
                                         a.max_sentences, a.seed)
    summary = finetune(task, a.model, train, dev_data, a.out, cfg)
    if summary["best"] is None:  # another rank of a torchrun job: rank 0 reports
        return 0
    dev = {k: v for k, v in summary["best"].get("dev", {}).items() if k != "per_type"}
    if getattr(a, "calibrate", False):
        if not dev_data:
            raise MaskedLMError("--calibrate needs --dev")
        dev["calibration"] = calibrate(a.out, dev_data)
    print(json.dumps({"out": summary["out"], "task": summary["task"], "steps": summary["steps"],
                      "best_step": summary["best"]["step"], "dev": dev,
                      "train_examples_per_s": summary["train_examples_per_s"]}))
    return 0


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
