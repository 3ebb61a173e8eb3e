"""The one training loop: accumulation, autocast, clipping, DDP, eval, logging, resume.

The loop is stateless about data: a :class:`BatchSource` returns the micro-batches of
any global step, and dropout is seeded from the step number, so a resumed run
reproduces the losses of an uninterrupted one exactly. Losses are normalised by the
global number of targets in the step (all micro-batches, all ranks), which makes
accumulation and data parallelism equal to one large batch.
"""

from __future__ import annotations

import json
import math
import os
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from maskedlm.errors import MaskedLMError, Preempted
from maskedlm.files import append_line, repair_jsonl
from maskedlm.progress import DEFAULT_EVERY, progress
from maskedlm.runtime import tune_allocator

Batch = dict[str, np.ndarray]


@dataclass
class TrainConfig:
    """Optimisation settings; CLI flags map one to one onto these fields."""

    max_steps: int = 1000
    batch_size: int = 32  # sequences per process per micro-step
    grad_accum: int = 1
    lr: float = 5e-4
    weight_decay: float = 0.01
    warmup_ratio: float = 0.06  # RoBERTa-style linear warmup over 6% of the steps
    # "linear": warmup then linear decay to 0 (BERT, RoBERTa). "wsd": warmup, a constant
    # stable phase, then a 1 - sqrt decay over the last ``decay_ratio`` (Hägele et al.
    # 2024, "Scaling Laws and Compute-Optimal Training Beyond Fixed Training Durations";
    # ModernBERT, Ettin).
    schedule: Literal["linear", "wsd"] = "linear"
    decay_ratio: float = 0.2
    beta1: float = 0.9
    beta2: float = 0.98  # RoBERTa's beta2 is more stable than 0.999 for MLM
    eps: float = 1e-6
    clip_grad: float = 1.0
    precision: Literal["fp32", "bf16", "auto"] = "fp32"  # auto: bf16 where the chip has it
    seed: int = 0
    log_every: int = 10
    eval_every: int = 0  # 0: evaluate at every save and at the end
    save_every: int = 0  # 0: save at the end only
    max_time: float = 0.0  # seconds; 0 = no wall-clock budget
    progress: bool = True
    progress_every: float = DEFAULT_EVERY  # seconds between progress lines when not on a terminal

    def __post_init__(self) -> None:
        for name in ("max_steps", "batch_size", "grad_accum"):
            if getattr(self, name) < 1:
                raise MaskedLMError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise MaskedLMError(f"--lr must be > 0, got {self.lr}")
        if self.schedule not in ("linear", "wsd"):
            raise MaskedLMError(f"--schedule must be linear or wsd, got {self.schedule!r}")
        if not 0.0 <= self.warmup_ratio < 1.0 or not 0.0 < self.decay_ratio <= 1.0:
            raise MaskedLMError(f"--warmup-ratio must be in [0, 1) and --decay-ratio in (0, 1], "
                                f"got {self.warmup_ratio} and {self.decay_ratio}")
        if self.precision not in ("fp32", "bf16", "auto"):
            raise MaskedLMError(f"--precision must be fp32, bf16 or auto, got {self.precision!r}")
        if self.progress_every < 0:
            raise MaskedLMError(f"--progress-every must be >= 0 seconds, got {self.progress_every}")
        if not self.clip_grad >= 0:  # also NaN
            raise MaskedLMError(f"--clip-grad must be >= 0 (0: no clipping), got {self.clip_grad}")
        if self.batch_size > MAX_BATCH_SIZE:
            raise MaskedLMError(f"--batch-size {self.batch_size} is over {MAX_BATCH_SIZE} sequences "
                                "per micro-step; use --grad-accum for larger batches")


# Sequences per micro-step: far above what any accelerator holds (BERT-large at 512 tokens
# fits ~64 on 80 GB); beyond it building one batch takes minutes of NumPy work.
MAX_BATCH_SIZE = 65536


