"""Directory entries as people and groups: the attribute mapping of directory sync.

Active Directory (MS-ADTS, the user and group classes):

- external id: objectGUID, 16 bytes in the mixed-endian order of a Windows GUID,
  written as the usual UUID text (what ``Get-ADUser`` shows);
- address: mail, lower-cased; further addresses from proxyAddresses, whose
  ``SMTP:`` value is the primary and ``smtp:`` values aliases (X500:, SIP: and
  others are no mail addresses and are skipped);
- display name: displayName, else cn; phone: mobile, kept only in E.164;
- active: userAccountControl without ACCOUNTDISABLE (0x2, MS-ADTS 2.2.16);
- members: the GUIDs that the extended-DN control puts before each member's DN.

OpenLDAP (inetOrgPerson, groupOfNames / groupOfUniqueNames): entryUUID (RFC 4530),
mail (the first value is the address), displayName else cn, mobile, and active
unless ``directory.disabled_attribute`` is present with a value other than
FALSE or 0; members are DNs, turned into entryUUIDs by the caller's index.

A person without mail is left out with a warning: Sealgate knows people by address.
"""

from __future__ import annotations

import re
import uuid

from ldap3.utils.dn import parse_dn

from gateway.identity.directorysync import DirectoryGroup, DirectoryPerson
from gateway.identity.secondfactor import normal_phone

ACCOUNTDISABLE = 0x2
_EXTENDED_GUID = re.compile(r"<GUID=([0-9A-Fa-f-]{36})>")
_NOT_DISABLED = frozenset({"false", "0"})

Attributes = dict[str, list[bytes]]  # attribute names lower-cased


def ad_person(dn: str, attrs: Attributes, warnings: list[str]) -> DirectoryPerson | None:
    guid = _values(attrs, "objectguid")
    if not guid:
        warnings.append(f"{dn}: no objectGUID visible to the service account; left out")
        return None
    proxies = [_text(v) for v in attrs.get("proxyaddresses", [])]
    primary = [p[5:] for p in proxies if p.startswith("SMTP:")]
    aliases = [p[5:] for p in proxies if p.startswith("smtp:")]
    uac = int(first(attrs, "useraccountcontrol") or "0")
    return _person(
        dn,
        str(uuid.UUID(bytes_le=guid[0])),
        [_text(v) for v in attrs.get("mail", [])] + primary + aliases,
        first(attrs, "displayname") or first(attrs, "cn"),
        first(attrs, "mobile"),
        active=not uac & ACCOUNTDISABLE,
        warnings=warnings,
    )


def ad_group(dn: str, attrs: Attributes) -> DirectoryGroup | None:
    guid = _values(attrs, "objectguid")
    if not guid:
        return None
    members = set()
    for value in attrs.get("member", []):
        match = _EXTENDED_GUID.match(_text(value))
        if match:
            members.add(match.group(1).lower())
    name = first(attrs, "displayname") or first(attrs, "cn") or _plain_dn(dn)
    return DirectoryGroup(str(uuid.UUID(bytes_le=guid[0])), name, frozenset(members))


def openldap_person(
    dn: str, attrs: Attributes, disabled_attribute: str, warnings: list[str]
) -> DirectoryPerson | None:
    entry_uuid = first(attrs, "entryuuid")
    if entry_uuid is None:
        warnings.append(f"{dn}: no entryUUID visible to the service account; left out")
        return None
    active = True
    if disabled_attribute:
        flag = first(attrs, disabled_attribute.lower())
        active = flag is None or flag.strip().lower() in _NOT_DISABLED
    return _person(
        dn,
        entry_uuid.lower(),
        [_text(v) for v in attrs.get("mail", [])],
        first(attrs, "displayname") or first(attrs, "cn"),
        first(attrs, "mobile"),
        active=active,
        warnings=warnings,
    )


def openldap_group(dn: str, attrs: Attributes, ids: dict[str, str]) -> DirectoryGroup | None:
    """The group, its member DNs looked up in ``ids`` (normal DN -> entryUUID); DNs not
    in scope are left out."""
    entry_uuid = first(attrs, "entryuuid")
    if entry_uuid is None:
        return None
    member_dns = attrs.get("member", []) + attrs.get("uniquemember", [])
    members = {ids.get(normal_dn(_text(v))) for v in member_dns}
    name = first(attrs, "cn") or dn
    return DirectoryGroup(entry_uuid.lower(), name, frozenset(m for m in members if m))


def normal_dn(dn: str) -> str:
    """A DN to compare: no case, no blanks around separators (member values vs entries)."""
    try:
        parts = parse_dn(dn)
    except Exception:  # noqa: BLE001 - ldap3 raises several kinds for a malformed DN
        return dn.lower()
    return ",".join(f"{attr.lower()}={value.lower()}" for attr, value, _ in parts)


def _person(
    dn: str,
    external_id: str,
    addresses: list[str],
    display_name: str | None,
    mobile: str | None,
    *,
    active: bool,
    warnings: list[str],
) -> DirectoryPerson | None:
    emails = tuple(dict.fromkeys(a.strip().lower() for a in addresses if "@" in a))
    if not emails:
        warnings.append(f"{dn}: no mail address; left out")
        return None
    phone = None
    if mobile:
        phone = normal_phone(mobile.replace("00", "+", 1) if mobile.startswith("00") else mobile)
        if phone is None:
            warnings.append(
                f"{emails[0]}: mobile is not an international number (+31 6 ..., E.164); "
                "no phone for text codes"
            )
    return DirectoryPerson(external_id, emails[0], emails, display_name, phone, active)


def _values(attrs: Attributes, name: str) -> list[bytes]:
    return attrs.get(name) or []


def first(attrs: Attributes, name: str) -> str | None:
    """The first value of attribute ``name`` (lower-case: the reader's keys are) as text."""
    values = attrs.get(name)
    return _text(values[0]) if values else None


def _text(value: bytes) -> str:
    return value.decode("utf-8", errors="replace")


def _plain_dn(dn: str) -> str:
    """The DN without the extended-DN prefix (``<GUID=...>;<SID=...>;``)."""
    return dn.rsplit(">;", 1)[-1]
