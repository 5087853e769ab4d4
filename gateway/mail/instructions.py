"""Header fields in which a sender instructs Sealgate, and what they ask for.

A sender (or the mail client's add-in) may add these to a message:

- ``X-Sealgate-Access-Code`` and ``X-Sealgate-Phone``: second factors for the
  recipients (read in gateway.identity.secondfactor);
- ``X-Sealgate-Expires``: how long a protected message stays readable, as a
  number of days (``14``, ``14d``), hours (``48h``) or a date (``2027-01-15``,
  ISO 8601, or RFC 5322 ``Fri, 15 Jan 2027 17:00:00 +0100``), kept within the
  limits the administrator sets (:func:`expiry`);
- ``X-Sealgate-Note``: a short personal note shown in the notification
  (read with the other facts a notification may use, gateway.notify.original;
  the notifier bounds it and takes links out).

They are meant for Sealgate alone: every one of :data:`FIELDS` is removed
from everything that leaves (relayed copies, what is sealed, bounces), by the
pipeline through gateway.mail.outgoing. A value that cannot be used never
fails the message: it is ignored or clamped, and the reason recorded.
"""

from __future__ import annotations

import email.utils
import re
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Literal

from gateway.mail import message

ACCESS_CODE_FIELD = "X-Sealgate-Access-Code"
PHONE_FIELD = "X-Sealgate-Phone"
EXPIRES_FIELD = "X-Sealgate-Expires"
NOTE_FIELD = "X-Sealgate-Note"
FIELDS = (ACCESS_CODE_FIELD, PHONE_FIELD, EXPIRES_FIELD, NOTE_FIELD)
"""The fields Sealgate itself reads; policy packs list their own (``strip_headers``:
X-Sealgate-Protect). None of them leaves."""

_SPAN = re.compile(r"(\d{1,5})\s*(d|days?|h|hours?)?", re.IGNORECASE)
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_ISO_MOMENT = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d")

Adjusted = Literal["", "longer", "shorter", "unknown"]


@dataclass(frozen=True)
class Retention:
    """How long envelopes stay readable: the administrator's default, and the shortest
    and longest time a sender may ask for (``envelope.*_days``)."""

    default: timedelta
    shortest: timedelta
    longest: timedelta


@dataclass(frozen=True)
class Expiry:
    """How long one envelope stays readable, and what became of the sender's request."""

    retention: timedelta
    adjusted: Adjusted = ""  # the sender asked for too long, too short, or nothing readable
    detail: str = ""  # for the audit trail; empty when the sender asked for nothing

    @property
    def limit_days(self) -> int:
        """The limit a clamped request was held to, in whole days (for the receipt)."""
        return self.retention.days


def expiry(data: bytes, now: datetime, retention: Retention) -> Expiry:
    """The envelope's retention: the sender's ``X-Sealgate-Expires`` within the limits,
    else the default. Never fails, whatever the field holds."""
    value = message.first_value(data, EXPIRES_FIELD)
    if value is None:
        return Expiry(retention.default)
    asked = requested(value, now)
    if asked is None:
        days = _days(retention.default)
        return Expiry(
            retention.default,
            "unknown",
            f"{EXPIRES_FIELD} not understood (expected days, hours or a date): ignored, "
            f"envelope.retention_days ({days}) applied",
        )
    wanted, shown = asked
    if wanted > retention.longest:
        applied = _days(retention.longest)
        why = f"longer than envelope.max_expiry_days, {applied} applied"
        return Expiry(retention.longest, "longer", f"{EXPIRES_FIELD} {shown}: {why}")
    if wanted < retention.shortest:
        applied = _days(retention.shortest)
        past = "in the past, " if wanted <= timedelta(0) else ""
        why = f"{past}shorter than envelope.min_expiry_days, {applied} applied"
        return Expiry(retention.shortest, "shorter", f"{EXPIRES_FIELD} {shown}: {why}")
    return Expiry(wanted, "", f"{EXPIRES_FIELD} {shown}: applied")


def requested(value: str, now: datetime) -> tuple[timedelta, str] | None:
    """What ``value`` asks for, from ``now``, and how the audit trail shows it; None when
    it is neither a number of days or hours nor a date.

    A date alone means the end of that day (23:59 UTC, as a day chosen on the sender's
    page); a moment without a zone is UTC.
    """
    value = value.strip()
    span = _SPAN.fullmatch(value)
    if span is not None:
        count, unit = int(span.group(1)), (span.group(2) or "d")[0].lower()
        if unit == "h":
            return timedelta(hours=count), f"{count} hour{'s' * (count != 1)}"
        return timedelta(days=count), f"{count} day{'s' * (count != 1)}"
    moment = _moment(value)
    if moment is None:
        return None
    return moment - now, moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _moment(value: str) -> datetime | None:
    """A date (the end of that day), an ISO 8601 moment or an RFC 5322 date, in UTC."""
    try:
        if _DATE.fullmatch(value):
            day = datetime.fromisoformat(value).date()
            return datetime.combine(day, time(23, 59), UTC)
        if _ISO_MOMENT.match(value):
            moment = datetime.fromisoformat(value.replace(" ", "T", 1))
        else:
            moment = email.utils.parsedate_to_datetime(value)
    except (ValueError, TypeError, OverflowError, IndexError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except (ValueError, OverflowError):
        return None


def _days(span: timedelta) -> str:
    days = span.days
    return f"{days} day{'s' * (days != 1)}"
