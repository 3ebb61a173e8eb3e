"""Metrics logging: metrics.jsonl lines and TensorBoard scalars (with the extra installed)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from maskedlm.files import append_line, repair_jsonl

TENSORBOARD_DIR = "tb"


def tensorboard_writer(out_dir: Path) -> Any:
    """A ``SummaryWriter`` on ``out_dir/tb/`` with the ``tensorboard`` extra installed, else None."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # the extra is optional: metrics.jsonl alone, as before
        return None
    return SummaryWriter(str(Path(out_dir) / TENSORBOARD_DIR))


def write_scalars(writer: Any, record: dict[str, Any], step: int, prefix: str = "") -> None:
    """Every number in ``record`` as a scalar at ``step``; nested dicts as ``dev/f1`` tags.

    Flushed before returning: the writer's thread appends to its event file by path, so
    nothing may be pending while fine-tuning swaps the run directory (and ``tb/`` in it)."""
    if writer is None:
        return
    _add_scalars(writer, record, step, prefix)
    writer.flush()


def _add_scalars(writer: Any, record: dict[str, Any], step: int, prefix: str) -> None:
    for k, v in record.items():
        if isinstance(v, dict):
            _add_scalars(writer, v, step, f"{prefix}{k}/")
        elif k != "step" and isinstance(v, int | float) and not isinstance(v, bool):
            writer.add_scalar(prefix + k, v, step)


class MetricsLog:
    """metrics.jsonl (+ TensorBoard scalars in ``tb/`` when installed); only rank 0 writes."""

    def __init__(self, out_dir: Path, enabled: bool, resume_step: int = 0) -> None:
        self.enabled = enabled
        self.path = out_dir / "metrics.jsonl"
        self.tb = None
        if not enabled:
            return
        out_dir.mkdir(parents=True, exist_ok=True)
        if resume_step:  # drop lines logged after the checkpoint, and a torn last line
            repair_jsonl(self.path, keep=lambda r: r.get("step", 0) <= resume_step)
        elif self.path.exists() or self.path.is_symlink():
            self.path.unlink()
        self.tb = tensorboard_writer(out_dir)

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        append_line(self.path, json.dumps(record))
        write_scalars(self.tb, record, record["step"])

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()  # flushes the event file


