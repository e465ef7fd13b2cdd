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
