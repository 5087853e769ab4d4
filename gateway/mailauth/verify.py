"""Verification of incoming mail: SPF, every DKIM signature, DMARC, ARC, one Authentication-Results.

Only our own verdicts count (LESSONS.md, "Trusting the wrong thing"): every
``Authentication-Results`` field claiming our authserv-id is removed before ours is added
(:func:`strip_forged_results`, RFC 8601 §5), every DKIM signature is checked, not only the
first, a signature that does not cover From fails, and a DNS failure is ``temperror``, never
``none`` (RFC 7208 §2.6.6, RFC 6376 §6.1.2, RFC 7489 §6.6.2). The ARC chain (RFC 8617 §5.2)
is validated through the same DNS path as DKIM keys: a lookup that fails temporarily makes the
``arc`` verdict ``temperror``, never ``fail``.

``secure`` on a :class:`Verdict` is true only when at least one DNS answer decided it and every
answer used was DNSSEC-validated by a trusted validator (``Answer.secure``); a verdict reached
without DNS (an unparseable From, a signature not covering From) is not "secure".
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

import authres
import dkim
from dkim.util import InvalidTagValueList, parse_tag_value
from publicsuffixlist import PublicSuffixList

from gateway.mailauth import dmarc, spf
from gateway.mailauth.dns import Answer, Resolver, TemporaryDNSError


@dataclass(frozen=True)
class Verdict:
    """One method's result (RFC 8601 §2.7)."""

    method: str  # "spf" | "dkim" | "dmarc" | "arc"
    result: str  # pass fail softfail neutral none temperror permerror policy
    secure: bool
    properties: tuple[tuple[str, str], ...]
    reason: str = ""

    def get(self, name: str) -> str | None:
        """The first property called ``name`` (``"header.d"``...), or None."""
        return next((value for key, value in self.properties if key == name), None)


@dataclass(frozen=True)
class Verdicts:
    spf: Verdict  # MAIL FROM (postmaster@HELO when MAIL FROM is <>)
    helo: Verdict
    dkim: tuple[Verdict, ...]  # one per DKIM-Signature, top first
    dmarc: Verdict
    dmarc_policy: str | None  # the p or sp that applies to this message, after pct sampling
    from_domain: str | None = None
    spf_aligned: bool = False  # SPF passed for a domain aligned with From
    dkim_aligned: bool = False  # a DKIM signature of a domain aligned with From passed
    mail_from_null: bool = False
    arc: Verdict = Verdict("arc", "none", False, ())  # the ARC chain (RFC 8617): pass fail none

    def as_facts(self) -> dict[str, object]:
        """What the policy engine can test; ``secure`` is the DMARC verdict's DNSSEC status."""
        return {
            "spf": self.spf.result,
            "spf_aligned": self.spf_aligned,
            "dkim": [verdict.result for verdict in self.dkim],
            "dkim_aligned": self.dkim_aligned,
            "dmarc": self.dmarc.result,
            "dmarc_policy": self.dmarc_policy,
            "arc": self.arc.result,
            "from_domain": self.from_domain,
            "secure": self.dmarc.secure,
        }


