"""Directory sync against Debian's slapd (tests/support/slapd.py), over StartTLS.

Each test reads its own OU as base DN; people are inetOrgPerson, groups groupOfNames,
and the ppolicy overlay's pwdAccountLockedTime marks a locked (inactive) person.
"""

from __future__ import annotations

import time
from pathlib import Path

import ldap3
import pytest

from gateway import config
from gateway.identity.directorysync import DirectoryChanges, Known, plan_sync
from gateway.identity.ldapdirectory import DirectoryError, LDAPDirectory
from tests.support.certs import make_certificates
from tests.support.slapd import SERVICE_DN, SERVICE_PASSWORD, Slapd


def settings(server: Slapd, tmp_path: Path, base_dn: str, **overrides: str) -> config.Directory:
    password = tmp_path / "directory-password"
    password.write_text(SERVICE_PASSWORD + "\n")
    values = {
        "url": server.url,
        "kind": "openldap",
        "ca_file": str(server.ca),
        "bind_dn": SERVICE_DN,
        "password_file": str(password),
        "base_dn": base_dn,
        "disabled_attribute": "pwdAccountLockedTime",
        **overrides,
    }
    return config.parse({"directory": values}).directory


def read(directory: config.Directory, since: DirectoryChanges | None = None) -> DirectoryChanges:
    """A full read, or the changes since ``since`` with its ids as the known ones."""
    known_ids: set[str] = set()
    if since is not None:
        known_ids = {p.external_id for p in since.people} | {g.external_id for g in since.groups}
    with LDAPDirectory(directory) as reader:
        return reader.read(since.cursor if since else None, known_ids)


def known(changes: DirectoryChanges) -> Known:
    return Known(
        {p.external_id: p for p in changes.people},
        {g.external_id: g for g in changes.groups},
        changes.cursor,
    )


def next_second() -> None:
    """Wait for the clock's next second: modifyTimestamp counts whole seconds, and a read
    asks for the entries of the cursor's second again."""
    start = int(time.time())
    while int(time.time()) == start:
        time.sleep(0.02)


@pytest.fixture
def ou(slapd_server: Slapd) -> str:
    return slapd_server.new_ou()


def test_a_full_read_maps_people_locked_accounts_and_groups(slapd_server, ou, tmp_path):
    alice = slapd_server.add_person(
        ou,
        "alice",
        mail=["Alice@Sealgate.test", "a@sealgate.test"],
        displayName="Alice Example",
        mobile="0031 6 1234 5678",
    )
    bob = slapd_server.add_person(ou, "bob", mail="bob@sealgate.test")
    slapd_server.admin().modify(
        bob, {"pwdAccountLockedTime": [(ldap3.MODIFY_REPLACE, ["000001010000Z"])]}
    )
    slapd_server.add_person(ou, "nomail")
    group = slapd_server.add_group(ou, "finance", [alice, bob.upper()])

    changes = read(settings(slapd_server, tmp_path, ou))

    assert changes.full
    people = {p.user_name: p for p in changes.people}
    assert set(people) == {"alice@sealgate.test", "bob@sealgate.test"}
    assert people["alice@sealgate.test"].external_id == slapd_server.entry_uuid(alice)
    assert people["alice@sealgate.test"].emails == ("alice@sealgate.test", "a@sealgate.test")
    assert people["alice@sealgate.test"].display_name == "Alice Example"
    assert people["alice@sealgate.test"].phone == "+31612345678"
    assert people["alice@sealgate.test"].active
    assert people["bob@sealgate.test"].display_name == "bob"  # the cn
    assert not people["bob@sealgate.test"].active
    (finance,) = changes.groups
    assert finance.external_id == slapd_server.entry_uuid(group)
    assert finance.display_name == "finance"
    assert finance.members == {slapd_server.entry_uuid(alice), slapd_server.entry_uuid(bob)}


def test_without_a_disabled_attribute_everyone_found_is_active(slapd_server, ou, tmp_path):
    bob = slapd_server.add_person(ou, "bob", mail="bob@sealgate.test")
    slapd_server.admin().modify(
        bob, {"pwdAccountLockedTime": [(ldap3.MODIFY_REPLACE, ["000001010000Z"])]}
    )

    changes = read(settings(slapd_server, tmp_path, ou, disabled_attribute=""))

    assert [p.active for p in changes.people] == [True]


