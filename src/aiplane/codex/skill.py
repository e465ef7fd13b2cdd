"""Emitting the codex as an Agent Skills folder, with progressive disclosure.

SKILL.md carries one line per rule (id, title, where it applies); the full rules live in
references/<domain>.md and load only when an agent asks for them; scripts/ holds the
deterministic checks as data plus a small runner.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import yaml

from aiplane.codex.rules import Codex, Rule
from aiplane.frontmatter import load_yaml, split_frontmatter

SKILL_NAME = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
MAX_BODY_LINES = 500

CHECK_RUNNER = '''"""Run the codex's deterministic checks: python check.py PATH...  (exit 1 on violations)."""
import fnmatch, json, pathlib, re, sys

RULES = json.loads(pathlib.Path(__file__).with_name("checks.json").read_text())
found = 0
for target in sys.argv[1:] or ["."]:
    root = pathlib.Path(target)
    for path in [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file() and ".git" not in p.parts):
        rel = path.as_posix()
        for rule in RULES:
            if not any(fnmatch.fnmatch(rel, g) or fnmatch.fnmatch(path.name, g) for g in rule["globs"]):
                continue
            try:
                lines = path.read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeDecodeError):
                continue
            for number, line in enumerate(lines, 1):
                if re.search(rule["regex"], line):
                    found += 1
                    print(f"{rel}:{number}: {rule['id']} {rule['message']}")
sys.exit(1 if found else 0)
'''


class SkillError(Exception):
    pass


def _where(rule: Rule) -> str:
    languages = ", ".join(rule.scope.languages)
    return languages or ", ".join(rule.scope.globs)


# Above this many rules, SKILL.md lists domains and each reference file carries its own index.
MAX_INDEXED_RULES = 300


def render_skill_md(codex: Codex, name: str, description: str) -> str:
    lines = [
        "---",
        f"name: {name}",
        f"description: {json.dumps(description)}",
        "---",
        "",
        "# Engineering Codex",
        "",
        "Each line is one rule: ID, title, where it applies. Before writing or changing code that a rule",
        "covers, read the rule in full from `references/<domain>.md` (search for its ID). Cite rule IDs",
        "when you explain a choice. `scripts/check.py PATH` runs the deterministic checks.",
        "",
    ]
    domains = codex.by_domain()
    if len(codex.active()) > MAX_INDEXED_RULES:
        lines.append("The codex is large: each reference file starts with its own one-line-per-rule index.")
        lines.append("")
        for domain, rules in domains.items():
            active = [r for r in rules if r.lifecycle == "active"]
            prefixes = sorted({r.id.rsplit("-", 1)[0] for r in active})
            lines.append(f"- {domain}: {len(active)} rules ({', '.join(prefixes[:12])}) in references/{domain}.md")
        return "\n".join(lines) + "\n"
    for domain, rules in domains.items():
        lines.append(f"## {domain} (references/{domain}.md)")
        lines.extend(f"- {r.id}: {r.title} [{_where(r)}]" for r in rules if r.lifecycle == "active")
        lines.append("")
    return "\n".join(lines)


def render_reference(domain: str, rules: list[Rule]) -> str:
    parts = [f"# {domain} rules", ""]
    parts += [f"- {r.id}: {r.title}" for r in rules] + [""]
    for rule in rules:
        parts += [
            f"## {rule.id}: {rule.title}",
            "",
            f"**Rule.** {rule.statement.strip()}",
            "",
            f"**Why.** {rule.rationale.strip()}",
            "",
            f"Severity: {rule.severity} · Applies to: {_where(rule)} · Owner: {rule.owner} · Lifecycle: {rule.lifecycle} · Source: {rule.source}",
            "",
        ]
        if rule.body:
            parts += [rule.body, ""]
    return "\n".join(parts)


def validate_skill(folder: Path) -> list[str]:
    """The Agent Skills format rules: name pattern and folder match, description length, body size."""
    problems = []
    skill = folder / "SKILL.md"
    if not skill.is_file():
        return ["SKILL.md is missing"]
    text = skill.read_text(encoding="utf-8")
    try:
        front, body, _ = split_frontmatter(text)
        data = load_yaml(front or "") or {}
    except (ValueError, yaml.YAMLError) as exc:
        return [f"frontmatter is not valid YAML: {getattr(exc, 'problem', None) or exc}"]
    if not isinstance(data, dict):
        return ["frontmatter must be a YAML mapping of keys to values"]
    name, description = data.get("name"), data.get("description")
    if not isinstance(name, str) or not (1 <= len(name) <= 64) or not SKILL_NAME.match(name):
        problems.append("name must be 1-64 chars of a-z0-9 and single hyphens")
    elif name != folder.name:
        problems.append(f"name '{name}' must equal the folder name '{folder.name}'")
    if not isinstance(description, str) or not (1 <= len(description) <= 1024):
        problems.append("description must be 1-1024 characters")
    if len(body.splitlines()) >= MAX_BODY_LINES:
        problems.append(f"SKILL.md body has {len(body.splitlines())} lines; keep it under {MAX_BODY_LINES}")
    for sub in folder.iterdir():
        if sub.is_dir() and sub.name not in ("references", "scripts", "assets"):
            problems.append(f"unexpected folder {sub.name}/ (allowed: references, scripts, assets)")
        if sub.is_dir() and any(p.is_dir() for p in sub.iterdir()):
            problems.append(f"{sub.name}/ must be one level deep")
    return problems


def write_skill(codex: Codex, out: Path, name: str = "engineering-codex", description: str | None = None) -> list[str]:
    if not SKILL_NAME.match(name):
        raise SkillError("skill name must be lower-case words joined by single hyphens")
    description = description or (
        "The organisation's engineering rules (error handling, secrets, logging, testing, dependencies) with "
        "stable IDs. Use when writing, changing or reviewing code, to follow the rules and cite their IDs."
    )
    target = out if out.name == name else out / name
    staging = target.with_name(target.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "references").mkdir(parents=True)
    (staging / "scripts").mkdir()
    (staging / "SKILL.md").write_text(render_skill_md(codex, name, description), encoding="utf-8")
    for domain, rules in codex.by_domain().items():
        (staging / "references" / f"{domain}.md").write_text(render_reference(domain, rules), encoding="utf-8")
    checks = [
        {"id": r.id, "globs": r.scope.globs, "regex": r.check.regex, "message": r.check.message or r.title}  # type: ignore[union-attr]
        for r in codex.active()
        if r.deterministic
    ]
    (staging / "scripts" / "checks.json").write_text(json.dumps(checks, indent=1), encoding="utf-8")
    (staging / "scripts" / "check.py").write_text(CHECK_RUNNER, encoding="utf-8")
    problems = _validate_staged(staging, name)
    if problems:
        shutil.rmtree(staging, ignore_errors=True)
        return problems
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return []


def _validate_staged(staging: Path, name: str) -> list[str]:
    # Validate as if the folder already had its final name.
    problems = validate_skill(staging)
    return [p for p in problems if not p.startswith(f"name '{name}' must equal")]
