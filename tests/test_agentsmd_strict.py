"""AGENTS.md: strict readings of printed commands (does it work as written, is it the main run?),
each on a small synthetic repository."""

from __future__ import annotations

from pathlib import Path

from aiplane.agentsmd.analyze import analyze
from aiplane.agentsmd.generate import commands_in, render


def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def _printed(root: Path) -> list[str]:
    return commands_in(render(analyze(root), root.name))


_POM = "<project><modelVersion>4.0.0</modelVersion><groupId>g</groupId><artifactId>a</artifactId><version>1</version></project>\n"


def _windows_job(run: str, shell: str = "", env: str = "") -> str:
    shell_line = f"        shell: {shell}\n" if shell else ""
    return ("on: [push, pull_request]\n" + env + "jobs:\n  windows:\n    runs-on: windows-latest\n    steps:\n"
            "      - uses: actions/checkout@v4\n      - name: Test\n" + shell_line + f"        run: {run}\n")


def test_windows_variables_are_resolved_from_the_env_or_the_command_is_dropped(tmp_path):
    env = "env:\n  MAVEN_ARGS: -B --no-transfer-progress\n"
    for index, (run, shell) in enumerate([("./mvnw %MAVEN_ARGS% install", ""), ("./mvnw %maven_args% install", "cmd"),
                                          ("./mvnw !MAVEN_ARGS! install", "cmd"), ("./mvnw $env:MAVEN_ARGS install", "pwsh"),
                                          ("./mvnw ${env:MAVEN_ARGS} install", "pwsh")]):
        root = _write(tmp_path / f"known{index}", {".github/workflows/windows.yml": _windows_job(run, shell, env), "pom.xml": _POM,
                                                   "mvnw": "#!/bin/sh\n", "src/test/java/ATest.java": "class ATest {}\n"})
        assert analyze(root).test[0].value == "./mvnw -B --no-transfer-progress install", run
        root = _write(tmp_path / f"unknown{index}", {".github/workflows/windows.yml": _windows_job(run, shell), "pom.xml": _POM,
                                                     "mvnw": "#!/bin/sh\n", "src/test/java/ATest.java": "class ATest {}\n"})
        printed = _printed(root)
        assert not any("MAVEN_ARGS" in c.upper() or "%" in c or "!" in c for c in printed), (run, printed)


def test_a_linux_maven_line_too_long_with_ci_log_flags_is_printed_without_them(tmp_path):
    env = ("env:\n  MAVEN_ARGS: -V -B --no-transfer-progress -Dhttp.keepAlive=false -Dmaven.wagon.http.pool=false "
           "-Dmaven.wagon.httpconnectionManager.ttlSeconds=120\n")
    linux = ("on: [push, pull_request]\n" + env + "jobs:\n  test:\n    runs-on: ubuntu-latest\n    steps:\n"
             "      - uses: actions/checkout@v4\n      - run: ./mvnw ${MAVEN_ARGS} -Djacoco.skip=true install -DskipDistribution=true\n")
    root = _write(tmp_path, {".github/workflows/main.yml": linux, ".github/workflows/windows.yml": _windows_job("./mvnw %MAVEN_ARGS% install", "", env),
                             "pom.xml": _POM, "mvnw": "#!/bin/sh\n", "src/test/java/ATest.java": "class ATest {}\n"})
    assert analyze(root).test[0].value == "./mvnw -Djacoco.skip=true install -DskipDistribution=true"


def _job(name: str, *steps: str) -> str:
    body = "".join(f"      - run: {s}\n" for s in steps)
    return f"  {name}:\n    runs-on: ubuntu-latest\n    steps:\n      - uses: actions/checkout@v4\n{body}"


def test_a_go_test_of_one_e2e_folder_ranks_below_the_whole_project_run(tmp_path):
    makefile = ("GO_MOD_DIRS := $(shell find . -name go.mod -exec dirname {} \\; | sort)\n\n"
                "test.ci:\n\tset -e; for dir in $(GO_MOD_DIRS); do \\\n\t  (cd \"$${dir}\" && go vet && go test -race ./...); \\\n\tdone\n"
                "\tgo vet ./...\n\n"
                "bench:\n\tgo test ./... -test.run=NONE -test.bench=. -test.benchmem\n")
    action = ("name: run\ninputs:\n  repository:\n    required: false\n  make-target:\n    default: test.ci\nruns:\n  using: composite\n  steps:\n"
              "    - uses: actions/checkout@v4\n      with:\n        repository: ${{ inputs.repository }}\n"
              "    - env:\n        MAKE_TARGET: ${{ inputs.make-target }}\n      run: make -- \"${MAKE_TARGET}\"\n      shell: bash\n")
    e2e = "on: [push, pull_request]\njobs:\n" + _job("e2e-tests", "go test -v ./internal/e2e/ -timeout 30m -race")
    build = ("on: [push, pull_request]\njobs:\n" + _job("benchmark", "make bench")
             + "  test:\n    runs-on: ubuntu-latest\n    steps:\n      - uses: actions/checkout@v4\n      - uses: ./.github/actions/run-tests\n")
    root = _write(tmp_path, {".github/workflows/a-e2e.yml": e2e, ".github/workflows/build.yml": build,
                             ".github/actions/run-tests/action.yml": action, "Makefile": makefile, "go.mod": "module example.com/m\n",
                             "a_test.go": "package m\n", "internal/e2e/e2e_test.go": "package e2e\n"})
    tests = [f.value for f in analyze(root).test]
    assert tests[0] == "make -- test.ci", tests  # the composite action's default target, a loop of go test
    assert "make bench" not in tests  # -test.bench is a benchmark run


