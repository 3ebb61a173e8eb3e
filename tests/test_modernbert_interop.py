"""ModernBERT parity with transformers' ModernBertForMaskedLM, both ways (test-only dependency)."""

import pytest
import torch

transformers = pytest.importorskip("transformers")

from maskedlm.checkpoint import load_model, save_checkpoint  # noqa: E402
from maskedlm.data.tokenizer import Tokenizer  # noqa: E402
from maskedlm.export import write_hf_dir as export_hf  # noqa: E402
from maskedlm.models.config import ModelConfig  # noqa: E402
from maskedlm.models.heads import BertForPreTraining  # noqa: E402

V, T = 64, 20
# 4 layers: 0 and 3 global, 1 and 2 local with a window (8) well below the length (20)
SHAPE = dict(vocab_size=V, hidden_size=32, num_hidden_layers=4, num_attention_heads=4,
             intermediate_size=48, max_position_embeddings=64, local_attention=8,
             global_attn_every_n_layers=3, pad_token_id=0)
BIASES = {"none (ModernBERT)": {},
          "all": dict(norm_bias=True, attention_bias=True, mlp_bias=True, classifier_bias=True)}


def batch():
    torch.manual_seed(1)
    ids = torch.randint(5, V, (3, T))
    mask = torch.ones_like(ids)
    mask[1, 13:] = 0  # padding in the second row, inside a local window of real tokens
    mask[2, 6:] = 0
    ids[mask == 0] = 0
    return ids, mask


def randomize(module):
    """Non-trivial values everywhere (LayerNorms and biases start at 1 and 0)."""
    torch.manual_seed(2)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn_like(p) * 0.1)


def our_logits(model, ids, mask):
    model.eval()
    with torch.no_grad():
        h = model.bert(ids, attention_mask=mask).last_hidden_state
        return model.mlm_logits(h, torch.arange(ids.numel())).view(*ids.shape, -1)


def both_logits(theirs, ours, ids, mask):
    """(transformers' logits, ours, kept positions), checked equal at the kept positions."""
    with torch.no_grad():
        want = theirs(input_ids=ids, attention_mask=mask).logits
    got, keep = our_logits(ours, ids, mask), mask.bool()
    torch.testing.assert_close(got[keep], want[keep], atol=1e-5, rtol=1e-5)
    return want, got, keep


def _vocab(path):
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    path.mkdir(parents=True, exist_ok=True)
    (path / "vocab.txt").write_text("\n".join(specials + [f"w{i}" for i in range(V - 5)]) + "\n")


@pytest.mark.parametrize("biases", BIASES.values(), ids=BIASES.keys())
def test_transformers_modernbert_loads_with_identical_logits(tmp_path, biases):
    cfg = transformers.ModernBertConfig(**SHAPE, **biases, bos_token_id=2, eos_token_id=3,
                                        cls_token_id=2, sep_token_id=3)
    assert cfg.layer_types == ["full_attention", "sliding_attention", "sliding_attention",
                               "full_attention"]
    torch.manual_seed(0)
    theirs = transformers.ModernBertForMaskedLM(cfg).eval()
    randomize(theirs)
    theirs.save_pretrained(tmp_path / "hf")
    ours, _ = load_model(tmp_path / "hf")
    assert ours.config.arch == "modernbert" and ours.config.local_attention == 8
    ids, mask = batch()
    want, got, keep = both_logits(theirs, ours, ids, mask)
    both_logits(theirs, ours, ids[:, :5], mask[:, :5])  # a row the window spans whole
    # the local layers matter: a global-only model computes other logits
    theirs.config.layer_types = ["full_attention"] * 4
    glob = transformers.ModernBertForMaskedLM(theirs.config).eval()
    glob.load_state_dict(theirs.state_dict())
    with torch.no_grad():
        other = glob(input_ids=ids, attention_mask=mask).logits
    assert (other[keep] - want[keep]).abs().max() > 1e-3


