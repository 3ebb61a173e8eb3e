"""The library owns every default: ``maskedlm pretrain`` / ``finetune`` and the Python
options they build run the same job (issue #29)."""

from __future__ import annotations

import dataclasses

import pytest

from maskedlm.cli import build_parser
from maskedlm.cli.args import from_args
from maskedlm.options import DEFAULT_JOB_STEPS, UNBOUNDED_STEPS, PretrainOptions
from maskedlm.training.config import TASK_DEFAULTS, FinetuneConfig, TrainConfig

RECIPES = ("budget", "bert", "roberta", "spanbert")


def from_cli(*argv: str) -> PretrainOptions:
    a = build_parser().parse_args(["pretrain", *argv])
    return from_args(PretrainOptions, a, train=from_args(TrainConfig, a))


def resolved(o: PretrainOptions) -> dict:
    return dataclasses.asdict(o)


@pytest.mark.parametrize("recipe", RECIPES)
@pytest.mark.parametrize("init", [None, "runs/some-checkpoint"])
@pytest.mark.parametrize("size", ["tiny", "base"])
def test_the_command_line_and_python_resolve_the_same_job(recipe, init, size):
    argv = ["--recipe", recipe, "--size", size] + (["--init", init] if init else [])
    cli = from_cli(*argv)
    lib = PretrainOptions(recipe=recipe, size=size, init=init)
    assert resolved(cli) == resolved(lib)
    # and the recipe's settings are really filled (not left None for a later layer)
    assert None not in (lib.train.lr, lib.train.batch_size, lib.train.schedule,
                        lib.train.precision, lib.train.max_steps, lib.vocab_size)


def test_the_default_job_and_a_time_budget_resolve_the_same_way():
    assert resolved(from_cli()) == resolved(PretrainOptions())
    assert PretrainOptions().train.max_steps == DEFAULT_JOB_STEPS
    assert PretrainOptions().vocab_size == 8000
    timed = from_cli("--data", "shards", "--max-time", "60")
    assert resolved(timed) == resolved(PretrainOptions(data="shards", train=TrainConfig(max_time=60)))
    assert timed.train.max_steps == UNBOUNDED_STEPS and timed.vocab_size == 30000


def test_recipe_settings_differ_by_recipe_and_a_flag_wins():
    budget, bert = PretrainOptions(recipe="budget"), PretrainOptions(recipe="bert")
    assert (budget.train.lr, budget.train.schedule, budget.train.batch_size) == (2e-3, "wsd", 64)
    assert (bert.train.lr, bert.train.schedule, bert.pre_layer_norm) == (1e-3, "linear", False)
    assert PretrainOptions(init="x").train.lr == 1e-4
    given = from_cli("--recipe", "bert", "--lr", "3e-4", "--schedule", "wsd", "--pre-ln")
    assert (given.train.lr, given.train.schedule, given.pre_layer_norm) == (3e-4, "wsd", True)


def test_the_callers_train_config_is_not_changed():
    tc = TrainConfig()
    PretrainOptions(recipe="bert", train=tc)
    assert tc.lr is None and tc.schedule is None  # a second recipe can use the same one
    assert PretrainOptions(recipe="budget", train=tc).train.lr == 2e-3


def test_every_pretrain_flag_is_a_field_with_the_fields_default():
    """No flag of `pretrain` carries a default of its own: each is a field of the options."""
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices["pretrain"]
    fields = {f.name: f for cls in (PretrainOptions, TrainConfig) for f in dataclasses.fields(cls)}
    for action in sub._actions:
        if action.dest in ("help",):
            continue
        assert action.dest in fields, f"--{action.dest} is not an option field"
        f = fields[action.dest]
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        assert action.default == default, action.dest


@pytest.mark.parametrize("kind", ["classify", "pair", "tag", "spans", "qa", "contrastive"])
def test_finetune_flags_and_python_resolve_the_same_config(kind):
    required = ["--model", "m", "--out", "o"] + ([] if kind == "contrastive" else ["--train", "t"])
    a = build_parser().parse_args(["finetune", kind, *required])
    cli = from_args(FinetuneConfig, a).for_task(kind)
    lib = FinetuneConfig().for_task(kind)
    assert cli == lib
    for name, value in TASK_DEFAULTS.get(kind, {}).items():
        assert getattr(lib, name) == value
    assert lib.lr is not None and lib.max_length is not None and lib.epochs is not None


@pytest.mark.parametrize("kind", ["classify", "pair", "tag", "spans", "qa", "contrastive"])
def test_task_flags_and_python_make_the_same_task(kind):
    """The task classes take their defaults from maskedlm.options, as the flags do."""
    from maskedlm.cli.tasks import task_options
    from maskedlm.tasks.finetune import make_task

    required = ["--model", "m", "--out", "o"] + ([] if kind == "contrastive" else ["--train", "t"])
    a = build_parser().parse_args(["finetune", kind, *required])
    assert make_task(kind, **task_options(a)).options() == make_task(kind).options()


