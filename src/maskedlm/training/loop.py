"""The pretraining loop: accumulation, autocast, clipping, DDP, eval, logging, resume.

The loop is stateless about data: a :class:`BatchSource` returns the micro-batches of
any global step, and dropout is seeded from the step number, so a resumed run
reproduces the losses of an uninterrupted one exactly. Losses are normalised by the
global number of targets in the step (all micro-batches, all ranks), which makes
accumulation and data parallelism equal to one large batch.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import asdict
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from maskedlm.errors import MaskedLMError, Preempted
from maskedlm.progress import progress
from maskedlm.runtime import tune_allocator
from maskedlm.training.config import TrainConfig
from maskedlm.training.dist import DistInfo, all_reduce, any_rank, barrier
from maskedlm.training.metrics import MetricsLog
from maskedlm.training.optim import clip_and_check, linear_schedule, make_optimizer
from maskedlm.training.precision import autocast
from maskedlm.training.signals import StopSignals

Batch = dict[str, np.ndarray]


class BatchSource(Protocol):
    def step_batches(self, step: int) -> list[Batch]:
        """This rank's micro-batches for global ``step`` (deterministic in ``step``)."""

    def eval_batches(self) -> list[Batch]:
        """Held-out batches, masked with a fixed seed."""


class Prefetcher:
    """Builds the next steps' batches in a background thread so the loop never waits."""

    def __init__(self, source: BatchSource, start: int, stop: int, depth: int = 3) -> None:
        self.q: queue.Queue = queue.Queue(maxsize=depth)
        self.thread = threading.Thread(target=self._run, args=(source, start, stop), daemon=True)
        self.stopped = False
        self.thread.start()

    def _run(self, source: BatchSource, start: int, stop: int) -> None:
        for step in range(start, stop):
            if self.stopped:
                return
            try:
                self.q.put(source.step_batches(step))
            except BaseException as e:  # surface errors in the main thread
                self.q.put(e)
                return

    def __iter__(self) -> Iterator[list[Batch]]:
        while True:
            item = self.q.get()
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self, timeout: float = 60.0) -> None:
        """Stop the thread and wait for it: a daemon thread still building numpy batches
        while the interpreter (or a DDP rank) shuts down can abort the process."""
        self.stopped = True
        deadline = time.monotonic() + timeout
        while self.thread.is_alive() and time.monotonic() < deadline:
            try:  # unblock a put() on the full queue
                while True:
                    self.q.get_nowait()
            except queue.Empty:
                pass
            self.thread.join(timeout=0.05)


class DataWaitMonitor:
    """Warns once when an accelerator's steps wait for batches more than ``threshold`` of
    their time (``data_wait_frac`` of a log window): the data path is then what limits
    the run. The first window is skipped (it includes the prefetcher filling up); on a
    CPU the batches compete with the model for the same cores, so nothing is said.

    >>> m = DataWaitMonitor(torch.device("cuda"))
    >>> [m.update(f) is not None for f in (0.5, 0.2, 0.3)]
    [False, True, False]
    """

    def __init__(self, device: torch.device, threshold: float = 0.10) -> None:
        self.device, self.threshold = device, threshold
        self.windows, self.warned = 0, False

    def update(self, data_wait_frac: float) -> str | None:
        """The warning to print for this log window, at most once per run; else None."""
        self.windows += 1
        if self.warned or self.windows == 1 or self.device.type == "cpu" \
                or not data_wait_frac > self.threshold:
            return None
        self.warned = True
        return (f"warning: steps waited for batches {data_wait_frac:.0%} of their time on "
                f"{self.device} (over {self.threshold:.0%}): the data path limits this run; "
                "see docs/datapath.md")



TENSOR_KEYS = ("input_ids", "labels", "token_type_ids", "attention_mask", "next_sentence_label",
               "sbo_left", "sbo_right", "sbo_pos", "sequence_ids")


def to_tensors(batch: Batch, device: torch.device) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(np.ascontiguousarray(batch[k])).to(device, non_blocking=True)
            for k in TENSOR_KEYS if k in batch}


