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
    """Training stopped by SIGTERM, SIGINT or SIGUSR1 after a checkpoint was written.

    The CLI prints :attr:`message` in one line and exits with :data:`EXIT_PREEMPTED`.
    """

    def __init__(self, signal_name: str, step: int, checkpoint: str) -> None:
        self.signal_name, self.step, self.checkpoint = signal_name, step, checkpoint
        super().__init__(f"stopped by {signal_name} after step {step}; checkpoint saved to "
                         f"{checkpoint} (continue with --resume)")
