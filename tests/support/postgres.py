"""A throwaway PostgreSQL cluster for the store tests (RECIPES.md, "PostgreSQL, throwaway").

One cluster per test session: ``initdb`` into a fresh directory under /tmp,
``pg_ctl start`` on a free loopback port with the socket in that directory,
and a fresh database for every test. As root the server binaries run as the
``postgres`` user (PostgreSQL refuses to run as root); otherwise as ourselves.
Nothing outside the directory is touched, and ``stop`` removes it.

PostgreSQL missing is a failure, not a skip: ``make test`` installs it, and a
suite that silently skips its PostgreSQL half proves nothing about it.
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from tests.support.process import free_port

INSTALL = "apt-get install -y --no-install-recommends postgresql"
SUPERUSER = "postgres"
_ROOTS = Path("/usr/lib/postgresql")


def find_bindir() -> Path | None:
    """The bin directory of the newest PostgreSQL installed from Debian packages."""
    candidates = [p for p in _ROOTS.glob("*/bin") if (p / "initdb").exists()]
    candidates.sort(key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
    return candidates[-1] if candidates else None


@dataclass
class PostgresCluster:
    """A running cluster: its socket directory, port and a database per test."""

    bindir: Path
    directory: Path
    port: int
    _names: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def data(self) -> Path:
        return self.directory / "data"

    def url(self, database: str, *, password: str | None = None) -> str:
        """A SQLAlchemy URL that reaches ``database`` through the Unix socket."""
        user = f"{SUPERUSER}:{password}" if password else SUPERUSER
        return f"postgresql+psycopg://{user}@/{database}?host={self.directory}&port={self.port}"

    def create_database(self) -> str:
        name = f"test_{next(self._names)}"
        self._admin(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return name

    def drop_database(self, name: str) -> None:
        self._admin(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def dump(self, database: str) -> bytes:
        """``pg_dump`` of the database: what a backup of it would contain."""
        return _run(
            [
                self.bindir / "pg_dump",
                "-h",
                self.directory,
                "-p",
                self.port,
                "-U",
                SUPERUSER,
                "-d",
                database,
            ],
            cwd=self.directory,
        ).stdout

    def stop(self) -> None:
        try:
            _run(
                [self.bindir / "pg_ctl", "-D", self.data, "-m", "fast", "-w", "stop"],
                cwd=self.directory,
            )
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)

    def _admin(self, statement: sql.Composed) -> None:
        with psycopg.connect(
            host=str(self.directory),
            port=self.port,
            user=SUPERUSER,
            dbname="postgres",
            autocommit=True,
        ) as conn:
            conn.execute(statement)


def start_cluster() -> PostgresCluster:
    """initdb and start a cluster; raises RuntimeError naming the apt-get line if absent."""
    bindir = find_bindir()
    if bindir is None:
        raise RuntimeError(f"PostgreSQL is not installed; run as root: {INSTALL}")
    directory = Path(tempfile.mkdtemp(prefix="sealgate-pg-", dir="/tmp"))
    if os.geteuid() == 0:
        account = pwd.getpwnam(SUPERUSER)
        os.chown(directory, account.pw_uid, account.pw_gid)
    try:
        _run(
            [
                bindir / "initdb",
                "-D",
                directory / "data",
                "-A",
                "trust",
                "-U",
                SUPERUSER,
                "--no-sync",
                "-E",
                "UTF8",
            ],
            cwd=directory,
        )
        return _start(bindir, directory)
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise


def _start(bindir: Path, directory: Path, attempts: int = 3) -> PostgresCluster:
    """Start on a free port; another process may take the port first, so try again."""
    for attempt in range(attempts):
        port = free_port()
        options = f"-k {directory} -p {port} -c listen_addresses=127.0.0.1 -c fsync=off"
        try:
            _run(
                [
                    bindir / "pg_ctl",
                    "-D",
                    directory / "data",
                    "-o",
                    options,
                    "-l",
                    directory / "log",
                    "-w",
                    "start",
                ],
                cwd=directory,
            )
        except RuntimeError:
            if attempt == attempts - 1:
                raise
            continue
        return PostgresCluster(bindir, directory, port)
    raise AssertionError("unreachable")


def _run(argv: list[Any], *, cwd: Path) -> subprocess.CompletedProcess[bytes]:
    """Run a PostgreSQL program (as the postgres user when we are root); no shell."""
    as_postgres: dict[str, Any] = {}
    if os.geteuid() == 0:
        as_postgres = {"user": SUPERUSER, "group": SUPERUSER, "extra_groups": []}
    result = subprocess.run(
        [str(arg) for arg in argv],
        cwd=cwd,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"},
        capture_output=True,
        timeout=60,
        check=False,
        **as_postgres,
    )
    if result.returncode != 0:
        log = cwd / "log"
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        raise RuntimeError(
            f"{Path(str(argv[0])).name} failed ({result.returncode}):\n"
            f"{result.stderr.decode(errors='replace')}{tail}"
        )
    return result
