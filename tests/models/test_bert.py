import pytest
import torch

from maskedlm.errors import MaskedLMError
from maskedlm.models.config import PRESETS, ModelConfig
from maskedlm.models.heads import BertForPreTraining


def tiny(**kw) -> ModelConfig:
    base = dict(vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                intermediate_size=64, max_position_embeddings=64, hidden_dropout_prob=0.0,
                attention_probs_dropout_prob=0.0)
    base.update(kw)
    return ModelConfig(**base)


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_builds(name):
    cfg = ModelConfig.from_name(name, vocab_size=1000, sbo_head=True)
    with torch.device("meta"):
        model = BertForPreTraining(cfg)
    layers, hidden, heads = PRESETS[name]
    assert len(model.bert.encoder.layer) == layers
    assert model.bert.embeddings.word_embeddings.weight.shape == (1000, hidden)
    assert cfg.intermediate_size == 4 * hidden and cfg.num_attention_heads == heads


def test_config_validation():
    with pytest.raises(MaskedLMError, match="divisible"):
        ModelConfig(hidden_size=30, num_attention_heads=4)
    with pytest.raises(MaskedLMError, match="unknown size"):
        ModelConfig.from_name("gigantic")


def test_config_json_round_trip(tmp_path):
    cfg = tiny(sbo_head=True, nsp_head=False)
    cfg.save(tmp_path / "config.json")
    assert ModelConfig.load(tmp_path / "config.json") == cfg


@pytest.mark.parametrize("pre_ln", [False, True])
def test_padding_does_not_change_real_positions(pre_ln):
    torch.manual_seed(0)
    model = BertForPreTraining(tiny(pre_layer_norm=pre_ln)).eval()
    ids = torch.tensor([[2, 10, 11, 12, 3]])
    padded = torch.tensor([[2, 10, 11, 12, 3, 0, 0], [2, 13, 14, 15, 16, 17, 3]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 0, 0], [1] * 7])
    with torch.no_grad():
        alone = model.bert(ids).last_hidden_state
        batch = model.bert(padded, attention_mask=mask).last_hidden_state
    torch.testing.assert_close(batch[0, :5], alone[0], atol=1e-5, rtol=1e-5)


def test_sparse_mlm_equals_dense_at_targets():
    torch.manual_seed(0)
    model = BertForPreTraining(tiny()).eval()
    ids = torch.randint(5, 120, (3, 9))
    with torch.no_grad():
        hidden = model.bert(ids).last_hidden_state
        dense = model.cls.predictions(hidden)  # (B, T, V)
        pos = torch.tensor([1, 10, 26])
        sparse = model.mlm_logits(hidden, pos)
    torch.testing.assert_close(sparse, dense.reshape(-1, 120)[pos])


def test_decoder_is_tied_to_word_embeddings():
    model = BertForPreTraining(tiny(sbo_head=True))
    emb = model.bert.embeddings.word_embeddings.weight
    assert model.cls.predictions.decoder_weight is emb
    assert model.cls.span_boundary.decoder_weight is emb
    n_unique = len({id(p) for p in model.parameters()})
    assert n_unique == len(list(model.parameters()))


def test_sbo_uses_boundaries_and_relative_position():
    torch.manual_seed(0)
    model = BertForPreTraining(tiny(sbo_head=True, nsp_head=False)).eval()
    ids = torch.randint(5, 120, (2, 10))
    labels = torch.full((2, 10), -100)
    labels[1, 4:7] = ids[1, 4:7]  # span s=4..e=6 in row 1
    left = torch.zeros(2, 10, dtype=torch.long)
    right = torch.zeros(2, 10, dtype=torch.long)
    pos = torch.zeros(2, 10, dtype=torch.long)
    left[1, 4:7], right[1, 4:7], pos[1, 4:7] = 3, 7, torch.arange(3)
    with torch.no_grad():
        out = model(ids, labels, sbo_left=left, sbo_right=right, sbo_pos=pos, normalizer=1.0)
        h = model.bert(ids).last_hidden_state[1]
        head = model.cls.span_boundary
        logits = head(h[3].expand(3, -1), h[7].expand(3, -1), torch.arange(3))
        expected = torch.nn.functional.cross_entropy(logits, ids[1, 4:7], reduction="sum")
    torch.testing.assert_close(out.sbo_loss, expected)


