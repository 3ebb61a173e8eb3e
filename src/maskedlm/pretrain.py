"""The pretraining recipe: corpus -> tokenizer -> shards -> instances -> masking -> loop.

Three recipes exact to their papers, and one for small budgets (the default):

* ``bert``: sentence pairs with next sentence prediction, token (or whole-word) MLM;
* ``roberta``: full sentences packed across documents, dynamic token masking, no NSP;
* ``spanbert``: single contiguous segments within documents, span masking + SBO;
* ``budget``: ``roberta``'s data and objective trained the way the 2022-25 encoders get
  the most from little compute (:data:`BUDGET_TRAINING`, docs/results/budget-recipe.md has the
  ablation that chose each part).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from maskedlm.checkpoint import (
    CHECKPOINT_SUBDIR,
    TRAINING_STATE_NAME,
    is_rtd_checkpoint,
    load_model,
    load_rtd_model,
    load_training_state,
    read_config,
    resolve_checkpoint_dir,
    save_checkpoint,
)
from maskedlm.data.batches import PretrainBatches
from maskedlm.data.instances import SEQUENCES
from maskedlm.data.masking import MaskingConfig, recipe_masking
from maskedlm.data.shards import ShardSet
from maskedlm.data.tokenizer import Tokenizer
from maskedlm.errors import MaskedLMError
from maskedlm.files import (
    RunLock,
    atomic_save_figure,
    atomic_write_text,
    clean_stale_temps,
    recover_interrupted_swap,
)
from maskedlm.models.config import ModelConfig
from maskedlm.models.heads import BertForPreTraining
from maskedlm.models.rtd import RtdForPreTraining, generator_config
from maskedlm.options import PretrainOptions
from maskedlm.training.dist import DistInfo
from maskedlm.training.loop import train
from maskedlm.training.precision import resolve_precision
from maskedlm.training.signals import RaiseOnSignal


def masking_config(opts: PretrainOptions, for_eval: bool = False) -> MaskingConfig:
    """The recipe's masking scheme with the user's overrides.

    ``for_eval``: the scheme at the standard 15% with 80/10/10 replacement, so that held-out
    accuracy compares across runs trained with other masking rates (the rate changes the
    task: more masks, less context)."""
    recipe = SEQUENCES[opts.recipe] if for_eval else opts.recipe  # budget evaluates as roberta
    return recipe_masking(recipe, whole_word=opts.whole_word, budget=opts.masking_budget,
                          random_source=opts.random_source, merge_spans=opts.merge_spans,
                          mask_rate=None if for_eval else opts.mask_rate,
                          mask_replace=None if for_eval else opts.mask_replace)


def resolve_data(opts: PretrainOptions, di: DistInfo) -> ShardSet:
    """Shards from --data, or from --corpus (training a tokenizer if none is given),
    or from the embedded default corpus (the standard library's docstrings)."""
    from maskedlm.data.corpus import parse_corpus_args, write_stdlib_corpus
    from maskedlm.data.shards import prepare_shards
    from maskedlm.data.tokenizer import train_tokenizer

    if opts.data:
        return ShardSet.load(opts.data)
    out = Path(opts.out)
    work = out / "data"
    if opts.corpus:
        corpus = parse_corpus_args(opts.corpus)
    else:
        path = write_stdlib_corpus(work / "stdlib_docstrings.txt")
        corpus = {"": [str(path)]}
    tok_dir = opts.tokenizer or (opts.init and str(resolve_checkpoint_dir(opts.init)))
    if not tok_dir:
        tok_dir = str(work / "tokenizer")
        if di.is_main and not (Path(tok_dir) / "tokenizer.json").is_file():
            from maskedlm.data.corpus import iter_corpus_documents
            tok = train_tokenizer(lambda: iter_corpus_documents(corpus, alpha=opts.alpha,
                                                                seed=opts.train.seed,
                                                                text_field=opts.text_field),
                                  vocab_size=opts.vocab_size, lowercase=opts.uncased,
                                  show_progress=opts.train.progress)
            tok.save(tok_dir)
    _barrier(di)
    if di.is_main:
        prepare_shards(corpus, tok_dir, work / "shards", one_doc_per_line=opts.one_doc_per_line,
                       text_field=opts.text_field,
                       alpha=opts.alpha, seed=opts.train.seed, show_progress=opts.train.progress)
    _barrier(di)
    return ShardSet.load(work / "shards")


def _barrier(di: DistInfo) -> None:
    if di.world_size > 1:
        torch.distributed.barrier()


def build_rtd_model(opts: PretrainOptions, tokenizer: Tokenizer, resume_dir: Path | None
                    ) -> RtdForPreTraining:
    """Generator + discriminator for ``--objective rtd``: fresh, resumed, or with the
    discriminator's encoder from ``--init`` (the generator then starts fresh)."""
    if resume_dir is not None:
        if not is_rtd_checkpoint(resume_dir):
            raise MaskedLMError(f"{resume_dir}: --objective rtd cannot resume a run trained with "
                                "another objective (no generator in the checkpoint)")
        overrides = ({} if opts.dropout is None else
                     {"hidden_dropout_prob": opts.dropout, "attention_probs_dropout_prob": opts.dropout})
        return load_rtd_model(resume_dir, config_overrides=overrides)[0]
    plain = build_model(dataclasses.replace(opts, recipe="roberta", objective="mlm"), tokenizer, None)
    config = plain.config
    model = RtdForPreTraining(config, generator_config(config, opts.generator_scale), opts.rtd_weight)
    if opts.init:  # the encoder of --init; the generator and the RTD head start fresh
        model.bert.load_state_dict(plain.bert.state_dict())
    return model


def build_model(opts: PretrainOptions, tokenizer: Tokenizer, resume_dir: Path | None
                ) -> BertForPreTraining:
    nsp, sbo = opts.recipe == "bert", opts.recipe == "spanbert"
    overrides: dict[str, Any] = {}
    arch = opts.arch or "bert"
    if opts.dropout is not None:
        overrides = {"hidden_dropout_prob": opts.dropout, "attention_probs_dropout_prob": opts.dropout}
    if resume_dir is not None:
        model, _ = load_model(resume_dir, nsp_head=nsp, sbo_head=sbo, config_overrides=overrides)
    elif opts.init:
        model, _ = load_model(opts.init, nsp_head=nsp, sbo_head=sbo, config_overrides=overrides)
        if opts.arch is not None and opts.arch != model.config.arch:
            raise MaskedLMError(f"--arch {opts.arch}: --init {opts.init} is a {model.config.arch} "
                                "encoder (leave --arch out to continue it)")
        if opts.size != "tiny":
            print(f"note: --size {opts.size} ignored; --init {opts.init} fixes the architecture",
                  file=sys.stderr)
    else:
        if opts.pre_layer_norm is not None and arch == "bert":
            overrides["pre_layer_norm"] = opts.pre_layer_norm
        config = ModelConfig.from_name(opts.size, arch=arch, vocab_size=tokenizer.vocab_size,
                                       pad_token_id=tokenizer.pad_id, nsp_head=nsp, sbo_head=sbo,
                                       max_position_embeddings=max(512, opts.seq_len), **overrides)
        model = BertForPreTraining(config)
    if model.config.vocab_size != tokenizer.vocab_size:
        raise MaskedLMError(f"tokenizer has {tokenizer.vocab_size} tokens but the model's embedding "
                            f"table has {model.config.vocab_size}")
    if opts.seq_len > model.config.max_position_embeddings:
        raise MaskedLMError(f"--seq-len {opts.seq_len} exceeds the model's position table "
                            f"({model.config.max_position_embeddings})")
    return model


def pretrain(opts: PretrainOptions) -> dict[str, Any]:
    """Run a pretraining job; returns the last log record (with eval metrics).

    >>> pretrain(PretrainOptions(recipe="spanbert", data="shards/", out="runs/x"))  # doctest: +SKIP
    """
    di = DistInfo.from_env(opts.device)
    opts.train.precision = resolve_precision(opts.train.precision, di.device)  # type: ignore[assignment]
    corpus_paths = [c.split("=", 1)[1] if "=" in c and not Path(c).exists() else c
                    for c in opts.corpus]
    lock = RunLock(opts.out, purpose="pretrain", overwrite=opts.overwrite, whole=False,
                   inputs=[opts.data, opts.init, opts.tokenizer, *corpus_paths])
    early = RaiseOnSignal("it came before the first training step")
    try:
        with early, lock if di.is_main else nullcontext():  # rank 0 writes for the job
            with ReplacedRun(Path(opts.out), active=di.is_main and not opts.resume) as replaced:
                return _pretrain(opts, di, replaced, early)
    finally:
        di.close()


# What a fresh start moves aside in a directory holding an earlier run; put back if the new
# run fails before its first checkpoint, removed once it has one. (The checkpoint itself
# stays in place, loadable: the first save swaps it atomically.)
RUN_FILES = ("run.json", "metrics.jsonl", "curves.png", "tb")
REPLACED_DIR = ".replaced-run"


class ReplacedRun:
    """A fresh start in a directory that holds a run replaces it only once the new run has
    a checkpoint: until then the earlier run's log, record and curves wait in
    ``OUT/.replaced-run/`` (its checkpoint stays where it is) and go back if the new run
    fails or is stopped (or, after a kill -9, on the next start)."""

    def __init__(self, out: Path, active: bool) -> None:
        self.out, self.active = out, active
        self.stash = out / REPLACED_DIR

    def __enter__(self) -> ReplacedRun:
        self.restore()  # a killed restart's stash, if the new run never got a checkpoint
        if self.active and (self.out / CHECKPOINT_SUBDIR).is_dir():
            print(f"note: {self.out} already holds a run; it is replaced once the new run saves "
                  "its first checkpoint (use --resume to continue it instead)", file=sys.stderr)
            self.stash.mkdir(exist_ok=True)
            for name in RUN_FILES:
                if (self.out / name).exists():
                    (self.out / name).rename(self.stash / name)
        return self

    def committed(self) -> None:
        """The new run has a checkpoint: the earlier one goes for good."""
        if self.stash.exists():
            shutil.rmtree(self.stash, ignore_errors=True)

    def restore(self) -> None:
        if not self.stash.is_dir():  # none, or the new run got its checkpoint
            return
        for p in self.stash.iterdir():
            dst = self.out / p.name
            if dst.is_dir() and not dst.is_symlink():
                shutil.rmtree(dst)
            elif dst.exists() or dst.is_symlink():
                dst.unlink()
            p.rename(dst)
        self.stash.rmdir()

    def __exit__(self, *exc: Any) -> None:
        if self.active:
            self.restore()


def _pretrain(opts: PretrainOptions, di: DistInfo, replaced: ReplacedRun | None = None,
              early: RaiseOnSignal | None = None) -> dict[str, Any]:
    out = Path(opts.out)
    ckpt_dir = out / CHECKPOINT_SUBDIR
    resume_state, resume_dir = None, None
    recover_interrupted_swap(ckpt_dir)
    clean_stale_temps(ckpt_dir)  # what a run killed mid-save left
    if opts.init:  # the wrong kind of directory fails here, before its tokenizer is looked for
        read_config(resolve_checkpoint_dir(opts.init))
    if opts.resume == "auto":  # the same command line for a first start and a restart
        opts.resume = (ckpt_dir / TRAINING_STATE_NAME).is_file()
        if di.is_main:
            what = f"resuming from {ckpt_dir}" if opts.resume else f"no checkpoint in {out}, starting fresh"
            print(f"note: --resume auto: {what}", file=sys.stderr)
    if opts.resume:
        if not (ckpt_dir / "config.json").is_file():
            raise MaskedLMError(f"{out}: --resume given but there is no checkpoint to resume from")
        resume_dir = ckpt_dir
        resume_state = load_training_state(ckpt_dir)
        if resume_state is None:
            raise MaskedLMError(f"{ckpt_dir}: checkpoint has no training state to resume from")
    t0 = time.perf_counter()
    shards = resolve_data(opts, di)
    tokenizer = Tokenizer.load(resume_dir) if resume_dir else shards.tokenizer()
    if resume_state is not None:
        check_resume(out, opts, resume_state, tokenizer, shards.tokenizer())
    if opts.init and not opts.resume:
        init_tok = Tokenizer.load(resolve_checkpoint_dir(opts.init))
        if init_tok.fingerprint() != tokenizer.fingerprint():
            raise MaskedLMError(f"{opts.data or 'shards'}: prepared with a different tokenizer than "
                                f"--init {opts.init}; prepare them with --tokenizer {opts.init}")
    torch.manual_seed(opts.train.seed)
    model: BertForPreTraining | RtdForPreTraining = (
        build_rtd_model(opts, tokenizer, resume_dir) if opts.objective == "rtd"
        else build_model(opts, tokenizer, resume_dir))
    masking = masking_config(opts)
    source = PretrainBatches(shards, opts.recipe, opts.seq_len, masking, tokenizer,
                             opts.train.batch_size, opts.train.grad_accum, opts.train.seed, di,
                             opts.eval_sequences, masking_config(opts, for_eval=True),
                             pack=model.config.arch == "modernbert")
    if di.is_main:
        out.mkdir(parents=True, exist_ok=True)
        run_info = {"options": _jsonable(asdict(opts)), "masking": asdict(masking),
                    "model": model.config.to_dict(), "world_size": di.world_size,
                    "data": str(shards.path), "languages": shards.meta.get("languages"),
                    "parameters": sum(p.numel() for p in model.parameters())}
        atomic_write_text(out / "run.json", json.dumps(run_info, indent=2, default=str) + "\n")
        print(f"pretrain: recipe {opts.recipe}, objective {opts.objective}, {run_info['parameters'] / 1e6:.1f}M parameters, "
              f"{source.epoch_len} sequences of <= {opts.seq_len} tokens, "
              f"world size {di.world_size}, data ready in {time.perf_counter() - t0:.1f}s",
              file=sys.stderr)
        langs = (shards.meta.get("languages") or {}).get("languages", {})
        if len(langs) > 1:
            print("languages (p = share of sentences, q = sampling share, alpha "
                  f"{shards.meta['languages'].get('alpha')}): "
                  + ", ".join(f"{k} p={v['p']:.3f} q={v['q']:.3f}" for k, v in langs.items()),
                  file=sys.stderr)

    def save(m: torch.nn.Module, state: dict[str, Any]) -> Path:
        where = save_checkpoint(ckpt_dir, m, tokenizer, training_state=state, purpose=None,
                                extra_files={"masking.json": json.dumps(asdict(masking), indent=2)})
        if replaced is not None:
            replaced.committed()
        return where

    if early is not None:
        early.release()  # the loop's StopSignals take over: stop after a step, with a checkpoint
    record = train(model, source, opts.train, out, save, di, resume_state)
    if di.is_main:
        plot_curves(out / "metrics.jsonl", out / "curves.png")
    if di.world_size > 1:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return record


# What a resumed run must share with the run it continues (run.json "options" keys).
RESUME_MUST_MATCH = ("recipe", "arch", "size", "seq_len", "init")


def check_resume(out: Path, opts: PretrainOptions, state: dict[str, Any], run_tok: Tokenizer,
                 data_tok: Tokenizer) -> None:
    """One line naming the first difference between the run in ``out`` and the one asked
    for: the recipe, the architecture, the tokenizer the data was prepared with, or a
    ``--max-steps`` below the step already reached."""
    try:
        before = json.loads((out / "run.json").read_text(encoding="utf-8")).get("options", {})
    except (OSError, ValueError, RecursionError, AttributeError):
        before = {}  # a run killed before it wrote run.json: the checkpoint alone is checked
    now = _jsonable(asdict(opts))
    for key in RESUME_MUST_MATCH:
        if key in before and before[key] != now.get(key) and not (key == "size" and opts.init):
            flag = "--" + key.replace("_", "-")
            raise MaskedLMError(f"{out}: --resume with {flag} {now.get(key)}, but the run was "
                                f"started with {flag} {before[key]}; give the same value, or a "
                                "new --out to start another run")
    if run_tok.fingerprint() != data_tok.fingerprint():
        raise MaskedLMError(f"{out}: --resume with data prepared by another tokenizer than the "
                            f"run's ({opts.data or 'shards'}); prepare it with --tokenizer {out}/checkpoint")
    reached = int(state.get("step", 0))
    if opts.train.max_steps < reached:
        raise MaskedLMError(f"{out}: --max-steps {opts.train.max_steps} is below the step the run "
                            f"already reached ({reached}); raise it to train further")


def plot_curves(metrics: Path, png: Path) -> bool:
    """Training loss and held-out accuracy against tokens seen, from ``metrics.jsonl``;
    False (and nothing written) without matplotlib or without logged steps.

    >>> plot_curves(Path("runs/x/metrics.jsonl"), Path("runs/x/curves.png"))  # doctest: +SKIP
    True
    """
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    rows = []
    for ln in metrics.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            rows.append(json.loads(ln))
        except ValueError:
            continue  # a torn line: the curves are drawn from the others
    train_rows = [r for r in rows if "mlm_loss" in r and "tokens_per_s" in r]
    if not train_rows:
        return False
    tokens, seen, last = [], 0.0, 0.0
    for r in train_rows:  # tokens of each log window (older logs: rate x time between lines)
        seen += r["tokens"] if "tokens" in r else r["tokens_per_s"] * max(0.0, r.get("elapsed_s", 0.0) - last)
        tokens.append(seen / 1e6)
        last = r.get("elapsed_s", 0.0)
    at = dict(zip((r["step"] for r in train_rows), tokens, strict=True))
    evals = [(at[r["step"]], r["eval_mlm_accuracy"]) for r in rows
             if "eval_mlm_accuracy" in r and r["step"] in at]
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    ax.plot(tokens, [r["loss"] for r in train_rows], lw=1, label="training loss")
    ax.set_xlabel("tokens seen (millions)")
    ax.set_ylabel("loss")
    handles = ax.get_lines()
    if evals:
        ax2 = ax.twinx()
        handles += ax2.plot(*zip(*evals, strict=True), "o-", color="C1", label="held-out accuracy")
        ax2.set_ylabel("held-out masked-token accuracy")
    ax.legend(handles=handles, loc="center right", fontsize=8)
    ax.grid(alpha=0.3)
    atomic_save_figure(fig, png)
    plt.close(fig)
    return True


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(d, default=str))


def unigram_baseline(run: str | Path) -> tuple[str, float]:
    """The most frequent non-special token of ``run``'s training data and its share of the
    tokens: the masked-token accuracy of a model that learned only unigram frequencies
    (masked positions are drawn uniformly over maskable tokens), the bar a run's held-out
    accuracy should clear.

    >>> unigram_baseline("runs/default")  # doctest: +SKIP
    ('the', 0.052)
    """
    run = Path(run)
    record = json.loads((run / "run.json").read_text())
    probs = ShardSet.load(record["data"]).unigram_probs().copy()
    tok = Tokenizer.load(run / "checkpoint")
    probs[list(tok.special_ids)] = 0.0
    probs /= max(probs.sum(), 1e-12)
    top = int(probs.argmax())
    return tok.convert_ids_to_tokens([top])[0], float(probs[top])
