"""The policy engine and the shipped packs: per-recipient decisions with their reasons."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.policy import conditions
from gateway.policy.engine import Policy
from gateway.policy.facts import Lookups, gather
from gateway.policy.packs import PolicyError
from gateway.policy.types import Extracted, TextSource
from gateway.store import FileBlobStore, Store
from gateway.store.threads import Threads
from tests.support.gateway import POLICIES

BASELINE = POLICIES / "baseline.toml"
HEALTH = POLICIES / "nl-healthcare.toml"
FINANCE = POLICIES / "finance.toml"


class Texts:
    """Stands in for the text extraction where a test gives the texts itself."""

    def __init__(self, *texts: TextSource, incomplete: tuple[str, ...] = ()) -> None:
        self.result = Extracted(texts, (), incomplete)

    def extract(self, raw: bytes) -> Extracted:
        return self.result


def message(subject: str = "Hello", headers: str = "") -> bytes:
    return (
        f"From: Alice <alice@example.org>\r\nTo: bob@example.net\r\nSubject: {subject}\r\n"
        f"{headers}\r\nbody\r\n"
    ).encode()


def decide(packs, raw, recipients, extractor=None, sender="alice@example.org"):
    policy = Policy.load(packs)
    return policy.decide(gather(raw, sender, extractor), recipients)


def pack(tmp_path: Path, text: str, name: str = "pack.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_subject_tag_protects_outsiders_and_colleagues_get_it_as_is():
    decisions = decide(
        [BASELINE], message("[Secure] figures"), ["bob@example.net", "carol@example.org"]
    )
    assert decisions["bob@example.net"].action == "protect"
    assert decisions["bob@example.net"].reasons[0].why == "subject tag [secure]"
    assert decisions["carol@example.org"].action == "relay"
    assert [r.rule for r in decisions["carol@example.org"].reasons] == [
        "subject-tag",
        "internal-recipients",
    ]


@pytest.mark.parametrize(
    "headers",
    [
        "X-Sealgate-Protect: yes\r\n",
        "Sensitivity: Company-Confidential\r\n",
        "msip_labels: MSIP_Label_a1b2c3d4-0000-4000-8000-000000000001_Enabled=true; "
        "MSIP_Label_a1b2c3d4-0000-4000-8000-000000000001_Name=Confidential\r\n",
    ],
)
def test_baseline_explicit_triggers(headers):
    (decision,) = decide([BASELINE], message(headers=headers), ["bob@example.net"]).values()
    assert decision.action == "protect"


def test_a_disabled_label_does_not_count():
    headers = (
        "msip_labels: MSIP_Label_a1b2c3d4-0000-4000-8000-000000000001_Enabled=false; "
        "MSIP_Label_a1b2c3d4-0000-4000-8000-000000000001_Name=Confidential\r\n"
    )
    (decision,) = decide([BASELINE], message(headers=headers), ["bob@example.net"]).values()
    assert decision.action == "relay"


def test_nothing_fires_means_relay():
    (decision,) = decide([BASELINE], message(), ["bob@example.net"]).values()
    assert decision.action == "relay" and decision.reasons == ()


def test_a_bsn_in_an_attachment_protects_and_the_reason_has_counts_not_values():
    texts = Texts(TextSource("attachment", "Patient BSN 111222333 and 123456782", "attachment 1"))
    (decision,) = decide([BASELINE, HEALTH], message(), ["bob@example.net"], texts).values()
    assert decision.action == "protect"
    (reason,) = [r for r in decision.reasons if r.rule == "bsn"]
    assert reason.why == "detector bsn: 2 hits, 2 distinct, in attachment"
    assert "111222333" not in str(decision.as_dict())


def test_content_not_read_in_full_falls_back_to_protect():
    texts = Texts(incomplete=("attachment 1: time limit",))
    (decision,) = decide([BASELINE, HEALTH], message(), ["bob@example.net"], texts).values()
    assert decision.action == "protect"
    assert all("time limit" in r.why for r in decision.reasons)


def test_many_cards_are_rejected_with_the_administrators_text():
    cards = " ".join(
        [
            "4111111111111111", "5555555555554444", "378282246310005", "6011111111111117",
            "3530111333300000", "4012888888881881", "5105105105105100", "371449635398431",
            "6011000990139424", "3566002020360505",
        ]
    )  # fmt: skip
    texts = Texts(TextSource("body", cards))
    (decision,) = decide([BASELINE, FINANCE], message(), ["bob@example.net"], texts).values()
    assert decision.action == "reject"
    assert decision.text.startswith("This message contains a list of payment card numbers")


def test_override_wins_over_stricter_actions(tmp_path):
    rules = pack(
        tmp_path,
        """