class Verifier:
    """Checks messages against DNS through ``resolver``; thread-safe, blocking (worker threads)."""

    def __init__(
        self, resolver: Resolver, authserv_id: str, psl: PublicSuffixList | None = None
    ) -> None:
        if not re.fullmatch(r"[A-Za-z0-9!#$%&'*+\-.^_`{|}~]+", authserv_id):
            raise ValueError(f"authserv-id must be a token (a host name): {authserv_id!r}")
        self._resolver = resolver
        self.authserv_id = authserv_id
        self._psl = psl if psl is not None else PublicSuffixList()

    def verify(self, data: bytes, *, mail_from: str, helo: str, client_ip: str) -> Verdicts:
        """SPF (MAIL FROM and HELO), every DKIM signature and DMARC for one message."""
        sender = mail_from.strip().removeprefix("<").removesuffix(">").strip()
        helo_verdict = self._spf("", helo, client_ip, ("smtp.helo", helo))
        if sender:
            spf_verdict = self._spf(sender, helo, client_ip, ("smtp.mailfrom", sender))
        else:
            spf_verdict = helo_verdict
        try:
            parsed = dkim.DKIM(data)
            headers = [(name, value) for name, value in parsed.headers]
        except dkim.DKIMException:
            parsed, headers = None, []
        signatures = [value for name, value in headers if name.lower() == b"dkim-signature"]
        dkim_verdicts = (
            tuple(self._dkim(parsed, index, value) for index, value in enumerate(signatures))
            if parsed is not None
            else ()
        )
        spf_domain = _domain_of(sender) if sender else dmarc.normalise_domain(helo)
        verdicts = self._dmarc(headers, spf_verdict, spf_domain, dkim_verdicts, not sender) | {
            "spf": spf_verdict,
            "helo": helo_verdict,
        }
        return dataclasses.replace(verdicts, arc=self._arc(data))

    def _spf(self, sender: str, helo: str, ip: str, prop: tuple[str, str]) -> Verdict:
        result, explanation, secure = spf.check(self._resolver, ip=ip, sender=sender, helo=helo)
        reason = "" if result in ("pass", "none") else explanation
        return Verdict("spf", result, secure, (prop,), _clean(reason))

    def _dkim(self, parsed: dkim.DKIM, index: int, value: bytes) -> Verdict:
        lookup = _KeyLookup(self._resolver)
        answers, missing, dnsfunc = lookup.answers, lookup.missing, lookup

        try:
            tags = parse_tag_value(value)
        except InvalidTagValueList:
            return Verdict("dkim", "permerror", False, (), "unparseable DKIM-Signature")
        props = tuple(
            (f"header.{tag}", text)
            for tag in ("d", "s", "a", "b")
            if (text := _tag(tags, tag)) is not None
        )
        needed = [tag for tag in (b"v", b"a", b"b", b"bh", b"d", b"h", b"s") if tag not in tags]
        if needed:
            missing_tags = ", ".join(tag.decode() for tag in needed)
            return Verdict("dkim", "permerror", False, props, f"missing tags: {missing_tags}")
        signed = [name.strip().lower() for name in tags[b"h"].split(b":")]
        if b"from" not in signed:
            return Verdict("dkim", "fail", False, props, "From header field not signed")
        try:
            ok = parsed.verify(idx=index, dnsfunc=dnsfunc)
        except TemporaryDNSError as error:
            return Verdict("dkim", "temperror", False, props, _clean(str(error)))
        except (dkim.MessageFormatError, dkim.ParameterError, dkim.KeyFormatError) as error:
            return Verdict("dkim", "permerror", _secure(answers), props, _clean(str(error)))
        except dkim.DKIMException as error:
            return Verdict("dkim", "fail", _secure(answers), props, _clean(str(error)))
        if ok:
            return Verdict("dkim", "pass", _secure(answers), props)
        if missing:
            return Verdict("dkim", "permerror", _secure(answers), props, "no usable key")
        return Verdict("dkim", "fail", _secure(answers), props, "signature did not verify")

    def _arc(self, data: bytes) -> Verdict:
        """The ARC chain validation status (RFC 8617 §5.2): pass, fail, none or temperror.

        Every ARC-Seal and ARC-Message-Signature key comes through ``_KeyLookup``, as DKIM keys
        do. A chain whose newest seal says ``cv=fail`` fails (dkimpy reports it as ended).
        ``header.oldest-pass`` is the oldest instance from which every newer
        ARC-Message-Signature still validates, given only when an older one does not.
        """
        if not _ARC_FIELD.search(data.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]):
            return Verdict("arc", "none", False, ())
        lookup = _KeyLookup(self._resolver)
        try:
            status, results, reason = dkim.ARC(data, minkey=1024).verify(dnsfunc=lookup)
        except TemporaryDNSError as error:
            return Verdict("arc", "temperror", False, (), _clean(str(error)))
        except (dkim.DKIMException, IndexError, KeyError, ValueError) as error:
            # dkimpy raises IndexError/KeyError/ValueError on some malformed ARC fields.
            return Verdict("arc", "fail", _secure(lookup.answers), (), _clean(str(error)))
        secure = _secure(lookup.answers)
        if status == dkim.CV_Pass:
            props: tuple[tuple[str, str], ...] = ()
            oldest = _oldest_pass(results)
            if oldest > 0:
                props = (("header.oldest-pass", str(oldest)),)
            return Verdict("arc", "pass", secure, props)
        if status == dkim.CV_None:
            # ARC fields, but none with an instance number: a malformed chain (§5.2 step 2).
            return Verdict("arc", "fail", False, (), "no valid ARC set")
        return Verdict("arc", "fail", secure, (), _clean(str(reason)))

    def _dmarc(
        self,
        headers: list[tuple[bytes, bytes]],
        spf_verdict: Verdict,
        spf_domain: str | None,
        dkim_verdicts: tuple[Verdict, ...],
        null_sender: bool,
    ) -> _Partial:
        partial = _Partial(mail_from_null=null_sender, dkim=dkim_verdicts)
        domain, why = dmarc.from_domain(headers)
        if domain is None:
            partial.dmarc = Verdict("dmarc", "permerror", False, (), why)
            return partial
        partial.from_domain = domain
        prop = ("header.from", domain)
        lookup = dmarc.discover(
            self._resolver, domain, dmarc.organisational_domain(self._psl, domain)
        )
        record_secure = _secure(list(lookup.answers))
        if lookup.status == "temperror":
            partial.dmarc = Verdict("dmarc", "temperror", False, (prop,), "DMARC record lookup")
            return partial
        if lookup.record is None:
            partial.dmarc = Verdict("dmarc", "none", record_secure, (prop,))
            return partial
        record = lookup.record
        spf_is_aligned = dmarc.aligned(self._psl, spf_domain, domain, record.aspf)
        dkim_considered = [
            verdict
            for verdict in dkim_verdicts
            if dmarc.aligned(self._psl, verdict.get("header.d"), domain, record.adkim)
        ]
        partial.spf_aligned = spf_is_aligned and spf_verdict.result == "pass"
        passing = [verdict for verdict in dkim_considered if verdict.result == "pass"]
        partial.dkim_aligned = bool(passing)
        considered = dkim_considered + ([spf_verdict] if spf_is_aligned else [])
        if partial.spf_aligned or passing:
            winners = passing + ([spf_verdict] if partial.spf_aligned else [])
            secure = record_secure and any(verdict.secure for verdict in winners)
            result, reason = "pass", ""
        elif any(verdict.result == "temperror" for verdict in considered):
            secure, result = False, "temperror"
            reason = "an aligned identifier failed for DNS reasons"
        else:
            secure = record_secure and all(
                verdict.secure for verdict in (spf_verdict, *dkim_verdicts)
            )
            result, reason = "fail", "no aligned SPF or DKIM pass"
        policy = record.policy
        if result == "fail" and not dmarc.sampled(record.pct):
            policy = dmarc.downgrade(policy)
        partial.dmarc_policy = policy
        partial.dmarc = Verdict("dmarc", result, secure, (prop, ("policy.dmarc", policy)), reason)
        return partial

    def header(self, verdicts: Verdicts) -> bytes:
        """One folded, CRLF-terminated ``Authentication-Results`` field with our authserv-id."""
        shown = [verdicts.spf]
        if not verdicts.mail_from_null:
            shown.append(verdicts.helo)
        if verdicts.dkim:
            shown.extend(verdicts.dkim)
        else:
            shown.append(Verdict("dkim", "none", False, ()))
        if verdicts.arc.result != "none":  # arc=none only adds noise for unsealed mail
            shown.append(verdicts.arc)
        shown.append(verdicts.dmarc)
        lines = [f"Authentication-Results: {self.authserv_id};"]
        clauses = [_fold(str(_result(verdict))) for verdict in shown]
        for position, clause in enumerate(clauses):
            lines.append("\t" + clause + (";" if position < len(clauses) - 1 else ""))
        return ("\r\n".join(lines) + "\r\n").encode("ascii", "replace")


