"""The directory sync's plan (gateway.identity.directorysync) and the attribute mapping
(gateway.identity.directoryentries), without a directory."""

from __future__ import annotations

import uuid

import pytest

from gateway import config
from gateway.identity.directoryentries import ad_group, ad_person, openldap_person
from gateway.identity.directorysync import (
    Cursor,
    DirectoryChanges,
    DirectoryGroup,
    DirectoryPerson,
    FieldChange,
    Known,
    SyncRefused,
    plan_sync,
)

CURSOR = Cursor("scope", "42")


def person(name: str, **fields: object) -> DirectoryPerson:
    values: dict[str, object] = {
        "external_id": f"id-{name}",
        "user_name": f"{name}@example.org",
        "emails": (f"{name}@example.org",),
        "display_name": name.title(),
        **fields,
    }
    return DirectoryPerson(**values)  # type: ignore[arg-type]


def known(*people: DirectoryPerson, groups: tuple[DirectoryGroup, ...] = ()) -> Known:
    return Known({p.external_id: p for p in people}, {g.external_id: g for g in groups}, CURSOR)


def changes(
    *people: DirectoryPerson,
    groups: tuple[DirectoryGroup, ...] = (),
    deleted: frozenset[str] = frozenset(),
    full: bool = False,
) -> DirectoryChanges:
    return DirectoryChanges(people, groups, deleted, CURSOR, full)


def team(size: int) -> list[DirectoryPerson]:
    return [person(f"p{i}") for i in range(size)]


def test_new_changed_disabled_and_deleted_people_each_get_their_step():
    alice, bob, carol, dave = person("alice"), person("bob"), person("carol"), person("dave")
    before = known(alice, bob, carol, dave, *team(16))
    renamed = person("bob", display_name="Robert", phone="+31612345678")
    disabled = person("carol", active=False, display_name="Carol C.")
    erin = person("erin")

    plan = plan_sync(
        before,
        changes(alice, renamed, disabled, erin, deleted=frozenset({"id-dave", "id-unknown"})),
        max_disable_share=0.1,
    )

    assert plan.create == (erin,)
    assert [(u.person, u.changes) for u in plan.update] == [
        (
            renamed,
            (
                FieldChange("display_name", "Bob", "Robert"),
                FieldChange("phone", None, "+31612345678"),
            ),
        )
    ]
    assert [u.person for u in plan.deactivate] == [disabled]
    assert [c.name for c in plan.deactivate[0].changes] == ["display_name", "active"]
    assert plan.delete == (dave,)
    assert plan.lost == 2
    assert plan.cursor == CURSOR


def test_an_unchanged_read_plans_nothing():
    alice = person("alice")
    plan = plan_sync(known(alice), changes(alice, full=True), max_disable_share=0.1)
    assert plan.empty


def test_reactivating_is_an_update():
    before = known(person("alice", active=False))
    plan = plan_sync(before, changes(person("alice")), max_disable_share=0)
    assert [[c.name for c in u.changes] for u in plan.update] == [["active"]]
    assert plan.deactivate == ()


def test_taking_away_more_than_the_share_of_active_people_is_refused():
    people = team(10)
    gone = frozenset(p.external_id for p in people[:2])

    with pytest.raises(SyncRefused) as refused:
        plan_sync(known(*people), changes(deleted=gone), max_disable_share=0.1)

    assert refused.value.plan.lost == 2
    assert str(refused.value).startswith(
        "this sync would deactivate or delete 2 of 10 active people (20%), more than "
        "directory.max_disable_share allows (10%)"
    )
    assert "--force" in str(refused.value)


def test_the_share_itself_is_allowed_and_force_goes_beyond_it():
    people = team(10)
    one = frozenset({people[0].external_id})
    assert plan_sync(known(*people), changes(deleted=one), max_disable_share=0.1).lost == 1
    half = [person(p.external_id.removeprefix("id-"), active=False) for p in people[:5]]
    plan = plan_sync(known(*people), changes(*half), max_disable_share=0.1, force=True)
    assert len(plan.deactivate) == 5


def test_deactivations_and_deletions_count_together_but_inactive_people_do_not():
    people = team(10)
    asleep = person("asleep", active=False)
    before = known(*people, asleep)
    # One deactivated plus one deleted: 2 of 10 active people.
    mixed = changes(person("p0", active=False), deleted=frozenset({"id-p1"}))
    with pytest.raises(SyncRefused):
        plan_sync(before, mixed, max_disable_share=0.15)
    # Deleting someone already inactive takes nobody away.
    plan = plan_sync(before, changes(deleted=frozenset({"id-asleep"})), max_disable_share=0)
    assert plan.delete == (asleep,) and plan.lost == 0


def test_a_first_sync_into_an_empty_directory_is_never_refused():
    plan = plan_sync(Known(), changes(*team(3), full=True), max_disable_share=0)
    assert len(plan.create) == 3


