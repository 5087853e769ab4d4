"""Text-message codes through a pluggable provider.

``webhook`` POSTs ``{"to", "text", "sender"}`` as JSON to the provider's HTTPS
endpoint with a bearer token (most SMS gateways, or a small adapter in front
of one, take this shape); ``outbox`` writes each text to a file beside the
development outbox's mail. The number and the text never go into the log.
"""

from __future__ import annotations

import os
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import httpx

from gateway import config


class SMSError(Exception):
    """The provider did not take the message; the text says why, without the number."""


class SMSProvider(Protocol):
    async def send(self, to: str, text: str) -> None: ...


class WebhookSMS:
    def __init__(self, url: str, token: str, sender: str, timeout: float) -> None:
        self.url = url
        self.sender = sender
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._timeout = timeout

    async def send(self, to: str, text: str) -> None:
        body = {"to": to, "text": text, "sender": self.sender}
        try:
            async with httpx.AsyncClient(timeout=self._timeout) as client:
                response = await client.post(self.url, json=body, headers=self._headers)
        except httpx.HTTPError as error:
            raise SMSError(f"provider unreachable: {type(error).__name__}") from None
        if response.status_code >= 300:
            raise SMSError(f"provider answered HTTP {response.status_code}")


class OutboxSMS:
    """Development only: each text as ``sms-*.txt`` in the outbox directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def send(self, to: str, text: str) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        name = f"sms-{stamp}-{secrets.token_hex(4)}.txt"
        partial = self.directory / f".{name}.part"  # whoever watches the folder sees it whole
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(f"To: {to}\n\n{text}\n")
        os.replace(partial, self.directory / name)


def provider(cfg: config.Config) -> SMSProvider | None:
    """The configured provider, or None when SMS codes are off."""
    settings = cfg.sms
    if settings.provider == "webhook":
        token = ""
        if settings.webhook_token_file is not None:
            token = settings.webhook_token_file.read_text(encoding="utf-8").strip()
        return WebhookSMS(settings.webhook_url, token, settings.sender_id, settings.timeout)
    if settings.provider == "outbox":
        directory = cfg.dev_outbox.directory
        if directory is None:
            raise config.ConfigError(
                "config", ['sms.provider: "outbox" needs dev_outbox.directory']
            )
        return OutboxSMS(directory)
    return None
