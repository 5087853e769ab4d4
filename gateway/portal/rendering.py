"""What every portal page shares: templates in the reader's language, the branding,
cookies (Secure over HTTPS, HttpOnly, SameSite=Strict) and the CSRF cookie."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, BinaryIO

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.templating import Jinja2Templates

from gateway.portal import i18n
from gateway.portal.deps import PortalDeps
from gateway.portal.security import csrf_cookie

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
