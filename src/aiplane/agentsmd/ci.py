"""CI configuration as data: the commands each job runs, where it runs them and with what.

GitHub Actions, GitLab CI and CircleCI files go through a YAML parser and a model of workflows, jobs
and steps (Azure Pipelines, Travis and AppVeyor get a smaller one):

- block scalars stay whole and shell continuations are joined (`aiplane.agentsmd.shell`);
- a matrix is data: each instantiation (bounded) evaluates `${{ matrix.* }}`, `${{ env.* }}`,
  `format()`, `||`, `&&` and friends; a command that still depends on something unknown is dropped;
- `working-directory`, `defaults.run`, step and job `env`, values written to `$GITHUB_ENV` and `cd`
  in a script are carried to each command;
- steps that run in another repository's checkout are skipped;
- well-known actions (pre-commit, golangci-lint, ruff, black, cargo, gradle, retry wrappers, ...) are
  mapped to the commands they run; local composite actions and reusable workflows are followed.
"""

from __future__ import annotations

import json
import re
import shlex
from contextlib import AbstractContextManager
from contextvars import ContextVar
from dataclasses import dataclass, field
from itertools import product
from typing import Any

from aiplane.agentsmd import safe
from aiplane.agentsmd.shell import expansion_budget, is_noise, parse_script
from aiplane.repository.tree import TreeBase

MAX_WORKFLOWS = 60
MAX_JOBS = 300
MAX_INSTANCES = 32
MAX_COMMANDS = 3_000
# What one analysis reads of CI files, every system together: their bytes (YAML parsing costs about
# 0.3 s per 512 KB file) and the matrix work it does (each combination, plus each include/exclude
# entry compared with each combination: 100,000 is about 0.15 s). Past either, further files read
# as missing and further matrices as computed at run time.
MAX_CI_TOTAL_BYTES = 1024 * 1024  # 9 times the largest of the 411 corpus repositories (109 KB)
MAX_MATRIX_CELLS = 100_000
MAX_MATRIX_ENTRIES = 256  # include or exclude entries of one matrix


@dataclass
class _CiWork:
    bytes_left: int = MAX_CI_TOTAL_BYTES
    rows_left: int = MAX_MATRIX_CELLS


_ci_work: ContextVar[_CiWork | None] = ContextVar("agentsmd_ci_work", default=None)


def ci_budget() -> AbstractContextManager[None]:
    """One CI reading budget for everything inside (one analysis); a nested call shares the outer one."""
    return safe.shared_work(_ci_work, _CiWork)


def read_ci(tree: TreeBase, path: str) -> str:
    """A CI file's text within its own bound and the analysis's total; "" past either."""
    text = safe.read_text(tree, path, safe.MAX_CI_BYTES)
    work = _ci_work.get()
    if work is not None and text:
        work.bytes_left -= len(text)
        if work.bytes_left < 0:
            work.bytes_left = 0
            return ""
    return text


def _spend_rows(rows: int) -> bool:
    work = _ci_work.get()
    if work is None:
        return True
    if work.rows_left < rows:
        work.rows_left = 0
        return False
    work.rows_left -= rows
    return True
UNKNOWN_VAR = "$__aiplane_unknown__"


@dataclass
class CiCommand:
    argv: list[str]
    cwd: str  # repository-relative
    env: dict[str, str]
    evidence: str  # file:line
    workflow: str  # the file
    job: str  # job id (or name)
    job_name: str = ""
    triggers: frozenset[str] = frozenset()
    platform: str = ""  # linux, windows, macos or ""
    via: str = "run"  # run, or the action it came from
    order: int = 0
    diff_checked: bool = False
    matrix: bool = False  # the job has a matrix
    feed: list[list[str]] = field(default_factory=list)  # `find ... | xargs TOOL`: the commands listing the files
    xargs: list[str] = field(default_factory=list)  # and the xargs words before TOOL
    step_name: str = ""  # the step's `name:` (weak evidence of its kind when the command says nothing)


class Partial(dict):  # type: ignore[type-arg]
    """A context object of which only some keys are known here (runner.os, not runner.workspace)."""


class _Unknown:
    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN: Any = _Unknown()


# -- GitHub expressions ------------------------------------------------------------------------------

_TOKEN = re.compile(r"\s*(?:(?P<num>-?\d+(?:\.\d+)?)|(?P<str>'(?:[^']|'')*')|(?P<op>==|!=|<=|>=|&&|\|\||[!<>(),.\[\]*])|(?P<name>[A-Za-z_][A-Za-z0-9_-]*))")


class _Expr:
    def __init__(self, text: str, context: dict[str, Any]) -> None:
        self.tokens: list[tuple[str, str]] = []
        pos = 0
        while pos < len(text):
            match = _TOKEN.match(text, pos)
            if not match or match.end() == pos:
                if text[pos:].strip() == "":
                    break
                raise ValueError("bad expression")
            pos = match.end()
            kind = match.lastgroup or ""
            self.tokens.append((kind, match.group(kind)))
        self.i = 0
        self.context = context

    def peek(self) -> str | None:
        return self.tokens[self.i][1] if self.i < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def parse(self) -> Any:
        value = self.or_()
        if self.i != len(self.tokens):
            raise ValueError("trailing tokens")
        return value

    def or_(self) -> Any:
        left = self.and_()
        while self.peek() == "||":
            self.take()
            right = self.and_()
            left = UNKNOWN if left is UNKNOWN else (left if _truthy(left) else right)
        return left

    def and_(self) -> Any:
        left = self.cmp()
        while self.peek() == "&&":
            self.take()
            right = self.cmp()
            left = UNKNOWN if left is UNKNOWN else (right if _truthy(left) else left)
        return left

    def cmp(self) -> Any:
        left = self.unary()
        while self.peek() in ("==", "!=", "<", ">", "<=", ">="):
            op = self.take()[1]
            right = self.unary()
            left = UNKNOWN if left is UNKNOWN or right is UNKNOWN else _compare(op, left, right)
        return left

    def unary(self) -> Any:
        if self.peek() == "!":
            self.take()
            value = self.unary()
            return UNKNOWN if value is UNKNOWN else not _truthy(value)
        return self.primary()

    def primary(self) -> Any:
        kind, text = self.take()
        if kind == "num":
            value: Any = float(text) if "." in text else int(text)
        elif kind == "str":
            value = text[1:-1].replace("''", "'")
        elif text == "(":
            value = self.or_()
            self.take()
        elif kind == "name":
            if self.peek() == "(":
                self.take()
                args = []
                while self.peek() != ")":
                    args.append(self.or_())
                    if self.peek() == ",":
                        self.take()
                self.take()
                value = _call(text, args)
            elif text in ("true", "false", "null"):
                value = {"true": True, "false": False, "null": None}[text]
            else:
                value = self.context.get(text, UNKNOWN)
        else:
            raise ValueError("unexpected token")
        while self.peek() in (".", "["):
            if self.take()[1] == ".":
                _k, name = self.take()
                if name == "*":
                    value = UNKNOWN
                    continue
                value = value.get(name, UNKNOWN if isinstance(value, Partial) else None) if isinstance(value, dict) else (UNKNOWN if value is UNKNOWN else None)
            else:
                key = self.or_()
                self.take()
                value = value.get(key) if isinstance(value, dict) and isinstance(key, str) else UNKNOWN
        return value


def _number(value: Any) -> float:
    if value is None:
        return 0.0
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return 0.0
        try:
            return float(text)
        except ValueError:
            return float("nan")
    return float("nan")


