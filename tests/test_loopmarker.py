"""The loop marker: what comes back is recognised, what is forged or copied earns nothing."""

from __future__ import annotations

import os
import stat

import pytest

from gateway.mail import message
from gateway.outbound.loopmarker import HEADER, Kind, LoopCheck, LoopMarker, load_or_create_secret
from tests.support.smtpraw import RawSMTP

SECRET = b"0123456789abcdef0123456789abcdef"
BODY = b"From: a@example.org\r\nSubject: hello\r\nMessage-ID: <1@example.org>\r\n\r\nHello\r\n"
SECURE = BODY.replace(b"Subject: hello", b"Subject: [secure] hello")


class Clock:
    def __init__(self, now: float = 1_800_000_000) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def marked(marker: LoopMarker, data: bytes = BODY, kind: Kind = Kind.ORIGINATED) -> bytes:
    return marker.header(data, kind) + data


@pytest.mark.parametrize("kind", list(Kind))
def test_own_marker_verifies_with_its_kind(kind):
    marker = LoopMarker(SECRET, 3600)
    check = marker.check(marked(marker, kind=kind))
    assert check.kind is kind
    assert check.originated == (kind is Kind.ORIGINATED)
    assert check.protected_copy == (kind is Kind.RELAYED_PROTECTED)


@pytest.mark.parametrize("kind", [Kind.RELAYED, Kind.RELAYED_PROTECTED])
def test_kind_is_covered_by_the_mac(kind):
    """Changing k=r to k=o on a relayed copy must not make it count as originated."""
    marker = LoopMarker(SECRET, 3600)
    data = marked(marker, kind=kind)
    promoted = data.replace(f"k={kind.value};".encode(), b"k=o;", 1)
    assert marker.check(promoted).kind is None


def test_trace_fields_prepended_by_mtas_do_not_matter():
    marker = LoopMarker(SECRET, 3600)
    returned = (
        b"Received: from sealgate.test by mx.example.org with ESMTP id ABC;\r\n"
        b"\tSat, 28 Nov 2026 10:00:00 +0000\r\n"
        b"Authentication-Results: mx.example.org; none\r\n" + marked(marker)
    )
    assert marker.check(returned).originated


def test_message_without_marker_is_not_a_loop():
    assert LoopMarker(SECRET, 3600).check(BODY) == LoopCheck(kind=None, hops=0)


def test_marker_from_another_secret_is_forged():
    other = LoopMarker(b"another secret of sixteen bytes+", 3600)
    assert LoopMarker(SECRET, 3600).check(marked(other)).kind is None


@pytest.mark.parametrize(
    "forged",
    [
        f"{HEADER}: v=1; t=1800000000; h=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\r\n",
        f"{HEADER}: garbage\r\n",
        f"{HEADER}: v=2; k=o; t=1800000000; h=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\r\n",
        f"{HEADER}: v=2; k=x; t=1800000000; h=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\r\n",
        f"{HEADER}:\r\n",
    ],
)
def test_forged_markers_do_not_verify(forged):
    marker = LoopMarker(SECRET, 3600, clock=Clock())
    assert marker.check(forged.encode() + BODY).kind is None


def test_real_marker_copied_onto_other_content_does_not_verify():
    marker = LoopMarker(SECRET, 3600)
    header = marker.header(BODY, Kind.ORIGINATED)
    assert marker.check(header + BODY.replace(b"Hello", b"Hallo")).kind is None
    assert marker.check(header + BODY.replace(b"<1@", b"<2@")).kind is None
    assert marker.check(header + b"X-Extra: 1\r\n" + BODY).kind is None


def test_marker_expires():
    clock = Clock()
    marker = LoopMarker(SECRET, 3600, clock=clock)
    data = marked(marker)
    clock.now += 3601
    assert marker.check(data).kind is None
    clock.now -= 7200  # a stamp from the future is no better
    assert marker.check(data).kind is None


def test_resent_message_is_a_new_submission():
    marker = LoopMarker(SECRET, 3600)
    resent = b"Resent-From: c@example.org\r\nResent-To: x@elsewhere.example\r\n" + marked(marker)
    assert marker.check(resent).kind is None


def test_folded_marker_still_verifies():
    marker = LoopMarker(SECRET, 3600)
    header = marker.header(BODY, Kind.ORIGINATED)
    folded = header.replace(b"; h=", b";\r\n\th=")
    assert marker.check(folded + BODY).originated


