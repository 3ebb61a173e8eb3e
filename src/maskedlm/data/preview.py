"""``maskedlm mask-preview``: what a recipe's masking does to real sequences."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from maskedlm.data.defaults import PREVIEW_EXAMPLES, PREVIEW_SEQUENCES
from maskedlm.data.instances import RECIPES, build_instances, check_seq_len
from maskedlm.data.masking import (
    mask_batch,
    masked_span_words,
    recipe_masking,
    replacement_shares,
)
from maskedlm.data.shards import ShardSet
from maskedlm.errors import MaskedLMError


def mask_preview(data: str, *, recipe: str, whole_word: bool = False, n: int = PREVIEW_EXAMPLES,
                 sequences: int = PREVIEW_SEQUENCES, seq_len: int = 128, seed: int = 0,
                 budget: str | None = None, random_source: str | None = None,
                 merge_spans: bool | None = None, mask_rate: float | None = None,
                 mask_replace: str | None = None) -> dict[str, Any]:
    """Masked examples side by side with their originals, and masking statistics.

    >>> mask_preview("shards/", recipe="spanbert", n=1, sequences=100)["stats"]["masked_fraction"]  # doctest: +SKIP
    0.15
    """
    if recipe not in RECIPES:  # the checks of PretrainOptions, before reading the shards
        raise MaskedLMError(f"--recipe must be one of {', '.join(RECIPES)}, got {recipe!r}")
    check_seq_len(seq_len)
    if mask_rate is not None and not 0.0 < mask_rate < 1.0:
        raise MaskedLMError(f"--mask-rate must be in (0, 1), got {mask_rate}")
    cfg = recipe_masking(recipe, whole_word=whole_word, budget=budget,
                         random_source=random_source, merge_spans=merge_spans,
                         mask_rate=mask_rate, mask_replace=mask_replace)
    shards = ShardSet.load(data)
    tok = shards.tokenizer()
    rng = np.random.default_rng(seed)
    inst = build_instances(shards, "train", recipe, seq_len, rng)
    total = min(len(inst), max(n, sequences))
    order = rng.permutation(len(inst))[:total]
    unigram = shards.unigram_probs() if cfg.random_source == "unigram" else None
    examples, drawn, realized = [], Counter(), Counter()
    reps: Counter = Counter()
    masked = maskable = 0
    for start in range(0, total, 64):
        idx = order[start:start + 64].tolist()
        b = inst.get(idx)
        m = mask_batch(b["input_ids"], b["word_starts"], b["special"], cfg, rng,
                       vocab_size=tok.vocab_size, mask_id=tok.mask_id,
                       special_ids=sorted(tok.special_ids), unigram_probs=unigram)
        drawn.update(m.span_lengths)
        if cfg.scheme == "token":  # a target token need not start a word: count tokens
            first = (m.labels != -100) & (m.sbo_pos == 0)
            realized.update((m.sbo_right - m.sbo_left - 1)[first].tolist())
        else:
            realized.update(masked_span_words(m.labels, b["word_starts"], b["special"],
                                              m.sbo_left, m.sbo_right).tolist())
        reps.update(m.replacement_counts)
        masked += m.n_masked
        maskable += m.n_maskable
        for r in range(len(idx)):
            if len(examples) >= n:
                break
            keep = b["attention_mask"][r].astype(bool)
            orig = b["input_ids"][r][keep]
            new = m.input_ids[r][keep]
            target = m.labels[r][keep] != -100
            examples.append({"original": _show(tok, orig, target),
                             "masked": _show(tok, new, target)})
    stats = {"masked_fraction": masked / max(maskable, 1),
             "spans": {"unit": "tokens" if cfg.scheme == "token" else "words",
                       "drawn": _length_stats(drawn, "span lengths as sampled, before truncation "
                                              "and merging (span scheme only)"),
                       "masked": _length_stats(realized, "spans as masked, one per SBO boundary "
                                               "pair (touching spans count once when merged)")},
             "replacement": replacement_shares(reps), "sequences": total,
             "scheme": cfg.scheme}
    return {"examples": examples, "stats": stats}


def _length_stats(hist: Counter, what: str) -> dict[str, Any]:
    """Mean, share of lengths >= 2 and histogram of span lengths."""
    n = sum(hist.values())
    return {"what": what, "spans": n,
            "mean": sum(k * v for k, v in hist.items()) / n if n else None,
            "share_2_or_more": sum(v for k, v in hist.items() if k >= 2) / n if n else None,
            "histogram": {str(k): hist[k] for k in sorted(hist)}}


def _show(tok, ids: np.ndarray, target: np.ndarray) -> str:
    """Tokens joined back into words; target tokens in ⟦brackets⟧."""
    words: list[str] = []
    for t, is_target in zip(tok.convert_ids_to_tokens(ids.tolist()), target.tolist(), strict=True):
        piece = f"⟦{t}⟧" if is_target else t
        if t.startswith("##") and words:
            words[-1] += piece.replace("##", "", 1)
        else:
            words.append(piece)
    return " ".join(words)
