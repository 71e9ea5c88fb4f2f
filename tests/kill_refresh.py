"""`autodidact refresh`, killed with SIGKILL the moment a given step is on record.

The kill tests' fault injection, kept in the tests: product code holds no test hook. Run as
`python -m tests.kill_refresh STEP`; the settings come from the environment as usual.
"""

from __future__ import annotations

import os
import signal
import sys

from assistant.cli import main
from feedback.refresh.pipeline import Refresher


def kill_at(step: str) -> None:
    begin = Refresher._step

    def _step(self, run, name, **fields):
        run = begin(self, run, name, **fields)  # the step is committed before this returns
        if name == step:
            os.kill(os.getpid(), signal.SIGKILL)
        return run

    Refresher._step = _step


if __name__ == "__main__":
    kill_at(sys.argv[1])
    sys.exit(main(["refresh"]))
