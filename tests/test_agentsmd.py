"""AGENTS.md analysis, generation and staleness on fixture repositories built here."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from aiplane.agentsmd.analyze import analyze
from aiplane.agentsmd.generate import MAX_WORDS, InventedCommand, check, generate, render, verify_commands
from aiplane.repository.tree import GitTree
from tests.conftest import AIPLANE, clean_env


def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def _values(facts) -> list[str]:  # noqa: ANN001
    return [f.value for f in facts]


def _workflow(*runs: str, job: str = "test") -> str:
    steps = "".join(f"      - run: {run}\n" for run in runs)
    return f"on: [push, pull_request]\njobs:\n  {job}:\n    runs-on: ubuntu-latest\n    steps:\n      - uses: actions/checkout@v4\n{steps}"


PY_UV = {
    "pyproject.toml": '[project]\nname = "svc"\nrequires-python = ">=3.11"\n\n[dependency-groups]\ndev = ["pytest>=8", "ruff", "mypy"]\n\n'
                      '[tool.pytest.ini_options]\ntestpaths = ["tests"]\n\n[tool.ruff]\nline-length = 100\n\n[tool.mypy]\nfiles = ["src"]\n',
    "uv.lock": "version = 1\n",
    "src/svc/__init__.py": "x = 1\n",
    "tests/test_svc.py": "def test_adds():\n    assert 1 + 1 == 2\n",
}
GO = {"go.mod": "module example.com/svc\n\ngo 1.23\n", "main.go": "package main\n\nfunc main() {}\n",
      "main_test.go": "package main\n\nimport \"testing\"\n\nfunc TestMain2(t *testing.T) {}\n", ".golangci.yml": "linters: {}\n"}
RUST = {"Cargo.toml": '[package]\nname = "crate"\nversion = "0.1.0"\nrust-version = "1.80"\n', "rust-toolchain.toml": '[toolchain]\nchannel = "1.82"\n',
        "src/lib.rs": "pub fn a() {}\n#[cfg(test)]\nmod tests {\n    #[test]\n    fn adds() {}\n}\n"}
NODE_PNPM = {
    "package.json": json.dumps({"name": "root", "private": True, "packageManager": "pnpm@9.1.0",
                                "scripts": {"test": "vitest run", "lint": "eslint ."}, "engines": {"node": ">=20"},
                                "devDependencies": {"vitest": "^2", "eslint": "^9"}}, indent=2),
    "pnpm-lock.yaml": "lockfileVersion: 9\n",
    "pnpm-workspace.yaml": "packages:\n  - packages/*\n",
    "packages/ui/package.json": json.dumps({"name": "ui", "scripts": {"test": "jest", "typecheck": "tsc --noEmit"}}, indent=2),
    "packages/ui/src/index.ts": "export const a = 1;\n",
    "packages/ui/src/index.test.ts": "test('a', () => {});\n",
    "packages/docs/README.md": "a plain folder, not a package\n",
    "src/index.ts": "export const b = 2;\n",
    "src/index.test.ts": "test('b', () => {});\n",
}


# -- one fixture per ecosystem ---------------------------------------------------------------------------


ECOSYSTEMS = {
    "python-uv": (PY_UV, "uv run pytest", "uv run pytest tests/test_svc.py::test_adds", ["uv run ruff check", "uv run mypy"]),
    "python-unittest": ({"setup.py": "from setuptools import setup\nsetup(name='x')\n", "x/__init__.py": "",
                         "tests/__init__.py": "", "tests/test_x.py": "import unittest\n\nclass T(unittest.TestCase):\n    pass\n"},
                        "python -m unittest", "python -m unittest tests.test_x", []),
    "python-tox": ({"tox.ini": "[tox]\nenvlist = py312, lint\n\n[testenv]\ndeps = pytest\ncommands = pytest {posargs}\n\n"
                               "[testenv:lint]\ndeps = ruff\ncommands = ruff check src\n",
                    "pyproject.toml": '[project]\nname = "t"\n', "tests/test_t.py": "def test_t():\n    pass\n"},
                   "tox", "pytest tests/test_t.py::test_t", ["tox -e lint"]),
    "python-nox": ({"noxfile.py": "import nox\n\n@nox.session(python=['3.11', '3.12'])\ndef tests(session):\n    session.install('pytest')\n"
                                  "    session.run('pytest', *session.posargs)\n\n@nox.session\ndef lint(session):\n"
                                  "    session.run('ruff', 'check', '.')\n\n@nox.session(default=False)\ndef release(session):\n"
                                  "    session.run('twine', 'upload', 'dist/*')\n",
                    "pyproject.toml": '[project]\nname = "n"\n', "tests/test_n.py": "def test_n():\n    pass\n"},
                   "nox -s tests", "pytest tests/test_n.py::test_n", ["nox -s lint"]),
    "python-hatch": ({"pyproject.toml": '[project]\nname = "h"\n\n[tool.hatch.envs.default.scripts]\ncheck = "ruff check ."\n'
                                        '\n[tool.hatch.envs.types.scripts]\ncheck = "mypy src"\n',
                      "tests/test_h.py": "def test_h():\n    pass\n"},
                     "hatch test", "hatch test tests/test_h.py::test_h", ["hatch run check", "hatch run types:check"]),
    "python-poetry": ({"pyproject.toml": '[tool.poetry]\nname = "p"\n\n[tool.poetry.group.dev.dependencies]\npytest = "^8"\n\n'
                                         '[tool.pytest.ini_options]\n', "poetry.lock": "", "tests/test_p.py": "def test_p():\n    pass\n"},
                      "poetry run pytest", "poetry run pytest tests/test_p.py::test_p", []),
    "python-pdm": ({"pyproject.toml": '[project]\nname = "d"\n\n[tool.pdm.scripts]\ntest = "pytest -q"\nlint = "ruff check ."\n',
                    "pdm.lock": "", "tests/test_d.py": "def test_d():\n    pass\n"},
                   "pdm run test", "pdm run pytest tests/test_d.py::test_d", ["pdm run lint"]),
    "node-npm-jest": ({"package.json": json.dumps({"scripts": {"test": "jest", "lint": "eslint src"}, "devDependencies": {"jest": "1"}}),
                       "package-lock.json": "{}", "src/a.test.js": "test('a', () => {});\n"},
                      "npm test", "npx jest src/a.test.js", ["npm run lint"]),
    "node-yarn-mocha": ({"package.json": json.dumps({"scripts": {"test": "mocha", "format:check": "prettier --check ."}}), "yarn.lock": "",
                         "test/a.spec.js": "it('a', () => {});\n"},
                        "yarn test", "yarn mocha test/a.spec.js", ["yarn run format:check"]),
    "node-bun": ({"package.json": json.dumps({"scripts": {"test": "bun test"}}), "bun.lock": "", "src/a.test.ts": ""},
                 "bun run test", "bun test src/a.test.ts", []),
    "node-test-runner": ({"package.json": json.dumps({"scripts": {"test": "node --test"}}), "test/a.test.mjs": ""},
                         "npm test", "node --test test/a.test.mjs", []),
    "go": (GO, "go test ./...", "go test . -run TestMain2", ["golangci-lint run"]),
    "rust": (RUST, "cargo test", "cargo test adds", []),
    "maven": ({"pom.xml": "<project><modules><module>core</module></modules></project>", "mvnw": "#!/bin/sh\n",
               "core/pom.xml": "<project/>", "core/src/test/java/org/x/CoreTest.java": "class CoreTest {}\n"},
              "./mvnw test", "./mvnw test -pl core -am -Dtest=CoreTest -Dsurefire.failIfNoSpecifiedTests=false", []),
    "gradle": ({"settings.gradle.kts": 'include("lib")\n', "build.gradle.kts": 'plugins { id("com.diffplug.spotless") }\n', "gradlew": "#!/bin/sh\n",
                "lib/src/test/kotlin/org/x/LibTest.kt": "class LibTest\n"},
               "./gradlew test", "./gradlew :lib:test --tests org.x.LibTest", ["./gradlew spotlessCheck"]),
    "ruby-rspec": ({"Gemfile": "source 'https://rubygems.org'\ngem 'rspec'\ngem 'rubocop'\n", ".rubocop.yml": "AllCops: {}\n",
                    "Rakefile": "require 'rspec/core/rake_task'\nRSpec::Core::RakeTask.new(:spec)\ntask default: :spec\n",
                    "spec/a_spec.rb": "describe 'a' do\nend\n"},
                   "bundle exec rake spec", "bundle exec rspec spec/a_spec.rb", ["bundle exec rubocop"]),
    "ruby-minitest": ({"Gemfile": "gem 'minitest'\n", "Rakefile": "require 'rake/testtask'\nRake::TestTask.new(:test)\n",
                       "test/a_test.rb": "require 'minitest/autorun'\n"},
                      "bundle exec rake test", "bundle exec ruby -Ilib:test test/a_test.rb", []),
    "php-composer": ({"composer.json": json.dumps({"require": {"php": ">=8.1"}, "require-dev": {"phpunit/phpunit": "^10", "phpstan/phpstan": "1"},
                                                   "scripts": {"test": "phpunit", "stan": "phpstan analyse"}}),
                      "phpunit.xml.dist": "<phpunit/>", "phpstan.neon": "", "tests/FooTest.php": "<?php\n"},
                     "composer test", "vendor/bin/phpunit tests/FooTest.php", ["composer stan"]),
    "php-pest": ({"composer.json": json.dumps({"require-dev": {"pestphp/pest": "^2"}}), "tests/Feature/AppTest.php": "<?php\n"},
                 "vendor/bin/pest", "vendor/bin/pest tests/Feature/AppTest.php", []),
    "dotnet": ({"App.sln": "", "src/App/App.csproj": "<Project/>", "tests/App.Tests/App.Tests.csproj": "<Project/>",
                "tests/App.Tests/WidgetTests.cs": "class WidgetTests {}\n"},
               "dotnet test", "dotnet test --filter FullyQualifiedName~WidgetTests", []),
    "cmake": ({"CMakeLists.txt": "project(x)\nenable_testing()\nadd_test(NAME a COMMAND a)\n", "src/a.c": "int main(){}\n"},
              "ctest --test-dir build", None, []),
    "meson": ({"meson.build": "project('x', 'c')\ntest('a', executable('a', 'a.c'))\n", "a.c": "int main(){}\n"},
              "meson test -C build", None, []),
}


@pytest.mark.parametrize("name", list(ECOSYSTEMS))
def test_each_ecosystem_gets_its_commands_with_evidence(tmp_path, name):
    files, test, one_test, checks = ECOSYSTEMS[name]
    result = analyze(_write(tmp_path, files))
    assert result.test and result.test[0].value == test, _values(result.test)
    assert _values(result.single_test) == ([one_test] if one_test else [])
    assert _values(result.lint) == checks
    for fact in result.test + result.lint:
        assert (tmp_path / fact.evidence.split(":")[0]).exists(), fact.evidence
    text = render(result, name)
    verify_commands(text, result)


def test_native_builds_say_how_to_build_first(tmp_path):
    result = analyze(_write(tmp_path, ECOSYSTEMS["cmake"][0]))
    assert _values(result.build_commands) == ["cmake -B build && cmake --build build"]
    assert "- Build first: `cmake -B build && cmake --build build`" in render(result, "x")
    # CI's configure step depends on a value only CI has, so it is dropped: its `cmake --build`
    # alone would fail on a fresh checkout, and the plain template is written instead.
    ci = _workflow('cmake -S . -B build -DCMAKE_INSTALL_PREFIX="$RUNNER_TEMP/x"', "cmake --build build --parallel",
                   "ctest --test-dir build --output-on-failure")
    result = analyze(_write(tmp_path / "ci", {**ECOSYSTEMS["cmake"][0], ".github/workflows/ci.yml": ci}))
    assert _values(result.test) == ["ctest --test-dir build --output-on-failure"]
    assert _values(result.build_commands) == ["cmake -B build && cmake --build build"]


def test_runtimes_and_tools_are_validated_facts(tmp_path):
    uv = analyze(_write(tmp_path / "uv", PY_UV))
    assert _values(uv.runtime) == ["Python >=3.11"] and _values(uv.build) == ["uv"]
    go = analyze(_write(tmp_path / "go", GO))
    assert _values(go.runtime) == ["Go 1.23"]
    rust = analyze(_write(tmp_path / "rust", RUST))
    assert _values(rust.runtime) == ["Rust 1.82", "Rust >= 1.80 (MSRV)"]
    node = analyze(_write(tmp_path / "node", NODE_PNPM))
    assert _values(node.build) == ["pnpm 9.1.0"] and _values(node.runtime) == ["Node >=20"]


# -- classification by evidence ---------------------------------------------------------------------------


def test_commands_are_classified_by_what_they_run(tmp_path):
    tox = ("[tox]\nenvlist = py312\n\n[testenv]\ncommands = pytest\n\n[testenv:lint]\ncommands = pre-commit run --all-files\n\n"
           "[testenv:docs]\ncommands = sphinx-build docs out\n\n[testenv:publish]\ncommands = twine upload dist/*\n\n"
           "[testenv:bench]\ncommands = pytest --benchmark-only\n")
    package = {"scripts": {"test:lint": "eslint .", "test": "vitest run", "test:types": "tsd", "bench": "vitest bench", "release": "np"}}
    root = _write(tmp_path, {
        "tox.ini": tox, "package.json": json.dumps(package), "pyproject.toml": '[project]\nname = "x"\n',
        ".github/workflows/ci.yml": _workflow("tox -e lint", "tox -e docs", "tox -e publish", "tox -e bench", "pytest --mypy -m mypy",
                                              "npm run test:lint", "npm run test:types", "npm run bench", "npm run release", "tox -e py312"),
    })
    result = analyze(root)
    assert _values(result.test) == ["tox -e py312"]
    kinds = {f.value: f.kind for f in result.lint}
    assert kinds["tox -e lint"] == "lint" and kinds["pytest --mypy -m mypy"] == "typecheck"
    everything = " ".join(result.commands())
    assert "publish" not in everything and "release" not in everything and "docs" not in everything and "bench" not in everything


def test_the_entry_point_names_the_runner_underneath(tmp_path):
    root = _write(tmp_path, {
        "Makefile": "test:\n\tuv run pytest -q\n\nlint:\n\tuv run ruff check .\n",
        "pyproject.toml": '[project]\nname = "x"\n[dependency-groups]\ndev = ["pytest"]\n', "uv.lock": "",
        ".github/workflows/ci.yml": _workflow("make lint", "make test"),
        "tests/test_x.py": "def test_x():\n    pass\n",
    })
    result = analyze(root)
    assert (result.test[0].value, result.test[0].runs) == ("make test", "pytest")
    assert "- Test: `make test` (runs pytest)" in render(result, "x")
    assert _values(result.single_test) == ["uv run pytest tests/test_x.py::test_x"]


def test_nothing_is_synthesised_from_a_config_table(tmp_path):
    root = _write(tmp_path, {
        "pyproject.toml": '[project]\nname = "x"\n\n[tool.mypy]\nstrict = true\n\n[tool.ruff]\n\n[tool.pytest.ini_options]\n',
        "Cargo.toml": '[package]\nname = "c"\nversion = "0.1.0"\n', "src/lib.rs": "",
    })
    result = analyze(root)
    commands = result.commands()
    assert not any(c.startswith(("mypy", "ruff", "pytest", "uv run")) for c in commands)
    assert "cargo clippy" not in commands and _values(result.test) == ["cargo test"]


def test_ci_wins_over_entry_points_and_watch_mode_is_avoided(tmp_path):
    package = {"scripts": {"test": "vitest", "test:ci": "vitest run --coverage"}, "devDependencies": {"vitest": "2"}}
    root = _write(tmp_path, {"package.json": json.dumps(package), "src/a.test.ts": ""})
    assert _values(analyze(root).test) == ["npm test -- --run"]  # vitest alone watches in a terminal
    _write(root, {".github/workflows/ci.yml": _workflow("npm ci", "npm run test:ci")})
    result = analyze(root)
    assert _values(result.test) == ["npm run test:ci"]
    assert _values(result.single_test) == ["npx vitest run src/a.test.ts"]


def test_gradle_excluded_tasks_and_subproject_tests(tmp_path):
    # `check -x test` runs everything but the tests; `:module:test` tests one subproject.
    root = _write(tmp_path, {
        "settings.gradle.kts": 'include("lib")\n', "build.gradle.kts": "", "gradlew": "#!/bin/sh\n",
        ".github/workflows/ci.yml": _workflow("./gradlew check -x test -x allTests", "./gradlew lib:test -PmoduleTests=true",
                                              "./gradlew test allTests", job="build"),
    })
    result = analyze(root)
    assert _values(result.test) == ["./gradlew test allTests"]
    assert [(f.value, f.kind) for f in result.lint] == [("./gradlew check -x test -x allTests", "lint")]
    build = _write(tmp_path / "b", {"build.gradle.kts": "", "gradlew": "#!/bin/sh\n",
                                    ".github/workflows/ci.yml": _workflow("./gradlew build -x test", "./gradlew test", job="build")})
    assert _values(analyze(build).test) == ["./gradlew test"] and analyze(build).lint == []


def test_hatch_matrix_selectors_and_scripts_that_name_scripts(tmp_path):
    pyproject = ('[project]\nname = "x"\n\n[tool.hatch.envs.test.scripts]\ntest = "python -m unittest discover -s x"\n'
                 'with-coverage = "test"\n\n[[tool.hatch.envs.test.matrix]]\npython = ["3.11", "3.12"]\n')
    root = _write(tmp_path, {"pyproject.toml": pyproject, "x/__init__.py": "",
                             ".github/workflows/ci.yml": _workflow("pip install hatch", "hatch run +py=3.12 test:with-coverage")})
    result = analyze(root)
    assert (result.test[0].value, result.test[0].runs) == ("hatch run +py=3.12 test:with-coverage", "unittest")


def test_a_config_check_is_left_out_when_an_entry_point_runs_that_tool(tmp_path):
    # [tool.black] and black in the dependencies, but the project runs black on its own paths through tox.
    pyproject = '[project]\nname = "x"\n[project.optional-dependencies]\ndev = ["black"]\n\n[tool.black]\nline-length = 100\n'
    tox = "[tox]\nenvlist = py312\n\n[testenv]\ncommands = pytest\n\n[testenv:pep8]\ncommands =\n    flake8 src\n    black --check src tests\n"
    root = _write(tmp_path, {"pyproject.toml": pyproject, "tox.ini": tox, ".github/workflows/ci.yml": _workflow("tox -e py312")})
    result = analyze(root)
    assert "black --check ." not in result.commands()
    assert _values(result.lint) == ["tox -e pep8"]
    alone = _write(tmp_path / "alone", {"pyproject.toml": pyproject})
    assert "black --check ." in analyze(alone).commands()  # declared and configured, and nothing else runs it


def test_sh_c_scripts_tox_notest_and_smoke_scripts(tmp_path):
    # `sh -c '...'` is read as its inner script; `tox --notest` only creates environments; a smoke
    # script is not the suite.
    root = _write(tmp_path, {
        "lib/pom.xml": "<project/>\n", ".travis.yml": "language: java\nscript:\n  - sh -c 'cd lib && mvn test'\n",
    })
    result = analyze(root)
    assert [(f.value, f.cwd) for f in result.test] == [("mvn test", "lib")]
    tox = "[tox]\nenvlist = py312\n\n[testenv]\ncommands = pytest {posargs}\n"
    python = _write(tmp_path / "py", {"tox.ini": tox, "pyproject.toml": '[project]\nname = "x"\n',
                                      ".github/workflows/ci.yml": _workflow("tox run --notest -e py312", "tox run --skip-pkg-install -e py312")})
    assert _values(analyze(python).test) == ["tox run -e py312"]  # --skip-pkg-install leans on the --notest step
    package = {"scripts": {"test:smoke": "node test/smoke.js", "test:ci": "mocha"}, "devDependencies": {"mocha": "10"}}
    node = _write(tmp_path / "node", {"package.json": json.dumps(package), "test/smoke.js": "", "test/a.test.js": "",
                                      ".github/workflows/ci.yml": _workflow("npm run test:smoke", "npm run test:ci")})
    assert _values(analyze(node).test) == ["npm run test:ci"]


def test_entry_points_are_read(tmp_path):
    root = _write(tmp_path, {
        "makefile": "GO ?= go\n\ntest-%:\n\t$(GO) test ./$*/...\n\nvet:\n\t$(GO) vet ./...\n",
        "go.mod": "module x\n", "api/a_test.go": "package api\n",
        ".github/workflows/ci.yml": _workflow("make test-api", "make vet"),
    })
    result = analyze(root)
    assert _values(result.test) == ["make test-api"] and result.test[0].runs == "go test"
    assert _values(result.lint) == ["make vet"]
    assert "- Lint: `make vet`" in render(result, "x")


def test_root_level_test_script_and_github_action_uses(tmp_path):
    root = _write(tmp_path, {
        "test.py": "import unittest\n", "setup.py": "",
        ".github/workflows/ci.yml": "on: push\njobs:\n  t:\n    runs-on: ubuntu-latest\n    steps:\n      - run: python test.py\n"
                                    "      - uses: pre-commit/action@v3\n", ".pre-commit-config.yaml": "repos: []\n",
    })
    result = analyze(root)
    assert _values(result.test) == ["python test.py"] and _values(result.lint) == ["pre-commit run --all-files"]


def test_cargo_workspace_listing_the_root_does_not_crash(tmp_path):
    root = _write(tmp_path, {
        "Cargo.toml": '[package]\nname = "app"\nversion = "0.1.0"\n\n[workspace]\nmembers = [".", "crates/*", "../outside", "/etc"]\n',
        "src/main.rs": "fn main() {}\n",
        **{f"crates/c{i}/Cargo.toml": f'[package]\nname = "c{i}"\nversion = "0.1.0"\n' for i in range(9)},
        **{f"crates/c{i}/src/lib.rs": "" for i in range(9)},
        "crates/notes/README.md": "not a crate\n",
    })
    (tmp_path.parent / "outside").mkdir(exist_ok=True)
    result = analyze(root)
    assert _values(result.test) == ["cargo test --workspace"]
    assert sorted(p.root for p in result.packages) == [f"crates/c{i}" for i in range(9)]
    text = render(result, "app")
    assert text.count("cargo test") == 1  # nine identical per-crate lines are not written
    assert "- Packages (9): `crates/` (9)" in text and "crates/notes" not in text


def test_workspace_packages_are_real_and_identical_lines_collapse(tmp_path):
    files = dict(NODE_PNPM)
    for name in ("a", "b", "c"):
        files[f"packages/{name}/package.json"] = json.dumps({"name": name, "scripts": {"test": "jest"}})
    result = analyze(_write(tmp_path, files))
    assert sorted(p.root for p in result.packages) == ["packages/a", "packages/b", "packages/c", "packages/ui"]
    text = render(result, "root")
    assert "packages/docs" not in text
    assert "- `packages/a/`, `packages/b/`, `packages/c/`: `pnpm test` (runs jest)" in text
    assert "- `packages/ui/`: `pnpm test` (runs jest); `pnpm run typecheck`" in text
    assert "- Source: `src/`" in text  # packages/ is listed as packages


def test_layout_from_evidence_and_no_empty_or_boilerplate_sections(tmp_path):
    root = _write(tmp_path, {**GO, "pkg/debian/control": "Package: x\n", "pkg/rpm/x.spec": "Name: x\n",
                             "internal/store/store.go": "package store\n" + "// code\n" * 50})
    result = analyze(root)
    assert "pkg/" not in result.source_roots and "internal/" in result.source_roots
    text = render(result, "svc")
    assert "## Conventions" not in text and "## Boundaries" not in text  # no evidence for either (no go.sum, no generated paths)
    assert "Run the test and lint commands" not in text and "Do not commit secrets" not in text
    for heading in ("## Repository", "## How to navigate", "## Boundaries"):
        if heading in text:
            assert text.split(heading, 1)[1].lstrip("\n").startswith("- ")


def test_conventions_come_from_configuration(tmp_path):
    result = analyze(_write(tmp_path, {**PY_UV, "pyproject.toml": PY_UV["pyproject.toml"] + '\n[tool.towncrier]\ndirectory = "changes"\n',
                                       "changes/1.feature.md": "x\n", ".commitlintrc.json": "{}"}))
    assert _values(result.conventions) == ["Each change needs a news fragment in `changes/` (towncrier)", "Line length 100 (ruff)",
                                           "Commit messages follow Conventional Commits (commitlint)"]


def test_polyglot_monorepo_and_word_limit(tmp_path):
    files = {f"api/{k}": v for k, v in GO.items()} | {f"web/{k}": v for k, v in NODE_PNPM.items() if not k.startswith("pnpm-workspace")}
    files |= {f"ml/{k}": v for k, v in PY_UV.items()} | {f"core/{k}": v for k, v in RUST.items()}
    root = _write(tmp_path, files)
    analysis, text = generate(root)
    assert {p.root for p in analysis.packages} == {"api", "web", "ml", "core"}
    assert {"Go", "Rust", "Python", "TypeScript"} <= set(analysis.languages)
    assert len(text.split()) <= MAX_WORDS
    assert "`go test ./...`" in text and "`uv run pytest`" in text


def test_invented_commands_are_rejected(tmp_path):
    analysis = analyze(_write(tmp_path, PY_UV))
    verify_commands("Run `uv run pytest` and `uv run ruff check`.", analysis)
    with pytest.raises(InventedCommand, match="make test"):
        verify_commands("Run `make test` before pushing.", analysis)


# -- staleness -----------------------------------------------------------------------------------------------


AGENTS_TEXT = """# AGENTS.md
- Test: `make test`; one file: `pytest tests/test_app.py`
- Lint: `npm run lint`; `tox -e lint`
- Review with the `/review` slash command; branches look like `feature/<name>` or `aiplane/agents-md`.
- Config lives in `cli/config.py` and `src/app/settings.py`; see `README.md`, `docs/`.
- Artifacts go to `test-artifacts/`; the upstream is `github.com/acme/app`; examples in `../shared/fixtures/`.
- Install with `pip install -e .` and run `.venv/bin/app serve`.
"""


def _repo_for_check(root: Path) -> Path:
    return _write(root, {
        "AGENTS.md": AGENTS_TEXT, "Makefile": "test:\n\tpytest\n", "package.json": json.dumps({"scripts": {"lint": "eslint ."}}),
        "tox.ini": "[tox]\nenvlist = py\n[testenv:lint]\ncommands = ruff check\n", "tests/test_app.py": "def test_a():\n    pass\n",
        "src/app/cli/config.py": "", "src/app/settings.py": "", "README.md": "", "docs/index.md": "", ".gitignore": "test-artifacts/\n",
    })


def test_staleness_has_no_false_positives_on_a_current_file(tmp_path):
    result = check(_repo_for_check(tmp_path))
    assert (result.stale_commands, result.missing_paths, result.touched_watched) == ([], [], [])


def test_staleness_reports_what_is_really_gone(tmp_path):
    root = _repo_for_check(tmp_path)
    (root / "Makefile").write_text("tests:\n\tpytest\n")
    (root / "src/app/settings.py").unlink()
    (root / "tests/test_app.py").unlink()
    (root / "package.json").write_text(json.dumps({"scripts": {"check": "eslint ."}}))
    result = check(root)
    assert result.stale_commands == ["make test", "pytest tests/test_app.py", "npm run lint"]
    assert result.missing_paths == ["src/app/settings.py"]


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(root), "-c", "user.email=a@b.c", "-c", "user.name=t", *args],
                          check=True, capture_output=True, text=True).stdout


def test_staleness_against_a_base_reports_only_what_the_change_broke(tmp_path):
    root = _repo_for_check(tmp_path)
    (root / "src/app/settings.py").unlink()  # already gone before the change
    _git(root, "init", "-q", "-b", "main")
    _git(root, "add", "-A")
    _git(root, "commit", "-q", "-m", "base")
    base = _git(root, "rev-parse", "HEAD").strip()
    (root / "Makefile").write_text("tests:\n\tpytest\n")
    (root / "docs/index.md").unlink()
    (root / "docs").rmdir()
    (root / "README.md").write_text("changed\n")
    _git(root, "commit", "-q", "-am", "rename the target")
    head = _git(root, "rev-parse", "HEAD").strip()
    result = check(GitTree(root, head), base=GitTree(root, base), changed=["Makefile", "docs/index.md", "README.md"])
    assert result.stale_commands == ["make test"] and result.missing_paths == ["docs/"]
    assert result.touched_watched == ["Makefile"]  # a manifest whose change moved a fact; README.md is only prose


def test_staleness_in_a_checkout_skips_examples_placeholders_and_paths_never_there(tmp_path):
    # Hand-written AGENTS.md files name example paths; in a git checkout, a path is stale only if the
    # repository held it when AGENTS.md was last written, and example sentences are not claims.
    root = _write(tmp_path, {"src/app.py": "", "src/old.py": "", "CHANGES/12.bugfix.rst": "", "spec/a_spec.rb": "", "Gemfile": ""})
    _git(root, "init", "-q", "-b", "main")
    _git(root, "add", "-A")
    _git(root, "commit", "-q", "-m", "start")
    (root / "CHANGES/12.bugfix.rst").unlink()  # consumed by a release before AGENTS.md was written
    _write(root, {"AGENTS.md": (
        "# Agents\n\n- Code lives in `src/app.py` and `src/old.py`.\n"
        "- Add a fragment such as `CHANGES/1234.bugfix.rst` for a fix.\n"
        "- Example (`CHANGES/12.bugfix.rst` style).\n"
        "- Route files: `settings.profile.tsx` maps to `/settings/profile`.\n"
        "- Run one spec with `bundle exec rspec spec/path/to/file_spec.rb`.\n")})
    _git(root, "add", "-A")
    _git(root, "commit", "-q", "-m", "agents")
    (root / "src/old.py").unlink()  # gone after AGENTS.md was written: really stale
    result = check(root)
    assert result.missing_paths == ["src/old.py"] and result.stale_commands == []


def test_check_flags_changed_manifests_since_base(tmp_path):
    root = _write(tmp_path, GO)
    _, text = generate(root)
    (root / "AGENTS.md").write_text(text)
    _git(root, "init", "-q", "-b", "main")
    _git(root, "commit", "-q", "--allow-empty", "-m", "base")
    _git(root, "add", "-A")
    _git(root, "commit", "-q", "-m", "files")
    _git(root, "checkout", "-q", "-b", "change")
    (root / "go.mod").write_text("module example.com/svc\n\ngo 1.24\n")
    _git(root, "commit", "-q", "-am", "bump go")
    assert check(root, base="main").touched_watched == ["go.mod"]  # the Go version AGENTS.md states moved
    _git(root, "checkout", "-q", "-b", "later")
    (root / "go.mod").write_text("module example.com/svc\n\ngo 1.24\n\nrequire example.com/dep v1.0.0\n")
    _git(root, "commit", "-q", "-am", "add a dependency")
    assert check(root, base="change").touched_watched == []  # go.mod changed, but no fact AGENTS.md states did


# -- CLI ---------------------------------------------------------------------------------------------------


def test_generate_write_keeps_an_existing_file_and_staleness_after_rename(tmp_path):
    root = _write(tmp_path, NODE_PNPM)
    env = clean_env()
    assert subprocess.run([AIPLANE, "agents-md", "generate", str(root), "--write", "--claude"], env=env, capture_output=True).returncode == 0
    assert (root / "CLAUDE.md").read_text() == "@AGENTS.md\n"
    ok = subprocess.run([AIPLANE, "agents-md", "check", str(root)], env=env, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout
    original = (root / "AGENTS.md").read_text()
    assert "`pnpm test`" in original

    package = json.loads((root / "package.json").read_text())
    package["scripts"] = {"unit": "vitest run", "lint": "eslint ."}  # the test script is renamed
    (root / "package.json").write_text(json.dumps(package))
    stale = subprocess.run([AIPLANE, "agents-md", "check", str(root)], env=env, capture_output=True, text=True)
    assert stale.returncode == 1 and "stale command: pnpm test" in stale.stdout

    again = subprocess.run([AIPLANE, "agents-md", "generate", str(root), "--write"], env=env, capture_output=True, text=True)
    assert "left as it is" in again.stdout and (root / "AGENTS.md").read_text() == original
    assert "`pnpm run unit`" in (root / "AGENTS.md.proposed").read_text()  # its body runs vitest: it is the test command


def _model_env(server, tmp_path: Path) -> dict[str, str]:
    return clean_env(
        AIPLANE_DATA_DIR=str(tmp_path / "data"),
        AIPLANE_LLM__MODELS__SPECIALIST__BASE_URL=server.url + "/v1",
        AIPLANE_LLM__MODELS__SPECIALIST__MODEL="gpt-4o-mini",
        AIPLANE_LLM__MODELS__SPECIALIST__API_KEY="sk-x",
    )


GO_CONVENTIONS = GO | {".commitlintrc.json": "{}"}


def test_model_phrasing_is_kept_only_without_new_commands(tmp_path, model):
    server, _state = model
    good = _write(tmp_path / "svc-good", GO_CONVENTIONS)
    result = subprocess.run([AIPLANE, "agents-md", "generate", str(good), "--model"], env=_model_env(server, tmp_path), capture_output=True, text=True)
    assert result.returncode == 0 and "## Conventions (house rules)" in result.stdout and "`go test ./...`" in result.stdout

    invented = _write(tmp_path / "svc-invent", GO_CONVENTIONS)
    result = subprocess.run([AIPLANE, "agents-md", "generate", str(invented), "--model"], env=_model_env(server, tmp_path), capture_output=True, text=True)
    assert result.returncode == 0 and "make deploy" not in result.stdout
    assert "rejected the model's version: commands not found by the analysis: make deploy" in result.stderr
    assert "## Conventions\n" in result.stdout  # the verified template was kept


def test_catalog_metadata(tmp_path):
    repo = _write(tmp_path / "billing", GO)
    subprocess.run(["git", "-C", str(repo), "init", "-q"], check=True)
    subprocess.run(["git", "-C", str(repo), "remote", "add", "origin", "https://github.com/acme/billing.git"], check=True)
    catalog = _write(
        tmp_path / "catalog",
        {
            "billing.yaml": "apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata:\n  name: billing\n  annotations:\n"
            "    github.com/project-slug: acme/billing\nspec:\n  type: service\n  lifecycle: production\n  owner: team-pay\n"
            "  system: payments\n  dependsOn: ['resource:billing-db']\n",
            "db.yaml": "apiVersion: backstage.io/v1alpha1\nkind: Resource\nmetadata:\n  name: billing-db\nspec:\n  type: database\n  owner: team-pay\n",
        },
    )
    env = clean_env(AIPLANE_DATA_DIR=str(tmp_path / "data"))
    subprocess.run([AIPLANE, "catalog", "ingest", str(catalog)], env=env, check=True, capture_output=True)
    result = subprocess.run([AIPLANE, "agents-md", "generate", str(repo), "--catalog"], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "## Dependencies" in result.stdout and "Owner: group:default/team-pay" in result.stdout
    assert "Depends on: resource:default/billing-db" in result.stdout and "System: payments" in result.stdout


def test_rollout_is_idempotent_and_reports_each_repository(tmp_path):
    repos = []
    for name, files in (("go-svc", GO), ("rust-lib", RUST)):
        repo = _write(tmp_path / name, files)
        subprocess.run(["git", "-C", str(repo), "init", "-q", "-b", "main"], check=True)
        subprocess.run(["git", "-C", str(repo), "add", "-A"], check=True)
        subprocess.run(["git", "-C", str(repo), "-c", "user.email=a@b.c", "-c", "user.name=t", "commit", "-q", "-m", "init"], check=True)
        repos.append(repo)
    listing = tmp_path / "repos.txt"
    listing.write_text("\n".join(str(r) for r in repos) + f"\n{tmp_path / 'missing'}\n")
    env = clean_env()
    first = subprocess.run([AIPLANE, "agents-md", "rollout", "--repos", str(listing), "--json"], env=env, capture_output=True, text=True)
    assert first.returncode == 1  # the missing one failed
    outcomes = {Path(r["repo"]).name: (r["outcome"], r["reason"]) for r in json.loads(first.stdout)}
    assert outcomes["go-svc"][0] == "created" and outcomes["rust-lib"][0] == "created"
    assert outcomes["missing"] == ("failed", "not a git repository")
    branch_file = subprocess.run(["git", "-C", str(repos[0]), "show", "aiplane/agents-md:AGENTS.md"], capture_output=True, text=True).stdout
    assert "`go test ./...`" in branch_file
    assert not (repos[0] / "AGENTS.md").exists()  # the checkout itself is untouched

    second = subprocess.run([AIPLANE, "agents-md", "rollout", "--repos", str(listing), "--json"], env=env, capture_output=True, text=True)
    again = {Path(r["repo"]).name: r["outcome"] for r in json.loads(second.stdout)}
    assert again["go-svc"] == "unchanged" and again["rust-lib"] == "unchanged"


# -- rollout through code hosts (wire-format doubles of GitHub and GitLab) ----------------------


def _gitc(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), "-c", "user.email=dev@example.com", "-c", "user.name=Dev", *args],
                          check=True, capture_output=True, text=True).stdout


def _published(tmp_path: Path, name: str, files: dict[str, str]) -> tuple[Path, Path]:
    """A bare 'origin' with one commit on main, and a clone of it."""
    remote = tmp_path / f"{name}.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(remote)], check=True)
    seed = _write(tmp_path / f"{name}-seed", files)
    _gitc(seed, "init", "-q", "-b", "main")
    _gitc(seed, "add", "-A")
    _gitc(seed, "commit", "-q", "-m", "init")
    _gitc(seed, "push", "-q", str(remote), "main")
    clone = tmp_path / name
    subprocess.run(["git", "clone", "-q", str(remote), str(clone)], check=True)
    return remote, clone


def test_rollout_opens_one_pull_request_per_repository_on_github(tmp_path):
    from tests.doubles import github as gh
    from tests.doubles.server import ServerThread

    remote, clone = _published(tmp_path, "go-svc", GO)
    listing = tmp_path / "repos.txt"
    listing.write_text(f"{clone} acme/widgets\n")
    state = gh.GitHubState()
    with ServerThread(gh.build_github_app(state)) as github:
        env = clean_env(GITHUB_TOKEN=gh.TOKEN)
        command = [AIPLANE, "agents-md", "rollout", "--repos", str(listing), "--vcs", "github", "--api-url", github.url, "--json"]
        first = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        assert first.returncode == 0, first.stderr
        (row,) = json.loads(first.stdout)
        assert row["outcome"] == "created" and row["url"] == "https://github.com/acme/widgets/pull/100"
        (pull,) = state.pulls
        assert pull["head"]["ref"] == "aiplane/agents-md" and pull["base"]["ref"] == "main" and "verified" in pull["title"]
        assert "`go test ./...`" in _gitc(remote, "show", "aiplane/agents-md:AGENTS.md")

        second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        (row,) = json.loads(second.stdout)
        assert (row["outcome"], row["reason"]) == ("unchanged", "the open proposal is current") and len(state.pulls) == 1

        # A human refines the proposal on the host; a later run must not overwrite it.
        human = tmp_path / "human"
        subprocess.run(["git", "clone", "-q", "-b", "aiplane/agents-md", str(remote), str(human)], check=True)
        (human / "AGENTS.md").write_text((human / "AGENTS.md").read_text() + "\nRun the linter before pushing.\n")
        _gitc(human, "commit", "-q", "-am", "Refine AGENTS.md")
        _gitc(human, "push", "-q", "origin", "aiplane/agents-md")
        (clone / "Makefile").write_text("lint:\n\tgolangci-lint run\n")
        _gitc(clone, "add", "-A")
        _gitc(clone, "commit", "-q", "-m", "add lint target")
        third = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        (row,) = json.loads(third.stdout)
        assert row["outcome"] == "unchanged" and "human edits (dev@example.com)" in row["reason"]
        assert "Run the linter before pushing." in _gitc(remote, "show", "aiplane/agents-md:AGENTS.md")
        assert len(state.pulls) == 1


def test_rollout_from_the_catalog_opens_merge_requests_on_gitlab(tmp_path):
    from tests.doubles import gitlab as gl
    from tests.doubles.server import ServerThread

    remote, _clone = _published(tmp_path, "rust-lib", RUST)
    catalog = _write(tmp_path / "catalog", {
        "lib.yaml": "apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata:\n  name: rust-lib\n  annotations:\n"
        f"    gitlab.com/project-slug: acme/rust-lib\n    backstage.io/source-location: url:file://{remote}/-/tree/main/\n"
        "spec:\n  type: library\n  lifecycle: production\n  owner: team-core\n",
        "nolink.yaml": "apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata:\n  name: unlinked\nspec:\n"
        "  type: service\n  lifecycle: production\n  owner: team-core\n",
    })
    state = gl.GitLabState()
    with ServerThread(gl.build_gitlab_app(state)) as gitlab:
        env = clean_env(AIPLANE_DATA_DIR=str(tmp_path / "data"), GITLAB_TOKEN=gl.TOKEN)
        subprocess.run([AIPLANE, "catalog", "ingest", str(catalog)], env=env, check=True, capture_output=True)
        command = [AIPLANE, "agents-md", "rollout", "--catalog", "--vcs", "gitlab", "--workspace", str(tmp_path / "ws"),
                   "--api-url", gitlab.url + "/api/v4", "--json"]
        first = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        assert first.returncode == 0, first.stderr
        (row,) = json.loads(first.stdout)
        assert row["outcome"] == "created" and row["url"].endswith("/acme/rust-lib/-/merge_requests/1")
        (mr,) = state.merge_requests
        assert mr["source_branch"] == "aiplane/agents-md" and mr["target_branch"] == "main"
        text = _gitc(remote, "show", "aiplane/agents-md:AGENTS.md")
        assert "`cargo test`" in text and "group:default/team-core" in text  # catalog facts too
        second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        assert json.loads(second.stdout)[0]["outcome"] == "unchanged" and len(state.merge_requests) == 1


def test_rollout_refuses_a_host_without_a_token(tmp_path):
    listing = tmp_path / "repos.txt"
    listing.write_text(f"{tmp_path} acme/x\n")
    result = subprocess.run([AIPLANE, "agents-md", "rollout", "--repos", str(listing), "--vcs", "github"],
                            env=clean_env(GITHUB_TOKEN=""), capture_output=True, text=True)
    assert result.returncode == 2 and "needs GITHUB_TOKEN" in result.stderr
    both = subprocess.run([AIPLANE, "agents-md", "rollout", "--repos", str(listing), "--catalog"], env=clean_env(), capture_output=True, text=True)
    assert both.returncode == 2 and "exactly one of --repos FILE or --catalog" in both.stderr


def test_ci_env_selected_tox_env_native_cargo_target_and_make_targets_that_only_compile(tmp_path):
    # TOXENV from the step env is resolved with the command (`tox` with TOXENV=checkmanifest is not
    # the default test env); a check_*.py script checks, it does not test; a cargo `--target` naming
    # the runner's own platform is dropped; `make test` whose recipe compiles `-o $@` builds.
    workflow = """
