from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway import config
from gateway.store import FileBlobStore, Store
from tests.support.certs import CertFiles, make_certificates
from tests.support.gateway import RunningGateway, config_data
from tests.support.loopthread import LoopThread
from tests.support.oidc import OIDCProvider
from tests.support.portal import Browser
from tests.support.postgres import PostgresCluster, start_cluster
from tests.support.process import ServeProcess, free_port, write_toml
from tests.support.samba import SambaDC, start_samba
from tests.support.sink import Sink
from tests.support.slapd import Slapd, start_slapd
from tests.support.unbound import TestDNS, start_test_dns

# The `peers` tier: tests that start a real peer (PostgreSQL, unbound and the test DNS,
# chromium, Perl's Mail::DKIM, Postfix, swaks, an OpenID provider), Sealgate itself as a process (`sealgate
# serve`, its command line), or servers on an event loop of their own (the fake upstream
# and Sealgate in-process, on which every end-to-end test stands). `pytest -m "not peers"`
# leaves them out and runs the unit tier in about a minute on two cores. A test is marked
# when it uses one of these fixtures, directly or through another fixture; modules and
# tests that start such a process themselves carry the mark in their own file
# (`pytest.mark.peers`). Not peers: the helper processes a component under test starts
# for itself (text extraction).
PEER_FIXTURES = frozenset(
    {
        "postgres_cluster",  # PostgreSQL, and the store fixtures' "postgresql" parameter
        "test_dns",  # unbound in front of the test zones' authoritative server
        "serve",  # `sealgate serve` as a process
        "browser",  # chromium (tests/test_portal_pages.py, tests/test_portal_browser.py)
        "perl_verify",  # Mail::DKIM, the independent DKIM verifier (tests/test_dkimsign.py)
        "loop_thread",  # servers on an event loop of their own: the fake upstream, Sealgate
        "oidc_provider",  # oidc-provider on Node.js, the organisation's single sign-on
        "samba_dc",  # a Samba AD domain controller in a network namespace (directory sync)
        "slapd_server",  # OpenLDAP's slapd (directory sync)
    }
)
# Parametrized fixtures whose "postgresql" case asks for postgres_cluster while the test runs.
POSTGRESQL_PARAMETERS = frozenset({"store_url"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if uses_a_peer(item):
            item.add_marker(pytest.mark.peers)


def uses_a_peer(item: pytest.Item) -> bool:
    if PEER_FIXTURES & set(getattr(item, "fixturenames", ())):
        return True
    callspec = getattr(item, "callspec", None)
    params = callspec.params if callspec is not None else {}
    return any(params.get(name) == "postgresql" for name in POSTGRESQL_PARAMETERS)


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


@pytest.fixture
def serve(tmp_path: Path, sink: Sink) -> Iterator[Callable[..., tuple[ServeProcess, int, Path]]]:
    """Start `sealgate serve` as a process against the sink; (process, port, config path)."""
    started: list[ServeProcess] = []

    def start(*args: str, **overrides) -> tuple[ServeProcess, int, Path]:
        port = free_port()
        data = config_data(tmp_path, sink.port, **overrides)
        data["smtp"]["listen"] = f"127.0.0.1:{port}"
        data["portal"]["listen"] = f"127.0.0.1:{free_port()}"  # tests read it from the file
        path = write_toml(tmp_path / f"sealgate-{len(started)}.toml", data)
        process = ServeProcess(path, *args)
        started.append(process)
        process.wait_listening(port)
        return process, port, path

    yield start
    for process in started:
        process.stop()


@pytest.fixture
def oidc_provider(tmp_path: Path) -> Iterator[Callable[..., OIDCProvider]]:
    """New OpenID providers (tests/support/oidc.py), not started: ``idp = oidc_provider()``,
    then ``idp.add_account(...)``, ``idp.add_client(...)``, ``idp.start()`` and ``idp.issuer``.
    Keyword arguments go to :class:`OIDCProvider`. Every one is stopped after the test.
    Fails, never skips, without Node.js.
    """
    made: list[OIDCProvider] = []

    def make(**options: Any) -> OIDCProvider:
        provider = OIDCProvider(tmp_path / f"oidc-{len(made) + 1}", **options)
        made.append(provider)
        return provider

    yield make
    for provider in made:
        provider.stop()


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """One throwaway PostgreSQL cluster for the session; fails (never skips) if absent."""
    try:
        cluster = start_cluster()
    except RuntimeError as error:
        pytest.fail(str(error), pytrace=False)
    yield cluster
    cluster.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database on each backend: a SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'db' / 'sealgate.db'}"
        return
    cluster: PostgresCluster = request.getfixturevalue("postgres_cluster")
    name = cluster.create_database()
    yield cluster.url(name)
    cluster.drop_database(name)


@pytest.fixture
def store(store_url: str, tmp_path: Path) -> Iterator[Store]:
    """A migrated Store on ``store_url`` with its blobs under ``tmp_path``."""
    opened = Store(store_url, FileBlobStore(tmp_path / "blobs"))
    opened.migrate()
    yield opened
    opened.close()


@pytest.fixture(scope="session")
def test_dns() -> Iterator[TestDNS]:
    """The test DNS for the session: signed, unsigned and bogus zones behind a validating unbound.

    Zones (see ``tests.support.zones.mail_auth_zones``): ``signed.test`` (SPF, DMARC p=reject,
    DKIM selectors ``sel``/``ed``, MX with DANE TLSA), ``unsigned.test``, ``bogus.test``
    (SERVFAIL) and ``timeout.test`` (never answers). Point a resolver at
    ``test_dns.resolver_address`` or use ``test_dns.resolver()``; the private keys are in
    ``test_dns.keys``. ``test_dns.set_records(name, records)`` changes a zone at runtime (a few
    ms): use names of your own, the fixture is shared. Fails, never skips, without unbound.
    """
    try:
        environment = start_test_dns()
    except RuntimeError as error:
        pytest.fail(str(error), pytrace=False)
    yield environment
    environment.stop()


@pytest.fixture(scope="session")
def samba_dc(certs: CertFiles) -> Iterator[SambaDC]:
    """A Samba AD domain controller (realm SEALGATE.TEST) for the session, reached at
    ``samba_dc.url`` (LDAPS through a relay on 127.0.0.1; the CA is ``samba_dc.ca``).
    The provisioned domain is cached between runs (tests/support/samba.py): about 15 s
    the first time, then about 1 s to start. Each test makes its own OU with
    ``samba_dc.new_ou()``. Fails, never skips, without Samba or root."""
    try:
        dc = start_samba(certs)
    except RuntimeError as error:
        pytest.fail(str(error), pytrace=False)
    yield dc
    dc.stop()


@pytest.fixture(scope="session")
def slapd_server(certs: CertFiles) -> Iterator[Slapd]:
    """OpenLDAP's slapd for the session at ``slapd_server.url`` (StartTLS required; the CA
    is ``slapd_server.ca``), base ``dc=sealgate,dc=test``. Each test makes its own OU with
    ``slapd_server.new_ou()``. Fails, never skips, without slapd."""
    try:
        server = start_slapd(certs)
    except RuntimeError as error:
        pytest.fail(str(error), pytrace=False)
    yield server
    server.stop()


@pytest.fixture
def browsers():
    """Browser(url), each closed at the end of the test."""
    opened: list[Browser] = []

    def open_one(url: str) -> Browser:
        opened.append(Browser(url))
        return opened[-1]

    yield open_one
    for browser in opened:
        browser.close()
