"""The sender's pages (docs/senders.md): the messages they sent, each with what
happened to it per recipient, where they withdraw one recipient or all, change
how long it stays readable, and release held recipients.

Two ways in: signed in to an account (single sign-on, or a password) at ``/sent``,
which lists the account's messages; or the link in the "sent securely" receipt,
``/s/{envelope}/{token}``, for one message and without signing in (the token is an
HMAC of the envelope id). The held notice's link, ``/h/...``, releases or cancels held
recipients. Each link's token is checked before anything is read.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from gateway.envelope import keys
from gateway.errors import GatewayError
from gateway.locale import translations
from gateway.logsetup import event
from gateway.portal import i18n
from gateway.portal.links import release_url, sender_token
from gateway.portal.problems import Problem, json_error
from gateway.portal.rendering import Pages
from gateway.portal.security import csrf_ok, new_token
from gateway.store import EnvelopeRecord, ReaderRecord
from gateway.store.sent import SentMessages

log = logging.getLogger("sealgate.portal")


class SenderPages(Pages):
    # the receipt's link

    async def revoke(self, request: Request) -> Response:
        """The receipt's link: the sender's view of the message, without signing in."""
        envelope = await self._sender_envelope(request, "revoke")
        return await self._sender_view(request, envelope, signed_in=False)

    # the sender's view: signed in, or through the receipt's link

    async def sent_list(self, request: Request) -> Response:
        """``/sent``: the signed-in account's protected messages, newest first."""
        session = await self._account_session(request)
        if session is None or session.address is None:
            return RedirectResponse("/?next=/sent", status_code=303)
        address = session.address
        messages = await asyncio.to_thread(SentMessages(self.deps.store).of_sender, address)
        return self._render(request, "sent-list.html", {"address": address, "messages": messages})

    async def sent_message(self, request: Request) -> Response:
        """``/sent/{envelope_id}``: one of the signed-in account's messages, and what the
        sender can do with it."""
        session = await self._account_session(request)
        envelope_id = str(request.path_params["envelope_id"])
        if session is None or session.address is None:
            return RedirectResponse(f"/?next=/sent/{envelope_id}", status_code=303)
        envelope = await self._sent_by(session.address, envelope_id)
        if envelope is None:
            raise HTTPException(404)  # the same for another's message as for none
        return await self._sender_view(request, envelope, signed_in=True)

    async def resend(self, request: Request) -> Response:
        """``POST /sent/{envelope_id}/resend``: a new link for one guest recipient, made in
        the signed-in sender's browser (``{reader_id, link_id, secret, wrapped_key}``: K,
        unwrapped there from the sender's own copy, wrapped under the new link), and its
        notification. The old link stops working; if the notification cannot go out, the
        old link is put back and the answer says so."""
        try:
            body = await self._json(request)
            envelope = await self._own_envelope(request)
            reader_id, link, wrapped = _new_link(body)
            reader = next((r for r in envelope.readers if r.reader_id == reader_id), None)
            if reader is None or reader.kind != "guest":
                raise Problem(404, "unknown")
            try:  # that it opens with the new link, or the recipient would get a dead one
                keys.unwrap_for_link(link, wrapped, bytes.fromhex(envelope.envelope_id),
                                     bytes.fromhex(reader_id))  # fmt: skip
            except keys.UnlockError:
                raise Problem(400, "wrapped-key") from None
            sent = SentMessages(self.deps.store)
            old = await asyncio.to_thread(
                sent.new_link, envelope.envelope_id, reader_id, link.id_hash, wrapped
            )
            if old is None:
                raise Problem(410, "withdrawn")
        except Problem as problem:
            return json_error(problem)
        try:
            await self.deps.releaser.notify(envelope, reader.address, link)
        except (GatewayError, OSError) as error:
            event(log, logging.WARNING, "new link not sent", envelope=envelope.envelope_id,
                  error=str(error))  # fmt: skip
            await asyncio.to_thread(
                sent.restore_link, envelope.envelope_id, reader_id, old, link.id_hash
            )
            return json_error(Problem(503, "unavailable"))
        return JSONResponse({"ok": True, "address": reader.address})

    async def _own_envelope(self, request: Request) -> EnvelopeRecord:
        """The envelope of the path, when the signed-in account sent it; Problem 401/404."""
        session = await self._account_session(request)
        if session is None or session.address is None:
            raise Problem(401, "sign-in")
        envelope = await self._sent_by(session.address, str(request.path_params["envelope_id"]))
        if envelope is None:
            raise Problem(404, "unknown")
        if not envelope.is_live():
            raise Problem(410, "ended")
        return envelope

    async def _sent_by(self, address: str, envelope_id: str) -> EnvelopeRecord | None:
        """The envelope, if ``address`` sent it; None for another's, as for none."""
        envelope = await asyncio.to_thread(self.deps.store.get, envelope_id)
        return envelope if envelope is not None and envelope.sender.lower() == address else None

    async def _sender_view(
        self, request: Request, envelope: EnvelopeRecord, *, signed_in: bool
    ) -> Response:
        """The sender's page for ``envelope`` (GET), or one of its actions (POST)."""
        csrf = request.cookies.get(self._csrf_name) or new_token()
        notice = problem = ""
        if request.method == "POST":
            form = await request.form(max_files=0, max_fields=8)
            submitted = form.get("csrf")
            if not csrf_ok(request, submitted if isinstance(submitted, str) else None,
                           self.deps.origin):  # fmt: skip
                raise HTTPException(403)
            action = form.get("action", "revoke")  # an old receipt page posts no action
            if action == "revoke":
                return await self._revoke_all(request, envelope, csrf)
            notice, problem = await self._act(request, envelope, str(action), form)
        sent = await asyncio.to_thread(SentMessages(self.deps.store).message, envelope.envelope_id)
        assert sent is not None
        envelope = sent.envelope  # as it is after the action
        earliest, latest = self._expiry_bounds(envelope)
        held = any(r.status == "held" for r in sent.recipients)
        own_copy = any(_own_copy(envelope, r) and r.wrapped_key for r in envelope.readers)
        context = {
            "csrf_token": csrf,
            "envelope": envelope,
            "live": envelope.is_live(),
            "recipients": sent.recipients,
            "action": request.url.path,
            "notice": notice,
            "problem": problem,
            "earliest": earliest.isoformat(),
            "latest": latest.isoformat(),
            "list_url": "/sent" if signed_in else None,
            "read_url": f"/inbox/{envelope.envelope_id}" if signed_in and own_copy else None,
            "release_url": release_url(self.deps.url, self.deps.secret, envelope.envelope_id)
            if held
            else None,
            "page": {
                "envelope_id": envelope.envelope_id,
                "api": {
                    "open": f"/account/messages/{envelope.envelope_id}/open",
                    "resend": f"/sent/{envelope.envelope_id}/resend",
                },
                "strings": i18n.page_strings(self._lang(request)),
            },
        }
        response = self._render(request, "sent.html", context)
        self._csrf_cookie(response, csrf, request)
        return response

    async def _act(
        self, request: Request, envelope: EnvelopeRecord, action: str, form: FormData
    ) -> tuple[str, str]:
        """Withdraw one recipient, or a new expiry: (notice, problem) for the page."""
        gettext = translations(self._lang(request)).gettext
        sent = SentMessages(self.deps.store)
        if action == "withdraw":
            reader_id = str(form.get("reader", ""))
            reader = next((r for r in envelope.readers if r.reader_id == reader_id), None)
            if reader is None or _own_copy(envelope, reader):
                raise HTTPException(400)
            done = await asyncio.to_thread(
                sent.withdraw, envelope.envelope_id, reader_id, "by the sender"
            )
            event(log, logging.INFO, "withdrawn from one recipient by the sender",
                  envelope=envelope.envelope_id, reader=reader_id)  # fmt: skip
            if not done:
                return "", gettext("This recipient could no longer open it already.")
            return gettext("%(address)s can no longer open this message.") % {
                "address": reader.address
            }, ""
        if action == "expiry":
            until = _day(str(form.get("until", "")))
            earliest, latest = self._expiry_bounds(envelope)
            if until is None or not earliest <= until <= latest:
                return "", gettext("Choose a day between %(earliest)s and %(latest)s.") % {
                    "earliest": earliest.isoformat(),
                    "latest": latest.isoformat(),
                }
            end = datetime.combine(until, time(23, 59), tzinfo=UTC)
            await asyncio.to_thread(sent.set_expiry, envelope.envelope_id, end, "by the sender")
            return gettext("It is readable until %(day)s now.") % {"day": until.isoformat()}, ""
        raise HTTPException(400)

    def _expiry_bounds(self, envelope: EnvelopeRecord) -> tuple[date, date]:
        """The first and last day a sender may choose: from tomorrow to the administrator's
        longest retention after sending."""
        shortest, longest = self.deps.expiry_days
        today = datetime.now(UTC).date()
        sent = envelope.created_at.date()
        earliest = max(today + timedelta(days=1), sent + timedelta(days=shortest))
        latest = sent + timedelta(days=longest)
        return earliest, max(earliest, latest)

    async def _revoke_all(self, request: Request, envelope: EnvelopeRecord, csrf: str) -> Response:
        state = "gone"
        if envelope.is_live():
            await asyncio.to_thread(
                self.deps.store.shred, envelope.envelope_id, "revoked",
                detail="revoked by the sender",
            )  # fmt: skip
            event(log, logging.INFO, "revoked by the sender", envelope=envelope.envelope_id)
            state = "done"
        response = self._render(request, "revoke.html", {"csrf_token": csrf, "state": state})
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


def _own_copy(envelope: EnvelopeRecord, reader: ReaderRecord) -> bool:
    """The sender's copy, wrapped to their own account: not a recipient."""
    return reader.kind == "account" and reader.address.lower() == envelope.sender.lower()


def _new_link(body: dict[str, Any]) -> tuple[str, keys.Link, bytes]:
    """(reader id, link, wrapped key) from a re-send's body; Problem 400."""
    try:
        reader_id = str(body["reader_id"])
        link = keys.Link(keys.b64url_decode(str(body["link_id"])),
                         keys.b64url_decode(str(body["secret"])))  # fmt: skip
        wrapped = keys.b64url_decode(str(body["wrapped_key"]))
    except (KeyError, ValueError):
        raise Problem(400, "bad-request") from None
    valid = len(link.link_id) == keys.ID_SIZE and len(link.secret) == keys.KEY_SIZE
    if not valid or not re.fullmatch(r"[0-9a-f]{32}", reader_id):
        raise Problem(400, "bad-request")
    return reader_id, link, wrapped


def _day(text: str) -> date | None:
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None
