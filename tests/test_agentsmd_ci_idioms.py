"""AGENTS.md: CI idioms read generally (each a small synthetic repository)."""

from __future__ import annotations

import json
from pathlib import Path

from aiplane.agentsmd.analyze import analyze


def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def _workflow(*steps: str, job: str = "tests", runs_on: str = "ubuntu-latest", matrix: str = "") -> str:
    body = "".join(f"      - run: {s}\n" for s in steps)
    strategy = f"    strategy:\n      matrix:\n{matrix}" if matrix else ""
    return f"on: [push, pull_request]\njobs:\n  {job}:\n    runs-on: {runs_on}\n{strategy}    steps:\n      - uses: actions/checkout@v4\n{body}"


def test_scripts_that_prepare_test_data_are_not_tests(tmp_path):
    package = {"name": "p", "scripts": {"setup-test-db": "node scripts/setup-db-tests.js", "test": "mocha test/*.test.js"},
               "devDependencies": {"mocha": "10"}}
    root = _write(tmp_path, {
        ".github/workflows/ci.yml": _workflow("python tests/fixtures/get_spec.py", "npm run setup-test-db", "npm test"),
        "package.json": json.dumps(package), "scripts/setup-db-tests.js": "", "tests/fixtures/get_spec.py": "",
        "test/a.test.js": "",
    })
    result = analyze(root)
    assert result.test[0].value == "npm test"
    assert not any("get_spec" in f.value or "setup-test" in f.value for f in result.test)


def test_tox_exec_is_classified_by_the_command_it_runs(tmp_path):
    tox = "[tox]\nenv_list = 3.12\n\n[testenv]\ncommands = pytest {posargs}\n"
    root = _write(tmp_path, {
        ".github/workflows/ci.yml": _workflow("tox exec -e 3.12 -- python scripts/update_cache.py data", "tox run -e 3.12"),
        "tox.ini": tox, "pyproject.toml": '[project]\nname = "p"\n', "scripts/update_cache.py": "", "tests/test_a.py": "",
    })
    result = analyze(root)
    assert result.test[0].value == "tox run -e 3.12"
    assert "update_cache" not in " ".join(f.value for f in result.test)


def test_a_package_test_module_and_a_mixed_tox_env_list(tmp_path):
    tox = ("[tox]\nenvlist = py312,docs,lint\n\n[testenv]\ncommands = python -bb -m pkg.test {posargs}\n\n"
           "[testenv:docs]\ncommands = sphinx-build docs docs/_build\n\n[testenv:lint]\ncommands = flake8\n")
    root = _write(tmp_path, {
        ".github/workflows/ci.yml": _workflow("python -m tox -e py312,lint"),
        "tox.ini": tox, "pkg/__init__.py": "", "pkg/test/__init__.py": "", "pkg/test/__main__.py": "",
    })
    result = analyze(root)
    assert result.test[0].value == "python -m tox -e py312,lint" and result.test[0].runs == "python -m pkg.test"
    assert result.lint[0].value == "python -m tox -e lint"  # the check env of the same CI run


def test_an_extra_tox_env_list_ranks_below_the_main_per_python_env(tmp_path):
    tox = ("[tox]\nenvlist = py312,base,docs\n\n[testenv]\ncommands = pytest {posargs}\n\n"
           "[testenv:base]\n\n[testenv:docs]\ncommands = mkdocs build\n")
    root = _write(tmp_path, {
        ".github/workflows/ci.yml": _workflow("tox -e base,docs", "tox -e py312"),
        "tox.ini": tox, "tests/test_a.py": "",
    })
    result = analyze(root)
    assert result.test[0].value == "tox -e py312"


def test_a_test_named_script_in_a_lint_job_is_not_the_suite_and_concurrently_shorthands(tmp_path):
    package = {"name": "p", "devDependencies": {"mocha": "10", "concurrently": "9"}, "scripts": {
        "test:package": "node scripts/test-package.js", "test:only": "mocha test/test.js",
        "ci:test:all": "concurrently -c green,blue 'npm:test:only' 'npm:test:leak'", "test:leak": "node test/leak/index.js",
        "lint:js": "eslint .", "lint:md": "eslint '**/*.md'", "lint": "concurrently 'npm:lint:*'"}}
    workflow = ("on: [push, pull_request]\njobs:\n  lint:\n    runs-on: ubuntu-latest\n    steps:\n      - run: npm run lint\n"
                "      - run: npm run test:package\n  test:\n    runs-on: ubuntu-latest\n    steps:\n      - run: npm run ci:test:all\n")
    root = _write(tmp_path, {".github/workflows/ci.yml": workflow, "package.json": json.dumps(package),
                             "scripts/test-package.js": "", "test/test.js": "", "test/leak/index.js": ""})
    result = analyze(root)
    assert result.test[0].value == "npm run ci:test:all" and "mocha" in result.test[0].runs
    assert result.lint[0].value == "npm run lint"  # `npm:lint:*` runs every lint script