@dataclass
class DistInfo:
    """Where this process sits in a ``torchrun`` job (rank 0 of 1 without one)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls, device: str | None = None) -> DistInfo:
        """Initialise the process group when launched by torchrun (gloo on CPU, NCCL on GPU)."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        dev = torch.device(device)
        if dev.type == "cuda":
            dev = torch.device("cuda", local)
            torch.cuda.set_device(dev)
        if world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if dev.type == "cuda" else "gloo",
                                    store=_attempt_store(rank, world), rank=rank, world_size=world)
        return cls(rank, world, local, dev)


def _attempt_store(rank: int, world: int) -> dist.Store | None:
    """torchrun's store, with keys of this restart attempt only (None: use env:// as is).

    torchrun shares one rendezvous TCPStore across restarts (torch 2.13), so after
    ``--max-restarts`` the new workers read the dead attempt's gloo addresses and fail
    with "connectFullMesh ... Connection refused"; a prefix per attempt keeps them apart.
    """
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT")
    if attempt is None or "MASTER_ADDR" not in os.environ:
        return None
    agent = os.environ.get("TORCHELASTIC_USE_AGENT_STORE", "False") == "True"
    store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), world,
                          is_master=rank == 0 and not agent, multi_tenant=not agent)
    return dist.PrefixStore(f"maskedlm/attempt_{attempt}", store)


