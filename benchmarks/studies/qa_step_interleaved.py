"""One QA training step (forward + backward) on the same (16, 384) batch: ours, ours with
stock PyTorch kernels, and transformers' ``BertForQuestionAnswering``, interleaved in one
process so that a loaded machine slows all three alike.

    .venv/bin/python benchmarks/studies/qa_step_interleaved.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # benchmarks/: the shared helpers
from finetune_vs_transformers import default_model  # noqa: E402

from maskedlm.checkpoint import load_model
from maskedlm.models import kernels
from maskedlm.tasks.common import TaskModel
from maskedlm.tasks.qa import QAHead, QATask


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--length", type=int, default=384)
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()
    from transformers import BertForQuestionAnswering

    torch.manual_seed(0)
    path = default_model()
    pretrained, _ = load_model(path, warn_fresh=False)
    ours = TaskModel(pretrained.bert, QAHead(pretrained.config.hidden_size)).train()
    peer = BertForQuestionAnswering.from_pretrained(path).train()
    B, T = a.batch, a.length
    segments = torch.zeros(B, T, dtype=torch.long)
    segments[:, 30:] = 1  # a 28-token question, then the context
    batch = {"input_ids": torch.randint(1000, 20000, (B, T)), "token_type_ids": segments,
             "attention_mask": torch.ones(B, T, dtype=torch.bool),
             "start_positions": torch.randint(0, T, (B,)), "end_positions": torch.randint(0, T, (B,))}
    task = QATask()

    def step_ours() -> None:
        task.loss(ours, batch).backward()
        ours.zero_grad(set_to_none=True)

    def step_stock() -> None:
        with kernels.stock():
            step_ours()

    def step_peer() -> None:
        out = peer(**{**batch, "attention_mask": batch["attention_mask"].long()})
        out.loss.backward()
        peer.zero_grad(set_to_none=True)

    systems = {"ours": step_ours, "ours_stock_kernels": step_stock, "transformers": step_peer}
    for f in systems.values():
        f()  # warm-up
    seconds: dict[str, list[float]] = {k: [] for k in systems}
    for _ in range(a.repeats):
        for name, f in systems.items():
            t0 = time.perf_counter()
            f()
            seconds[name].append(round(time.perf_counter() - t0, 3))
    best = {k: min(v) for k, v in seconds.items()}
    print(json.dumps({"seconds": seconds, "ratio_ours_vs_transformers":
                      round(best["transformers"] / best["ours"], 3)}))


if __name__ == "__main__":
    main()
