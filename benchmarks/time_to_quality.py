"""Minutes to a held-out masked-token accuracy: ``maskedlm pretrain`` (budget recipe, --arch
bert and modernbert) against transformers' BertForMaskedLM + DataCollatorForLanguageModeling
+ AdamW with a linear schedule, on the same shards, tokenizer and cores.

Both are scored on the same held-out sequences with the same masks: our pretrain's own
evaluation set (the shards' valid split, 15% masking with 80/10/10, the run's seed), which
the peer rebuilds here from the same code. The peer runs at its own settings (post-LN,
dropout 0.1, 15% masking by its collator, AdamW with transformers' defaults, 6% warm-up
then linear decay to the budget's end, fp32, batch 32), once per learning rate of
``--peer-lrs``; the best one is chosen on a selection split carved from the training
sequences (never on the held-out set the curves report). Each system runs in its own
process; ``--parallel`` runs them all at once with ``--threads`` threads each, so every
system sees the same machine load.

Minutes are training minutes: the time spent scoring the held-out set is left out of every
curve (the peer's clock stops while it evaluates; ours logs ``eval_s`` and it is subtracted),
since the peer's full-vocabulary fp32 evaluation costs it far more than ours costs us. Our
``--max-time`` budget still pays for our evaluations, so we train a little less than the peer.

Prints one JSON line per system, the accuracy-against-minutes curves, and for each of ours
the ratio (peer's minutes to its final accuracy) / (our minutes to the same accuracy).

    python benchmarks/time_to_quality.py --data SHARDS --minutes 60 --parallel --threads 1
    python benchmarks/time_to_quality.py --data SHARDS --minutes 0.5 --size tiny  # smoke run
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve()
SELECTION_SEQUENCES = 256  # the peer's learning-rate selection split, carved from train


# ----------------------------------------------------------------------------- shared pieces
def eval_batches(data: str, seq_len: int, sequences: int, seed: int, batch_size: int):
    """The held-out batches our ``pretrain`` evaluates on (budget recipe, BERT rows)."""
    from maskedlm.data.shards import ShardSet
    from maskedlm.pretrain import PretrainBatches, PretrainOptions, masking_config
    from maskedlm.training.config import TrainConfig
    from maskedlm.training.dist import DistInfo

    shards = ShardSet.load(data)
    opts = PretrainOptions(data=data, seq_len=seq_len, eval_sequences=sequences,
                           train=TrainConfig(seed=seed, batch_size=batch_size))
    src = PretrainBatches(shards, opts.recipe, seq_len, masking_config(opts), shards.tokenizer(),
                          batch_size, 1, seed, DistInfo(), sequences,
                          masking_config(opts, for_eval=True))
    return src.eval_batches()


def time_to(curve: list[tuple[float, float]], target: float) -> float | None:
    """Minutes at the first point of ``curve`` [(minutes, accuracy)] reaching ``target``."""
    return next((m for m, acc in curve if acc >= target - 1e-12), None)


# ----------------------------------------------------------------------------- ours
def run_ours(a: argparse.Namespace, arch: str, out: Path) -> dict:
    cmd = [sys.executable, "-m", "maskedlm.cli", "pretrain", "--data", a.data, "--size", a.size,
           "--arch", arch, "--max-time", str(a.minutes * 60), "--seq-len", str(a.seq_len),
           "--eval-every", str(a.ours_eval_every), "--eval-sequences", str(a.eval_sequences),
           "--seed", str(a.seed), "--no-progress", "--out", str(out)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=_env(a), capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"ours ({arch}) failed: {proc.stderr[-2000:]}")
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if x.strip()]
    # training minutes: the wall clock less the held-out evaluations (eval_s), which the
    # peer's clock leaves out too; our --max-time budget still pays for them
    curve = [((r.get("elapsed_s", 0.0) - r.get("eval_s", 0.0)) / 60.0, r["eval_mlm_accuracy"])
             for r in rows if "eval_mlm_accuracy" in r]
    last = rows[-1] if rows else {}
    steps = max((r["step"] for r in rows), default=0)
    return {"system": f"ours-{arch}", "curve": curve, "final": curve[-1][1] if curve else 0.0,
            "steps": steps, "wall_s": round(time.perf_counter() - t0, 1),
            "train_s": round(last.get("elapsed_s", 0.0) - last.get("eval_s", 0.0), 1),
            "eval_s": last.get("eval_s", 0.0)}


# ----------------------------------------------------------------------------- the peer
def hf_tokenizer(tok_dir: Path):
    from transformers import PreTrainedTokenizerFast
    return PreTrainedTokenizerFast(tokenizer_file=str(tok_dir / "tokenizer.json"),
                                   unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]")


@torch.no_grad()
def peer_accuracy(model: torch.nn.Module, batches: list[dict]) -> float:
    model.eval()
    right = total = 0
    for b in batches:
        labels = torch.from_numpy(b["labels"])
        logits = model(input_ids=torch.from_numpy(b["input_ids"]),
                       attention_mask=torch.from_numpy(b["attention_mask"]).long(),
                       token_type_ids=torch.from_numpy(b["token_type_ids"])).logits
        at = labels != -100
        right += int((logits[at].argmax(-1) == labels[at]).sum())
        total += int(at.sum())
    model.train()
    return right / max(total, 1)


def run_peer(a: argparse.Namespace, lr: float) -> dict:
    """BertForMaskedLM trained for ``a.minutes`` on the shards' training sequences."""
    from transformers import BertConfig, BertForMaskedLM, DataCollatorForLanguageModeling

    from maskedlm.data.instances import build_instances
    from maskedlm.data.shards import ShardSet
    from maskedlm.models.config import PRESETS

    torch.manual_seed(a.seed)
    shards = ShardSet.load(a.data)
    tok = hf_tokenizer(Path(shards.path) / "tokenizer")
    held_out = eval_batches(a.data, a.seq_len, a.eval_sequences, a.seed, 32)
    inst = build_instances(shards, "train", "roberta", a.seq_len, np.random.default_rng([a.seed, 0, 1]))
    order = np.random.default_rng([a.seed, 7]).permutation(len(inst))
    select_idx, train_idx = order[:SELECTION_SEQUENCES], order[SELECTION_SEQUENCES:]
    collator = DataCollatorForLanguageModeling(tok, mlm=True, mlm_probability=0.15)

    def examples(idx: np.ndarray) -> list[dict]:
        b = inst.get(idx)
        return [{"input_ids": b["input_ids"][r, :int(b["attention_mask"][r].sum())].tolist()}
                for r in range(len(idx))]

    state = torch.random.get_rng_state()  # fixed masks of the selection split
    torch.manual_seed(a.seed + 1)
    selection = []
    for s in range(0, len(select_idx), 32):
        c = collator(examples(select_idx[s:s + 32]))
        selection.append({"input_ids": c["input_ids"].numpy(), "labels": c["labels"].numpy(),
                          "attention_mask": c["attention_mask"].numpy(),
                          "token_type_ids": np.zeros_like(c["input_ids"].numpy())})
    torch.random.set_rng_state(state)
    layers, hidden, heads = PRESETS[a.size]
    cfg = BertConfig(vocab_size=len(tok), hidden_size=hidden, num_hidden_layers=layers,
                     num_attention_heads=heads, intermediate_size=4 * hidden,
                     max_position_embeddings=max(512, a.seq_len), pad_token_id=tok.pad_token_id)
    model = BertForMaskedLM(cfg)
    model.train()
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "LayerNorm" not in n]
    other = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "LayerNorm" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01},
                             {"params": other, "weight_decay": 0.0}], lr=lr)
    budget = a.minutes * 60.0
    batch = 32
    curve, step, t0 = [], 0, time.perf_counter()
    next_eval = a.peer_eval_every_s
    eval_s = 0.0  # the clock (budget, schedule, curve) stops while the held-out set is scored

    def elapsed() -> float:
        return time.perf_counter() - t0 - eval_s

    while True:
        pos = (step * batch) % len(train_idx)
        c = collator(examples(train_idx[pos:pos + batch]))
        # transformers' get_linear_schedule_with_warmup (6% warm-up, linear decay to 0) over
        # the budget's time rather than a step count the peer cannot know in advance
        frac = elapsed() / budget
        for grp in opt.param_groups:
            grp["lr"] = lr * max(0.0, min(max(frac, 1e-3) / 0.06, (1.0 - frac) / 0.94))
        loss = model(**c).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        step += 1
        now = elapsed()
        done = now >= budget
        if now >= next_eval or done:
            t_eval = time.perf_counter()
            curve.append((now / 60.0, peer_accuracy(model, held_out)))
            eval_s += time.perf_counter() - t_eval
            next_eval += a.peer_eval_every_s
        if done:
            break
    return {"system": f"transformers-lr{lr:g}", "lr": lr, "curve": curve, "final": curve[-1][1],
            "selection_accuracy": peer_accuracy(model, selection), "steps": step,
            "wall_s": round(time.perf_counter() - t0, 1), "train_s": round(elapsed(), 1),
            "eval_s": round(eval_s, 1)}


