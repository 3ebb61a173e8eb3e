"""The settings of the two training loops, with their defaults and help (torch-free).

Every default lives here or in :mod:`maskedlm.options`: the command line derives its
flags from these dataclasses (:mod:`maskedlm.cli.args`), so ``maskedlm pretrain`` and
``pretrain(PretrainOptions())`` run the same job. A field whose default depends on
the recipe or the task is ``None`` here; the library fills it
(:class:`maskedlm.options.PretrainOptions`, :func:`FinetuneConfig.for_task`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from maskedlm.errors import MaskedLMError
from maskedlm.progress import DEFAULT_EVERY


def arg(default: Any = dataclasses.MISSING, *, help: str, factory: Any = dataclasses.MISSING,
        **cli: Any) -> Any:
    """A dataclass field with its command-line help (and, in ``cli``, how the flag is
    spelled: ``flag="--pre-ln"``, ``metavar``, ``cli=False`` for no flag), in the manner
    of litgpt's ``TrainArgs``: the help text sits with the default it describes."""
    return dataclasses.field(default=default, default_factory=factory,
                             metadata={"help": help, **cli})


# Sequences per micro-step: far above what any accelerator holds (BERT-large at 512 tokens
# fits ~64 on 80 GB); beyond it building one batch takes minutes of NumPy work.
MAX_BATCH_SIZE = 65536


