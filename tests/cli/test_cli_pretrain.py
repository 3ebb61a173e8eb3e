"""Smoke tests of the command line, including its one-line errors (exit code 2)."""

from __future__ import annotations

import gzip
import json

import pytest

from maskedlm.cli import main


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def tiny_run(tiny_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "r"
    assert main(["pretrain", "--recipe", "spanbert", "--data", str(tiny_data["shards"]), "--out",
                 str(out), "--seq-len", "32", "--max-steps", "3", "--batch-size", "4",
                 "--no-progress", "--eval-sequences", "4"]) == 0
    return out


def test_default_budget_run_is_pre_ln_and_exports_as_roberta_prelayernorm(capsys, tiny_data, tmp_path):
    out = tmp_path / "budget"
    code, stdout, _ = run(capsys, "pretrain", "--data", tiny_data["shards"], "--out", out,
                          "--seq-len", "32", "--max-steps", "3", "--batch-size", "4",
                          "--no-progress", "--eval-sequences", "4")
    assert code == 0 and "eval_mlm_accuracy" in stdout
    cfg = json.loads((out / "checkpoint" / "config.json").read_text())
    assert cfg["pre_layer_norm"] is True and cfg["hidden_dropout_prob"] == 0.0
    code, _, err = run(capsys, "export-hf", out, tmp_path / "hf")  # logits: tests/test_export.py
    assert code == 0, err
    assert json.loads((tmp_path / "hf" / "config.json").read_text())["model_type"] == "roberta-prelayernorm"


def test_tokenizer_train_prepare_and_cache(capsys, tiny_data, tmp_path):
    gz = tmp_path / "c.txt.gz"
    with gzip.open(gz, "wt") as f:
        f.write(tiny_data["corpus"].read_text())
    code, out, _ = run(capsys, "tokenizer", "train", "--corpus", gz, "--vocab-size", 120,
                       "--out", tmp_path / "tok")
    assert code == 0 and (tmp_path / "tok/vocab.txt").is_file()
    code, out, _ = run(capsys, "prepare", "--corpus", gz, "--tokenizer", tmp_path / "tok",
                       "--out", tmp_path / "sh")
    first = json.loads(out.strip().splitlines()[-1])
    code2, out2, _ = run(capsys, "prepare", "--corpus", gz, "--tokenizer", tmp_path / "tok",
                         "--out", tmp_path / "sh")
    assert code == code2 == 0 and json.loads(out2.strip().splitlines()[-1]) == first


def test_fill_mask_json(capsys, tiny_run):
    code, out, _ = run(capsys, "fill-mask", tiny_run, "the cat [MASK] over the [MASK] .",
                       "--top-k", 3, "--json")
    assert code == 0
    preds = json.loads(out)
    assert len(preds) == 2 and all(len(p) == 3 for p in preds)
    for p in preds:
        scores = [c["score"] for c in p]
        assert scores == sorted(scores, reverse=True) and 0 < sum(scores) <= 1.0 + 1e-6
        assert all(isinstance(c["token"], str) for c in p)


def test_mask_preview_stats(capsys, tiny_data):
    code, out, _ = run(capsys, "mask-preview", "--recipe", "spanbert", "--data", tiny_data["shards"],
                       "--seq-len", 64, "--stats", "--json", "--sequences", 50)
    assert code == 0
    stats = json.loads(out)
    assert set(stats) >= {"masked_fraction", "spans", "replacement", "sequences"}
    assert 0.12 < stats["masked_fraction"] < 0.18
    assert set(stats["replacement"]) == {"mask", "random", "keep"}
    drawn, masked = stats["spans"]["drawn"], stats["spans"]["masked"]
    assert stats["spans"]["unit"] == "words"
    assert all(1 <= int(k) <= 10 for k in drawn["histogram"])
    # spans as masked are cut by the budget and by each other: shorter than drawn, not 1 word
    assert 1.5 < masked["mean"] < drawn["mean"] and masked["share_2_or_more"] > 0.3
    code, out, _ = run(capsys, "mask-preview", "--recipe", "bert", "--data", tiny_data["shards"],
                       "--n", 2)
    assert code == 0 and out.count("original:") == 2 and "[MASK]" in out


def test_export_hf_writes_a_loadable_directory(capsys, tiny_run, tmp_path):
    code, _, _ = run(capsys, "export-hf", tiny_run, tmp_path / "hf")
    assert code == 0
    assert {"config.json", "model.safetensors", "vocab.txt"} <= {p.name for p in (tmp_path / "hf").iterdir()}


@pytest.mark.parametrize("argv, message", [
    (["fill-mask", "{run}", "no mask here"], "no [MASK]"),
    (["fill-mask", "{tmp}/missing", "a [MASK]"], "no such checkpoint"),
    (["pretrain", "--corpus", "{tmp}/nothing*.txt", "--out", "{tmp}/o"], "nothing*.txt"),
    (["prepare", "--corpus", "{tmp}/empty.txt", "--tokenizer", "{tok}", "--out", "{tmp}/s"], "empty"),
    (["prepare", "--corpus", "{tmp}/binary.txt", "--tokenizer", "{tok}", "--out", "{tmp}/s"], "binary.txt"),
    (["prepare", "--corpus", "{tmp}/latin1.txt", "--tokenizer", "{tok}", "--out", "{tmp}/s"], "latin1.txt"),
    (["prepare", "--corpus", "{corpus}", "--tokenizer", "{tmp}", "--out", "{tmp}/s"], "tokenizer"),
    (["pretrain", "--data", "{shards}", "--out", "{tmp}/o", "--seq-len", "4"], "--seq-len"),
])
def test_user_errors_are_one_line_exit_2(capsys, tiny_data, tiny_run, tmp_path, argv, message):
    (tmp_path / "empty.txt").write_text("\n\n")
    (tmp_path / "binary.txt").write_bytes(b"abc\x00\x01\x02" * 10)
    (tmp_path / "latin1.txt").write_bytes("caf\xe9 au lait\n".encode("latin-1"))
    fill = {"run": tiny_run, "tmp": tmp_path, "tok": tiny_data["tokenizer"],
            "corpus": tiny_data["corpus"], "shards": tiny_data["shards"]}
    code, out, err = run(capsys, *[a.format(**fill) for a in argv])
    assert code == 2
    lines = [ln for ln in err.strip().splitlines() if ln.startswith("maskedlm: error")]
    assert len(lines) == 1 and message in lines[0], err
    assert "Traceback" not in err
    # nothing half-written: no shard files, no checkpoint
    assert not [p for p in (tmp_path / "s").rglob("*") if p.is_file()]
    assert not (tmp_path / "o" / "checkpoint").exists()


def test_corrupt_checkpoint(capsys, tiny_run, tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(tiny_run / "checkpoint", bad)
    (bad / "model.safetensors").write_bytes(b"not a safetensors file")
    code, _, err = run(capsys, "fill-mask", bad, "a [MASK]")
    assert code == 2 and "model.safetensors" in err and "corrupt" in err
    (bad / "tokenizer.json").write_text("{broken")
    (bad / "vocab.txt").unlink()
    shutil.copy(tiny_run / "checkpoint" / "model.safetensors", bad / "model.safetensors")
    code, _, err = run(capsys, "fill-mask", bad, "a [MASK]")
    assert code == 2 and "tokenizer" in err


def test_modernbert_spanbert_run_exports_to_transformers_and_fills_masks_alike(capsys, tiny_data, tmp_path):
    transformers = pytest.importorskip("transformers")
    import numpy as np
    import torch

    from maskedlm.api import load

    out = tmp_path / "mb"
    code, stdout, _ = run(capsys, "pretrain", "--arch", "modernbert", "--recipe", "spanbert",
                          "--data", tiny_data["shards"], "--out", out, "--seq-len", "32",
                          "--max-steps", "3", "--batch-size", "8", "--no-progress",
                          "--eval-sequences", "8")
    assert code == 0 and "eval_sbo_loss" in stdout
    cfg = json.loads((out / "checkpoint" / "config.json").read_text())
    assert cfg["model_type"] == "modernbert" and cfg["sbo_head"] is True
    code, _, _ = run(capsys, "export-hf", out, tmp_path / "hf")
    assert code == 0
    theirs = transformers.ModernBertForMaskedLM.from_pretrained(tmp_path / "hf").eval()
    ours = load(tmp_path / "hf")
    prompt = "the cat [MASK] over the [MASK] ."
    enc = ours.tokenizer.encode(prompt)
    ids = torch.as_tensor(np.asarray(enc["input_ids"]))[None]
    with torch.no_grad():
        probs = theirs(input_ids=ids).logits[0, ids[0] == ours.tokenizer.mask_id].softmax(-1)
    preds = ours.fill_mask(prompt, top_k=3)
    for row, p in zip(preds, probs, strict=True):
        top = p.topk(3)
        assert [d["token"] for d in row] == ours.tokenizer.convert_ids_to_tokens(top.indices.tolist())
        assert [d["score"] for d in row] == pytest.approx(top.values.tolist(), abs=1e-5)
    # continued pretraining from the exported Hugging Face directory
    code, _, _ = run(capsys, "pretrain", "--init", tmp_path / "hf", "--recipe", "spanbert",
                     "--data", tiny_data["shards"], "--out", tmp_path / "cont", "--seq-len", "32",
                     "--max-steps", "2", "--batch-size", "4", "--no-progress",
                     "--eval-sequences", "4")
    assert code == 0
    assert json.loads((tmp_path / "cont/checkpoint/config.json").read_text())["model_type"] == "modernbert"


@pytest.mark.parametrize("argv,message", [
    (["--arch", "modernbert", "--recipe", "bert"], "next sentence prediction"),
    (["--arch", "modernbert", "--no-pre-ln"], "pre-LN by design"),
])
def test_modernbert_refuses_bert_only_features_in_one_line(capsys, tiny_data, tmp_path, argv, message):
    code, _, err = run(capsys, "pretrain", *argv, "--data", tiny_data["shards"],
                       "--out", tmp_path / "x", "--max-steps", "1", "--no-progress")
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
