"""AGENTS.md: CI scripts read as a shell reads them (expansions, arrays, conditions, groups, xargs),
and the choice among what CI runs (lint before type check, per-package lines, step names, Windows lines)."""

from __future__ import annotations

from pathlib import Path

from aiplane.agentsmd.analyze import analyze
from aiplane.agentsmd.generate import commands_in, render
from aiplane.agentsmd.shell import expand, parse_script


def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def _argvs(script: str, env: dict[str, str] | None = None) -> list[list[str]]:
    return [s.argv for s in parse_script(script, env or {})[0]]


# -- 1. parameter expansion ------------------------------------------------------------------------------


def test_parameter_expansions_are_resolved_when_the_value_is_known():
    env = {"V": "pypy3.10-v7.3.19", "P": "3.12", "E": ""}
    assert expand("${V%-*}", env) == "pypy3.10"
    assert expand("${V%%.*}", env) == "pypy3"
    assert expand("${V#py}", env) == "py3.10-v7.3.19"
    assert expand("${V##*-}", env) == "v7.3.19"
    assert expand("py${P//./}", env) == "py312"
    assert expand("${P/./_}", env) == "3_12"
    assert expand("${V/#pypy/cp}", env) == "cp3.10-v7.3.19"
    assert expand("${P:0:1}", env) == "3"
    assert expand("${E:-x}", env) == "x" and expand("${E-x}", env) == ""
    assert expand("${P:+set}", env) == "set"
    assert expand("${P^^}", {"P": "abc"}) == "ABC"
    # unknown: the word is not stated as if it were literal
    for word in ("${NOPE%-*}", "${NOPE//./}", "$NOPE", "${V@Q}", "$(date)"):
        assert expand(word, env) is None
    # a value that is itself unknown stays unknown through any expansion
    assert expand("${U%-*}", {"U": "$__unknown__"}) is None


def test_a_tox_env_built_from_the_matrix_value_wins_over_special_envs(tmp_path):
    workflow = """
on: [push, pull_request]
jobs:
  pytest:
    runs-on: ubuntu-latest
    strategy:
      matrix:
        py: ["pypy3.10-v7.3.19", "3.13", "3.12"]
    steps:
      - uses: actions/checkout@v4
      - name: Run test suite via tox
        shell: bash
        env:
          RAW: ${{ matrix.py }}
        run: |
          PYTHON_VERSION=$RAW
          BASE=${PYTHON_VERSION%-*}
          tox -vv --notest -e $BASE
          tox -e $BASE --skip-pkg-install
      - name: Run path test
        if: matrix.py == '3.12'
        run: tox -e path
      - run: tox -e "$UNSET_BY_CI"
"""
    tox = """env_list = ["path", { product = [{ prefix = "3.", start = 12, stop = 13 }] }]
[env_run_base]
commands = [["pytest"]]
[env.path]
commands = [["pytest", "tests/test_path.py"]]
"""
    root = _write(tmp_path, {".github/workflows/test.yml": workflow, "tox.toml": tox, "pyproject.toml": '[project]\nname = "p"\n'})
    result = analyze(root)
    assert result.test[0].value == "tox -e 3.13"  # the per-python env, CPython first; not `tox -e path`
    printed = commands_in(render(result, "p"))
    assert not any("$" in c or c.endswith("-e") or "UNSET" in c for c in printed)


# -- 3. groups and xargs ---------------------------------------------------------------------------------


def test_a_group_piped_into_xargs_clang_format_is_a_format_check(tmp_path):
    workflow = """
on: [push, pull_request]
env:
  CLANG_VERSION: "20"
jobs:
  format:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - run: |
          {
            find include -type f
            find tests -type f \\( -name '*.cpp' -o -name '*.h' \\)
          } | xargs clang-format-${{ env.CLANG_VERSION }} --dry-run --Werror
"""
    root = _write(tmp_path, {".github/workflows/format.yml": workflow, "CMakeLists.txt": "project(x)\nenable_testing()\n",
                             "include/x.h": "", "tests/t.cpp": ""})
    result = analyze(root)
    assert [(f.value, f.kind) for f in result.lint] == [
        ("{ find include -type f; find tests -type f '(' -name '*.cpp' -o -name '*.h' ')'; } | xargs clang-format-20 --dry-run --Werror",
         "format")]
    assert result.lint[0].value in commands_in(render(result, "x"))


