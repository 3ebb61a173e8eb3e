"""The loop's data-wait warning: once per run, on an accelerator, over 10% of step time."""

from __future__ import annotations

import pytest
import torch

import maskedlm.training.loop as train_module
from maskedlm.pretrain import PretrainOptions, pretrain
from maskedlm.training.config import TrainConfig
from maskedlm.training.loop import DataWaitMonitor


@pytest.mark.parametrize("device", ["cuda", "cuda:1", "mps"])
def test_warns_once_on_an_accelerator_after_the_first_window(device):
    m = DataWaitMonitor(torch.device(device))
    said = [m.update(f) for f in (0.9, 0.05, 0.10, 0.11, 0.5, 0.2)]
    assert said[:3] == [None, None, None]  # the first window fills the prefetcher; 10% is allowed
    assert "11%" in said[3] and device in said[3] and "docs/datapath.md" in said[3]
    assert said[4:] == [None, None]  # once


def test_silent_on_cpu_and_under_the_threshold():
    cpu = DataWaitMonitor(torch.device("cpu"))
    assert all(cpu.update(f) is None for f in (0.9, 0.9, 0.9))
    gpu = DataWaitMonitor(torch.device("cuda"), threshold=0.5)
    assert all(gpu.update(f) is None for f in (0.9, 0.4, 0.49))
    assert gpu.update(0.51) is not None


def test_the_loop_prints_the_warning_once(tiny_data, tmp_path, monkeypatch, capsys):
    """The real loop on this CPU, with a monitor told it runs on a GPU and that any wait is
    too much: the loop hands it every log window and prints what it says, once."""
    monkeypatch.setattr(train_module, "DataWaitMonitor",
                        lambda device: DataWaitMonitor(torch.device("cuda"), threshold=0.0))
    cfg = TrainConfig(max_steps=4, batch_size=4, log_every=1, progress=False)
    pretrain(PretrainOptions(data=str(tiny_data["shards"]), out=str(tmp_path / "run"),
                             size="tiny", seq_len=32, eval_sequences=4, device="cpu", train=cfg))
    out, err = capsys.readouterr()
    assert (out + err).count("steps waited for batches") == 1
