"""``torchrun`` entry point for the elastic-restart test (not a test module itself).

Runs ``maskedlm`` as ``python -m maskedlm.cli`` would; with ``DIE_AT_STEP=N`` set, rank 1 of
the first attempt (``TORCHELASTIC_RESTART_COUNT=0``) SIGKILLs itself when its batches for
step N are built, as a rank lost to a crash or an out-of-memory kill would be.
"""

from __future__ import annotations

import os
import signal
import sys

from maskedlm.cli import main
from maskedlm.pretrain import PretrainBatches


def run() -> int:
    die_at = int(os.environ.get("DIE_AT_STEP", "0"))
    if die_at and os.environ.get("RANK") == "1" and os.environ.get("TORCHELASTIC_RESTART_COUNT") == "0":
        real = PretrainBatches.step_batches

        def step_batches(self, step):
            if step == die_at:
                os.kill(os.getpid(), signal.SIGKILL)
            return real(self, step)

        PretrainBatches.step_batches = step_batches  # type: ignore[method-assign]

    return main()


if __name__ == "__main__":
    sys.exit(run())