def test_vitest_as_ci_runs_it_gets_run_so_it_ends_in_a_terminal(tmp_path):
    package = {"name": "p", "devDependencies": {"vitest": "3"}, "scripts": {"test": "pnpm lint && tsc --noEmit && vitest run"}}
    root = _write(tmp_path, {".github/workflows/ci.yml": _workflow("pnpm install", "pnpm vitest --coverage"),
                             "package.json": json.dumps(package), "pnpm-lock.yaml": "", "test/a.test.ts": ""})
    result = analyze(root)
    assert result.test[0].value == "pnpm vitest --coverage --run"


def test_a_condition_known_false_runs_its_else_branch(tmp_path):
    package = {"name": "p", "devDependencies": {"karma": "6"}, "scripts": {"test-ci": "karma start --single-run"}}
    step = ("|\n          if [ \"${{ runner.os }}\" == \"macOS\" ]; then\n            npm run test-ci -- --browsers safari\n"
            "          else\n            xvfb-run --auto-servernum npm run test-ci\n          fi")
    root = _write(tmp_path, {".github/workflows/ci.yml": _workflow(step), "package.json": json.dumps(package), "test/a.js": ""})
    result = analyze(root)
    assert result.test[0].value == "npm run test-ci"


def test_a_filtered_workspace_script_is_not_the_root_script(tmp_path):
    package = {"name": "p", "devDependencies": {"jest": "29"}, "scripts": {
        "test": "pnpm lint && pnpm test-ci", "lint": "eslint .", "test-ci": "jest",
        "test-integration": "pnpm --filter './test/integration/**' test"}}
    root = _write(tmp_path, {"package.json": json.dumps(package), "pnpm-workspace.yaml": "packages:\n  - 'test/integration/*'\n",
                             "test/integration/a/package.json": json.dumps({"name": "a", "scripts": {"test": "node t.js"}}),
                             "test/a.test.js": ""})
    from aiplane.agentsmd import entrypoints as ep
    from aiplane.agentsmd.commands import Resolver
    from aiplane.repository.tree import WorkTree
    resolver = Resolver(ep.Lazy(WorkTree(root)))
    resolved = resolver.line("pnpm run test-integration")
    assert resolved.kind == "test" and "workspaces" in resolved.flags and resolved.runs == []


def test_probes_dashboards_and_a_config_linter_ci_never_runs_are_not_printed(tmp_path):
    workflow = _workflow("golangci-lint run --help", "gofmt -l -s -w . && git diff --exit-code", "go test -race ./...", job="ci")
    root = _write(tmp_path, {".github/workflows/ci.yml": workflow, "go.mod": "module example.com/p\n\ngo 1.22\n",
                             ".golangci.yml": "linters:\n  enable: [errcheck]\n", "a.go": "package p\n", "a_test.go": "package p\n"})
    result = analyze(root)
    printed = {f.value for f in result.test + result.lint + result.build_commands}
    assert not any("--help" in c for c in printed)
    assert "golangci-lint run" not in printed  # only its config says so; CI checks with gofmt
    assert result.lint[0].value == "gofmt -l -s -w ."
    appveyor = "build_script:\n  - cmake --version\n  - cmake -S . -B build\n  - cmake --build build\n" \
               "  - ctest -C Release -D ExperimentalStart -D ExperimentalBuild -D ExperimentalSubmit\n"
    cpp = _write(tmp_path / "cpp", {"appveyor.yml": appveyor, "CMakeLists.txt": "project(p)\nenable_testing()\n", "src/a.cpp": ""})
    result = analyze(cpp)
    printed = {f.value for f in result.test + result.lint + result.build_commands}
    assert not any("Experimental" in c or "--version" in c for c in printed)


