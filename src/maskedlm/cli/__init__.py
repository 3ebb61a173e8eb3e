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
import os
import sys
import warnings
from typing import Any

from maskedlm import __version__
from maskedlm.cli import embeddings, pretrain, scorecard, tasks
from maskedlm.errors import (
    EXIT_INTERRUPTED,
    EXIT_PREEMPTED,
    EXIT_USER_ERROR,
    MaskedLMError,
    Preempted,
)
from maskedlm.files import WRITE_FAULTS, disk_errno


class Parser(argparse.ArgumentParser):
    """argparse with its errors in one line, like every other user error (exit code 2);
    subcommand parsers are made of the same class."""

    def error(self, message: str) -> Any:  # type: ignore[override]
        self.exit(EXIT_USER_ERROR, f"maskedlm: error: {self.prog}: {message} (see --help)\n")


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """Every option's help ends with its default, unless the help already states it.

    Like ``argparse.ArgumentDefaultsHelpFormatter``, but flags read ``(default: off)``
    rather than ``False``, repeatable options ``(default: none)`` rather than ``[]``, and a
    ``None`` default adds nothing: such a flag's help says in words what happens without
    it (``tests/cli/test_cli_help.py`` checks that every one does).
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (not action.option_strings or action.required or action.default is argparse.SUPPRESS
                or action.default is None or "default" in text.lower()):
            return text
        d = action.default
        if isinstance(d, bool):
            shown = "on" if d else "off"
        elif d == []:
            shown = "none"
        else:
            shown = "%(default)s"
        return f"{text} (default: {shown})" if text else f"(default: {shown})"


def iter_parsers(parser: argparse.ArgumentParser):
    """``parser`` and every subcommand's parser below it, depth first."""
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):  # aliases share a parser
                yield from iter_parsers(child)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="maskedlm", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"maskedlm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in (pretrain, tasks, embeddings, scorecard):
        module.register(sub)
    for p in iter_parsers(parser):
        p.formatter_class = DefaultsHelpFormatter
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
    _decode_text_args(a)
    a.command_line = ["maskedlm", *argv]  # recorded in run records and model cards
    if not getattr(a, "func", None):
        parser.print_help()
        return 0
    warnings.simplefilter("default")
    warnings.formatwarning = lambda msg, cat, *args, **kw: f"warning: {msg}\n"  # type: ignore[assignment]
    try:
        return int(a.func(a) or 0)
    except MaskedLMError as e:
        print(f"maskedlm: error: {_one_line(str(e))}", file=sys.stderr)
        return EXIT_USER_ERROR
    except Preempted as e:
        print(f"maskedlm: {e}", file=sys.stderr)
        return EXIT_PREEMPTED
    except KeyboardInterrupt:
        print("maskedlm: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return 0
    except Exception as e:  # the disk said no (full, read-only, permissions): the user's to fix
        code = disk_errno(e)
        if code is None:
            raise
        filename = getattr(e, "filename", None)
        where = f"{filename}: " if filename else ""
        print(f"maskedlm: error: {where}{WRITE_FAULTS[code]} ({type(e).__name__}: "
              f"{_one_line(str(e))[:200]})", file=sys.stderr)
        return EXIT_USER_ERROR


# Arguments that are text for the model (prompts, questions), never paths.
TEXT_ARGS = ("text", "question", "context", "pair")


def _decode_text_args(a: argparse.Namespace) -> None:
    """Text arguments as the UTF-8 the user typed, whatever the locale, and output that
    never fails to print.

    Under a non-UTF-8 locale (``LANG=C`` with UTF-8 mode off) Python decodes ``argv``
    as ASCII with surrogate escapes, so "Café" arrives as ``'Caf\\udcc3\\udca9'``, which
    the tokenizer refuses; the original bytes are recovered and read as UTF-8. Paths are
    left as they are (the file system takes them back byte for byte)."""
    fs = sys.getfilesystemencoding()
    for name in TEXT_ARGS:
        v = getattr(a, name, None)
        if isinstance(v, str):
            setattr(a, name, os.fsencode(v).decode("utf-8", "replace") if fs.lower() not in (
                "utf-8", "utf8") else v)
        elif isinstance(v, list):
            setattr(a, name, [os.fsencode(x).decode("utf-8", "replace") if isinstance(x, str)
                              and fs.lower() not in ("utf-8", "utf8") else x for x in v])
    for stream in (sys.stdout, sys.stderr):
        enc = (getattr(stream, "encoding", None) or "").lower().replace("-", "")
        if enc != "utf8" and hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")  # an ASCII terminal: \xe9, not a crash


MAX_MESSAGE = 2000  # characters of one error line: a 100k-character prompt is not echoed whole


def _one_line(message: str) -> str:
    """A message as one line of bounded length (inputs quoted in it may hold newlines)."""
    flat = " ".join(message.split("\n"))
    return flat if len(flat) <= MAX_MESSAGE else flat[:MAX_MESSAGE - 40] + f"... [{len(flat)} characters]"


def entry() -> Any:  # pragma: no cover - console script
    sys.exit(main())
