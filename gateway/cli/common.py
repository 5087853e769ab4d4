"""What the ``sealgate`` commands share: the --config option and loading it.

The gateway's modules are imported inside the functions that use them
(gateway/cli/__init__.py says why).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from gateway.config import Config

CONFIG_OPTION = click.option(
    "-c",
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("/etc/sealgate/sealgate.toml"),
    show_default=True,
    help="Configuration file.",
)


def load_or_exit(path: Path) -> Config:
    from gateway.config import ConfigError

    try:
        return _checked(path)
    except ConfigError as error:
        for problem in error.problems:
            click.echo(f"{error.source}: {problem}", err=True)
        sys.exit(2)


def _checked(path: Path) -> Config:
    """Load ``path`` and open everything it names that can be checked without a network."""
    from gateway import config
    from gateway.intake.tls import server_context
    from gateway.outbound.upstream import client_tls_context
    from gateway.policy.engine import Policy
    from gateway.policy.packs import PolicyError

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
    try:
        Policy.load(cfg.policy.pack_files)
    except PolicyError as error:
        problems += [f"policy.packs: {problem}" for problem in error.problems]
    if problems:
        raise config.ConfigError(str(path), problems)
    return cfg
