"""The command line imports only what the command run needs.

Importing the whole gateway (cryptography, SQLAlchemy, aiosmtpd, the portal, the
policy engine, the pydantic schema) takes over a second; ``sealgate --version``
and the help of every command need none of it. Each case runs ``python -m
gateway`` in a fresh interpreter and reads the modules it imported.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from gateway.cli import main

pytestmark = pytest.mark.peers  # Sealgate as a process

ROOT = Path(__file__).resolve().parent.parent

# `python -m gateway ARGS`, and afterwards (click always exits) the names in sys.modules.
PROBE = """
import json, runpy, sys
out = sys.argv.pop(1)
try:
    runpy.run_module("gateway", run_name="__main__", alter_sys=True)
finally:
    with open(out, "w") as file:
        json.dump(sorted(sys.modules), file)
"""

HEAVY = (
    "aiosmtpd",
    "aiosmtplib",
    "alembic",
    "argon2",
    "cryptography",
    "dkim",
    "dns",
    "jinja2",
    "pydantic",
    "pypdf",
    "sqlalchemy",
    "starlette",
    "uvicorn",
)


def imported(tmp_path: Path, *args: str, stdin: str = "") -> tuple[str, set[str]]:
    """Standard output of ``python -m gateway ARGS`` and the modules it imported."""
    out = tmp_path / "modules.json"
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(out), *args],
        capture_output=True,
        text=True,
        input=stdin,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout, set(json.loads(out.read_text()))


def loaded(modules: set[str], *packages: str) -> list[str]:
    """Those of ``packages`` of which ``modules`` holds the package or a module in it."""
    return [p for p in packages if any(m == p or m.startswith(p + ".") for m in modules)]


def command_paths(group: click.Group, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for name, command in group.commands.items():
        yield (*prefix, name)
        if isinstance(command, click.Group):
            yield from command_paths(command, (*prefix, name))


@pytest.mark.parametrize(
    "args",
    [("--version",), ("--help",)] + [(*path, "--help") for path in command_paths(main)],
    ids=" ".join,
)
def test_version_and_help_import_nothing_of_the_gateway(tmp_path, args):
    stdout, modules = imported(tmp_path, *args)
    assert ("sealgate, version" if args == ("--version",) else "Usage:") in stdout
    assert loaded(modules, *HEAVY) == []
    beyond_cli = [m for m in modules if m.startswith("gateway.") and not loaded({m}, "gateway.cli")]
    assert beyond_cli == []


def test_check_config_imports_the_schema_and_the_policy_but_no_server_or_store(tmp_path):
    # Also shows that the probe sees what a command imports when it runs.
    stdout, modules = imported(tmp_path, "check-config", "config.example.toml")
    assert stdout == "config.example.toml: ok\n"
    assert {"pydantic", "gateway.config", "gateway.policy.engine"} <= modules
    unneeded = ("aiosmtpd", "cryptography", "sqlalchemy", "uvicorn", "starlette", "gateway.store")
    assert loaded(modules, *unneeded, "gateway.pipeline") == []


def test_hash_password_imports_argon2_without_the_smtp_server(tmp_path):
    stdout, modules = imported(tmp_path, "hash-password", stdin="s3cret password\n")
    assert stdout.startswith("$argon2id$")
    assert "argon2" in modules
    assert loaded(modules, "aiosmtpd", "gateway.pipeline") == []


def test_store_and_policy_commands_import_neither_the_service_nor_a_server(tmp_path):
    path = tmp_path / "sealgate.toml"
    path.write_text(f'[store]\ndirectory = "{tmp_path / "var"}"\n')
    servers = ("gateway.service", "gateway.pipeline", "aiosmtpd", "uvicorn", "starlette")
    stdout, modules = imported(tmp_path, "envelope", "list", "-c", str(path))
    assert "gateway.store" in modules
    assert loaded(modules, *servers) == []
    stdout, modules = imported(tmp_path, "policy", "check", "-c", str(path))
    assert stdout.startswith("ok: ")
    assert "gateway.policy.engine" in modules
    assert loaded(modules, *servers, "gateway.policy.textract", "sqlalchemy") == []