# ----------------------------------------------------------------------------- every command
def _option_fields() -> dict[str, list]:
    """Every option field of the library, by name: the defaults a flag may carry."""
    from maskedlm import options

    classes = [c for c in vars(options).values()
               if isinstance(c, type) and dataclasses.is_dataclass(c)]
    fields: dict[str, list] = {}
    for cls in (*classes, TrainConfig, FinetuneConfig):
        for f in dataclasses.fields(cls):
            d = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            fields.setdefault(f.name, []).append(d)
    return fields


def test_no_flag_of_any_command_carries_a_default_of_its_own():
    """A flag whose default is a value (not None, off or empty) is an option field with
    that default: the command line writes no default the library does not own."""
    import argparse

    from maskedlm.cli import iter_parsers

    fields = _option_fields()
    own = []
    for p in iter_parsers(build_parser()):
        for a in p._actions:
            if isinstance(a, (argparse._HelpAction, argparse._VersionAction,
                              argparse._SubParsersAction)):
                continue
            if a.default is None or a.default is False or a.default == []:
                continue  # no value: "not given", a switch that is off, nothing repeated
            if a.default not in fields.get(a.dest, []):
                own.append(f"{p.prog} {'/'.join(a.option_strings)} = {a.default!r}")
    assert not own, "\n".join(own)


def _defaults(argv: list[str]) -> dict:
    return vars(build_parser().parse_args(argv))


LIB = [  # (command line, library function, parameters it shares with the flags)
    (["anisotropy", "m", "--corpus", "c"], "maskedlm.embeddings.pooling:corpus_anisotropy",
     ["pairs", "max_sentences", "seed", "layers", "pool"]),
    (["standardize", "fit", "m", "--corpus", "c", "--out", "o"],
     "maskedlm.embeddings.pooling:fit_corpus_standardizer", ["max_sentences", "seed", "layers", "pool"]),
    (["similarity", "words", "m", "--pairs", "p", "--corpus", "c"],
     "maskedlm.embeddings.similarity:type_vectors", ["max_occurrences", "layers", "pool"]),
    (["wsd", "train", "m", "--semcor", "s", "--wordnet", "w", "--out", "o"],
     "maskedlm.embeddings.wsd:train_from_semcor", ["max_sentences", "layers", "pool"]),
    (["plot-senses", "m", "--word", "w", "--out", "o.png"], "maskedlm.embeddings.plots:plot_word_senses",
     ["max_instances", "clusters", "projection", "seed", "layers"]),
    (["embed", "m", "--input", "i", "--out", "o.npy"], "maskedlm.embeddings.embed:embed_to_file",
     ["unit", "pool", "layers", "pretokenized"]),
    (["fill-mask", "m", "x"], "maskedlm.api:MaskedLM.fill_mask", ["top_k"]),
    (["export-st", "m", "o"], "maskedlm.export:export_st", ["pool", "normalize"]),
    (["export-onnx", "m", "o"], "maskedlm.export:export_onnx", ["quantize"]),
    (["evaluate", "r", "--data", "d"], "maskedlm.tasks.finetune:load_task", ["backend"]),
    (["evaluate", "r", "--data", "d"], "maskedlm.tasks.finetune:TaskPredictor.__init__", ["batch_size"]),
    (["embed", "m", "--input", "i", "--out", "o.npy"], "maskedlm.api:load", ["backend", "device"]),
    (["tokenizer", "train", "--corpus", "c", "--out", "o"], "maskedlm.data.tokenizer:train_tokenizer",
     ["vocab_size"]),
    (["prepare", "--corpus", "c", "--tokenizer", "t", "--out", "o"],
     "maskedlm.data.shards:prepare_shards", ["seed", "alpha", "text_field", "workers", "one_doc_per_line"]),
    (["mask-preview", "--data", "d"], "maskedlm.data.preview:mask_preview",
     ["n", "sequences", "seq_len", "seed", "whole_word"]),
    (["scorecard", "m"], "maskedlm.scorecard:scorecard",
     ["tasks", "quick", "data_root", "out", "progress", "limit", "device", "random_init"]),
]


@pytest.mark.parametrize("argv, target, names", LIB, ids=[f"{x[1]}" for x in LIB])
def test_the_library_function_defaults_to_what_the_command_does(argv, target, names):
    """Called from Python without the options, the function does what the command does."""
    import importlib
    import inspect

    module, _, attr = target.partition(":")
    obj = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    params = inspect.signature(obj).parameters
    flags = _defaults(argv)
    for name in names:
        assert params[name].default == flags[name], f"{target}({name}=...) vs the flag"