@pytest.mark.parametrize("biases", BIASES.values(), ids=BIASES.keys())
def test_export_loads_in_transformers_with_identical_logits(tmp_path, biases):
    torch.manual_seed(0)
    model = BertForPreTraining(ModelConfig(arch="modernbert", nsp_head=False, sbo_head=True,
                                           **SHAPE, **biases))
    randomize(model)
    _vocab(tmp_path / "tok")
    save_checkpoint(tmp_path / "ck", model, Tokenizer.load(tmp_path / "tok"))
    export_hf(tmp_path / "ck", tmp_path / "hf")
    theirs = transformers.ModernBertForMaskedLM.from_pretrained(tmp_path / "hf").eval()
    assert theirs.config.layer_types == ["full_attention", "sliding_attention",
                                         "sliding_attention", "full_attention"]
    assert theirs.config.cls_token_id == 2 and theirs.config.pad_token_id == 0
    ids, mask = batch()
    want, got, keep = both_logits(theirs, model, ids, mask)
    # and the exported directory reads back as the same model, SBO head included
    back, _ = load_model(tmp_path / "ck")
    assert back.config.sbo_head
    assert torch.equal(our_logits(back, ids, mask), got)


# ----------------------------------------------------------------------------- ONNX
@pytest.mark.parametrize("quantize", ["none", "int8"])
def test_onnx_export_keeps_local_layers_local_past_the_window_with_padding(capsys, tmp_path, quantize):
    """export-onnx traces at length 6; a window of 16 spans that row, so a graph that
    froze the Python window decision would make every local layer global. Checked at
    length 40 (> 16) with padding, against ours and against an all-global twin."""
    pytest.importorskip("onnxruntime", reason="needs the onnx extra: pip install -e '.[onnx]'")
    import numpy as np
    from conftest import run_cli

    import maskedlm

    shape = {**SHAPE, "local_attention": 16}
    torch.manual_seed(0)
    model = BertForPreTraining(ModelConfig(arch="modernbert", nsp_head=False, **shape))
    randomize(model)
    _vocab(tmp_path / "tok")
    save_checkpoint(tmp_path / "ck", model, Tokenizer.load(tmp_path / "tok"))
    code, _, err = run_cli(capsys, "export-onnx", tmp_path / "ck", tmp_path / "onnx",
                           "--quantize", quantize)
    assert code == 0, err
    onnx = maskedlm.load(tmp_path / "onnx", backend="onnx").model.bert
    torch.manual_seed(3)
    ids = torch.randint(5, V, (3, 40))
    mask = torch.ones_like(ids)
    mask[1, 29:] = 0  # padding inside the last window of real tokens
    mask[2, 11:] = 0  # a row shorter than the window
    ids[mask == 0] = 0
    keep = mask.bool()
    got = onnx(ids, None, mask, output_hidden_states=True).hidden_states
    glob = BertForPreTraining(ModelConfig(arch="modernbert", nsp_head=False,
                                          **{**shape, "global_attn_every_n_layers": 1})).eval()
    glob.load_state_dict(model.state_dict())
    model.eval()
    with torch.no_grad():
        want = model.bert(ids, attention_mask=mask, output_hidden_states=True).hidden_states
        other = glob.bert(ids, attention_mask=mask, output_hidden_states=True).hidden_states
    assert len(got) == len(want) == 5
    err_ours = max(float((a[keep] - b[keep]).abs().max()) for a, b in zip(got, want, strict=True))
    err_glob = max(float((a[keep] - b[keep]).abs().max()) for a, b in zip(got, other, strict=True))
    if quantize == "none":
        assert err_ours <= 1e-4 and err_glob > 1e-2
    else:  # int8 weights: close to ours, and still clearly not the all-global model
        x, y = got[-1][keep].numpy(), want[-1][keep].numpy()
        cos = (x * y).sum(1) / np.linalg.norm(x, axis=1) / np.linalg.norm(y, axis=1)
        assert cos.min() > 0.99 and err_ours > 1e-6 and err_glob > 2 * err_ours
    # an unpadded batch (attention mask all ones) at another length takes the same graph
    with torch.no_grad():
        alone = model.bert(ids[:1, :33]).last_hidden_state
    diff = (onnx(ids[:1, :33], None, torch.ones(1, 33, dtype=torch.long)).last_hidden_state - alone)
    assert float(diff.abs().max()) <= (1e-4 if quantize == "none" else 0.2)
