"""AGENTS.md: CI files read as YAML with a model of jobs and steps (GitHub Actions, GitLab CI, CircleCI)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aiplane.agentsmd import ci
from aiplane.agentsmd.analyze import analyze
from aiplane.repository.tree import WorkTree


def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def _commands(root: Path) -> list[tuple[str, str]]:
    return [(c.cwd, " ".join(c.argv)) for c in ci.collect(WorkTree(root))]


TOX = "[tox]\nenvlist = py{311,312},lint,publish,docs\n\n[testenv]\ndeps = pytest\ncommands = pytest {posargs}\n\n" \
      "[testenv:lint]\ndeps = pre-commit\ncommands = pre-commit run --all-files\n\n[testenv:publish]\ncommands = twine upload dist/*\n\n" \
      "[testenv:docs]\ncommands = sphinx-build docs docs/_build\n"
PYPROJECT = '[project]\nname = "p"\nrequires-python = ">=3.11"\n'


def test_matrix_rows_are_data_and_each_instantiation_is_classified(tmp_path):
    workflow = """
name: tests
on: [push, pull_request]
jobs:
  tests:
    strategy:
      matrix:
        include:
          - {name: PyPy, python: 'pypy-3.10', tox: pypy310}
          - {python: '3.12'}
          - {name: Lint, python: '3.12', tox: lint}
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - run: pip install tox
      - run: tox -e ${{ matrix.tox || format('py{0}', matrix.python) }}
"""
    root = _write(tmp_path, {".github/workflows/tests.yml": workflow, "tox.ini": TOX, "pyproject.toml": PYPROJECT})
    commands = [c for _cwd, c in _commands(root)]
    assert commands == ["pip install tox", "tox -e pypy310", "tox -e py3.12", "tox -e lint"]
    assert not any("name:" in c or "{" in c for c in commands)
    result = analyze(root)
    assert result.test[0].value == "tox -e py3.12" and result.test[0].runs == "pytest"  # CPython before PyPy
    assert [f.value for f in result.lint] == ["tox -e lint"] and result.lint[0].runs == ""


def test_block_scalars_stay_whole_and_quotes_survive(tmp_path):
    workflow = """
on: push
jobs:
  test:
    runs-on: ubuntu-latest
    steps:
      - run: >
          python -m pytest
          -k "not slow and not network"
          tests/
      - run: |
          cargo test \\
            --workspace \\
            --all-features
      - name: Quoted
        run: "go test -run 'TestA|TestB' ./..."
"""
    root = _write(tmp_path, {".github/workflows/ci.yml": workflow})
    assert [c for _cwd, c in _commands(root)] == [
        "python -m pytest -k not slow and not network tests/",
        "cargo test --workspace --all-features",
        "go test -run TestA|TestB ./...",
    ]
    argv = ci.collect(WorkTree(root))[0].argv
    assert argv[4] == "not slow and not network"  # one word: the quotes were honoured, not stripped


def test_working_directory_defaults_cd_and_step_env(tmp_path):
    workflow = """
on: pull_request
defaults:
  run:
    working-directory: web
jobs:
  web:
    runs-on: ubuntu-latest
    steps:
      - run: npm ci && npm test
  api:
    runs-on: ubuntu-latest
    defaults:
      run:
        working-directory: ./services/api
    steps:
      - run: go test ./...
      - run: cd ../worker && make check
      - run: tox
        working-directory: py
        env:
          TOXENV: lint
"""
    root = _write(tmp_path, {".github/workflows/ci.yml": workflow})
    found = {(c.cwd, " ".join(c.argv), c.env.get("TOXENV", "")) for c in ci.collect(WorkTree(root))}
    assert ("web", "npm test", "") in found and ("services/api", "go test ./...", "") in found
    assert ("services/worker", "make check", "") in found and ("py", "tox", "lint") in found


def test_steps_in_another_repositorys_checkout_are_skipped(tmp_path):
    workflow = """
on: push
jobs:
  third-party:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
        with:
          repository: other/project
      - uses: actions/checkout@v4
        with:
          path: ours
      - run: pip install -e ./ours
      - run: pytest tests/
      - run: make -C ours test
  beside:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - uses: actions/checkout@v4
        with:
          repository: other/lib
          path: vendor-lib
      - run: npm test
      - run: npm test
        working-directory: vendor-lib
  own:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - run: pytest
"""
    root = _write(tmp_path, {".github/workflows/third-party.yml": workflow})
    commands = _commands(root)
    assert ("", "npm test") in commands and ("", "pytest") in commands
    assert not any(cmd == "pytest tests/" or cwd == "vendor-lib" for cwd, cmd in commands)


def test_well_known_actions_map_to_their_commands(tmp_path):
    workflow = """
on: [push]
jobs:
  lint:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - uses: golangci/golangci-lint-action@v6
        with:
          version: latest
          args: --timeout 5m
          working-directory: api
      - uses: pre-commit/action@v3.0.1
      - uses: astral-sh/ruff-action@v3
      - uses: nick-fields/retry@v3
        with:
          command: make test
"""
    root = _write(tmp_path, {".github/workflows/lint.yml": workflow})
    assert [c for c in _commands(root)] == [
        ("api", "golangci-lint run --timeout 5m"), ("", "pre-commit run --all-files"), ("", "ruff check"), ("", "make test"),
    ]


def test_step_conditions_github_env_and_expressions(tmp_path):
    workflow = """
