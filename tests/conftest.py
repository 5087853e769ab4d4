from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway import config
from tests.support.certs import CertFiles, make_certificates
from tests.support.gateway import RunningGateway, config_data
from tests.support.loopthread import LoopThread
from tests.support.sink import Sink


@pytest.fixture
def loop_thread() -> Iterator[LoopThread]:
    thread = LoopThread()
    yield thread
    thread.close()


@pytest.fixture
def sink(loop_thread: LoopThread) -> Iterator[Sink]:
    upstream = Sink()
    loop_thread.run(upstream.start())
    yield upstream
    loop_thread.run(upstream.stop())


@pytest.fixture(scope="session")
def certs() -> Iterator[CertFiles]:
    with tempfile.TemporaryDirectory() as directory:
        yield make_certificates(Path(directory))


@pytest.fixture
def make_gateway(
    loop_thread: LoopThread, sink: Sink, tmp_path: Path
) -> Iterator[Callable[..., RunningGateway]]:
    running: list[RunningGateway] = []

    def start(**overrides: Any) -> RunningGateway:
        data = config_data(tmp_path, sink.port, **overrides)
        gateway = RunningGateway(loop_thread, config.parse(data, base_dir=tmp_path))
        running.append(gateway)
        return gateway

    yield start
    for gateway in running:
        gateway.stop()


@pytest.fixture
def gateway(make_gateway: Callable[..., RunningGateway]) -> RunningGateway:
    return make_gateway()
