"""Which CI command is the project's test and which its lint: classes found on the heldout-13 run."""

from __future__ import annotations

from pathlib import Path

from aiplane.agentsmd.analyze import analyze
from aiplane.agentsmd.commands import classify_tool


def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def _job(name: str, *runs: str, extra: str = "") -> str:
    steps = "".join(f"      - run: {run}\n" for run in runs)
    return f"  {name}:\n    runs-on: ubuntu-latest\n{extra}    steps:\n      - uses: actions/checkout@v4\n{steps}"


def _workflow(*jobs: str) -> str:
    return "on: [push, pull_request]\njobs:\n" + "".join(jobs)


def _values(facts) -> list[str]:  # noqa: ANN001
    return [f.value for f in facts]


def test_gradle_static_analysis_tasks_are_checks_not_tests(tmp_path):
    for argv, kind in ((["./gradlew", "detektMain", "detektTest"], "lint"), (["./gradlew", "checkstyleTest", "pmdTest"], "lint"),
                       (["./gradlew", "spotbugsTest"], "lint"), (["./gradlew", "ktlintTestSourceSetCheck"], "lint"),
                       (["./gradlew", "build", "-x", "detekt"], "test"), (["./gradlew", "integrationTest"], "test"),
                       (["./gradlew", "detektBaseline"], "fix")):
        resolved = classify_tool(argv)
        assert resolved is not None and resolved.kind == kind, (argv, resolved)
    root = _write(tmp_path, {
        "settings.gradle.kts": "", "gradlew": "#!/bin/sh\n",
        "build.gradle.kts": 'plugins { id("io.gitlab.arturbosch.detekt"); id("org.jlleitschuh.gradle.ktlint") }\n',
        ".github/workflows/detekt.yml": _workflow(_job("gradle", "./gradlew detektMain detektTest --continue")),
        ".github/workflows/ci.yml": _workflow(_job("gradle", "./gradlew build -x detekt")),
    })
    result = analyze(root)
    assert _values(result.test)[:1] == ["./gradlew build -x detekt"]
    assert _values(result.lint)[:1] == ["./gradlew detektMain detektTest --continue"]