def _compare(op: str, left: Any, right: Any) -> bool:
    """GitHub's comparison: strings case-insensitively, anything else coerced to numbers."""
    if isinstance(left, str) and isinstance(right, str):
        a: Any = left.lower()
        b: Any = right.lower()
    elif isinstance(left, (dict, list)) or isinstance(right, (dict, list)):
        return (left is right) if op == "==" else (left is not right) if op == "!=" else False
    else:
        a, b = _number(left), _number(right)
        if a != a or b != b:  # NaN
            return op == "!="
    return {"==": a == b, "!=": a != b, "<": a < b, ">": a > b, "<=": a <= b, ">=": a >= b}[op]


def _norm(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def _truthy(value: Any) -> bool:
    return value not in (False, 0, "", None) and value is not UNKNOWN


def _text(value: Any) -> str:
    if value is None:
        return ""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


def _call(name: str, args: list[Any]) -> Any:
    name = name.lower()
    if any(a is UNKNOWN for a in args):
        return UNKNOWN
    if name == "format" and args:
        template = _text(args[0])
        try:
            return re.sub(r"\{(\d+)\}", lambda m: _text(args[int(m.group(1)) + 1]), template.replace("{{", "\0").replace("}}", "\1")).replace("\0", "{").replace("\1", "}")
        except IndexError:
            return UNKNOWN
    if name == "contains" and len(args) == 2:
        hay, needle = args
        if isinstance(hay, list):
            return any(_norm(x) == _norm(needle) for x in hay)
        return _text(needle).lower() in _text(hay).lower()
    if name == "startswith" and len(args) == 2:
        return _text(args[0]).lower().startswith(_text(args[1]).lower())
    if name == "endswith" and len(args) == 2:
        return _text(args[0]).lower().endswith(_text(args[1]).lower())
    if name == "join" and args:
        sep = _text(args[1]) if len(args) > 1 else ","
        return sep.join(_text(x) for x in args[0]) if isinstance(args[0], list) else _text(args[0])
    if name == "tojson" and args:
        return json.dumps(args[0])
    if name == "fromjson" and args:
        try:
            return safe.bounded(json.loads(_text(args[0])))
        except (ValueError, safe.TooBig, RecursionError):
            return UNKNOWN
    if name in ("success", "always"):
        return True
    if name in ("failure", "cancelled"):
        return False
    return UNKNOWN


def _skipped(condition: Any) -> bool:
    """An `if:` that is known to be falsy (false, null, '', 0) skips the step or job; an unknown one does not."""
    return condition is not UNKNOWN and not isinstance(condition, _Unknown) and not _truthy(condition)


def evaluate(expression: str, context: dict[str, Any]) -> Any:
    try:
        return _Expr(expression, context).parse()
    except (ValueError, IndexError, RecursionError):
        return UNKNOWN


def substitute(text: str, context: dict[str, Any]) -> str:
    """`${{ ... }}` in a string replaced by its value, or by an unknown shell variable (which makes
    any command using it drop out) when it cannot be known here."""

    # One pass: each `${{` then the next `}}`; with no `}}` left nothing more is an expression. (A
    # lazy regex retried the rest of the text from every unclosed `${{`: quadratic, 211 s on 480 KB.)
    out: list[str] = []
    position = 0
    while True:
        start = text.find("${{", position)
        end = text.find("}}", start + 3) if start >= 0 else -1
        if end < 0:
            out.append(text[position:])
            return "".join(out)
        expression = text[start + 3:end]
        if expression.strip() == "github.workspace":
            out += [text[position:start], "$GITHUB_WORKSPACE"]  # the checkout's root: `cd` knows it, a word does not
            position = end + 2
            continue
        value = evaluate(expression, context)
        # a mapping or list (a matrix row's value `{a: 1}`) prints as `Object`/`Array` there: unknown here
        unknown = value is UNKNOWN or isinstance(value, (dict, list))
        out += [text[position:start], UNKNOWN_VAR if unknown else _text(value)]
        position = end + 2


# -- matrices ------------------------------------------------------------------------------------------


def expand_matrix(matrix: Any, context: dict[str, Any], limit: int = MAX_INSTANCES) -> list[dict[str, Any]] | None:
    """The combinations a `strategy.matrix` runs (GitHub semantics for include/exclude), at most `limit`;
    None when the matrix itself is computed at run time."""
    if isinstance(matrix, str):
        value = evaluate(matrix.strip().removeprefix("${{").removesuffix("}}"), context) if "${{" in matrix else UNKNOWN
        if not isinstance(value, dict):
            return None
        matrix = value
    if not isinstance(matrix, dict):
        return [{}]
    axes = {k: v for k, v in matrix.items() if k not in ("include", "exclude")}
    for key, values in list(axes.items()):
        if isinstance(values, str) and "${{" in values:
            evaluated = evaluate(values.strip().removeprefix("${{").removesuffix("}}"), context)
            if isinstance(evaluated, list):
                axes[key] = evaluated
            else:
                return None
    combos: list[dict[str, Any]] = []
    if axes:
        keys = list(axes)
        lists = [v if isinstance(v, list) else [v] for v in axes.values()]
        for values in product(*lists):
            combos.append(dict(zip(keys, values, strict=True)))
            if len(combos) >= 256:
                break
    excludes = [e for e in safe.as_list(matrix.get("exclude")) if isinstance(e, dict)][:MAX_MATRIX_ENTRIES]
    includes = matrix.get("include")
    if isinstance(includes, str):
        return None
    includes = safe.as_list(includes)[:MAX_MATRIX_ENTRIES]
    if not _spend_rows(len(combos) * (1 + len(excludes) + len(includes)) + len(includes)):
        return None  # the analysis's matrix budget is spent: as a matrix computed at run time
    combos = [c for c in combos if not any(all(_norm(c.get(k)) == _norm(v) for k, v in e.items()) for e in excludes)]
    originals = len(combos)
    for extra in includes:
        if not isinstance(extra, dict):
            continue
        matched = False
        for combo in combos[:originals]:  # an include extends original combinations only
            original = {k: combo[k] for k in axes if k in combo}
            if all(_norm(original[k]) == _norm(v) for k, v in extra.items() if k in original):
                combo.update({k: v for k, v in extra.items() if k not in original})
                matched = True
        if not matched:
            combos.append(dict(extra))
    return combos[:limit] or [{}]


# -- well-known actions --------------------------------------------------------------------------------


def _action_commands(uses: str, with_: dict[str, Any]) -> tuple[list[str], str]:
    """Command lines an action runs and an optional working directory (relative), from its inputs."""
    name = uses.split("@", 1)[0].lower()

    def arg(key: str, default: str = "") -> str:
        value = with_.get(key, default)
        return _text(value) if value is not None else default

    cwd = arg("working-directory") or arg("working_directory")
    if name == "pre-commit/action":
        return [f"pre-commit run {arg('extra_args', '--all-files')}"], ""
    if name in ("j178/prek-action",):
        return [f"prek run {arg('extra-args', arg('extra_args', '--all-files'))}"], ""
    if name in ("golangci/golangci-lint-action", "reviewdog/action-golangci-lint"):
        return [f"golangci-lint run {arg('args', arg('golangci_lint_flags'))}".strip()], cwd
    if name in ("astral-sh/ruff-action", "chartboost/ruff-action"):
        return [f"ruff {arg('args', 'check')} {arg('src')}".strip()], ""
    if name == "psf/black":
        return [f"black {arg('options', '--check --diff')} {arg('src', '.')}".strip()], ""
    if name == "jakebailey/pyright-action":
        return ["pyright"], cwd
    if name == "actions-rs/cargo":
        tool = "cross" if arg("use-cross") == "true" else "cargo"
        return [f"{tool} {arg('command')} {arg('args')}".strip()], ""
    if name == "actions-rs/clippy-check":
        return [f"cargo clippy {arg('args')}".strip()], ""
    if name in ("actions-rust-lang/rustfmt", "mbrobbel/rustfmt-check"):
        return ["cargo fmt --all --check"], ""
    if name == "dominikh/staticcheck-action":
        return ["staticcheck ./..."], cwd
    if name in ("gradle/gradle-build-action", "gradle/actions/setup-gradle", "eskatos/gradle-command-action") and arg("arguments"):
        return [f"./gradlew {arg('arguments')}"], arg("build-root-directory")
    if name in ("nick-fields/retry", "nick-invision/retry", "wandalen/wretry.action") and arg("command"):
        return [arg("command")], ""
    if name in ("coactions/setup-xvfb", "gabrielbb/xvfb-action", "mathiasvr/command-output", "codspeedhq/action",
                "liskin/gh-problem-matcher-wrap") and arg("run"):
        return [arg("run")], arg("working-directory")
    if name == "reactivecircus/android-emulator-runner" and arg("script"):
        return [arg("script")], arg("working-directory")
    if name == "php-actions/phpunit":
        return ["vendor/bin/phpunit"], ""
    if name == "php-actions/phpstan":
        return [f"vendor/bin/phpstan analyse {arg('path')}".strip()], ""
    if name == "docker://oskarstark/php-cs-fixer-ga":
        return [f"php-cs-fixer fix {arg('args')}".strip()], ""
    if name == "crate-ci/typos":
        return ["typos"], ""
    if name == "codespell-project/actions-codespell":
        return ["codespell"], ""
    if name == "ludeeus/action-shellcheck":
        return [], ""
    if name == "pypa/hatch" and arg("version") == "":
        return [], ""
    return [], ""


# -- GitHub Actions ----------------------------------------------------------------------------------------


_GITHUB_ENV_WRITE = re.compile(r"""echo\s+["']?([A-Za-z_][A-Za-z0-9_]*)=([^"'\n$`|;&]*)["']?\s*>>\s*["']?\$\{?GITHUB_ENV\}?["']?""")


_ON_DEMAND_TYPES = {"labeled", "unlabeled", "assigned", "unassigned", "review_requested", "milestoned", "closed"}


def _triggers(workflow: dict[str, Any]) -> frozenset[str]:
    on = workflow.get("on", workflow.get("True"))
    if isinstance(on, str):
        names = {on}
    elif isinstance(on, list):
        names = {x for x in on if isinstance(x, str)}
    elif isinstance(on, dict):
        names = set(on)
        push = on.get("push")
        if isinstance(push, dict) and push.get("tags") and not push.get("branches"):
            names.discard("push")
            names.add("tag")
        for event in ("pull_request", "pull_request_target"):
            spec = on.get(event)
            types = spec.get("types") if isinstance(spec, dict) else None
            if isinstance(types, list) and types and all(t in _ON_DEMAND_TYPES for t in types):
                # runs when someone labels or assigns the PR: an on-demand job, not the checks every change gets
                names.discard(event)
                names.add("label")
    else:
        names = set()
    return frozenset(names)


def _platform(runs_on: Any) -> str:
    text = _text(runs_on).lower()
    if "windows" in text:
        return "windows"
    if "macos" in text or "mac-" in text:
        return "macos"
    if "ubuntu" in text or "linux" in text:
        return "linux"
    return ""


class GitHubActions:
    def __init__(self, tree: TreeBase) -> None:
        self.tree = tree
        self.commands: list[CiCommand] = []
        self.order = 0

    def run(self) -> list[CiCommand]:
        files = [e.path for e in self.tree.list_dir(".github/workflows") if e.kind == "file" and e.name.endswith((".yml", ".yaml"))]
        for path in sorted(files)[:MAX_WORKFLOWS]:
            self._workflow(path, inputs=None, caller_triggers=None, depth=0)
        return self.commands

    def _workflow(self, path: str, inputs: dict[str, Any] | None, caller_triggers: frozenset[str] | None, depth: int) -> None:
        text = read_ci(self.tree, path)
        data, lines = safe.load_yaml_with_lines(text)
        if not isinstance(data, dict):
            return
        triggers = caller_triggers if caller_triggers is not None else _triggers(data)
        if inputs is None and triggers == frozenset({"workflow_call"}):
            return  # only reached through a caller, which supplies its inputs
        defaults_inputs = {}
        call = safe.dig(data, "on", "workflow_call") or safe.dig(data, "True", "workflow_call")
        for name, spec in safe.as_dict(safe.as_dict(call).get("inputs")).items():
            if isinstance(spec, dict) and "default" in spec:
                defaults_inputs[name] = spec["default"]
        all_inputs: Any = {**defaults_inputs, **inputs} if inputs is not None else UNKNOWN
        workflow_env = {k: v for k, v in safe.as_dict(data.get("env")).items() if isinstance(v, (str, int, float, bool))}
        workflow_cwd = safe.as_str(safe.dig(data, "defaults", "run", "working-directory"))
        for job_id, job in list(safe.as_dict(data.get("jobs")).items())[:MAX_JOBS]:
            if not isinstance(job, dict) or len(self.commands) >= MAX_COMMANDS:
                continue
            try:
                self._job(path, lines, job_id, job, triggers, workflow_env, workflow_cwd, all_inputs, depth)
            except (RecursionError, ValueError, TypeError, KeyError, AttributeError):
                continue

    def _job(self, path: str, lines: dict[str, int], job_id: str, job: dict[str, Any], triggers: frozenset[str],
             workflow_env: dict[str, Any], workflow_cwd: str, inputs: Any, depth: int) -> None:
        base_context: dict[str, Any] = {"inputs": inputs}  # github, steps, needs, secrets, vars: unknown here
        matrix = safe.dig(job, "strategy", "matrix")
        instances = expand_matrix(matrix, base_context) if matrix is not None else [{}]
        has_matrix = matrix is not None
        if instances is None:
            instances = [UNKNOWN]
        seen: dict[tuple[str, tuple[str, ...]], CiCommand] = {}
        uses = job.get("uses")
        for instance in instances:
            context = dict(base_context)
            context["matrix"] = instance
            env_context = {k: _text(v) for k, v in workflow_env.items()}
            context["env"] = env_context
            for key, value in safe.as_dict(job.get("env")).items():
                if isinstance(value, (str, int, float, bool)):
                    env_context[key] = substitute(_text(value), context)
            if isinstance(uses, str):
                if uses.startswith("./") and depth < 2:
                    with_ = {k: (substitute(_text(v), context) if isinstance(v, str) else v) for k, v in safe.as_dict(job.get("with")).items()}
                    with_ = {k: (UNKNOWN if isinstance(v, str) and UNKNOWN_VAR in v else v) for k, v in with_.items()}
                    target = uses[2:].split("@", 1)[0]
                    self._workflow(target, with_, triggers, depth + 1)
                continue
            runs_on = job.get("runs-on")
            platform = _platform(substitute(_text(runs_on), context)) if runs_on is not None else ""
            context["runner"] = Partial(os={"linux": "Linux", "windows": "Windows", "macos": "macOS"}.get(platform, UNKNOWN))
            job_if = job.get("if")
            if isinstance(job_if, str) and _skipped(evaluate(job_if.replace("${{", "").replace("}}", ""), context)):
                continue
            job_cwd = safe.as_str(safe.dig(job, "defaults", "run", "working-directory")) or workflow_cwd
            job_name = safe.as_str(job.get("name"), job_id)
            job_name = substitute(job_name, context).replace(UNKNOWN_VAR, "").strip() or job_id
            self._steps(path, lines, job_id, job_name, safe.as_list(job.get("steps")), context, env_context, job_cwd,
                        triggers, platform, has_matrix, seen, f"jobs.{job_id}.steps", depth)

    def _steps(self, path: str, lines: dict[str, int], job_id: str, job_name: str, steps: list[Any], context: dict[str, Any],
               env: dict[str, str], job_cwd: str, triggers: frozenset[str], platform: str, has_matrix: bool,
               seen: dict[tuple[str, tuple[str, ...]], CiCommand], line_prefix: str, depth: int, checkout: dict[str, Any] | None = None) -> None:
        # Where this repository is checked out (relative to the workspace), and whether the workspace
        # root currently holds another repository's files.
        state = checkout if checkout is not None else {"self": None, "foreign_root": False, "foreign_paths": []}
        for index, step in enumerate(steps[:200]):
            if not isinstance(step, dict):
                continue
            step_line = lines.get(f"{line_prefix}.{index}", 1)
            step_if = step.get("if")
            if isinstance(step_if, str) and _skipped(evaluate(step_if.replace("${{", "").replace("}}", ""), {**context, "env": env})):
                continue
            uses = step.get("uses")
            with_raw = safe.as_dict(step.get("with"))
            if isinstance(uses, str) and uses.split("@", 1)[0].lower() == "actions/checkout":
                repository = _text(with_raw.get("repository", ""))
                if "github.repository" not in repository.replace(" ", "") and "${{" in repository:
                    # `repository: ${{ inputs.repository }}` in a composite action called without one:
                    # an empty value checks out this repository
                    repository = substitute(repository, {**context, "env": env}).strip()
                where = _text(with_raw.get("path", "")).strip().strip("/")
                if repository and "github.repository" not in repository.replace(" ", ""):
                    if not where or where == ".":
                        state["foreign_root"] = True
                    else:
                        state["foreign_paths"].append(where)
                else:
                    state["self"] = where if where not in ("", ".") else ""
                    state["foreign_root"] = False
                continue
            step_env = dict(env)
            step_context = {**context, "env": step_env}
            for key, value in safe.as_dict(step.get("env")).items():
                if isinstance(value, (str, int, float, bool)):
                    step_env[key] = substitute(_text(value), step_context)
            raw_cwd = _text(step.get("working-directory", "")) or job_cwd
            cwd = self._relative_cwd(raw_cwd, state, context)
            if cwd is None:
                run = step.get("run")
                if isinstance(run, str) and not uses and not state["foreign_root"] and self._outside(raw_cwd, state, context):
                    # A build folder outside the checkout (`${{ runner.workspace }}/_build`): its test
                    # run is stated against an in-checkout build folder instead (`ctest --test-dir build`).
                    self._add(substitute(run, step_context), "", step_env, path, lines.get(f"{line_prefix}.{index}.run", step_line),
                              job_id, job_name, triggers, platform, has_matrix, seen, via=OUTSIDE_BUILD)
                continue
            if isinstance(uses, str):
                name = uses.split("@", 1)[0]
                with_ = {k: (substitute(v, step_context) if isinstance(v, str) else v) for k, v in with_raw.items()}
                if name.startswith("./") and depth < 3:
                    self._composite(path, name[2:], with_, context, step_env, job_id, job_name, triggers, platform, has_matrix, seen, depth, state, cwd)
                    continue
                commands, action_cwd = _action_commands(uses, with_)
                for command in commands:
                    if state["foreign_root"]:
                        break
                    here = _join(cwd, action_cwd.strip().strip("/")) if action_cwd and not action_cwd.startswith("$") else cwd
                    self._add(command, here, step_env, path, step_line, job_id, job_name, triggers, platform, has_matrix, seen, via=name.lower())
                continue
            run = step.get("run")
            if not isinstance(run, str) or state["foreign_root"]:
                continue
            shell = _text(step.get("shell", "")).lower()
            if shell and not shell.startswith(("bash", "sh", "pwsh", "powershell", "cmd")):
                continue
            text = substitute(run, step_context)
            if shell.startswith(("cmd", "pwsh", "powershell")) or (not shell and platform == "windows"):
                text = windows_vars(windows_paths(text), step_env)
            for match in _GITHUB_ENV_WRITE.finditer(text):
                env[match.group(1)] = match.group(2).strip()
            self._add(text, cwd, step_env, path, lines.get(f"{line_prefix}.{index}.run", step_line), job_id, job_name, triggers,
                      platform, has_matrix, seen, step_name=safe.as_str(step.get("name")))

    def _relative_cwd(self, raw: str, state: dict[str, Any], context: dict[str, Any]) -> str | None:
        """The repository-relative directory of a step, or None when it runs outside this repository."""
        own = state["self"]
        if raw and own is not None and raw.strip().strip("/") == own:
            return ""
        value = substitute(raw, context).strip() if raw else ""
        if UNKNOWN_VAR in value:
            return None
        value = value.removeprefix("./").strip("/")
        if value in ("", "."):
            return "" if not own else None
        if value.startswith(("/", "~", "$")) or ".." in value.split("/"):
            return None
        if own:
            if value == own:
                return ""
            if not value.startswith(own + "/"):
                return None
            value = value[len(own) + 1:]
        if any(value == f or value.startswith(f + "/") for f in state["foreign_paths"]):
            return None
        return safe.clean_rel_path(value)

    def _outside(self, raw: str, state: dict[str, Any], context: dict[str, Any]) -> bool:
        """A working directory outside the workspace's checkouts: absolute, under `runner.workspace`,
        `runner.temp` or `$HOME`, or above the checkout; not another repository's checkout."""
        value = raw.strip()
        if not value:
            return False
        if re.search(r"\$\{\{\s*(runner\.(workspace|temp)|env\.HOME)\s*\}\}", value) or value.startswith(("/", "~", "$HOME", "${HOME}", "$RUNNER_")):
            return True
        value = substitute(value, context)
        if UNKNOWN_VAR in value:
            return False
        parts = value.removeprefix("./").strip("/").split("/")
        return bool(parts) and parts[0] == ".." and not any(value.startswith(f) for f in state["foreign_paths"])

    def _composite(self, workflow: str, action_dir: str, with_: dict[str, Any], context: dict[str, Any], env: dict[str, str],
                   job_id: str, job_name: str, triggers: frozenset[str], platform: str, has_matrix: bool,
                   seen: dict[tuple[str, tuple[str, ...]], CiCommand], depth: int, state: dict[str, Any], cwd: str) -> None:
        for name in ("action.yml", "action.yaml"):
            path = f"{action_dir.strip('/')}/{name}"
            text = read_ci(self.tree, path)
            if text:
                break
        else:
            return
        data, lines = safe.load_yaml_with_lines(text)
        runs = safe.as_dict(safe.as_dict(data).get("runs"))
        if runs.get("using") != "composite":
            return
        inputs = {}
        for key, spec in safe.as_dict(safe.as_dict(data).get("inputs")).items():
            default = safe.as_dict(spec).get("default") if isinstance(spec, dict) else None
            inputs[key] = with_.get(key, default if default is not None else "")
        inner_context = {**context, "inputs": inputs}
        self._steps(path, lines, job_id, job_name, safe.as_list(runs.get("steps")), inner_context, env, cwd, triggers,
                    platform, has_matrix, seen, "runs.steps", depth + 1, state)

    def _add(self, text: str, cwd: str, env: dict[str, str], path: str, line: int, job_id: str, job_name: str,
             triggers: frozenset[str], platform: str, has_matrix: bool, seen: dict[tuple[str, tuple[str, ...]], CiCommand], via: str = "run",
             step_name: str = "") -> None:
        simples, _exported = parse_script(text, env, start_cwd=cwd)
        if sum(1 for s in simples if not is_noise(s.argv)) != 1:
            step_name = ""  # a name describes the step; it tells the kind of a step's only command
        for simple in simples:
            if is_noise(simple.argv) or any(UNKNOWN_VAR.lstrip("$") in w for w in simple.argv):
                continue
            if via == OUTSIDE_BUILD:
                if simple.cwd:
                    continue
                argv = _in_checkout_build(simple.argv)
                if argv is None:
                    continue
                simple.argv = argv
            here = simple.cwd
            key = (here, tuple(simple.argv), tuple(tuple(p) for p in simple.feed))
            if key in seen:
                if platform == "linux" and seen[key].platform != "linux":
                    # A matrix that runs it on Linux too: that is how it is known, under the Linux
                    # instance's job name ("Ubuntu 3.10", not the first instance's "macOS 3.10").
                    seen[key].platform = "linux"
                    seen[key].job_name = job_name
                continue
            self.order += 1
            command = CiCommand(simple.argv, here, {**env, **simple.env}, f"{path}:{line + simple.line}", path, job_id,
                                job_name, triggers, platform, via, self.order, simple.diff_checked, has_matrix,
                                simple.feed, simple.xargs, step_name)
            seen[key] = command
            self.commands.append(command)


OUTSIDE_BUILD = "outside-build"
IN_CHECKOUT_BUILD = "build"


def _in_checkout_build(argv: list[str]) -> list[str] | None:
    """A test run from a build folder outside the checkout, restated for a build folder inside it;
    None for anything else run there (it cannot be stated from the checkout)."""
    if not argv:
        return None
    tool = argv[0].rsplit("/", 1)[-1].lower().removesuffix(".exe")
    if tool == "ctest" and "--test-dir" not in argv:
        return ["ctest", "--test-dir", IN_CHECKOUT_BUILD, *argv[1:]]
    if tool == "meson" and argv[1:2] == ["test"] and "-C" not in argv:
        return ["meson", "test", "-C", IN_CHECKOUT_BUILD, *argv[2:]]
    return None


def _join(cwd: str, sub: str) -> str:
    if not sub:
        return cwd
    return f"{cwd}/{sub}" if cwd else sub


# -- GitLab CI -----------------------------------------------------------------------------------------------

_GITLAB_RESERVED = {"image", "services", "stages", "types", "before_script", "after_script", "variables", "cache", "include",
                    "default", "workflow", "spec"}


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        out[key] = _deep_merge(out[key], value) if isinstance(out.get(key), dict) and isinstance(value, dict) else value
    return out


def gitlab(tree: TreeBase) -> list[CiCommand]:
    text = read_ci(tree, ".gitlab-ci.yml")
    if not text:
        return []
    data, lines = safe.load_yaml_with_lines(text)
    if not isinstance(data, dict):
        return []
    documents = [(".gitlab-ci.yml", data, lines)]
    pending = [data]
    while pending and len(documents) < 20:
        doc = pending.pop()
        include = doc.get("include")
        for item in ([include] if not isinstance(include, list) else include):
            local = item if isinstance(item, str) and not item.startswith(("http://", "https://")) else safe.as_dict(item).get("local")
            if not isinstance(local, str) or "*" in local:
                continue
            rel = safe.clean_rel_path(local.lstrip("/"))
            if rel is None or any(d[0] == rel for d in documents):
                continue
            inc_data, inc_lines = safe.load_yaml_with_lines(read_ci(tree, rel))
            if isinstance(inc_data, dict):
                documents.append((rel, inc_data, inc_lines))
                pending.append(inc_data)
    merged: dict[str, Any] = {}
    origin: dict[str, tuple[str, dict[str, int]]] = {}
    for path, doc, doc_lines in reversed(documents):
        for key, value in doc.items():
            merged[key] = _deep_merge(merged[key], value) if isinstance(merged.get(key), dict) and isinstance(value, dict) else value
            origin[key] = (path, doc_lines)
    variables = {k: _text(v.get("value") if isinstance(v, dict) else v) for k, v in safe.as_dict(merged.get("variables")).items()
                 if isinstance(v, (str, int, float, bool, dict))}
    default = safe.as_dict(merged.get("default"))
    default_before = merged.get("before_script", default.get("before_script"))
    out: list[CiCommand] = []
    order = 0

    def resolve(name: str, seen: frozenset[str] = frozenset()) -> dict[str, Any]:
        job = safe.as_dict(merged.get(name))
        parents = job.get("extends")
        result: dict[str, Any] = {}
        for parent in ([parents] if isinstance(parents, str) else safe.strs(parents)):
            if parent not in seen and len(seen) < 10:
                result = _deep_merge(result, resolve(parent, seen | {name}))
        return _deep_merge(result, {k: v for k, v in job.items() if k != "extends"})

    for name in list(merged)[:MAX_JOBS]:
        if name in _GITLAB_RESERVED or name.startswith(".") or not isinstance(merged[name], dict):
            continue
        job = resolve(name)
        if "script" not in job and "trigger" not in job:
            continue
        triggers = {"push", "pull_request"}
        rules_text = json.dumps(job.get("rules", "")) + json.dumps(job.get("only", ""))
        if "CI_COMMIT_TAG" in rules_text or '"tags"' in rules_text:
            triggers = {"tag"}
        if job.get("when") == "manual" or '"when": "manual"' in rules_text:
            triggers = {"workflow_dispatch"}
        if "schedule" in rules_text and "merge_request" not in rules_text:
            triggers = {"schedule"}
        job_vars = {**variables, **{k: _text(v.get("value") if isinstance(v, dict) else v) for k, v in safe.as_dict(job.get("variables")).items()}}
        matrix = safe.dig(job, "parallel", "matrix")
        instances: list[dict[str, str]] = [{}]
        if isinstance(matrix, list):
            instances = []
            for row in matrix[:20]:
                row = safe.as_dict(row)
                keys = list(row)
                lists = [v if isinstance(v, list) else [v] for v in row.values()]
                for values in product(*lists):
                    instances.append({k: _text(v) for k, v in zip(keys, values, strict=True)})
                    if len(instances) >= MAX_INSTANCES:
                        break
        path, doc_lines = origin.get(name, (".gitlab-ci.yml", lines))
        line = doc_lines.get(f"{name}.script", doc_lines.get(name, 1))
        before = job.get("before_script", default_before)
        seen: dict[tuple[str, tuple[str, ...]], CiCommand] = set()
        for instance in instances or [{}]:
            env = {**job_vars, **instance}
            script_lines = [*safe.strs(before), *[s for s in _flatten(job.get("script"))]]
            simples, _ = parse_script("\n".join(script_lines), env)
            for simple in simples:
                if is_noise(simple.argv):
                    continue
                key = (simple.cwd, tuple(simple.argv))
                if key in seen:
                    continue
                seen.add(key)
                order += 1
                out.append(CiCommand(simple.argv, simple.cwd, {**env, **simple.env}, f"{path}:{line}", path, name, name,
                                     frozenset(triggers), "", "run", order, simple.diff_checked, bool(matrix),
                                     simple.feed, simple.xargs))
    return out


def _flatten(value: Any, depth: int = 0) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and depth < 5:
        out: list[str] = []
        for item in value:
            out += _flatten(item, depth + 1)
        return out
    return []


# -- CircleCI ----------------------------------------------------------------------------------------------


def circleci(tree: TreeBase) -> list[CiCommand]:
    path = ".circleci/config.yml"
    text = read_ci(tree, path)
    data, lines = safe.load_yaml_with_lines(text)
    if not isinstance(data, dict):
        return []
    reusable = safe.as_dict(data.get("commands"))
    out: list[CiCommand] = []
    order = 0

    def steps_of(steps: list[Any], params: dict[str, Any], depth: int) -> list[tuple[str, str, dict[str, str], str]]:
        found: list[tuple[str, str, dict[str, str], str]] = []
        for step in steps[:200]:
            if isinstance(step, str):
                if step in reusable and depth < 3:
                    body = safe.as_dict(reusable[step])
                    found += steps_of(safe.as_list(body.get("steps")), _param_defaults(body), depth + 1)
                continue
            if not isinstance(step, dict) or len(step) != 1:
                continue
            (name, body), = step.items()
            if name == "run":
                if isinstance(body, str):
                    found.append((_params(body, params), "", {}, ""))
                elif isinstance(body, dict) and isinstance(body.get("command"), str):
                    env = {k: _text(v) for k, v in safe.as_dict(body.get("environment")).items()}
                    found.append((_params(body["command"], params), _text(body.get("working_directory", "")), env,
                                  safe.as_str(body.get("name"))))
            elif name in reusable and depth < 3:
                spec = safe.as_dict(reusable[name])
                given = {**_param_defaults(spec), **safe.as_dict(body)}
                found += steps_of(safe.as_list(spec.get("steps")), given, depth + 1)
        return found

    for job_id, job in list(safe.as_dict(data.get("jobs")).items())[:MAX_JOBS]:
        if not isinstance(job, dict):
            continue
        env = {k: _text(v) for k, v in safe.as_dict(job.get("environment")).items()}
        for command, workdir, step_env, step_name in steps_of(safe.as_list(job.get("steps")), _param_defaults(job), 0):
            if "<<" in command:
                continue
            cwd = workdir.strip().removeprefix("~/project").removeprefix("./").strip("/")
            if cwd.startswith(("~", "/", "$")):
                continue
            simples, _ = parse_script(command, {**env, **step_env})
            if sum(1 for s in simples if not is_noise(s.argv)) != 1:
                step_name = ""  # a name describes the step; it tells the kind of a step's only command
            for simple in simples:
                if is_noise(simple.argv):
                    continue
                order += 1
                out.append(CiCommand(simple.argv, _join(cwd, simple.cwd), {**env, **step_env, **simple.env},
                                     f"{path}:{lines.get(f'jobs.{job_id}', 1)}", path, job_id, job_id,
                                     frozenset({"push", "pull_request"}), "", "run", order, simple.diff_checked, False,
                                     simple.feed, simple.xargs, step_name))
    return out


def _param_defaults(spec: dict[str, Any]) -> dict[str, Any]:
    return {k: safe.as_dict(v).get("default") for k, v in safe.as_dict(spec.get("parameters")).items()}


def _params(text: str, params: dict[str, Any]) -> str:
    def sub(match: re.Match[str]) -> str:
        value = params.get(match.group(1))
        return _text(value) if value is not None and not isinstance(value, (dict, list)) else match.group(0)

    return re.sub(r"<<\s*parameters\.([A-Za-z0-9_-]+)\s*>>", sub, text)


# -- Azure Pipelines, Travis and AppVeyor (smaller models) ------------------------------------------------

_AZURE_FILES = ("azure-pipelines.yml", "azure-pipelines.yaml", ".azure-pipelines.yml", ".azure-pipelines.yaml")
_AZURE_DIRS = (".azure-pipelines", "azure-pipelines", ".pipelines")
_MACRO = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_.]*)\)")


