"""The pretraining data path at full speed, no model: masked (and packed) batches per second.

``ours``: :class:`~maskedlm.data.batches.PretrainBatches` of a recipe, its own masking
(rate, scheme, SBO targets, packing), read through the training loop's own prefetcher
(``maskedlm.training.loop.Prefetcher``) and turned into tensors as the loop does (``to_tensors``),
so the figure is the rate the loop could be fed at. The unit is real (non-padding) tokens,
as the loop's ``tokens_per_s``; ``ours_per_cpu_s`` divides them by the CPU time of the
process (all threads), which a busy machine disturbs far less than the wall clock. ``peer`` (token masking only): ``transformers``'
``DataCollatorForLanguageModeling`` at the same masking rate on the same sequences, already
tokenized and in memory, in the calling process (what a ``DataLoader`` with
``num_workers=0`` runs).
"""

from __future__ import annotations

import gzip
import time
import warnings
from pathlib import Path
from typing import Any

from cases.common import data_file, minilm_dir, prose_shards, timed

# Steps per timed window: about a second of work at 1 M tokens/s.
STEPS = {128: 120, 512: 60, 1024: 16}


def datapath_shards(data_root: Path) -> Path:
    """Shards of the first ~8 MB of the Gutenberg training text (~2 M tokens, MiniLM's
    vocabulary): enough that even seq 1024 runs ~30 steps per epoch."""
    src = data_file(data_root, "gutenberg/gutenberg_train.txt.gz")

    def head() -> str:
        with gzip.open(src, "rt", encoding="utf-8") as f:
            return f.read(8_000_000)
    return prose_shards("gutenberg_train_8mb.txt", head, "shards-datapath")


def source(p: dict[str, Any]):
    from maskedlm.data.batches import PretrainBatches
    from maskedlm.data.masking import recipe_masking
    from maskedlm.data.shards import ShardSet
    from maskedlm.training.dist import DistInfo
    shards = ShardSet.load(datapath_shards(Path(p["data_root"])))
    tok = shards.tokenizer()
    return PretrainBatches(shards, p["recipe"], p["seq_len"], recipe_masking(p["recipe"]), tok,
                           p["batch"], 1, 0, DistInfo(), eval_sequences=0, pack=p["pack"])


def child_datapath_ours(p: dict[str, Any]) -> dict[str, Any]:
    import torch

    from maskedlm.training.loop import Prefetcher, to_tensors
    src = source(p)
    device = torch.device(p["device"])
    steps = STEPS[p["seq_len"]]
    total = steps * (p["repeats"] + 1)
    prefetch = Prefetcher(src, 0, total)
    batches = iter(prefetch)

    tokens = [0]

    def step() -> int:
        n = 0
        for b in next(batches):
            to_tensors(b, device)
            n += int(b["attention_mask"].sum())
        tokens[0] += n
        return n
    cpu = time.process_time()  # all threads: the prefetcher's work is counted
    try:
        out = timed(p, step, steps)
    finally:
        prefetch.close()
    # On a shared machine the wall-clock rate follows the load; CPU time much less so.
    out["per_cpu_s"] = tokens[0] / (time.process_time() - cpu)
    return out


def child_datapath_peer(p: dict[str, Any]) -> dict[str, Any]:
    import numpy as np
    from transformers import BertTokenizerFast, DataCollatorForLanguageModeling

    from maskedlm.data.masking import recipe_masking
    src = source({**p, "pack": False})
    hf_tok = BertTokenizerFast.from_pretrained(str(minilm_dir()))
    steps = STEPS[p["seq_len"]]
    examples = []
    for s in range(steps * (p["repeats"] + 1)):  # the same sequences, unmasked
        (b,) = src.step_batches(s)
        ids = np.where(b["labels"] != -100, b["labels"], b["input_ids"])
        lengths = b["attention_mask"].sum(1)
        examples.append([{"input_ids": ids[r, :n].tolist()} for r, n in enumerate(lengths)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        collator = DataCollatorForLanguageModeling(
            hf_tok, mlm_probability=recipe_masking(p["recipe"]).mask_prob, return_tensors="pt")
    data = iter(examples)
    return timed(p, lambda: int(collator(next(data))["attention_mask"].sum()), steps)