def test_one_folder_run_twice_stays_partial_and_several_folders_are_the_suite(tmp_path):
    makefile = ("test:\n\tgo test -v -timeout 10m\n\tgo test -v ./internal/...\n\tgo test -v ./cmd/app/...\n\n"
                "test-failpoint:\n\tTYPE=a go test -v ./tests/failpoint\n\tTYPE=b go test -v ./tests/failpoint\n")
    ci = "on: [push, pull_request]\njobs:\n" + _job("failpoint", "make test-failpoint") + _job("unit", "make test")
    root = _write(tmp_path, {".github/workflows/ci.yml": ci, "Makefile": makefile, "go.mod": "module example.com/m\n", "a_test.go": "package m\n"})
    assert analyze(root).test[0].value == "make test"


def test_a_vendored_glob_in_boundaries_is_a_path_not_a_command(tmp_path):
    from aiplane.agentsmd.generate import generate

    package = '{"name": "p", "scripts": {"test": "jest"}, "devDependencies": {"jest": "29"}}'
    root = _write(tmp_path, {".gitattributes": "scripts/* linguist-vendored\nsite/** linguist-vendored\n", "package.json": package,
                             "scripts/build.js": "", "src/a.js": "", "test/a.test.js": ""})
    _analysis, text = generate(root)  # verify_commands used to reject the glob as an invented command
    assert "`scripts/*`" in text
    assert not any("*" in c for c in commands_in(text))


def test_simple_phpunit_install_is_setup_and_the_one_test_line_uses_the_bridge(tmp_path):
    ci = "on: [push, pull_request]\njobs:\n" + _job("tests", "composer install", "vendor/bin/simple-phpunit install", "vendor/bin/simple-phpunit")
    composer = '{"name": "a/b", "require-dev": {"symfony/phpunit-bridge": "^7.0"}}'
    root = _write(tmp_path, {".github/workflows/ci.yml": ci, "composer.json": composer, "src/A.php": "<?php\n",
                             "tests/ATest.php": "<?php\nclass ATest {}\n"})
    result = analyze(root)
    assert result.test[0].value == "vendor/bin/simple-phpunit"
    assert [f.value for f in result.single_test] == ["vendor/bin/simple-phpunit tests/ATest.php"]
    assert "vendor/bin/simple-phpunit install" not in _printed(root)


def test_a_dangling_double_dash_is_dropped(tmp_path):
    tox = "[tox]\nenv_list = py, lint\n\n[testenv]\ncommands = pytest {posargs}\n\n[testenv:lint]\ncommands = pre-commit run --all-files\n"
    ci = ("on: [push, pull_request]\njobs:\n  tests:\n    runs-on: ubuntu-latest\n    strategy:\n      matrix:\n        include:\n"
          "          - toxenv: py\n            extra: '-n 4'\n          - toxenv: lint\n    steps:\n      - uses: actions/checkout@v4\n"
          "      - run: tox run -e ${{ matrix.toxenv }} -- ${{ matrix.extra }}\n")
    root = _write(tmp_path, {".github/workflows/test.yml": ci, "tox.ini": tox, "pyproject.toml": '[project]\nname = "p"\n', "tests/test_a.py": ""})
    result = analyze(root)
    assert result.test[0].value == "tox run -e py -- -n 4"
    assert result.lint[0].value == "tox run -e lint"


def test_a_taskfile_fmt_that_rewrites_files_is_a_fix_not_a_check(tmp_path):
    taskfile = ("version: '3'\ntasks:\n  test:\n    cmds:\n      - go test ./...\n  fmt:\n    cmds:\n      - gofumpt -w -l .\n"
                "  fmt-check:\n    cmds:\n      - gofumpt -l -d .\n")
    ci = "on: [push, pull_request]\njobs:\n" + _job("build", "task test")
    root = _write(tmp_path, {".github/workflows/build.yml": ci, "Taskfile.yml": taskfile, "go.mod": "module example.com/m\n",
                             "a_test.go": "package m\n"})
    printed = _printed(root)
    assert "task fmt" not in printed and "task test" in printed


def test_gofmt_w_checked_by_git_diff_after_a_git_status_is_a_format_check(tmp_path):
    ci = ("on: [push, pull_request]\njobs:\n  test:\n    runs-on: ubuntu-latest\n    steps:\n      - uses: actions/checkout@v4\n"
          "      - run: |\n          gofmt -l -s -w .\n          git status\n          git diff --exit-code\n      - run: go test -race ./...\n")
    root = _write(tmp_path, {".github/workflows/ci.yml": ci, "go.mod": "module example.com/m\n", "a_test.go": "package m\n"})
    assert analyze(root).lint[0].value == "gofmt -l -s -w ."
