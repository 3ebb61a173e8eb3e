import json
import os

import pytest
import torch
from safetensors.torch import load_file, save_file

from maskedlm.checkpoint import (
    from_hf_state_dict,
    load_model,
    save_checkpoint,
    to_hf_state_dict,
)
from maskedlm.errors import MaskedLMError
from maskedlm.models.config import ModelConfig
from maskedlm.models.heads import BertForPreTraining


def tiny(**kw) -> ModelConfig:
    base = dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                intermediate_size=64, max_position_embeddings=40)
    base.update(kw)
    return ModelConfig(**base)


def logits(model, ids):
    model.eval()
    with torch.no_grad():
        h = model.bert(ids).last_hidden_state
        return model.mlm_logits(h, torch.arange(ids.numel()))


def test_round_trip_gives_identical_logits(tmp_path):
    torch.manual_seed(0)
    model = BertForPreTraining(tiny(sbo_head=True))
    save_checkpoint(tmp_path / "ck", model, tokenizer=None)
    back, _ = load_model(tmp_path / "ck")
    ids = torch.randint(0, 99, (2, 7))
    assert torch.equal(logits(model, ids), logits(back, ids))
    assert back.config.sbo_head and back.config.nsp_head
    for k, v in model.state_dict().items():
        assert torch.equal(v, back.state_dict()[k]), k


def test_hf_key_layout():
    model = BertForPreTraining(tiny(sbo_head=True))
    hf = to_hf_state_dict(model)
    assert "bert.encoder.layer.1.attention.self.query.weight" in hf
    assert "bert.encoder.layer.0.attention.output.LayerNorm.bias" in hf
    assert "bert.encoder.layer.0.intermediate.dense.weight" in hf
    assert "bert.encoder.layer.0.output.dense.weight" in hf
    assert "cls.predictions.bias" in hf and "cls.seq_relationship.weight" in hf
    assert any(k.startswith("cls.span_boundary.") for k in hf)
    assert not any("decoder_weight" in k for k in hf)
    back = from_hf_state_dict(hf)
    for k, v in back.items():
        assert torch.equal(v, model.state_dict()[k])


def test_atomic_save_leaves_old_checkpoint_on_failure(tmp_path):
    model = BertForPreTraining(tiny())
    save_checkpoint(tmp_path / "ck", model, tokenizer=None)

    class Broken:
        def save(self, path):
            raise OSError("disk full")

    with pytest.raises(OSError):
        save_checkpoint(tmp_path / "ck", model, tokenizer=Broken())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]
    load_model(tmp_path / "ck")


def test_death_between_the_two_renames_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    """kill -9 after ``checkpoint`` became ``.checkpoint.old-PID`` and before the new copy
    took its name (the two-rename swap of file systems without RENAME_EXCHANGE): the next
    reader puts the previous copy back."""
    import maskedlm.files as files

    torch.manual_seed(0)
    first = BertForPreTraining(tiny())
    save_checkpoint(tmp_path / "run" / "checkpoint", first, tokenizer=None)
    real_replace, calls = files.os.replace, []

    class Killed(BaseException):
        pass

    def dies_on_second_rename(src, dst):  # and stays dead: no handler runs after kill -9
        calls.append(dst)
        if len(calls) >= 2:
            raise Killed
        real_replace(src, dst)

    monkeypatch.setattr(files, "_exchange", lambda a, b: False)
    monkeypatch.setattr(files.os, "replace", dies_on_second_rename)
    with pytest.raises(Killed):
        save_checkpoint(tmp_path / "run" / "checkpoint", BertForPreTraining(tiny()), tokenizer=None)
    monkeypatch.undo()
    assert not (tmp_path / "run" / "checkpoint").exists()
    back, where = load_model(tmp_path / "run")
    assert where == tmp_path / "run" / "checkpoint"
    for k, v in first.state_dict().items():
        assert torch.equal(v, back.state_dict()[k]), k


def _write_hf(dirpath, state, config):
    dirpath.mkdir()
    save_file(state, str(dirpath / "model.safetensors"))
    (dirpath / "config.json").write_text(json.dumps(config))


def test_legacy_layouts_load(tmp_path):
    """BertModel files (no prefix), LayerNorm.gamma/beta and stale position_ids."""
    torch.manual_seed(0)
    model = BertForPreTraining(tiny(nsp_head=False))
    hf = to_hf_state_dict(model)
    legacy = {}
    for k, v in hf.items():
        if not k.startswith("bert."):
            continue
        k = k[len("bert."):].replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta")
        legacy[k] = v
    legacy["embeddings.position_ids"] = torch.arange(40)[None]
    cfg = tiny(nsp_head=False).to_dict()
    _write_hf(tmp_path / "legacy", legacy, cfg)
    with pytest.warns(UserWarning, match="freshly initialised"):
        back, _ = load_model(tmp_path / "legacy")
    ids = torch.randint(0, 99, (1, 6))
    with torch.no_grad():
        torch.testing.assert_close(back.eval().bert(ids).last_hidden_state, model.eval().bert(ids).last_hidden_state)


