"""More than one host: two torchrun "nodes" of one process each on localhost (gloo, c10d
rendezvous), as a job spanning two machines would be launched (docs/corpora.md).

Run as a script, this file is the torchrun entry point: it records, for every step, a hash
of each row its rank trains on (the tokens before masking), then runs ``maskedlm``.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ARGS = ["pretrain", "--size", "tiny", "--seq-len", "32", "--log-every", "1", "--dropout", "0",
        "--device", "cpu", "--no-progress", "--eval-sequences", "8", "--lr", "2e-3",
        "--batch-size", "4", "--max-steps", "40", "--save-every", "10", "--resume", "auto"]


def losses(out: Path) -> list[tuple[int, float]]:
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"]) for r in lines if "loss" in r]


def rows(folder: Path) -> dict[tuple[int, int], list[str]]:
    """{(step, rank): row hashes} as recorded by the ranks (the last record of a step wins:
    a resumed run builds the steps after its checkpoint again)."""
    seen: dict[tuple[int, int], list[str]] = {}
    for file in folder.glob("rows-rank*.jsonl"):
        for line in file.read_text().splitlines():
            r = json.loads(line)
            seen[(r["step"], r["rank"])] = r["rows"]
    return seen


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _torchrun(*launch: str, out: Path, data: Path, logs: Path) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", *launch, "--log-dir", str(logs),
            "--redirects", "3", __file__, *ARGS, "--data", str(data), "--out", str(out)]


def _env(rows_dir: Path) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "ROWS_DIR": str(rows_dir),
            "PYTHONPATH": os.pathsep.join(sys.path)}


def _rank_logs(logs: Path) -> str:
    return "".join(f"--- {p.relative_to(logs)}\n{p.read_text()[-2000:]}"
                   for p in sorted(logs.rglob("std*.log")))


def _wait_for_step(out: Path, step: int, procs: list[subprocess.Popen], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (out / "metrics.jsonl").is_file() and any(s >= step for s, _ in _safe_losses(out)):
            return
        if any(p.poll() is not None for p in procs):
            return
        time.sleep(0.05)


def _process_tree(root: int) -> list[int]:
    """``root`` and every process below it (torchrun's workers run in sessions of their own,
    so a process group does not reach them)."""
    children: dict[int, list[int]] = {}
    for d in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{d}/stat").read_text()
        except OSError:
            continue
        children.setdefault(int(stat[stat.rindex(")") + 2:].split()[1]), []).append(int(d))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def _safe_losses(out: Path) -> list[tuple[int, float]]:
    try:
        return losses(out)
    except (json.JSONDecodeError, OSError):  # a line being written
        return []


@pytest.mark.slow
def test_two_nodes_read_disjoint_data_match_one_node_and_resume_after_a_node_dies(
        tiny_data, tmp_path):
    data = tiny_data["shards"]
    # one node, two processes: the reference
    one = tmp_path / "one"
    cmd = _torchrun("--standalone", "--nproc-per-node", "2", out=one, data=data,
                    logs=tmp_path / "one-logs")
    proc = subprocess.run(cmd, env=_env(tmp_path / "one-rows"), capture_output=True, text=True)
    assert proc.returncode == 0, _rank_logs(tmp_path / "one-logs") + proc.stderr[-1500:]

    # two nodes of one process, c10d rendezvous on localhost; node b dies at step >= 15
    two, rows_dir = tmp_path / "two", tmp_path / "two-rows"

    def node(name: str, port: int) -> subprocess.Popen:
        launch = ["--nnodes", "2", "--nproc-per-node", "1", "--rdzv-backend", "c10d",
                  "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", f"job{port}"]
        return subprocess.Popen(_torchrun(*launch, out=two, data=data, logs=tmp_path / name),
                                env=_env(rows_dir), stdout=subprocess.DEVNULL,
                                stderr=open(tmp_path / f"{name}.err", "w"), start_new_session=True)

    port = _free_port()
    a = node("a", port)
    time.sleep(1.0)  # a hosts the rendezvous store
    b = node("b", port)
    _wait_for_step(two, 15, [a, b], timeout=300)
    assert a.poll() is None and b.poll() is None, "the job ended before node b was killed"
    for pid in _process_tree(b.pid):  # the machine is gone: its agent and its worker
        os.kill(pid, signal.SIGKILL)
    b.wait()
    assert a.wait(timeout=300) != 0  # the other node's rank fails on the lost peer
    assert _safe_losses(two)[-1][0] < 40
    # the job is launched again on both machines (a scheduler's requeue), same command
    port = _free_port()
    a2 = node("a2", port)
    time.sleep(1.0)
    b2 = node("b2", port)
    codes = (a2.wait(timeout=600), b2.wait(timeout=120))
    logs = _rank_logs(tmp_path / "a2") + _rank_logs(tmp_path / "b2")
    assert codes == (0, 0), logs + (tmp_path / "a2.err").read_text()[-1500:]
    assert f"resuming from {two / 'checkpoint'}" in logs, logs

    # the same losses as one node of two processes, step for step, after the resume too
    assert [s for s, _ in losses(two)] == list(range(1, 41))
    got, reference_losses = losses(two), losses(one)
    assert [s for s, _ in got] == [s for s, _ in reference_losses]
    assert [v for _, v in got] == pytest.approx([v for _, v in reference_losses], rel=1e-6)
    # each rank read its own rows: disjoint within every step, and the rows one node's
    # rank read at that step
    seen, reference = rows(rows_dir), rows(tmp_path / "one-rows")
    assert {s for s, _ in seen} >= set(range(40))
    for step in range(40):
        r0, r1 = seen[(step, 0)], seen[(step, 1)]
        assert len(r0) == len(r1) == 4 and not set(r0) & set(r1)
        assert (r0, r1) == (reference[(step, 0)], reference[(step, 1)])


def _record_rows() -> None:
    """Wrap the batch source so that each rank appends its rows' hashes to ROWS_DIR."""
    import numpy as np

    from maskedlm.pretrain import PretrainBatches

    folder = Path(os.environ["ROWS_DIR"])
    folder.mkdir(parents=True, exist_ok=True)
    rank = int(os.environ.get("RANK", "0"))
    real = PretrainBatches.step_batches

    def step_batches(self, step):
        batches = real(self, step)
        hashes = []
        for b in batches:
            tokens = np.where(b["labels"] != -100, b["labels"], b["input_ids"])
            for row, mask in zip(tokens, b["attention_mask"], strict=True):
                hashes.append(hashlib.sha1(row[mask.astype(bool)].tobytes()).hexdigest()[:12])
        with open(folder / f"rows-rank{rank}.jsonl", "a") as f:
            f.write(json.dumps({"step": step, "rank": rank, "rows": hashes}) + "\n")
        return batches

    PretrainBatches.step_batches = step_batches  # type: ignore[method-assign]


if __name__ == "__main__":
    _record_rows()
    from maskedlm.cli import main

    sys.exit(main())