def test_pipelines_into_xargs_keep_their_file_list():
    found = parse_script("find . -name '*.go' | xargs gofmt -l\ngit ls-files '*.py' | xargs -r black --check\n"
                         "{ find a; find b; } | xargs -n1 clang-format -n\ncurl -s x | xargs rm\n"
                         "{ make a; make b; } | xargs foo\n")[0]
    assert [(s.feed, s.xargs, s.argv) for s in found] == [
        ([["find", ".", "-name", "*.go"]], ["xargs"], ["gofmt", "-l"]),
        ([["git", "ls-files", "*.py"]], ["xargs", "-r"], ["black", "--check"]),
        ([["find", "a"], ["find", "b"]], ["xargs", "-n1"], ["clang-format", "-n"]),
    ]  # a pipe from anything but a file listing is not one command
    assert _argvs("{ make a; make b; }\n{\n  cargo fmt --check\n} > log\n{ cargo test; } || true\n") == [
        ["make", "a"], ["make", "b"], ["cargo", "fmt", "--check"]]


# -- 4. conditions ---------------------------------------------------------------------------------------


def test_conditions_are_commands_ci_runs():
    script = """
if pytest -q tests; then
  echo passed
fi
if ! npm run lint; then
  echo "lint failed"
  exit 1
fi
if [ -f setup.py ] && command -v ruff; then ruff check .; fi
while cargo test --no-fail-fast; do break; done
! mypy src
make a && make b
"""
    assert _argvs(script) == [["pytest", "-q", "tests"], ["echo", "passed"], ["npm", "run", "lint"], ["echo", "lint failed"],
                              ["ruff", "check", "."], ["cargo", "test", "--no-fail-fast"], ["mypy", "src"], ["make", "a"], ["make", "b"]]


# -- 5. arrays -------------------------------------------------------------------------------------------


def test_bash_arrays_are_assignments_and_expand_to_their_words():
    script = """
ARGS=(--cov=src "-k not slow")
ARGS+=(-x)
FLAGS=(
  --strict   # a comment
  --color=yes
)
pytest "${ARGS[@]}" tests
mypy "${FLAGS[@]}"
ruff check "${UNKNOWN[@]}"
EMPTY=()
go test "${EMPTY[@]}" ./...
"""
    # `ruff check "${UNKNOWN[@]}"` is not stated: its words are unknown
    assert _argvs(script) == [["pytest", "--cov=src", "-k not slow", "-x", "tests"], ["mypy", "--strict", "--color=yes"],
                              ["go", "test", "./..."]]
    assert not any(a and a[0].startswith(("(", "ARGS")) for a in _argvs("ARGS=(a b)\nARGS+=(c)\nX+=y\n"))


# -- 2. lint before type check ---------------------------------------------------------------------------


def test_ci_linter_is_the_lint_line_and_a_type_check_comes_after_it(tmp_path):
    workflow = """
on: [push, pull_request]
jobs:
  test:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - run: pnpm test:typings
      - run: pnpm test
  deno:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - run: pnpm lint:deno
      - run: pnpm run lint --fix
      - run: pnpm run check:packaging
"""
    package = """{"name": "k", "packageManager": "pnpm@9.0.0", "scripts": {"test": "mocha", "test:typings": "tsd",
      "lint": "eslint .", "lint:deno": "deno lint", "check:packaging": "publint --strict"},
      "devDependencies": {"mocha": "1", "tsd": "1", "eslint": "1", "publint": "1"}}"""
    root = _write(tmp_path, {".github/workflows/test.yml": workflow, "package.json": package, "pnpm-lock.yaml": "", "test/a.test.js": ""})
    result = analyze(root)
    assert [(f.value, f.kind) for f in result.lint][:2] == [("pnpm lint:deno", "lint"), ("pnpm test:typings", "typecheck")]
    assert "pnpm run lint --fix" not in [f.value for f in result.lint]  # told to rewrite: a fix, not a check
    # with only a type check in CI, it is the first check
    only_types = workflow.split("  deno:")[0]
    other = _write(tmp_path / "other", {".github/workflows/test.yml": only_types, "package.json": package, "pnpm-lock.yaml": ""})
    assert analyze(other).lint[0].value == "pnpm test:typings"


# -- 8. a step's name as weak evidence -------------------------------------------------------------------


