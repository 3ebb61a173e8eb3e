"""Progress: a live bar on a terminal, one plain line every N seconds elsewhere."""

from __future__ import annotations

import io

from test_train import opts

from maskedlm.pretrain import pretrain
from maskedlm.progress import PlainProgress, progress


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_plain_lines_every_n_seconds_with_rate_eta_and_figures():
    out, clock = io.StringIO(), Clock()
    bar = PlainProgress(100, "pretrain", every=10.0, stream=out, clock=clock)
    for _ in range(20):  # 20 steps in 8 s: not yet a line
        clock.t += 0.4
        bar.update()
    assert out.getvalue() == ""
    clock.t += 2.0
    bar.set_postfix(loss="3.412", acc="0.210")
    bar.update()  # 21 steps in 10 s
    assert out.getvalue() == ("pretrain: step 21/100 (21%) | 2.10 step/s | ETA 38s | "
                              "loss 3.412 | acc 0.210\n")
    clock.t += 1.0
    bar.update()
    bar.close()  # the end always gets its line
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and lines[1].startswith("pretrain: step 22/100 (22%) | 2.00 step/s")
    assert "\r" not in out.getvalue()


def test_resumed_bar_counts_its_rate_from_where_it_started():
    out, clock = io.StringIO(), Clock()
    bar = PlainProgress(1000, "fine-tune", initial=400, every=0.0, stream=out, clock=clock)
    clock.t += 60.0
    bar.update(60)
    assert out.getvalue().startswith("fine-tune: step 460/1000 (46%) | 1.00 step/s | ETA 9m00s")


def test_a_terminal_gets_the_live_bar():
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert type(progress(10, "x", stream=Terminal())).__name__ == "tqdm"
    assert isinstance(progress(10, "x", stream=io.StringIO()), PlainProgress)


def test_pretrain_logs_plain_lines_when_stderr_is_a_file(tiny_data, tmp_path, capfd):
    pretrain(opts(tiny_data["shards"], tmp_path / "run", progress=True, progress_every=0.0,
                  log_every=2))
    err = capfd.readouterr().err
    assert "\r" not in err
    lines = [ln for ln in err.splitlines() if ln.startswith("pretrain: step ")]
    assert [ln.split()[2] for ln in lines] == [f"{i}/6" for i in range(1, 7)]
    assert "step/s | ETA" in lines[0] and "| loss " in lines[-1]
