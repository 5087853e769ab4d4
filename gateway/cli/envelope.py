"""``sealgate envelope | revoke | expire | account``: sealed envelopes from the command line.

Listing and showing print metadata only; the server holds nothing more.
Opening needs what a reader holds (the notification link, or an account's
password) and writes the decrypted message to a directory. Revoking and
expiring crypto-shred: the wrapped keys and encrypted private keys are
deleted in one commit, then the blobs.

The gateway's modules are imported inside the functions that use them
(gateway/cli/__init__.py says why).
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from gateway.cli.common import CONFIG_OPTION, load_or_exit

if TYPE_CHECKING:
    from gateway.store import EnvelopeRecord, Store


def _store(config_path: Path) -> Store:
    from gateway import config
    from gateway.store import open_store

    cfg = load_or_exit(config_path)
    try:
        return open_store(cfg.store)
    except config.ConfigError as error:
        for problem in error.problems:
            click.echo(f"{config_path}: {problem}", err=True)
        sys.exit(2)


def _fail(message: str) -> None:
    click.echo(f"sealgate: {message}", err=True)
    sys.exit(1)


@click.group()
def envelope() -> None:
    """List, show and open sealed envelopes."""


@envelope.command("list")
@CONFIG_OPTION
@click.option("--state", type=click.Choice(["sealed", "delivered", "revoked", "expired",
                                             "superseded"]), help="Only this state.")  # fmt: skip
@click.option("--limit", type=click.IntRange(1, 100_000), default=100, show_default=True)
def list_envelopes(config_path: Path, state: str | None, limit: int) -> None:
    """Envelopes, newest first: id, state, created, expires, sender, size."""
    store = _store(config_path)
    try:
        for record in store.list(limit=limit, state=state):
            click.echo(
                f"{record.envelope_id}  {record.state:<10}  {record.created_at:%Y-%m-%d %H:%M}"
                f"  {record.expires_at:%Y-%m-%d}  <{record.sender}>  {record.original_size} bytes"
            )
    finally:
        store.close()


@envelope.command("show")
@CONFIG_OPTION
@click.argument("envelope_id")
def show(config_path: Path, envelope_id: str) -> None:
    """Metadata of one envelope: parts, readers and its audit trail."""
    store = _store(config_path)
    try:
        record = store.get(envelope_id)
        if record is None:
            _fail(f"no envelope {envelope_id}")
        assert record is not None
        click.echo(_describe(record))
        for item in store.events(envelope_id):
            who = f" {item.address}" if item.address else ""
            click.echo(f"  event {item.at:%Y-%m-%d %H:%M:%S} {item.kind}{who} {item.detail}")
    finally:
        store.close()


def _describe(record: EnvelopeRecord) -> str:
    lines = [
        f"envelope {record.envelope_id}",
        f"  state    {record.state}",
        f"  created  {record.created_at:%Y-%m-%d %H:%M:%S} UTC",
        f"  expires  {record.expires_at:%Y-%m-%d %H:%M:%S} UTC",
        f"  sender   <{record.sender}>",
        f"  queue id {record.queue_id}",
        f"  size     {record.original_size} bytes, sealed {record.sealed_size} bytes",
    ]
    lines += [f"  part {p.part_id}  {p.kind:<10} {p.plaintext_size} bytes" for p in record.parts]
    lines += [
        f"  reader {r.reader_id}  {r.kind:<7} {r.address}"
        + ("" if r.wrapped_key else "  (keys deleted)")
        for r in record.readers
    ]
    return "\n".join(lines)


@envelope.command("open")
@CONFIG_OPTION
@click.argument("envelope_id")
@click.option("--link", help="The reader's notification link (with its #secret).")
@click.option("--account", "address", help="Open as this account holder (asks the password).")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory to create (default: ./ENVELOPE_ID).",
)
def open_envelope(
    config_path: Path, envelope_id: str, link: str | None, address: str | None, out: Path | None
) -> None:
    """Decrypt an envelope as one of its readers into a new directory."""
    from gateway.envelope import keys, opener, stream
    from gateway.store import StoreError

    if (link is None) == (address is None):
        raise click.UsageError("give exactly one of --link and --account")
    store = _store(config_path)
    try:
        if link is not None:
            try:
                parsed = keys.Link.parse(link)
            except ValueError as error:
                raise click.BadParameter(str(error), param_hint="--link") from None
            unlocked = opener.unlock_with_link(store, parsed, envelope_id)
        else:
            assert address is not None
            password = _read_password("Password", confirm=False)
            unlocked = opener.unlock_with_password(store, envelope_id, address, password)
        written = opener.export(store, unlocked, out or Path(envelope_id))
        store.record_event(
            "opened",
            envelope_id=envelope_id,
            reader_id=unlocked.reader.reader_id,
            address=unlocked.reader.address,
            detail="command line",
        )
    except (opener.OpenError, stream.SealedFormatError, StoreError) as error:
        _fail(f"cannot open {envelope_id}: {error}")
    except OSError as error:
        _fail(f"cannot write {error.filename or 'the output'}: {error.strerror}")
    finally:
        store.close()
    for path in written:
        click.echo(str(path))


@click.command()
@CONFIG_OPTION
@click.argument("envelope_id")
def revoke(config_path: Path, envelope_id: str) -> None:
    """Make an envelope unreadable at once: delete its keys, then its blobs."""
    store = _store(config_path)
    try:
        if not store.shred(envelope_id, "revoked", detail="command line"):
            _fail(f"no live envelope {envelope_id}")
    finally:
        store.close()
    click.echo(f"{envelope_id}: revoked")


@click.command()
@CONFIG_OPTION
def expire(config_path: Path) -> None:
    """Expire every envelope past its retention and remove orphaned blobs."""
    cfg = load_or_exit(config_path)
    store = _store(config_path)
    try:
        expired = store.expire(datetime.now(UTC))
        orphans = store.sweep_orphans(cfg.envelope.orphan_age)
    finally:
        store.close()
    click.echo(f"expired {len(expired)} envelope(s), removed {orphans} orphaned blob set(s)")


@click.group()
def account() -> None:
    """Accounts: a sender's key pair, or deleting an account its holder cannot sign in to."""


