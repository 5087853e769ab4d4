"""Running Sealgate in-process for tests, against a fake upstream."""

from __future__ import annotations

import copy
import smtplib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway import config
from gateway.service import Gateway
from tests.support.loopthread import LoopThread

POLICIES = Path(__file__).resolve().parents[2] / "policies"


def merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    result = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merge(result[key], value)
        else:
            result[key] = value
    return result


def config_data(state: Path, upstream_port: int, **overrides: Any) -> dict[str, Any]:
    """A configuration for tests: loopback, port 0, short timeouts, state under ``state``."""
    base = {
        "smtp": {
            "listen": "127.0.0.1:0",
            "hostname": "sealgate.test",
            "command_timeout": 10,
            "data_timeout": 10,
        },
        "upstream": {
            "host": "127.0.0.1",
            "port": upstream_port,
            "connect_timeout": 3,
            "command_timeout": 3,
            "data_timeout": 3,
        },
        "loop": {"secret_file": str(state / "loop.key")},
        "service": {"shutdown_timeout": 5},
        "policy": {"packs": [str(POLICIES / "baseline.toml")]},
        "portal": {"listen": "127.0.0.1:0"},
    }
    return merge(base, overrides)


class RunningGateway:
    def __init__(self, thread: LoopThread, cfg: config.Config) -> None:
        self.thread = thread
        self.cfg = cfg
        self.gateway = Gateway(cfg, None, with_outbox=False)
        thread.run(self.gateway.start())
        self.port = self.gateway.intake.addresses[0].port

    def client(self, **kwargs: Any) -> smtplib.SMTP:
        return smtplib.SMTP("127.0.0.1", self.port, timeout=kwargs.pop("timeout", 15), **kwargs)

    def stop(self) -> None:
        self.thread.run(self.gateway.stop())


def wait_for(condition: Callable[[], object], timeout: float = 10, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")