[[rules]]
name = "no-cards"
action = "reject"
when.subject_tag = "[cards]"

[[rules]]
name = "auditors"
action = "relay"
override = true
when.recipient = ["*@audit.example.com"]
""",
    )
    decisions = decide([rules], message("[cards]"), ["x@audit.example.com", "y@example.net"])
    assert decisions["x@audit.example.com"].action == "relay"
    assert decisions["y@example.net"].action == "reject"


def test_later_packs_replace_and_disable_rules(tmp_path):
    domain = pack(
        tmp_path,
        f"""
[pack]
include = ["{BASELINE}"]
disable = ["sensitivity-header"]

[[rules]]
name = "subject-tag"
description = "Only our own tag"
action = "protect"
when.subject_tag = ["[prive]"]
""",
    )
    policy = Policy.load([domain])
    names = [rule.spec.name for rule in policy.rules]
    assert "sensitivity-header" not in names
    assert policy.subject_tags == ["[prive]"]
    assert decide([domain], message("[secure] x"), ["b@example.net"])["b@example.net"].action == (
        "relay"
    )


def test_pack_scope_limits_rules_to_a_sender_group(tmp_path):
    scoped = pack(
        tmp_path,
        """
[pack]
scope = { groups = ["finance"] }

[groups]
finance = ["*@finance.example.org"]

[[rules]]
name = "finance-all"
action = "protect"
""",
    )
    raw = message()
    assert (
        decide([scoped], raw, ["b@example.net"], sender="x@finance.example.org")[
            "b@example.net"
        ].action
        == "protect"
    )
    assert (
        decide([scoped], raw, ["b@example.net"], sender="x@example.org")["b@example.net"].action
        == "relay"
    )


def test_problems_name_file_rule_and_key(tmp_path):
    broken = pack(
        tmp_path,
        """
[detectors.ids]
type = "regex"
pattern = "(a)\\\\1"

[[rules]]
name = "typo"
action = "protect"
when.detectr = "bsn"

[[rules]]
name = "unknown-detector"
action = "protect"
when.detector = { name = "passport", min_count = 0 }

