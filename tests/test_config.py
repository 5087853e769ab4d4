"""Configuration: one schema, clear errors naming the key, docs that cannot drift."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway import config
from gateway.cli import configdoc

ROOT = Path(__file__).resolve().parent.parent


def problems(text: str, tmp_path: Path) -> list[str]:
    path = tmp_path / "sealgate.toml"
    path.write_text(text)
    with pytest.raises(config.ConfigError) as error:
        config.load(path)
    return error.value.problems


def test_example_configuration_loads_as_is():
    cfg = config.load(ROOT / "config.example.toml")
    assert cfg.dev_outbox.enabled
    assert cfg.smtp.listen == [config.HostPort("127.0.0.1", 10025)]
    assert (cfg.upstream.host, cfg.upstream.port) == ("127.0.0.1", cfg.dev_outbox.listen.port)
    assert cfg.dev_outbox.directory == ROOT / "var" / "outbox"


def test_empty_file_gives_working_defaults(tmp_path):
    path = tmp_path / "empty.toml"
    path.write_text("")
    cfg = config.load(path)
    assert cfg.smtp.max_message_size == 10_240_000
    assert cfg.loop.secret_file == tmp_path / "var" / "loop.key"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '[smtp]\nlisten = "10.0.0.1:99999"\n',
            'smtp.listen: "10.0.0.1:99999" is not a valid port',
        ),
        (
            '[smtp]\nlisten = ["::1:25"]\n',
            'smtp.listen: "::1:25": write an IPv6 address in brackets, [::1]:25',
        ),
        ("[smtp]\nlisen = 1\n", 'smtp.lisen: unknown option (did you mean "listen"?)'),
        ("[smpt]\n", 'smpt: unknown option (did you mean "smtp"?)'),
        (
            '[smtp]\nmax_recipients = "many"\n',
            'smtp.max_recipients: expected an integer, got "many"',
        ),
        ("[smtp]\nmax_message_size = 10\n", "smtp.max_message_size: must be at least 1024, got 10"),
        ('[smtp]\nrequire_tls = "yes"\n', 'smtp.require_tls: expected true or false, got "yes"'),
        (
            '[smtp]\nallow_networks = ["10.0.0.300/8"]\n',
            'smtp.allow_networks[0]: "10.0.0.300/8" is not an IP address or CIDR network',
        ),
        ('[smtp]\nhostname = "bad_name!"\n', 'smtp.hostname: "bad_name!" is not a valid host name'),
        ("[smtp]\ncommand_timeout = 0\n", "smtp.command_timeout: must be greater than 0, got 0"),
        (
            '[smtp.tls]\ncertificate = "/nonexistent.pem"\nkey = "/nonexistent.key"\n',
            'smtp.tls.certificate: "/nonexistent.pem": no such file',
        ),
        (
            '[upstream]\ntls = "ssl"\n',
            'upstream.tls: must be one of "none", "starttls" or "implicit", got "ssl"',
        ),
        ("[upstream]\nport = 0\n", "upstream.port: must be at least 1, got 0"),
        (
            '[upstream]\nusername = "u"\npassword = "p"\n',
            'upstream: username is set but tls = "none": AUTH would cross the network in clear',
        ),
        ('[upstream]\npassword = "p"\n', "upstream: a password is set but username is empty"),
        (
            '[[smtp.auth.users]]\nname = "relay"\npassword_hash = "plain"\n',
            "smtp.auth.users[0]: password_hash is not an argon2id hash; make one with `sealgate hash-password`",
        ),
        (
            '[[smtp.auth.users]]\nnme = "relay"\n',
            'smtp.auth.users[0].nme: unknown option (did you mean "name"?)',
        ),
        (
            "[smtp]\nrequire_tls = true\n",
            "smtp: require_tls = true needs smtp.tls.certificate and smtp.tls.key",
        ),
        (
            '[log]\nlevel = "verbose"\n',
            'log.level: must be one of "debug", "info", "warning" or "error", got "verbose"',
        ),
        ("smtp = 5\n", "smtp: expected a table, got 5"),
        ("[service]\nworkers = 1.5\n", "service.workers: expected an integer, got 1.5"),
    ],
)
def test_bad_values_name_the_key_and_the_problem(tmp_path, text, expected):
    assert expected in problems(text, tmp_path)


def test_all_problems_are_reported_at_once(tmp_path):
    found = problems(
        '[smtp]\nlisten = "x"\nmax_recipients = -1\n[upstream]\nport = "25"\n[bogus]\n', tmp_path
    )
    assert found == [
        'smtp.listen: "x" is not of the form host:port',
        "smtp.max_recipients: must be at least 1, got -1",
        'upstream.port: expected an integer, got "25"',
        "bogus: unknown option",
    ]


def test_toml_syntax_error_is_reported(tmp_path):
    (problem,) = problems("[smtp\nlisten = 1\n", tmp_path)
    assert problem.startswith("not valid TOML:")


def test_missing_file_is_reported(tmp_path):
    with pytest.raises(config.ConfigError) as error:
        config.load(tmp_path / "absent.toml")
    assert error.value.problems == ["cannot read: No such file or directory"]


def test_relative_paths_resolve_against_the_config_file(tmp_path):
    (tmp_path / "etc").mkdir()
    path = tmp_path / "etc" / "sealgate.toml"
    path.write_text('[loop]\nsecret_file = "state/loop.key"\n')
    assert config.load(path).loop.secret_file == tmp_path / "etc" / "state" / "loop.key"


def test_reference_and_example_are_generated_from_the_schema():
    assert (ROOT / "docs" / "configuration.md").read_text() == configdoc.markdown(), (
        "docs/configuration.md is stale: run `make docs`"
    )
    assert (ROOT / "config.example.toml").read_text() == configdoc.example_toml(), (
        "config.example.toml is stale: run `make docs`"
    )


def test_example_documents_every_option():
    """Every option but the deprecated ones, which a new file should not set."""
    text = (ROOT / "config.example.toml").read_text()
    for name, model, many in configdoc._sections(config.Config):
        for option, field in configdoc._options(model):
            in_example = f"\n{option} = " in text or f"# {option} = " in text
            assert in_example != (option in model.deprecated), f"{name}.{option}"
            assert (field.description or "") != "", f"{name}.{option} has no description"
            assert f"`{option}`" in (ROOT / "docs" / "configuration.md").read_text()


def tables(
    model: type[config.Section] = config.Config, prefix: str = ""
) -> Iterator[tuple[str, type[config.Section]]]:
    """Every table of the schema by dotted name (a list of tables is an option of its own)."""
    yield prefix or "(top level)", model
    for name, field in model.model_fields.items():
        if isinstance(field.annotation, type) and issubclass(field.annotation, config.Section):
            yield from tables(field.annotation, f"{prefix}.{name}" if prefix else name)


def test_every_option_is_reloadable_or_restart_only():
    for name, model in tables():
        options = {
            option
            for option, field in model.model_fields.items()
            if not (
                isinstance(field.annotation, type) and issubclass(field.annotation, config.Section)
            )
        }
        assert not model.reloadable & model.restart_only, f"{name}: in both sets"
        assert model.reloadable | model.restart_only == options, (
            f"{name}: put every option in reloadable or restart_only, and nothing else"
        )


def test_a_reload_keeps_restart_only_options_and_names_those_that_changed():
    running = config.parse({})
    new = config.parse(
        {
            "smtp": {
                "listen": "127.0.0.1:2525",
                "max_recipients": 5,
                "tls": {"min_version": "TLSv1.3"},
            },
            "store": {"busy_timeout": 3},
            "portal": {"url": "https://portal.example.org", "code_minutes": 5},
            "notify": {"from_address": "sealgate@example.org"},
        }
    )
    applied, changed = config.reloaded(running, new)
    assert changed == ["smtp.listen", "store.busy_timeout", "portal.url"]
    assert applied.smtp.listen == running.smtp.listen
    assert applied.store.busy_timeout == running.store.busy_timeout
    assert applied.portal.url == running.portal.url
    assert applied.smtp.max_recipients == 5
    assert applied.smtp.tls.min_version == "TLSv1.3"
    assert applied.portal.code_minutes == 5
    assert applied.notify.from_address == "sealgate@example.org"
    assert config.reloaded(running, running) == (running, [])


def run_cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        capture_output=True,
        text=True,
        input=stdin,
        timeout=60,
        cwd=ROOT,
    )


@pytest.mark.peers  # Sealgate as a process
def test_check_config_prints_every_problem_and_fails(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[smtp]\nlisten = "10.0.0.1:99999"\nlisen = 2\n[upstream]\ntls = "ssl"\n')
    result = run_cli("check-config", str(path))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f'{path}: smtp.listen: "10.0.0.1:99999" is not a valid port',
        f'{path}: smtp.lisen: unknown option (did you mean "listen"?)',
        f'{path}: upstream.tls: must be one of "none", "starttls" or "implicit", got "ssl"',
    ]


@pytest.mark.peers  # Sealgate as a process
def test_check_config_accepts_the_example():
    result = run_cli("check-config", "config.example.toml")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "config.example.toml: ok"


@pytest.mark.peers  # Sealgate as a process
def test_check_config_warns_about_the_key_pool_options_and_still_loads_them(tmp_path):
    """Format v2 needs no key pool; files that set its options keep loading for a release."""
    path = tmp_path / "old.toml"
    path.write_text("[envelope]\nkey_pool_size = 64\nkey_processes = 2\nretention_days = 7\n")
    result = run_cli("check-config", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{path}: ok"
    assert result.stderr.splitlines() == [
        f"{path}: warning: envelope.key_pool_size: deprecated: format v2 generates no key "
        "pairs per message; remove the option",
        f"{path}: warning: envelope.key_processes: deprecated: format v2 generates no key "
        "pairs per message; remove the option",
    ]


def test_deprecations_name_only_what_the_file_sets():
    assert config.deprecations(config.parse({})) == []
    assert config.deprecations(config.parse({"envelope": {"key_processes": 1}})) == [
        "envelope.key_processes: deprecated: format v2 generates no key pairs per message; "
        "remove the option"
    ]


@pytest.mark.peers  # Sealgate as a process
def test_check_config_opens_tls_files(tmp_path):
    cert = tmp_path / "cert.pem"
    cert.write_text("not a certificate\n")
    path = tmp_path / "tls.toml"
    path.write_text(f'[smtp.tls]\ncertificate = "{cert}"\nkey = "{cert}"\n')
    result = run_cli("check-config", str(path))
    assert result.returncode == 2
    assert "smtp.tls.certificate/smtp.tls.key: cannot be used" in result.stderr


@pytest.mark.peers  # Sealgate as a process
def test_serve_refuses_to_start_on_a_bad_config(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[smtp]\nmax_connections = 0\n")
    result = run_cli("serve", "-c", str(path))
    assert result.returncode == 2
    assert "smtp.max_connections: must be at least 1, got 0" in result.stderr


@pytest.mark.peers  # Sealgate as a process
def test_hash_password_makes_a_hash_the_config_accepts(tmp_path):
    result = run_cli("hash-password", stdin="s3cret password\n")
    assert result.returncode == 0, result.stderr
    hashed = result.stdout.strip()
    assert hashed.startswith("$argon2id$")
    assert "s3cret" not in hashed
    from argon2 import PasswordHasher

    assert PasswordHasher().verify(hashed, "s3cret password")


@pytest.mark.peers  # Sealgate as a process
def test_serve_names_the_key_when_the_loop_secret_cannot_be_created(tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    path = tmp_path / "sealgate.toml"
    path.write_text(f'[loop]\nsecret_file = "{blocker}/loop.key"\n')
    result = run_cli("serve", "-c", str(path))
    assert result.returncode == 2
    assert (
        f"loop.secret_file: cannot read or create {blocker}/loop.key: Not a directory"
        in result.stderr
    )


@pytest.mark.peers  # Sealgate as a process
def test_dev_outbox_rejects_a_bad_listen_address(tmp_path):
    result = run_cli(
        "dev-outbox", "-c", str(tmp_path / "absent.toml"), "--listen", "127.0.0.1:99999"
    )
    assert result.returncode == 2
    assert '"127.0.0.1:99999" is not a valid port' in result.stderr


def test_orphan_age_must_outlast_a_sealing():
    with pytest.raises(config.ConfigError) as error:
        config.parse({"envelope": {"orphan_age": 400}, "store": {"busy_timeout": 600}})
    assert error.value.problems == [
        "envelope.orphan_age: must be at least store.busy_timeout + 120 seconds, "
        "or the sweeper could remove the blobs of a sealing in progress"
    ]