@dataclass
class _Partial:
    """Builds a :class:`Verdicts`; ``| {"spf": ..., "helo": ...}`` completes it."""

    mail_from_null: bool
    dkim: tuple[Verdict, ...]
    dmarc: Verdict = Verdict("dmarc", "none", False, ())
    dmarc_policy: str | None = None
    from_domain: str | None = None
    spf_aligned: bool = False
    dkim_aligned: bool = False

    def __or__(self, verdicts: dict[str, Verdict]) -> Verdicts:
        return Verdicts(
            spf=verdicts["spf"],
            helo=verdicts["helo"],
            **{field.name: getattr(self, field.name) for field in dataclasses.fields(self)},
        )


class _KeyLookup:
    """dkimpy's ``dnsfunc`` through our resolver, recording each answer's DNSSEC status.

    A lookup that fails temporarily raises :class:`TemporaryDNSError` (not a dkimpy
    exception, so it reaches us instead of turning into "no key"); none, or several TXT
    records (RFC 6376 §3.6.2.2), is no usable key.
    """

    def __init__(self, resolver: Resolver) -> None:
        self._resolver = resolver
        self.answers: list[Answer] = []
        self.missing: list[bool] = []

    def __call__(self, name: bytes, timeout: int = 5) -> bytes | None:
        record = self._resolver.dkim_txt(name, timeout, seen=self.answers)
        if record is None:
            self.missing.append(True)
        return record


_ARC_FIELD = re.compile(
    rb"(?:^|\n)arc-(?:seal|message-signature|authentication-results)[ \t]*:", re.IGNORECASE
)


def _oldest_pass(results: list[dict[str, object]]) -> int:
    """RFC 8617 §5.2 step 5: 0 when every AMS validates, else the oldest instance from which on
    all newer ones do (``results`` run newest first)."""
    oldest = 0
    for result in results:
        if not result.get("ams-valid"):
            return oldest
        instance = result.get("instance")
        oldest = instance if isinstance(instance, int) else 0
    return 0


_TOKEN = re.compile(r"^[A-Za-z0-9!#$%&'*+\-.^_`{|}~]+$")
_ADDRESS = re.compile(r"^[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]+(?:\.[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]+)*$")