[[rules]]
name = "bad-list"
action = "relay"
when.recipient_domain = { list = "nope" }
""",
    )
    with pytest.raises(PolicyError) as error:
        Policy.load([broken])
    text = "\n".join(error.value.problems)
    assert f"{broken}: detectors.ids.pattern:" in text
    assert f"{broken}: rules[0] (typo): when.detectr: unknown condition" in text
    assert (
        f"{broken}: rules[1] (unknown-detector): when.detector.name: unknown detector 'passport'"
        in text
    )
    assert (
        f"{broken}: rules[2] (bad-list): when.recipient_domain.list: no list named 'nope'" in text
    )


def test_an_include_loop_is_reported(tmp_path):
    first = tmp_path / "a.toml"
    pack(tmp_path, '[pack]\ninclude = ["b.toml"]\n', "b.toml").write_text(
        '[pack]\ninclude = ["a.toml"]\n'
    )
    first.write_text('[pack]\ninclude = ["b.toml"]\n')
    with pytest.raises(PolicyError, match="includes itself"):
        Policy.load([first])


def test_every_shipped_pack_loads():
    policy = Policy.load([BASELINE, HEALTH, FINANCE])
    assert len(policy.rules) >= 10
    assert policy.strip_headers == ["X-Sealgate-Protect"]


def test_other_services_plug_in_conditions_without_changing_the_engine(tmp_path, monkeypatch):
    """Mail authentication adds its verdicts as facts and a condition that reads them."""
    monkeypatch.setattr(conditions, "FACTORIES", dict(conditions.FACTORIES))

    class DmarcFails(conditions.Condition):
        def check(self, ctx, recipient):
            failed = ctx.facts.extra.get("dmarc") == "fail"
            return conditions.Outcome(failed, ("DMARC failed",) if failed else ())

    conditions.register("test_dmarc_fails", lambda value, env, path: DmarcFails())
    rules = pack(
        tmp_path,
        '[[rules]]\nname = "spoofed"\naction = "reject"\nwhen.test_dmarc_fails = true\n',
    )
    policy = Policy.load([rules])
    facts = gather(message(), "alice@example.org", None)
    assert policy.decide(facts, ["b@x.net"])["b@x.net"].action == "relay"
    failing = type(facts)(facts.sender, facts.headers, facts.subject, facts.extracted,
                          {"dmarc": "fail"})  # fmt: skip
    decision = policy.decide(failing, ["b@x.net"])["b@x.net"]
    assert decision.action == "reject" and decision.reasons[0].why == "DMARC failed"


def test_a_single_subject_tag_string_is_one_tag_and_nested_tags_count(tmp_path):
    """Regression: `subject_tag = "[secure]"` stripped every letter of the word from the subject."""
    rules = pack(
        tmp_path,
        '[[rules]]\nname = "tag"\naction = "protect"\nwhen.subject_tag = "[secure]"\n\n'
        '[[rules]]\nname = "nested"\naction = "protect"\n'
        'when.any = [{ subject_tag = ["[prive]"] }, { header = { name = "X-A" } }]\n',
    )
    assert Policy.load([rules]).subject_tags == ["[secure]", "[prive]"]


@pytest.mark.parametrize("text", ["two\\nlines", "", "x" * 401])
def test_a_rule_text_must_be_one_printable_line(tmp_path, text):
    """Regression: a newline in a rule's text broke the SMTP reply."""
    rules = pack(tmp_path, f'[[rules]]\nname = "r"\naction = "reject"\ntext = "{text}"\n')
    with pytest.raises(PolicyError, match=r"rules\[0\] \(r\): text: must be one line"):
        Policy.load([rules])


def test_a_scoped_pack_cannot_replace_what_applies_to_everyone(tmp_path):
    """Regression: a finance-only pack redefining `iban` removed the rule for all others."""
    scoped = pack(
        tmp_path,
        '[pack]\nscope = { senders = ["*@finance.example.org"] }\ndisable = ["bsn"]\n\n'
        '[lists]\ninternal = ["finance.example.org"]\n\n'
        '[[rules]]\nname = "iban"\naction = "reject"\nwhen.detector = "iban"\n',
        "finance.toml",
    )
    with pytest.raises(PolicyError) as error:
        Policy.load([BASELINE, HEALTH, scoped])
    problems = "\n".join(error.value.problems)
    for key in ("pack.disable: bsn", "rules: iban", "lists.internal"):
        assert f"{scoped}: {key}: a pack with pack.scope cannot replace" in problems


def test_a_pack_included_twice_is_loaded_once(tmp_path):
    """Regression: the second include reset what the organisation pack had changed."""
    org = pack(
        tmp_path,
        f'[pack]\ninclude = ["{BASELINE}"]\ndisable = ["sensitivity-header"]\n\n'
        '[lists]\ninternal = ["corp.example"]\n',
        "org.toml",
    )
    department = pack(tmp_path, f'[pack]\ninclude = ["{BASELINE}"]\n', "dept.toml")
    policy = Policy.load([org, department])
    assert "sensitivity-header" not in [rule.spec.name for rule in policy.rules]
    decisions = policy.decide(gather(message(), "a@corp.example", None), ["c@corp.example"])
    assert decisions["c@corp.example"].reasons[0].rule == "internal-recipients"


