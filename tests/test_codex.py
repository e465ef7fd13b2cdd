"""The Engineering Codex: validation, the skill, deterministic checks, audits with consensus, and reviews citing rule IDs."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from aiplane.codex.rules import load
from aiplane.codex.skill import validate_skill, write_skill
from tests.conftest import AIPLANE, clean_env
from tests.test_review_deterministic import Repo

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "codex"

RULE = """---
id: {id}
title: {title}
statement: "If you write code, follow rule {id} so that tests can tell."
rationale: Because consistency makes reviews faster and defects rarer.
severity: warning
scope: {{languages: [python], globs: ["*.py"]}}
owner: group:default/platform
source: https://engineering.example.com/rfc/{id}
check: {{regex: 'FORBIDDEN_{n}', message: forbidden}}
---
"""


def _codex(root: Path, count: int) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for n in range(count):
        (root / f"R{n}.md").write_text(RULE.format(id=f"GEN-PY-{n:03d}", title=f"Rule number {n}", n=n))
    return root


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([AIPLANE, "codex", *args], env=clean_env(**env), capture_output=True, text=True, timeout=120)


def test_example_codex_is_valid():
    result = _cli("validate", str(EXAMPLE))
    assert result.returncode == 0 and "12 rules" in result.stdout
    languages = {lang for rule in load(EXAMPLE).rules for lang in rule.scope.languages}
    assert {"python", "typescript", "go", "rust"} <= languages


@pytest.mark.parametrize(
    "text,fragment",
    [
        (RULE.format(id="bad-id", title="Lower case id", n=1), "R.md: id: String should match pattern"),
        (RULE.format(id="GEN-PY-001", title="x", n=1).replace("severity: warning\n", ""), "R.md: severity: Field required"),
        (RULE.format(id="GEN-PY-001", title="Bad glob", n=1).replace('"*.py"', '"../*.py"'), "R.md: scope: bad glob '../*.py'"),
        (RULE.format(id="GEN-PY-001", title="Bad regex", n=1).replace("FORBIDDEN_1", "(unclosed"), "R.md: check.RegexCheck.regex: invalid regular expression"),
        (RULE.format(id="GEN-PY-001", title="Broken link", n=1) + "See [the guide](missing.md).\n", "R.md: body: broken link to missing.md"),
        (RULE.format(id="GEN-PY-001", title="Bad source", n=1).replace("https://engineering.example.com/rfc/GEN-PY-001", "somewhere"), "R.md: source: must be a URL"),
        ("no frontmatter here\n", "R.md: a rule file starts with YAML frontmatter"),
    ],
)
def test_validation_names_file_and_field(tmp_path, text, fragment):
    (tmp_path / "R.md").write_text(text)
    result = _cli("validate", str(tmp_path))
    assert result.returncode == 1 and fragment in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_duplicate_ids(tmp_path):
    (tmp_path / "a.md").write_text(RULE.format(id="GEN-PY-001", title="First", n=1))
    (tmp_path / "b.md").write_text(RULE.format(id="GEN-PY-001", title="Second", n=2))
    result = _cli("validate", str(tmp_path))
    assert result.returncode == 1 and "b.md: id: duplicate rule id GEN-PY-001 (also in a.md)" in result.stderr


def test_skill_is_valid_and_discloses_progressively(tmp_path):
    out = tmp_path / "skills"
    assert _cli("skill", str(EXAMPLE), "-o", str(out)).returncode == 0
    skill = out / "engineering-codex"
    assert validate_skill(skill) == []
    index = (skill / "SKILL.md").read_text()
    assert "ERR-RUST-01: No unwrap() in library code [rust]" in index
    assert "unwrap() turns a recoverable error" not in index  # rationale lives in references/
    assert "unwrap() turns a recoverable error" in (skill / "references" / "rust.md").read_text()

    sizes = {}
    for count in (10, 200):
        codex = load(_codex(tmp_path / f"codex{count}", count))
        assert write_skill(codex, tmp_path / f"skill{count}") == []
        sizes[count] = len((tmp_path / f"skill{count}" / "engineering-codex" / "SKILL.md").read_text().splitlines())
    assert sizes[200] - sizes[10] == 190 and sizes[200] < 500  # one line per rule, nothing more

    bad = tmp_path / "bad.py"
    bad.write_text("try:\n    pass\nexcept:\n    pass\n")
    check = subprocess.run([sys.executable, str(skill / "scripts" / "check.py"), str(bad)], capture_output=True, text=True)
    assert check.returncode == 1 and "ERR-PY-01" in check.stdout


def test_skill_refuses_bad_names(tmp_path):
    result = _cli("skill", str(EXAMPLE), "-o", str(tmp_path), "--name", "Bad--Name")
    assert result.returncode == 1 and not any(tmp_path.iterdir())


def _violating_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "service"
    (repo / "src").mkdir(parents=True)
    (repo / "src" / "api.py").write_text("import requests\n\ndef get():\n    try:\n        return requests.get('https://x', verify=False)\n    except:\n        return None\n")
    for i in range(9):
        (repo / "src" / f"ok_{i}.py").write_text("def f():\n    return 1\n")
    (repo / "src" / "noisy.py").write_text("print('debug')\n")
    (repo / "requirements.txt").write_text("requests==2.32.3\nflask\n")
    (repo / "main.go").write_text("package main\n\nfunc main() {\n\t_ = run()\n}\n")
    return repo


def test_audit_deterministic_rules(tmp_path):
    repo = _violating_repo(tmp_path)
    result = _cli("audit", str(repo), "--rules", str(EXAMPLE), "--format", "json", AIPLANE_DATA_DIR=str(tmp_path / "d"))
    assert result.returncode == 0, result.stderr
    by_id = {r["rule_id"]: r for r in json.loads(result.stdout)["results"]}
    assert by_id["SEC-PY-01"]["status"] == "PARTIAL"  # 1 of 11 python files
    assert by_id["SEC-PY-01"]["evidence"][0].startswith("src/api.py:5")
    assert by_id["ERR-PY-01"]["status"] == "PARTIAL" and by_id["ERR-PY-01"]["remediation"]
    assert by_id["DEP-GEN-01"]["status"] == "NON-COMPLIANT" and by_id["DEP-GEN-01"]["evidence"] == ["requirements.txt:2: flask"]
    assert by_id["ERR-GO-02"]["status"] == "NON-COMPLIANT"
    assert by_id["ERR-RUST-01"]["status"] == "COMPLIANT" and by_id["ERR-RUST-01"]["files_in_scope"] == 0
    assert by_id["TEST-GEN-01"]["status"] == "NOT ASSESSED" and "no model" in by_id["TEST-GEN-01"]["violation"]
    markdown = _cli("audit", str(repo), "--rules", str(EXAMPLE), AIPLANE_DATA_DIR=str(tmp_path / "d")).stdout
    assert markdown.startswith("# Codex audit of service") and "| SEC-PY-01 | Keep TLS verification on | critical | PARTIAL |" in markdown


def test_audit_consensus_and_disagreement(tmp_path, model):
    server, _state = model
    repo = _violating_repo(tmp_path)
    env = {
        "AIPLANE_DATA_DIR": str(tmp_path / "d"),
        "AIPLANE_LLM__MODELS__SPECIALIST__BASE_URL": server.url + "/v1",
        "AIPLANE_LLM__MODELS__SPECIALIST__MODEL": "gpt-4o-mini",
        "AIPLANE_LLM__MODELS__SPECIALIST__API_KEY": "sk-audit",
    }
    result = _cli("audit", str(repo), "--rules", str(EXAMPLE), "--format", "json", **env)
    by_id = {r["rule_id"]: r for r in json.loads(result.stdout)["results"]}
    agreed = by_id["TEST-GEN-01"]
    assert agreed["status"] == "NON-COMPLIANT" and agreed["agreement"] == 1.0 and agreed["votes"] == {"NON-COMPLIANT": 3}
    split = by_id["ERR-GO-01"]
    assert split["agreement"] == pytest.approx(0.33) and sum(split["votes"].values()) == 3
    assert "passes disagree" in split["violation"]


def test_ask_without_a_model_lists_matching_rules(tmp_path):
    result = _cli("ask", "how should I handle errors in my Rust service?", "--rules", str(EXAMPLE), AIPLANE_DATA_DIR=str(tmp_path))
    assert result.returncode == 0 and "No model is configured" in result.stdout
    assert result.stdout.index("ERR-RUST-01") < result.stdout.index("ERR-PY-01")


def test_review_findings_cite_rule_ids(tmp_path, model):
    server, _state = model
    repo = Repo(tmp_path / "repo")
    repo.write({"app.py": "def main():\n    try:\n        return 1\n    except:\n        return 2\n", "src/auth/token.py": "X = 1\n"})
    repo.commit("bare except")
    codex = tmp_path / "codex"
    shutil.copytree(EXAMPLE, codex)
    env = clean_env(
        AIPLANE_DATA_DIR=str(tmp_path / "d"), AIPLANE_CODEX__PATH=str(codex), AIPLANE_CODEX__LINK_BASE="https://git.example.com/codex/",
        AIPLANE_LLM__MODELS__SPECIALIST__BASE_URL=server.url + "/v1", AIPLANE_LLM__MODELS__SPECIALIST__MODEL="gpt-4o-mini",
        AIPLANE_LLM__MODELS__SPECIALIST__API_KEY="sk-x",
    )
    result = subprocess.run([AIPLANE, "review", "--repo", str(repo.path), "--format", "json"], env=env, capture_output=True, text=True, timeout=180)
    review = json.loads(result.stdout)
    cited = {f["rule_id"]: f for f in review["findings"] if f["rule_id"]}
    assert cited["ERR-PY-01"]["start_line"] == 4 and cited["ERR-PY-01"]["source"] == "codex"
    assert cited["ERR-PY-01"]["rule_link"] == "https://git.example.com/codex/python/ERR-PY-01.md"
    assert "codex-compliance" in review["agents"]
    ai = [f for f in review["findings"] if f["source"] == "codex-compliance"]
    assert ai and ai[0]["rule_id"] == "TEST-GEN-01" and ai[0]["rule_link"].endswith("general/TEST-GEN-01.md")
    markdown = subprocess.run([AIPLANE, "review", "--repo", str(repo.path), "--no-fail-on-request-changes"], env=env, capture_output=True, text=True, timeout=180).stdout
    assert "[ERR-PY-01](https://git.example.com/codex/python/ERR-PY-01.md)" in markdown