@dataclass
class TrainConfig:
    """The pretraining loop's optimisation settings. ``None``: the recipe's
    (:func:`maskedlm.options.recipe_defaults`), filled by
    :class:`~maskedlm.options.PretrainOptions` before the loop starts."""

    max_steps: int | None = arg(None, help="optimizer steps (default: 1000, or as many as "
                                "--max-time allows; 1600 for the embedded default job)")
    batch_size: int | None = arg(None, help="sequences per process and micro-step (default: 64 "
                                 "for --recipe budget, 32 otherwise)")
    grad_accum: int = arg(1, help="micro-steps per optimizer step")
    lr: float | None = arg(None, help="peak learning rate (default: 2e-3 for --recipe budget; "
                           "1e-3 for tiny/mini and 5e-4 for larger sizes otherwise; 1e-4 with --init)")
    weight_decay: float = arg(0.01, help="AdamW weight decay")
    # RoBERTa-style linear warmup over 6% of the steps
    warmup_ratio: float = arg(0.06, help="share of the steps with a linear warm-up")
    # "linear": warmup then linear decay to 0 (BERT, RoBERTa). "wsd": warmup, a constant
    # stable phase, then a 1 - sqrt decay over the last ``decay_ratio`` (Hägele et al.
    # 2024, "Scaling Laws and Compute-Optimal Training Beyond Fixed Training Durations";
    # ModernBERT, Ettin).
    schedule: Literal["linear", "wsd"] | None = arg(
        None, help="linear decay, or warmup-stable-decay with a 1-sqrt decay (default: wsd for "
        "--recipe budget, linear otherwise)")
    decay_ratio: float = arg(0.2, help="share of the run the wsd decay takes")
    beta1: float = arg(0.9, help="AdamW beta1", cli=False)
    beta2: float = arg(0.98, help="AdamW beta2 (RoBERTa's: more stable than 0.999 for MLM)",
                       cli=False)
    eps: float = arg(1e-6, help="AdamW epsilon", cli=False)
    clip_grad: float = arg(1.0, help="gradient norm clip (0: none)")
    precision: Literal["fp32", "bf16", "auto"] | None = arg(
        None, help="auto: bf16 where the chip has it natively (default for --recipe budget; "
        "fp32 otherwise)")
    seed: int = arg(0, help="seed of masking, sampling and init")
    log_every: int = arg(10, help="steps between metrics.jsonl lines")
    eval_every: int = arg(0, help="steps between held-out evaluations (0: at every save and "
                          "at the end)")
    save_every: int = arg(0, help="steps between checkpoints (0: at the end only)")
    max_time: float = arg(0.0, help="wall-clock budget in seconds (0: none)")
    progress: bool = arg(True, help="no progress bar or progress lines", flag="--no-progress")
    progress_every: float = arg(DEFAULT_EVERY, metavar="SECONDS",
                                help="when stderr is not a terminal (a log file, CI, a "
                                "scheduler): one plain progress line this often instead of a "
                                "live bar")

    def __post_init__(self) -> None:
        for name in ("max_steps", "batch_size", "grad_accum"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise MaskedLMError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
        if self.lr is not None and not self.lr > 0:
            raise MaskedLMError(f"--lr must be > 0, got {self.lr}")
        if self.schedule not in ("linear", "wsd", None):
            raise MaskedLMError(f"--schedule must be linear or wsd, got {self.schedule!r}")
        if not 0.0 <= self.warmup_ratio < 1.0 or not 0.0 < self.decay_ratio <= 1.0:
            raise MaskedLMError(f"--warmup-ratio must be in [0, 1) and --decay-ratio in (0, 1], "
                                f"got {self.warmup_ratio} and {self.decay_ratio}")
        if self.precision not in ("fp32", "bf16", "auto", None):
            raise MaskedLMError(f"--precision must be fp32, bf16 or auto, got {self.precision!r}")
        if self.progress_every < 0:
            raise MaskedLMError(f"--progress-every must be >= 0 seconds, got {self.progress_every}")
        if not self.max_time >= 0:
            raise MaskedLMError(f"--max-time must be >= 0 seconds, got {self.max_time}")
        if not self.clip_grad >= 0:  # also NaN
            raise MaskedLMError(f"--clip-grad must be >= 0 (0: no clipping), got {self.clip_grad}")
        if self.batch_size is not None and self.batch_size > MAX_BATCH_SIZE:
            raise MaskedLMError(f"--batch-size {self.batch_size} is over {MAX_BATCH_SIZE} sequences "
                                "per micro-step; use --grad-accum for larger batches")

    def unresolved(self) -> list[str]:
        """The fields still ``None`` (the loop needs none of them to be)."""
        return [f for f in ("max_steps", "batch_size", "lr", "schedule", "precision")
                if getattr(self, f) is None]


def parse_freeze(spec: str) -> int | None:
    """Layers to freeze below the top: None = nothing, -1 = embeddings only, K, or 'all'."""
    if spec == "none":
        return None
    if spec == "embeddings":
        return 0
    if spec == "encoder":
        return 10**6
    if spec.startswith("bottom:") and spec[7:].isdigit():
        return int(spec[7:])
    raise MaskedLMError(f"--freeze must be none, embeddings, bottom:K or encoder, got {spec!r}")


# What each fine-tuning task trains with where the config leaves a field None; the rest
# follows Devlin et al. (2019, appendix A.3): AdamW, lr 5e-5 (of {2,3,5}e-5), batch 32,
# linear decay after a 10% warm-up, weight decay 0.01.
FINETUNE_DEFAULTS: dict[str, Any] = {"epochs": 3.0, "lr": 5e-5, "head_lr": None,
                                     "batch_size": 32, "max_length": 256}
TASK_DEFAULTS: dict[str, dict[str, Any]] = {
    # span heads start from scratch and learn faster than the encoder moves
    "spans": {"head_lr": 5e-4},
    # SQuAD: BERT's 384-token windows, two epochs (Devlin et al. 2019, sec. 4.2)
    "qa": {"max_length": 384, "epochs": 2.0},
    # SimCSE (Gao, Yao & Chen 2021, sec. 3 and appendix A): lr 3e-5, batch 64, 32 tokens,
    # one epoch
    "contrastive": {"lr": 3e-5, "batch_size": 64, "max_length": 32, "epochs": 1.0},
}


@dataclass
class FinetuneConfig:
    """The fine-tuning loop's optimisation settings. ``None`` in ``epochs``, ``lr``,
    ``head_lr``, ``batch_size`` and ``max_length``: the task's (:data:`TASK_DEFAULTS`,
    else :data:`FINETUNE_DEFAULTS`), filled by :meth:`for_task`."""

    epochs: float | None = arg(None, help="passes over the training set (default: 3; qa 2; "
                               "contrastive 1)")
    lr: float | None = arg(None, help="peak learning rate of the encoder (default: 5e-5; "
                           "contrastive 3e-5)")
    head_lr: float | None = arg(None, help="learning rate of the task head (default: --lr; "
                                "5e-4 for spans)")
    batch_size: int | None = arg(None, help="examples per step (default: 32; contrastive 64)")
    max_length: int | None = arg(None, help="subwords per sequence (default: 256; qa 384; "
                                 "contrastive 32)")
    warmup_ratio: float = arg(0.1, help="share of the steps with a linear warm-up")
    weight_decay: float = arg(0.01, help="AdamW weight decay")
    clip_grad: float = arg(1.0, help="gradient norm clip (0: none)")
    freeze: str = arg("none", metavar="{none,embeddings,bottom:K,encoder}",
                      help="what stays fixed: nothing; the embeddings; embeddings + bottom K "
                      "layers; the whole encoder (head only: for very little labelled data)")
    eval_every: int = arg(0, help="steps between dev evaluations (0: each epoch)")
    patience: int = arg(0, help="stop after this many evaluations without dev improvement "
                        "(0: never)")
    eval_batch_size: int = arg(64, help="examples per forward pass when evaluating", cli=False)
    seed: int = arg(0, help="seed of init, shuffling and dropout")
    train_limit: int | None = arg(None, help="random subsample of the training set (default: "
                                  "all of it)")
    progress: bool = arg(True, help="no progress bar or progress lines", flag="--no-progress")
    progress_every: float = arg(DEFAULT_EVERY, metavar="SECONDS",
                                help="when stderr is not a terminal (a log file, CI, a "
                                "scheduler): one plain progress line this often instead of a "
                                "live bar")
    device: str = arg("cpu", help="cpu or cuda")
    precision: Literal["fp32", "bf16"] = arg(
        "fp32", help="bf16 autocast: faster on GPUs and on CPUs with native bf16")
    # continue from OUT/training_state.pt (left by a stopped run); "auto": when there is one
    resume: bool | Literal["auto"] = arg(
        False, optional_value="auto", metavar="auto",
        help="continue the run in --out (a stopped run exits with code 75); --resume auto: "
        "continue if --out holds one, else start fresh, so that a scheduler or torchrun "
        "--max-restarts can rerun the same command")
    overwrite: bool = arg(False, help="write into an --out that exists but is not a fine-tuning "
                          "run made by maskedlm (a run of another kind, an input or a file "
                          "never is replaced; docs/reliability.md)")

    def __post_init__(self) -> None:
        if self.precision not in ("fp32", "bf16"):
            raise MaskedLMError(f"--precision must be fp32 or bf16, got {self.precision!r}")
        for name in ("epochs", "lr", "batch_size", "max_length", "eval_batch_size"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise MaskedLMError(f"--{name.replace('_', '-')} must be positive, got {value}")
        if self.progress_every < 0:
            raise MaskedLMError(f"--progress-every must be >= 0 seconds, got {self.progress_every}")
        if self.max_length is not None and self.max_length < 4:
            raise MaskedLMError(f"--max-length {self.max_length} leaves no room for text")
        if not self.clip_grad >= 0:  # also NaN
            raise MaskedLMError(f"--clip-grad must be >= 0 (0: no clipping), got {self.clip_grad}")
        if max(self.batch_size or 0, self.eval_batch_size) > MAX_BATCH_SIZE:
            raise MaskedLMError(f"--batch-size must be at most {MAX_BATCH_SIZE} examples per step, "
                                f"got {max(self.batch_size or 0, self.eval_batch_size)}")
        parse_freeze(self.freeze)

    def for_task(self, kind: str) -> FinetuneConfig:
        """A copy with every ``None`` filled with the task's default.

        >>> c = FinetuneConfig(lr=1e-4).for_task("qa"); c.lr, c.max_length, c.epochs
        (0.0001, 384, 2.0)
        """
        filled = {**FINETUNE_DEFAULTS, **TASK_DEFAULTS.get(kind, {})}
        return dataclasses.replace(self, **{k: v for k, v in filled.items()
                                            if getattr(self, k) is None})
