"""``python -m maskedlm.cli ...`` and ``torchrun -m maskedlm.cli ...``."""

import sys

from maskedlm.cli import main

sys.exit(main())
