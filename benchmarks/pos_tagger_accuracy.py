"""Accuracy of the part-of-speech tagger `wsd predict` uses (``wsd train --pos-train``).

    PYTHONPATH=src python benchmarks/pos_tagger_accuracy.py [--data ../shared/data]

Trains NLTK's averaged perceptron on UD English LinES + ParTUT train, as docs/wsd.md
recommends, and scores it on the EWT, LinES and ParTUT dev sets: UPOS accuracy, and how
often a NOUN/VERB/ADJ/ADV word gets the right WordNet part of speech (what restricts the
candidate senses). Nothing is tuned on these dev sets.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from maskedlm.embeddings.wsd import PREDICT_POS, PosTagger, read_conllu_tags

TRAIN = ["ud_en_lines/en_lines-ud-train.conllu", "ud_en_partut/en_partut-ud-train.conllu"]
DEV = ["ud_en_ewt/en_ewt-ud-dev.conllu", "ud_en_lines/en_lines-ud-dev.conllu",
       "ud_en_partut/en_partut-ud-dev.conllu"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    a = ap.parse_args()
    root = Path(a.data)
    print(f"load average {os.getloadavg()[0]:.1f}")
    t = time.perf_counter()
    tagger = PosTagger.train([root / p for p in TRAIN])
    print(f"trained on {tagger.info['words']:,} words in {time.perf_counter() - t:.0f} s")
    for name in DEV:
        right = total = wn_right = wn_total = 0
        for sentence in read_conllu_tags(root / name):
            gold = [tag for _, tag in sentence]
            tags = tagger.tag([w for w, _ in sentence])
            right += sum(p == g for p, g in zip(tags, gold, strict=True))
            total += len(gold)
            for p, g in zip(tags, gold, strict=True):
                if g in ("NOUN", "VERB", "ADJ", "ADV"):
                    wn_total += 1
                    wn_right += PREDICT_POS.get(p) == PREDICT_POS[g]
        print(f"{name}: UPOS {right / total:.3f} ({total:,} words); WordNet POS of content words "
              f"{wn_right / wn_total:.3f} ({wn_total:,})")


if __name__ == "__main__":
    main()