def _macros(text: str, variables: dict[str, str]) -> str:
    """Azure `$(name)` macros from known variables; an unknown one makes the command drop out."""
    return _MACRO.sub(lambda m: variables.get(m.group(1), UNKNOWN_VAR), text)


def _azure_variables(node: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    if isinstance(node, dict):
        out = {k: _text(v) for k, v in node.items() if isinstance(v, (str, int, float, bool))}
    elif isinstance(node, list):
        for item in node[:200]:
            if isinstance(item, dict) and isinstance(item.get("name"), str) and isinstance(item.get("value"), (str, int, float, bool)):
                out[item["name"]] = _text(item["value"])
    return out


def _platform_of_image(text: str) -> str:
    text = text.lower()
    if "windows" in text or "visual studio" in text or text.startswith(("vs20", "win")):
        return "windows"
    if "macos" in text or "osx" in text or "mac" in text:
        return "macos"
    if "ubuntu" in text or "linux" in text:
        return "linux"
    return ""


def azure(tree: TreeBase) -> list[CiCommand]:
    """Azure Pipelines: `script`/`bash`/`pwsh`/`powershell` steps and the script inputs of CmdLine, Bash,
    PowerShell, DotNetCoreCLI, Npm, Maven and Gradle tasks, with pipeline and job variables and the
    pool's platform; local `template:` files are followed (bounded)."""
    paths = [p for p in _AZURE_FILES if tree.kind(p) == "file"]
    for folder in _AZURE_DIRS:
        if tree.is_dir(folder):
            paths += sorted(e.path for e in tree.list_dir(folder) if e.kind == "file" and e.name.endswith((".yml", ".yaml")))[:20]
    out: list[CiCommand] = []
    done: set[str] = set()
    for path in paths:
        if path in done:
            continue
        text = read_ci(tree, path)
        data = safe.load_yaml(text)
        if not isinstance(data, dict):
            continue
        done.add(path)
        if "trigger" not in data and "pr" not in data and "stages" not in data and "jobs" not in data and "steps" not in data:
            continue
        found: list[tuple[str, str, dict[str, str], str, str]] = []  # (script, job, variables, platform, file)
        _azure_walk(tree, data, path, _azure_variables(data.get("variables")), "", "pipeline", found, [3_000], done, 0)
        texts = {path: text}
        for script, job, variables, platform, origin in found[:300]:
            if origin not in texts:
                texts[origin] = read_ci(tree, origin)
            script = _macros(script, variables)
            if platform == "windows":
                script = windows_vars(script, {k: v for k, v in variables.items() if "." not in k})
            simples, _ = parse_script(script, {k: v for k, v in variables.items() if "." not in k})
            for simple in simples:
                if is_noise(simple.argv) or any(UNKNOWN_VAR.lstrip("$") in w for w in simple.argv):
                    continue
                out.append(CiCommand(simple.argv, simple.cwd, simple.env, f"{origin}:{_line(texts[origin], _first_line(script))}",
                                     origin, job, job, frozenset({"push", "pull_request"}), platform, "run", len(out) + 1, simple.diff_checked,
                                     False, simple.feed, simple.xargs))
    return out


def _azure_walk(tree: TreeBase, node: Any, path: str, variables: dict[str, str], platform: str, job: str,
                found: list[tuple[str, str, dict[str, str], str, str]], budget: list[int], done: set[str], depth: int) -> None:
    budget[0] -= 1
    if budget[0] < 0 or depth > 40:
        return
    if isinstance(node, list):
        for item in node:
            _azure_walk(tree, item, path, variables, platform, job, found, budget, done, depth + 1)
        return
    if not isinstance(node, dict):
        return
    if "job" in node or "deployment" in node:
        if "deployment" in node:
            return  # a deployment job releases
        job = _text(node.get("job")) or job
        variables = {**variables, **_azure_variables(node.get("variables"))}
    pool = node.get("pool")
    image = _text(safe.as_dict(pool).get("vmImage", "")) if isinstance(pool, dict) else ""
    if image:
        platform = _platform_of_image(_macros(image, variables)) or platform
    template = node.get("template")
    if isinstance(template, str) and "@" not in template and len(done) < 30:
        rel = safe.clean_rel_path(template.lstrip("/") if template.startswith("/") else
                                  (f"{path.rsplit('/', 1)[0]}/{template}" if "/" in path else template))
        if rel and rel not in done and tree.kind(rel) == "file":
            done.add(rel)
            params = {k: _text(v) for k, v in safe.as_dict(node.get("parameters")).items() if isinstance(v, (str, int, float, bool))}
            included = safe.load_yaml(read_ci(tree, rel))
            defaults = {}
            for spec in safe.as_list(safe.as_dict(included).get("parameters")):
                if isinstance(spec, dict) and isinstance(spec.get("name"), str) and isinstance(spec.get("default"), (str, int, float, bool)):
                    defaults[spec["name"]] = _text(spec["default"])
            scope = {**variables, **{f"parameters.{k}": v for k, v in {**defaults, **params}.items()}}
            _azure_walk(tree, _template_params(included, scope), rel, variables, platform, job, found, budget, done, depth + 1)
    task = node.get("task")
    inputs = safe.as_dict(node.get("inputs"))
    where = node.get("workingDirectory", inputs.get("workingDirectory"))
    if isinstance(where, str) and where.strip():
        # the step's folder: a cd before its script (the checkout root is $(Build.SourcesDirectory))
        folder = re.sub(r"^\$\((Build\.SourcesDirectory|System\.DefaultWorkingDirectory|Build\.Repository\.LocalPath)\)/?", "", where.strip())
        folder = _macros(folder, variables).replace("\\", "/").removeprefix("./")
        if folder.startswith(("/", "$", "~")) or re.match(r"^[A-Za-z]:", folder) or UNKNOWN_VAR in folder or ".." in folder.split("/"):
            prefix = None
        elif not folder.strip("/"):
            prefix = ""
        else:
            prefix = f"cd {shlex.quote(folder.strip('/'))}\n"
    else:
        prefix = ""
    if prefix is None:
        return  # a folder outside the checkout or unknown here
    for key in ("script", "bash", "pwsh", "powershell"):
        if isinstance(node.get(key), str):
            found.append((prefix + node[key], job, variables, platform, path))
    if isinstance(task, str):
        name = task.split("@", 1)[0]
        command = _text(inputs.get("command", "")).lower()
        if name in ("CmdLine", "Bash", "PowerShell") and isinstance(inputs.get("script"), str) and _text(inputs.get("targetType", "inline")).lower() == "inline":
            found.append((prefix + inputs["script"], job, variables, platform, path))
        elif name in ("Bash", "PowerShell") and isinstance(inputs.get("filePath"), str):
            found.append((f"{'bash' if name == 'Bash' else 'pwsh'} {inputs['filePath']} {_text(inputs.get('arguments', ''))}".strip(), job, variables, platform, path))
        elif name == "DotNetCoreCLI" and command in ("test", "build"):
            found.append((f"dotnet {command} {_text(inputs.get('projects', ''))} {_text(inputs.get('arguments', ''))}".strip(), job, variables, platform, path))
        elif name == "Npm" and command == "custom" and isinstance(inputs.get("customCommand"), str):
            found.append((f"npm {inputs['customCommand']}", job, variables, platform, path))
        elif name == "Npm" and command in ("ci", "install"):
            pass
        elif name == "Maven" and isinstance(inputs.get("goals"), str):
            pom = _text(inputs.get("mavenPomFile", "pom.xml"))
            where = pom.rsplit("/", 1)[0] if "/" in pom else ""
            found.append(((f"cd {where} && " if where else "") + f"mvn {inputs['goals']} {_text(inputs.get('options', ''))}".strip(), job, variables, platform, path))
        elif name == "Gradle" and isinstance(inputs.get("tasks"), str):
            found.append((f"./gradlew {inputs['tasks']} {_text(inputs.get('options', ''))}".strip(), job, variables, platform, path))
    for key, value in node.items():
        if key in ("variables", "parameters", "inputs", "template", "resources", "pool"):
            continue
        if isinstance(value, (dict, list)):
            _azure_walk(tree, value, path, variables, platform, job, found, budget, done, depth + 1)


def _first_line(script: str) -> str:
    """The line of a step's script to point at (not the cd a workingDirectory added)."""
    lines = [line.strip() for line in script.splitlines() if line.strip()]
    return next((line for line in lines if not line.startswith("cd ")), lines[0] if lines else "")


def _template_params(node: Any, scope: dict[str, str], depth: int = 0) -> Any:
    """`${{ parameters.x }}` in a template's strings from the values given (unknown ones drop out later)."""
    if depth > 30:
        return None
    if isinstance(node, str):
        return re.sub(r"\$\{\{\s*([A-Za-z_][A-Za-z0-9_.]*)\s*\}\}", lambda m: scope.get(m.group(1), UNKNOWN_VAR), node)
    if isinstance(node, list):
        return [_template_params(v, scope, depth + 1) for v in node[:500]]
    if isinstance(node, dict):
        return {k: _template_params(v, scope, depth + 1) for k, v in list(node.items())[:500] if not (isinstance(k, str) and k.startswith("${{"))}
    return node


_TRAVIS_PHASES = ("before_script", "script")


def travis(tree: TreeBase) -> list[CiCommand]:
    """Travis: the top-level `before_script`/`script`, and those of each `jobs.include` (or
    `matrix.include`) entry, which inherit the top-level ones; deploy stages and jobs that only run
    on tags are left out; `env` strings (`A=1 B=2`) become each job's environment."""
    path = ".travis.yml"
    text = read_ci(tree, path)
    data = safe.load_yaml(text)
    if not isinstance(data, dict):
        return []
    top = {phase: data.get(phase) for phase in _TRAVIS_PHASES}
    global_env = _travis_env(safe.dig(data, "env", "global") if isinstance(data.get("env"), dict) else None)
    matrix_env = data.get("env")
    env_rows = [_travis_env(row) for row in (safe.as_list(safe.dig(data, "env", "jobs") or safe.dig(data, "env", "matrix"))
                                              if isinstance(matrix_env, dict) else safe.as_list(matrix_env))][:MAX_INSTANCES] or [{}]
    jobs: list[tuple[str, dict[str, Any], dict[str, str]]] = []
    if any(top.values()):
        for row in env_rows:
            jobs.append(("script", top, {**global_env, **row}))
    includes = safe.as_list(safe.dig(data, "jobs", "include")) + safe.as_list(safe.dig(data, "matrix", "include"))
    for index, item in enumerate(includes[:MAX_JOBS]):
        if not isinstance(item, dict):
            continue
        stage = _text(item.get("stage", "")).lower()
        if stage in ("deploy", "release", "publish") or "deploy" in item or "tag" in _text(item.get("if", "")).lower():
            continue
        phases = {phase: item.get(phase, top[phase]) for phase in _TRAVIS_PHASES}
        jobs.append((_text(item.get("name", stage or f"include-{index}")), phases, {**global_env, **_travis_env(item.get("env"))}))
    out: list[CiCommand] = []
    seen: set[tuple[str, tuple[str, ...]]] = set()
    for job, phases, env in jobs:
        for phase in _TRAVIS_PHASES:
            # the items of a phase run in one shell: a `cd build` item holds for the items after it
            items = _flatten(phases.get(phase))[:200]
            for script in ["\n".join(items)] if items else []:
                simples, _ = parse_script(script, env)
                for simple in simples:
                    if is_noise(simple.argv) or (simple.cwd, tuple(simple.argv)) in seen:
                        continue
                    seen.add((simple.cwd, tuple(simple.argv)))
                    source_line = script.splitlines()[simple.line] if simple.line < len(script.splitlines()) else ""
                    out.append(CiCommand(simple.argv, simple.cwd, {**env, **simple.env}, f"{path}:{_line(text, source_line.strip())}",
                                         path, job, job, frozenset({"push", "pull_request"}), "", "run", len(out) + 1, simple.diff_checked,
                                         len(env_rows) > 1, simple.feed, simple.xargs))
    return out


def _travis_env(value: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in _flatten(value):
        for word in _shell_words(item):
            if "=" in word and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", word):
                key, val = word.split("=", 1)
                out[key] = val
    return out


def _shell_words(text: str) -> list[str]:
    try:
        return shlex.split(text)
    except ValueError:
        return text.split()


_APPVEYOR_PHASES = ("install", "before_build", "build_script", "after_build", "before_test", "test_script")


def appveyor(tree: TreeBase) -> list[CiCommand]:
    """AppVeyor: the commands of `install`, `build_script` and `test_script` (and their before/after
    phases), each item a `cmd`, `ps`, `pwsh` or `sh` line (a plain string is cmd on Windows images and
    sh on Linux ones). The environment matrix is data: each row is one job's variables, never a command;
    `%VAR%`, `$env:VAR` and `$VAR` are taken from it and an unknown one drops the command."""
    for path in ("appveyor.yml", ".appveyor.yml"):
        text = read_ci(tree, path)
        if text:
            break
    else:
        return []
    data = safe.load_yaml(text)
    if not isinstance(data, dict):
        return []
    images = [_text(i) for i in (safe.as_list(data.get("image")) or [data.get("image") or data.get("os") or "Visual Studio"])][:4]
    out: list[CiCommand] = []
    seen: set[tuple[str, tuple[str, ...]]] = set()
    done: set[tuple[str, int]] = set()
    for image in images:
        platform = _platform_of_image(image) or "windows"
        config, specific = _appveyor_for(data, image)
        if (platform, specific) in done:
            continue
        done.add((platform, specific))
        environment = config.get("environment")
        shared = {k: _text(v) for k, v in safe.as_dict(environment).items() if isinstance(v, (str, int, float, bool))}
        rows = [{k: _text(v) for k, v in safe.as_dict(r).items() if isinstance(v, (str, int, float, bool))}
                for r in safe.as_list(safe.as_dict(environment).get("matrix"))][:MAX_INSTANCES] or [{}]
        for row in rows:
            env = {**shared, **row}
            for phase in _APPVEYOR_PHASES:
                for item in safe.as_list(config.get(phase))[:200]:
                    if isinstance(item, str):
                        script, shell = item, ("sh" if platform == "linux" else "cmd")
                    elif isinstance(item, dict) and len(item) == 1:
                        ((shell, script),) = item.items()
                        if not isinstance(script, str) or shell not in ("cmd", "ps", "pwsh", "sh"):
                            continue
                    else:
                        continue
                    if shell != "sh":
                        script = windows_vars(windows_paths(script), env)
                    simples, _ = parse_script(script, env if shell == "sh" else {})
                    for simple in simples:
                        if is_noise(simple.argv) or any(UNKNOWN_VAR.lstrip("$") in w for w in simple.argv):
                            continue
                        key = (simple.cwd, tuple(simple.argv))
                        if key in seen:
                            continue
                        seen.add(key)
                        out.append(CiCommand(simple.argv, simple.cwd, {**env, **simple.env}, f"{path}:{_line(text, script.splitlines()[0] if script else '')}",
                                             path, phase, phase, frozenset({"push", "pull_request"}), platform, "run", len(out) + 1,
                                             simple.diff_checked, len(rows) > 1, simple.feed, simple.xargs))
    return out


_WINDOWS_SEPARATOR = re.compile(r"(?<=[A-Za-z0-9_.%)-])\\(?=[A-Za-z0-9_.%$(-])")


def windows_paths(script: str) -> str:
    """`.\\build.cmd test`, `scripts\\test.bat` in a cmd or PowerShell line: its path separators as `/`,
    so the POSIX reading does not take them for escapes (cmd and PowerShell have none)."""
    return _WINDOWS_SEPARATOR.sub("/", script)


_WINDOWS_VARIABLE = re.compile(r"%([A-Za-z_][A-Za-z0-9_]*)%|!([A-Za-z_][A-Za-z0-9_]*)!|\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}|\$env:([A-Za-z_][A-Za-z0-9_]*)",
                               re.I)


def windows_vars(script: str, env: dict[str, str]) -> str:
    """cmd's `%VAR%` and `!VAR!` and PowerShell's `$env:VAR` and `${env:VAR}` in a Windows line, replaced
    by the value the step's environment gives (names are case-insensitive there), else by an unknown
    variable so that the command drops out: read as POSIX, each would reach a printed command literally
    or as a different variable."""
    folded = {k.upper(): v for k, v in env.items()}

    def sub(match: re.Match[str]) -> str:
        name = next(g for g in match.groups() if g)
        value = folded.get(name.upper())
        return UNKNOWN_VAR if value is None or UNKNOWN_VAR in value else value

    return _WINDOWS_VARIABLE.sub(sub, script)


def _appveyor_for(data: dict[str, Any], image: str) -> tuple[dict[str, Any], int]:
    """The configuration one image's jobs run: the top level with the `for:` entries whose
    `matrix.only` names that image (or no image) merged over it, and which entry applied (0: none).
    Conditions on other job values are not judged here (the entry is taken)."""
    merged = dict(data)
    specific = 0
    for index, entry in enumerate(safe.as_list(data.get("for"))[:20], start=1):
        if not isinstance(entry, dict) or "except" in safe.as_dict(entry.get("matrix")):
            continue
        only = [c for c in safe.as_list(safe.dig(entry, "matrix", "only")) if isinstance(c, dict)]
        if only and not any(_text(c.get("image", image)).strip().lower() == image.strip().lower() for c in only):
            continue
        for key, value in entry.items():
            if key != "matrix":
                merged[key] = value
        specific = index
    return merged, specific


def _line(text: str, needle: str) -> int:
    index = text.find(needle) if needle else -1
    return text.count("\n", 0, index) + 1 if index >= 0 else 1


def collect(tree: TreeBase) -> list[CiCommand]:
    """Every command the repository's CI runs, in file order; never raises on a malformed file."""
    out: list[CiCommand] = []
    with expansion_budget(), ci_budget():  # every CI system's files share one budget (the analysis's, when open)
        for reader in (lambda t: GitHubActions(t).run(), gitlab, circleci, azure, travis, appveyor, precommit_ci):
            try:
                out += reader(tree)
            except (RecursionError, ValueError, TypeError, KeyError, AttributeError, IndexError):
                continue
    return out[:MAX_COMMANDS]


def precommit_ci(tree: TreeBase) -> list[CiCommand]:
    """pre-commit.ci, configured by a top-level `ci:` block in `.pre-commit-config.yaml`: it runs every
    hook on each pull request, as `pre-commit run --all-files` does (hooks it is told to skip aside)."""
    text = read_ci(tree, ".pre-commit-config.yaml")
    if not re.search(r"^ci:", text, re.M):
        return []
    data, lines = safe.load_yaml_with_lines(text)
    if not isinstance(data, dict) or not isinstance(data.get("ci"), dict) or not safe.as_list(data.get("repos")):
        return []
    return [CiCommand(["pre-commit", "run", "--all-files"], "", {}, f".pre-commit-config.yaml:{lines.get('ci', 1)}",
                      ".pre-commit-config.yaml", "pre-commit.ci", "pre-commit.ci", frozenset({"pull_request"}), "linux", PRECOMMIT_CI, 10_000)]


PRECOMMIT_CI = "pre-commit.ci"
