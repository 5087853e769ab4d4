"""The sender's pages, reached from links in the sender's own mail: revoke a
protected message (the receipt), and release or cancel held recipients (the
held notice). Each link's token is checked before anything is read."""

from __future__ import annotations

import asyncio
import hmac
import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from gateway.logsetup import event
from gateway.portal.links import sender_token
from gateway.portal.rendering import Pages
from gateway.portal.security import csrf_ok, new_token
from gateway.store import EnvelopeRecord

log = logging.getLogger("sealgate.portal")


class SenderPages(Pages):
    # the sender's revoke link

    async def revoke(self, request: Request) -> Response:
        envelope = await self._sender_envelope(request, "revoke")
        envelope_id = envelope.envelope_id
        csrf = request.cookies.get(self._csrf_name) or new_token()
        state = "confirm" if envelope.is_live() else "gone"
        if request.method == "POST" and state == "confirm":
            form = await request.form(max_files=0, max_fields=4)
            submitted = form.get("csrf")
            if not csrf_ok(request, submitted if isinstance(submitted, str) else None,
                           self.deps.origin):  # fmt: skip
                raise HTTPException(403)
            await asyncio.to_thread(
                self.deps.store.shred, envelope_id, "revoked", detail="revoked by the sender"
            )
            event(log, logging.INFO, "revoked by the sender", envelope=envelope_id)
            state = "done"
        context = {
            "csrf_token": csrf,
            "state": state,
            "envelope_id": envelope_id,
            "recipients": [r.address for r in envelope.readers if r.kind == "guest"],
            "action": request.url.path,
        }
        response = self._render(request, "revoke.html", context)
        self._csrf_cookie(response, csrf, request)
        return response

    # the sender's page for held recipients

    async def release(self, request: Request) -> Response:
        envelope = await self._sender_envelope(request, "release")
        releaser = self.deps.releaser
        held = await releaser.held(envelope.envelope_id) if envelope.is_live() else []
        state = "confirm" if held else "gone"
        csrf = request.cookies.get(self._csrf_name) or new_token()
        problems: list[str] = []
        if request.method == "POST" and held:
            form = await request.form(max_files=0, max_fields=4 + len(held))
            submitted = form.get("csrf")
            if not csrf_ok(request, submitted if isinstance(submitted, str) else None,
                           self.deps.origin):  # fmt: skip
                raise HTTPException(403)
            decision = form.get("decision")
            if decision == "cancel":
                await releaser.cancel(envelope)
                state = "done"
            elif decision == "release":
                # Named by reader id, not position: a stale form cannot give one
                # recipient's number to another.
                phones = {h.address: str(form.get(f"phone_{h.reader_id}") or "") for h in held}
                problems = await releaser.release(envelope, phones)
                held = await releaser.held(envelope.envelope_id)
                state = "confirm" if held else "done"
            else:
                raise HTTPException(400)
        context = {
            "csrf_token": csrf,
            "state": state,
            "recipients": [
                {
                    "address": h.address,
                    "reader_id": h.reader_id,
                    "missing": list(h.missing),
                    "reason": "" if h.missing else h.reason,
                }
                for h in held
            ],
            "problems": problems,
            "action": request.url.path,
        }
        response = self._render(request, "release.html", context)
        self._csrf_cookie(response, csrf, request)
        return response

    async def _sender_envelope(self, request: Request, purpose: str) -> EnvelopeRecord:
        """The envelope of a sender's link (revoke, release), after checking its token."""
        envelope_id = request.path_params["envelope_id"]
        expected = sender_token(self.deps.secret, purpose, envelope_id)
        if not hmac.compare_digest(expected, request.path_params["token"]):
            raise HTTPException(404)
        envelope = await asyncio.to_thread(self.deps.store.get, envelope_id)
        if envelope is None:
            raise HTTPException(404)
        return envelope