@torch.no_grad()
def evaluate(model: nn.Module, batches: list[Batch], device: torch.device,
             precision: str = "fp32") -> dict[str, float]:
    """Held-out MLM loss, perplexity and masked-token accuracy (+ SBO/NSP loss; + for
    replaced-token detection: its loss, accuracy and AUC over the real tokens, and the
    share replaced; the MLM figures are then the generator's)."""
    was_training = model.training
    model.eval()
    sums = {"mlm": 0.0, "sbo": 0.0, "nsp": 0.0, "correct": 0.0, "n": 0, "seq": 0}
    rtd: dict[str, Any] = {"loss": 0.0, "correct": 0.0, "n": 0, "replaced": 0, "logits": [],
                           "targets": []}
    for b in batches:
        with autocast(precision, device):
            out = model(**to_tensors(b, device), normalizer=1.0, nsp_normalizer=1.0)
        sums["mlm"] += float(out.mlm_loss)
        sums["correct"] += float(out.mlm_correct)
        sums["n"] += out.n_targets
        sums["seq"] += b["input_ids"].shape[0]
        if out.sbo_loss is not None:
            sums["sbo"] += float(out.sbo_loss)
        if out.nsp_loss is not None:
            sums["nsp"] += float(out.nsp_loss)
        if getattr(out, "rtd_loss", None) is not None:
            rtd["loss"] += float(out.rtd_loss)
            rtd["correct"] += float(out.rtd_correct)
            rtd["n"] += out.rtd_tokens
            rtd["replaced"] += out.rtd_replaced
            rtd["logits"].append(out.rtd_logits.float().cpu().numpy())
            rtd["targets"].append(out.rtd_targets.cpu().numpy())
    model.train(was_training)
    n = max(sums["n"], 1)
    res = {"eval_mlm_loss": sums["mlm"] / n, "eval_mlm_accuracy": sums["correct"] / n,
           "eval_perplexity": math.exp(min(sums["mlm"] / n, 50.0)), "eval_targets": sums["n"]}
    if sums["sbo"]:
        res["eval_sbo_loss"] = sums["sbo"] / n
    if sums["nsp"]:
        res["eval_nsp_loss"] = sums["nsp"] / max(sums["seq"], 1)
    if rtd["n"]:
        from maskedlm.models.rtd import roc_auc
        m = rtd["n"]
        res.update(eval_rtd_loss=rtd["loss"] / m, eval_rtd_accuracy=rtd["correct"] / m,
                   eval_rtd_auc=roc_auc(np.concatenate(rtd["logits"]), np.concatenate(rtd["targets"])),
                   eval_replaced_share=rtd["replaced"] / m)
    return res