def test_an_incremental_read_asks_for_what_modifytimestamp_says_changed(slapd_server, ou, tmp_path):
    alice = slapd_server.add_person(ou, "alice", mail="alice@sealgate.test")
    slapd_server.add_person(ou, "bob", mail="bob@sealgate.test")
    group = slapd_server.add_group(ou, "finance", [alice])
    directory = settings(slapd_server, tmp_path, ou)
    first = read(directory)

    next_second()
    slapd_server.admin().modify(alice, {"displayName": [(ldap3.MODIFY_REPLACE, ["Alice E."])]})
    second = read(directory, first)

    assert not second.full
    assert second.cursor.position > first.cursor.position
    changed = {p.user_name: p.display_name for p in second.people}
    assert changed["alice@sealgate.test"] == "Alice E."
    # What was written in the first cursor's second is read again (whole seconds), and
    # changes nothing: the plan holds alice's change only.
    assert set(changed) <= {"alice@sealgate.test", "bob@sealgate.test"}
    plan = plan_sync(known(first), second, max_disable_share=0.1)
    assert [(u.person.user_name, [c.name for c in u.changes]) for u in plan.update] == [
        ("alice@sealgate.test", ["display_name"])
    ]
    assert plan.create == plan.delete == plan.update_groups == ()
    next_second()
    carol = slapd_server.add_person(ou, "carol", mail="carol@sealgate.test")
    slapd_server.admin().modify(group, {"member": [(ldap3.MODIFY_ADD, [carol])]})
    third = read(directory, second)
    assert "carol@sealgate.test" in {p.user_name for p in third.people}
    assert "bob@sealgate.test" not in {p.user_name for p in third.people}
    assert [g.members for g in third.groups] == [
        {slapd_server.entry_uuid(alice), slapd_server.entry_uuid(carol)}
    ]


def test_a_deleted_person_is_found_by_comparing_the_ids(slapd_server, ou, tmp_path):
    slapd_server.add_person(ou, "alice", mail="alice@sealgate.test")
    bob = slapd_server.add_person(ou, "bob", mail="bob@sealgate.test")
    group = slapd_server.add_group(ou, "finance", [bob])
    bob_id, group_id = slapd_server.entry_uuid(bob), slapd_server.entry_uuid(group)
    directory = settings(slapd_server, tmp_path, ou)
    first = read(directory)

    slapd_server.admin().delete(group)
    slapd_server.admin().delete(bob)
    second = read(directory, first)

    assert second.deleted == {bob_id, group_id}
    plan = plan_sync(known(first), second, max_disable_share=0.5)
    assert [p.user_name for p in plan.delete] == ["bob@sealgate.test"]
    assert [g.display_name for g in plan.delete_groups] == ["finance"]


def test_an_untrusted_certificate_is_refused_after_starttls(slapd_server, ou, tmp_path):
    other_ca = make_certificates(tmp_path / "other").ca
    directory = settings(slapd_server, tmp_path, ou, ca_file=str(other_ca))

    with pytest.raises(DirectoryError) as refused:
        LDAPDirectory(directory).open()

    message = str(refused.value)
    assert message.startswith(f"{slapd_server.url}: the server's certificate is not trusted: ")
    assert message.endswith(f"(CAs: {other_ca})")


def test_a_base_dn_that_does_not_exist_is_named(slapd_server, tmp_path):
    directory = settings(slapd_server, tmp_path, "ou=nowhere,dc=sealgate,dc=test")

    with pytest.raises(DirectoryError, match="base_dn ou=nowhere,dc=sealgate,dc=test does not"):
        read(directory)


def test_kind_ad_against_openldap_is_named_not_guessed(slapd_server, ou, tmp_path):
    directory = settings(slapd_server, tmp_path, ou, kind="ad", disabled_attribute="")

    with pytest.raises(DirectoryError, match="no highestCommittedUSN: is this Active Directory"):
        read(directory)