def _pvalue(name: str, value: str) -> str | None:
    """``value`` if it is safe as an RFC 8601 pvalue as authres writes it, else a safe part.

    authres leaves values containing ``@`` unquoted, so an address goes out only when its
    local part is a dot-atom; otherwise only its domain does (a domain alone is a valid
    smtp.mailfrom, RFC 8601 §2.7.2). Anything else that is not a token is left out.
    """
    if "@" in value:
        local, _, domain = value.rpartition("@")
        normal = dmarc.normalise_domain(domain)
        if normal is None:
            return None
        return f"{local}@{normal}" if _ADDRESS.match(local) else normal
    return value if _TOKEN.match(value) else None


def _result(verdict: Verdict) -> authres.core.AuthenticationResult:
    properties = []
    for key, value in verdict.properties:
        ptype, _, name = key.partition(".")
        safe = _pvalue(key, value)
        if safe is not None:
            properties.append(authres.core.AuthenticationResultProperty(ptype, name, safe))
    return authres.core.AuthenticationResult(
        verdict.method,
        result=verdict.result,
        reason=verdict.reason or None,
        properties=properties,
    )


def _fold(clause: str, width: int = 76) -> str:
    """Break ``clause`` at spaces outside quoted strings so lines stay near ``width``."""
    words: list[str] = []
    current, quoted, escaped = "", False, False
    for char in clause:
        if char == " " and not quoted:
            words.append(current)
            current = ""
            continue
        current += char
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
    words.append(current)
    lines = [words[0]]
    for word in words[1:]:
        if len(lines[-1]) + 1 + len(word) > width:
            lines.append(word)
        else:
            lines[-1] += " " + word
    return "\r\n\t ".join(lines)


def _clean(text: str, limit: int = 120) -> str:
    """A reason for the header: printable ASCII, bounded."""
    return re.sub(r"[^\x20-\x7e]", "?", text)[:limit]


def _secure(answers: list[Answer] | tuple[Answer, ...]) -> bool:
    return bool(answers) and all(answer.secure for answer in answers)


def _tag(tags: dict[bytes, bytes], tag: str) -> str | None:
    value = tags.get(tag.encode())
    if value is None:
        return None
    text = re.sub(r"\s+", "", value.decode("ascii", "replace"))
    if tag == "b":
        return text[:8]  # RFC 6008: enough of b= to tell signatures apart
    return text.lower() if tag == "d" else text


def _domain_of(address: str) -> str | None:
    return dmarc.normalise_domain(address.rpartition("@")[2]) if "@" in address else None


_FIELD = re.compile(rb"^authentication-results[ \t]*:", re.IGNORECASE)
_LINE_END = re.compile(rb"\r\n|\r|\n")  # where bytes.splitlines ends a line


def strip_forged_results(data: bytes, authserv_id: str) -> bytes:
    """``data`` without the Authentication-Results fields whose authserv-id is ours (RFC 8601 §5).

    Comparison is case-insensitive, after comments and surrounding white space; the body and
    every other field stay byte for byte as they were. Only the header is split into lines:
    ``data`` itself comes back when no field goes, else one copy without those fields.
    """
    wanted = authserv_id.strip().lower()
    header_end = _header_end(data)
    lines = data[:header_end].splitlines(keepends=True)
    kept: list[bytes] = []
    index = 0
    while index < len(lines):
        end = index + 1
        while end < len(lines) and lines[end][:1] in (b" ", b"\t"):
            end += 1
        field = lines[index:end]
        if not (_FIELD.match(lines[index]) and _authserv_id(b"".join(field)) == wanted):
            kept.extend(field)
        index = end
    if len(kept) == len(lines):
        return data
    return b"".join([*kept, memoryview(data)[header_end:]])


def _header_end(data: bytes) -> int:
    """Where the header's lines end: at the empty line (CRLF or LF), else the end of ``data``."""
    start = 0
    for match in _LINE_END.finditer(data):
        if match.start() == start and match.group() != b"\r":
            return start
        start = match.end()
    return len(data)


def _authserv_id(field: bytes) -> str | None:
    """The authserv-id of one raw Authentication-Results field, lower case."""
    value = field.split(b":", 1)[1].decode("utf-8", "replace")
    value = re.sub(r"\r?\n", "", value)
    previous = None
    while previous != value:  # comments may nest (RFC 5322 §3.2.2)
        previous = value
        value = re.sub(r"\((?:[^()\\]|\\.)*\)", " ", value)
    match = re.match(r'\s*(?:"((?:[^"\\]|\\.)*)"|([^\s;]+))', value)
    if match is None:
        return None
    ident = match.group(1) if match.group(1) is not None else match.group(2)
    return ident.strip().lower()
