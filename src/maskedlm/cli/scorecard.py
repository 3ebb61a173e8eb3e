"""``maskedlm scorecard MODEL``: fine-tune and probe an encoder on the reference tasks.

>>> from maskedlm.cli import main
>>> main(["scorecard", "runs/span-mini", "--quick", "--out", "runs/card"])  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from maskedlm.errors import MaskedLMError


def register(sub: argparse._SubParsersAction) -> None:
    from maskedlm.scorecard import DEFAULT_TASKS, TASKS

    p = sub.add_parser("scorecard", help="how good an encoder is: fine-tune and probe it on "
                                         "the reference tasks, one score each and their mean")
    p.add_argument("model", help="a run, a checkpoint or a Hugging Face BERT directory")
    p.add_argument("--tasks", default=",".join(DEFAULT_TASKS),
                   help=f"comma-separated, from {','.join(TASKS)} (default: all)")
    p.add_argument("--quick", action="store_true",
                   help="capped training per task (~15 min for a mini model on 2 CPU cores)")
    p.add_argument("--out", default=None, help="directory for scorecard.json/.md/.png "
                                               "(default: runs/scorecard-NAME)")
    p.add_argument("--overwrite", action="store_true",
                   help="write the card into an --out that exists but is not a scorecard folder "
                        "(only the card's files are written there; a run is never used)")
    p.add_argument("--name", default=None, help="the card's column name (default: --out's name)")
    p.add_argument("--compare", action="append", default=[], metavar="CARD.json",
                   help="earlier scorecards to put side by side (repeatable)")
    p.add_argument("--data-root", default=os.environ.get("MASKEDLM_DATA", "../shared/data"),
                   help="folder holding the task datasets (default: $MASKEDLM_DATA or ../shared/data)")
    p.add_argument("--file", action="append", default=[], metavar="TASK:SPLIT=PATH",
                   help="use PATH for one task's split, e.g. sst2:train=my.tsv (repeatable)")
    p.add_argument("--random-init", action="store_true",
                   help="score the model's architecture and tokenizer with fresh random weights")
    p.add_argument("--limit", type=int, default=None,
                   help="cap every task's training examples, for smoke tests; recorded in the card "
                        "(default: no cap)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--json", action="store_true", help="print the card as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run_scorecard)


def run_scorecard(a: argparse.Namespace) -> int:
    from maskedlm.scorecard import load_card, markdown, scorecard, write_card

    files = {}
    for item in a.file:
        key, sep, path = item.partition("=")
        if not sep or ":" not in key:
            raise MaskedLMError(f"--file {item!r}: expected TASK:SPLIT=PATH")
        files[key] = path
    if a.limit is not None and a.limit < 2:
        raise MaskedLMError(f"--limit must be >= 2, got {a.limit}")
    compare = [load_card(c) for c in a.compare]  # fail before hours of work, not after
    tasks = [t.strip() for t in a.tasks.split(",") if t.strip()]
    out = Path(a.out or f"runs/scorecard-{Path(a.model).name}")
    card = scorecard(a.model, tasks, quick=a.quick, data_root=a.data_root, out=out, files=files,
                     random_init=a.random_init, name=a.name, limit=a.limit, device=a.device,
                     progress=not a.no_progress, overwrite=a.overwrite)
    write_card(card, out, compare)
    if a.json:
        print(json.dumps(card))
    else:
        print(markdown([card, *compare]), end="")
        print(f"card: {out}/scorecard.json, .md, .png ({card['seconds'] / 60:.1f} min)")
    return 0
