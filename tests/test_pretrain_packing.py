"""Packed pretraining batches for ModernBERT: the same sequences and targets in fewer rows,
and the same losses as one sequence per row."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from maskedlm.data.shards import ShardSet
from maskedlm.data.tokenizer import Tokenizer
from maskedlm.models.config import ModelConfig
from maskedlm.models.heads import BertForPreTraining
from maskedlm.pretrain import PretrainBatches
from maskedlm.training.dist import DistInfo
from maskedlm.training.loop import to_tensors


def batches(tiny_data, recipe: str, pack: bool):
    from maskedlm.data.masking import recipe_masking
    shards = ShardSet.load(tiny_data["shards"])
    tok = Tokenizer.load(tiny_data["tokenizer"])
    src = PretrainBatches(shards, recipe, 64, recipe_masking(recipe), tok, 16, 1, 0, DistInfo(),
                          pack=pack)
    return src.step_batches(0)[0], tok


@pytest.mark.parametrize("recipe", ["spanbert", "roberta"])
def test_packed_batch_has_the_same_targets_in_fewer_rows_and_the_same_losses(tiny_data, recipe):
    padded, tok = batches(tiny_data, recipe, pack=False)
    packed, _ = batches(tiny_data, recipe, pack=True)
    assert packed["attention_mask"].sum() == padded["attention_mask"].sum()
    assert sorted(packed["labels"][packed["labels"] != -100]) == sorted(padded["labels"][padded["labels"] != -100])
    if recipe == "spanbert":  # documents' last blocks are short: they share rows
        assert packed["input_ids"].shape[0] < padded["input_ids"].shape[0]
        assert packed["sequence_ids"].max() >= 1
    else:  # FULL-SENTENCES sequences are already nearly full: little to pack
        assert packed["input_ids"].shape[0] <= padded["input_ids"].shape[0]
    torch.manual_seed(0)
    model = BertForPreTraining(ModelConfig.from_name(
        "tiny", arch="modernbert", vocab_size=tok.vocab_size, pad_token_id=tok.pad_id,
        nsp_head=False, sbo_head=recipe == "spanbert", local_attention=16)).eval()
    with torch.no_grad():
        a = model(**to_tensors(padded, torch.device("cpu")), normalizer=1.0)
        b = model(**to_tensors(packed, torch.device("cpu")), normalizer=1.0)
    assert a.n_targets == b.n_targets and int(a.mlm_correct) == int(b.mlm_correct)
    torch.testing.assert_close(b.mlm_loss, a.mlm_loss, rtol=1e-5, atol=1e-4)
    if recipe == "spanbert":
        torch.testing.assert_close(b.sbo_loss, a.sbo_loss, rtol=1e-5, atol=1e-4)
    assert np.isfinite(float(b.loss))
