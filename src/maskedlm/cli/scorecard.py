"""``maskedlm scorecard MODEL``: fine-tune and probe an encoder on the reference tasks.

>>> from maskedlm.cli import main
>>> main(["scorecard", "runs/span-mini", "--quick", "--out", "runs/card"])  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import json

from maskedlm.cli.args import add_fields
from maskedlm.errors import MaskedLMError


def register(sub: argparse._SubParsersAction) -> None:
    from maskedlm.options import ScorecardOptions

    p = sub.add_parser("scorecard", help="how good an encoder is: fine-tune and probe it on "
                                         "the reference tasks, one score each and their mean")
    p.add_argument("model", help="a run, a checkpoint or a Hugging Face BERT directory")
    add_fields(p, ScorecardOptions)
    p.add_argument("--json", action="store_true", help="print the card as JSON")
    p.set_defaults(func=run_scorecard)


def run_scorecard(a: argparse.Namespace) -> int:
    from maskedlm.scorecard import card_dir, load_card, markdown, scorecard, write_card

    files = {}
    for item in a.file:
        key, sep, path = item.partition("=")
        if not sep or ":" not in key:
            raise MaskedLMError(f"--file {item!r}: expected TASK:SPLIT=PATH")
        files[key] = path
    if a.limit is not None and a.limit < 2:
        raise MaskedLMError(f"--limit must be >= 2, got {a.limit}")
    compare = [load_card(c) for c in a.compare]  # fail before hours of work, not after
    tasks = [t.strip() for t in a.tasks.split(",") if t.strip()] if a.tasks else None
    out = card_dir(a.model, a.out)
    card = scorecard(a.model, tasks, quick=a.quick, data_root=a.data_root, out=out, files=files,
                     random_init=a.random_init, name=a.name, limit=a.limit, device=a.device,
                     progress=a.progress, overwrite=a.overwrite)
    write_card(card, out, compare)
    if a.json:
        print(json.dumps(card))
    else:
        print(markdown([card, *compare]), end="")
        print(f"card: {out}/scorecard.json, .md, .png ({card['seconds'] / 60:.1f} min)")
    return 0
