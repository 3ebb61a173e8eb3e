"""Preemption: SIGTERM, SIGINT and SIGUSR1 end a run with a checkpoint it resumes from exactly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from test_train import losses, opts

from maskedlm.checkpoint import load_model, load_training_state
from maskedlm.cli import main
from maskedlm.errors import EXIT_PREEMPTED, Preempted
from maskedlm.pretrain import PretrainBatches, pretrain

STEPS, LOG_EVERY = 8, 4  # the signal lands inside a log window: its sums must be saved too


@pytest.fixture(scope="module")
def uninterrupted(tiny_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("full") / "run"
    pretrain(opts(tiny_data["shards"], out, max_steps=STEPS, log_every=LOG_EVERY))
    return losses(out)


def signal_at(monkeypatch, sig: int, at_step: int = 3) -> None:
    """Send ``sig`` to this process when the prefetcher builds ``at_step``'s batches."""
    real = PretrainBatches.step_batches

    def send(self, step):
        if step == at_step:
            os.kill(os.getpid(), sig)
        return real(self, step)

    monkeypatch.setattr(PretrainBatches, "step_batches", send)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGUSR1])
def test_signal_saves_and_resume_matches_an_uninterrupted_run(tiny_data, tmp_path, monkeypatch,
                                                             uninterrupted, sig):
    out = tmp_path / "run"
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)}
    signal_at(monkeypatch, sig)
    with pytest.raises(Preempted) as info:
        pretrain(opts(tiny_data["shards"], out, max_steps=STEPS, log_every=LOG_EVERY))
    assert info.value.signal_name == signal.Signals(sig).name
    assert 1 <= info.value.step < STEPS and info.value.checkpoint == str(out / "checkpoint")
    assert load_training_state(out / "checkpoint")["step"] == info.value.step
    assert {s: signal.getsignal(s) for s in handlers} == handlers  # the handlers are restored
    monkeypatch.undo()
    resume = "auto" if sig == signal.SIGUSR1 else True  # auto: resumes as there is a checkpoint
    pretrain(opts(tiny_data["shards"], out, max_steps=STEPS, log_every=LOG_EVERY, resume=resume))
    assert losses(out) == uninterrupted


def test_resume_auto_starts_fresh_without_a_checkpoint(tiny_data, tmp_path, uninterrupted, capsys):
    pretrain(opts(tiny_data["shards"], tmp_path / "run", max_steps=STEPS, log_every=LOG_EVERY,
                  resume="auto"))
    assert "--resume auto: no checkpoint in" in capsys.readouterr().err
    assert losses(tmp_path / "run") == uninterrupted


def test_second_signal_while_saving_does_not_break_the_checkpoint(tiny_data, tmp_path,
                                                                  monkeypatch, capfd):
    import maskedlm.checkpoint as ckpt

    out = tmp_path / "run"
    pretrain(opts(tiny_data["shards"], out, max_steps=STEPS, save_every=2))  # a previous checkpoint
    real_save_file = ckpt.save_file

    def interrupted_writer(*a, **kw):  # Ctrl-C in the middle of writing the new checkpoint
        real_save_file(*a, **kw)
        os.kill(os.getpid(), signal.SIGINT)

    signal_at(monkeypatch, signal.SIGTERM, at_step=3)
    monkeypatch.setattr(ckpt, "save_file", interrupted_writer)
    with pytest.raises(Preempted) as info:
        pretrain(opts(tiny_data["shards"], out, max_steps=STEPS, save_every=2, resume=False))
    assert "SIGINT again" in capfd.readouterr().err
    assert load_training_state(out / "checkpoint")["step"] == info.value.step
    load_model(out)  # complete and loadable
    assert not list(out.glob(".checkpoint.*"))  # no temporary copies left


def test_cli_exits_75_with_one_line_naming_the_checkpoint(tiny_data, tmp_path, capfd):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "maskedlm.cli", "pretrain", "--data", str(tiny_data["shards"]),
           "--out", str(out), "--size", "tiny", "--seq-len", "32", "--batch-size", "4",
           "--max-steps", "100000", "--log-every", "1", "--eval-sequences", "4", "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = out / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while not (metrics.is_file() and len(metrics.read_text().splitlines()) >= 2):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1][-2000:]
        time.sleep(0.1)
    # one run per directory: a second process pointed at the same --out stops at once
    assert main(cmd[3:]) == 2
    err = capfd.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"in use by pid {proc.pid} on " in err, err
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == EXIT_PREEMPTED == 75, err[-2000:]
    lines = [ln for ln in err.splitlines() if "checkpoint saved" in ln]
    assert len(lines) == 1 and str(out / "checkpoint") in lines[0] and "SIGTERM" in lines[0]
    step = load_training_state(out / "checkpoint")["step"]
    assert f"after step {step};" in lines[0]
    logged = [json.loads(x)["step"] for x in metrics.read_text().splitlines()]
    assert logged[-1] == step  # finished the step it was in, logged it, then saved


def test_disk_full_during_a_save_keeps_the_previous_checkpoint(tiny_data, tmp_path, monkeypatch):
    import errno

    import maskedlm.checkpoint as ckpt
    from maskedlm.errors import MaskedLMError

    real, calls = ckpt.save_file, []

    def fills_the_disk_on_the_second_save(tensors, filename, metadata=None):
        calls.append(filename)
        if len(calls) == 2:
            with open(filename, "wb") as f:  # part of the file made it to disk
                f.write(b"\0" * 100)
            raise OSError(errno.ENOSPC, "No space left on device")
        real(tensors, filename, metadata=metadata)

    monkeypatch.setattr(ckpt, "save_file", fills_the_disk_on_the_second_save)
    out = tmp_path / "run"
    with pytest.raises(MaskedLMError) as info:
        pretrain(opts(tiny_data["shards"], out, max_steps=STEPS, save_every=2))
    msg = str(info.value)
    assert msg.startswith(str(out / "checkpoint")) and "no space left" in msg
    assert "previous copy there is kept and loadable" in msg and "\n" not in msg
    assert load_training_state(out / "checkpoint")["step"] == 2
    load_model(out)
    assert sorted(p.name for p in out.iterdir()  # no temp copies (the marker is no copy)
                  if p.name.startswith(".") and p.name != ".maskedlm-output.json") == []
