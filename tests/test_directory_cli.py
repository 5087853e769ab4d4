"""`sealgate directory sync`: the printed plan, its refusal, --apply, and the errors a
person sees (against slapd, tests/support/slapd.py)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from click.testing import CliRunner

from gateway.cli import main
from gateway.cli.directory import _Progress
from gateway.identity import directorysync
from gateway.identity.directorysync import Known, SyncPlan
from gateway.store import FileBlobStore, Store
from gateway.store.directorysync import SyncStore
from tests.support.certs import make_certificates
from tests.support.process import free_port, write_toml
from tests.support.slapd import SERVICE_DN, SERVICE_PASSWORD, Slapd


def config_file(tmp_path: Path, **directory: object) -> Path:
    return write_toml(tmp_path / "sealgate.toml", {"directory": directory})


def slapd_config(server: Slapd, tmp_path: Path, base_dn: str, **overrides: object) -> Path:
    password = tmp_path / "directory-password"
    password.write_text(SERVICE_PASSWORD + "\n")
    values = {
        "url": server.url,
        "kind": "openldap",
        "ca_file": str(server.ca),
        "bind_dn": SERVICE_DN,
        "password_file": str(password),
        "base_dn": base_dn,
        **overrides,
    }
    return config_file(tmp_path, **values)


def sync(path: Path, *options: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["directory", "sync", "-c", str(path), *options])
    assert not isinstance(result.exception, Exception) or isinstance(
        result.exception, SystemExit
    ), result.exception
    return result.exit_code, result.stdout, result.stderr


class MemoryTarget:
    """Stands in for the directory store (tests/test_directory_sync.py applies to the
    real one) with people it never had: what a target is asked, and the plans it was
    given."""

    def __init__(self, known: Known) -> None:
        self._known = known
        self.applied: list[SyncPlan] = []

    def known(self) -> Known:
        return self._known

    def apply(self, plan: SyncPlan) -> tuple[str, ...]:
        self.applied.append(plan)
        return ()

    def close(self) -> None:
        pass


def test_a_dry_run_prints_the_plan_and_changes_nothing(slapd_server, tmp_path):
    ou = slapd_server.new_ou()
    alice = slapd_server.add_person(ou, "alice", mail="alice@sealgate.test", displayName="Alice")
    slapd_server.add_person(ou, "bob", mail="bob@sealgate.test", mobile="06 1234")
    slapd_server.add_group(ou, "finance", [alice])

    code, out, err = sync(slapd_config(slapd_server, tmp_path, ou))

    assert code == 0, err
    assert out.splitlines() == [
        f"Directory: {slapd_server.url} (openldap), base DN {ou}",
        "Read everything: 2 people, 1 group, 0 deleted.",
        "Plan:",
        '  create      alice@sealgate.test "Alice"',
        '  create      bob@sealgate.test "bob"',
        '  group create "finance" (1 member)',
        "People: 2 to create; groups: 1 to create.",
        "Dry run: nothing was changed. Run again with --apply to apply this plan.",
    ]
    assert err == (
        "warning: bob@sealgate.test: mobile is not an international number "
        "(+31 6 ..., E.164); no phone for text codes\n"
    )  # and no progress: standard error is no terminal
    store = Store(f"sqlite:///{tmp_path / 'var' / 'sealgate.db'}", FileBlobStore(tmp_path))
    assert SyncStore(store).known() == Known()  # the store was opened, and nothing kept
    store.close()


def test_a_store_that_cannot_be_opened_is_a_configuration_problem(tmp_path):
    password = tmp_path / "password"
    password.write_text("x\n")
    path = write_toml(
        tmp_path / "sealgate.toml",
        {
            "directory": {
                "url": "ldaps://127.0.0.1:1",
                "bind_dn": "cn=x",
                "password_file": str(password),
                "base_dn": "dc=x",
            },
            "store": {"database": f"postgresql+psycopg://sealgate@127.0.0.1:{free_port()}/x"},
        },
    )
    code, out, err = sync(path, "--apply")
    assert code == 2
    assert err.startswith(f"{path}: store.database: database postgresql+psycopg://"), err
    assert "unavailable while migrating the schema" in err and len(err.splitlines()) == 1
    assert out == ""


def test_without_a_directory_url_there_is_nothing_to_sync(tmp_path):
    code, _, err = sync(config_file(tmp_path, kind="ad"))
    assert code == 2
    assert "directory.url is not set" in err


def test_an_untrusted_server_is_one_line_without_a_traceback(slapd_server, tmp_path):
    other_ca = make_certificates(tmp_path / "other").ca
    path = slapd_config(slapd_server, tmp_path, "dc=sealgate,dc=test", ca_file=str(other_ca))

    code, _, err = sync(path)

    assert code == 1
    assert err.startswith(f"sealgate: {slapd_server.url}: the server's certificate is not trusted")
    assert "Traceback" not in err and len(err.splitlines()) == 1


def test_a_sync_that_would_delete_too_many_is_refused_unless_forced(
    slapd_server, tmp_path, monkeypatch
):
    ou = slapd_server.new_ou()
    slapd_server.add_person(ou, "alice", mail="alice@sealgate.test")
    people = [directorysync.DirectoryPerson(f"id-{i}", f"p{i}@sealgate.test") for i in range(3)]
    target = MemoryTarget(Known({p.external_id: p for p in people}))
    monkeypatch.setattr(directorysync, "store_target", lambda cfg: target)
    path = slapd_config(slapd_server, tmp_path, ou)

    code, out, err = sync(path, "--apply")

    assert code == 1
    assert "  delete      p0@sealgate.test" in out
    assert "sealgate: refused: this sync would deactivate or delete 3 of 3 active people" in err
    assert target.applied == []
    code, out, _ = sync(path, "--apply", "--force")
    assert code == 0
    assert out.endswith("Applied.\n")
    (plan,) = target.applied
    assert [p.user_name for p in plan.create] == ["alice@sealgate.test"]
    assert len(plan.delete) == 3


def test_progress_is_one_line_rewritten_and_cleared(monkeypatch):
    screen = io.StringIO()
    monkeypatch.setattr("sys.stderr", screen)
    ticks = iter([1.0, 1.05, 1.2, 1.3])
    progress = _Progress(clock=lambda: next(ticks))

    for count in (1, 2, 3):
        progress("people", count)
    progress("groups", 1)
    progress.done()

    assert screen.getvalue() == (
        "\rreading people: 1\rreading people: 3\rreading groups: 1"
        "\r" + " " * len("reading groups: 1") + "\r"
    )


@pytest.fixture(autouse=True)
def _wide_terminal(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
