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


def test_e2e_smoke_and_packed_package_scripts_rank_below_the_whole_test_run(tmp_path):
    node = _write(tmp_path / "node", {
        "package.json": '{"name": "x", "scripts": {"test": "./scripts/test"}}\n', "pnpm-lock.yaml": "",
        "scripts/test": "#!/bin/sh\nnpx jest \"$@\"\n", "scripts/test-packed-package.ts": "console.log(1)\n",
        ".github/workflows/ci.yml": _workflow(_job("test", "node --experimental-strip-types scripts/test-packed-package.ts", "./scripts/test")),
    })
    assert _values(analyze(node).test)[:1] == ["./scripts/test"]
    go = _write(tmp_path / "go", {
        "go.mod": "module example.com/x\n\ngo 1.23\n", "x.go": "package x\n", "x_test.go": "package x\n",
        "internal/test/e2e/run.sh": "#!/bin/sh\ngo test ./internal/test/e2e/...\n", "scripts/smoke-test.sh": "#!/bin/sh\ngo test -run Smoke .\n",
        ".github/workflows/ci.yml": _workflow(_job("tests", "internal/test/e2e/run.sh", "scripts/smoke-test.sh", "go test -race ./...")),
    })
    assert _values(analyze(go).test)[:1] == ["go test -race ./..."]
    # a test script that runs the unit suite and then an end-to-end one is still the whole run
    both = _write(tmp_path / "both", {
        "go.mod": "module example.com/x\n\ngo 1.23\n", "x.go": "package x\n", "e2e/run.sh": "#!/bin/sh\ngo test ./e2e/...\n",
        "scripts/test.sh": "#!/bin/sh\ngo test ./...\n./e2e/run.sh\n",
        ".github/workflows/ci.yml": _workflow(_job("tests", "scripts/test.sh", "go vet ./...")),
    })
    assert _values(analyze(both).test)[:1] == ["scripts/test.sh"]


def test_pytest_over_several_listed_sub_folders_is_a_partial_run(tmp_path):
    assert "partial" in classify_tool(["pytest", "-sv", "tests/test_a", "tests/test_b", "tests/test_core/test_proxy.py"]).flags
    assert "partial" in classify_tool(["pytest", "tests/test_a.py::test_one"]).flags
    assert "partial" not in classify_tool(["pytest", "tests", "src"]).flags
    assert "partial" not in classify_tool(["pytest", "--ignore", "tests/slow", "tests"]).flags
    root = _write(tmp_path, {
        "pyproject.toml": '[project]\nname = "x"\n', "Makefile": "test:\n\tpytest -n 4 tests\n",
        "tests/test_a/test_x.py": "def test_x():\n    pass\n", "tests/test_b/test_y.py": "def test_y():\n    pass\n",
        ".github/workflows/server.yml": _workflow(_job("test", "pytest -sv tests/test_a tests/test_b")),
        ".github/workflows/tests.yml": _workflow(_job("unit", "make test")),
    })
    assert _values(analyze(root).test)[:1] == ["make test"]


def test_a_cross_target_matrix_row_ranks_below_a_host_run(tmp_path):
    root = _write(tmp_path, {
        "Cargo.toml": '[package]\nname = "x"\nversion = "0.1.0"\n', "src/lib.rs": "",
        "ci/test.bash": '#!/usr/bin/env bash\nset -e\n$1 test --target "$2"\n',
        ".github/workflows/ci.yml": _workflow(_job("cross", "ci/test.bash cargo ${{ matrix.target }}", extra=(
            "    strategy:\n      matrix:\n        target: [i686-pc-windows-msvc, wasm32-unknown-unknown]\n")),
            _job("stable", "cargo test --all-features")),
    })
    assert _values(analyze(root).test)[:1] == ["cargo test --all-features"]
    host = _write(tmp_path / "host", {
        "Cargo.toml": '[package]\nname = "x"\nversion = "0.1.0"\n', "src/lib.rs": "",
        "ci/test.bash": '#!/usr/bin/env bash\nset -e\n$1 test --target "$2"\n',
        ".github/workflows/ci.yml": _workflow(_job("test", "ci/test.bash cargo ${{ matrix.target }}", extra=(
            "    strategy:\n      matrix:\n        target: [i686-pc-windows-msvc, x86_64-unknown-linux-gnu]\n"))),
    })
    assert _values(analyze(host).test)[:1] == ["ci/test.bash cargo x86_64-unknown-linux-gnu"]


def test_tox_per_python_envs_running_a_project_driver_are_tests(tmp_path):
    tox = ("[tox]\nenvlist = py3{12,13}, lint\n\n[testenv]\ncommands =\n    python -m pip install -e .\n    python driver.py run_all {posargs}\n\n"
           "[testenv:lint]\ndeps = ruff\ncommands = ruff check .\n")
    root = _write(tmp_path, {
        "tox.ini": tox, "setup.py": "", "driver.py": "", "pkg/__init__.py": "",
        ".github/workflows/tests.yml": _workflow(_job("tests", "python -m tox -- -rfsEX")),
        ".github/workflows/quality.yml": _workflow(_job("lint", "python -m tox -e lint")),
    })
    result = analyze(root)
    assert _values(result.test)[:1] == ["python -m tox -- -rfsEX"]
    assert _values(result.lint)[:1] == ["python -m tox -e lint"]


def test_a_script_run_in_its_install_mode_is_not_the_check(tmp_path):
    vet = '#!/bin/bash\nif [[ "$1" = "-install" ]]; then\n  go install golang.org/x/tools/cmd/goimports@latest\n  exit 0\nfi\ngo vet ./...\n'
    root = _write(tmp_path, {
        "go.mod": "module example.com/x\n\ngo 1.23\n", "x.go": "package x\n", "scripts/vet.sh": vet,
        ".github/workflows/ci.yml": _workflow(_job("tests", "./scripts/vet.sh -install", "./scripts/vet.sh", "go test ./...")),
    })
    assert _values(analyze(root).lint)[:1] == ["./scripts/vet.sh"]
