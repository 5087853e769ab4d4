"""Running Sealgate: build the parts from the configuration, serve, reload, stop.

One process runs the SMTP intake, the pipeline and its upstream pool (and the
development outbox when configured). With ``service.workers`` above one, a
supervisor process starts that many worker processes that share the listen
ports with SO_REUSEPORT, forwards SIGTERM and SIGHUP to them and restarts a
worker that dies.

Signals: SIGTERM or SIGINT stop accepting connections, let transactions in
flight finish (at most ``service.shutdown_timeout`` seconds) and exit 0.
SIGHUP re-reads the configuration file and applies it to new connections:
TLS certificates, access lists, AUTH accounts, limits, the upstream, the
loop marker and the policy packs (a pack with a problem is refused and the
running packs kept). Listen addresses, workers, the outbox, the store and
the helper processes' settings need a restart.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from publicsuffixlist import PublicSuffixList

from gateway import config, devoutbox, logsetup
from gateway.envelope.keypool import KeyPool
from gateway.envelope.vault import Vault
from gateway.intake import IntakeServer
from gateway.logsetup import event
from gateway.loopmarker import LoopMarker, load_or_create_secret
from gateway.mailauth.dkimsign import DKIMKeyError, Signer, SigningKey
from gateway.mailauth.dns import Resolver
from gateway.mailauth.posture import PostureChecker
from gateway.mailauth.verify import Verifier
from gateway.pipeline import Pipeline, Protecting
from gateway.policy.engine import Policy
from gateway.policy.packs import PolicyError
from gateway.policy.textract import Limits, TextExtractor
from gateway.store import FileBlobStore, Store, StoreError
from gateway.upstream import UpstreamPool

log = logging.getLogger("sealgate.service")

# Options a reload cannot apply to a running process.
_RESTART_NEEDED: dict[str, Callable[[config.Config], object]] = {
    "smtp.listen": lambda cfg: cfg.smtp.listen,
    "service.workers": lambda cfg: cfg.service.workers,
    "dev_outbox": lambda cfg: cfg.dev_outbox,
    "store": lambda cfg: cfg.store,
    "envelope.rsa_bits": lambda cfg: cfg.envelope.rsa_bits,
    "envelope.key_pool_size": lambda cfg: cfg.envelope.key_pool_size,
    "envelope.key_processes": lambda cfg: cfg.envelope.key_processes,
    "policy.max_attachment_size": lambda cfg: cfg.policy.max_attachment_size,
    "policy.max_depth": lambda cfg: cfg.policy.max_depth,
    "policy.time_budget": lambda cfg: cfg.policy.time_budget,
    "policy.processes": lambda cfg: cfg.policy.processes,
}


def open_store(cfg: config.Config) -> Store:
    """The store the configuration names, migrated to the current schema."""
    store = Store(
        cfg.store.database_url,
        FileBlobStore(cfg.store.blob_root),
        busy_timeout=cfg.store.busy_timeout,
    )
    try:
        store.migrate()
    except StoreError as error:
        store.close()
        raise config.ConfigError("config", [f"store.database: {error}"]) from None
    return store


def load_policy(cfg: config.Config) -> Policy:
    """The configured packs, compiled; their problems as configuration errors."""
    try:
        return Policy.load(cfg.policy.pack_files)
    except PolicyError as error:
        raise config.ConfigError("policy", error.problems) from None


def extraction_limits(cfg: config.Config) -> Limits:
    settings = cfg.policy
    return Limits(
        max_attachment_bytes=settings.max_attachment_size,
        max_depth=settings.max_depth,
        time_budget=settings.time_budget,
    )


def text_extractor(cfg: config.Config) -> TextExtractor:
    return TextExtractor(extraction_limits(cfg), processes=cfg.policy.processes)


def open_vault(cfg: config.Config) -> Vault:
    envelope = cfg.envelope
    pool = KeyPool(envelope.rsa_bits, envelope.key_pool_size, envelope.key_processes)
    return Vault(open_store(cfg), pool, orphan_age=cfg.envelope.orphan_age)


def build_pipeline(cfg: config.Config, vault: Vault, extractor: TextExtractor) -> Pipeline:
    path = cfg.loop.secret_file
    if path is None:
        raise config.ConfigError("config", ["loop.secret_file: must be set"])
    try:
        secret = load_or_create_secret(path)
    except OSError as error:
        reason = f"cannot read or create {path}: {error.strerror}"
        raise config.ConfigError("config", [f"loop.secret_file: {reason}"]) from None
    marker = LoopMarker(secret, cfg.loop.max_age)
    policy = load_policy(cfg)
    upstream = UpstreamPool(cfg.upstream, cfg.smtp.hostname)
    resolver = build_resolver(cfg)
    protecting = Protecting(
        policy=policy,
        extractor=extractor,
        vault=vault,
        portal_url=cfg.portal.url,
        from_address=cfg.notify.from_address or f"sealgate@{cfg.smtp.hostname}",
        retention=timedelta(days=cfg.envelope.retention_days),
        idempotency_secret=hmac.new(secret, b"sealgate idempotency key", "sha256").digest(),
    )
    return Pipeline(
        upstream,
        marker,
        cfg.smtp.hostname,
        cfg.loop.max_hops,
        protecting,
        build_signer(cfg),
        build_verifier(cfg, resolver),
        sign_relayed=cfg.dkim.sign_relayed,
        posture=build_posture(cfg, resolver),
    )


def build_resolver(cfg: config.Config) -> Resolver | None:
    """The one resolver of mail authentication and recipient posture; None without verify."""
    settings = cfg.mailauth
    if not settings.verify:
        return None
    try:
        return Resolver(
            settings.nameservers,
            port=settings.port,
            timeout=settings.timeout,
            attempts=settings.attempts,
            trusted_validators=settings.trusted_validators,
        )
    except ValueError as error:
        raise config.ConfigError("config", [f"mailauth: {error}"]) from None


def build_verifier(cfg: config.Config, resolver: Resolver | None = None) -> Verifier | None:
    resolver = resolver if resolver is not None else build_resolver(cfg)
    if resolver is None:
        return None
    try:
        return Verifier(resolver, cfg.mailauth.authserv_id or cfg.smtp.hostname, _suffixes(cfg))
    except ValueError as error:
        raise config.ConfigError("config", [f"mailauth: {error}"]) from None


def _suffixes(cfg: config.Config) -> PublicSuffixList | None:
    """The public suffix list DMARC needs: a file kept current by the system (Debian's
    ``publicsuffix`` package), else the copy packaged with ``publicsuffixlist``."""
    path = cfg.mailauth.public_suffix_list
    if path is None:
        return None
    try:
        with path.open(encoding="utf-8") as source:
            return PublicSuffixList(source=source)
    except (OSError, UnicodeDecodeError) as error:
        raise config.ConfigError(
            "config", [f"mailauth.public_suffix_list: cannot be read: {error}"]
        ) from None


def build_posture(cfg: config.Config, resolver: Resolver | None) -> PostureChecker | None:
    """Recipient-domain transport posture (the ``recipient_tls`` condition), with verify."""
    if resolver is None:
        return None
    settings = cfg.mailauth
    try:
        return PostureChecker(
            resolver,
            https_port=settings.mta_sts_port,
            ca_file=settings.mta_sts_ca_file,
            timeout=settings.timeout,
        )
    except OSError as error:  # ssl.SSLError: not a PEM CA file
        raise config.ConfigError("config", [f"mailauth.mta_sts_ca_file: {error}"]) from None


def build_signer(cfg: config.Config) -> Signer:
    """The DKIM signer for what Sealgate sends itself; key problems as configuration errors."""
    keys, problems = [], []
    for index, key in enumerate(cfg.dkim.keys):
        assert key.key_file is not None
        try:
            keys.append(SigningKey.from_pem_file(key.domain, key.selector, key.key_file))
        except DKIMKeyError as error:
            problems.append(f"dkim.keys[{index}].key_file: {error}")
    try:
        signer = Signer(keys)
    except ValueError as error:
        problems.append(f"dkim.keys: {error}")
    if problems:
        raise config.ConfigError("config", problems)
    return signer


class Gateway:
    """The parts of one Sealgate process, with start, reload and stop."""

    def __init__(
        self, cfg: config.Config, source: Path | None = None, *, with_outbox: bool = True
    ) -> None:
        self.cfg = cfg
        self.source = source
        self.vault = open_vault(cfg)
        self.extractor = text_extractor(cfg)
        try:
            self.pipeline = build_pipeline(cfg, self.vault, self.extractor)
        except BaseException:
            self.vault.close()
            raise
        self.intake = IntakeServer(cfg.smtp, self.pipeline, str(source or "config"))
        self._with_outbox = with_outbox and cfg.dev_outbox.enabled
        self._outbox: asyncio.Server | None = None
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self, *, reuse_port: bool = False) -> None:
        self.vault.pool.start()
        if self.pipeline.protecting.policy.reads_content:
            self.extractor.start()  # else only if a reloaded pack needs it
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep())
        if self._with_outbox:
            outbox = self.cfg.dev_outbox
            assert outbox.directory is not None
            self._outbox = await devoutbox.start(outbox.listen, outbox.directory)
        await self.intake.start(reuse_port=reuse_port)
        event(
            log,
            logging.INFO,
            "listening",
            smtp=[str(a) for a in self.intake.addresses],
            upstream=f"{self.cfg.upstream.host}:{self.cfg.upstream.port}",
            pid=os.getpid(),
        )

    async def reload(self) -> bool:
        """Re-read the configuration file; keep the running one if the new one is bad."""
        if self.source is None:
            return False
        try:
            new = config.load(self.source)
            new_pipeline = build_pipeline(new, self.vault, self.extractor)
            self.intake.configure(new.smtp, new_pipeline, str(self.source))
        except (config.ConfigError, OSError, ValueError) as error:
            problems = error.problems if isinstance(error, config.ConfigError) else [str(error)]
            event(log, logging.ERROR, "reload refused, configuration kept", problems=problems)
            return False
        for key in _changed(self.cfg, new):
            event(log, logging.WARNING, "change needs a restart", option=key)
        old, self.pipeline, self.cfg = self.pipeline, new_pipeline, new
        logsetup.configure(new.log.level, new.log.format)
        await old.upstream.close()  # its policy threads end with it (garbage collection)
        event(log, logging.INFO, "configuration reloaded", source=str(self.source))
        return True

    async def stop(self) -> None:
        await self.intake.shutdown(self.cfg.service.shutdown_timeout)
        if self._outbox is not None:
            self._outbox.close()
            await self._outbox.wait_closed()
        await self.pipeline.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
        await asyncio.to_thread(self.vault.close)
        await asyncio.to_thread(self.extractor.close)
        event(log, logging.INFO, "stopped", pid=os.getpid())

    async def _sweep(self) -> None:
        """Expire envelopes past retention and remove orphaned blobs, on a timer."""
        while True:
            try:
                await self.vault.sweep()
            except StoreError as error:
                event(log, logging.WARNING, "sweep failed, will retry", error=str(error))
            except Exception:
                # Expiry must not stop for the life of the process over one bad sweep
                # (a blob directory it cannot read, say).
                log.exception("sweep failed, will retry")
            await asyncio.sleep(self.cfg.envelope.expire_interval)


def _changed(old: config.Config, new: config.Config) -> list[str]:
    return [key for key, value in _RESTART_NEEDED.items() if value(old) != value(new)]


async def run_process(
    cfg: config.Config,
    source: Path | None,
    *,
    reuse_port: bool = False,
    with_outbox: bool = True,
    on_ready: Callable[[Gateway], None] | None = None,
) -> int:
    """Serve until SIGTERM or SIGINT; SIGHUP reloads."""
    gateway = Gateway(cfg, source, with_outbox=with_outbox)
    await gateway.start(reuse_port=reuse_port)
    if on_ready is not None:
        on_ready(gateway)
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    reloads: set[asyncio.Task[bool]] = set()

    def reload() -> None:
        task = loop.create_task(gateway.reload())
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGTERM, stopping.set)
    loop.add_signal_handler(signal.SIGINT, stopping.set)
    loop.add_signal_handler(signal.SIGHUP, reload)
    await stopping.wait()
    event(log, logging.INFO, "stopping", pid=os.getpid())
    await gateway.stop()
    return 0


async def supervise(cfg: config.Config, source: Path, workers: int) -> int:
    """Run ``workers`` worker processes sharing the listen ports; restart any that die."""
    if any(address.port == 0 for address in cfg.smtp.listen):
        raise config.ConfigError(
            str(source), ["smtp.listen: several workers need a fixed port, not 0"]
        )
    open_store(cfg).close()  # migrate once, before the workers start
    outbox = None
    if cfg.dev_outbox.enabled and cfg.dev_outbox.directory is not None:
        outbox = await devoutbox.start(cfg.dev_outbox.listen, cfg.dev_outbox.directory)
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    processes: list[asyncio.subprocess.Process] = []

    def forward(signum: int) -> None:
        for process in processes:
            if process.returncode is None:
                process.send_signal(signum)

    loop.add_signal_handler(signal.SIGTERM, stopping.set)
    loop.add_signal_handler(signal.SIGINT, stopping.set)
    loop.add_signal_handler(signal.SIGHUP, forward, signal.SIGHUP)

    async def worker(slot: int) -> None:
        while not stopping.is_set():
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "gateway", "serve", "-c", str(source), "--worker",
                stdin=subprocess.DEVNULL,
            )  # fmt: skip
            processes.append(process)
            code = await process.wait()
            processes.remove(process)
            if not stopping.is_set():
                event(log, logging.ERROR, "worker died, restarting", slot=slot, exit_code=code)
                await asyncio.sleep(1)

    tasks = [loop.create_task(worker(slot)) for slot in range(workers)]
    event(log, logging.INFO, "supervising", workers=workers, pid=os.getpid())
    await stopping.wait()
    forward(signal.SIGTERM)
    await asyncio.wait(tasks, timeout=cfg.service.shutdown_timeout + 10)
    forward(signal.SIGKILL)
    if outbox is not None:
        outbox.close()
    event(log, logging.INFO, "stopped", pid=os.getpid())
    return 0
