"""SARIF for GitHub code scanning, checked by the real SARIF multitool (npm `@microsoft/sarif-multitool`,
pinned in tests/e2e/package.json) with its GitHub rules (GH1001-GH1007 turned on by
tests/e2e/sarif-github.config.xml, plus the GitHub Advanced Security ingestion rules such as GH2012)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from aiplane.review.memory import fingerprint
from aiplane.review.report import FINGERPRINT_KEY, Finding, Review, render, render_sarif

ROOT = Path(__file__).resolve().parents[1]
MULTITOOL = ROOT / "tests" / "e2e" / "node_modules" / "@microsoft" / "sarif-multitool-linux" / "Sarif.Multitool"
GITHUB_CONFIG = ROOT / "tests" / "e2e" / "sarif-github.config.xml"


def _review() -> Review:
    findings = [
        Finding("src/auth/login.py", 12, 14, "security", "critical", "SQL built from user input",
                "The query concatenates `name` from the request.", "Use a bound parameter.", 0.9),
        Finding("src/auth/login.py", 40, 40, "security", "suggestion", "Token compared with ==",
                "Timing leaks the token.", None, 0.6),
        Finding("src/api/orders.py", 3, 3, "codex", "warning", "Handlers must validate input", "No schema check.",
                rule_id="API-001", source="codex", rule_link="https://codex.example.com/rules/API-001"),
        Finding("docs/read me#1.md", 0, 0, "docs", "nit", "Typo", "teh → the"),
        Finding("src/app.py", 5, 5, "quality", "warning", "Unchecked error", "The call's error is dropped.",
                rule_id="not a rule id"),
        Finding("config/.env", 1, 1, "secrets", "critical", "Committed API key", "A live key is committed.",
                discriminator="aws-1"),
    ]
    return Review("acme/shop", "a" * 40, "b" * 40, "full", ["security path"], ["security", "codex-compliance"], findings)


def test_sarif_carries_rules_fingerprints_and_security_scores():
    review = _review()
    log = render_sarif(review, "https://docs.example.com/aiplane/review.md")
    run = log["runs"][0]
    driver = run["tool"]["driver"]
    assert driver["version"] and driver["informationUri"] == "https://docs.example.com/aiplane/review.md"
    rules = {r["id"]: r for r in driver["rules"]}
    # A rule per reviewer category and per (valid) codex rule id; a made-up id falls back to the category.
    assert set(rules) == {"aiplane/security", "API-001", "aiplane/docs", "aiplane/quality", "aiplane/secrets"}
    for rule in rules.values():
        assert rule["fullDescription"]["text"] and rule["help"]["text"] and rule["help"]["markdown"]
        assert rule["helpUri"].startswith("https://")
    assert rules["API-001"]["helpUri"] == "https://codex.example.com/rules/API-001"
    assert "codex" in rules["API-001"]["properties"]["tags"]
    # The worst security finding sets the rule's score; each result carries its own too.
    assert rules["aiplane/security"]["properties"]["security-severity"] == "9.1"
    assert rules["aiplane/security"]["properties"]["tags"][0] == "security"
    assert "security-severity" in rules["aiplane/secrets"]["properties"]
    assert "security-severity" not in rules["aiplane/quality"]["properties"]
    by_title = {r["message"]["text"].split(":")[0]: r for r in run["results"]}
    assert by_title["Token compared with =="]["properties"]["security-severity"] == "4.0"
    # The memory fingerprint: code scanning and our PR threads agree on what "the same finding" is.
    for result, finding in zip(run["results"], review.ordered(), strict=True):
        assert result["partialFingerprints"] == {FINGERPRINT_KEY: fingerprint(finding)}
        assert driver["rules"][result["ruleIndex"]]["id"] == result["ruleId"]
    moved = _review()
    for f in moved.findings:
        f.start_line += 30
        f.end_line += 30
    assert [r["partialFingerprints"] for r in render_sarif(moved)["runs"][0]["results"]] == \
        [r["partialFingerprints"] for r in run["results"]]
    # Paths stay relative URI references; line 0 becomes line 1.
    docs = by_title["Typo"]["locations"][0]["physicalLocation"]
    assert docs["artifactLocation"]["uri"] == "docs/read%20me%231.md"
    assert docs["region"]["startLine"] == 1


def _multitool(path: Path, out: Path, *args: str) -> list[dict]:
    proc = subprocess.run([str(MULTITOOL), "validate", str(path), "-o", str(out), "--log", "ForceOverwrite", *args],
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(out.read_text())["runs"][0]["results"]


@pytest.mark.skipif(not MULTITOOL.exists(), reason="npm install --prefix tests/e2e brings the SARIF multitool")
def test_the_sarif_multitool_github_rules_accept_our_sarif(tmp_path):
    sarif = tmp_path / "review.sarif"
    sarif.write_text(render(_review(), "sarif"))
    github = _multitool(sarif, tmp_path / "gh.sarif", "--config", str(GITHUB_CONFIG), "--rule-kind", "Gh")
    complaints = [f"{r['ruleId']}: {r['message'].get('text') or r['message'].get('arguments')}" for r in github if r.get("level", "warning") in ("error", "warning")]
    assert complaints == []
    standard = _multitool(sarif, tmp_path / "std.sarif", "--config", str(GITHUB_CONFIG))
    complaints = [f"{r['ruleId']}: {r['message'].get('text') or r['message'].get('arguments')}" for r in standard if r.get("level", "warning") in ("error", "warning")]
    assert complaints == []


@pytest.mark.skipif(not MULTITOOL.exists(), reason="npm install --prefix tests/e2e brings the SARIF multitool")
def test_the_multitool_check_is_not_vacuous(tmp_path):
    """The same check fails SARIF that GitHub would refuse: no rule help, no text, an absolute location."""
    bad = render_sarif(_review())
    run = bad["runs"][0]
    for rule in run["tool"]["driver"]["rules"]:
        del rule["help"], rule["fullDescription"]
    run["results"][0]["message"] = {"id": "m1"}
    run["results"][1]["locations"][0]["physicalLocation"]["artifactLocation"] = {"uri": "file:///home/ci/src/auth/login.py"}
    sarif = tmp_path / "bad.sarif"
    sarif.write_text(json.dumps(bad))
    found = {r["ruleId"] for r in _multitool(sarif, tmp_path / "gh.sarif", "--config", str(GITHUB_CONFIG), "--rule-kind", "Gh")
             if r.get("level", "warning") == "error"}
    assert {"GH2012", "GH1007"} <= found