def test_secret_file_is_created_private_and_reused(tmp_path):
    path = tmp_path / "state" / "loop.key"
    first = load_or_create_secret(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_or_create_secret(path) == first
    assert len(first) >= 32


def test_short_secret_file_is_an_error(tmp_path):
    path = tmp_path / "loop.key"
    path.write_text("short\n")
    with pytest.raises(ValueError, match="at least 16"):
        load_or_create_secret(path)


# -- through the gateway ------------------------------------------------------------


def send(port: int, data: bytes) -> tuple[int, str]:
    with RawSMTP(port) as smtp:
        smtp.command("EHLO upstream.test")
        smtp.command("MAIL FROM:<a@example.org>")
        smtp.command("RCPT TO:<b@example.net>")
        smtp.command("DATA")
        smtp.send(data + b".\r\n")
        return smtp.reply()


def fields_of(data: bytes) -> list[str]:
    return [name for name, _, _ in message.fields(message.header_block(data))]


def test_mail_sealgate_wrote_is_relayed_without_reprocessing_when_it_comes_back(gateway, sink):
    """A notification (originated) routed back is relayed as it is, never sealed again."""
    assert send(gateway.port, SECURE)[0] == 250
    notification = next(m.data for m in sink.messages if b"/m/" in m.data)
    sink.reset()
    # The upstream routes it back to Sealgate, having added its own trace field.
    returned = (
        b"Received: from sealgate.test by upstream.test; Sat, 28 Nov 2026 10:00:00 +0000\r\n"
        + notification
    )
    assert send(gateway.port, returned)[0] == 250
    [second] = [m.data for m in sink.messages]
    assert second.endswith(returned)
    added = second[: len(second) - len(returned)]
    assert fields_of(added) == ["received"], "no second marker, nothing else added"
    assert fields_of(second).count("x-sealgate-loop") == 1


def test_mail_sealgate_only_relayed_is_decided_again_when_it_comes_back(gateway, sink):
    """A relayed copy is marked too, but the marker earns it no pass around the policy."""
    assert send(gateway.port, BODY)[0] == 250
    first = sink.messages[0].data
    assert b"k=r;" in first
    returned = (
        b"Received: from sealgate.test by upstream.test; Sat, 28 Nov 2026 10:00:00 +0000\r\n"
        + first
    )
    assert send(gateway.port, returned)[0] == 250
    second = sink.messages[1].data
    assert second.endswith(returned)
    added = second[: len(second) - len(returned)]
    assert fields_of(added) == ["received", "x-sealgate-loop"], "decided and marked again"


def test_forged_marker_earns_nothing(gateway, sink):
    forged = (
        f"{HEADER}: v=2; k=o; t=1800000000; h=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\r\n".encode()
        + BODY
    )
    assert send(gateway.port, forged)[0] == 250
    data = sink.messages[0].data
    assert data.endswith(forged)
    assert fields_of(data)[:2] == ["received", "x-sealgate-loop"], "processed and marked as new"


def test_real_loop_is_stopped_after_max_hops(make_gateway, sink):
    gateway = make_gateway(loop={"max_hops": 3})
    data = BODY
    for _ in range(3):
        assert send(gateway.port, data)[0] == 250
        data = sink.messages[-1].data
    code, text = send(gateway.port, data)
    assert text == "554 5.4.6 Routing loop detected: message passed Sealgate too often"
    assert len(sink.messages) == 3


@pytest.mark.parametrize(
    "added",
    [b"Subject: card 4111 1111 1111 1111\r\n", b"X-Data: 4111111111111111\r\n"],
)
def test_content_added_above_our_own_mail_makes_it_a_new_submission(added):
    """Review finding: an allowed client prepends fields to a bounce Sealgate sent it and
    sends it anywhere; the marker below must not carry them past the policy."""
    marker = LoopMarker(SECRET, 3600)
    data = marked(marker)
    assert marker.check(b"Received: from mx.example.org\r\n" + added + data).kind is None
    assert marker.check(added + b"Received: from mx.example.org\r\n" + data).kind is None
    trace = b"Delivered-To: b@example.net\r\nARC-Seal: i=1; cv=none\r\n"
    assert marker.check(trace + data).originated, "what MTAs add stays fine"


def test_a_forged_result_of_ours_above_our_own_mail_is_removed(gateway, sink):
    assert send(gateway.port, SECURE)[0] == 250
    notification = next(m.data for m in sink.messages if b"/m/" in m.data)
    sink.reset()
    forged = b"Authentication-Results: sealgate.test; dmarc=pass header.from=evil.example\r\n"
    assert send(gateway.port, forged + notification)[0] == 250
    [again] = sink.messages
    assert b"evil.example" not in again.data
    assert again.data.endswith(notification)