def test_bad_checkpoints_give_one_line_errors(tmp_path):
    with pytest.raises(MaskedLMError, match="no such"):
        load_model(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MaskedLMError, match="not a checkpoint"):
        load_model(tmp_path / "empty")
    model = BertForPreTraining(tiny())
    save_checkpoint(tmp_path / "ck", model, tokenizer=None)
    cfg = json.loads((tmp_path / "ck/config.json").read_text())
    (tmp_path / "ck/config.json").write_text(json.dumps({**cfg, "model_type": "gpt2"}))
    with pytest.raises(MaskedLMError, match="not a BERT"):
        load_model(tmp_path / "ck")
    (tmp_path / "ck/config.json").write_text(json.dumps({**cfg, "hidden_size": 64}))
    with pytest.raises(MaskedLMError, match=r"model.safetensors: tensor .* has shape"):
        load_model(tmp_path / "ck")
    (tmp_path / "ck/config.json").write_text(json.dumps(cfg))
    (tmp_path / "ck/model.safetensors").write_bytes(b"garbage" * 10)
    with pytest.raises(MaskedLMError, match="corrupt weights"):
        load_model(tmp_path / "ck")
    (tmp_path / "ck/model.safetensors").unlink()
    with pytest.raises(MaskedLMError, match="no weights"):
        load_model(tmp_path / "ck")
    state = to_hf_state_dict(model)
    del state["bert.encoder.layer.1.output.dense.weight"]
    save_file(state, str(tmp_path / "ck/model.safetensors"))
    with pytest.raises(MaskedLMError, match="missing tensor bert.encoder.layer.1.output"):
        load_model(tmp_path / "ck")


def test_missing_sbo_head_is_fresh_for_spanbert(tmp_path):
    model = BertForPreTraining(tiny())
    save_checkpoint(tmp_path / "ck", model, tokenizer=None)
    with pytest.warns(UserWarning, match="span_boundary"):
        back, _ = load_model(tmp_path / "ck", sbo_head=True, nsp_head=False)
    assert back.cls.span_boundary is not None and back.cls.seq_relationship is None
    saved = load_file(str(tmp_path / "ck/model.safetensors"))
    assert torch.equal(back.cls.predictions.bias, saved["cls.predictions.bias"])


def test_run_lock_stops_a_second_holder_and_names_the_first(tmp_path):
    import os
    import socket

    from maskedlm.checkpoint import RunLock, atomic_write_dir

    run = tmp_path / "run"
    with RunLock(run):
        with pytest.raises(MaskedLMError) as info, RunLock(run):
            pass
        msg = str(info.value)
        assert f"pid {os.getpid()} on {socket.gethostname()}" in msg and "\n" not in msg
        # a fine-tuned run is swapped in whole: the held lock goes along with it
        atomic_write_dir(run, lambda tmp: (tmp / "task.json").write_text("{}"))
        with pytest.raises(MaskedLMError, match="in use by"), RunLock(run):
            pass
    with RunLock(run):  # released
        pass
    assert sorted(p.name for p in run.iterdir()) == ["task.json"]  # no lock file left behind
    with RunLock(tmp_path / "fresh"):
        pass
    assert not (tmp_path / "fresh").exists()  # a directory that only held the lock is removed


def test_lock_of_a_killed_process_is_taken_over(tmp_path, capfd):
    import subprocess
    import sys

    from maskedlm.checkpoint import LOCK_NAME, RunLock

    run = tmp_path / "run"
    code = ("import os, signal, sys; from maskedlm.checkpoint import RunLock; "
            "RunLock(sys.argv[1]).__enter__(); print(os.getpid(), flush=True); "
            "os.kill(os.getpid(), signal.SIGKILL)")
    dead = subprocess.run([sys.executable, "-c", code, str(run)], capture_output=True, text=True)
    assert dead.returncode == -9 and (run / LOCK_NAME).is_file()
    with RunLock(run):
        assert f"pid {os.getpid()}" in (run / LOCK_NAME).read_text().replace('"pid": ', "pid ")
    assert f"taking over the lock of pid {dead.stdout.strip()} on" in capfd.readouterr().err
