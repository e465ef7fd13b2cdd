"""Regression tests from the second attack round on the AGENTS.md generator (attack-17c).

Each test is one finding: a lone surrogate in a manifest path raised from os.stat; hatch and pdm
scripts made of other scripts' names fanned out exponentially; a run of unclosed `${{` made the
CI expression scan quadratic; one script called many times spent its expansion budget per call;
many or huge CI files and matrices had no total bound; tox.toml `product` envs were capped per
entry only; rollout ran the operator's clean filter chosen by the repository's .gitattributes.
Each repository is small and each test runs well under two seconds.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from aiplane.agentsmd.generate import generate
from aiplane.repository.tree import GitTree, WorkTree
from tests.test_agentsmd_attacks import _repo

PY = {"pyproject.toml": '[project]\nname = "x"\ndependencies = ["pytest"]\n', "tests/test_a.py": "def test_a():\n    pass\n"}


def _timed_generate(root: Path) -> tuple[str, float]:
    started = time.monotonic()
    _analysis, text = generate(root)
    return text, time.monotonic() - started


def test_a_lone_surrogate_path_is_missing_everywhere_in_the_tree_views(tmp_path):
    manifest = {"name": "x", "scripts": {"test": "jest"}, "workspaces": ["\ud800/*", "\udfff"],
                "devDependencies": {"jest": "1"}}
    repo = _repo(tmp_path / "repo", {**PY, "package.json": json.dumps(manifest)})
    head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    for tree in (WorkTree(repo), GitTree(repo, head)):
        for path in ("\ud800", "\ud800/x", "a/\udfff", "\ud800/*"):
            assert tree.kind(path) is None
            assert tree.read_bytes(path) is None
            assert tree.list_dir(path) == []
            assert tree.files(path) == []
            assert tree.symlink_target(path) is None
            assert tree.glob(path) == []
        assert tree.sub("\ud800").kind("x") is None
    text, _seconds = _timed_generate(repo)
    assert "npm test" in text


def _wide(table: str, line: str, levels: int, last: str) -> str:
    return f'[project]\nname = "x"\n[{table}]\n' + "".join(line.format(i=i, n=i + 1) for i in range(levels)) + last


def test_hatch_scripts_made_of_other_scripts_are_resolved_once_each(tmp_path):
    refs = ", ".join(['"s{n}"'] * 20)
    pyproject = _wide("tool.hatch.envs.default.scripts", "s{i} = [" + refs + "]\n", 6, 's6 = "pytest tests"\ntest = "s0"\n')
    workflow = "on: push\njobs:\n  t:\n    runs-on: ubuntu-latest\n    steps:\n      - run: hatch run test\n"
    repo = _repo(tmp_path / "repo", {**PY, "pyproject.toml": pyproject, ".github/workflows/ci.yml": workflow})
    text, seconds = _timed_generate(repo)
    assert seconds < 2, seconds  # 20**6 resolutions before
    assert "- Test: `hatch" in text


def test_pdm_composite_scripts_fanning_out_are_resolved_once_each(tmp_path):
    refs = ", ".join(['"s{n}"'] * 20)
    pyproject = _wide("tool.pdm.scripts", "s{i} = {{composite = [" + refs + "]}}\n", 8,
                      's8 = "pytest tests"\ntest = {composite = ["s0"]}\n')
    workflow = "on: push\njobs:\n  t:\n    runs-on: ubuntu-latest\n    steps:\n      - run: pdm run test\n"
    repo = _repo(tmp_path / "repo", {**PY, "pyproject.toml": pyproject, ".github/workflows/ci.yml": workflow})
    text, seconds = _timed_generate(repo)
    assert seconds < 2, seconds
    assert "- Test: `pdm run test`" in text


def test_a_run_of_unclosed_ci_expressions_is_scanned_once():
    from aiplane.agentsmd.ci import substitute

    started = time.monotonic()
    assert substitute("${{ " * 120_000, {}) == "${{ " * 120_000  # 211 s over 480 KB with the lazy regex
    assert time.monotonic() - started < 1
    assert substitute("a ${{ matrix.x }} b ${{ ${{ matrix.x }} c ${{", {"matrix": {"x": "1"}}).startswith("a 1 b $")


EXPENSIVE = ("V=" + "a" * 1990 + "b\n" + "W=${V%%*a*a*a*a*a*a*a*a*a*a*a*c}\nX=${V#*a*a*a*a*a*a*a*a*a*a*a*c}\n" * 40
             + 'pytest tests -k "$1"\n')


def test_one_script_called_with_many_arguments_shares_one_budget(tmp_path):
    workflow = "on: push\njobs:\n  t:\n    runs-on: ubuntu-latest\n    steps:\n      - run: |\n" + "".join(
        f"          bash ci/s.sh a{i}\n" for i in range(300))
    repo = _repo(tmp_path / "repo", {**PY, "ci/s.sh": "#!/bin/bash\n" + EXPENSIVE, ".github/workflows/ci.yml": workflow})
    text, seconds = _timed_generate(repo)
    assert seconds < 2, seconds  # each call spent a budget of its own: 35 ms each
    assert "- Test: `pytest" in text


def test_many_scripts_share_one_budget(tmp_path):
    files = {**PY, **{f"ci/s{i}.sh": "#!/bin/bash\n" + EXPENSIVE for i in range(120)}}
    files[".github/workflows/ci.yml"] = "on: push\njobs:\n  t:\n    runs-on: ubuntu-latest\n    steps:\n      - run: |\n" + "".join(
        f"          bash ci/s{i}.sh a\n" for i in range(120))
    repo = _repo(tmp_path / "repo", files)
    _text, seconds = _timed_generate(repo)
    assert seconds < 2, seconds


def test_ci_files_read_per_analysis_are_bounded_in_total(tmp_path):
    from aiplane.agentsmd import ci

    pad = "# " + "x" * (400 * 1024) + "\n"
    files = {f".github/workflows/w{i:02}.yml": pad + "on: push\n" for i in range(12)}
    repo = _repo(tmp_path / "repo", {**PY, **files})
    tree = WorkTree(repo)
    with ci.ci_budget():
        read = [ci.read_ci(tree, path) for path in sorted(files)]
    assert sum(1 for text in read if text) * 400 * 1024 <= ci.MAX_CI_TOTAL_BYTES
    assert not read[-1]
    assert ci.read_ci(tree, sorted(files)[-1])  # outside an analysis's budget each file has its own bound only


def test_a_yaml_document_over_the_node_bound_is_refused_while_parsing():
    from aiplane.agentsmd import safe

    text = "on: push\nenv:\n  PAD: [" + ",".join(["a"] * 250_000) + "]\n"
    started = time.monotonic()
    assert safe.load_yaml(text) is None
    assert time.monotonic() - started < 1  # parsed, loaded and composed in full before: 1 s a file


def test_matrix_rows_expanded_per_analysis_are_bounded():
    from aiplane.agentsmd import ci

    matrix = {"a": [f"v{i}" for i in range(16)], "b": [f"w{i}" for i in range(16)],
              "include": [{"a": f"i{j}", "x": "y"} for j in range(2_000)]}
    with ci.ci_budget():
        results = [ci.expand_matrix(matrix, {}) for _ in range(40)]
    assert results[0] is not None and len(results[0]) == ci.MAX_INSTANCES
    assert results[-1] is None  # past the budget: as a matrix computed at run time


def test_tox_toml_product_env_lists_are_bounded_per_file():
    from aiplane.agentsmd import entrypoints

    axis = [f"f{j}" for j in range(50)]
    started = time.monotonic()
    envs = entrypoints._native_env_list([{"product": [axis, axis, axis, axis]} for _ in range(100)])
    assert time.monotonic() - started < 0.5  # 6,250,000 names built per entry before: 55 s
    assert len(envs) == entrypoints.MAX_ENTRIES
    assert envs[0] == "f0-f0-f0-f0"
    assert entrypoints._native_env_list(["lint", {"product": [["py312", "py313"], ["django5"]]}]) == [
        "lint", "py312-django5", "py313-django5"]


def test_rollout_runs_no_clean_or_smudge_filter_the_repository_selects(tmp_path):
    from aiplane.agentsmd.rollout import BRANCH, Target, rollout

    marker = tmp_path / "ran"
    repo = _repo(tmp_path / "repo", {**PY, ".gitattributes": "* filter=evil diff=evil\n"})
    for kind in ("clean", "smudge", "process"):
        subprocess.run(["git", "-C", str(repo), "config", f"filter.evil.{kind}", f"sh -c 'echo {kind} >> {marker}; cat'"], check=True)
    subprocess.run(["git", "-C", str(repo), "config", "diff.evil.textconv", f"sh -c 'echo textconv >> {marker}; cat'"], check=True)
    (result,) = rollout([Target(repo)])
    assert result.outcome == "created", result
    assert not marker.exists(), marker.read_text()
    proposed = subprocess.run(["git", "-C", str(repo), "show", f"{BRANCH}:AGENTS.md"], capture_output=True, text=True, check=True).stdout
    assert proposed == generate(repo)[1]


def test_machine_paths_urls_and_argument_files_are_never_printed():
    from aiplane.agentsmd.shell import render

    for argv in (["pytest", "@../../args"], ["python", "-m", "pytest", "@args.txt"], ["pytest", "C:Windows/x"],
                 ["pytest", "C:/x"], ["pytest", "C:\\x"], ["pytest", "file:///etc/passwd"], ["pytest", "--rootdir=C:/x"],
                 ["pytest", "--basetemp=FILE:///tmp"]):
        assert render(argv) is None, argv
    for argv in (["npm", "run", "t:unit"], ["npx", "@biomejs/biome", "check"], ["pnpm", "--filter", "@a/b", "test"],
                 ["./gradlew", ":app:test"], ["pytest", "tests/a.py::T::test"]):
        assert render(argv) == " ".join(argv), argv


def test_a_cd_to_an_unknown_place_drops_the_commands_after_it():
    from aiplane.agentsmd.shell import parse_script

    assert parse_script('cd "$X"\npytest tests')[0] == []
    assert parse_script("Set-Location $env:X\npytest tests")[0] == []
    assert [s.argv for s in parse_script("pytest a\npushd $X && pytest b\npytest c")[0]] == [["pytest", "a"]]
    assert [(s.argv, s.cwd) for s in parse_script('cd "$GITHUB_WORKSPACE/sub"\npytest')[0]] == [(["pytest"], "sub")]
    assert [(s.argv, s.cwd) for s in parse_script("X=sub\ncd $X\npytest")[0]] == [(["pytest"], "sub")]
    # a script moving to its own project (crossbeam's ci/test.sh) is read from where it is called, as before
    assert [s.argv for s in parse_script('cd "$(dirname "$0")"/..\ncargo test')[0]] == [["cargo", "test"]]


def test_values_that_change_a_printed_command_are_quoted_or_drop_it(tmp_path):
    from aiplane.agentsmd.ci import substitute
    from aiplane.agentsmd.shell import render

    assert render(["pytest", "tests", "-k", "*"]) == "pytest tests -k '*'"
    assert substitute("pytest -k ${{ matrix.t }}", {"matrix": {"t": {"a": 1}}}) == "pytest -k $__aiplane_unknown__"
    assert substitute("pytest -k ${{ matrix.t }}", {"matrix": {"t": [1]}}) == "pytest -k $__aiplane_unknown__"
    workflow = ("on: push\njobs:\n  t:\n    runs-on: ubuntu-latest\n    env:\n      T: '--'\n    steps:\n"
                "      - run: pytest tests -k \"$T\"\n")
    repo = _repo(tmp_path / "repo", {**PY, ".github/workflows/ci.yml": workflow})
    text, _seconds = _timed_generate(repo)
    assert "pytest tests -k`" not in text and "-k --" not in text