def train(model: nn.Module, source: BatchSource, cfg: TrainConfig, out_dir: Path,
          save: Callable[[nn.Module, dict[str, Any]], Path | None], di: DistInfo | None = None,
          resume_state: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train ``model`` for ``cfg.max_steps`` global steps; returns the last log record.

    ``save(model, training_state)`` is called on rank 0 at every save point and returns
    where it wrote. SIGTERM, SIGINT or SIGUSR1 end the run after the current step with a
    checkpoint and :class:`~maskedlm.errors.Preempted` (see :class:`StopSignals`).
    """
    if missing := cfg.unresolved():  # a programming error, not a user's: say what to do
        raise ValueError(f"TrainConfig fields {missing} are None; give them, or make the "
                         "options with maskedlm.options.PretrainOptions, which fills them")
    tune_allocator()
    di = di or DistInfo()
    model.to(di.device)
    model.train()
    optimizer = make_optimizer(model, cfg)
    warmup = int(cfg.warmup_ratio * cfg.max_steps)
    t_start = time.perf_counter()
    time_used = (lambda: (time.perf_counter() - t_start) / cfg.max_time) if cfg.max_time > 0 else None
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, linear_schedule(warmup, cfg.max_steps, time_used, cfg.schedule, cfg.decay_ratio))
    start = 0
    window = new_window()
    if resume_state is not None:
        optimizer.load_state_dict(resume_state["optimizer"])
        scheduler.load_state_dict(resume_state["scheduler"])
        start = int(resume_state["step"])
        if di.is_main:  # the log window the checkpoint fell in (summed over ranks)
            window.update(resume_state.get("window", {}))
    ddp = model
    if di.world_size > 1:
        ddp = nn.parallel.DistributedDataParallel(
            model, device_ids=[di.device.index] if di.device.type == "cuda" else None)
    log = MetricsLog(out_dir, di.is_main, resume_step=start)
    eval_batches = source.eval_batches() if di.is_main else []
    eval_s = [0.0]  # seconds spent in held-out evaluations so far (logged as eval_s)

    def held_out() -> dict[str, float]:
        t = time.perf_counter()
        result = evaluate(model, eval_batches, di.device, cfg.precision)
        eval_s[0] += time.perf_counter() - t
        return result

    def checkpoint(step: int, record: dict[str, Any] | None) -> Path | None:
        """Save on rank 0 (all ranks call it: the log window is summed over ranks)."""
        state = {"step": step, "optimizer": optimizer.state_dict(),
                 "scheduler": scheduler.state_dict(), "train_config": asdict(cfg),
                 "window": _window_state(window, di)}
        if not di.is_main:
            return None
        if record is not None and eval_batches:
            record.update(held_out())
        return save(model, state)

    record: dict[str, Any] = {}
    data_wait = DataWaitMonitor(di.device)
    # the handlers go in before the first evaluation and the prefetcher: a signal during
    # either counts
    with StopSignals() as stop:
        if start == 0 and cfg.eval_every and di.is_main and eval_batches:
            # the starting point, e.g. for continued pretraining from --init
            log.write({"step": 0, **held_out()})
        if any_rank([stop.received is not None], di)[0]:
            log.close()
            raise Preempted(stop.received or "a signal on another rank", start,
                            None if start == 0 else str(out_dir),
                            why="it came during the starting-point evaluation, before any step")
        prefetch = Prefetcher(source, start, cfg.max_steps)
        bar = progress(cfg.max_steps, "pretrain", enabled=cfg.progress and di.is_main,
                       initial=start, every=cfg.progress_every)
        batches_iter = iter(prefetch)
        step, where = start, None
        try:
            for step in range(start, cfg.max_steps):
                t_wait = time.perf_counter()
                micro = next(batches_iter)
                window["wait"] += time.perf_counter() - t_wait
                # Dropout randomness is a function of (seed, rank, step): resume is exact.
                torch.manual_seed(cfg.seed * 1_000_003 + step * 101 + di.rank)
                forward_backward(ddp, model, micro, cfg, di, window)
                optimizer_step(model, optimizer, scheduler, cfg.clip_grad, step)
                done = step + 1
                if cfg.max_time > 0:  # a time budget: show the steps it will allow, not max_steps
                    frac = (time.perf_counter() - t_start) / cfg.max_time
                    if frac > 0.02:
                        bar.total = min(cfg.max_steps, max(done, round(done / frac)))
                bar.update(1)
                # one all-reduce: every rank stops (and saves) at the same step
                signalled, out_of_time = any_rank(
                    [stop.received is not None,
                     cfg.max_time > 0 and time.perf_counter() - t_start > cfg.max_time], di)
                last = done == cfg.max_steps or out_of_time
                stopping = signalled and not last
                record = {}
                if done % cfg.log_every == 0 or last:
                    record = _log_record(done, window, scheduler.get_last_lr()[0], di)
                    if not math.isfinite(record["loss"]):
                        raise MaskedLMError(f"step {done}: loss is NaN; lower --lr (last checkpoint kept)")
                    bar.set_postfix(loss=f"{record['loss']:.3f}", acc=f"{record['mlm_accuracy']:.3f}")
                    if (warning := data_wait.update(record["data_wait_frac"])) and di.is_main:
                        bar.write(warning)
                    window = new_window()
                if last or (cfg.save_every and done % cfg.save_every == 0):
                    record = record or {"step": done}
                    where = checkpoint(done, record)
                elif stopping:  # no evaluation: a scheduler's grace period is short
                    where = checkpoint(done, None)
                elif cfg.eval_every and done % cfg.eval_every == 0 and di.is_main and eval_batches:
                    record = record or {"step": done}
                    record.update(held_out())
                if record:
                    record["elapsed_s"] = round(time.perf_counter() - t_start, 2)
                    record["eval_s"] = round(eval_s[0], 2)
                    log.write(record)
                    if "eval_mlm_accuracy" in record and di.is_main:
                        rtd = (f", rtd acc {record['eval_rtd_accuracy']:.4f} auc "
                               f"{record['eval_rtd_auc']:.4f}" if "eval_rtd_auc" in record else "")
                        bar.write(f"step {done}: eval mlm acc {record['eval_mlm_accuracy']:.4f} "
                                  f"ppl {record['eval_perplexity']:.2f}{rtd}")
                if stopping:
                    barrier(di)  # every rank leaves after rank 0 has saved
                    raise Preempted(stop.received or "a signal on another rank", done,
                                    str(where or out_dir))
                if out_of_time:
                    break
        finally:
            prefetch.close()
            bar.close()
            log.close()
    return record


WINDOW_SUMS = ("mlm", "sbo", "nsp", "n", "seq", "correct", "tokens", "steps",
               "rtd", "rtd_correct", "rtd_n")


def _window_state(window: dict[str, Any], di: DistInfo) -> dict[str, Any]:
    """The open log window summed over ranks, saved so a resumed run logs the same losses."""
    sums = all_reduce([float(window[k]) for k in WINDOW_SUMS], di)
    return {k: type(window[k])(v) for k, v in zip(WINDOW_SUMS, sums, strict=True)}


def new_window() -> dict[str, Any]:
    """Sums over the steps since the last log record (see :func:`_log_record`)."""
    return {"loss": 0.0, "mlm": 0.0, "sbo": 0.0, "nsp": 0.0, "n": 0, "seq": 0, "correct": 0.0,
            "tokens": 0, "wait": 0.0, "t0": time.perf_counter(), "steps": 0,
            "rtd": 0.0, "rtd_correct": 0.0, "rtd_n": 0, "rtd_weight": 0.0}


def _real_tokens(b: Batch) -> int:
    return int(b["attention_mask"].sum()) if "attention_mask" in b else int(b["input_ids"].size)


def forward_backward(ddp: nn.Module, model: nn.Module, micro: list[Batch], cfg: TrainConfig,
                      di: DistInfo, window: dict[str, Any]) -> None:
    """Gradients of one global step, accumulated over its micro-batches; adds to ``window``.

    Each loss is normalised by the step's global target count (all micro-batches, all
    ranks), so accumulation and data parallelism equal one large batch.
    """
    n_local = sum(int((b["labels"] != -100).sum()) for b in micro)
    seq_local = sum(b["input_ids"].shape[0] for b in micro)
    tok_local = sum(_real_tokens(b) for b in micro)
    n_global, seq_global, tok_global = all_reduce([float(n_local), float(seq_local),
                                                    float(tok_local)], di)
    # replaced-token detection (models/rtd.py) divides its per-token loss by the real tokens
    per_token = ({"token_normalizer": max(tok_global, 1.0)}
                 if getattr(model, "uses_token_normalizer", False) else {})
    for i, b in enumerate(micro):
        sync = ddp is model or i == len(micro) - 1  # DDP all-reduces on the last one only
        with (nullcontext() if sync else ddp.no_sync()), autocast(cfg.precision, di.device):
            out = ddp(**to_tensors(b, di.device), normalizer=max(n_global, 1.0),
                      nsp_normalizer=seq_global, **per_token)
        # DDP averages gradients over ranks; we want the global sum / global count.
        (out.loss * di.world_size).backward()
        window["mlm"] += float(out.mlm_loss)
        window["correct"] += float(out.mlm_correct)
        window["sbo"] += float(out.sbo_loss) if out.sbo_loss is not None else 0.0
        window["nsp"] += float(out.nsp_loss) if out.nsp_loss is not None else 0.0
        window["tokens"] += _real_tokens(b)
        if getattr(out, "rtd_loss", None) is not None:
            window["rtd"] += float(out.rtd_loss)
            window["rtd_correct"] += float(out.rtd_correct)
            window["rtd_n"] += out.rtd_tokens
            window["rtd_weight"] = float(getattr(model, "rtd_weight", 1.0))
    window["n"] += n_local
    window["seq"] += seq_local
    window["steps"] += 1



def optimizer_step(model: nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: torch.optim.lr_scheduler.LRScheduler, clip_grad: float,
                    step: int) -> None:
    """Clip, check, step the optimizer and the schedule, release the gradients."""
    clip_and_check(model, clip_grad, step + 1, "last checkpoint kept")
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)


def _log_record(step: int, w: dict[str, Any], lr: float, di: DistInfo) -> dict[str, Any]:
    """Averages over the window since the last log, summed over ranks."""
    mlm, sbo, nsp, n, seq, correct, tokens, rtd, rtd_correct, rtd_n = all_reduce(
        [w["mlm"], w["sbo"], w["nsp"], float(w["n"]), float(w["seq"]), w["correct"],
         float(w["tokens"]), w["rtd"], w["rtd_correct"], float(w["rtd_n"])], di)
    dt = time.perf_counter() - w["t0"]
    n = max(n, 1.0)
    rec: dict[str, Any] = {"step": step, "mlm_loss": mlm / n, "mlm_accuracy": correct / n}
    loss = mlm / n
    if sbo:
        rec["sbo_loss"] = sbo / n
        loss += sbo / n
    if nsp:
        rec["nsp_loss"] = nsp / max(seq, 1.0)
        loss += nsp / max(seq, 1.0)
    if rtd_n:  # replaced-token detection: total = MLM + lambda x RTD (models/rtd.py)
        rec["rtd_loss"] = rtd / rtd_n
        rec["rtd_accuracy"] = rtd_correct / rtd_n
        loss += w["rtd_weight"] * rtd / rtd_n
    rec.update(loss=loss, lr=lr, tokens=int(tokens), tokens_per_s=tokens / max(dt, 1e-9),
               data_wait_frac=w["wait"] / max(dt, 1e-9))
    return rec