class BatchSource(Protocol):
    def step_batches(self, step: int) -> list[Batch]:
        """This rank's micro-batches for global ``step`` (deterministic in ``step``)."""

    def eval_batches(self) -> list[Batch]:
        """Held-out batches, masked with a fixed seed."""


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: no weight decay on biases, LayerNorm and the SBO/MLM output bias."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "LayerNorm" in name else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(model: nn.Module, cfg: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW with the fused kernel (one pass over all parameters; CPU and CUDA), falling
    back to the per-tensor loop where the build lacks it."""
    kw = dict(lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps)
    try:
        return torch.optim.AdamW(param_groups(model, cfg.weight_decay), fused=True, **kw)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(param_groups(model, cfg.weight_decay), **kw)


def lr_shape(frac: float, warmup: float, kind: str = "linear", decay: float = 0.2) -> float:
    """The learning-rate multiplier at ``frac`` (0..1) of the run.

    >>> lr_shape(0.5, 0.1, "wsd", 0.2), round(lr_shape(0.9, 0.1, "wsd", 0.2), 3)
    (1.0, 0.293)
    """
    if frac < warmup:
        return max(1e-3, frac / warmup)
    if frac >= 1.0:
        return 0.0
    if kind == "wsd":
        into = (frac - (1.0 - decay)) / decay  # share of the decay phase done
        return 1.0 if into <= 0 else max(0.0, 1.0 - math.sqrt(min(1.0, into)))
    return max(0.0, (1.0 - frac) / (1.0 - warmup))


def linear_schedule(warmup: int, total: int, progress: Callable[[], float] | None = None,
                    kind: str = "linear", decay: float = 0.2) -> Callable[[int], float]:
    """Warmup to the peak, then ``kind`` decay (see :func:`lr_shape`) ending at ``total``.

    With ``progress`` (the used share of a wall-clock budget), the schedule follows
    whichever runs out first, steps or time, as in cramming (Geiping & Goldstein 2023).
    """
    def f(step: int) -> float:
        if progress is not None:  # warmup and decay over the used share of the budget
            frac = max(step / max(1, total), progress())
            return lr_shape(frac, max(warmup / max(1, total), 1e-6), kind, decay)
        if step < warmup:
            return (step + 1) / max(1, warmup)
        return lr_shape(step / max(1, total), warmup / max(1, total), kind, decay)
    return f


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


# What clusters and users send a job they want stopped: the scheduler's SIGTERM, Ctrl-C, and
# SLURM's warning signal (``#SBATCH --signal=USR1@120``).
STOP_SIGNALS = ("SIGTERM", "SIGINT", "SIGUSR1")


def _install_stop_handlers(handler: Any) -> dict[int, Any]:
    """``handler`` for every stop signal; the previous handlers, to put back. Handlers can
    only be installed in the main thread: elsewhere nothing is installed."""
    old: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for name in STOP_SIGNALS:
            sig = getattr(signal, name, None)
            if sig is not None:
                old[sig] = signal.signal(sig, handler)
    return old


class RaiseOnSignal:
    """Outside the training loop (data preparation, model building), SIGTERM, SIGINT and
    SIGUSR1 stop at once with :class:`~maskedlm.errors.Preempted` saying that no
    checkpoint was written and why; :class:`StopSignals` takes over inside the loop.

    >>> with RaiseOnSignal("while preparing the data"):  # doctest: +SKIP
    ...     prepare()
    """

    def __init__(self, why: str) -> None:
        self.why = why
        self._old: dict[int, Any] = {}

    def __enter__(self) -> RaiseOnSignal:
        self._old = _install_stop_handlers(self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        raise Preempted(signal.Signals(signum).name, 0, None, why=self.why)

    def release(self) -> None:
        """Put the previous handlers back (the loop's own take over); idempotent."""
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old.clear()

    def __exit__(self, *exc: Any) -> None:
        self.release()


class StopSignals:
    """While active, SIGTERM, SIGINT and SIGUSR1 only ask the loop to stop.

    The handler records the first signal; the loop finishes its step, writes a checkpoint
    and raises :class:`~maskedlm.errors.Preempted`. Later signals (a second Ctrl-C while
    the checkpoint is written) are acknowledged and ignored, so the save completes and
    the previous checkpoint is only replaced by a complete one. Handlers can only be
    installed in the main thread; elsewhere this never fires.

    >>> with StopSignals() as stop:  # doctest: +SKIP
    ...     if stop.received: ...
    """

    def __init__(self) -> None:
        self.received: str | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        self._old = _install_stop_handlers(self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        if self.received is None:
            self.received = name
        else:  # os.write: print() is not safe to re-enter from a handler
            os.write(2, f"maskedlm: {name} again: finishing the checkpoint first\n".encode())

    def __exit__(self, *exc: Any) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old.clear()


TENSOR_KEYS = ("input_ids", "labels", "token_type_ids", "attention_mask", "next_sentence_label",
               "sbo_left", "sbo_right", "sbo_pos", "sequence_ids")


def to_tensors(batch: Batch, device: torch.device) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(np.ascontiguousarray(batch[k])).to(device, non_blocking=True)
            for k in TENSOR_KEYS if k in batch}


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 matmuls natively: CUDA with bf16 support, or a CPU
    with AVX512-BF16 or AMX (where bf16 autocast ran 1.6-2.0x our fp32 pretraining,
    benchmarks/RESULTS.md); elsewhere bf16 is emulated and slower than fp32."""
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        cpu = torch.cpu
        return bool(getattr(cpu, "_is_avx512_bf16_supported", lambda: False)()
                    or getattr(cpu, "_is_amx_tile_supported", lambda: False)())
    return False


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` -> ``bf16`` where :func:`native_bf16`, else ``fp32``; others unchanged."""
    if precision != "auto":
        return precision
    return "bf16" if native_bf16(device) else "fp32"


def autocast(precision: str, device: torch.device):
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()


TENSORBOARD_DIR = "tb"


def tensorboard_writer(out_dir: Path) -> Any:
    """A ``SummaryWriter`` on ``out_dir/tb/`` with the ``tensorboard`` extra installed, else None."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # the extra is optional: metrics.jsonl alone, as before
        return None
    return SummaryWriter(str(Path(out_dir) / TENSORBOARD_DIR))


def write_scalars(writer: Any, record: dict[str, Any], step: int, prefix: str = "") -> None:
    """Every number in ``record`` as a scalar at ``step``; nested dicts as ``dev/f1`` tags.

    Flushed before returning: the writer's thread appends to its event file by path, so
    nothing may be pending while fine-tuning swaps the run directory (and ``tb/`` in it)."""
    if writer is None:
        return
    _add_scalars(writer, record, step, prefix)
    writer.flush()


def _add_scalars(writer: Any, record: dict[str, Any], step: int, prefix: str) -> None:
    for k, v in record.items():
        if isinstance(v, dict):
            _add_scalars(writer, v, step, f"{prefix}{k}/")
        elif k != "step" and isinstance(v, int | float) and not isinstance(v, bool):
            writer.add_scalar(prefix + k, v, step)


class MetricsLog:
    """metrics.jsonl (+ TensorBoard scalars in ``tb/`` when installed); only rank 0 writes."""

    def __init__(self, out_dir: Path, enabled: bool, resume_step: int = 0) -> None:
        self.enabled = enabled
        self.path = out_dir / "metrics.jsonl"
        self.tb = None
        if not enabled:
            return
        out_dir.mkdir(parents=True, exist_ok=True)
        if resume_step:  # drop lines logged after the checkpoint, and a torn last line
            repair_jsonl(self.path, keep=lambda r: r.get("step", 0) <= resume_step)
        elif self.path.exists() or self.path.is_symlink():
            self.path.unlink()
        self.tb = tensorboard_writer(out_dir)

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        append_line(self.path, json.dumps(record))
        write_scalars(self.tb, record, record["step"])

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()  # flushes the event file


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


def _all_reduce(values: list[float], di: DistInfo) -> list[float]:
    if di.world_size == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=di.device if di.device.type == "cuda" else "cpu")
    dist.all_reduce(t)
    return t.tolist()


def train(model: nn.Module, source: BatchSource, cfg: TrainConfig, out_dir: Path,
          save: Callable[[nn.Module, dict[str, Any]], Path | None], di: DistInfo | None = None,
          resume_state: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train ``model`` for ``cfg.max_steps`` global steps; returns the last log record.

    ``save(model, training_state)`` is called on rank 0 at every save point and returns
    where it wrote. SIGTERM, SIGINT or SIGUSR1 end the run after the current step with a
    checkpoint and :class:`~maskedlm.errors.Preempted` (see :class:`StopSignals`).
    """
    tune_allocator()
    di = di or DistInfo()
    model.to(di.device)
    model.train()
    optimizer = make_optimizer(model, cfg, di.device)
    warmup = int(cfg.warmup_ratio * cfg.max_steps)
    t_start = time.perf_counter()
    time_used = (lambda: (time.perf_counter() - t_start) / cfg.max_time) if cfg.max_time > 0 else None
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, linear_schedule(warmup, cfg.max_steps, time_used, cfg.schedule, cfg.decay_ratio))
    start = 0
    window = _new_window()
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

    def checkpoint(step: int, record: dict[str, Any] | None) -> Path | None:
        """Save on rank 0 (all ranks call it: the log window is summed over ranks)."""
        state = {"step": step, "optimizer": optimizer.state_dict(),
                 "scheduler": scheduler.state_dict(), "train_config": asdict(cfg),
                 "window": _window_state(window, di)}
        if not di.is_main:
            return None
        if record is not None and eval_batches:
            record.update(evaluate(model, eval_batches, di.device, cfg.precision))
        return save(model, state)

    record: dict[str, Any] = {}
    data_wait = DataWaitMonitor(di.device)
    # the handlers go in before the first evaluation and the prefetcher: a signal during
    # either counts
    with StopSignals() as stop:
        if start == 0 and cfg.eval_every and di.is_main and eval_batches:
            # the starting point, e.g. for continued pretraining from --init
            log.write({"step": 0, **evaluate(model, eval_batches, di.device, cfg.precision)})
        if _any_rank([stop.received is not None], di)[0]:
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
                _forward_backward(ddp, model, micro, cfg, di, window)
                _optimizer_step(model, optimizer, scheduler, cfg.clip_grad, step)
                done = step + 1
                if cfg.max_time > 0:  # a time budget: show the steps it will allow, not max_steps
                    frac = (time.perf_counter() - t_start) / cfg.max_time
                    if frac > 0.02:
                        bar.total = min(cfg.max_steps, max(done, round(done / frac)))
                bar.update(1)
                # one all-reduce: every rank stops (and saves) at the same step
                signalled, out_of_time = _any_rank(
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
                    window = _new_window()
                if last or (cfg.save_every and done % cfg.save_every == 0):
                    record = record or {"step": done}
                    where = checkpoint(done, record)
                elif stopping:  # no evaluation: a scheduler's grace period is short
                    where = checkpoint(done, None)
                elif cfg.eval_every and done % cfg.eval_every == 0 and di.is_main and eval_batches:
                    record = record or {"step": done}
                    record.update(evaluate(model, eval_batches, di.device, cfg.precision))
                if record:
                    record["elapsed_s"] = round(time.perf_counter() - t_start, 2)
                    log.write(record)
                    if "eval_mlm_accuracy" in record and di.is_main:
                        rtd = (f", rtd acc {record['eval_rtd_accuracy']:.4f} auc "
                               f"{record['eval_rtd_auc']:.4f}" if "eval_rtd_auc" in record else "")
                        bar.write(f"step {done}: eval mlm acc {record['eval_mlm_accuracy']:.4f} "
                                  f"ppl {record['eval_perplexity']:.2f}{rtd}")
                if stopping:
                    _barrier(di)  # every rank leaves after rank 0 has saved
                    raise Preempted(stop.received or "a signal on another rank", done,
                                    str(where or out_dir))
                if out_of_time:
                    break
        finally:
            prefetch.close()
            bar.close()
            log.close()
    return record


def _any_rank(flags: list[bool], di: DistInfo) -> list[bool]:
    """Whether each flag holds on any rank (so that all ranks stop at the same step)."""
    if di.world_size == 1:
        return flags
    return [v > 0 for v in _all_reduce([float(f) for f in flags], di)]


def _barrier(di: DistInfo) -> None:
    if di.world_size > 1:
        dist.barrier()


WINDOW_SUMS = ("mlm", "sbo", "nsp", "n", "seq", "correct", "tokens", "steps",
               "rtd", "rtd_correct", "rtd_n")


def _window_state(window: dict[str, Any], di: DistInfo) -> dict[str, Any]:
    """The open log window summed over ranks, saved so a resumed run logs the same losses."""
    sums = _all_reduce([float(window[k]) for k in WINDOW_SUMS], di)
    return {k: type(window[k])(v) for k, v in zip(WINDOW_SUMS, sums, strict=True)}


def _new_window() -> dict[str, Any]:
    """Sums over the steps since the last log record (see :func:`_log_record`)."""
    return {"loss": 0.0, "mlm": 0.0, "sbo": 0.0, "nsp": 0.0, "n": 0, "seq": 0, "correct": 0.0,
            "tokens": 0, "wait": 0.0, "t0": time.perf_counter(), "steps": 0,
            "rtd": 0.0, "rtd_correct": 0.0, "rtd_n": 0, "rtd_weight": 0.0}


def _real_tokens(b: Batch) -> int:
    return int(b["attention_mask"].sum()) if "attention_mask" in b else int(b["input_ids"].size)


def _forward_backward(ddp: nn.Module, model: nn.Module, micro: list[Batch], cfg: TrainConfig,
                      di: DistInfo, window: dict[str, Any]) -> None:
    """Gradients of one global step, accumulated over its micro-batches; adds to ``window``.

    Each loss is normalised by the step's global target count (all micro-batches, all
    ranks), so accumulation and data parallelism equal one large batch.
    """
    n_local = sum(int((b["labels"] != -100).sum()) for b in micro)
    seq_local = sum(b["input_ids"].shape[0] for b in micro)
    tok_local = sum(_real_tokens(b) for b in micro)
    n_global, seq_global, tok_global = _all_reduce([float(n_local), float(seq_local),
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


def _optimizer_step(model: nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: torch.optim.lr_scheduler.LRScheduler, clip_grad: float,
                    step: int) -> None:
    """Clip, check, step the optimizer and the schedule, release the gradients."""
    # clip_grad 0 means no clipping: the norm is still computed, for the NaN check
    gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad or math.inf)
    if not torch.isfinite(gnorm):
        raise MaskedLMError(f"step {step + 1}: the loss or gradients turned NaN/inf; "
                            "lower --lr or use --precision fp32 (last checkpoint kept)")
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)


def _log_record(step: int, w: dict[str, Any], lr: float, di: DistInfo) -> dict[str, Any]:
    """Averages over the window since the last log, summed over ranks."""
    mlm, sbo, nsp, n, seq, correct, tokens, rtd, rtd_correct, rtd_n = _all_reduce(
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
