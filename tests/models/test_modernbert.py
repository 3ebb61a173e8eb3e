import pytest
import torch

from maskedlm.errors import MaskedLMError
from maskedlm.models.config import PRESETS, ModelConfig
from maskedlm.models.heads import BertForPreTraining
from maskedlm.models.kernels import rotary as rotate
from maskedlm.models.modernbert import ModernBertModel, positions_in_sequence


def tiny(**kw) -> ModelConfig:
    # 4 layers: 0 and 3 global, 1 and 2 local; window 6 (|i - j| <= 3)
    base = dict(arch="modernbert", vocab_size=120, hidden_size=32, num_hidden_layers=4,
                num_attention_heads=4, intermediate_size=48, max_position_embeddings=64,
                local_attention=6, nsp_head=False)
    base.update(kw)
    return ModelConfig(**base)


def encoder(**kw) -> ModernBertModel:
    torch.manual_seed(0)
    return BertForPreTraining(tiny(**kw)).bert.eval()


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_builds(name):
    cfg = ModelConfig.from_name(name, arch="modernbert", vocab_size=1000, sbo_head=True,
                                nsp_head=False)
    with torch.device("meta"):
        model = BertForPreTraining(cfg)
    layers, hidden, heads = PRESETS[name]
    assert len(model.bert.layers) == layers and cfg.num_attention_heads == heads
    assert model.bert.layers[0].mlp.Wi.weight.shape == (2 * int(1.5 * hidden), hidden)
    assert model.bert.layers[0].is_global and not model.bert.layers[1].is_global
    assert model.bert.layers[0].attn.Wqkv.bias is None  # ModernBERT: no biases ...
    assert model.cls.predictions.bias is not None      # ... but the decoder's


def test_config_json_round_trip_and_bert_fields_apart(tmp_path):
    cfg = tiny(sbo_head=True, global_rope_theta=5e4, attention_bias=True)
    cfg.save(tmp_path / "config.json")
    back = ModelConfig.load(tmp_path / "config.json")
    assert back == cfg
    d = cfg.to_dict()
    assert d["model_type"] == "modernbert" and "type_vocab_size" not in d
    assert d["rope_parameters"]["full_attention"]["rope_theta"] == 5e4
    assert "local_attention" not in ModelConfig().to_dict()  # BERT configs stay BERT's


def test_irregular_layer_types_are_refused():
    d = tiny().to_dict()
    d["layer_types"] = ["full_attention", "full_attention", "sliding_attention", "full_attention"]
    with pytest.raises(MaskedLMError, match="layer_types"):
        ModelConfig.from_dict(d)


def test_nsp_is_refused_with_one_message():
    with pytest.raises(MaskedLMError, match="next sentence prediction"):
        BertForPreTraining(tiny(nsp_head=True))


def test_rotation_is_transformers_rotate_half_and_has_its_gradient():
    torch.manual_seed(0)
    x = torch.randn(2, 5, 3, 8, dtype=torch.float64, requires_grad=True)
    ang = torch.randn(2, 5, 1, 4, dtype=torch.float64)
    cos, sin = ang.cos(), ang.sin()
    x1, x2 = x.detach().chunk(2, -1)
    want = x.detach() * torch.cat([cos, cos], -1) + torch.cat([-x2, x1], -1) * torch.cat([sin, sin], -1)
    torch.testing.assert_close(rotate(x, cos, sin), want)
    assert torch.autograd.gradcheck(lambda t: rotate(t, cos, sin), (x,))


def test_positions_restart_per_sequence():
    seq = torch.tensor([[0, 0, 0, 1, 1, 2, 2, 2, 2], [5, 5, 5, 5, 5, 5, -1, -1, -1]])
    assert positions_in_sequence(seq).tolist() == [[0, 1, 2, 0, 1, 0, 1, 2, 3],
                                                   [0, 1, 2, 3, 4, 5, 0, 1, 2]]