def test_groups_are_created_renamed_changed_and_deleted_with_people_only():
    alice, bob, carol = person("alice"), person("bob"), person("carol")
    old_sales = DirectoryGroup("g-sales", "Sales team", frozenset({"id-alice", "id-bob"}))
    old_gone = DirectoryGroup("g-gone", "Old", frozenset({"id-alice"}))
    before = known(alice, bob, groups=(old_sales, old_gone))
    sales = DirectoryGroup("g-sales", "Sales", frozenset({"id-alice", "id-carol", "id-bob"}))
    finance = DirectoryGroup("g-finance", "Finance", frozenset({"id-alice", "id-laptop"}))

    plan = plan_sync(
        before,
        changes(carol, groups=(sales, finance), deleted=frozenset({"g-gone", "id-bob"})),
        max_disable_share=0.5,
    )

    assert plan.create_groups == (DirectoryGroup("g-finance", "Finance", frozenset({"id-alice"})),)
    (update,) = plan.update_groups
    assert update.group.members == {"id-alice", "id-carol"}
    assert update.old_name == "Sales team"
    assert update.added == {"id-carol"} and update.removed == {"id-bob"}
    assert plan.delete_groups == (old_gone,)
    assert plan.warnings == (
        'group "Finance": 1 member not among the people synced (nested groups, computers, '
        "or outside the filter or base DN) left out",
    )


def test_a_cursor_survives_its_text_and_nothing_else_passes_for_one():
    cursor = Cursor("0123abcd", "20261207064636Z")
    assert Cursor.parse(cursor.text()) == cursor
    assert Cursor.parse("") is None
    assert Cursor.parse("v0 a b") is None


def test_active_directory_attributes_become_a_person():
    guid = uuid.uuid4()
    warnings: list[str] = []
    found = ad_person(
        "CN=Alice,OU=Staff,DC=example,DC=org",
        {
            "objectguid": [guid.bytes_le],
            "mail": [b"Alice@Example.org"],
            "proxyaddresses": [b"smtp:alias@example.org", b"SMTP:alice@example.org", b"X500:/o=x"],
            "displayname": [b"Alice \xc3\x89xample"],
            "mobile": [b"06 1234 5678"],
            "useraccountcontrol": [b"514"],
        },
        warnings,
    )
    assert found == DirectoryPerson(
        str(guid), "alice@example.org", ("alice@example.org", "alias@example.org"),
        "Alice Éxample", None, active=False,
    )  # fmt: skip
    assert warnings == [
        "alice@example.org: mobile is not an international number (+31 6 ..., E.164); "
        "no phone for text codes"
    ]


def test_a_person_without_mail_is_left_out_with_a_warning():
    warnings: list[str] = []
    attrs = {"objectguid": [uuid.uuid4().bytes_le], "proxyaddresses": [b"X500:/o=x"]}
    assert ad_person("CN=Printer,DC=example,DC=org", attrs, warnings) is None
    assert warnings == ["CN=Printer,DC=example,DC=org: no mail address; left out"]


def test_extended_dn_members_are_read_by_their_guid():
    member = uuid.uuid4()
    value = f"<GUID={member}>;<SID=S-1-5-21-1-2-3-1105>;CN=Alice,DC=example,DC=org".encode()
    group = ad_group(
        "<GUID=x>;CN=Staff,DC=example,DC=org",
        {"objectguid": [uuid.uuid4().bytes_le], "cn": [b"Staff"], "member": [value]},
    )
    assert group is not None and group.members == {str(member)}


@pytest.mark.parametrize(
    ("value", "active"),
    [(None, True), (b"000001010000Z", False), (b"TRUE", False), (b"FALSE", True)],
)
def test_openldaps_disabled_attribute_unless_false(value, active):
    attrs = {"entryuuid": [b"6A3B..."], "mail": [b"a@example.org"]}
    if value is not None:
        attrs["nsaccountlock"] = [value]
    found = openldap_person("uid=a,dc=example,dc=org", attrs, "nsAccountLock", [])
    assert found is not None and found.active is active


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://dc1.example.org", "must be ldaps://HOST[:PORT]"),
        ("ldaps://", "must be ldaps://HOST[:PORT]"),
        ("ldaps://dc1.example.org/DC=example,DC=org", "the base DN goes in directory.base_dn"),
        ("ldap://dc1.example.org:x", "the port is not a number"),
    ],
)
def test_the_directory_url_is_ldaps_or_ldap_with_starttls(url, problem):
    with pytest.raises(config.ConfigError) as refused:
        config.parse({"directory": {"url": url}})
    assert problem in str(refused.value)


def test_a_directory_url_needs_the_account_and_the_base(tmp_path):
    with pytest.raises(config.ConfigError, match="set bind_dn, password_file, base_dn too"):
        config.parse({"directory": {"url": "ldaps://dc1.example.org"}})
    password = tmp_path / "password"
    password.write_text("secret\n")
    complete = {
        "url": "ldaps://dc1.example.org",
        "bind_dn": "CN=svc,DC=example,DC=org",
        "password_file": str(password),
        "base_dn": "DC=example,DC=org",
    }
    directory = config.parse({"directory": complete}).directory
    assert directory.read_password() == "secret"
    assert directory.people_filter == "(&(objectCategory=person)(objectClass=user)(mail=*))"
    with pytest.raises(config.ConfigError, match='disabled_attribute is for kind = "openldap"'):
        config.parse({"directory": {**complete, "disabled_attribute": "nsAccountLock"}})
