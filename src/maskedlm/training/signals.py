"""Stopping cleanly: SIGTERM, SIGINT and SIGUSR1 end a run with a checkpoint (in the loop)
or with a one-line reason (before it)."""

from __future__ import annotations

import os
import signal
import threading
from typing import Any

from maskedlm.errors import Preempted

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

