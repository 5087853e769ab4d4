"""`sealgate policy check | explain | test` and `check-config` on packs."""

from __future__ import annotations

import shutil
from pathlib import Path

from click.testing import CliRunner

from gateway.cli import main
from tests.support.gateway import POLICIES

CASES = Path(__file__).parent / "data" / "policy"
PACKS = ["--pack", str(POLICIES / "baseline.toml"), "--pack", str(POLICIES / "nl-healthcare.toml")]
NO_CONFIG = ["-c", "/nonexistent/sealgate.toml"]


def run(*args: str):
    return CliRunner().invoke(main, list(args))


def test_check_lists_the_rules_of_good_packs():
    result = run("policy", "check", *PACKS, *NO_CONFIG)
    assert result.exit_code == 0, result.output
    assert "ok: 10 rules from 2 pack file(s)" in result.output
    assert "internal-recipients" in result.output and "bsn" in result.output


def test_check_names_file_rule_and_key_of_every_problem(tmp_path):
    pack = tmp_path / "broken.toml"
    pack.write_text(
        '[[rules]]\nname = "cards"\naction = "protect"\nwhen.detector = "card"\n\n'
        '[[rules]]\nname = "subject"\naction = "protect"\nwhen.subject_matches = "(?<=x)y"\n'
    )
    result = run("policy", "check", "--pack", str(pack), *NO_CONFIG)
    assert result.exit_code == 2
    assert f"{pack}: rules[0] (cards): when.detector.name: unknown detector 'card'" in result.output
    assert f"{pack}: rules[1] (subject): when.subject_matches: not a usable regular" in (
        result.output
    )


def test_check_config_reports_pack_problems(tmp_path):
    pack = tmp_path / "broken.toml"
    pack.write_text('[[rules]]\nname = "x"\naction = "protect"\nwhen.nope = 1\n')
    config = tmp_path / "sealgate.toml"
    config.write_text(f'[policy]\npacks = ["{pack}"]\n')
    result = run("check-config", str(config))
    assert result.exit_code == 2
    assert f"policy.packs: {pack}: rules[0] (x): when.nope: unknown condition" in result.output


def test_policy_test_passes_the_shipped_examples():
    result = run("policy", "test", str(CASES), *PACKS, *NO_CONFIG)
    assert result.exit_code == 0, result.output
    assert "3 passed, 0 failed" in result.output


def test_policy_test_reports_a_wrong_expectation(tmp_path):
    cases = tmp_path / "cases"
    shutil.copytree(CASES, cases)
    (cases / "lunch.expect.toml").write_text(
        'from = "zoe@example.org"\n[expect]\n"bob@example.net" = "protect"\n'
    )
    result = run("policy", "test", str(cases), *PACKS, *NO_CONFIG)
    assert result.exit_code == 1
    assert "FAIL lunch.eml" in result.output
    assert "bob@example.net: expected protect, got relay (no rule)" in result.output
    assert "2 passed, 1 failed" in result.output


def test_explain_prints_each_recipient_with_reasons():
    result = run(
        "policy", "explain", str(CASES / "referral.eml"), "--from", "zoe@example.org",
        "--to", "bob@example.net", "--to", "carol@example.org", *PACKS, *NO_CONFIG,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[:2] == [
        "bob@example.net: protect",
        "  bsn -> protect: detector bsn: 1 hits, 1 distinct, in body",
    ]
    assert "carol@example.org: relay" in result.output
    assert "111222333" not in result.output
