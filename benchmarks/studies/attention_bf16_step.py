"""One bf16 pretraining step of a mini model (batch 64 x 128, budget recipe, both
architectures), with the CPU attention computed in fp32 (``kernels.attention_fp32``, the
default) and with plain bf16 SDPA, interleaved three times in one process on one thread:

    OMP_NUM_THREADS=1 python benchmarks/studies/attention_bf16_step.py RUN/data/shards/HASH
"""

from __future__ import annotations

import statistics
import sys
import time

import torch
import torch.nn.functional as F

from maskedlm.data.batches import PretrainBatches
from maskedlm.data.masking import MaskingConfig
from maskedlm.data.shards import ShardSet
from maskedlm.models import kernels
from maskedlm.models.config import ModelConfig
from maskedlm.models.heads import BertForPreTraining
from maskedlm.training.dist import DistInfo
from maskedlm.training.loop import to_tensors


def plain_sdpa(q, k, v, mask):
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


def step_times(shards: ShardSet, arch: str, reps: int = 3) -> dict[str, list[float]]:
    tok = shards.tokenizer()
    src = PretrainBatches(shards, "budget", 128, MaskingConfig(scheme="token", mask_prob=0.3), tok,
                          64, 1, 0, DistInfo(), eval_sequences=0, pack=arch == "modernbert")
    kw = dict(pre_layer_norm=True, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0) \
        if arch == "bert" else {}
    cfg = ModelConfig.from_name("mini", arch=arch, vocab_size=tok.vocab_size,
                                pad_token_id=tok.pad_id, nsp_head=False, **kw)
    model = BertForPreTraining(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    batches = [to_tensors(src.step_batches(i)[0], torch.device("cpu")) for i in range(3)]

    def step(b) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(**b, normalizer=1.0)
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for b in batches[:2]:  # warm-up
        step(b)
    fp32 = kernels.attention_fp32
    times: dict[str, list[float]] = {"fp32 attention": [], "bf16 SDPA": []}
    try:
        for _ in range(reps):
            for name, fn in (("fp32 attention", fp32), ("bf16 SDPA", plain_sdpa)):
                kernels.attention_fp32 = fn
                t0 = time.perf_counter()
                for b in batches:
                    step(b)
                times[name].append((time.perf_counter() - t0) / len(batches))
    finally:
        kernels.attention_fp32 = fp32
    return times


def main() -> None:
    shards = ShardSet.load(sys.argv[1])
    for arch in ("modernbert", "bert"):
        t = step_times(shards, arch)
        ratio = statistics.median(t["bf16 SDPA"]) / statistics.median(t["fp32 attention"])
        print(arch, {k: [round(x, 3) for x in v] for k, v in t.items()},
              f"s/step; ratio of medians {ratio:.2f}x", flush=True)


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
