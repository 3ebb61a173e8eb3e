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
    from maskedlm.cli.tasks import _task_options
    from maskedlm.tasks.finetune import make_task

    required = ["--model", "m", "--out", "o"] + ([] if kind == "contrastive" else ["--train", "t"])
    a = build_parser().parse_args(["finetune", kind, *required])
    assert make_task(kind, **_task_options(a)).options() == make_task(kind).options()
