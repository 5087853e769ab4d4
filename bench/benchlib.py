"""What the benchmark scripts share: running their orchestration interruptibly."""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from typing import Any


def run_interruptibly(orchestrate: Callable[[], int], stopped: str) -> int:
    """Run ``orchestrate``; Ctrl-C or SIGTERM unwind it (its finally blocks clean up).

    SIGINT is reset to Python's handler so that a benchmark started in the
    background, where SIGINT comes ignored, can still be interrupted.
    """

    def terminate(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return orchestrate()
    except KeyboardInterrupt:
        print(f"interrupted; {stopped}", file=sys.stderr)
        return 130
    except RuntimeError as error:
        print(f"bench failed: {error}", file=sys.stderr)
        return 1
