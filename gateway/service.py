"""Running Sealgate: build the parts from the configuration, serve, reload, stop.

One process runs the SMTP intake, the pipeline and its upstream pool, the portal
(and the development outbox when configured). With ``service.workers`` above one,
a supervisor process binds the listening sockets, starts that many worker
processes that inherit them (one accept queue per address, shared: a worker that
dies takes no waiting connection with it), forwards SIGTERM and SIGHUP to them and
restarts a worker that dies.

Signals: SIGTERM or SIGINT stop accepting connections, let transactions in
flight finish (at most ``service.shutdown_timeout`` seconds) and exit 0.
SIGHUP re-reads the configuration file. Which options a reload applies is said
in the schema (:mod:`gateway.config`: ``reloadable`` and ``restart_only`` of each
table). The pipeline and the portal's dependencies are built together from the
new configuration, as one :class:`Wiring`, and replace the running ones at once
for new connections and requests; if anything in it fails to build, the running
wiring is kept and the reason logged. A restart-only option that changed is
logged by name and keeps its running value until a restart.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import uvicorn
from publicsuffixlist import PublicSuffixList
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway import config, devoutbox, logsetup
from gateway.envelope.reply import ReplyKey
from gateway.envelope.vault import Vault
from gateway.identity import sso
from gateway.identity.accounts import AccountDesk
from gateway.identity.passkeys import Passkeys
from gateway.identity.sso import StateSealer
from gateway.identity.ssoaccounts import SSOAccounts
from gateway.identity.textcodes import TextCodes
from gateway.identity.totp import TOTP
from gateway.installsecret import Secrets
from gateway.intake.listener import SHARED_BACKLOG, IntakeServer
from gateway.logsetup import event
from gateway.mail.instructions import Retention
from gateway.mailauth.dkimsign import DKIMKeyError, Signer, SigningKey
from gateway.mailauth.dns import Resolver
from gateway.mailauth.posture import PostureChecker
from gateway.mailauth.verify import Verifier
from gateway.notify import Branding, Notifier
from gateway.notify import Settings as NotifySettings
from gateway.outbound.loopmarker import LoopMarker
from gateway.outbound.ownmail import OwnMail
from gateway.outbound.upstream import UpstreamPool
from gateway.pipeline import Holding, Pipeline, Protecting
from gateway.policy.engine import Policy
from gateway.policy.packs import PolicyError
from gateway.policy.textract import Limits, TextExtractor
from gateway.portal import sms
from gateway.portal.app import create_app
from gateway.portal.codes import CodeBook
from gateway.portal.deadlines import Deadlines, protocol_with
from gateway.portal.deps import PortalDeps, SingleSignOn
from gateway.portal.links import release_url, revoke_url
from gateway.portal.release import Releaser
from gateway.portal.replies import ReplyDesk
from gateway.portal.scim import scim_access
from gateway.store import Store, StoreError, open_store
from gateway.store.directoryfacts import DirectoryFacts
from gateway.store.pending import PendingLinks
from gateway.store.portalstate import PortalState

log = logging.getLogger("sealgate.service")
_BLOCKING_THREADS = 32  # the default thread pool of each process (see run_process)


def load_policy(cfg: config.Config) -> Policy:
    """The configured packs, compiled; their problems as configuration errors."""
    try:
        return Policy.load(cfg.policy.pack_files)
    except PolicyError as error:
        raise config.ConfigError("policy", error.problems) from None


def text_extractor(cfg: config.Config) -> TextExtractor:
    return TextExtractor(Limits.from_config(cfg.policy), processes=cfg.policy.processes)


def open_vault(cfg: config.Config) -> Vault:
    return Vault(open_store(cfg.store), orphan_age=cfg.envelope.orphan_age)


def from_address(cfg: config.Config) -> str:
    return cfg.notify.from_address or f"sealgate@{cfg.smtp.hostname}"


def build_notifier(cfg: config.Config, portal_url: str) -> Notifier:
    settings = cfg.notify
    subjects = {lang: text for lang, text in (("en", settings.subject_en),
                                              ("nl", settings.subject_nl)) if text}  # fmt: skip
    logo = f"{portal_url}/assets/logo" if settings.logo_file is not None else None
    try:
        return Notifier(
            NotifySettings(
                from_address=from_address(cfg),
                hostname=cfg.smtp.hostname,
                branding=Branding(settings.organisation, logo, settings.colour),
                reply_to=settings.reply_to,
                subject=subjects or None,
                language=settings.language,
                default_language=settings.default_language,
                domain_languages=dict(settings.domain_languages),
                allow_note=settings.allow_note,
                max_note_length=settings.max_note_length,
            )
        )
    except ValueError as error:
        raise config.ConfigError("config", [f"notify: {error}"]) from None


@dataclass(frozen=True)
class Lasting:
    """The parts that live as long as the process (their options are restart-only)."""

    vault: Vault
    extractor: TextExtractor
    portal_url: str
    reply_key: Callable[[], ReplyKey] | None  # None without the portal


@dataclass(frozen=True)
class Wiring:
    """The pipeline and the portal's dependencies, built from one configuration with one
    set of secrets: a reload replaces both or neither."""

    cfg: config.Config
    pipeline: Pipeline
    portal: PortalDeps | None
    app: ASGIApp | None  # the portal's web application over ``portal``


def build_wiring(cfg: config.Config, lasting: Lasting) -> Wiring:
    """Everything a reload replaces, built fully (or a ConfigError, OSError or ValueError)."""
    secrets = Secrets.load(cfg.loop.secret_file)
    notifier = build_notifier(cfg, lasting.portal_url)
    pipeline = build_pipeline(cfg, lasting, secrets, notifier)
    if lasting.reply_key is None:
        return Wiring(cfg, pipeline, None, None)
    portal = build_portal(cfg, lasting, lasting.reply_key, secrets, pipeline)
    return Wiring(cfg, pipeline, portal, create_app(portal))


def build_pipeline(
    cfg: config.Config, lasting: Lasting, secrets: Secrets, notifier: Notifier
) -> Pipeline:
    """The pipeline; with the portal (its reply key), held recipients wait for release."""
    portal_url = lasting.portal_url
    sender_links = secrets.sender_links
    resolver = build_resolver(cfg)
    holding = None
    if lasting.reply_key is not None:
        reply_key = lasting.reply_key
        holding = Holding(
            public_key=lambda: reply_key().public_der,
            release_url=lambda envelope_id: release_url(portal_url, sender_links, envelope_id),
            open_link=lambda sealed: reply_key().open_link(sealed),
        )
    protecting = Protecting(
        policy=load_policy(cfg),
        extractor=lasting.extractor,
        vault=lasting.vault,
        state=PortalState(lasting.vault.store),
        pending=PendingLinks(lasting.vault.store),
        notifier=notifier,
        portal_url=portal_url,
        from_address=from_address(cfg),
        retention=Retention(
            default=timedelta(days=cfg.envelope.retention_days),
            shortest=timedelta(days=cfg.envelope.min_expiry_days),
            longest=timedelta(days=cfg.envelope.max_expiry_days),
        ),
        idempotency_secret=secrets.idempotency,
        code_secret=secrets.access_codes,
        sms=cfg.sms.provider != "none",
        receipt=(lambda envelope_id: revoke_url(portal_url, sender_links, envelope_id))
        if cfg.notify.receipt
        else None,
        holding=holding,
        directory=DirectoryFacts(lasting.vault.store),
    )
    own = OwnMail(
        UpstreamPool(cfg.upstream, cfg.smtp.hostname),
        build_signer(cfg),
        LoopMarker(secrets.loop_marker, cfg.loop.max_age),
    )
    return Pipeline(
        own,
        cfg.smtp.hostname,
        cfg.loop.max_hops,
        protecting,
        build_verifier(cfg, resolver),
        sign_relayed=cfg.dkim.sign_relayed,
        posture=build_posture(cfg, resolver),
        authserv_id=cfg.mailauth.authserv_id or cfg.smtp.hostname,
    )


def build_portal(
    cfg: config.Config,
    lasting: Lasting,
    reply_key: Callable[[], ReplyKey],
    secrets: Secrets,
    pipeline: Pipeline,
) -> PortalDeps:
    """The portal's dependencies: the same notifier, secrets and way out for our own mail
    (``pipeline.own``) as the pipeline."""
    store = lasting.vault.store
    state = PortalState(store)
    notifier = pipeline.protecting.notifier
    desk = ReplyDesk(
        store,
        state,
        reply_key,
        lambda: notifier,
        pipeline.own.send,
        from_address=from_address(cfg),
        hostname=cfg.smtp.hostname,
        max_plaintext=cfg.portal.max_reply_size,
    )
    releaser = Releaser(
        store, state, reply_key, lambda: notifier, pipeline.own.send, lambda: lasting.portal_url
    )
    return PortalDeps(
        settings=cfg.portal,
        store=store,
        state=state,
        codes=CodeBook(state, secrets.access_codes, cfg.portal),
        desk=desk,
        releaser=releaser,
        notifier=lambda: notifier,
        send=pipeline.own.send,
        sms=sms.provider(cfg),
        reply_key=reply_key,
        secret=secrets.sender_links,
        url=lasting.portal_url,
        organisation=cfg.notify.organisation,
        colour=cfg.notify.colour,
        from_address=from_address(cfg),
        default_language=cfg.notify.default_language,
        logo_file=cfg.notify.logo_file,
        read_notice=cfg.notify.read_notice,
        accounts=account_desk(cfg, store, secrets, lasting.portal_url),
        account_settings=cfg.accounts,
        expiry_days=(cfg.envelope.min_expiry_days, cfg.envelope.max_expiry_days),
        sso=single_sign_on(cfg, store, secrets, lasting.portal_url),
        scim=scim_access(cfg.scim),
    )


def single_sign_on(
    cfg: config.Config, store: Store, secrets: Secrets, portal_url: str
) -> SingleSignOn | None:
    """The identity providers of ``[sso]``; None when none is configured."""
    if not cfg.sso.providers:
        return None
    return SingleSignOn(
        providers=sso.providers(cfg.sso, portal_url),
        states=StateSealer(secrets.sso_states),
        accounts=SSOAccounts(store, secrets.sso_tokens),
    )


def account_desk(
    cfg: config.Config, store: Store, secrets: Secrets, portal_url: str
) -> AccountDesk:
    """Sign-up and sign-in with the second factors ``accounts.factors`` allows (and the
    installation can offer: SMS needs a provider, passkeys a host name)."""
    allowed = cfg.accounts.factors
    organisation = cfg.notify.organisation
    return AccountDesk(
        store,
        TOTP(secrets.totp, issuer=organisation) if "totp" in allowed else None,
        secrets.account_lookups,
        secrets.recovery_codes,
        secrets.account_resets,
        passkeys(secrets.passkeys, portal_url, organisation) if "passkey" in allowed else None,
        TextCodes(secrets.account_texts)
        if "sms" in allowed and cfg.sms.provider != "none"
        else None,
    )


def passkeys(key: bytes, portal_url: str, organisation: str) -> Passkeys | None:
    """Passkeys bound to the portal's host name; None when the URL names an IP address,
    which browsers refuse as a relying party (docs/accounts.md)."""
    parts = urlsplit(portal_url)
    host = parts.hostname or ""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        origin = f"{parts.scheme}://{parts.netloc}"
        return Passkeys(key, host, organisation, origin) if host else None
    return None


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


@dataclass
class Listeners:
    """Listening sockets made before the gateway: a supervisor's, inherited by its workers.
    Every worker accepts from the same sockets, so a connection waits in one queue that
    no worker's death resets."""

    smtp: list[socket.socket] = field(default_factory=list)
    portal: socket.socket | None = None

    @classmethod
    def bind(cls, cfg: config.Config) -> Listeners:
        """Sockets for ``smtp.listen`` and (when enabled) ``portal.listen``."""
        smtp = _bind_smtp(cfg.smtp.listen)
        try:
            portal = _bind_portal(cfg) if cfg.portal.enabled else None
        except BaseException:
            for sock in smtp:
                sock.close()
            raise
        return cls(smtp, portal)

    @classmethod
    def inherit(cls, smtp: Sequence[int], portal: int | None) -> Listeners:
        """The sockets behind file descriptors passed down by the supervisor."""
        adopted = cls([socket.socket(fileno=fd) for fd in smtp])
        if portal is not None:
            adopted.portal = socket.socket(fileno=portal)
        for sock in adopted.sockets:
            sock.setblocking(False)
        return adopted

    @property
    def sockets(self) -> list[socket.socket]:
        return self.smtp + ([self.portal] if self.portal is not None else [])

    @property
    def smtp_addresses(self) -> list[config.HostPort]:
        """The SMTP addresses as bound (the ports the kernel picked for port 0)."""
        return [config.HostPort(*sock.getsockname()[:2]) for sock in self.smtp]

    @property
    def portal_address(self) -> config.HostPort:
        assert self.portal is not None
        return config.HostPort(*self.portal.getsockname()[:2])

    def portal_url(self, cfg: config.Config) -> str:
        """The portal's URL in links, as each worker will make it from this socket."""
        return cfg.portal.url or _local_url(self.portal, cfg.portal.tls_certificate is not None)

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()


