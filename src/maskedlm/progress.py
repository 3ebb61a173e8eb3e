"""Progress for long jobs: tqdm's live bar on a terminal, plain lines everywhere else.

A log file, CI or a scheduler's output gets no carriage-return redraws: one line every
``every`` seconds with the count, the rate, the time left and the latest figures
(``pretrain: step 300/1000 (30%) | 4.10 step/s | ETA 2m51s | loss 3.412``), and a last
line when the job ends.

>>> bar = progress(1000, "pretrain")  # doctest: +SKIP
>>> bar.update(1); bar.set_postfix(loss="3.41"); bar.close()  # doctest: +SKIP
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from tqdm import tqdm

DEFAULT_EVERY = 30.0  # seconds between plain lines: a screenful an hour in a log file


def progress(total: int | None, desc: str, *, enabled: bool = True, initial: int = 0,
             unit: str = "step", every: float = DEFAULT_EVERY, stream: TextIO | None = None
             ) -> Any:
    """A tqdm bar when ``stream`` (stderr) is a terminal, else a :class:`PlainProgress`.

    >>> type(progress(10, "x", stream=io.StringIO())).__name__  # doctest: +SKIP
    'PlainProgress'
    """
    stream = stream or sys.stderr
    if enabled and not _isatty(stream):
        return PlainProgress(total, desc, initial=initial, unit=unit, every=every, stream=stream)
    return tqdm(total=total, initial=initial, desc=desc, unit=unit, dynamic_ncols=True,
                disable=not enabled, file=stream)


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or unusual stream
        return False


class PlainProgress:
    """The part of tqdm's interface the loops use, printing one line per ``every`` seconds."""

    def __init__(self, total: int | None, desc: str, *, initial: int = 0, unit: str = "step",
                 every: float = DEFAULT_EVERY, stream: TextIO | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.total, self.desc, self.unit, self.every = total, desc, unit, every
        self.n = self._start = self._printed = initial
        self.stream = stream or sys.stderr
        self.clock = clock
        self._t0 = self._last = clock()
        self.postfix: dict[str, str] = {}

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if exc_type is None:  # a failed job's error stays the last line
            self.close()

    def update(self, n: int = 1) -> None:
        self.n += n
        now = self.clock()
        if now - self._last >= self.every:
            self._line(now)

    def set_postfix(self, refresh: bool = True, **values: Any) -> None:
        self.postfix = {k: str(v) for k, v in values.items()}

    def write(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def close(self) -> None:
        if self.n != self._printed:  # the figures at the end
            self._line(self.clock())

    def line(self, now: float) -> str:
        """``desc: n/total unit (pct) | rate | ETA | postfix`` at time ``now``."""
        rate = (self.n - self._start) / max(now - self._t0, 1e-9)
        if self.total:
            parts = [f"{self.desc}: {self.unit} {self.n}/{self.total} "
                     f"({100 * self.n / self.total:.0f}%)"]
        else:
            parts = [f"{self.desc}: {self.unit} {self.n}"]
        parts.append(f"{rate:.2f} {self.unit}/s")
        if self.total and rate > 0:
            parts.append(f"ETA {_duration(max(0.0, (self.total - self.n) / rate))}")
        parts += [f"{k} {v}" for k, v in self.postfix.items()]
        return " | ".join(parts)

    def _line(self, now: float) -> None:
        print(self.line(now), file=self.stream, flush=True)
        self._last, self._printed = now, self.n


def _duration(seconds: float) -> str:
    """``42s``, ``3m05s``, ``2h07m``.

    >>> _duration(185), _duration(7620)
    ('3m05s', '2h07m')
    """
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"