on: [push, pull_request]
jobs:
  checkmanifest:
    runs-on: ubuntu-latest
    steps:
      - run: tox
        env:
          TOXENV: checkmanifest
  test_class_order:
    runs-on: ubuntu-latest
    steps:
      - run: python scripts/check_test_class_order.py
  test_ubuntu:
    runs-on: ubuntu-latest
    steps:
      - run: tox -e py
"""
    tox = "[tox]\nenvlist = py\n\n[testenv]\ncommands = pytest\n\n[testenv:checkmanifest]\ndeps = check-manifest\ncommands = check-manifest\n"
    root = _write(tmp_path / "py", {".github/workflows/ci.yml": workflow, "tox.ini": tox, "pyproject.toml": '[project]\nname = "p"\n',
                                    "scripts/check_test_class_order.py": "print()\n"})
    assert analyze(root).test[0].value == "tox -e py"
    rust = """
on: [push, pull_request]
jobs:
  test:
    runs-on: ubuntu-latest
    strategy:
      matrix:
        include:
          - target: x86_64-unknown-linux-gnu
    steps:
      - run: |
          cargo test --target ${{ matrix.target }} --examples
          cargo test --target ${{ matrix.target }} --features=serde
"""
    root = _write(tmp_path / "rs", {".github/workflows/test.yml": rust, "Cargo.toml": '[package]\nname = "r"\nversion = "0.1.0"\n',
                                    "src/lib.rs": "\n"})
    assert analyze(root).test[0].value == "cargo test --features=serde"  # --examples alone is a partial run
    cpp = """