def test_packed_sequences_equal_each_sequence_alone():
    """Several sequences in a row: each gets the outputs it gets alone (attention stays
    inside it, its positions start at 0), on global and local layers alike."""
    m = encoder()
    torch.manual_seed(1)
    a, b, c = (torch.randint(5, 120, (n,)) for n in (9, 5, 7))  # a longer than the window
    row = torch.cat([a, b, c])[None]
    seq = torch.tensor([[0] * 9 + [1] * 5 + [2] * 7])
    with torch.no_grad():
        packed = m(row, sequence_ids=seq).last_hidden_state[0]
        alone = [m(x[None]).last_hidden_state[0] for x in (a, b, c)]
    torch.testing.assert_close(packed, torch.cat(alone), atol=1e-5, rtol=1e-5)


def test_a_token_does_not_see_other_sequences_of_its_row():
    m = encoder()
    torch.manual_seed(1)
    row = torch.randint(5, 120, (1, 16)).repeat(2, 1)
    seq = torch.tensor([[0] * 10 + [1] * 6] * 2)
    row[1, 10:] = torch.randint(5, 120, (6,))  # the same first sequence, another second one
    mask = torch.ones_like(row)
    with torch.no_grad():
        out = m(row, attention_mask=mask, sequence_ids=seq).last_hidden_state
        unpacked = m(row).last_hidden_state
    torch.testing.assert_close(out[0, :10], out[1, :10], atol=1e-6, rtol=1e-6)
    assert (out[0, 10:] - out[1, 10:]).abs().max() > 1e-3  # the changed one changed
    # without sequence ids the first sequence does see the second
    assert (unpacked[0, :10] - unpacked[1, :10]).abs().max() > 1e-3


def test_padding_does_not_change_real_positions():
    m = encoder()
    ids = torch.tensor([[2, 10, 11, 12, 13, 14, 15, 16, 3]])
    padded = torch.cat([ids, torch.zeros(1, 5, dtype=torch.long)], 1)
    mask = (padded != 0).long()
    with torch.no_grad():
        alone = m(ids).last_hidden_state
        batch = m(padded, attention_mask=mask).last_hidden_state
    torch.testing.assert_close(batch[:, :9], alone, atol=1e-5, rtol=1e-5)


def test_last_layer_rows_equal_full_outputs_packed():
    m = encoder(norm_bias=True, attention_bias=True)
    torch.manual_seed(1)
    ids = torch.randint(5, 120, (2, 14))
    seq = torch.tensor([[0] * 8 + [1] * 6, [0] * 3 + [1] * 11])
    rows = torch.tensor([[0, 5, 9], [13, 2, 4]])
    with torch.no_grad():
        full = m(ids, sequence_ids=seq).last_hidden_state
        part = m(ids, sequence_ids=seq, rows=rows).last_hidden_state
    torch.testing.assert_close(part, full.gather(1, rows[..., None].expand(-1, -1, 32)),
                               atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_tiny_model_with_sbo_overfits_one_packed_batch():
    torch.manual_seed(0)
    model = BertForPreTraining(tiny(sbo_head=True))
    ids = torch.randint(5, 120, (2, 12))
    labels = torch.full_like(ids, -100)
    labels[:, [2, 3, 8]] = ids[:, [2, 3, 8]]
    ids[:, [2, 3, 8]] = 4
    seq = torch.tensor([[0] * 6 + [1] * 6] * 2)
    left = torch.tensor([[0, 1, 1, 1, 0, 0, 0, 0, 7, 0, 0, 0]] * 2)
    right = torch.tensor([[0, 0, 4, 4, 0, 0, 0, 0, 9, 0, 0, 0]] * 2)
    pos = torch.tensor([[0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]] * 2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(80):
        out = model(ids, labels, sequence_ids=seq, sbo_left=left, sbo_right=right, sbo_pos=pos)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    assert out.sbo_loss is not None and float(out.mlm_correct) == out.n_targets == 6
    assert float(out.loss.detach()) < 0.5
