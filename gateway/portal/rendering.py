"""What every portal page shares: templates in the reader's language, the branding,
cookies (Secure over HTTPS, HttpOnly, SameSite=Strict) and the CSRF cookie."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.templating import Jinja2Templates

from gateway.envelope import keys
from gateway.portal import i18n
from gateway.portal.deps import PortalDeps
from gateway.portal.problems import Problem, json_error
from gateway.portal.security import (
    CSRF_HEADER,
    TooLarge,
    client_address,
    csrf_cookie,
    csrf_ok,
    read_body,
)
from gateway.store import BlobMissing, EnvelopeRecord, ReaderRecord
from gateway.store.sessions import Session

ACCOUNT_COOKIE = "sg_account"  # an account holder's session, for the whole portal

_HERE = Path(__file__).parent
_LANG = "sg_lang"


class Pages:
    def __init__(self, deps: PortalDeps) -> None:
        self.deps = deps
        self._csrf_name = csrf_cookie(deps.https)
        self.templates = {
            lang: Jinja2Templates(env=i18n.environment(_HERE / "templates", lang))
            for lang in i18n.LANGUAGES
        }

    def _client(self, request: Request) -> str:
        """The client's address (behind a trusted proxy, the one it names)."""
        return client_address(request, self.deps.settings.trusted_proxies)

    async def _account_session(self, request: Request) -> Session | None:
        """The account session of this request's cookie, its idle clock reset; None if
        there is none, or it ended."""
        token = request.cookies.get(ACCOUNT_COOKIE)
        if not token:
            return None
        return await asyncio.to_thread(
            self.deps.state.sessions.account_session,
            token,
            datetime.now(UTC),
            timedelta(minutes=self.deps.account_settings.idle_minutes),
        )

    def _cookie(self, response: Response, name: str, value: str, max_age: int, path: str) -> None:
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path=path,
            secure=self.deps.https,
            httponly=True,
            samesite="strict",
        )

    def _csrf_cookie(self, response: Response, token: str, request: Request) -> None:
        if request.cookies.get(self._csrf_name) != token:
            self._cookie(response, self._csrf_name, token, 86400, "/")

    def _check_post(self, request: Request, *, json_body: bool) -> None:
        """A POST's CSRF pair and, for a JSON call, its content type; Problem if wrong."""
        if not csrf_ok(request, request.headers.get(CSRF_HEADER), self.deps.origin):
            raise Problem(403, "csrf")
        if json_body and request.headers.get("content-type", "").split(";")[0] != (
            "application/json"
        ):
            raise Problem(400, "bad-request")

    async def _json(self, request: Request) -> dict[str, Any]:
        """The body of a JSON POST after the CSRF check; Problem when it cannot be used."""
        self._check_post(request, json_body=True)
        return await self._read_json(request)

    async def _read_json(self, request: Request) -> dict[str, Any]:
        """A JSON POST's body, an object within ``max_request_size``; Problem if not."""
        try:
            raw = await read_body(request, self.deps.settings.max_request_size)
            body = json.loads(raw or b"{}")
        except TooLarge:
            raise Problem(413, "too-large") from None
        except (ValueError, RecursionError):  # RecursionError: "[[[[..." nested too deep
            raise Problem(400, "bad-request") from None
        if not isinstance(body, dict):
            raise Problem(400, "bad-request")
        return body

    async def _sealed_part(
        self,
        envelope: EnvelopeRecord,
        number: int,
        downloaded: Callable[[], Awaitable[None]],
    ) -> Response:
        """Part ``number`` of ``envelope`` as stored, streamed; ``downloaded`` records the
        download first (not for the manifest, which every opening fetches)."""
        record = next((p for p in envelope.parts if p.part_id == number), None)
        if record is None:
            return json_error(Problem(404, "bad-request"))
        try:
            source = await asyncio.to_thread(
                self.deps.store.blobs.open, envelope.envelope_id, number
            )
        except (OSError, BlobMissing):  # revoked or expired while we looked
            return json_error(Problem(410, "revoked"))
        if record.kind != "manifest":
            try:
                await downloaded()
            except BaseException:
                source.close()
                raise
        return blob_response(source, record.sealed_size)

    def _lang(self, request: Request) -> str:
        return i18n.choose(
            request.query_params.get("lang"),
            request.cookies.get(_LANG),
            request.headers.get("accept-language"),
            self.deps.default_language,
        )

    def _render(
        self, request: Request, name: str, context: dict[str, Any], status: int = 200
    ) -> Response:
        lang = self._lang(request)
        logo = "/assets/logo" if self.deps.logo_file is not None else None
        response = self.templates[lang].TemplateResponse(
            request,
            name,
            {
                "lang": lang,
                "other_lang": "nl" if lang == "en" else "en",
                "org": {
                    "name": self.deps.organisation,
                    "logo_url": logo,
                    "theme_url": "/assets/theme.css",
                },
                "path": request.url.path,
                **context,
            },
            status_code=status,
        )
        if request.query_params.get("lang") == lang:
            response.set_cookie(
                _LANG, lang, max_age=365 * 86400, path="/", secure=self.deps.https,
                httponly=True, samesite="strict",
            )  # fmt: skip
        return response


_PIECE = 64 * 1024


def blob_response(source: BinaryIO, size: int) -> StreamingResponse:
    """A sealed part as it is stored, read in pieces in a thread; ``source`` is closed after."""
    return StreamingResponse(
        _pieces(source),
        media_type="application/octet-stream",
        headers={"content-length": str(size)},
        background=BackgroundTask(source.close),
    )


async def _pieces(source: BinaryIO) -> AsyncIterator[bytes]:
    while True:
        piece = await asyncio.to_thread(source.read, _PIECE)
        if not piece:
            return
        yield piece


def opening(envelope: EnvelopeRecord, reader: ReaderRecord) -> dict[str, Any]:
    """What a verified reader's browser needs to open ``envelope``: its wrapped content key,
    the parts' sizes and who sent it (the guest and the account pages add their own)."""
    return {
        "envelope_id": envelope.envelope_id,
        "reader_id": reader.reader_id,
        "wrapped_key": keys.b64url(reader.wrapped_key or b""),
        "parts": [
            {
                "part": p.part_id,
                "kind": p.kind,
                "size": p.plaintext_size,
                "sealed_size": p.sealed_size,
            }  # fmt: skip
            for p in envelope.parts
        ],
        "sender": envelope.sender,
        "expires_at": envelope.expires_at.isoformat(),
    }