@account.command("create")
@CONFIG_OPTION
@click.argument("address")
def account_create(config_path: Path, address: str) -> None:
    """Create ADDRESS's key pair, its private key sealed under a password."""
    from gateway.envelope.account import create_account
    from gateway.store import StoreError

    cfg = load_or_exit(config_path)
    password = _read_password("Password for " + address, confirm=True)
    try:
        record = create_account(address, password, bits=cfg.envelope.rsa_bits)
    except ValueError as error:
        raise click.UsageError(str(error)) from None
    store = _store(config_path)
    try:
        store.add_account(record)  # records the "account-created" event too
    except StoreError as error:
        _fail(str(error))
    finally:
        store.close()
    click.echo(f"{record.address}: account key pair created")


@account.command("delete")
@CONFIG_OPTION
@click.argument("address")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def account_delete(config_path: Path, address: str, yes: bool) -> None:
    """Delete ADDRESS's account and crypto-shred what was sealed to it.

    For a holder who lost the password, the phone and the recovery codes: nobody
    can open those messages any more, so they are shredded with the account. Its
    sessions end at once. Messages that came with their own link keep working;
    later mail to the address goes to a guest until the holder signs up again.
    """
    from gateway.store.accounts import Accounts

    store = _store(config_path)
    try:
        if store.get_account(address) is None:
            _fail(f"{address}: no account")
        if not yes:
            click.confirm(
                f"Delete the account of {address}? Messages sealed to it can then no longer "
                "be read by anyone",
                abort=True,
                err=True,
            )
        shredded = Accounts(store).delete(address, by="command line")
    finally:
        store.close()
    click.echo(f"{address.lower()}: account deleted, {shredded} message copies shredded")


def _read_password(prompt: str, *, confirm: bool) -> str:
    if sys.stdin.isatty():
        password: str = click.prompt(prompt, hide_input=True, confirmation_prompt=confirm)
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise click.UsageError("empty password")
    return password
