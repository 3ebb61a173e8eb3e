"""Every flag of every subcommand explains itself and shows its default; --version works."""

from __future__ import annotations

import argparse
from importlib.metadata import version

from maskedlm.cli import build_parser, iter_parsers, main

SKIP = (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)


def test_every_option_of_every_subcommand_has_help_with_its_default():
    parsers = list(iter_parsers(build_parser()))
    assert len(parsers) > 20  # the walk reaches nested subcommands (finetune tag, wsd eval, ...)
    missing = []
    for p in parsers:
        fmt = p._get_formatter()
        for a in p._actions:
            if isinstance(a, SKIP):
                continue
            shown = fmt._expand_help(a) if a.help is not None else ""
            optional = a.option_strings and not a.required
            if not a.help or optional and "default" not in shown.lower():
                missing.append(f"{p.prog} {'/'.join(a.option_strings) or a.dest}: {shown!r}")
    assert not missing, "\n".join(missing)


def test_pretrain_help_shows_the_defaults_the_issue_named(capsys):
    assert main(["pretrain", "--help"]) == 0  # main() turns argparse's exit into a code
    text = " ".join(capsys.readouterr().out.split())
    assert "tokens per training sequence (default: 128)" in text
    assert "(default: runs/default)" in text
    assert "--no-progress no progress bar or progress lines (default: off)" in text


def test_version_comes_from_the_package_metadata(capsys):
    expected = version("maskedlm")  # pyproject.toml's, as installed (make setup: pip install -e)
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"maskedlm {expected}"


def test_help_and_version_import_no_torch():
    # `maskedlm --help` answered in 5.5 s while the scorecard module imported torch at the
    # top; the parser must be built from torch-free modules (issue #29).
    import subprocess
    import sys

    code = ("import sys; from maskedlm.cli import build_parser; build_parser(); "
            "print(sorted(m for m in ('torch', 'transformers', 'tokenizers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