def test_a_step_named_as_a_check_classifies_its_only_ambiguous_command(tmp_path):
    config = """
version: 2.1
commands:
  verify-formatting:
    steps:
      - run:
          name: 'Verify formatting'
          command: |
            scripts/no-git-changes.sh
jobs:
  test:
    docker: [{image: 'cimg/openjdk:21.0'}]
    steps:
      - checkout
      - run:
          name: 'Test'
          command: ./mvnw -B verify
      - verify-formatting
      - run:
          name: 'Lint and test the docs'
          command: scripts/docs.sh
"""
    workflow = """
on: [push, pull_request]
jobs:
  perf:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - name: Performance measurement of type check
        run: scripts/generate.sh
      - name: Lint
        run: |
          scripts/prepare.sh
          Severity = @(Error, Warning)
"""
    script = "#!/bin/sh\nif [ -z \"$(git status --porcelain)\" ]; then echo ok; else exit 1; fi\n"
    root = _write(tmp_path, {".circleci/config.yml": config, ".github/workflows/perf.yml": workflow, "pom.xml": "<project/>",
                             "mvnw": "#!/bin/sh\n", "scripts/no-git-changes.sh": script, "scripts/docs.sh": "#!/bin/sh\necho\n",
                             "scripts/generate.sh": "#!/bin/sh\necho\n", "scripts/prepare.sh": "#!/bin/sh\necho\n",
                             "src/test/java/ATest.java": "class ATest {}\n"})
    result = analyze(root)
    assert [(f.value, f.kind) for f in result.lint] == [("scripts/no-git-changes.sh", "format")]
    assert result.test[0].value == "./mvnw -B verify"


# -- 7. Windows lines ------------------------------------------------------------------------------------


def test_windows_paths_map_to_the_sh_sibling_and_never_print_a_backslash(tmp_path):
    appveyor = """
image: Visual Studio 2022
test_script:
  - cmd: .\\build.cmd test
  - cmd: scripts\\lint.bat
"""
    files = {"appveyor.yml": appveyor, "build.cmd": "@echo off\r\ndotnet test\r\n", "build.sh": "#!/bin/sh\ndotnet test\n",
             "scripts/lint.bat": "dotnet format --verify-no-changes\r\n", "x.sln": "", "src/X/X.csproj": "<Project/>",
             "test/X.Tests/X.Tests.csproj": "<Project/>"}
    root = _write(tmp_path, files)
    result = analyze(root)
    assert result.test[0].value == "./build.sh test"
    printed = commands_in(render(result, "x"))
    assert printed and not any("\\\\" in c for c in printed)
    # without a sibling, a batch file is not renamed into one that does not exist
    (root / "build.sh").unlink()
    assert not any(c.startswith("./build.sh") or "\\\\" in c for c in commands_in(render(analyze(root), "x")))


# -- 6. per-package lines a root command covers ----------------------------------------------------------


def test_per_package_lint_lines_collapse_into_the_root_command_that_runs_them(tmp_path):
    root_package = """{"name": "mono", "packageManager": "pnpm@9.0.0", "scripts": {"test": "vitest run", "lint": "turbo lint",
      "typecheck-packages": "pnpm run --parallel --filter=./packages/* typecheck"}, "devDependencies": {"vitest": "1", "turbo": "1"}}"""
    files = {"package.json": root_package, "pnpm-lock.yaml": "", "pnpm-workspace.yaml": "packages:\n  - packages/*\n  - examples/*\n",
             "test/a.test.ts": ""}
    for folder in ("packages/a", "packages/b", "examples/x", "examples/y"):
        name = folder.replace("/", "-")
        files[f"{folder}/package.json"] = ('{"name": "%s", "scripts": {"lint": "eslint .", "typecheck": "tsc --noEmit"},'
                                           ' "devDependencies": {"eslint": "1", "typescript": "1"}}') % name
    root = _write(tmp_path, files)
    result = analyze(root)
    text = render(result, "mono")
    assert [(f.value, f.kind) for f in result.lint] == [("pnpm run lint", "lint"), ("pnpm run typecheck-packages", "typecheck")]
    assert "`pnpm run typecheck-packages` (runs it in every package)" in text  # the root command, not the packages' name
    lines = {p.root: [f.value for f in p.lint] for p in result.packages}
    assert lines["packages/a"] == [] and lines["packages/b"] == []  # lint and typecheck both run from the root
    assert lines["examples/x"] == ["pnpm run typecheck"]  # the root's typecheck is filtered to packages/*
    assert text.count("pnpm run lint") == 1
