"""The ``sealgate`` command."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from pathlib import Path

import click

from gateway import __version__, config, configdoc, devoutbox, logsetup, service
from gateway.intake.access import hash_password
from gateway.intake.tls import server_context
from gateway.upstream import client_tls_context

CONFIG_OPTION = click.option(
    "-c",
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("/etc/sealgate/sealgate.toml"),
    show_default=True,
    help="Configuration file.",
)


@click.group()
@click.version_option(__version__, prog_name="sealgate")
def main() -> None:
    """Sealgate, a self-hosted secure email gateway."""


def _load_or_exit(path: Path) -> config.Config:
    try:
        return _checked(path)
    except config.ConfigError as error:
        for problem in error.problems:
            click.echo(f"{error.source}: {problem}", err=True)
        sys.exit(2)


def _checked(path: Path) -> config.Config:
    """Load ``path`` and open everything it names that can be checked without a network."""
    cfg = config.load(path)
    problems: list[str] = []
    try:
        server_context(cfg.smtp.tls, str(path))
    except config.ConfigError as error:
        problems += error.problems
    if cfg.upstream.tls != "none":
        try:
            client_tls_context(cfg.upstream)
        except (OSError, ValueError) as error:
            problems.append(f"upstream.ca_file: cannot be used: {error}")
    if cfg.upstream.password_file is not None:
        try:
            cfg.upstream.read_password()
        except OSError as error:
            problems.append(f"upstream.password_file: cannot be read: {error.strerror}")
    if problems:
        raise config.ConfigError(str(path), problems)
    return cfg


@main.command("check-config")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
def check_config(path: Path) -> None:
    """Check a configuration file and print every problem in it."""
    _load_or_exit(path)
    click.echo(f"{path}: ok")


@main.command()
@CONFIG_OPTION
@click.option(
    "--workers", type=click.IntRange(1, 256), help="Processes (default: service.workers)."
)
@click.option("--worker", is_flag=True, hidden=True, help="Run as one of several workers.")
def serve(config_path: Path, workers: int | None, worker: bool) -> None:
    """Run the gateway until SIGTERM; SIGHUP reloads the configuration."""
    cfg = _load_or_exit(config_path)
    logsetup.configure(cfg.log.level, cfg.log.format)
    count = workers or cfg.service.workers
    try:
        if worker:
            code = asyncio.run(
                service.run_process(cfg, config_path, reuse_port=True, with_outbox=False)
            )
        elif count > 1:
            _banner(cfg, count)
            code = asyncio.run(service.supervise(cfg, config_path, count))
        else:
            code = asyncio.run(
                service.run_process(cfg, config_path, on_ready=lambda gw: _banner(gw.cfg, 1, gw))
            )
    except config.ConfigError as error:
        for problem in error.problems:
            click.echo(f"{error.source}: {problem}", err=True)
        sys.exit(2)
    except OSError as error:
        click.echo(f"sealgate: cannot start: {error}", err=True)
        sys.exit(1)
    sys.exit(code)


def _banner(cfg: config.Config, workers: int, gateway: service.Gateway | None = None) -> None:
    listen = gateway.intake.addresses if gateway else cfg.smtp.listen
    first = listen[0]
    lines = [
        f"Sealgate {__version__} is running ({workers} worker{'s' if workers > 1 else ''}).",
        "  SMTP intake:  " + ", ".join(str(a) for a in listen),
        f"  upstream:     {cfg.upstream.host}:{cfg.upstream.port} (tls: {cfg.upstream.tls})",
    ]
    if cfg.dev_outbox.enabled:
        lines += [
            f"  dev outbox:   {cfg.dev_outbox.listen} -> {cfg.dev_outbox.directory}/",
            "",
            "Send a test message:",
            f"  swaks --server {first.host} --port {first.port} "
            "--from alice@example.org --to bob@example.net",
            f"and find it in {cfg.dev_outbox.directory}/ as an .eml file.",
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
    settings = (
        _load_or_exit(config_path).dev_outbox
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
        server = await devoutbox.start(address, target)
        click.echo(f"dev outbox listening on {address}, storing in {target}/")
        async with server:
            await server.serve_forever()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())


@main.command("hash-password")
def hash_password_command() -> None:
    """Hash a password for smtp.auth.users (read from the terminal or standard input)."""
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
    click.echo(configdoc.markdown() if fmt == "markdown" else configdoc.example_toml(), nl=False)