def test_pre_commit_ci_configured_in_the_hooks_file_is_ci_lint(tmp_path):
    hooks = "ci:\n  autoupdate_schedule: quarterly\nrepos:\n  - repo: https://github.com/astral-sh/ruff-pre-commit\n    rev: v0.6.0\n" \
            "    hooks:\n      - id: ruff\n"
    tox = "[tox]\nenv_list = py312,pyright\n\n[testenv]\ncommands = pytest\n\n[testenv:pyright]\ncommands = pyright\n"
    root = _write(tmp_path, {".github/workflows/ci.yml": _workflow("pytest -v"), ".pre-commit-config.yaml": hooks, "tox.ini": tox,
                             "tests/test_a.py": ""})
    result = analyze(root)
    assert result.lint[0].value == "pre-commit run --all-files" and result.lint[0].source == "ci"


def test_a_known_value_reshaped_by_echo_tr_and_cut_names_the_tox_factor(tmp_path):
    tox = "[tox]\nenvlist = py{310,312}-django52\n    base\n    docs\n\n[testenv]\ncommands = pytest {posargs}\n\n" \
          "[testenv:base]\n\n[testenv:docs]\ncommands = mkdocs build\n"
    step = "tox run -f py$(echo ${{ matrix.python-version }} | tr -d . | cut -f 1 -d '-')"
    root = _write(tmp_path, {".github/workflows/ci.yml": _workflow(step, "tox -e base,docs",
                                                                     matrix="        python-version: ['3.10', '3.12']\n"),
                             "tox.ini": tox, "tests/test_a.py": ""})
    result = analyze(root)
    assert result.test[0].value == "tox run -f py310"
    from aiplane.agentsmd.shell import parse_script
    assert parse_script("x $(echo $V | tr -d .)")[0] == []  # an unknown value stays unknown
    assert parse_script("x $(echo 3.1 | sed s/3/4/)")[0] == []  # and so does a filter other than tr and cut


def test_a_packed_types_check_and_a_declaration_build_are_not_lint(tmp_path):
    package = {"name": "p", "devDependencies": {"typescript": "5", "@arethetypeswrong/cli": "0.17"},
               "scripts": {"type-tests": "tsc -p tsconfig.test.json --noEmit"}}
    root = _write(tmp_path, {".github/workflows/ci.yml": _workflow(
        "yarn tsc -p . --noEmit false --declaration --emitDeclarationOnly --outDir dist", "yarn attw ./package.tgz --format table",
        "yarn type-tests"), "package.json": json.dumps(package), "yarn.lock": "", "tsconfig.json": "{}", "tsconfig.test.json": "{}"})
    result = analyze(root)
    assert [f.value for f in result.lint] == ["yarn type-tests"]


def test_pixi_tasks_are_entry_points_and_the_one_test_line_runs_in_their_environment(tmp_path):
    pyproject = ('[project]\nname = "p"\n\n[tool.pixi.workspace]\nchannels = ["conda-forge"]\nplatforms = ["linux-64"]\n\n'
                 '[tool.pixi.feature.test.tasks]\ntest = { cmd = "pytest -n auto --pyargs p", depends-on = ["check-import"] }\n'
                 'check-import = "python -c \'import p\'"\n\n'
                 '[tool.pixi.feature.lint.tasks]\nlint = "pre-commit run --all-files"\n')
    root = _write(tmp_path, {
        ".github/workflows/ci.yml": _workflow("pixi run -e ${{ matrix.environment }} test",
                                              matrix="        environment: [test-py312, test-py313]\n"),
        ".github/workflows/lint.yml": _workflow("pixi run --frozen -e lint lint", job="lint"),
        "pyproject.toml": pyproject, "p/__init__.py": "", "p/tests/test_a.py": "def test_one():\n    pass\n",
    })
    result = analyze(root)
    assert result.test[0].value.startswith("pixi run -e test-py31") and result.test[0].value.endswith(" test")
    assert result.test[0].runs == "pytest"
    assert result.lint[0].value == "pixi run --frozen -e lint lint"
    assert result.single_test[0].value.startswith("pixi run -e test-py31") and "pytest p/tests/test_a.py::test_one" in result.single_test[0].value


def test_pixi_toml_tasks_with_a_list_command_and_an_unknown_task(tmp_path):
    pixi = '[workspace]\nname = "c"\nchannels = ["conda-forge"]\nplatforms = ["linux-64"]\n\n[tasks]\ntest = { cmd = ["ctest", "--test-dir", "build"] }\n'
    root = _write(tmp_path, {
        ".github/workflows/ci.yml": _workflow("pixi run test", "pixi run no-such-task"),
        "pixi.toml": pixi, "CMakeLists.txt": "project(c)\nenable_testing()\n",
    })
    result = analyze(root)
    assert result.test[0].value == "pixi run test"
    assert "no-such-task" not in " ".join(f.value for f in result.test + result.lint)
