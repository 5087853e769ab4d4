"""One message's way through Sealgate, from the bytes received to the reply owed.

    parse -> authenticate -> decide -> act -> answer

The SMTP front door (gateway.intake) hands over a :class:`Transaction` and
sends back whatever :class:`Result` comes out. This module is the only place
that orchestrates a message; the services it calls (gateway.outbound, mailauth,
policy, envelope, store, notify) know nothing of SMTP sessions or of each other.

Mail authentication (SPF, DKIM, DMARC) runs first, in :meth:`Pipeline._authenticate`;
then the policy packs decide per recipient (gateway.policy): relayed recipients
get the message as it is, protected ones a sealed envelope
(gateway.envelope.vault) and a notification with their personal link
(gateway.notify), held ones wait for the sender's release, and rejected ones
get a bounce carrying the rule's text; the client gets one reply for all of it.
A retry of a protected message finishes what an earlier attempt left owed
(:meth:`Pipeline._protect`).

The rule that binds every step: 250 only when everything owed for the message
is accepted by the upstream; a transient fault anywhere answers 451 so that the
sending MTA keeps the mail (docs/relay.md has the full reply mapping).
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import enum
import errno
import ipaddress
import json
import logging
from collections.abc import Awaitable, Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TypeVar, overload

from gateway.envelope.keys import Link
from gateway.envelope.reply import seal_link
from gateway.envelope.seal import (
    Grant,
    ReaderAccess,
    SealedEnvelope,
    SealRequest,
    idempotency_key,
)
from gateway.envelope.vault import Vault
from gateway.errors import INTERNAL_ERROR, GatewayError, PermanentError, SMTPReply, TemporaryError
from gateway.identity import secondfactor
from gateway.logsetup import event
from gateway.mail import instructions, message, outgoing
from gateway.mailauth.posture import PostureChecker
from gateway.mailauth.verify import Verifier, strip_forged_results
from gateway.notify import Notifier, Original, dsn
from gateway.outbound.loopmarker import RECEIVED_TAG, Kind, LoopCheck
from gateway.outbound.ownmail import OwnMail
from gateway.outbound.upstream import UpstreamTransaction
from gateway.policy.engine import Policy
from gateway.policy.facts import Directory, Extractor, Lookups, gather
from gateway.policy.types import Decision
from gateway.store import EnvelopeRecord, StoreError
from gateway.store.holds import Hold
from gateway.store.pending import PendingLinks, Progress
from gateway.store.portalstate import PortalState

log = logging.getLogger("sealgate.pipeline")

T = TypeVar("T")
_BAD_ADDRESS = SMTPReply(553, "5.1.3", "Recipient address cannot be written in a notification")
_HASH_ON_LOOP = 1 << 20  # bytes: the idempotency HMAC of a larger message runs in a thread


@dataclass(frozen=True)
class XForward:
    """What the MTA in front said about its own client (Postfix XFORWARD)."""

    name: str | None = None
    addr: str | None = None
    port: str | None = None
    proto: str | None = None
    helo: str | None = None
    ident: str | None = None
    source: str | None = None


@dataclass(frozen=True)
class Client:
    """Facts about the SMTP client that handed us the message."""

    address: str
    port: int
    helo: str
    tls: bool = False
    login: str | None = None
    xforward: XForward | None = None


@dataclass(frozen=True)
class Transaction:
    """One received message with its envelope, exactly as it arrived."""

    queue_id: str
    mail_from: str  # "" for the null sender <>
    rcpt_tos: tuple[str, ...]
    data: bytes
    client: Client
    received_at: datetime
    smtputf8: bool = False
    body_8bit: bool = False


class Outcome(enum.Enum):
    """What happened to a message, as the transaction log says it (docs/relay.md)."""

    RELAYED = "relayed"
    RELAYED_OWN = "relayed-loop"  # mail Sealgate wrote itself, come back: relayed as it is
    PROTECTED = "protected"
    DUPLICATE = "duplicate"  # a retry of a message wholly delivered before: nothing sent
    DEFERRED = "deferred"
    REJECTED = "rejected"


@dataclass
class Result:
    """The reply owed to the client, and what happened, for the transaction log."""

    reply: SMTPReply
    outcome: Outcome
    upstream_reply: SMTPReply | None = None
    refused: dict[str, SMTPReply] = field(default_factory=dict)
    detail: str = ""
    envelope_id: str | None = None
    protected: int = 0
    decisions: dict[str, Decision] = field(default_factory=dict)

    @property
    def logged(self) -> str:
        """The outcome as the log says it: ``-partly`` when some recipients were refused."""
        delivered = self.outcome in (Outcome.RELAYED, Outcome.RELAYED_OWN, Outcome.PROTECTED)
        return self.outcome.value + ("-partly" if delivered and self.refused else "")


@dataclass(frozen=True)
class Waiting:
    """What a held recipient waits for: second factors the sender must supply, and why."""

    missing: tuple[str, ...]  # "phone", "access-code"; empty when a rule holds them
    reason: str  # the rule's words, or the text naming what is missing


@dataclass(frozen=True)
class Plan:
    """What the policy decided for one message, by action, with the bytes for each way out."""

    relay: tuple[str, ...]
    protect: tuple[str, ...]
    refused: dict[str, SMTPReply]  # rejected or held by a rule, with the administrator's text
    decisions: dict[str, Decision]
    relayed_bytes: bytes = field(repr=False)  # instructions to Sealgate removed
    factors: dict[str, secondfactor.Factors] = field(default_factory=dict)  # protected, held
    hold: tuple[str, ...] = ()  # sealed now, notified when the sender releases them
    held_for: dict[str, Waiting] = field(default_factory=dict)  # per held address


@dataclass(frozen=True)
class Protecting:
    """Deciding and protecting: the policy, the text extraction, the vault, the links."""

    policy: Policy
    extractor: Extractor
    vault: Vault
    state: PortalState  # protected conversations, for the protected_thread condition
    pending: PendingLinks  # links owed to readers until the message is settled
    notifier: Notifier
    portal_url: str
    from_address: str
    retention: instructions.Retention  # the default, and the limits on what senders ask for
    idempotency_secret: bytes  # keys the idempotency HMAC; never stored in the database
    code_secret: bytes  # keys the access-code HMAC; never stored in the database
    sms: bool = False  # an SMS provider is configured
    receipt: Callable[[str], str] | None = None  # envelope id -> revoke URL, when receipts are on
    holding: Holding | None = None  # keeping held recipients for release (needs the portal)
    directory: Directory | None = None  # the organisation's people: groups, mobile numbers


@dataclass(frozen=True)
class Holding:
    """Where held recipients' links are kept, and where the sender releases them."""

    public_key: Callable[[], bytes]  # the reply key's SubjectPublicKeyInfo (may be made lazily)
    release_url: Callable[[str], str]  # envelope id -> the sender's release page
    open_link: Callable[[bytes], Link]  # a link sealed to the reply key, opened


