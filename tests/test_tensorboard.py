"""TensorBoard scalars under OUT/tb/ from pretrain and finetune (the ``tensorboard`` extra)."""

from __future__ import annotations

import json
import sys

import pytest
from conftest import run_cli, save_tiny_encoder


def scalars(tb_dir) -> dict[str, list[tuple[int, float]]]:
    ea_mod = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator",
                                 reason="needs the tensorboard extra: pip install -e '.[tensorboard]'")
    ea = ea_mod.EventAccumulator(str(tb_dir))
    ea.Reload()
    return {tag: [(e.step, e.value) for e in ea.Scalars(tag)] for tag in ea.Tags()["scalars"]}


def test_pretrain_writes_its_metrics_as_scalars(capsys, tiny_data, tmp_path):
    pytest.importorskip("tensorboard", reason="needs the tensorboard extra")
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "pretrain", "--data", tiny_data["shards"], "--out", out,
                           "--seq-len", "32", "--max-steps", "4", "--batch-size", "4",
                           "--log-every", "2", "--eval-every", "2", "--eval-sequences", "4",
                           "--no-progress")
    assert code == 0, err
    assert not (out / "tensorboard").exists()
    got = scalars(out / "tb")
    rows = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
    for tag in ("loss", "mlm_loss", "lr", "tokens_per_s", "eval_mlm_accuracy"):
        want = [(r["step"], r[tag]) for r in rows if tag in r]
        assert want and [s for s, _ in got[tag]] == [s for s, _ in want], tag
        assert [v for _, v in got[tag]] == pytest.approx([v for _, v in want], rel=1e-6), tag


def test_finetune_scalars_survive_the_run_directory_swaps(capsys, tmp_path):
    pytest.importorskip("tensorboard", reason="needs the tensorboard extra")
    words = ["good", "bad", "film", "plot", "the", "a", "very", "dull", "fun"]
    enc = save_tiny_encoder(tmp_path / "enc", words)
    rows = ["sentence\tlabel"] + [f"the {w} film\t{int(w in ('good', 'fun'))}"
                                  for w in ["good", "bad", "fun", "dull"] * 6]
    (tmp_path / "t.tsv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "ft"
    code, _, err = run_cli(capsys, "finetune", "classify", "--model", enc, "--train",
                           tmp_path / "t.tsv", "--dev", tmp_path / "t.tsv", "--out", out,
                           "--epochs", "3", "--batch-size", "8", "--lr", "3e-3",
                           "--eval-every", "3", "--no-progress")
    assert code == 0, err
    # metrics.jsonl is the history saved with the best checkpoint; TensorBoard has every evaluation
    history = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
    got = scalars(out / "tb")
    assert [s for s, _ in got["dev/accuracy"]] == [3, 6, 9]  # 24 examples / 8 = 3 steps an epoch
    at = dict(got["dev/accuracy"])
    assert [at[r["step"]] for r in history] == pytest.approx([r["dev"]["accuracy"] for r in history])
    loss = dict(got["train_loss"])
    assert [loss[r["step"]] for r in history] == pytest.approx([r["train_loss"] for r in history])
    assert {"lr", "train_examples_per_s"} <= set(got)


def test_without_tensorboard_nothing_changes(capsys, monkeypatch, tiny_data, tmp_path):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails, as uninstalled
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "pretrain", "--data", tiny_data["shards"], "--out", out,
                           "--seq-len", "32", "--max-steps", "2", "--batch-size", "4",
                           "--eval-sequences", "4", "--no-progress")
    assert code == 0, err
    assert (out / "metrics.jsonl").stat().st_size > 0 and not (out / "tb").exists()
