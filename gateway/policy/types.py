"""The vocabulary the policy engine, its detectors and its text extraction share.

Detection (what is in a message) is kept apart from decision (what a policy
does about it): detectors and the text extraction produce facts, the engine
(gateway.policy.engine) turns facts into one :class:`Decision` per recipient.
Matched values never leave the detectors' callers: reasons carry rule names,
detector names and counts only, so a decision record can be logged and stored.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

Action = Literal["relay", "protect", "hold", "reject"]
ACTIONS: tuple[Action, ...] = ("relay", "protect", "hold", "reject")
# Default precedence when several rules fire: the strictest wins.
PRECEDENCE: dict[str, int] = {"relay": 0, "protect": 1, "hold": 2, "reject": 3}

Where = Literal["subject", "body", "attachment"]


class Detector(Protocol):
    """Finds one kind of sensitive data in text.

    ``find`` returns the normalised value of every hit, in order and with
    repeats (e.g. a BSN as its nine digits), so that the engine can count hits
    and distinct values. The values stay in memory: never log or store them.
    """

    name: str

    def find(self, text: str) -> list[str]: ...


class DetectorConfigError(ValueError):
    """A detector's options in a pack are wrong; ``key`` names the option."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem


# A detector factory takes the options a pack gives (a TOML table) and returns
# a ready detector, or raises DetectorConfigError. Third-party factories are
# found through the ``sealgate.detectors`` entry-point group.
DetectorFactory = Callable[[Mapping[str, Any]], Detector]


@dataclass(frozen=True)
class TextSource:
    """Text a detector may read: the subject, a body (HTML as text) or an attachment's text."""

    where: Where
    text: str = field(repr=False)
    label: str = ""  # "attachment 2", "attachment 2 > member 1": positions, never file names


@dataclass(frozen=True)
class AttachmentFacts:
    """What is known about one attachment, or one member of an archive attachment."""

    label: str  # as in TextSource.label
    filename: str = field(repr=False)  # may itself be confidential: never in reasons or logs
    declared_type: str  # the Content-Type the sender's client declared
    real_type: str  # the type found by content ("application/x-dosexec" for a renamed .exe)
    size: int
    encrypted: bool = False  # password-protected archive or document
    depth: int = 0  # 0 for a message's attachment, 1 for a member of an attached archive, ...


@dataclass(frozen=True)
class Extracted:
    """Everything the detectors and attachment conditions look at, and what was left out.

    ``incomplete`` is empty when every attachment was read in full; otherwise
    each entry says which limit stopped what ("attachment 2: time limit"), and
    rules apply their fallback action rather than silently relaying.
    """

    texts: tuple[TextSource, ...]
    attachments: tuple[AttachmentFacts, ...]
    incomplete: tuple[str, ...] = ()


@dataclass(frozen=True)
class Reason:
    """Why one rule fired for one recipient: names and counts, never matched values."""

    rule: str
    action: Action
    why: str  # "detector bsn: 3 hits, 2 distinct, in attachments"

    def as_dict(self) -> dict[str, str]:
        return {"rule": self.rule, "action": self.action, "why": self.why}


@dataclass(frozen=True)
class Decision:
    """What happens to the message for one recipient, and why."""

    action: Action
    reasons: tuple[Reason, ...] = ()
    text: str | None = None  # for reject and hold: the administrator's words to the sender
    verify: tuple[str, ...] | None = None  # second factors allowed; None: the defaults
    releasable: bool = True  # hold: the sender may release (False: refuse instead)

    def refusal_text(self) -> str:
        """What a rejected or held recipient's bounce tells the sender."""
        rule = next((r.rule for r in self.reasons if r.action == self.action), "policy")
        if self.action == "hold":
            return self.text or f"Held by policy ({rule}): not delivered"
        return self.text or f"Refused by policy ({rule})"

    def as_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "reasons": [reason.as_dict() for reason in self.reasons],
            "text": self.text,
            **({"verify": list(self.verify)} if self.verify is not None else {}),
        }