# ----------------------------------------------------------------------------- driver
def _env(a: argparse.Namespace) -> dict:
    threads = str(a.threads) if a.threads else os.environ.get("OMP_NUM_THREADS", "")
    env = dict(os.environ)
    if threads:
        env.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
    return env


def one_system(a: argparse.Namespace) -> dict:
    kind, _, arg = a.only.partition(":")
    if a.threads:
        torch.set_num_threads(a.threads)
    if kind == "ours":
        with tempfile.TemporaryDirectory() as tmp:
            return run_ours(a, arg, Path(a.ours_out or tmp) / f"ours-{arg}")
    return run_peer(a, float(arg))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="shards made by `maskedlm prepare`")
    p.add_argument("--size", default="mini")
    p.add_argument("--archs", default="bert,modernbert", help="ours: comma-separated archs")
    p.add_argument("--peer-lrs", default="1e-4,5e-4,1e-3")
    p.add_argument("--minutes", type=float, default=60.0, help="wall-clock budget per system")
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--eval-sequences", type=int, default=512)
    p.add_argument("--ours-eval-every", type=int, default=100, help="our steps between evaluations")
    p.add_argument("--peer-eval-every-s", type=float, default=120.0,
                   help="training seconds between the peer's evaluations")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--parallel", action="store_true", help="all systems at once (same load)")
    p.add_argument("--ours-out", default=None, help="keep our run directories here")
    p.add_argument("--json-out", default=None, help="write all results here")
    p.add_argument("--only", default=None, help=argparse.SUPPRESS)  # ours:ARCH or peer:LR
    a = p.parse_args(argv)
    if a.only:
        print(json.dumps(one_system(a)), flush=True)
        return 0
    jobs = [f"ours:{x}" for x in a.archs.split(",") if x] + \
           [f"peer:{x}" for x in a.peer_lrs.split(",") if x]
    base = [sys.executable, str(HERE), *(argv if argv is not None else sys.argv[1:])]
    t0 = time.time()
    load0 = os.getloadavg()
    procs = []
    results = []
    for job in jobs:
        proc = subprocess.Popen([*base, "--only", job], stdout=subprocess.PIPE, text=True,
                                env=_env(a))
        procs.append((job, proc))
        if not a.parallel:
            results.append(_collect(job, proc))
    if a.parallel:
        results = [_collect(job, proc) for job, proc in procs]
    load1 = os.getloadavg()
    report(results, load0, load1, time.time() - t0, a)
    return 0