class Pipeline:
    def __init__(
        self,
        own: OwnMail,
        hostname: str,
        max_hops: int,
        protecting: Protecting,
        verifier: Verifier | None = None,
        *,
        sign_relayed: bool = False,
        posture: PostureChecker | None = None,
        authserv_id: str | None = None,
    ) -> None:
        self.own = own  # signs, marks and sends what Sealgate writes itself
        self.upstream = own.upstream
        self.marker = own.marker
        self.hostname = hostname
        self.max_hops = max_hops
        self.protecting = protecting
        self.verifier = verifier
        self.sign_relayed = sign_relayed
        self.posture = posture  # recipient-domain transport posture, for recipient_tls
        # Whose Authentication-Results nobody else may write: stripped even when we do not
        # verify, or a forged "dmarc=pass" of ours would travel on (RFC 8601 5).
        self.authserv_id = authserv_id or (verifier.authserv_id if verifier else hostname)
        # Policy evaluation waits for attachment readers: a pool of its own, so that
        # it never starves the store's and the sealer's worker threads.
        self._deciding = ThreadPoolExecutor(max_workers=8, thread_name_prefix="sealgate-policy")

    async def close(self) -> None:
        """Close idle upstream connections and let the policy threads end."""
        await self.upstream.close()
        self._deciding.shutdown(wait=False)

    async def handle(self, tx: Transaction) -> Result:
        """Process one message; never raises, every failure becomes a reply."""
        try:
            return await self._handle(tx)
        except GatewayError as error:
            outcome = Outcome.DEFERRED if error.is_temporary else Outcome.REJECTED
            return Result(error.reply, outcome, detail=error.detail)
        except Exception:
            log.exception("unexpected error", extra={"fields": {"queue_id": tx.queue_id}})
            return Result(INTERNAL_ERROR, Outcome.DEFERRED, detail="internal error")

    async def _handle(self, tx: Transaction) -> Result:
        loop = self.marker.check(tx.data)
        if loop.hops >= self.max_hops:
            raise PermanentError(
                554, "5.4.6", "Routing loop detected: message passed Sealgate too often"
            )
        if loop.originated:
            # Sealgate wrote this itself (a notification, a bounce): relay exactly as it is.
            # Mail Sealgate only relayed earns nothing: it is decided again for the
            # recipients it comes back with (DESIGN, "no way around the policy").
            # Fields above the marker are MTAs' trace fields; ours of those nobody may forge.
            own = self._received(tx) + strip_forged_results(tx.data, self.authserv_id)
            return await self._relay(tx, own, outcome=Outcome.RELAYED_OWN)

        # authenticate (SPF, DKIM, DMARC: gateway.mailauth) and decide, in _plan.
        plan = await self._plan(tx, loop)
        if plan.protect or plan.hold:
            result = await self._protect(tx, plan)
        elif plan.relay:
            outgoing = self._outgoing(tx, plan.relayed_bytes, Kind.RELAYED)
            result = await self._relay(
                tx, outgoing, outcome=Outcome.RELAYED, recipients=plan.relay, refused=plan.refused
            )
        else:  # every recipient refused by a rule: the first rule's words
            address, reply = next(iter(plan.refused.items()))
            raise PermanentError(reply.code, reply.enhanced, reply.text, f"policy: {address}")
        result.decisions = plan.decisions
        return result

    async def _plan(self, tx: Transaction, loop: LoopCheck) -> Plan:
        """Ask the policy; reading attachments blocks, so it runs in a worker thread.

        ``loop`` says whether the message passed Sealgate before: a copy relayed in
        the clear of a message protected for others (its marker), or, with a
        marker a forwarder broke, any message with our Received field, whose own
        Message-ID is then looked up. Mail that never passed Sealgate costs no
        such lookup."""
        policy = self.protecting.policy
        extractor = self.protecting.extractor if policy.reads_content else None
        threads = self.protecting.state.threads

        def protected_before(message_id: str) -> bool:
            return threads.protected_elsewhere(message_id, self._key(tx))

        lookups = Lookups(
            threads=threads,
            protected_before=protected_before if loop.hops else None,
            posture=self.posture,
            directory=self.protecting.directory,
        )
        protected_copy = loop.protected_copy

        def evaluate() -> tuple[dict[str, Decision], bytes, dict[str, str]]:
            # DNS lookups, detectors scanning MBs of text and the directory: on threads of
            # their own, never on the event loop.
            data, results, verdicts = self._authenticate(tx)
            facts = gather(
                data, tx.mail_from, extractor, verdicts, lookups, protected_copy=protected_copy
            )
            decisions = policy.decide(facts, tx.rcpt_tos)
            return decisions, results + data, self._directory_phones(decisions)

        running = asyncio.get_running_loop()
        decisions, data, known_phones = await running.run_in_executor(self._deciding, evaluate)
        relayed_bytes = outgoing.without_headers(
            data, [*policy.strip_headers, *instructions.FIELDS]
        )

        factors = self._factors(tx, decisions, known_phones)
        for address, factor in factors.items():
            if factor.missing:  # the rule needs a second factor nobody supplied: hold
                decisions[address] = _missing(decisions[address], factor.missing)

        def having(action: str) -> tuple[str, ...]:
            return tuple(r for r in tx.rcpt_tos if decisions[r].action == action)

        # Held recipients wait, sealed, for the sender's release (holding); without a
        # reply key to keep their links under, a sender to ask, or a rule that lets the
        # sender release, they are refused.
        can_hold = self.protecting.holding is not None and bool(tx.mail_from)

        def refusing(decision: Decision) -> bool:
            held = decision.action == "hold" and decision.releasable and can_hold
            return decision.action in ("reject", "hold") and not held

        refused = {r: _refusal(decisions[r]) for r in tx.rcpt_tos if refusing(decisions[r])}
        if refused and not tx.mail_from:
            # A null sender cannot be told about refused recipients (no bounce to <>):
            # refuse the whole message rather than drop some recipients silently.
            address, reply = next(iter(refused.items()))
            raise PermanentError(reply.code, reply.enhanced, reply.text, f"policy: {address}")
        held = tuple(r for r in having("hold") if r not in refused)
        why = {r: _held_for(decisions[r], factors.get(r)) for r in held}
        return Plan(
            having("relay"),
            having("protect"),
            refused,
            decisions,
            relayed_bytes,
            factors,
            held,
            why,
        )

    def _key(self, tx: Transaction) -> str:
        """The transaction's idempotency key (envelope sender, recipients, bytes): an HMAC
        over the whole message, so made only where it is needed, never for plain relaying."""
        return idempotency_key(
            self.protecting.idempotency_secret, tx.mail_from, tx.rcpt_tos, tx.data
        )

    async def _hashed(self, tx: Transaction) -> str:
        """:meth:`_key`, off the event loop for a large message (an HMAC over 36 MB takes
        about 25 ms, which every other session would wait for)."""
        if len(tx.data) < _HASH_ON_LOOP:
            return self._key(tx)
        return await asyncio.to_thread(self._key, tx)

    def _directory_phones(self, decisions: dict[str, Decision]) -> dict[str, str]:
        """The directory's mobile numbers of the recipients whose rule offers SMS codes
        (colleagues sent protected mail); asked only when there are such recipients."""
        directory = self.protecting.directory
        texted = [
            r for r, d in decisions.items()
            if d.action in ("protect", "hold") and d.verify and "sms" in d.verify
        ]  # fmt: skip
        return directory.phones_of(texted) if directory is not None and texted else {}

    def _factors(
        self, tx: Transaction, decisions: dict[str, Decision], known_phones: dict[str, str]
    ) -> dict[str, secondfactor.Factors]:
        """Each protected recipient's second factors, from the rule and the sender's fields;
        a number the sender gives wins over the directory's (``known_phones``)."""
        protected = [r for r in tx.rcpt_tos if decisions[r].action in ("protect", "hold")]
        if not protected:
            return {}
        phones = known_phones | secondfactor.phones(tx.data, protected)
        code = message.first_value(tx.data, secondfactor.ACCESS_CODE_FIELD)
        factors = {
            r: secondfactor.factors(
                decisions[r].verify,
                phone=phones.get(r),
                access_code=code or None,
                secret=self.protecting.code_secret,
                sms=self.protecting.sms,
            )
            for r in protected
        }
        if code and secondfactor.weak_access_code(code):  # the receipt or held notice says why
            event(log, logging.WARNING, "access code too weak, not used", queue_id=tx.queue_id,
                  held=sum(1 for f in factors.values() if f.missing))  # fmt: skip
        return factors

    def _authenticate(self, tx: Transaction) -> tuple[bytes, bytes, dict[str, object]]:
        """SPF, DKIM and DMARC of the message as the original client sent it.

        Returns the message without Authentication-Results fields that claim
        our authserv-id (RFC 8601 §5: nobody may forge our verdicts; also when
        verification is off), our own field to put in front, and the verdicts as
        policy facts.
        """
        data = strip_forged_results(tx.data, self.authserv_id)
        if self.verifier is None:
            return data, b"", {}
        forwarded = tx.client.xforward
        address = forwarded.addr if forwarded and forwarded.addr else tx.client.address
        helo = forwarded.helo if forwarded and forwarded.helo else tx.client.helo
        try:
            ipaddress.ip_address(address)
        except ValueError:  # XFORWARD said [UNAVAILABLE]: the connecting client, then
            address = tx.client.address
        verdicts = self.verifier.verify(data, mail_from=tx.mail_from, helo=helo, client_ip=address)
        return data, self.verifier.header(verdicts), verdicts.as_facts()

    def _outgoing(self, tx: Transaction, data: bytes, kind: Kind) -> bytes:
        """A relayed message: signed after every change of ours (if configured), then our
        trace fields, which no signature covers. ``kind`` says whether it is a copy of a
        message protected for others (gateway.outbound.loopmarker)."""
        if self.sign_relayed:
            data = self.own.signed(data)
        return self._received(tx) + self.marker.header(data, kind) + data

    async def _protect(self, tx: Transaction, plan: Plan) -> Result:
        """Seal for the protected recipients, notify them, relay to the rest, then 250.

        A retry finishes what is missing (DESIGN): until the message is settled,
        each guest reader's link is kept sealed to the organisation's reply key
        (gateway.store.pending), and the audit trail says who was notified,
        refused, held and bounced. A retry after a 4xx resumes the envelope and
        sends only what is still owed: the same link to each reader not yet
        notified, the held notice and the bounce if they did not go, the relayed
        copy. It finishes what the first attempt decided for the readers sealed
        then (:func:`_as_sealed`). Without kept links (no reply key), or when
        nothing went out yet and the policy now decides otherwise, the retry
        supersedes (shreds) the unfinished envelope and seals afresh. A retry of
        a message that was wholly delivered is answered 250 without sending
        anything.
        """
        key = await self._hashed(tx)
        original = Original.of(tx.mail_from, tx.data)
        prepared: dict[str, bytes | ValueError] = {}  # notifications made in the sealing hop
        first = await self._seal(tx, plan, key, original, None, prepared)
        progress = Progress()
        if isinstance(first, SealedEnvelope):
            sealed = first
        elif first.state == "delivered":
            reply = SMTPReply(250, "2.0.0", f"Ok: already delivered as {first.envelope_id}")
            return Result(reply, Outcome.DUPLICATE, envelope_id=first.envelope_id)
        else:  # a retry of an unsettled attempt
            resumed = await self._resumed(first, plan)
            if resumed is not None:
                sealed, progress, plan = resumed
            else:
                sealed = await self._seal(tx, plan, key, original, first.envelope_id, prepared)
        async with contextlib.AsyncExitStack() as stack:
            # A copy of the whole message (and a DKIM hash over it): only when relaying.
            relayed = (
                self._outgoing(tx, plan.relayed_bytes, Kind.RELAYED_PROTECTED)
                if plan.relay
                else b""
            )
            relay, refused = await self._open_relay(tx, plan.relay, len(relayed))
            if relay is not None:
                await stack.enter_async_context(relay)
            # Held ones first: a failure there defers the message before anyone was told.
            held = await self._hold(tx, sealed, progress, plan, original)
            grants = [g for g in sealed.grants if g.address in plan.protect]
            # When the last notification is all the message still owes, its record goes
            # into the transaction that settles the message (one commit fewer).
            refused = {**plan.refused, **_refusals(progress), **refused}
            settle_with_last = relay is None and not refused
            sent, refused_now, unrecorded = await self._notify(
                tx, grants, sealed, original, prepared, settle_with_last
            )
            refused = {**refused, **refused_now}
            notified = held + len(progress.notified) + sent
            if not notified:
                # No guest can ever reach this envelope: shred it now.
                discard = self.protecting.vault.discard(sealed.envelope_id, "every reader refused")
                await self._vault(discard)
            if relay is None and not notified:
                address, reply = next(iter(refused.items()))
                raise PermanentError(
                    reply.code, reply.enhanced, f"Recipient {address}: {reply.text}"
                )
            if refused:
                await self._bounce_once(tx, sealed.envelope_id, refused, plan, progress)
            upstream_reply = None
            if relay is not None:
                upstream_reply = await relay.send_data(relayed)
        await self._settle(sealed.envelope_id, unrecorded)
        if notified and self.protecting.receipt is not None and tx.mail_from:
            weak_code = any(f.weak_access_code and not f.missing for f in plan.factors.values())
            await self._receipt(tx, sealed, original, {*refused, *plan.hold}, weak_code)
        reply = SMTPReply(250, "2.0.0", f"Ok: queued as {tx.queue_id}")
        return Result(
            reply,
            Outcome.PROTECTED,
            upstream_reply=upstream_reply,
            refused=refused,
            envelope_id=sealed.envelope_id,
            protected=notified,
        )

    @overload
    async def _seal(
        self,
        tx: Transaction,
        plan: Plan,
        key: str,
        original: Original,
        supersede: None,
        prepared: dict[str, bytes | ValueError],
    ) -> SealedEnvelope | EnvelopeRecord: ...

    @overload
    async def _seal(
        self,
        tx: Transaction,
        plan: Plan,
        key: str,
        original: Original,
        supersede: str,
        prepared: dict[str, bytes | ValueError],
    ) -> SealedEnvelope: ...

    async def _seal(
        self,
        tx: Transaction,
        plan: Plan,
        key: str,
        original: Original,
        supersede: str | None,
        prepared: dict[str, bytes | ValueError],
    ) -> SealedEnvelope | EnvelopeRecord:
        """Seal and commit a new envelope with its links kept until settled (when there is
        a reply key to keep them under), and remember its thread.

        Without ``supersede`` (a first attempt, as far as the pipeline knows), a live
        envelope of an earlier attempt is returned instead of sealing: see
        :meth:`_protect`. With it, that unfinished attempt is shredded in the commit.
        In the same worker thread, once committed, the protected readers' notifications
        are rendered and signed into ``prepared`` (reader id -> the message, or the
        ValueError of an address that cannot be written): a thread hop fewer a message.
        """
        vault = self.protecting.vault
        expiry = instructions.expiry(tx.data, datetime.now(UTC), self.protecting.retention)
        request = SealRequest(
            # What is sealed loses the subject tags too (only sealed copies: the subject
            # of relayed ones is covered by the sender's DKIM signature).
            raw=plan.relayed_bytes,
            subject_field=outgoing.subject_without_tags(
                plan.relayed_bytes, self.protecting.policy.subject_tags
            ),
            sender=tx.mail_from,
            queue_id=tx.queue_id,
            recipients=plan.protect + plan.hold,
            idempotency_key=key,
            retention=expiry.retention,
            decisions={r: json.dumps(d.as_dict()) for r, d in plan.decisions.items()},
            access={
                address: ReaderAccess(",".join(f.methods), f.access_code_hash, f.phone)
                for address, f in plan.factors.items()
            },
            message_id=original.message_id,
            sender_name=original.sender_name,
            events=(("expiry", expiry.detail),) if expiry.detail else (),
        )
        keep_link = None
        holding = self.protecting.holding
        if holding is not None:
            public_key = holding.public_key

            def keep_link(link: Link) -> bytes:  # called in the vault's thread
                return seal_link(public_key(), link)

        def prepare(sealed: SealedEnvelope) -> None:  # called in the vault's thread
            for grant in sealed.grants:
                if grant.address in plan.protect:
                    try:
                        ready = self._notification(original, grant, sealed.record.expires_at)
                    except ValueError as error:
                        prepared[grant.reader_id] = error
                    else:
                        prepared[grant.reader_id] = ready

        # Answers to this message stay protected (policy: protected_thread).
        if supersede is None:
            return await self._vault(
                vault.seal_unless_live(
                    request,
                    keep_link=keep_link,
                    with_accounts=True,
                    remember_thread=True,
                    after=prepare,
                )
            )
        return await self._vault(
            vault.seal(
                request,
                supersede=supersede,
                keep_link=keep_link,
                with_accounts=True,
                remember_thread=True,
                after=prepare,
            )
        )

    async def _resumed(
        self, existing: EnvelopeRecord, plan: Plan
    ) -> tuple[SealedEnvelope, Progress, Plan] | None:
        """An unsettled envelope of an earlier attempt: the links it still owes, what went
        out already, and the plan as the first attempt sealed it; None to seal afresh."""
        holding = self.protecting.holding
        if holding is None:
            return None
        pending = self.protecting.pending
        progress = await self._vault(asyncio.to_thread(pending.progress, existing.envelope_id))
        if not progress.owed and not progress.started and not progress.held:
            return None  # sealed without a reply key to keep its links under
        sealed_for = {r.address for r in existing.readers if r.kind == "guest"}
        unchanged = sealed_for == {*plan.protect, *plan.hold}
        if not unchanged and not progress.started and not progress.held:
            return None  # nobody was told anything, and the policy now decides otherwise
        grants = []
        for reader in existing.readers:  # in the order they were sealed
            if reader.reader_id in progress.owed:
                link = await asyncio.to_thread(holding.open_link, progress.owed[reader.reader_id])
                grants.append(Grant(reader.address, reader.reader_id, link))
        event(log, logging.INFO, "resuming", envelope=existing.envelope_id, owed=len(grants))
        held = {r.address for r in existing.readers if r.reader_id in progress.held}
        return SealedEnvelope(existing, tuple(grants)), progress, _as_sealed(plan, sealed_for, held)

    async def _open_relay(
        self, tx: Transaction, recipients: tuple[str, ...], size: int
    ) -> tuple[UpstreamTransaction | None, dict[str, SMTPReply]]:
        """MAIL and RCPT for the relayed recipients, before any notification goes out.

        Knowing the relay's recipients first means a refusal there can no
        longer turn into a 5xx for a message whose links were already sent.
        """
        if not recipients:
            return None, {}
        try:
            transaction = await self.upstream.open(
                tx.mail_from,
                recipients,
                smtputf8=tx.smtputf8,
                body_8bit=tx.body_8bit,
                size=size,
            )
        except PermanentError as error:  # every relayed recipient refused
            return None, dict.fromkeys(recipients, error.reply)
        return transaction, dict(transaction.refused)

    async def _settle(self, envelope_id: str, unrecorded: Grant | None) -> None:
        """Mark the envelope delivered, with the notification of ``unrecorded`` (the last
        one, not recorded yet); everything went out, so a failure here is only logged.

        Answering 451 now would make the MTA send everything again. The
        envelope stays "sealed", which readers cannot tell from "delivered"; a
        retry sends an unrecorded reader the same link once more (as when
        :meth:`_record_reader` fails).
        """
        last = None if unrecorded is None else (unrecorded.reader_id, unrecorded.address)
        try:
            await self.protecting.vault.mark_delivered(envelope_id, last)
        except StoreError as error:
            event(log, logging.WARNING, "could not mark delivered", envelope=envelope_id,
                  error=str(error))  # fmt: skip

    async def _notify(
        self,
        tx: Transaction,
        grants: list[Grant],
        sealed: SealedEnvelope,
        original: Original,
        prepared: dict[str, bytes | ValueError],
        settle_with_last: bool = False,
    ) -> tuple[int, dict[str, SMTPReply], Grant | None]:
        """Send these guest readers their link: how many were accepted, the recipients the
        upstream refused, and the reader whose notification is left for :meth:`_settle`
        to record. Each outcome is recorded, so that a retry does not repeat it; with
        ``settle_with_last`` (nothing else is owed after the notifications), the last
        one is left unrecorded if it was accepted and nobody was refused."""
        sent, refused = 0, {}
        for position, grant in enumerate(grants, 1):
            try:
                ready = await self._ready(grant, sealed, original, prepared)
            except ValueError:
                refused[grant.address] = _BAD_ADDRESS
            else:
                try:
                    await self.own.deliver(tx.mail_from, [grant.address], ready)
                except PermanentError as error:
                    refused[grant.address] = error.reply
                else:
                    sent += 1
            if settle_with_last and position == len(grants) and not refused:
                return sent, refused, grant
            await self._record_reader(sealed.envelope_id, grant, refused.get(grant.address))
        return sent, refused, None

    async def _ready(
        self,
        grant: Grant,
        sealed: SealedEnvelope,
        original: Original,
        prepared: dict[str, bytes | ValueError],
    ) -> bytes:
        """The reader's notification: made in the sealing hop (``prepared``), else now.

        Rendering and DKIM signing (about 1.4 ms, RSA without the GIL) run in a worker
        thread either way, so that the event loop serves the other sessions meanwhile;
        a retry that resumes an envelope has none prepared.
        """
        made = prepared.get(grant.reader_id)
        if isinstance(made, ValueError):
            raise made
        if made is not None:
            return made
        expires = sealed.record.expires_at
        return await asyncio.to_thread(self._notification, original, grant, expires)

    def _notification(self, original: Original, grant: Grant, expires: datetime) -> bytes:
        """One reader's notification, signed and loop-marked; ValueError for an address
        that cannot be written."""
        url = grant.link.url(self.protecting.portal_url)
        notifier = self.protecting.notifier
        data = notifier.notification(original, grant.address, url, expires, grant.account)
        return self.own.originated(data)

    async def _record_reader(
        self, envelope_id: str, grant: Grant, refusal: SMTPReply | None
    ) -> None:
        """Record that a reader has their link (or was refused for good): its kept link goes.

        The notification is out: a failure to record it is logged, not deferred.
        A retry would then send the same link once more, never a new one.
        """
        pending = self.protecting.pending
        try:
            if refusal is None:
                await asyncio.to_thread(
                    pending.notified, envelope_id, grant.reader_id, grant.address
                )
            else:
                await asyncio.to_thread(
                    pending.refused, envelope_id, grant.reader_id, grant.address, str(refusal)
                )
        except StoreError as error:
            event(log, logging.WARNING, "could not record a notification", envelope=envelope_id,
                  error=str(error))  # fmt: skip

    async def _hold(
        self,
        tx: Transaction,
        sealed: SealedEnvelope,
        progress: Progress,
        plan: Plan,
        original: Original,
    ) -> int:
        """Keep held recipients' links under the reply key and ask the sender, once, to
        decide; how many recipients are held.

        The sender's notice is owed like a bounce: if it cannot be sent now, the
        whole message is deferred, and the retry sends it (the holds stay).
        """
        if not plan.hold:
            return 0
        holding = self.protecting.holding
        assert holding is not None
        holds = self.protecting.state.holds
        owed = [g for g in sealed.grants if g.address in plan.hold]
        if owed:
            public = await asyncio.to_thread(holding.public_key)
            items = [
                Hold(
                    envelope_id=sealed.envelope_id,
                    reader_id=grant.reader_id,
                    address=grant.address,
                    missing=plan.held_for[grant.address].missing,
                    reason=plan.held_for[grant.address].reason,
                    sealed_link=seal_link(public, grant.link),
                )
                for grant in owed
            ]
            await self._vault(asyncio.to_thread(holds.add_holds, items, sealed.record.created_at))
        if progress.held_notice:
            return len(plan.hold)
        waiting = await self._vault(asyncio.to_thread(holds.held, sealed.envelope_id))
        notifier = self.protecting.notifier
        try:
            data = notifier.held_notice(
                original,
                [(hold.address, hold.missing, hold.reason) for hold in waiting],
                holding.release_url(sealed.envelope_id),
                notifier.language(original, tx.mail_from),
            )
            await self.own.send("", [tx.mail_from], data)
        except (PermanentError, ValueError) as error:  # nobody to ask: they expire unreleased
            event(log, logging.WARNING, "held notice refused", envelope=sealed.envelope_id,
                  error=str(error))  # fmt: skip
        try:
            await asyncio.to_thread(self.protecting.pending.held_notice_sent, sealed.envelope_id)
        except StoreError as error:  # sent: at worst a retry sends it once more
            event(log, logging.WARNING, "could not record the held notice",
                  envelope=sealed.envelope_id, error=str(error))  # fmt: skip
        return len(plan.hold)

    async def _receipt(
        self,
        tx: Transaction,
        sealed: SealedEnvelope,
        original: Original,
        unsent: set[str],
        weak_code: bool,
    ) -> None:
        """The sender's "sent securely" receipt; held recipients have their own notice.
        With ``weak_code`` it says that the sender's access code was too weak to use;
        it says too when the expiry the sender asked for was clamped or not understood.

        Everything owed went out already: a failure here is logged, never turned
        into a retry of the whole message."""
        assert self.protecting.receipt is not None
        guests = [r.address for r in sealed.record.readers if r.kind == "guest"]
        readers = [address for address in guests if address not in unsent]
        expiry = instructions.expiry(tx.data, sealed.record.created_at, self.protecting.retention)
        try:
            data = self.protecting.notifier.receipt(
                original,
                sealed.envelope_id,
                readers,
                self.protecting.receipt(sealed.envelope_id),
                sealed.record.expires_at,
                weak_access_code=weak_code,
                expiry=expiry,
            )
            await self.own.send("", [tx.mail_from], data)
        except (ValueError, GatewayError) as error:
            event(log, logging.WARNING, "receipt not sent", envelope=sealed.envelope_id,
                  error=str(error))  # fmt: skip

    @staticmethod
    async def _vault(awaitable: Awaitable[T]) -> T:
        """Await a vault call; its faults become replies the MTA understands (451/452)."""
        try:
            return await awaitable
        except StoreError as error:
            # Also for permanent-looking store errors (a concurrent attempt of the
            # same message won the unique index): a retry later sorts them out.
            raise TemporaryError(
                451, "4.3.0", "Cannot store the message right now; try again later", str(error)
            ) from error
        except OSError as error:
            if error.errno in (errno.ENOSPC, errno.EDQUOT):
                raise TemporaryError(
                    452, "4.3.1", "Insufficient storage; try again later", str(error)
                ) from error
            raise TemporaryError(
                451, "4.3.0", "Cannot store the message right now; try again later", str(error)
            ) from error

    async def _relay(
        self,
        tx: Transaction,
        outgoing: bytes,
        *,
        outcome: Outcome,
        recipients: tuple[str, ...] | None = None,
        refused: dict[str, SMTPReply] | None = None,
    ) -> Result:
        """Relay to ``recipients`` (default: all), bouncing what was refused before or now."""
        transaction = await self.upstream.open(
            tx.mail_from,
            tx.rcpt_tos if recipients is None else recipients,
            smtputf8=tx.smtputf8,
            body_8bit=tx.body_8bit,
            size=len(outgoing),
        )
        by_policy = tuple(refused or {})  # refused before the upstream was asked
        refused = {**(refused or {}), **transaction.refused}
        async with transaction:
            if refused:
                await self._bounce(tx, refused, by_policy)
            upstream_reply = await transaction.send_data(outgoing)
        reply = SMTPReply(250, "2.0.0", f"Ok: queued as {tx.queue_id}")
        return Result(reply, outcome, upstream_reply=upstream_reply, refused=refused)

    async def _bounce_once(
        self,
        tx: Transaction,
        envelope_id: str,
        refused: dict[str, SMTPReply],
        plan: Plan,
        progress: Progress,
    ) -> None:
        """Tell the sender about the refused recipients no earlier attempt told them about.

        Links may be out already: a bounce the sender's own address refuses for
        good (nobody to tell) is logged and the rest is delivered, not refused.
        """
        new = {a: r for a, r in refused.items() if a not in progress.bounced}
        if not new:
            return
        try:
            await self._bounce(tx, new, plan.refused.keys())
        except PermanentError as error:
            event(log, logging.WARNING, "bounce refused", envelope=envelope_id,
                  error=str(error))  # fmt: skip
        try:
            await asyncio.to_thread(self.protecting.pending.bounced, envelope_id, list(new))
        except StoreError as error:  # sent: at worst a retry sends it once more
            event(log, logging.WARNING, "could not record a bounce", envelope=envelope_id,
                  error=str(error))  # fmt: skip

    async def _bounce(
        self, tx: Transaction, refused: dict[str, SMTPReply], by_policy: Collection[str] = ()
    ) -> None:
        """Tell the sender about recipients the upstream (or the policy) refused for good.

        Sent before the relayed copy's DATA: if the bounce cannot be sent, the
        whole transaction is deferred and the copy was not delivered twice.
        A null sender gets no bounce (RFC 5321 6.1 and 4.5.5).
        """
        if not tx.mail_from:
            log.warning(
                "recipients refused, no bounce to the null sender",
                extra={"fields": {"queue_id": tx.queue_id, "refused": list(refused)}},
            )
            return
        bounce = dsn.build(
            reporting_host=self.hostname,
            queue_id=tx.queue_id,
            sender=tx.mail_from,
            refused=refused,
            remote_mta=self.upstream.settings.host,
            # What the sender wrote for Sealgate alone stays out of the bounce too.
            original_header=outgoing.without_headers(
                message.header_block(tx.data),
                [*self.protecting.policy.strip_headers, *instructions.FIELDS],
            ),
            arrival=tx.received_at,
            by_policy=by_policy,
        )
        await self.own.send("", [tx.mail_from], bounce)

    def _received(self, tx: Transaction) -> bytes:
        """Our Received trace field (RFC 5321 4.4), prepended to what we relay."""
        client = tx.client
        protocol = (
            ("UTF8SMTP" if tx.smtputf8 else "ESMTP")
            + ("S" if client.tls else "")
            + ("A" if client.login else "")
        )
        address = f"IPv6:{client.address}" if ":" in client.address else client.address
        stamp = email.utils.format_datetime(tx.received_at)
        helo = "".join(ch for ch in client.helo if ch.isprintable() and ch not in "()")[:200]
        return (
            f"Received: from {helo or 'unknown'} ([{address}])\r\n"
            f"\tby {self.hostname} {RECEIVED_TAG.decode()} with {protocol} id {tx.queue_id};\r\n"
            f"\t{stamp}\r\n"
        ).encode("utf-8", "surrogateescape")


