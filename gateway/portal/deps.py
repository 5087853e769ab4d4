"""What the portal works with, built by gateway.service from the configuration."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from gateway import config
from gateway.envelope.reply import ReplyKey
from gateway.errors import PermanentError, TemporaryError
from gateway.identity.accounts import AccountDesk
from gateway.identity.sso import OIDCProvider, StateSealer
from gateway.identity.ssoaccounts import SSOAccounts
from gateway.logsetup import event
from gateway.notify import Notifier
from gateway.portal.codes import CodeBook
from gateway.portal.release import Releaser
from gateway.portal.replies import ReplyDesk, Send
from gateway.portal.scim import ScimAccess
from gateway.portal.sms import SMSProvider
from gateway.store import EnvelopeRecord, Store
from gateway.store.portalstate import PortalState

log = logging.getLogger("sealgate.portal")


@dataclass
class SingleSignOn:
    """The configured identity providers, and what a sign-in with one of them needs."""

    providers: dict[str, OIDCProvider]
    states: StateSealer
    accounts: SSOAccounts


@dataclass
class PortalDeps:
    """What the portal works with; built by gateway.service from the configuration."""

    settings: config.Portal
    store: Store
    state: PortalState
    codes: CodeBook
    desk: ReplyDesk
    releaser: Releaser
    notifier: Callable[[], Notifier]  # the current one (a reload may replace it)
    send: Send  # Sealgate's own mail: DKIM-signed, through the upstream
    sms: SMSProvider | None
    reply_key: Callable[[], ReplyKey]  # loaded or made on first use (blocking: a thread)
    secret: bytes  # keys the sender's revoke links
    url: str  # public base URL (fixed after binding when configured empty)
    organisation: str
    colour: str
    from_address: str
    account_settings: config.Accounts
    expiry_days: tuple[int, int]  # the shortest and longest life a sender may choose
    default_language: str = "en"
    logo_file: Path | None = None
    read_notice: bool = False
    accounts: AccountDesk | None = None  # sign-up and sign-in (None: accounts are off)
    sso: SingleSignOn | None = None  # None: no identity provider configured
    scim: ScimAccess | None = None  # provisioning at /scim/v2 (None: off)
    _background: set[asyncio.Task[Any]] = field(default_factory=set)

    @property
    def https(self) -> bool:
        return self.url.startswith("https://")

    @property
    def origin(self) -> str:
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc}"

    def spawn(self, work: Awaitable[Any]) -> None:
        """Run ``work`` after the response; keep a reference until it is done."""
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def read_notice_to_sender(self, envelope: EnvelopeRecord, reader: str) -> None:
        """Tell the sender that ``reader`` opened the message (the first time); a failure
        to send is logged, never shown to the reader."""
        notifier = self.notifier()
        data = notifier.read_notice(
            envelope.sender,
            reader,
            envelope.envelope_id,
            datetime.now(UTC),
            notifier.language(None, envelope.sender),
        )
        try:
            await self.send(self.from_address, [envelope.sender], data)
        except (TemporaryError, PermanentError) as error:
            event(log, logging.WARNING, "read notice not sent",
                  envelope=envelope.envelope_id, error=str(error))  # fmt: skip