on: push
jobs:
  test:
    strategy:
      matrix:
        os: [ubuntu-latest, windows-latest]
    runs-on: ${{ matrix.os }}
    env:
      CARGO: cargo
      TARGET_FLAGS:
    steps:
      - if: matrix.os == 'windows-latest'
        run: echo "CARGO=cross" >> $GITHUB_ENV
      - run: ${{ env.CARGO }} test --workspace ${{ env.TARGET_FLAGS }}
      - if: runner.os == 'Windows'
        run: windows-only-tool --check
      - run: deploy --token ${{ secrets.TOKEN }}
"""
    root = _write(tmp_path, {".github/workflows/ci.yml": workflow})
    commands = [c for _cwd, c in _commands(root)]
    assert commands[0] == "cargo test --workspace"
    assert "cross test --workspace" in commands and "windows-only-tool --check" in commands  # the windows instance
    assert not any("deploy" in c for c in commands)  # depends on a secret: unknown here, dropped


@pytest.mark.parametrize(
    "expression,context,value",
    [
        ("matrix.tox || format('py{0}', matrix.python)", {"matrix": {"python": "3.12"}}, "py3.12"),
        ("matrix.os == 'windows-latest' && 'dir' || 'ls'", {"matrix": {"os": "ubuntu"}}, "ls"),
        ("contains(fromJSON('[\"a\", \"b\"]'), 'b')", {}, True),
        ("startsWith(matrix.python, 'pypy')", {"matrix": {"python": "pypy-3.10"}}, True),
        ("matrix.target != ''", {"matrix": {}}, False),  # null and '' are both 0 when compared
        ("github.event_name == 'push'", {}, ci.UNKNOWN),
        ("!matrix.coverage", {"matrix": {}}, True),
    ],
)
def test_expressions(expression, context, value):
    assert ci.evaluate(expression, context) == value


def test_matrix_include_exclude_semantics():
    matrix = {"os": ["a", "b"], "py": [1, 2], "include": [{"os": "a", "extra": 1}, {"os": "c", "py": 3}], "exclude": [{"os": "b", "py": 2}]}
    assert ci.expand_matrix(matrix, {}) == [{"os": "a", "py": 1, "extra": 1}, {"os": "a", "py": 2, "extra": 1}, {"os": "b", "py": 1},
                                            {"os": "c", "py": 3}]
    assert ci.expand_matrix("${{ fromJSON(needs.setup.outputs.matrix) }}", {}) is None


def test_local_composite_action_and_reusable_workflow(tmp_path):
    root = _write(tmp_path, {
        ".github/actions/check/action.yml": "name: check\ninputs:\n  target:\n    default: lint\nruns:\n  using: composite\n  steps:\n"
                                           "    - run: make ${{ inputs.target }}\n      shell: bash\n",
        ".github/workflows/ci.yml": "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - uses: actions/checkout@v4\n"
                                    "      - uses: ./.github/actions/check\n        with:\n          target: test\n"
                                    "  b:\n    strategy:\n      matrix:\n        part: [unit, e2e]\n"
                                    "    uses: ./.github/workflows/npm-script.yml\n    with:\n      script: test:${{ matrix.part }}\n",
        ".github/workflows/npm-script.yml": "on:\n  workflow_call:\n    inputs:\n      script:\n        type: string\njobs:\n  run:\n"
                                           "    runs-on: ubuntu-latest\n    steps:\n      - run: npm run ${{ inputs.script }}\n",
    })
    assert [c for _cwd, c in _commands(root)] == ["make test", "npm run test:unit", "npm run test:e2e"]


def test_gitlab_ci_extends_variables_matrix_and_hidden_jobs(tmp_path):
    gitlab = """
include:
  - local: ci/lint.yml
variables:
  PYTEST_ARGS: "-q"
default:
  before_script:
    - pip install -e .[test]
.python:
  image: python:3.12
  script:
    - pytest $PYTEST_ARGS
unit:
  extends: .python
  parallel:
    matrix:
      - PY: ["3.11", "3.12"]
