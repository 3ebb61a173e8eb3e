"""The one exception type for user errors.

The CLI turns a :class:`MaskedLMError` into a single line on stderr and exit code 2;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class MaskedLMError(Exception):
    """A user error: bad input, a missing file, an impossible setting.

    The message must name the file/line/field at fault, in one line.

    >>> raise MaskedLMError("corpus.txt: empty corpus")  # doctest: +SKIP
    """


# Exit codes of the ``maskedlm`` command (sysexits.h where one fits):
EXIT_OK = 0
EXIT_BUG = 1  # an unexpected exception: a bug, with its traceback
EXIT_USER_ERROR = 2  # a MaskedLMError: one line on stderr
EXIT_PREEMPTED = 75  # EX_TEMPFAIL: stopped by a signal, checkpoint saved; rerun with --resume
EXIT_INTERRUPTED = 130  # Ctrl-C outside a training loop: nothing saved


class Preempted(Exception):
    """Training stopped by SIGTERM, SIGINT or SIGUSR1: after a checkpoint was written, or
    (``checkpoint`` None) before there was anything to save, saying ``why``.

    The CLI prints the message in one line and exits with :data:`EXIT_PREEMPTED`.
    """

    def __init__(self, signal_name: str, step: int, checkpoint: str | None,
                 why: str = "") -> None:
        self.signal_name, self.step, self.checkpoint = signal_name, step, checkpoint
        if checkpoint is None:
            msg = (f"stopped by {signal_name}; no checkpoint was written"
                   + (f" ({why})" if why else "") + "; rerun the same command to start again")
        else:
            msg = (f"stopped by {signal_name} after step {step}; checkpoint saved to "
                   f"{checkpoint} (continue with --resume)")
        super().__init__(msg)
