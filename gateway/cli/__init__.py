"""The ``sealgate`` command.

Commands import the gateway's modules when they run, inside their function:
importing all of them takes over a second, which ``sealgate --help`` and
``--version`` should not pay, nor one command for what only another needs.
Building the command line (this module, ``common``, ``envelope``, ``policy``)
imports click and the standard library only; ``tests/test_cli_imports.py``
holds it to that. Types named in signatures are imported under TYPE_CHECKING
(ruff's TC004 reports one that is used at run time).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from gateway import __version__
from gateway.cli.common import CONFIG_OPTION, load_or_exit
from gateway.cli.directory import directory
from gateway.cli.envelope import account, envelope, expire, revoke
from gateway.cli.policy import policy

if TYPE_CHECKING:
    from gateway.config import Config, HostPort


@click.group()
@click.version_option(__version__, prog_name="sealgate")
def main() -> None:
    """Sealgate, a self-hosted secure email gateway."""


@main.command("check-config")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
def check_config(path: Path) -> None:
    """Check a configuration file and print every problem in it."""
    from gateway import config

    cfg = load_or_exit(path)
    for warning in config.deprecations(cfg):
        click.echo(f"{path}: warning: {warning}", err=True)
    click.echo(f"{path}: ok")


@main.command()
@CONFIG_OPTION
@click.option(
    "--workers", type=click.IntRange(1, 256), help="Processes (default: service.workers)."
)
@click.option("--worker", is_flag=True, hidden=True, help="Run as one of several workers.")
@click.option("--smtp-fd", type=int, multiple=True, hidden=True, help="Inherited SMTP socket.")
@click.option("--portal-fd", type=int, hidden=True, help="Inherited portal socket.")
def serve(
    config_path: Path,
    workers: int | None,
    worker: bool,
    smtp_fd: tuple[int, ...],
    portal_fd: int | None,
) -> None:
    """Run the gateway until SIGTERM; SIGHUP reloads the configuration."""
    from gateway import config, logsetup, service

    cfg = load_or_exit(config_path)
    logsetup.configure(cfg.log.level, cfg.log.format)
    count = workers or cfg.service.workers
    try:
        if worker:
            listeners = service.Listeners.inherit(smtp_fd, portal_fd)
            code = asyncio.run(
                service.run_process(cfg, config_path, listeners=listeners, with_outbox=False)
            )
        elif count > 1:

            def bound(listeners: service.Listeners) -> None:
                portal = None
                if listeners.portal is not None:
                    portal = (listeners.portal_address, listeners.portal_url(cfg))
                _banner(cfg, count, config_path, listeners.smtp_addresses, portal)

            code = asyncio.run(service.supervise(cfg, config_path, count, on_bound=bound))
        else:

            def ready(gw: service.Gateway) -> None:
                address = gw.portal_address
                portal = None
                if gw.portal is not None and address is not None:
                    portal = (config.HostPort(*address), gw.portal_url)
                _banner(gw.cfg, 1, config_path, gw.intake.addresses, portal)

            code = asyncio.run(service.run_process(cfg, config_path, on_ready=ready))
    except config.ConfigError as error:
        for problem in error.problems:
            click.echo(f"{error.source}: {problem}", err=True)
        sys.exit(2)
    except OSError as error:
        click.echo(f"sealgate: cannot start: {error}", err=True)
        sys.exit(1)
    sys.exit(code)


def _banner(
    cfg: Config,
    workers: int,
    config_name: Path,
    listen: list[HostPort],
    portal: tuple[HostPort, str] | None,
) -> None:
    """What runs where, with the addresses as bound (port 0 in the configuration: the
    ports the kernel picked)."""
    installed = Path(sys.executable).with_name("sealgate")
    command = installed if installed.exists() else "sealgate"
    first = listen[0]
    lines = [
        f"Sealgate {__version__} is running ({workers} worker{'s' if workers > 1 else ''}).",
        "  SMTP intake:  " + ", ".join(str(a) for a in listen),
        f"  upstream:     {cfg.upstream.host}:{cfg.upstream.port} (tls: {cfg.upstream.tls})",
    ]
    if portal is not None:
        lines.append(f"  portal:       {portal[0]} (links: {portal[1]})")
    if cfg.dev_outbox.enabled:
        lines += [
            f"  dev outbox:   {cfg.dev_outbox.listen} -> {cfg.dev_outbox.directory}/",
            "",
            "Send a test message:",
            f"  swaks --server {first.host} --port {first.port} "
            "--from alice@example.org --to bob@example.net",
            f"and find it in {cfg.dev_outbox.directory}/ as an .eml file.",
            "",
            "Send a protected one (the subject tag asks for it):",
            f"  swaks --server {first.host} --port {first.port} "
            "--from alice@example.org --to bob@example.net --header 'Subject: [secure] Hi'",
            "The outbox gets a notification with a link: open it in a browser, ask for a",
            "code by email (it arrives in the outbox too), read, download and reply.",
            "Or open the sealed message on the command line:",
            f"  {command} envelope list -c {config_name}",
            f"  {command} envelope open ID --link 'LINK' -c {config_name}",
        ]
    lines.append("Stop with Ctrl-C.")
    click.echo("\n".join(lines))


@main.command("dev-outbox")
@CONFIG_OPTION
@click.option("--listen", help='Address, "host:port" (default: dev_outbox.listen).')
@click.option(
    "--directory", type=click.Path(file_okay=False, path_type=Path), help="Where .eml files go."
)
def dev_outbox(config_path: Path, listen: str | None, directory: Path | None) -> None:
    """Run only the development outbox, an SMTP sink that stores .eml files."""
    from gateway import config, devoutbox, logsetup

    settings = (
        load_or_exit(config_path).dev_outbox
        if config_path.exists()
        else config.DevOutbox.model_validate({})
    )
    try:
        address = config.parse_address(listen) if listen else settings.listen
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--listen") from None
    target = directory or settings.directory or Path("var/outbox")
    logsetup.configure()

    async def run() -> None:
        # Our own handlers: a process started in the background inherits SIGINT ignored.
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stopping.set)
        server = await devoutbox.start(address, target)
        click.echo(f"dev outbox listening on {address}, storing in {target}/")
        await stopping.wait()
        server.close()  # no wait for idle clients: a gateway may hold a connection open

    asyncio.run(run())


@main.command("hash-password")
def hash_password_command() -> None:
    """Hash a password for smtp.auth.users (read from the terminal or standard input)."""
    from gateway.intake.access import hash_password

    if sys.stdin.isatty():
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise click.UsageError("empty password")
    click.echo(hash_password(password))


@main.command("config-reference")
@click.option("--format", "fmt", type=click.Choice(["markdown", "toml"]), default="markdown")
def config_reference(fmt: str) -> None:
    """Print the configuration reference (markdown) or the example configuration (toml)."""
    from gateway.cli import configdoc

    click.echo(configdoc.markdown() if fmt == "markdown" else configdoc.example_toml(), nl=False)


for command in (envelope, revoke, expire, account, policy, directory):
    main.add_command(command)


@main.command("dkim-keygen")
@click.option("--domain", required=True, help="Domain the key signs for (d=).")
@click.option("--selector", required=True, help="Selector (s=), e.g. sealgate2026.")
@click.option("--type", "kind", type=click.Choice(["rsa", "ed25519"]), default="rsa")
@click.option("--bits", type=click.Choice(["2048", "3072", "4096"]), default="2048")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True)
def dkim_keygen(domain: str, selector: str, kind: str, bits: str, out: Path) -> None:
    """Make a DKIM signing key (mode 0600) and print the DNS record to publish."""
    from gateway.mailauth.dkimsign import DKIMKeyError, SigningKey, generate_key

    pem = generate_key("rsa" if kind == "rsa" else "ed25519", int(bits))
    try:
        key = SigningKey.from_pem(domain, selector, pem, source=str(out))
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise click.UsageError(f"{out} exists; choose another file or remove it") from None
    except (DKIMKeyError, ValueError) as error:
        raise click.UsageError(str(error)) from None
    with os.fdopen(fd, "wb") as file:
        file.write(pem)
    click.echo(f"Wrote {out}. Publish this TXT record, then add the key to [dkim]:\n")
    record = key.dns_record()  # a TXT string holds 255 bytes at most: split it
    strings = " ".join(f'"{record[i : i + 250]}"' for i in range(0, len(record), 250))
    click.echo(f"{key.dns_name}. IN TXT {strings}\n")
    click.echo(f'[[dkim.keys]]\ndomain = "{key.domain}"\nselector = "{selector}"\n'
               f'key_file = "{out.resolve()}"')  # fmt: skip
