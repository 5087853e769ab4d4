"""Directory sync against a real Samba Active Directory domain controller (tests/support/samba.py).

Each test reads its own OU as base DN, written there as the domain's Administrator and
read as the service account ``svc-sealgate``, over LDAPS with the test CA.
"""

from __future__ import annotations

from pathlib import Path

import ldap3
import pytest

from gateway import config
from gateway.identity.directorysync import DirectoryChanges, Known, plan_sync
from gateway.identity.ldapdirectory import DirectoryError, LDAPDirectory
from tests.support.certs import make_certificates
from tests.support.samba import LIMITED_DN, SERVICE_DN, SERVICE_PASSWORD, SambaDC


def settings(dc: SambaDC, tmp_path: Path, base_dn: str, **overrides: str) -> config.Directory:
    password = tmp_path / "directory-password"
    password.write_text(SERVICE_PASSWORD + "\n")
    values = {
        "url": dc.url,
        "kind": "ad",
        "ca_file": str(dc.ca),
        "bind_dn": SERVICE_DN,
        "password_file": str(password),
        "base_dn": base_dn,
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


@pytest.fixture
def ou(samba_dc: SambaDC) -> str:
    return samba_dc.new_ou()


def test_a_full_read_maps_mail_proxy_addresses_display_name_mobile_and_disabled_users(
    samba_dc, ou, tmp_path
):
    alice = samba_dc.add_person(
        ou,
        "alice",
        mail="Alice.Example@Sealgate.TEST",
        displayName="Alice Example",
        mobile="+31 6 1234 5678",
        proxyAddresses=[
            "smtp:a.example@sealgate.test",
            "SMTP:alice.example@sealgate.test",
            "X500:/o=Sealgate/ou=Exchange/cn=alice",
            "sip:alice@sealgate.test",
        ],
    )
    bob = samba_dc.add_person(ou, "bob", mail="bob@sealgate.test", disabled=True, mobile="06-1234")
    samba_dc.add_person(ou, "printer")  # no mail: not matched by the default filter

    changes = read(settings(samba_dc, tmp_path, ou))

    assert changes.full
    people = {p.external_id: p for p in changes.people}
    assert set(people) == {samba_dc.guid(alice), samba_dc.guid(bob)}
    first = people[samba_dc.guid(alice)]
    assert first.user_name == "alice.example@sealgate.test"
    assert first.emails == ("alice.example@sealgate.test", "a.example@sealgate.test")
    assert first.display_name == "Alice Example"
    assert first.phone == "+31612345678"
    assert first.active
    second = people[samba_dc.guid(bob)]
    assert second.display_name == "bob"  # no displayName: the cn
    assert not second.active
    assert second.phone is None
    assert any(
        "bob@sealgate.test: mobile is not an international number" in w for w in changes.warnings
    )


def test_groups_name_their_members_by_objectguid(samba_dc, ou, tmp_path):
    alice = samba_dc.add_person(ou, "alice", mail="alice@sealgate.test")
    bob = samba_dc.add_person(ou, "bob", mail="bob@sealgate.test")
    finance = samba_dc.add_group(ou, "Finance", [alice, bob])
    samba_dc.add_group(ou, "Everyone", [finance, alice])  # a nested group is a member too

    changes = read(settings(samba_dc, tmp_path, ou))

    groups = {g.display_name: g for g in changes.groups}
    assert groups["Finance"].external_id == samba_dc.guid(finance)
    assert groups["Finance"].members == {samba_dc.guid(alice), samba_dc.guid(bob)}
    assert groups["Everyone"].members == {samba_dc.guid(finance), samba_dc.guid(alice)}
    plan = plan_sync(Known(), changes, max_disable_share=0.1)
    everyone = next(g for g in plan.create_groups if g.display_name == "Everyone")
    assert everyone.members == {samba_dc.guid(alice)}  # Sealgate's groups hold people
    assert any('group "Everyone": 1 member not among the people' in w for w in plan.warnings)


def test_an_incremental_read_after_a_change_returns_only_that_change(samba_dc, ou, tmp_path):
    alice = samba_dc.add_person(ou, "alice", mail="alice@sealgate.test", displayName="Alice")
    samba_dc.add_person(ou, "bob", mail="bob@sealgate.test")
    group = samba_dc.add_group(ou, "Finance", [alice])
    directory = settings(samba_dc, tmp_path, ou)
    first = read(directory)

    assert read(directory, first).people == ()  # nothing changed since
    samba_dc.admin().modify(alice, {"displayName": [(ldap3.MODIFY_REPLACE, ["Alice Example"])]})
    second = read(directory, first)

    assert not second.full
    assert [p.display_name for p in second.people] == ["Alice Example"]
    assert second.groups == ()
    assert second.deleted == frozenset()
    assert int(second.cursor.position) > int(first.cursor.position)
    plan = plan_sync(known(first), second, max_disable_share=0.1)
    assert [(u.person.user_name, [c.name for c in u.changes]) for u in plan.update] == [
        ("alice@sealgate.test", ["display_name"])
    ]
    # A membership changes the group, not the person.
    bob = samba_dc.add_person(ou, "carol", mail="carol@sealgate.test")
    samba_dc.admin().modify(group, {"member": [(ldap3.MODIFY_ADD, [bob])]})
    third = read(directory, second)
    assert [g.members for g in third.groups] == [{samba_dc.guid(alice), samba_dc.guid(bob)}]


def test_a_deleted_user_is_reported_deleted_from_the_deleted_objects_container(
    samba_dc, ou, tmp_path
):
    samba_dc.add_person(ou, "alice", mail="alice@sealgate.test")
    bob = samba_dc.add_person(ou, "bob", mail="bob@sealgate.test")
    bob_id = samba_dc.guid(bob)
    directory = settings(samba_dc, tmp_path, ou)
    first = read(directory)

    samba_dc.admin().delete(bob)
    second = read(directory, first)

    assert bob_id in second.deleted
    assert not second.full
    assert second.warnings == ()
    plan = plan_sync(known(first), second, max_disable_share=0.5)
    assert [p.user_name for p in plan.delete] == ["bob@sealgate.test"]


def test_a_user_disabled_in_the_directory_is_deactivated(samba_dc, ou, tmp_path):
    alice = samba_dc.add_person(ou, "alice", mail="alice@sealgate.test")
    samba_dc.add_person(ou, "bob", mail="bob@sealgate.test")
    directory = settings(samba_dc, tmp_path, ou)
    first = read(directory)

    samba_dc.admin().modify(alice, {"userAccountControl": [(ldap3.MODIFY_REPLACE, ["546"])]})
    second = read(directory, first)

    assert [(p.user_name, p.active) for p in second.people] == [("alice@sealgate.test", False)]
    plan = plan_sync(known(first), second, max_disable_share=0.5)
    assert [u.person.user_name for u in plan.deactivate] == ["alice@sealgate.test"]
    assert plan.update == ()


def test_a_service_account_that_cannot_read_deleted_objects_is_told_so(samba_dc, ou, tmp_path):
    bob = samba_dc.add_person(ou, "bob", mail="bob@sealgate.test")
    directory = settings(samba_dc, tmp_path, ou, bind_dn=LIMITED_DN)
    first = read(directory)

    samba_dc.admin().delete(bob)
    second = read(directory, first)

    assert second.deleted == frozenset()
    assert any(
        "cannot read CN=Deleted Objects" in w and "List Contents and Read Property" in w
        for w in second.warnings
    )
    # The full comparison still finds the deletion.
    with LDAPDirectory(directory) as reader:
        full = reader.read(second.cursor, {p.external_id for p in first.people}, full=True)
    assert full.deleted == {p.external_id for p in first.people}


def test_a_cursor_of_other_filters_reads_everything_again(samba_dc, ou, tmp_path):
    samba_dc.add_person(ou, "alice", mail="alice@sealgate.test")
    first = read(settings(samba_dc, tmp_path, ou))
    narrower = settings(samba_dc, tmp_path, ou, user_filter="(&(objectClass=user)(cn=alice))")

    again = read(narrower, first)

    assert again.full
    assert [p.user_name for p in again.people] == ["alice@sealgate.test"]


def test_an_untrusted_certificate_is_refused_with_the_server_and_the_reason(samba_dc, ou, tmp_path):
    other_ca = make_certificates(tmp_path / "other").ca
    directory = settings(samba_dc, tmp_path, ou, ca_file=str(other_ca))

    with pytest.raises(DirectoryError) as refused, LDAPDirectory(directory):
        pass

    message = str(refused.value)
    assert message.startswith(f"{samba_dc.url}: the server's certificate is not trusted: ")
    assert "unable to get local issuer certificate" in message
    assert str(other_ca) in message


def test_a_wrong_password_names_the_service_account(samba_dc, ou, tmp_path):
    directory = settings(samba_dc, tmp_path, ou)
    assert directory.password_file is not None
    directory.password_file.write_text("not the password\n")

    with pytest.raises(DirectoryError, match="the service account CN=svc-sealgate,.* was refused"):
        LDAPDirectory(directory).open()


def test_kind_openldap_against_active_directory_is_named_not_guessed(samba_dc, ou, tmp_path):
    samba_dc.add_person(ou, "alice", mail="alice@sealgate.test")
    directory = settings(samba_dc, tmp_path, ou, kind="openldap", user_filter="(mail=*)")

    with pytest.raises(DirectoryError, match="has no entryUUID: is this OpenLDAP"):
        read(directory)