@pytest.mark.slow
@pytest.mark.parametrize("pre_ln", [False, True])
def test_tiny_model_overfits_one_batch(pre_ln):
    torch.manual_seed(0)
    model = BertForPreTraining(tiny(sbo_head=True, nsp_head=True, pre_layer_norm=pre_ln))
    ids = torch.randint(5, 120, (4, 16))
    ids[:, 0], ids[:, -1] = 2, 3
    labels = torch.full_like(ids, -100)
    labels[:, 3:6] = ids[:, 3:6]
    masked = ids.clone()
    masked[:, 3:6] = 4
    left = torch.full_like(ids, 2)
    right = torch.full_like(ids, 6)
    pos = (torch.arange(16) - 3).clamp(min=0).expand(4, -1)
    nsp = torch.tensor([0, 1, 0, 1])
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(150):
        out = model(masked, labels, sbo_left=left, sbo_right=right, sbo_pos=pos,
                    next_sentence_label=nsp)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    assert out.loss.item() < 0.05
    assert int(out.mlm_correct) == out.n_targets == 12


@pytest.mark.parametrize("pre_ln", [False, True])
def test_last_layer_rows_equal_full_outputs_and_gradients(pre_ln):
    from maskedlm.models.bert import BertModel
    torch.manual_seed(0)
    ids = torch.randint(5, 120, (3, 9))
    mask = torch.ones(3, 9, dtype=torch.long)
    mask[1, 6:] = 0
    rows = torch.tensor([[0, 2, 5], [0, 1, 4], [8, 3, 0]])
    w = torch.randn(3, 3, 32)
    grads = []
    for use_rows in (False, True):
        torch.manual_seed(1)
        model = BertModel(tiny(pre_layer_norm=pre_ln))
        out = model(ids, attention_mask=mask, rows=rows if use_rows else None).last_hidden_state
        picked = out if use_rows else out.gather(1, rows[..., None].expand(-1, -1, 32))
        (picked * w).sum().backward()
        grads.append(([p.grad.clone() for p in model.parameters()], picked.detach()))
    torch.testing.assert_close(grads[0][1], grads[1][1])
    for a, b in zip(grads[0][0], grads[1][0], strict=True):
        torch.testing.assert_close(a, b)


def test_rows_of_needed_positions():
    from maskedlm.models.bert import Rows
    needed = torch.zeros(2, 8, dtype=torch.bool)
    needed[0, [0, 3, 5]] = True
    needed[1, [6]] = True
    r = Rows.of(needed)
    assert r.rows.shape == (2, 3) and r.rows[0].tolist() == [0, 3, 5] and r.rows[1, 0] == 6
    flat = torch.tensor([3, 5, 8 + 6])
    assert r.flat(flat).tolist() == [1, 2, 3]
    assert Rows.of(torch.ones(2, 8, dtype=torch.bool)) is None  # nothing to skip


def test_pretraining_losses_are_those_of_the_full_last_layer():
    torch.manual_seed(0)
    model = BertForPreTraining(tiny(nsp_head=True)).eval()
    ids = torch.randint(5, 120, (3, 12))
    mask = torch.ones(3, 12, dtype=torch.long)
    mask[2, 8:] = 0
    labels = torch.full((3, 12), -100)
    labels[0, 3], labels[1, [2, 9]], labels[2, 5] = ids[0, 3], ids[1, [2, 9]], ids[2, 5]
    nsp = torch.tensor([0, 1, 1])
    with torch.no_grad():
        out = model(ids, labels, attention_mask=mask, next_sentence_label=nsp, normalizer=1.0,
                    nsp_normalizer=1.0)
        h = model.bert(ids, attention_mask=mask).last_hidden_state
        sel = labels != -100
        mlm = torch.nn.functional.cross_entropy(model.cls.predictions(h[sel]), labels[sel],
                                                reduction="sum")
        nsp_logits = model.cls.seq_relationship(model.bert.pooler(h))
        nsp_sum = torch.nn.functional.cross_entropy(nsp_logits, nsp, reduction="sum")
    torch.testing.assert_close(out.mlm_loss, mlm)
    torch.testing.assert_close(out.nsp_loss, nsp_sum)


def test_pre_ln_block_is_residual_around_normalised_sublayers():
    """x + attn(LN(x)), then x + ffn(LN(x)), and one final LayerNorm: checked by hand."""
    from maskedlm.models.bert import BertModel
    torch.manual_seed(0)
    model = BertModel(tiny(pre_layer_norm=True, num_hidden_layers=1)).eval()
    ids = torch.randint(5, 120, (2, 7))
    with torch.no_grad():
        layer = model.encoder.layer[0]
        x = model.embeddings(ids, None)
        x = x + layer.attention(layer.attention.LayerNorm(x), None)
        x = x + layer.output(layer.act(layer.intermediate(layer.LayerNorm(x))))
        want = model.encoder.final_norm(x)
        torch.testing.assert_close(model(ids).last_hidden_state, want)
        post = BertModel(tiny(num_hidden_layers=1)).eval()
        post.load_state_dict(model.state_dict(), strict=False)
        assert post.encoder.final_norm is None
        assert not torch.allclose(post(ids).last_hidden_state, want, atol=1e-3)
