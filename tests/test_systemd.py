"""The shipped systemd unit: it parses, and it keeps its hardening.

Where ``systemd-analyze`` is installed, the unit is checked with ``systemd-analyze
verify`` (a copy whose ExecStart names a binary that exists here, since
/usr/local/bin/sealgate need not), and its exposure is scored with ``systemd-analyze
security --offline``. Without systemd-analyze a small parser checks the syntax and the
directive names instead. In every case the directives the service relies on must be
present with the right values, so deleting or weakening one fails a test.
"""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from gateway import cli, config

UNIT = Path(__file__).resolve().parent.parent / "systemd" / "sealgate.service"
INSTALLED_BINARY = "/usr/local/bin/sealgate"

Directives = dict[str, dict[str, list[str]]]

# Directive -> the value it must have (a string, compared after whitespace
# normalisation) or a predicate over the last value given.
REQUIRED_SERVICE: dict[str, str | Callable[[str], bool]] = {
    "User": "sealgate",
    "Group": "sealgate",
    "StateDirectory": "sealgate",
    "ConfigurationDirectory": "sealgate",
    "KillSignal": "SIGTERM",
    "Restart": "on-failure",
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "AmbientCapabilities": "CAP_NET_BIND_SERVICE",
    "CapabilityBoundingSet": "CAP_NET_BIND_SERVICE",
    "RestrictAddressFamilies": lambda v: set(v.split()) == {"AF_INET", "AF_INET6", "AF_UNIX"},
    "SystemCallArchitectures": "native",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectKernelLogs": "yes",
    "ProtectControlGroups": "yes",
    "ProtectClock": "yes",
    "ProtectHostname": "yes",
    "RestrictNamespaces": "yes",
    "RestrictRealtime": "yes",
    "RestrictSUIDSGID": "yes",
    "LockPersonality": "yes",
    "MemoryDenyWriteExecute": "yes",
    "UMask": "0077",
    "LimitNOFILE": lambda v: v.isdigit() and int(v) >= 4096,
}

# Every directive the unit uses, for the syntax check without systemd-analyze.
# Add a new directive here when you add it to the unit.
KNOWN_UNIT = """
    Description Documentation Wants After Before Requires StartLimitIntervalSec StartLimitBurst
"""
KNOWN_SERVICE = """
    Type ExecStart ExecReload ExecStartPre TimeoutStopSec RestartSec RestartPreventExitStatus
    Environment SyslogIdentifier StateDirectoryMode WorkingDirectory PrivateMounts ProtectProc
    RemoveIPC KeyringMode SystemCallFilter SystemCallErrorNumber IPAddressAllow IPAddressDeny
    ReadWritePaths
"""
KNOWN = {
    "Unit": set(KNOWN_UNIT.split()),
    "Service": set(REQUIRED_SERVICE) | set(KNOWN_SERVICE.split()),
    "Install": {"WantedBy", "Alias"},
}

# What systemd-analyze says about a directive or line it cannot use.
PROBLEM = re.compile(
    r"unknown (key|section|lvalue)|failed to parse|invalid|ignoring|bad message|"
    r"failed to load|not executable|missing|assignment outside",
    re.IGNORECASE,
)


def parse_unit(text: str) -> Directives:
    """Sections -> directive -> every value given, in order (systemd allows repeats)."""
    units: Directives = {}
    section: dict[str, list[str]] | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        assert not line.endswith("\\"), f"line {number}: continuation lines are not expected"
        if line.startswith("["):
            assert line.endswith("]"), f"line {number}: bad section header {line!r}"
            section = units.setdefault(line[1:-1], {})
            continue
        key, sep, value = line.partition("=")
        assert sep, f"line {number}: not a directive: {line!r}"
        assert section is not None, f"line {number}: directive outside a section"
        section.setdefault(key.strip(), []).append(" ".join(value.split()))
    return units


def last(units: Directives, section: str, key: str) -> str:
    values = units.get(section, {}).get(key)
    assert values, f"[{section}] {key}= is missing from {UNIT.name}"
    return values[-1]