class Gateway:
    """The parts of one Sealgate process, with start, reload and stop."""

    def __init__(
        self,
        cfg: config.Config,
        source: Path | None = None,
        *,
        with_outbox: bool = True,
        listeners: Listeners | None = None,
    ) -> None:
        self.source = source
        self._smtp_sockets = listeners.smtp if listeners is not None else []
        if listeners is not None:  # a worker serves what its supervisor bound
            self._portal_socket = listeners.portal
        else:
            self._portal_socket = _bind_portal(cfg) if cfg.portal.enabled else None
        self.portal_url = cfg.portal.url or _local_url(
            self._portal_socket, cfg.portal.tls_certificate is not None
        )
        try:
            reply_key = _reply_key(cfg) if self._portal_socket is not None else None
            vault = open_vault(cfg)
        except BaseException:
            if self._portal_socket is not None:
                self._portal_socket.close()
            raise
        self._lasting = Lasting(vault, text_extractor(cfg), self.portal_url, reply_key)
        try:
            self._wiring = build_wiring(cfg, self._lasting)
        except BaseException:
            vault.close()
            if self._portal_socket is not None:
                self._portal_socket.close()
            raise
        self.intake = IntakeServer(cfg.smtp, self.pipeline, str(source or "config"))
        self._with_outbox = with_outbox and cfg.dev_outbox.enabled
        self._outbox: asyncio.Server | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._web: uvicorn.Server | None = None
        self._web_task: asyncio.Task[None] | None = None

    @property
    def cfg(self) -> config.Config:
        """The configuration running now (restart-only options as at the start)."""
        return self._wiring.cfg

    @property
    def pipeline(self) -> Pipeline:
        return self._wiring.pipeline

    @property
    def portal(self) -> PortalDeps | None:
        return self._wiring.portal

    @property
    def vault(self) -> Vault:
        return self._lasting.vault

    @property
    def extractor(self) -> TextExtractor:
        return self._lasting.extractor

    async def _portal_app(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The portal of the current wiring; a request keeps the one it started with."""
        app = self._wiring.app
        assert app is not None
        await app(scope, receive, send)

    async def start(self) -> None:
        """Start everything, or (on any failure) release what was started and raise."""
        try:
            if self.pipeline.protecting.policy.reads_content:
                self.extractor.start()  # else only if a reloaded pack needs it
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep())
            if self._with_outbox:
                outbox = self.cfg.dev_outbox
                assert outbox.directory is not None
                self._outbox = await devoutbox.start(outbox.listen, outbox.directory)
            await self._start_portal()
            await self.intake.start(self._smtp_sockets)
        except BaseException:
            await self._release()
            raise
        event(
            log,
            logging.INFO,
            "listening",
            smtp=[str(a) for a in self.intake.addresses],
            portal=self.portal_url if self.portal is not None else "off",
            upstream=f"{self.cfg.upstream.host}:{self.cfg.upstream.port}",
            pid=os.getpid(),
        )
        for warning in config.deprecations(self.cfg):
            event(log, logging.WARNING, "configuration", problem=warning)

    async def _start_portal(self) -> None:
        """The portal on uvicorn, in this event loop, on the socket bound at construction."""
        if self.portal is None or self._portal_socket is None:
            return
        settings = self.cfg.portal
        web = uvicorn.Config(
            self._portal_app,
            interface="asgi3",
            lifespan="off",
            log_config=None,
            access_log=False,
            server_header=False,
            proxy_headers=False,
            ssl_certfile=settings.tls_certificate,
            ssl_keyfile=settings.tls_key,
            timeout_keep_alive=10,
            # h11 with header and body deadlines and a connection cap (portal/deadlines.py):
            # uvicorn alone never closes a connection that is slow to send its request.
            http=protocol_with(
                Deadlines(
                    header=settings.header_timeout,
                    body=settings.body_timeout,
                    body_rate=settings.body_min_rate,
                    max_connections=settings.max_connections,
                )
            ),
            ws="none",
            # A client holding a connection open must not hold up a stop.
            timeout_graceful_shutdown=int(self.cfg.service.shutdown_timeout),
            h11_max_incomplete_event_size=32 * 1024,
        )
        web.load()
        # Request lines carry link ids and sender tokens: never logged, whatever handlers
        # the process has (uvicorn logs them whenever "uvicorn.access" has a handler).
        logging.getLogger("uvicorn.access").disabled = True
        server = uvicorn.Server(web)
        server.lifespan = web.lifespan_class(web)
        await server.startup(sockets=[self._portal_socket])
        self._web = server
        self._web_task = asyncio.get_running_loop().create_task(server.main_loop())

    async def _stop_portal(self) -> None:
        if self._web is None or self._web_task is None:
            return
        self._web.should_exit = True
        await self._web_task
        await self._web.shutdown()
        self._web = None

    @property
    def portal_address(self) -> tuple[str, int] | None:
        if self._portal_socket is None:
            return None
        host, port = self._portal_socket.getsockname()[:2]
        return host, port

    async def reload(self) -> bool:
        """Re-read the configuration file and apply it, pipeline and portal together; keep
        the running wiring if anything in the new one cannot be built."""
        if self.source is None:
            return False
        running = self._wiring
        try:
            new, needs_restart = config.reloaded(running.cfg, config.load(self.source))
            wiring = build_wiring(new, self._lasting)
        except (config.ConfigError, OSError, ValueError) as error:
            _refused(error)
            return False
        try:
            self.intake.configure(new.smtp, wiring.pipeline, str(self.source))
        except (config.ConfigError, OSError, ValueError) as error:
            await wiring.pipeline.close()
            _refused(error)
            return False
        self._wiring = wiring
        for option in needs_restart:
            event(log, logging.WARNING, "change needs a restart, running value kept", option=option)
        logsetup.configure(new.log.level, new.log.format)
        # Transactions in flight finish on the old pipeline; its policy threads end with it.
        await running.pipeline.upstream.close()
        event(log, logging.INFO, "configuration reloaded", source=str(self.source))
        return True

    async def stop(self) -> None:
        await self.intake.shutdown(self.cfg.service.shutdown_timeout)
        await self._release()
        event(log, logging.INFO, "stopped", pid=os.getpid())

    async def _release(self) -> None:
        """Stop and close everything but the SMTP intake; safe on a partial start."""
        await self._stop_portal()
        if self._portal_socket is not None:
            self._portal_socket.close()
        if self._outbox is not None:
            self._outbox.close()
            await self._outbox.wait_closed()
        await self.pipeline.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
        await asyncio.to_thread(self.vault.close)
        await asyncio.to_thread(self.extractor.close)

    async def _sweep(self) -> None:
        """Expire envelopes past retention, remove orphaned blobs, forget stale portal
        state and retry queued secure replies, on a timer."""
        while True:
            try:
                await self.vault.sweep()
                if self.portal is not None:
                    await asyncio.to_thread(self.portal.state.sweep, datetime.now(UTC))
                    await self.portal.desk.deliver_due()
            except StoreError as error:
                event(log, logging.WARNING, "sweep failed, will retry", error=str(error))
            except Exception:
                # Expiry must not stop for the life of the process over one bad sweep
                # (a blob directory it cannot read, say).
                log.exception("sweep failed, will retry")
            await asyncio.sleep(self.cfg.envelope.expire_interval)


def _refused(error: Exception) -> None:
    problems = error.problems if isinstance(error, config.ConfigError) else [str(error)]
    event(log, logging.ERROR, "reload refused, configuration kept", problems=problems)


def _reply_key(cfg: config.Config) -> Callable[[], ReplyKey]:
    """The secure-reply key, loaded now if its file exists (so a bad file stops the start),
    else made on first use: generating RSA-3072 takes a while, and most starts never need it."""
    directory = cfg.store.directory or Path("var")
    path = cfg.portal.reply_key_file or directory / "reply-key.pem"
    lock = threading.Lock()
    loaded: list[ReplyKey] = []

    def load() -> ReplyKey:
        with lock:
            if not loaded:
                try:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    loaded.append(ReplyKey.load_or_create(path))
                except (OSError, ValueError) as error:
                    raise config.ConfigError(
                        "config", [f"portal.reply_key_file: {error}"]
                    ) from None
            return loaded[0]

    if path.exists():
        load()
    return load


def _bind_smtp(addresses: Sequence[config.HostPort]) -> list[socket.socket]:
    """Listening sockets for ``smtp.listen`` (every address a host name resolves to), as
    asyncio's ``create_server`` binds them."""
    bound: list[socket.socket] = []
    for address in addresses:
        try:
            infos = socket.getaddrinfo(
                address.host or None, address.port, type=socket.SOCK_STREAM,
                flags=socket.AI_PASSIVE,
            )  # fmt: skip
            for family, kind, proto, _, sockaddr in dict.fromkeys(infos):
                sock = socket.socket(family, kind, proto)
                bound.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind(sockaddr)
                sock.listen(SHARED_BACKLOG)
                sock.setblocking(False)
        except OSError as error:
            for sock in bound:
                sock.close()
            raise config.ConfigError(
                "config", [f"smtp.listen: cannot listen on {address}: {error.strerror}"]
            ) from None
    return bound


def _bind_portal(cfg: config.Config) -> socket.socket:
    """The portal's listening socket, bound now so that its URL is known (port 0: tests)."""
    address = cfg.portal.listen
    family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio turns on TCP_NODELAY only for sockets that say TCP, and
    # without it every keep-alive response waits ~40 ms for the client's delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address.host, address.port))
        sock.listen(128)
        sock.setblocking(False)
    except OSError as error:
        sock.close()
        raise config.ConfigError(
            "config", [f"portal.listen: cannot listen on {address}: {error.strerror}"]
        ) from None
    return sock


def _local_url(sock: socket.socket | None, tls: bool) -> str:
    """portal.url left empty: the address the portal listens on (its certificate's
    name must then be that address: for tests and development)."""
    if sock is None:
        return "http://localhost:8080"
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"{'https' if tls else 'http'}://{shown}:{port}"


async def run_process(
    cfg: config.Config,
    source: Path | None,
    *,
    listeners: Listeners | None = None,
    with_outbox: bool = True,
    on_ready: Callable[[Gateway], None] | None = None,
) -> int:
    """Serve until SIGTERM or SIGINT; SIGHUP reloads. A worker serves on ``listeners``,
    its supervisor's sockets."""
    # The blocking work of every session (sealing, fsync, the database, signing) runs in
    # the loop's default thread pool, mostly waiting for the disk: asyncio's default of
    # CPUs + 4 threads (6 here) was saturated by 20 sessions of protected mail.
    asyncio.get_running_loop().set_default_executor(
        ThreadPoolExecutor(max_workers=_BLOCKING_THREADS, thread_name_prefix="sealgate-io")
    )
    gateway = Gateway(cfg, source, with_outbox=with_outbox, listeners=listeners)
    await gateway.start()
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


async def supervise(
    cfg: config.Config,
    source: Path,
    workers: int,
    on_bound: Callable[[Listeners], None] | None = None,
) -> int:
    """Run ``workers`` worker processes on listening sockets bound here and inherited by
    each of them; restart any that die.

    Port 0 works: the sockets are bound here, so every worker serves (and, with
    ``portal.url`` empty, writes links to) the ports the kernel picked; the
    "supervising" event and ``on_bound`` name them."""
    open_store(cfg.store).close()  # migrate once, before the workers start
    listeners = Listeners.bind(cfg)
    try:
        if on_bound is not None:
            on_bound(listeners)
        return await _supervise(cfg, source, workers, listeners)
    finally:
        listeners.close()


async def _supervise(cfg: config.Config, source: Path, workers: int, listeners: Listeners) -> int:
    outbox = None
    if cfg.dev_outbox.enabled and cfg.dev_outbox.directory is not None:
        outbox = await devoutbox.start(cfg.dev_outbox.listen, cfg.dev_outbox.directory)
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    processes: list[asyncio.subprocess.Process] = []
    command = [sys.executable, "-m", "gateway", "serve", "-c", str(source), "--worker"]
    for sock in listeners.smtp:
        command += ["--smtp-fd", str(sock.fileno())]
    if listeners.portal is not None:
        command += ["--portal-fd", str(listeners.portal.fileno())]

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
                *command,
                stdin=subprocess.DEVNULL,
                pass_fds=[sock.fileno() for sock in listeners.sockets],
            )
            processes.append(process)
            code = await process.wait()
            processes.remove(process)
            if not stopping.is_set():
                event(log, logging.ERROR, "worker died, restarting", slot=slot, exit_code=code)
                await asyncio.sleep(1)

    tasks = [loop.create_task(worker(slot)) for slot in range(workers)]
    event(
        log,
        logging.INFO,
        "supervising",
        workers=workers,
        smtp=[str(a) for a in listeners.smtp_addresses],
        portal=listeners.portal_url(cfg) if listeners.portal is not None else "off",
        pid=os.getpid(),
    )
    await stopping.wait()
    forward(signal.SIGTERM)
    listeners.close()  # once the workers close theirs, new connections are refused
    await asyncio.wait(tasks, timeout=cfg.service.shutdown_timeout + 10)
    forward(signal.SIGKILL)
    if outbox is not None:
        outbox.close()
    event(log, logging.INFO, "stopped", pid=os.getpid())
    return 0