def _collect(job: str, proc: subprocess.Popen) -> dict:
    out, _ = proc.communicate()
    if proc.returncode:
        sys.exit(f"{job} failed (exit {proc.returncode})")
    r = json.loads(out.strip().splitlines()[-1])
    print(json.dumps(r), flush=True)
    return r


def report(results: list[dict], load0: tuple, load1: tuple, wall: float,
           a: argparse.Namespace) -> None:
    peers = [r for r in results if r["system"].startswith("transformers")]
    ours = [r for r in results if r["system"].startswith("ours")]
    best = max(peers, key=lambda r: r["selection_accuracy"]) if peers else None
    print(f"\nload average at start {load0[0]:.2f}, at end {load1[0]:.2f}; {wall / 60:.1f} min")
    for r in results:
        pts = ", ".join(f"{m:.1f}:{acc:.3f}" for m, acc in r["curve"])
        print(f"{r['system']:>22} ({r['steps']} steps; {r.get('train_s', 0) / 60:.1f} min training, "
              f"{r.get('eval_s', 0) / 60:.1f} min evaluating)  minutes:accuracy  {pts}")
    if best is None:
        return
    target = best["final"]
    t_peer = time_to(best["curve"], target)
    print(f"\npeer: lr {best['lr']:g} (selection split accuracy {best['selection_accuracy']:.4f}); "
          f"final held-out accuracy {target:.4f} at {t_peer:.1f} min")
    summary = {"peer_lr": best["lr"], "peer_final": target, "peer_minutes": t_peer,
               "minutes": a.minutes, "load_start": load0[0], "load_end": load1[0], "ours": {}}
    for r in ours:
        t = time_to(r["curve"][1:], target)  # not the untrained model's point at 0 minutes
        ratio = (t_peer / t) if t and t_peer else math.nan
        shown = "not reached" if t is None else f"{t:.1f} min, ratio {ratio:.2f}"
        print(f"{r['system']}: final {r['final']:.4f}; peer's final accuracy: {shown}")
        summary["ours"][r["system"]] = {"final": r["final"], "minutes": t, "ratio": ratio}
    print(json.dumps(summary))
    if a.json_out:
        Path(a.json_out).write_text(json.dumps({"summary": summary, "results": results}, indent=2))
    _plot(results, best, a)


def _plot(results: list[dict], best: dict, a: argparse.Namespace) -> None:
    if not a.json_out:
        return
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for r in results:
        if r["system"].startswith("transformers") and r is not best:
            continue
        ax.plot(*zip(*r["curve"], strict=True), "o-", ms=3, label=r["system"])
    ax.set_xlabel("training minutes (evaluations left out)")
    ax.set_ylabel("held-out masked-token accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(Path(a.json_out).with_suffix(".png"), dpi=110)


if __name__ == "__main__":
    sys.exit(main())