on: [push, pull_request]
jobs:
  build-and-test-on-32bit:
    runs-on: ubuntu-latest
    steps:
      - run: cd test && make test EXTRA_CXXFLAGS=-m32
  ubuntu:
    runs-on: ubuntu-latest
    steps:
      - run: cd test && make test && make test_parallel
"""
    makefile = "CXX = clang++\n\ntest : test.cc\n\t$(CXX) -o $@ test.cc\n\ntest_parallel : test\n\t$(call run_parallel,test)\n"
    root = _write(tmp_path / "c", {".github/workflows/test.yml": cpp, "test/Makefile": makefile, "test/test.cc": "\n", "lib.h": "\n"})
    result = analyze(root)
    assert (result.test[0].cwd, result.test[0].value) == ("test", "make test_parallel")


def test_a_code_linter_entry_point_comes_before_a_spell_check_in_ci(tmp_path):
    workflow = """
on: [push, pull_request]
jobs:
  cspell:
    runs-on: ubuntu-latest
    steps:
      - run: codespell
  test:
    runs-on: ubuntu-latest
    steps:
      - run: go test ./...
"""
    makefile = ".PHONY: lint\nlint:\n\tgolangci-lint run ./...\n"
    root = _write(tmp_path, {".github/workflows/ci.yml": workflow, "Makefile": makefile, "go.mod": "module x\n\ngo 1.22\n",
                             "x.go": "package x\n", "x_test.go": "package x\n"})
    assert analyze(root).lint[0].value == "make lint"


def test_coverage_debug_option_and_an_example_test_script_is_partial(tmp_path):
    from aiplane.agentsmd.commands import split_launcher

    assert split_launcher(["coverage", "run", "--debug", "config", "-m", "pytest"])[1] == ["pytest"]
    workflow = """