def seconds(value: str) -> float:
    """A systemd time span ("60", "60s", "1min 30s", "2m") in seconds."""
    factors = {"": 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hr": 3600}
    total = 0.0
    for amount, unit in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", value):
        assert unit in factors, f"unexpected time unit in {value!r}"
        total += float(amount) * factors[unit]
    return total


def unit() -> Directives:
    return parse_unit(UNIT.read_text())


def test_required_directives_have_their_values() -> None:
    units = unit()
    wrong = []
    for key, expected in REQUIRED_SERVICE.items():
        value = last(units, "Service", key)
        ok = expected(value) if callable(expected) else value == expected
        if not ok:
            wrong.append(f"{key}={value}")
    assert not wrong, "directives with the wrong value: " + ", ".join(wrong)


def test_not_a_dynamic_user_and_not_root() -> None:
    service = unit()["Service"]
    assert "DynamicUser" not in service or service["DynamicUser"][-1] in {"no", "false"}
    assert last(unit(), "Service", "User") not in {"root", "0"}


def test_system_calls_are_filtered() -> None:
    filters = unit()["Service"].get("SystemCallFilter", [])
    assert "@system-service" in filters


def test_exec_start_serves_the_default_configuration() -> None:
    command = last(unit(), "Service", "ExecStart").split()
    assert command[0] == INSTALLED_BINARY
    assert command[1:3] == ["serve", "-c"]
    default = next(p.default for p in cli.serve.params if p.name == "config_path")
    assert command[3] == str(default) == "/etc/sealgate/sealgate.toml"


def test_reload_sends_sighup_to_the_main_process() -> None:
    reloads = unit()["Service"].get("ExecReload", [])
    assert reloads and reloads[-1] == "/bin/kill -HUP $MAINPID"


def test_stop_timeout_outlasts_the_graceful_shutdown() -> None:
    # A worker supervisor waits service.shutdown_timeout + 10 s for its workers.
    shutdown = config.Service.model_fields["shutdown_timeout"].default
    assert seconds(last(unit(), "Service", "TimeoutStopSec")) > shutdown + 10


def test_time_spans_parse() -> None:
    assert seconds("60") == seconds("60s") == seconds("1min") == 60
    assert seconds("1min 30s") == 90


def test_parser_reports_broken_lines() -> None:
    for text in ("[Service\nUser=x\n", "[Service]\nNoEqualsSign\n", "User=x\n"):
        try:
            parse_unit(text)
        except AssertionError:
            continue
        raise AssertionError(f"accepted {text!r}")


def _verifiable_copy(directory: Path, text: str) -> Path:
    """The unit with ExecStart and ExecReload pointing at a sealgate that exists here."""
    here = Path(sys.executable).with_name("sealgate")
    binary = here if here.is_file() else Path(sys.executable)
    copy = directory / UNIT.name
    copy.write_text(text.replace(INSTALLED_BINARY, str(binary)))
    copy.chmod(0o644)  # systemd warns about world-writable unit files
    return copy


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["systemd-analyze", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _verify(path: Path) -> tuple[int, list[str]]:
    result = _run("verify", "--man=no", str(path))
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    return result.returncode, lines


def _systemd_version() -> int:
    match = re.search(r"systemd (\d+)", _run("--version").stdout)
    return int(match.group(1)) if match else 0


def test_unit_parses(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        _check_syntax_without_systemd()
        return

    code, lines = _verify(_verifiable_copy(tmp_path, UNIT.read_text()))
    problems = [line for line in lines if PROBLEM.search(line)]
    assert code == 0 and not problems, "systemd-analyze verify:\n" + "\n".join(lines)

    # The check is only worth something if it notices mistakes: a misspelt
    # directive and a bad value must both be reported.
    broken = UNIT.read_text().replace(
        "ProtectSystem=strict", "ProtectSytem=strict\nProtectHome=sometimes"
    )
    code, lines = _verify(_verifiable_copy(tmp_path, broken))
    reported = "\n".join(lines)
    assert "ProtectSytem" in reported and "sometimes" in reported, reported

    if _systemd_version() >= 250:  # --offline and --threshold arrived in 250
        result = _run(
            "security", "--offline=true", "--threshold=25", "--no-pager", str(tmp_path / UNIT.name)
        )
        assert result.returncode == 0, "exposure above 2.5:\n" + result.stdout[-2000:]


def _check_syntax_without_systemd() -> None:
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(UNIT.read_text(), source=str(UNIT))
    assert set(parser.sections()) == {"Unit", "Service", "Install"}
    units = unit()
    for section, keys in units.items():
        unknown = set(keys) - KNOWN[section]
        assert not unknown, f"[{section}] unknown directives (typo, or add to KNOWN): {unknown}"


def test_syntax_check_without_systemd_passes() -> None:
    # The fallback path runs here too, so it cannot rot where systemd-analyze exists.
    _check_syntax_without_systemd()
