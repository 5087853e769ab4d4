"""The development outbox: an SMTP sink that keeps every message as an .eml file.

It stands in for the upstream MTA on a developer's machine (``make run``), so
that what Sealgate relays can be looked at. Each message is written to a
temporary name, fsync'd and renamed before the 250, like a real MTA's queue;
a ``.json`` file beside it holds the envelope. It stores plaintext: never
enable it in production.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
from datetime import UTC, datetime
from pathlib import Path

from aiosmtpd.smtp import SMTP, Envelope, Session

from gateway.config import HostPort
from gateway.logsetup import event

log = logging.getLogger("sealgate.devoutbox")


class OutboxHandler:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        now = datetime.now(UTC)
        name = f"{now:%Y%m%dT%H%M%S}-{secrets.token_hex(4)}"
        meta: dict[str, object] = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "received_at": now.isoformat(),
            "client": session.peer[0] if session.peer else None,
        }
        content = envelope.original_content or b""
        await asyncio.to_thread(self._store, name, content, meta)
        event(
            log,
            logging.INFO,
            "stored",
            file=f"{name}.eml",
            size=len(content),
            nrcpt=len(envelope.rcpt_tos),
        )
        return f"250 2.0.0 Ok: stored as {name}.eml"

    def _store(self, name: str, content: bytes, meta: dict[str, object]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        _write_durably(self.directory / f"{name}.json", json.dumps(meta, indent=2).encode() + b"\n")
        _write_durably(self.directory / f"{name}.eml", content)
        directory = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


def _write_durably(path: Path, content: bytes) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    with open(temporary, "wb") as handle:
        handle.write(content)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


async def start(listen: HostPort, directory: Path) -> asyncio.Server:
    """Start the outbox on ``listen``; messages go to ``directory``."""
    handler = OutboxHandler(directory)
    loop = asyncio.get_running_loop()

    def protocol() -> SMTP:
        return SMTP(
            handler,
            data_size_limit=None,
            enable_SMTPUTF8=True,
            hostname="localhost",
            ident="Sealgate dev outbox",
        )

    return await loop.create_server(
        protocol, host=listen.host, port=listen.port, reuse_address=True
    )