def _missing(decision: Decision, missing: tuple[str, ...]) -> Decision:
    """A protected recipient whose rule needs a second factor the sender did not supply."""
    needs = {
        "phone": f"a mobile phone number for SMS codes ({secondfactor.PHONE_FIELD})",
        "access-code": f"an access code of at least {secondfactor.MIN_ACCESS_CODE_LENGTH} "
        f"characters, not a run like 12345678 ({secondfactor.ACCESS_CODE_FIELD})",
    }
    wanted = " or ".join(needs.get(m, m) for m in missing)
    text = f"Held: the recipient's verification needs {wanted}; send again with it"
    return Decision("hold", decision.reasons, text, decision.verify, releasable=decision.releasable)


def _held_for(decision: Decision, factors: secondfactor.Factors | None) -> Waiting:
    """What a held recipient waits for: a missing second factor, or the rule's decision."""
    missing = factors.missing if factors is not None else ()
    return Waiting(missing, decision.refusal_text())


_LATE_PROTECTION = SMTPReply(
    550,
    "5.7.1",
    "The policy protects this recipient only since the message was retried, and it was "
    "sealed without them; send the message again",
)


def _as_sealed(plan: Plan, sealed_for: set[str], held: set[str]) -> Plan:
    """The plan of a retry, as the first attempt sealed the message.

    Whoever the envelope was sealed for stays protected (or held): their link
    may be out already. The other recipients follow the policy's decision now,
    except that nobody the policy now protects gets the message in the clear:
    not sealed for, they are refused (the sender is told to send it again).
    """
    order = list(plan.decisions)
    hold = tuple(a for a in order if a in sealed_for and (a in held or a in plan.hold))
    late = {a: _LATE_PROTECTION for a in (*plan.protect, *plan.hold) if a not in sealed_for}
    return replace(
        plan,
        relay=tuple(a for a in plan.relay if a not in sealed_for),
        protect=tuple(a for a in order if a in sealed_for and a not in hold),
        hold=hold,
        refused={**{a: r for a, r in plan.refused.items() if a not in sealed_for}, **late},
    )


def _refusals(progress: Progress) -> dict[str, SMTPReply]:
    """The readers an earlier attempt's notification was refused for, with the reply."""
    return {address: _parsed_reply(text) for address, text in progress.refused.items()}


def _parsed_reply(text: str) -> SMTPReply:
    code, enhanced, words = (text.split(" ", 2) + ["", ""])[:3]
    try:
        return SMTPReply(int(code), enhanced, words)
    except ValueError:
        return SMTPReply(550, "5.0.0", "Recipient refused")


def _refusal(decision: Decision) -> SMTPReply:
    """The reply a rejected or held recipient's bounce carries: the administrator's words."""
    return SMTPReply(550, "5.7.1", decision.refusal_text())