def test_a_missing_include_names_the_including_file(tmp_path):
    broken = pack(tmp_path, '[pack]\ninclude = ["nope.toml"]\n')
    with pytest.raises(PolicyError, match=r"pack.include\[0\]: no such file"):
        Policy.load([broken])


def test_internationalised_domains_match_in_either_form(tmp_path):
    rules = pack(
        tmp_path,
        '[[rules]]\nname = "books"\naction = "reject"\ntext = "No."\n'
        'when.recipient_domain = ["bücher.example"]\n',
    )
    policy = Policy.load([rules])
    facts = gather(message(), "a@example.org", None)
    for address in ("x@bücher.example", "x@xn--bcher-kva.example", "x@BÜCHER.example"):
        assert policy.decide(facts, [address])[address].action == "reject"


def test_verdict_conditions_refuse_unknown_results(tmp_path):
    rules = pack(tmp_path, '[[rules]]\nname = "a"\naction = "protect"\nwhen.arc = ["passed"]\n')
    with pytest.raises(PolicyError, match=r"when.arc: unknown result 'passed'"):
        Policy.load([rules])


class CountingThreads(Threads):
    """The store's real thread lookup, counting how often the policy asks it."""

    asked = 0

    def in_protected_thread(self, message_ids: list[str]) -> bool:
        self.asked += 1
        return super().in_protected_thread(message_ids)


@pytest.mark.parametrize(
    ("answered", "action"), [("<old@example.org>", "protect"), ("<other@example.org>", "relay")]
)
def test_protected_thread_asks_the_store_once_per_message(store, answered, action):
    threads = CountingThreads(store)
    threads.add_thread(["<old@example.org>"], "0" * 32, datetime.now(UTC))
    policy = Policy.load([POLICIES / "baseline.toml"])
    raw = message(headers=f"In-Reply-To: {answered}\r\n")
    facts = gather(raw, "alice@example.org", None, lookups=Lookups(threads=threads))
    decisions = policy.decide(facts, ["bob@example.net", "carol@example.com"])
    assert {d.action for d in decisions.values()} == {action}
    assert threads.asked == 1  # once per message, not per recipient


def test_protected_thread_falls_back_to_protect_when_the_store_is_down(tmp_path):
    down = Store(f"sqlite:///{tmp_path / 'missing' / 'sealgate.db'}", FileBlobStore(tmp_path))
    policy = Policy.load([POLICIES / "baseline.toml"])
    raw = message(headers="References: <old@example.org>\r\n")
    facts = gather(raw, "alice@example.org", None, lookups=Lookups(threads=Threads(down)))
    decision = policy.decide(facts, ["bob@example.net"])["bob@example.net"]
    assert decision.action == "protect"
    assert "fallback" in decision.reasons[0].why


def test_protected_thread_is_not_asked_without_references(store):
    threads = CountingThreads(store)
    policy = Policy.load([POLICIES / "baseline.toml"])
    facts = gather(message(), "alice@example.org", None, lookups=Lookups(threads=threads))
    assert policy.decide(facts, ["bob@example.net"])["bob@example.net"].action == "relay"
    assert threads.asked == 0


def test_a_returning_relayed_copy_of_protected_mail_is_a_protected_thread():
    """The marker said it was a copy of mail protected for others: a new outsider gets it
    sealed even though what triggered the protection (a stripped header) is gone."""
    policy = Policy.load([POLICIES / "baseline.toml"])
    facts = gather(message(), "alice@example.org", None, protected_copy=True)
    decisions = policy.decide(facts, ["outsider@example.net", "colleague@example.org"])
    assert decisions["outsider@example.net"].action == "protect"
    assert decisions["colleague@example.org"].action == "relay"
