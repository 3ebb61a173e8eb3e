"""The one fine-tuning loop, the run directory, and ``load_task`` to use a run.

A run directory is a checkpoint ``maskedlm.load`` reads (``config.json``,
``model.safetensors`` in the Hugging Face layout, tokenizer files) plus the task:
``task.json`` (kind, labels, options, max length, best dev metrics) and
``head.safetensors``. ``metrics.jsonl`` logs every evaluation.

>>> from maskedlm.tasks import load_task
>>> m = load_task("runs/ner")  # doctest: +SKIP
>>> m.predict("Jane Villanueva of United Airlines Holding discussed the merger.")  # doctest: +SKIP
[{'words': [...], 'tags': [...], 'entities': [{'start': 0, 'end': 2, 'label': 'PER', ...}]}]
"""

from __future__ import annotations

import json
import math
import time
from contextlib import nullcontext
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from maskedlm.checkpoint import (
    CONFIG_NAME,
    TRAINING_STATE_NAME,
    WEIGHTS_NAME,
    check_finite,
    load_model,
    load_training_state,
    save_training_state,
    to_hf_state_dict,
)
from maskedlm.data.tokenizer import Tokenizer
from maskedlm.errors import MaskedLMError, Preempted
from maskedlm.files import RunLock, atomic_write_dir, atomic_write_text
from maskedlm.models.heads import BertForPreTraining
from maskedlm.onnx_backend import OnnxSession, OnnxTaskModel, check_backend
from maskedlm.options import EvaluateOptions, RunOptions
from maskedlm.progress import progress
from maskedlm.runtime import tune_allocator
from maskedlm.tasks.classify import ClassifyTask
from maskedlm.tasks.common import Task, TaskModel, length_grouped_batches, to_device
from maskedlm.tasks.qa import QATask
from maskedlm.tasks.spans import SpanTask
from maskedlm.tasks.tag import TagTask
from maskedlm.training.config import FinetuneConfig, parse_freeze
from maskedlm.training.dist import (
    DistInfo,
    all_reduce,
    all_reduce_gradients,
    any_rank,
    barrier,
    broadcast_parameters,
)
from maskedlm.training.metrics import TENSORBOARD_DIR, tensorboard_writer, write_scalars
from maskedlm.training.optim import adamw, clip_and_check, linear_schedule
from maskedlm.training.precision import autocast
from maskedlm.training.signals import RaiseOnSignal, StopSignals

TASK_FILE = "task.json"
HEAD_FILE = "head.safetensors"
METRICS_FILE = "metrics.jsonl"
PREDICTIONS_FILE = "predictions.json"
KINDS = ("classify", "pair", "tag", "spans", "qa", "contrastive")


def apply_freeze(model: TaskModel, spec: str) -> int:
    """Freeze the embeddings and the bottom K layers; returns the trainable parameter count."""
    k = parse_freeze(spec)
    if model.encoder.pooler is not None:  # heads read the last layer's [CLS], not the pooler
        model.encoder.pooler.requires_grad_(False)
    if k is not None:
        model.encoder.embeddings.requires_grad_(False)
        for layer in model.encoder.blocks[:k]:
            layer.requires_grad_(False)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def make_task(kind: str, labels: list[str] | None = None, **options: Any) -> Task:
    """A task object by name.

    >>> make_task("tag", label_subwords="first").kind
    'tag'
    """
    if kind in ("classify", "pair"):
        opts = {k: v for k, v in options.items() if k != "pair"}
        return ClassifyTask(pair=kind == "pair", labels=labels, **opts)
    if kind == "tag":
        return TagTask(labels=labels, **options)
    if kind == "spans":
        return SpanTask(labels=labels, **options)
    if kind == "qa":
        return QATask(labels=labels, **options)
    if kind == "contrastive":  # sentence embeddings (tasks/contrastive.py)
        from maskedlm.tasks.contrastive import ContrastiveTask
        return ContrastiveTask(labels=labels, **options)
    raise MaskedLMError(f"unknown task {kind!r}; choose one of {', '.join(KINDS)}")


