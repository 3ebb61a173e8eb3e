"""``maskedlm`` command line: thin subcommands over the typed functions.

User errors (:class:`~maskedlm.errors.MaskedLMError`) print one line on stderr and
exit with code 2. Exit codes: 0 done; 1 a bug (with its traceback); 2 a user error;
75 stopped by SIGTERM/SIGINT/SIGUSR1 with a checkpoint saved (rerun with ``--resume``);
130 Ctrl-C outside a training loop (nothing saved). Each module here registers the subcommands of one part of the
package: :mod:`.pretrain` (data, pretraining, fill-mask, export), :mod:`.tasks`
(fine-tuning), :mod:`.embeddings` (vectors, similarity, senses) and
:mod:`.scorecard` (the reference tasks).

>>> from maskedlm.cli import main
>>> main(["--version"])  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import sys
import warnings
from typing import Any

from maskedlm.cli import embeddings, pretrain, scorecard, tasks
from maskedlm.errors import (
    EXIT_INTERRUPTED,
    EXIT_PREEMPTED,
    EXIT_USER_ERROR,
    MaskedLMError,
    Preempted,
)


class Parser(argparse.ArgumentParser):
    """argparse with its errors in one line, like every other user error (exit code 2);
    subcommand parsers are made of the same class."""

    def error(self, message: str) -> Any:  # type: ignore[override]
        self.exit(EXIT_USER_ERROR, f"maskedlm: error: {self.prog}: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="maskedlm", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version="maskedlm 0.1.0")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in (pretrain, tasks, embeddings, scorecard):
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    if not argv:
        parser.print_help()
        return 0
    try:
        a = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version, or a usage error already printed
        return e.code if isinstance(e.code, int) else EXIT_USER_ERROR
    if not getattr(a, "func", None):
        parser.print_help()
        return 0
    warnings.simplefilter("default")
    warnings.formatwarning = lambda msg, cat, *args, **kw: f"warning: {msg}\n"  # type: ignore[assignment]
    try:
        return int(a.func(a) or 0)
    except MaskedLMError as e:
        print(f"maskedlm: error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    except Preempted as e:
        print(f"maskedlm: {e}", file=sys.stderr)
        return EXIT_PREEMPTED
    except KeyboardInterrupt:
        print("maskedlm: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return 0


def entry() -> Any:  # pragma: no cover - console script
    sys.exit(main())