release:
  stage: deploy
  rules:
    - if: $CI_COMMIT_TAG
  script:
    - twine upload dist/*
"""
    root = _write(tmp_path, {".gitlab-ci.yml": gitlab, "ci/lint.yml": "lint:\n  script:\n    - cd web\n    - npm run lint\n"})
    found = [(c.job, c.cwd, " ".join(c.argv)) for c in ci.collect(WorkTree(root))]
    assert ("unit", "", "pytest -q") in found and ("lint", "web", "npm run lint") in found
    assert not any(job == ".python" for job, _cwd, _cmd in found)
    release = [c for c in ci.collect(WorkTree(root)) if c.job == "release"]
    assert release and release[0].triggers == frozenset({"tag"})


def test_circleci_steps_reusable_commands_and_working_directory(tmp_path):
    config = """
version: 2.1
commands:
  run-tests:
    parameters:
      suite:
        type: string
        default: unit
    steps:
      - run: npm run test:<< parameters.suite >>
jobs:
  build:
    docker: [{image: cimg/node:20.0}]
    steps:
      - checkout
      - run: npm ci
      - run-tests
      - run:
          command: go test ./...
          working_directory: ~/project/api
"""
    root = _write(tmp_path, {".circleci/config.yml": config})
    assert _commands(root) == [("", "npm ci"), ("", "npm run test:unit"), ("api", "go test ./...")]


def test_gitlab_and_github_yaml_with_unknown_tags_and_errors(tmp_path):
    root = _write(tmp_path, {
        ".gitlab-ci.yml": "test:\n  script:\n    - !reference [.setup, script]\n    - make test\n",
        ".github/workflows/broken.yml": "on: push\njobs: [\n",
        ".github/workflows/typed.yml": json.dumps({"on": 5, "jobs": {"a": {"steps": "nope"}, "b": 7, "c": {"steps": [{"run": 3}]}}}),
    })
    assert ("", "make test") in _commands(root)


# -- AppVeyor, Azure Pipelines, Travis; build folders outside the checkout; shell idioms ----------------

NUKE_BUILD = """
using Nuke.Common;
class Build : NukeBuild {
    public static int Main() => Execute<Build>(x => x.Compile);
    Target Restore => _ => _
        .Executes(() => DotNetRestore(s => s));
    Target Compile => _ => _
        .DependsOn(Restore)
        .Executes(() => DotNetBuild(s => s));
    Target Test => _ => _
        .DependsOn(Compile)
        .Executes(() => DotNetTest(s => s.SetProjectFile(Solution)));
    Target Pack => _ => _
        .DependsOn(Compile)
        .Executes(() => DotNetPack(s => s));
    Target Push => _ => _
        .DependsOn(Pack)
        .Executes(() => DotNetNuGetPush(s => s));
    Target CI => _ => _
        .DependsOn(Test)
        .DependsOn(Pack);
    Target Release => _ => _
        .DependsOn(CI, Push);
}
"""
NUKE_SH = '#!/usr/bin/env bash\nBUILD_PROJECT_FILE="$SCRIPT_DIR/Source/Builder/Builder.csproj"\n' \
          '"$DOTNET_EXE" run --project "$BUILD_PROJECT_FILE" --no-build -- "$@"\n'
NUKE_CMD = "@echo off\ndotnet tool restore\ndotnet nuke %1 --root .\n"


def test_appveyor_build_script_through_a_nuke_build(tmp_path):
    appveyor = """
version: '{build}'
image: Visual Studio 2022
environment:
  NUKE_TELEMETRY_OPTOUT: 1
  matrix:
    - CONFIGURATION: Release
      FLAVOR: '{name: full, tox: lint}'
    - CONFIGURATION: Debug
init:
  - ps: Set-AppveyorBuildVariable -Name X -Value Y
build_script:
  - pwsh: |
      Invoke-WebRequest "https://dot.net/v1/dotnet-install.ps1" -OutFile "./dotnet-install.ps1"
  - build.cmd ci
test: off
deploy:
  - provider: NuGet
"""
    files = {"appveyor.yml": appveyor, "build.cmd": NUKE_CMD, "build.sh": NUKE_SH, "Source/Builder/Build.cs": NUKE_BUILD,
             "Source/Builder/Builder.csproj": "<Project/>\n", "Source/Lib/Lib.csproj": "<Project/>\n",
             "Source/Lib.Tests/Lib.Tests.csproj": "<Project/>\n", "Source/Lib.Tests/WidgetTests.cs": "class WidgetTests {}\n"}
    root = _write(tmp_path, files)
    commands = [(c.platform, " ".join(c.argv)) for c in ci.collect(WorkTree(root))]
    assert ("windows", "build.cmd ci") in commands
    assert not any("CONFIGURATION" in c or "name:" in c or "Set-AppveyorBuildVariable" in c for _p, c in commands)  # matrix rows are data
    result = analyze(root)
    # CI's Windows bootstrapper, stated as its sh sibling (same NUKE target: CI -> Test -> DotNetTest)
    assert result.test[0].value == "./build.sh ci" and result.test[0].evidence.startswith("appveyor.yml:")
    # a target that pushes packages is publish and never written
    from aiplane.agentsmd.commands import Resolver
    from aiplane.agentsmd.entrypoints import Lazy
    resolver = Resolver(Lazy(WorkTree(root)))
    assert resolver.line("./build.sh Release").kind == "publish"
    assert resolver.line("build.cmd Compile").kind == "build"
    assert resolver.line("./build.sh").kind == "build"  # the default target (Execute<Build>(x => x.Compile))


def test_appveyor_test_script_with_environment_matrix_variables(tmp_path):
    appveyor = """
image:
  - Visual Studio 2022
  - Ubuntu
environment:
  matrix:
    - CONFIG: Release
install:
  - cmd: dotnet restore
build_script:
  - cmd: dotnet build -c %CONFIG%
test_script:
  - ps: dotnet test -c $env:CONFIG --no-build
  - cmd: dotnet test %UNKNOWN_THING%
"""
    root = _write(tmp_path, {".appveyor.yml": appveyor, "App.sln": "\n", "tests/A.Tests/A.Tests.csproj": "<Project/>\n"})
    commands = [(c.job, c.platform, " ".join(c.argv)) for c in ci.collect(WorkTree(root))]
    assert ("build_script", "windows", "dotnet build -c Release") in commands
    assert ("test_script", "windows", "dotnet test -c Release --no-build") in commands
    assert ("test_script", "linux", "dotnet test -c Release --no-build") not in commands  # the same command once
    assert not any("UNKNOWN" in c for _j, _p, c in commands)  # an unknown variable drops the command
    assert analyze(root).test[0].value == "dotnet test -c Release"  # --no-build leans on CI's build step


def test_azure_pipelines_steps_tasks_macros_and_templates(tmp_path):
    pipeline = """
trigger: [main]
variables:
  buildConfiguration: Release
jobs:
- job: Linux
  pool: {vmImage: ubuntu-latest}
  steps:
  - script: dotnet build -c $(buildConfiguration)
  - task: DotNetCoreCLI@2
    inputs:
      command: test
      projects: App.sln
      arguments: -c $(buildConfiguration)
  - bash: dotnet format --verify-no-changes $(secretThing)
  - template: ci/steps.yml
    parameters:
      folder: web
- deployment: Publish
  environment: prod
  strategy:
    runOnce:
      deploy:
        steps:
        - script: dotnet nuget push x.nupkg
"""
    steps = """
parameters:
- name: folder
  default: app
steps:
- pwsh: cd ${{ parameters.folder }}; npm run lint
"""
    root = _write(tmp_path, {"azure-pipelines.yml": pipeline, "ci/steps.yml": steps, "App.sln": "\n",
                             "web/package.json": '{"scripts": {"lint": "eslint ."}}'})
    commands = [(c.job, c.platform, c.cwd, " ".join(c.argv)) for c in ci.collect(WorkTree(root))]
    assert ("Linux", "linux", "", "dotnet build -c Release") in commands
    assert ("Linux", "linux", "", "dotnet test App.sln -c Release") in commands
    assert ("Linux", "linux", "web", "npm run lint") in commands
    assert not any("nuget push" in c or "secretThing" in c or "$(" in c for _j, _p, _w, c in commands)
    assert analyze(root).test[0].value == "dotnet test App.sln -c Release"


def test_travis_jobs_include_inherit_and_deploy_stages_are_left_out(tmp_path):
    travis = """
language: python
env:
  global:
    - PYTEST_ADDOPTS=-q
  jobs:
    - TOXENV=py311
    - TOXENV=py312
script: tox
jobs:
  include:
    - name: lint
      script: tox -e lint
    - stage: deploy
      script: twine upload dist/*
    - name: docs
      if: tag IS present
      script: tox -e docs
"""
    root = _write(tmp_path, {".travis.yml": travis, "tox.ini": TOX, "pyproject.toml": PYPROJECT})
    found = ci.collect(WorkTree(root))
    assert [" ".join(c.argv) for c in found] == ["tox", "tox -e lint"]
    assert found[0].env["TOXENV"] == "py311" and found[0].env["PYTEST_ADDOPTS"] == "-q"
    result = analyze(root)
    assert result.test[0].value == "tox -e py311" and _lint_values(result) == ["tox -e lint"]


def _lint_values(result) -> list[str]:
    return [f.value for f in result.lint]


def test_ctest_in_a_build_folder_outside_the_checkout_is_stated_in_it(tmp_path):
    workflow = """
on: [push, pull_request]
jobs:
  job:
    runs-on: ${{ matrix.os }}
    strategy:
      matrix:
        os: [ubuntu-24.04, macos-latest]
        build_type: [Release]
    steps:
      - uses: actions/checkout@v4
      - uses: threeal/cmake-action@v2
        with:
          build-dir: ${{ runner.workspace }}/_build
      - name: test
        working-directory: ${{ runner.workspace }}/_build
        run: |
          ctest -C ${{ matrix.build_type }} -VV
          ./some_tool --flag
"""
    bindings = """
on: [push, pull_request]
jobs:
  rust_bindings:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - run: cargo test
        working-directory: bindings/rust
      - run: |
          cmake -S . -B build -DRUST=ON
          cmake --build build
          cd build && ctest -R rust_bindings_tests
"""
    files = {".github/workflows/build-and-test.yml": workflow, ".github/workflows/bindings.yml": bindings,
             "CMakeLists.txt": "project(x)\nenable_testing()\nadd_test(NAME a COMMAND a)\n", "src/lib.cc": "int f() { return 1; }\n" * 400,
             "bindings/rust/Cargo.toml": '[package]\nname = "b"\nversion = "0.1.0"\n', "bindings/rust/src/lib.rs": "pub fn f() {}\n"}
    root = _write(tmp_path, files)
    commands = [(c.cwd, " ".join(c.argv)) for c in ci.collect(WorkTree(root))]
    assert ("", "ctest --test-dir build -C Release -VV") in commands
    assert not any("some_tool" in c for _cwd, c in commands)  # only a test run is restated
    result = analyze(root)
    # the main (C++) suite, not the Rust bindings' cargo test nor the -R subset; built as the template says
    assert result.test[0].value == "ctest --test-dir build -C Release -VV"
    assert [f.value for f in result.build_commands] == ["cmake -B build && cmake --build build"]


def test_a_brace_pattern_argument_is_quoted_not_refused(tmp_path):
    workflow = """
on: [push, pull_request]
jobs:
  test:
    runs-on: ubuntu-latest
    strategy:
      matrix:
        specs: ['spec --exclude-pattern=spec/integration/{grape_entity,grape_swagger,hashie,dry_validation,multi_*}/*_spec.rb']
        include:
          - specs: spec/integration/hashie
    steps:
      - run: "RUBYOPT='--enable=frozen-string-literal' bundle exec rspec ${{ matrix.specs }}"
"""
    root = _write(tmp_path, {".github/workflows/test.yml": workflow, "Gemfile": "gem 'rspec'\n", "spec/a_spec.rb": "describe 1 do; end\n",
                             "spec/integration/hashie/h_spec.rb": "describe 1 do; end\n"})
    result = analyze(root)
    assert result.test[0].value == ("bundle exec rspec spec "
                                    "'--exclude-pattern=spec/integration/{grape_entity,grape_swagger,hashie,dry_validation,multi_*}/*_spec.rb'")


@pytest.mark.parametrize("line, check", [
    ("diff -u <(echo -n) <(go fmt $(go list ./...))", "gofmt -l ."),
    ('test -z "$(gofmt -s -l .)"', "gofmt -s -l ."),
    ('[ -z "$(goimports -l .)" ]', "goimports -l ."),
])
def test_format_checks_written_as_output_comparisons(tmp_path, line, check):
    workflow = f"""
on: [push, pull_request]
jobs:
  test:
    runs-on: ubuntu-latest
    steps:
      - name: Format
        run: {json.dumps(line)}
      - run: go test ./... -race
"""
    root = _write(tmp_path, {".github/workflows/ci.yml": workflow, "go.mod": "module x\n\ngo 1.22\n", "a.go": "package x\n",
                             "a_test.go": "package x\n"})
    result = analyze(root)
    assert result.test[0].value == "go test ./... -race"
    assert [(f.value, f.kind) for f in result.lint] == [(check, "format")]


def test_unrelated_process_substitutions_stay_unparsed():
    from aiplane.agentsmd.shell import parse_script

    assert parse_script("diff <(sort a) <(sort b)")[0] == []
    assert parse_script("diff -u <(echo -n) <(gofmt -d $(find . -name '*.go'))")[0] == []


def test_nox_tags_made_at_run_time_by_a_project_decorator(tmp_path):
    noxfile = '''
import nox
from tools.toxnox import tox_parameters

VERSIONS = ["default", "sqla14", "sqla20"]
DATABASES = ["sqlite", "postgresql"]
nox.options.sessions = ["tests"]
nox.options.tags = ["py"]


@nox.session()
@tox_parameters(["sqlalchemy", "database"], [VERSIONS, DATABASES])
def tests(session, sqlalchemy, database):
    session.run("pytest")


@nox.session(name="coverage")
@tox_parameters(["database"], [DATABASES], base_tag="coverage")
def coverage(session, database):
    session.run("pytest", "--cov")


@nox.session(name="pep484")
def mypy_check(session):
    session.run("mypy", "src")
'''
    workflow = """
on: [push, pull_request]
jobs:
  run-test:
    runs-on: ubuntu-latest
    strategy:
      matrix:
        sqlalchemy: [sqla14, sqla20]
    steps:
      - run: nox -t py-${{ matrix.sqlalchemy }}
      - run: nox -t py-nosuchvalue
      - run: nox -s pep484
"""
    root = _write(tmp_path, {"noxfile.py": noxfile, ".github/workflows/run-test.yaml": workflow, "pyproject.toml": PYPROJECT,
                             "tests/test_a.py": "def test_a():\n    pass\n"})
    result = analyze(root)
    assert result.test[0].value == "nox -t py-sqla14" and result.test[0].runs == "pytest"
    assert [f.value for f in result.lint] == ["nox -s pep484"]
    from aiplane.agentsmd.entrypoints import read_nox
    nox = read_nox(WorkTree(root))
    assert [e.name for e in nox.tagged("py-sqla20")] == ["tests"]
    assert nox.tagged("py-nosuchvalue") == [] and [e.name for e in nox.tagged("coverage-sqlite")] == ["coverage"]


def test_azure_working_directory_and_a_cmake_build_folder(tmp_path):
    pipeline = """
trigger: [main]
variables:
  build_type: Debug
jobs:
- job: Native
  pool: {vmImage: ubuntu-latest}
  steps:
  - script: mkdir build
  - task: CMake@1
    inputs:
      cmakeArgs: .. -DX=ON
  - script: cmake --build .
    workingDirectory: build
  - script: ctest --output-on-failure -C $(build_type)
    workingDirectory: build
  - script: npm run lint
    workingDirectory: $(Build.SourcesDirectory)/web
  - script: make outside
    workingDirectory: /tmp/elsewhere
"""
    root = _write(tmp_path, {"azure-pipelines.yml": pipeline, "CMakeLists.txt": "project(x)\nenable_testing()\n",
                             "web/package.json": '{"scripts": {"lint": "eslint ."}}'})
    commands = [(c.cwd, " ".join(c.argv)) for c in ci.collect(WorkTree(root))]
    assert ("build", "ctest --output-on-failure -C Debug") in commands and ("web", "npm run lint") in commands
    assert not any("outside" in c for _cwd, c in commands)
    assert analyze(root).test[0].value == "ctest --test-dir build --output-on-failure -C Debug"


def test_travis_items_share_one_shell_and_make_test_in_a_cmake_build_folder_is_ctest(tmp_path):
    travis = "language: c\nscript:\n  - mkdir build\n  - cd build\n  - cmake .. -DX=On\n  - make\n  - make test CTEST_OUTPUT_ON_FAILURE=On\n"
    root = _write(tmp_path, {".travis.yml": travis, "CMakeLists.txt": "project(x)\nenable_testing()\n", "src/a.c": "int main(){}\n"})
    assert [(c.cwd, " ".join(c.argv)) for c in ci.collect(WorkTree(root))][-1] == ("build", "make test CTEST_OUTPUT_ON_FAILURE=On")
    result = analyze(root)
    assert result.test[0].value == "ctest --test-dir build"
    assert [f.value for f in result.build_commands] == ["cmake -B build && cmake --build build"]


def test_if_then_branches_script_arguments_and_word_splitting():
    from aiplane.agentsmd.shell import parse_script

    folded = 'if [ latest = "latest" ] && [ true = true ]; then\n  golint ./...\nfi\nif [ a ]; then\n  make a\nelse\n  make b\nfi\n'
    assert [s.argv for s in parse_script(folded)[0]] == [["golint", "./..."], ["make", "a"]]
    assert [s.argv for s in parse_script("if [ -n \"$X\" ]; then pytest --cov; else pytest; fi")[0]] == [["pytest", "--cov"]]
    script = 'set -ex\ncmd="${1:-test}"\ncargo hack "${cmd}" --each-feature\ncargo "${cmd}" --all-features\npytest "$@"\n'
    assert [s.argv for s in parse_script(script, {"@": "test", "1": "test"})[0] if s.argv[0] != "set"] == [
        ["cargo", "hack", "test", "--each-feature"], ["cargo", "test", "--all-features"], ["pytest", "test"]]
    assert [s.argv for s in parse_script(script, {"@": ""})[0] if s.argv[0] != "set"][-1] == ["pytest"]
    assert parse_script("./mvnw $ARGS verify", {"ARGS": "-B -ntp"})[0][0].argv == ["./mvnw", "-B", "-ntp", "verify"]
    assert parse_script('./mvnw "$ARGS" verify', {"ARGS": "-B -ntp"})[0][0].argv == ["./mvnw", "-B -ntp", "verify"]


def test_a_script_given_its_argument_and_check_spellings(tmp_path):
    workflow = """
on: [push, pull_request]
jobs:
  stable:
    runs-on: ubuntu-latest
    steps:
      - run: ci/test-stable.sh test
      - run: ci/panic-abort.sh
  bump:
    runs-on: ubuntu-latest
    steps:
      - run: prek auto-update --freeze
  format:
    runs-on: ubuntu-latest
    steps:
      - run: dotnet format --check -v:diag
"""
    files = {".github/workflows/ci.yml": workflow, "Cargo.toml": '[package]\nname = "b"\nversion = "0.1.0"\n', "src/lib.rs": "\n",
             "ci/test-stable.sh": '#!/bin/bash\nset -ex\ncmd="${1:-test}"\ncargo hack "${cmd}" --each-feature --optional-deps\n'
                                  'cargo "${cmd}" --all-features\n',
             "ci/panic-abort.sh": "#!/bin/bash\nRUSTFLAGS=-Cpanic=abort cargo test --tests\n"}
    root = _write(tmp_path, files)
    result = analyze(root)
    assert result.test[0].value == "ci/test-stable.sh test"
    assert [f.value for f in result.lint] == ["dotnet format --check -v:diag"]  # prek auto-update updates hooks, it checks nothing


def test_matrix_command_known_by_its_linux_instance_and_falsy_step_conditions(tmp_path):
    # The first instance runs on macOS; the Linux instance's job name ranks the command, so the
    # main `test-<python>` session is not beaten by a special session whose row is named "Ubuntu".
    # A step whose `if:` is a null matrix value is skipped (no `tox -e` without its env).
    workflow = """
on: [push, pull_request]
jobs:
  test:
    strategy:
      matrix:
        python-version: ["3.12"]
        os: [macos-15, ubuntu-24.04]
        nox-session: ['']
        include:
          - python-version: "3.x"
            os: ubuntu-24.04
            nox-session: test_brotlipy
    runs-on: ${{ matrix.os }}
    name: ${{ fromJson('{"macos-15":"macOS","ubuntu-24.04":"Ubuntu"}')[matrix.os] }} ${{ matrix.python-version }} ${{ matrix.nox-session }}
    steps:
      - run: uvx nox -s "$NOX_SESSION"
        env:
          NOX_SESSION: ${{ matrix.nox-session != '' && matrix.nox-session || format('test-{0}', matrix.python-version) }}
  lint:
    strategy:
      matrix:
        toxenv: [lint]
        include:
          - toxenv: null
    runs-on: ubuntu-latest
    steps:
      - run: tox -e ${{ matrix.toxenv }}
        if: ${{ matrix.toxenv }}
"""
    noxfile = ("import nox\n\n@nox.session(python=['3.12'])\ndef test(session):\n    session.run('pytest')\n\n"
               "@nox.session\ndef test_brotlipy(session):\n    session.run('pytest')\n")
    tox = "[tox]\nenvlist = lint\n\n[testenv:lint]\ncommands = flake8 src\n"
    root = _write(tmp_path, {".github/workflows/ci.yml": workflow, "noxfile.py": noxfile, "tox.ini": tox, "pyproject.toml": PYPROJECT})
    commands = [c for _cwd, c in _commands(root)]
    assert "tox -e" not in commands and "tox -e lint" in commands
    result = analyze(root)
    assert result.test[0].value == "uvx nox -s test-3.12"


def test_action_run_inputs_user_tool_folders_and_appveyor_for_entries(tmp_path):
    # A wrapper action's `run:` input is a command; a tool CI installed into the user's composer
    # folder is that tool; AppVeyor `for:` entries hold the image's own scripts.
    workflow = """
on: [push, pull_request]
jobs:
  flake8:
    runs-on: ubuntu-latest
    steps:
      - uses: liskin/gh-problem-matcher-wrap@v4
        with:
          linters: flake8
          run: flake8 --extend-ignore=E203 src tests
  style:
    runs-on: ubuntu-latest
    steps:
      - run: |
          composer global require friendsofphp/php-cs-fixer
          ~/.composer/vendor/bin/php-cs-fixer fix --diff --dry-run .
"""
    root = _write(tmp_path / "a", {".github/workflows/ci.yml": workflow, "pyproject.toml": PYPROJECT})
    assert [f.value for f in analyze(root).lint][:2] == ["flake8 --extend-ignore=E203 src tests", "php-cs-fixer fix --diff --dry-run ."]
    appveyor = """
image:
  - Visual Studio 2022
  - Ubuntu2204
build: false
test: false
for:
  -
    matrix:
      only:
        - image: Visual Studio 2022
    build_script:
    - ps: ./build.ps1
    test_script:
    - ps: ./run-tests.ps1
  -
    matrix:
      only:
        - image: Ubuntu2204
    test_script:
    - ps: ./run-tests.ps1
"""
    files = {"appveyor.yml": appveyor, "run-tests.ps1": "dotnet test ./tests/Lib.Tests/ --configuration release\n",
             "build.ps1": "dotnet build src/Lib.sln\n", "src/Lib.sln": "\n", "tests/Lib.Tests/Lib.Tests.csproj": "<Project/>\n"}
    root = _write(tmp_path / "b", files)
    assert ("", "./run-tests.ps1") in _commands(root)
    assert analyze(root).test[0].value == "./run-tests.ps1"


def test_options_that_lean_on_earlier_ci_steps_and_long_report_options_are_dropped(tmp_path):
    # Seen in the heldout-7 run: `dotnet test X.csproj ... --no-build --logger trx --collect:...` was too
    # long to print and lost to an on-demand Playwright job; `cargo --locked` without a Cargo.lock;
    # `tox --skip-pkg-install` after `tox --notest`.
    workflow = """
on: [push, pull_request]
jobs:
  build-and-test:
    runs-on: ${{ matrix.os }}
    strategy:
      matrix:
        os: [ubuntu-latest]
        configuration: [Release]
    steps:
      - run: dotnet build App.slnx --configuration ${{ matrix.configuration }} --no-restore --verbosity minimal
      - run: dotnet test tests/Company.Product.Architecture.UnitTests/Company.Product.Architecture.UnitTests.csproj --configuration ${{ matrix.configuration }} --no-build --verbosity normal --logger "trx" --collect:"XPlat Code Coverage"
"""
    repro = """
on:
  pull_request:
    types: [labeled]
jobs:
  reproduce:
    runs-on: ubuntu-latest
    steps:
      - run: npm install @playwright/test
      - run: npx playwright test --reporter=list
"""
    files = {".github/workflows/ci.yml": workflow, ".github/workflows/repro.yml": repro, "App.slnx": "<Solution/>\n",
             "tests/Company.Product.Architecture.UnitTests/Company.Product.Architecture.UnitTests.csproj": "<Project/>\n"}
    root = _write(tmp_path / "dotnet", files)
    assert analyze(root).test[0].value == \
        "dotnet test tests/Company.Product.Architecture.UnitTests/Company.Product.Architecture.UnitTests.csproj --configuration Release"
    assert "label" in next(c.triggers for c in ci.collect(WorkTree(root)) if c.argv[:2] == ["npx", "playwright"])

    rust = """
on: [push]
jobs:
  test:
    runs-on: ubuntu-latest
    steps:
      - run: cargo nextest run --locked --workspace
  unstable:
    runs-on: ubuntu-latest
    steps:
      - run: cargo test --features http3
        env:
          RUSTFLAGS: --cfg my_unstable
"""
    cargo = '[package]\nname = "c"\nversion = "0.1.0"\n'
    root = _write(tmp_path / "rust", {".github/workflows/ci.yml": rust, "Cargo.toml": cargo, "src/lib.rs": "\n"})
    result = analyze(root)
    assert result.test[0].value == "cargo nextest run --workspace"
    assert not any("http3" in c for c in result.commands())
    (root / "Cargo.lock").write_text("version = 3\n")
    assert analyze(root).test[0].value == "cargo nextest run --locked --workspace"

    tox = """
on: [push]
jobs:
  test:
    runs-on: ubuntu-latest
    steps:
      - run: tox -vv --notest -p auto --parallel-live
      - run: tox --skip-pkg-install --parallel-live
"""
    tox_ini = "[tox]\nenvlist = py{311,312}\n\n[testenv]\ndeps = pytest\ncommands = pytest {posargs}\n"
    root = _write(tmp_path / "tox", {".github/workflows/ci.yml": tox, "tox.ini": tox_ini, "pyproject.toml": PYPROJECT})
    assert analyze(root).test[0].value == "tox"


def test_msrv_toolchain_root_manifest_pnpm_regex_scripts_and_prettier_write(tmp_path):
    workflow = """
on: [push]
jobs:
  test-versions:
    runs-on: ubuntu-latest
    steps:
      - run: cargo test --locked --workspace --all-features --manifest-path ${{ matrix.workspace }}/Cargo.toml
    strategy:
      matrix:
        workspace: [".", examples]
  test-msrv:
    runs-on: ubuntu-latest
    steps:
      - run: cargo +nightly update -Z minimal-versions
      - run: cargo +${{ env.MSRV }} test --locked --all-features
env:
  MSRV: "1.80"
"""
    files = {".github/workflows/ci.yml": workflow, "Cargo.toml": '[workspace]\nmembers = ["core"]\n', "Cargo.lock": "version = 3\n",
             "core/Cargo.toml": '[package]\nname = "core"\nversion = "0.1.0"\n', "core/src/lib.rs": "\n", "examples/Cargo.toml": "[workspace]\n"}
    root = _write(tmp_path / "rust", files)
    assert analyze(root).test[0].value == "cargo test --locked --workspace --all-features --manifest-path ./Cargo.toml"

    package = {"name": "p", "scripts": {"test:coverage": "c8 mocha", "test:lint": "eslint .", "test:size": "size-limit",
                                        "test": "pnpm run /^test:/", "build": "tsc && npm run format", "format": "prettier --write --list-different .",
                                        "format:check": "prettier --list-different ."},
               "devDependencies": {"mocha": "1", "eslint": "1", "prettier": "1", "c8": "1"}}
    js = """
on: [push]
jobs:
  full:
    runs-on: ubuntu-latest
    steps:
      - run: pnpm install
      - run: pnpm build
      - run: pnpm test
      - run: pnpm format:check
"""
    root = _write(tmp_path / "js", {".github/workflows/test.yml": js, "package.json": json.dumps(package), "pnpm-lock.yaml": "\n"})
    result = analyze(root)
    assert result.test[0].value == "pnpm test"
    assert result.lint[0].value == "pnpm format:check" and "pnpm build" not in [f.value for f in result.lint]


def test_maven_and_gradle_upload_goals_are_dropped(tmp_path):
    # Seen in the heldout-8 run: pf4j's CI runs `cd pf4j && mvn -B verify
    # org.sonarsource.scanner.maven:sonar-maven-plugin:sonar`, which needs CI's SONAR_TOKEN; it was printed
    # as written. The upload goals go; a command with nothing else left is not a candidate.
    workflow = """
on: [push, pull_request]
jobs:
  build:
    runs-on: ubuntu-latest
    steps:
      - run: cd lib && mvn -B verify org.sonarsource.scanner.maven:sonar-maven-plugin:sonar -Dsonar.projectKey=x_y
      - run: mvn sonar:sonar
"""
    files = {".github/workflows/build.yml": workflow, "pom.xml": "<project/>\n", "lib/pom.xml": "<project/>\n"}
    root = _write(tmp_path / "maven", files)
    analysis = analyze(root)
    assert (analysis.test[0].value, analysis.test[0].cwd) == ("mvn -B verify", "lib")
    printed = [f.value for f in analysis.test + analysis.lint + analysis.build_commands]
    assert not any("sonar" in value for value in printed)

    gradle = """
on: [push]
jobs:
  build:
    runs-on: ubuntu-latest
    steps:
      - run: ./gradlew check sonar --info
      - run: ./gradlew build -x sonarqube
"""
    files = {".github/workflows/build.yml": gradle, "build.gradle": "plugins { id 'java' }\n", "settings.gradle": "\n",
             "gradlew": "#!/bin/sh\n"}
    root = _write(tmp_path / "gradle", files)
    values = [f.value for f in analyze(root).test]
    assert "./gradlew check --info" in values
    assert not any("sonar" in value for value in values)


def test_a_command_whose_failure_is_ignored_checks_nothing(tmp_path):
    # Seen in the heldout-8 run: trio's ci.sh (its test script) probes `mypy -c "import trio" >/dev/null
    # 2>/dev/null || true` before pytest, and the script was filed as a type check ahead of CI's real
    # `tox -m check`.
    from aiplane.agentsmd import shell

    commands, _env = shell.parse_script('mypy -c "import lib" >/dev/null 2>&1 || true\nruff check . || :\npytest -ra || exit 1\n')
    assert [c.argv[0] for c in commands if c.argv[0] not in ("true", ":")] == ["pytest"]
    # `|| exit 1` ends the script only when the command before it fails: the lines after it are read.
    commands, _env = shell.parse_script("pytest -ra || exit 1\nruff check .\nexit 0\nmypy src\n")
    assert [c.argv[0] for c in commands] == ["pytest", "ruff"]
    workflow = """
on: [push, pull_request]
jobs:
  test:
    runs-on: ubuntu-latest
    steps:
      - run: ./ci.sh
  check:
    runs-on: ubuntu-latest
    steps:
      - run: tox -m check
"""
    files = {".github/workflows/ci.yml": workflow, "ci.sh": '#!/bin/sh\nmypy -c "import lib" >/dev/null 2>/dev/null || true\npytest -ra tests\n',
             "tox.ini": "[tox]\nenv_list = py\nlabels =\n    check = typing\n[testenv]\ncommands = pytest {posargs}\n[testenv:typing]\ncommands = mypy src\n",
             "pyproject.toml": '[project]\nname = "lib"\nversion = "1"\n', "src/lib/__init__.py": "\n", "tests/test_lib.py": "def test_one():\n    pass\n"}
    root = _write(tmp_path / "probe", files)
    analysis = analyze(root)
    assert "./ci.sh" not in [f.value for f in analysis.lint]
    assert analysis.lint[0].value == "tox -m check"
