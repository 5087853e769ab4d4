"""What the benchmark scripts share: statistics, event-loop gaps, interruptible runs."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
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


def median(values: Iterable[float]) -> float:
    return float(statistics.median(values))


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * pct / 100
    low = int(k)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (k - low)


async def loop_gaps(work: Callable[[], Awaitable[Any]]) -> dict[str, float]:
    """Run ``work`` beside a task that ticks every 1 ms: the gaps between its ticks."""
    gaps: list[float] = []
    stop = False

    async def ticker() -> None:
        last = time.perf_counter()
        while not stop:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0.05)
    gaps.clear()
    started = time.perf_counter()
    await work()
    elapsed = time.perf_counter() - started
    stop = True
    await task
    return {
        "seconds": elapsed,
        "ticks": len(gaps),
        "max_gap_ms": max(gaps) * 1000,
        "p99_gap_ms": percentile(gaps, 99) * 1000,
        "gaps_over_10ms": sum(1 for g in gaps if g > 0.010),
    }


def memory(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of ``pid`` in bytes: its resident memory now, and at its peak."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = int(value.split()[0]) * 1024
    return found["VmRSS"], found["VmHWM"]


def stop_process_group(proc: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM and wait ``timeout``; then SIGKILL whatever is left of its process group
    (a supervisor's workers, the text extractor's helpers)."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)