# ----------------------------------------------------------------------------- run directory
def save_run(out: str | Path, pretrained: BertForPreTraining, model: TaskModel, tok: Tokenizer,
             task: Task, cfg: FinetuneConfig, metrics: dict[str, Any], history: list[dict]) -> Path:
    """Write the run directory atomically (a killed process leaves the old one intact);
    weights holding NaN or inf are refused, so the last finite copy stays."""
    check_finite(model, str(out))

    def write(tmp: Path) -> None:
        pretrained.config.save(tmp / CONFIG_NAME)
        save_file(to_hf_state_dict(pretrained), str(tmp / WEIGHTS_NAME), metadata={"format": "pt"})
        tok.save(tmp)
        save_file({k: v.detach().contiguous() for k, v in model.head.state_dict().items()},
                  str(tmp / HEAD_FILE))
        meta = {"task": task.kind, "labels": task.labels, "options": task.options(),
                "max_length": cfg.max_length, "metrics": metrics, "finetune": asdict(cfg)}
        (tmp / TASK_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        (tmp / METRICS_FILE).write_text("".join(json.dumps(r) + "\n" for r in history))
        if getattr(task, "predictions", None):  # QA: the dev answers, for the official script
            (tmp / PREDICTIONS_FILE).write_text(json.dumps(task.predictions, indent=1) + "\n")  # type: ignore[attr-defined]
    # tb/ (TensorBoard's open event file) moves into each new copy of the run directory
    return atomic_write_dir(Path(out), write, keep=(TENSORBOARD_DIR,), purpose="finetune",
                            overwrite=cfg.overwrite)


class TaskPredictor:
    """A fine-tuned run, ready to predict and evaluate; plain Python in and out."""

    def __init__(self, model: TaskModel, tok: Tokenizer, task: Task, max_length: int,
                 path: Path | None = None,
                 batch_size: int = EvaluateOptions.batch_size) -> None:
        self.model = model.eval()
        self.tokenizer = tok
        self.task = task
        self.max_length = max_length
        self.path = path
        self.batch_size = batch_size

    def predict(self, inputs: Any, pair: str | None = None) -> Any:
        """One input (a string, a word list, or a (text, pair) tuple) or a list of them;
        ``predict(text, pair)`` for one pair, ``predict(question, context)`` for QA.

        >>> m.predict("a gripping , funny film")  # doctest: +SKIP
        {'label': '1', 'score': 0.97, 'probs': {'0': 0.03, '1': 0.97}}
        >>> qa.predict("Who led the Normans?", "Rollo led the Normans.")  # doctest: +SKIP
        {'answer': 'Rollo', 'start': 0, 'end': 5, 'score': 0.93}
        """
        if pair is not None:
            if not isinstance(inputs, str):
                raise MaskedLMError("predict(text, pair): both must be strings")
            inputs = (inputs, pair)
        single = isinstance(inputs, str | tuple) or (
            isinstance(inputs, list) and inputs and all(isinstance(w, str) for w in inputs)
            and self.task.kind in ("tag", "spans"))
        out = self.predict_many([inputs] if single else list(inputs))
        return out[0] if single else out

    def predict_many(self, inputs: list[Any]) -> list[dict[str, Any]]:
        """One result per input, always a list.

        >>> m.predict_many(["Jane runs.", "Bob walks."])  # doctest: +SKIP
        """
        return self.task.predict(self.model, inputs, self.tokenizer, self.max_length,
                                 self.batch_size)

    def evaluate(self, path: str | Path) -> dict[str, Any]:
        """Metrics on a labelled file in the training format.

        >>> m.evaluate("conll2003/dev.txt")["f1"]  # doctest: +SKIP
        """
        examples = self.task.read(str(path))
        return self.task.evaluate(self.model, examples, self.tokenizer, self.max_length,
                                  self.batch_size)


def read_task_meta(path: str | Path) -> tuple[Task, dict[str, Any]]:
    """The task object and the contents of a run's ``task.json``."""
    path = Path(path)
    meta_file = path / TASK_FILE
    if not path.exists():
        raise MaskedLMError(f"{path}: no such run directory")
    if not meta_file.is_file():
        raise MaskedLMError(f"{path}: no task head ({TASK_FILE}); not a fine-tuned run directory")
    try:
        meta = json.loads(meta_file.read_text())
        task = make_task(meta["task"], labels=meta["labels"], **meta.get("options", {}))
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise MaskedLMError(f"{meta_file}: corrupt task file ({type(e).__name__}: {e})") from None
    return task, meta


def load_task(path: str | Path, device: str | torch.device = RunOptions.device,
              backend: str = RunOptions.backend) -> TaskPredictor:
    """Load a run directory written by :func:`finetune`, or (``backend="onnx"``) one
    written by ``maskedlm export-onnx`` from such a run.

    >>> m = load_task("runs/ner")  # doctest: +SKIP
    """
    path = Path(path)
    task, meta = read_task_meta(path)
    check_backend(backend, device)
    if backend == "onnx":
        onnx_model = OnnxTaskModel(OnnxSession(path))
        return TaskPredictor(onnx_model, Tokenizer.load(path), task,  # type: ignore[arg-type]
                             int(meta.get("max_length", 256)), path)
    pretrained, ckpt = load_model(path)
    tok = Tokenizer.load(ckpt)
    model = TaskModel(pretrained.bert, task.make_head(pretrained.config))
    if not (path / HEAD_FILE).is_file():
        raise MaskedLMError(f"{path}: no {HEAD_FILE}; the run has no trained task head")
    try:
        head = load_file(str(path / HEAD_FILE))
    except (SafetensorError, OSError) as e:
        raise MaskedLMError(f"{path / HEAD_FILE}: corrupt weights file "
                            f"({str(e).splitlines()[0][:100]})") from None
    try:
        model.head.load_state_dict(head)
    except RuntimeError as e:
        raise MaskedLMError(f"{path / HEAD_FILE}: does not fit {TASK_FILE} "
                            f"({str(e).splitlines()[0][:100]})") from None
    return TaskPredictor(model.to(device), tok, task, int(meta.get("max_length", 256)), path)


def calibrate(run: str | Path, dev: str | Path | list[Any]) -> dict[str, Any]:
    """Choose a spans run's NULL threshold (or a QA run's null-score threshold) with the
    best F1 on ``dev`` and store it in the run's task.json; returns the calibration."""
    m = load_task(run)
    examples = dev if isinstance(dev, list) else m.task.read(str(dev))
    result = m.task.calibrate(m.model, examples, m.tokenizer, m.max_length,  # type: ignore[attr-defined]
                              m.batch_size)
    meta_file = (m.path or Path(run)) / TASK_FILE
    meta = json.loads(meta_file.read_text())
    meta["options"]["threshold"] = result["threshold"]
    meta["calibration"] = result
    atomic_write_text(meta_file, json.dumps(meta, indent=2) + "\n")
    return result


# ----------------------------------------------------------------------------- the loop
def finetune_optimizer(model: TaskModel, cfg: FinetuneConfig) -> torch.optim.Optimizer:
    """AdamW (:func:`~maskedlm.training.optim.adamw`, Devlin et al.'s betas and eps); no
    weight decay on biases and LayerNorm (Devlin et al. 2019), the head's rate apart."""
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            key = (name.startswith("head."), p.ndim < 2)
            groups.setdefault(key, []).append(p)
    params = [{"params": ps, "weight_decay": 0.0 if no_decay else cfg.weight_decay,
               "lr": (cfg.head_lr or cfg.lr) if is_head else cfg.lr}
              for (is_head, no_decay), ps in groups.items()]
    return adamw(params, cfg.lr)


def read_examples(task: Task, train: str | Path | list[Any], dev: str | Path | list[Any] | None,
                   limit: int | None, rng: np.random.Generator
                   ) -> tuple[list[Any], list[Any] | None]:
    """Training examples (a seeded subsample of ``limit``), dev examples; fits the labels.
    Files are read in the task's format; lists are examples already read."""
    train_ex = list(train) if isinstance(train, list) else task.read(str(train))
    if limit:
        train_ex = [train_ex[i] for i in sorted(rng.permutation(len(train_ex))[:limit])]
    dev_ex = (list(dev) if isinstance(dev, list) else task.read(str(dev))) if dev else None
    if not task.labels:  # a task built with its labels keeps them (e.g. fitted on a superset)
        task.fit_labels(train_ex)
    return train_ex, dev_ex


def _load_encoder(model_path: str | Path) -> tuple[BertForPreTraining, Tokenizer]:
    pretrained, ckpt = load_model(model_path, warn_fresh=False)  # the MLM head is not used
    tok = Tokenizer.load(ckpt)
    if tok.vocab_size > pretrained.config.vocab_size:
        raise MaskedLMError(f"{ckpt}: tokenizer has {tok.vocab_size} tokens but the embedding "
                            f"table {pretrained.config.vocab_size}")
    return pretrained, tok


def finetune(task: Task, model_path: str | Path, train: str | Path | list[Any],
             dev: str | Path | list[Any] | None, out: str | Path, cfg: FinetuneConfig
             ) -> dict[str, Any]:
    """Fine-tune an encoder (ours or a Hugging Face BERT dir) on ``train``; keep the best
    dev checkpoint in ``out``. Returns a summary (best dev metrics, speed). ``train`` and
    ``dev`` are files in the task's format or examples already read (``task.read``).

    >>> finetune(make_task("tag"), "minilm/", "conll/train.txt", "conll/dev.txt", "runs/ner",
    ...          FinetuneConfig(epochs=2))  # doctest: +SKIP
    """
    cfg = cfg.for_task(task.kind)  # the task's defaults where cfg leaves None
    inputs = [model_path] + [p for p in (train, dev) if isinstance(p, str | Path)]
    early = RaiseOnSignal("it came before the first training step")
    # under torchrun: one process per rank (gloo on CPU, NCCL on GPU); rank 0 writes the run
    di = DistInfo.from_env(cfg.device)
    lock = (RunLock(out, purpose="finetune", overwrite=cfg.overwrite, inputs=inputs)
            if di.is_main else nullcontext())
    try:
        with early, lock:
            return _finetune(task, model_path, train, dev, out, cfg, early, di)
    finally:
        di.close()


def _finetune(task: Task, model_path: str | Path, train: str | Path | list[Any],
              dev: str | Path | list[Any] | None, out: str | Path, cfg: FinetuneConfig,
              early: RaiseOnSignal | None = None, di: DistInfo | None = None) -> dict[str, Any]:
    """The loop. With ``di.world_size`` > 1 (torchrun) every rank takes its share of each
    step's examples (``cfg.batch_size`` per process, as pretraining), the gradients are
    summed over the ranks before clipping, and rank 0 evaluates and writes the run; a
    contrastive task gathers its negatives from every rank (its loss is each rank's share
    of the global mean)."""
    di = di or DistInfo()
    tune_allocator()
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    train_ex, dev_ex = read_examples(task, train, dev, cfg.train_limit, rng)
    pretrained, tok = _load_encoder(model_path)
    max_length = min(cfg.max_length, pretrained.config.max_position_embeddings)
    feats = task.featurize(train_ex, tok, max_length)
    if dev_ex is not None:
        task.featurize(dev_ex, tok, max_length)  # fail now on unknown dev labels, not after an epoch
    model = TaskModel(pretrained.bert, task.make_head(pretrained.config)).to(di.device)
    broadcast_parameters(model, di)  # the same start on every rank
    n_trainable = apply_freeze(model, cfg.freeze)
    if not n_trainable:
        raise MaskedLMError("--freeze leaves nothing to train")
    opt = finetune_optimizer(model, cfg)
    global_batch = cfg.batch_size * di.world_size
    steps_per_epoch = math.ceil(len(feats) / global_batch)
    total = max(1, int(round(cfg.epochs * steps_per_epoch)))
    # BERT's schedule: linear warm-up, then linear decay to 0 at the last step
    sched = torch.optim.lr_scheduler.LambdaLR(opt, linear_schedule(int(cfg.warmup_ratio * total), total))
    eval_every = cfg.eval_every or steps_per_epoch
    cfg.max_length = max_length
    history: list[dict[str, Any]] = []
    best: dict[str, Any] | None = None
    bad_evals, step, seen, train_time = 0, 0, 0, 0.0
    lengths = [len(f["input_ids"]) for f in feats]

    def evaluate_and_keep() -> bool:
        """Evaluate on dev, save when it is the best so far; False means stop early."""
        nonlocal best, bad_evals
        record: dict[str, Any] = {"step": step, "epoch": round(step / steps_per_epoch, 3),
                                  "train_loss": round(running / max(1, n_running), 5),
                                  "train_examples_per_s": round(seen / max(train_time, 1e-9), 2)}
        if dev_ex is not None:
            with autocast(cfg.precision, model.device):
                metrics = task.evaluate(model, dev_ex, tok, max_length, cfg.eval_batch_size)
            record["dev"] = {k: v for k, v in metrics.items() if k != "per_type"}
        history.append(record)
        write_scalars(tb, {**record, "lr": sched.get_last_lr()[0]}, step)
        if cfg.progress:
            bar.write(json.dumps(record))
        score = record.get("dev", {}).get(task.metric)
        if best is None or score is None or score > best["dev"][task.metric]:
            best = {**record, "dev": metrics if dev_ex is not None else {}}
            save_run(out, pretrained, model, tok, task, cfg, best, history)
            bad_evals = 0
            return True
        bad_evals += 1
        return not (cfg.patience and bad_evals >= cfg.patience)

    model.train()
    running, n_running, stop = 0.0, 0, False
    resume = _resume_state(out, cfg)
    if resume is not None:
        check_finetune_resume(out, resume, model, task, total)
        model.load_state_dict(resume["model"])
        opt.load_state_dict(resume["optimizer"])
        sched.load_state_dict(resume["scheduler"])
        torch.set_rng_state(resume["torch_rng"])
        history, best, bad_evals = resume["history"], resume["best"], resume["bad_evals"]
        step, seen, train_time = resume["step"], resume["seen"], resume["train_time"]
        running, n_running = resume["running"], resume["n_running"]
    tb = tensorboard_writer(Path(out)) if di.is_main else None  # OUT/tb/, with the tensorboard extra
    bar = progress(total, "fine-tune", enabled=cfg.progress and di.is_main, initial=step,
                   every=cfg.progress_every)
    summed = getattr(task, "loss_is_global_share", False)  # contrastive: shares sum to the mean
    if early is not None:
        early.release()  # the loop's StopSignals take over: stop after a step, with a state
    with StopSignals() as signals:
        while step < total and not stop:
            # The epoch's order comes from the generator's state at its start; a resumed run
            # rebuilds it from that state, then takes the generator where it was.
            epoch_rng = resume["epoch_rng"] if resume else rng.bit_generator.state
            rng.bit_generator.state = epoch_rng
            batches = length_grouped_batches(lengths, global_batch, rng)
            first = 0
            if resume is not None:
                rng.bit_generator.state, first, resume = resume["rng"], resume["batch_in_epoch"], None
            for b_i in range(first, len(batches)):
                t0 = time.perf_counter()
                idx, collate_rng = batches[b_i], rng
                if di.world_size > 1:  # equal shares (the gathered negatives need them)
                    idx = idx[:len(idx) // di.world_size * di.world_size][di.rank::di.world_size]
                    # per rank and step: the shared rng must stay in step on every rank
                    collate_rng = np.random.default_rng((cfg.seed, di.rank, step))
                if len(idx):
                    batch = to_device(task.collate([feats[i] for i in idx], tok.pad_id,
                                                   collate_rng), model.device)
                    with autocast(cfg.precision, model.device):
                        loss = task.loss(model, batch)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    all_reduce_gradients(model, di, average=not summed)
                    clip_and_check(model, cfg.clip_grad, step + 1, loss=loss,
                                   what="fine-tuning loss",
                                   kept=f"the last good checkpoint in {out} is kept")
                    opt.step()
                    sched.step()
                    (value,) = all_reduce([float(loss.detach())], di)
                    running += value if summed else value / di.world_size
                    n_running += 1
                train_time += time.perf_counter() - t0
                step, seen = step + 1, seen + len(idx) * di.world_size
                bar.update(1)
                bar.set_postfix(loss=f"{running / n_running:.4f}", refresh=False)
                if step % eval_every == 0 or step == total:
                    stop = not evaluate_and_keep() if di.is_main else False
                    stop = any_rank([stop], di)[0]  # rank 0 decides; all stop together
                    running, n_running = 0.0, 0
                if stop or step >= total:
                    break
                if any_rank([signals.received is not None], di)[0]:
                    check_finite(model, str(out))
                    state = {"step": step, "epoch_rng": epoch_rng, "rng": rng.bit_generator.state,
                             "batch_in_epoch": b_i + 1, "torch_rng": torch.get_rng_state(),
                             "model": model.state_dict(), "optimizer": opt.state_dict(),
                             "scheduler": sched.state_dict(), "history": history, "best": best,
                             "bad_evals": bad_evals, "seen": seen, "train_time": train_time,
                             "running": running, "n_running": n_running,
                             "task": task.kind, "labels": task.labels}
                    if di.is_main:
                        save_training_state(out, state)
                    barrier(di)  # every rank leaves after rank 0 has saved
                    bar.close()
                    raise Preempted(signals.received or "a signal on another rank", step, str(out))
    bar.close()
    barrier(di)
    if not di.is_main:  # rank 0 wrote the run and holds its summary
        return {"out": str(out), "task": task.kind, "steps": step, "best": None}
    (Path(out) / TRAINING_STATE_NAME).unlink(missing_ok=True)  # a finished run needs none
    if tb is not None:
        tb.close()
    assert best is not None
    return {"out": str(out), "task": task.kind, "steps": step, "best": best,
            "train_examples_per_s": round(seen / max(train_time, 1e-9), 2),
            "trainable_parameters": n_trainable}


def check_finetune_resume(out: str | Path, state: dict[str, Any], model: TaskModel, task: Task,
                          total: int) -> None:
    """One line naming what differs between a stopped run's state and the run asked for:
    the task's labels, the model's parameters (names and shapes), or the step count."""
    meta_file = Path(out) / TASK_FILE
    _check_labels(out, state.get("task"), state.get("labels"), task)
    if meta_file.is_file():
        try:
            meta = json.loads(meta_file.read_text(encoding="utf-8"))
        except (ValueError, RecursionError, OSError):
            meta = {}
        if isinstance(meta, dict):
            _check_labels(out, meta.get("task"), meta.get("labels"), task)
    mine = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in state.get("model", {}).items()}
    for k in sorted(mine.keys() | theirs.keys()):
        if mine.get(k) != theirs.get(k):
            raise MaskedLMError(f"{out}: --resume with another model: parameter {k} is "
                                f"{theirs.get(k)} in the stopped run and {mine.get(k)} now "
                                "(same --model, task and labels as the stopped run?)")
    if int(state.get("step", 0)) > total:
        raise MaskedLMError(f"{out}: --resume at step {state['step']}, beyond the {total} steps "
                            "this run would take (--epochs or the training file changed)")


def _check_labels(out: str | Path, kind: Any, labels: Any, task: Task) -> None:
    if kind not in (None, task.kind):
        raise MaskedLMError(f"{out}: --resume of a {kind} run as a {task.kind} run")
    if labels is not None and list(labels) != list(task.labels):
        raise MaskedLMError(f"{out}: --resume with {len(task.labels)} labels {_short(task.labels)}, "
                            f"but the run was trained with {len(labels)} {_short(list(labels))}; "
                            "use the same training file, or a new --out")


def _short(labels: list[str], n: int = 6) -> str:
    shown = ", ".join(map(str, labels[:n]))
    return f"[{shown}{', ...' if len(labels) > n else ''}]"


def _resume_state(out: str | Path, cfg: FinetuneConfig) -> dict[str, Any] | None:
    """The state a preempted run left in ``out`` (with ``cfg.resume``), else None."""
    if not cfg.resume or (cfg.resume == "auto" and not (Path(out) / TRAINING_STATE_NAME).is_file()):
        return None
    state = load_training_state(out)
    if state is None:
        raise MaskedLMError(f"{out}: --resume given but there is no {TRAINING_STATE_NAME} "
                            "(left by a stopped run) to resume from")
    return state