on: [push, pull_request]
jobs:
  test:
    runs-on: ubuntu-latest
    steps:
      - run: python examples/service/test_service.py
  tox:
    runs-on: ubuntu-latest
    steps:
      - run: tox -e py
"""
    tox = "[tox]\nenvlist = py\n\n[testenv]\ncommands = pytest\n"
    root = _write(tmp_path, {".github/workflows/ci.yml": workflow, "tox.ini": tox, "pyproject.toml": '[project]\nname = "p"\n',
                             "examples/service/test_service.py": "print()\n"})
    assert analyze(root).test[0].value == "tox -e py"


def test_dotnet_one_test_names_the_test_project_when_the_root_has_no_solution(tmp_path):
    appveyor = "image: Ubuntu2204\ntest_script:\n- ps: ./run-tests.ps1\n"
    files = {"appveyor.yml": appveyor, "run-tests.ps1": "dotnet test ./tests/Lib.Tests/ --configuration release\n",
             "src/Lib.sln": "\n", "src/Lib/Lib.csproj": "<Project/>\n", "src/Lib/Logger.cs": "class Logger {}\n",
             "tests/Lib.Tests/Lib.Tests.csproj": "<Project/>\n", "tests/Lib.Tests/LoggerTests.cs": "class LoggerTests {}\n"}
    root = _write(tmp_path, files)
    assert [f.value for f in analyze(root).single_test] == ["dotnet test tests/Lib.Tests --filter FullyQualifiedName~LoggerTests"]
