"""Verified facts about a repository, each with its evidence (file and line). No model involved.

Commands come only from evidence that the project runs them, in this order of weight:

1. its CI (GitHub Actions, GitLab CI, CircleCI, Azure Pipelines, Travis, AppVeyor), read as YAML
   (`aiplane.agentsmd.ci`);
2. its own entry points: tox envs, nox sessions, package.json scripts, Makefile/justfile/Taskfile
   targets, Rakefile tasks, composer scripts, hatch/pdm/poe scripts (`aiplane.agentsmd.entrypoints`);
3. a tool configuration whose tool is declared in the project's dependencies, or a language's
   built-in runner when tests exist (`aiplane.agentsmd.ecosystems`).

Each command is classified by what it runs (`aiplane.agentsmd.commands`); publish, deploy and
release commands are never kept. Every value that reaches the markdown is validated
(`aiplane.agentsmd.safe`), and commands are rebuilt from checked words (`aiplane.agentsmd.shell`).
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from aiplane.agentsmd import ci as ci_model
from aiplane.agentsmd import ecosystems, layout, safe
from aiplane.agentsmd import entrypoints as ep
from aiplane.agentsmd.commands import (
    CHECK_KINDS,
    Resolved,
    Resolver,
    by_name,
    resolution_budget,
    split_launcher,
    tool_name,
)
from aiplane.agentsmd.shell import ANALYSIS_EXPANSION_BUDGET, expansion_budget, render, render_feed
from aiplane.repository.tree import Entry, TreeBase, WorkTree

SKIP_DIRS = frozenset({".git", "node_modules", "vendor", "third_party", ".venv", "venv", "dist", "build", "target", "__pycache__",
                       ".tox", ".nox", ".mypy_cache", ".pytest_cache", ".ruff_cache", "bower_components", ".gradle", ".idea"})
LANGUAGES = {
    ".py": "Python", ".ts": "TypeScript", ".tsx": "TypeScript", ".mts": "TypeScript", ".cts": "TypeScript", ".js": "JavaScript",
    ".jsx": "JavaScript", ".mjs": "JavaScript", ".cjs": "JavaScript", ".go": "Go", ".rs": "Rust", ".java": "Java", ".kt": "Kotlin",
    ".kts": "Kotlin", ".rb": "Ruby", ".c": "C", ".h": "C", ".cc": "C++", ".cpp": "C++", ".cxx": "C++", ".hpp": "C++", ".hh": "C++",
    ".cs": "C#", ".fs": "F#", ".swift": "Swift", ".php": "PHP", ".scala": "Scala", ".vue": "Vue", ".svelte": "Svelte",
    ".ex": "Elixir", ".exs": "Elixir",
}
MAX_FILES = 50_000
MAX_MANIFEST_BYTES = safe.MAX_MANIFEST_BYTES
RENDERED_KINDS = ("test", *CHECK_KINDS)
LOW_VALUE_CHECKS = {"codespell", "typos", "misspell", "markdownlint", "markdownlint-cli2", "actionlint", "editorconfig-checker", "ec",
                    "commitlint", "yamllint", "shellcheck", "hadolint", "ls-lint", "lockfile-lint", "installed-check", "publint",
                    "cmake-lint", "cmake-format", "herb", "govulncheck", "attw", "knip", "license-checks", "zizmor", "sqlfluff"}


@dataclass
class Fact:
    value: str
    evidence: str  # file:line
    kind: str = ""  # for commands: test, lint, format, typecheck, build
    cwd: str = ""  # for commands: the folder to run it from ("" = repository root)
    runs: str = ""  # for entry points: the runner underneath (pytest, jest, go test, ...)
    source: str = ""  # for commands: ci, entry, config or convention
    note: str = ""  # for commands: how CI uses it, when that matters (a formatter checked by `git diff`)


@dataclass
class Analysis:
    root: str
    languages: dict[str, float] = field(default_factory=dict)
    build: list[Fact] = field(default_factory=list)
    test: list[Fact] = field(default_factory=list)
    lint: list[Fact] = field(default_factory=list)
    runtime: list[Fact] = field(default_factory=list)
    source_roots: list[str] = field(default_factory=list)
    test_roots: list[str] = field(default_factory=list)
    boundaries: list[Fact] = field(default_factory=list)
    packages: list[Analysis] = field(default_factory=list)
    single_test: list[Fact] = field(default_factory=list)
    build_commands: list[Fact] = field(default_factory=list)
    conventions: list[Fact] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def commands(self) -> set[str]:
        found = {f.value for f in self.test + self.lint + self.single_test + self.build_commands}
        for package in self.packages:
            found |= package.commands()
        return found

    def located_commands(self, prefix: str = "") -> set[tuple[str, str]]:
        """(folder, command) for every command, folders relative to the repository root."""
        found = set()
        for fact in self.test + self.lint + self.single_test + self.build_commands:
            folder = "/".join(p for p in (prefix, fact.cwd) if p)
            found.add((folder, fact.value))
        for package in self.packages:
            found |= package.located_commands("/".join(p for p in (prefix, package.root) if p))
        return found

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Candidate:
    argv: list[str]
    text: str
    kind: str
    cwd: str
    evidence: str
    source: str  # ci | entry | config | convention
    score: float
    order: int
    resolved: Resolved
    job: tuple[str, str] = ("", "")  # (workflow, job) for CI commands
    tools: frozenset[str] = frozenset()  # every tool the command runs, through its entry points too


def _languages(files: list[Entry]) -> dict[str, float]:
    # Bytes per language, as GitHub's linguist counts them: no file has to be opened.
    sizes: dict[str, int] = {}
    for entry in files:
        suffix = "." + entry.name.rsplit(".", 1)[-1] if "." in entry.name else ""
        language = LANGUAGES.get(suffix)
        if language is not None and not re.search(r"(^|/)(docs?|examples?|vendor|third_party|benchmarks?|fixtures|testdata)/", entry.path):
            sizes[language] = sizes.get(language, 0) + entry.size
    total = sum(sizes.values()) or 1
    return {k: round(v / total, 3) for k, v in sorted(sizes.items(), key=lambda kv: -kv[1]) if v / total >= 0.01}


_DEMOTE = {"release", "publish", "deploy", "docs", "doc", "documentation", "nightly", "schedule", "scheduled", "bench", "benchmark",
           "benchmarks", "benches", "codspeed", "perf", "coverage", "cov", "downstream", "third", "party", "integration", "e2e", "smoke", "fuzz",
           "fuzzing", "cifuzz", "miri", "sanitizer", "sanitizers", "valgrind", "msan", "asan", "tsan", "ubsan", "android", "ios",
           "graalvm", "native", "wasm", "wasi", "emscripten", "pyemscripten", "pyodide", "cross", "qemu", "minimal", "min",
           "minimum", "minimums", "msrv", "oldest", "lowest", "legacy", "old", "compat", "compatibility", "windows", "win", "macos",
           "mac", "osx", "mingw", "msys2", "msvc", "freebsd", "alternative", "runtime", "runtimes", "bundler", "citgm", "ecosystem",
           "canary", "next", "beta", "experimental", "arm", "arm64", "aarch64", "s390x", "ppc64le", "deno", "workerd", "lambda",
           "edge", "fastly", "browser", "size", "mutation", "mutations", "stress", "random", "dependencies", "upstream", "memray",
           "typechecking", "dev", "debug", "shell", "nu", "ui", "arch", "builds", "reproducible", "japicmp", "api", "tinygo",
           "pypy", "nsolid", "lock", "label", "stale", "codeql", "scorecard", "zizmor", "zipapp", "wasip", "loom", "semver"}
_PROMOTE = {"test", "tests", "testing", "ci", "main", "check", "checks", "unit", "linux", "ubuntu", "suite", "python", "node", "go",
            "rust", "ruby", "php", "java", "maven", "gradle", "dotnet", "pr", "pull", "push", "lint", "quality", "static", "style"}
_CHECK_JOB = {"lint", "linting", "linter", "quality", "static", "style", "audit", "format", "formatting"}
_MAIN_TRIGGERS = {"push", "pull_request", "pull_request_target", "merge_group"}


def _words(*texts: str) -> set[str]:
    words: set[str] = set()
    for text in texts:
        plain = text.lower().rsplit("/", 1)[-1].rsplit(".", 1)[0] if "/" in text else text.lower()
        for word in re.split(r"[^a-z0-9]+", plain):
            if word:
                words |= {word, word.rstrip("0123456789")}  # wasm32 is wasm, py310 is py
    return words


def _ci_score(command: ci_model.CiCommand, resolved: Resolved) -> float:
    score = 100.0
    if command.triggers and not command.triggers & _MAIN_TRIGGERS:
        score -= 40
    words = _words(command.workflow) | _words(command.job, command.job_name)
    demoted = len(words & _DEMOTE)
    score -= min(45, 15 * demoted)
    if command.via == ci_model.PRECOMMIT_CI:
        return 95.0 - _flag_penalty(resolved)  # an app next to the workflows: their own checks come first
    if resolved.kind == "test" and words & _CHECK_JOB:
        score -= 10  # a test-named script in a lint job (`test:package`, `test:types`) checks, it is not the suite
    elif words & _PROMOTE:
        score += 10
    if command.platform in ("windows", "macos"):
        score -= 10
    if command.cwd:
        score -= 15
    if re.search(r"pypy|graalpy|\d\.\d+t\b", " ".join(command.argv) + " " + " ".join(command.env.values())):
        score -= 3  # among matrix instantiations, CPython's
    if _foreign_target(command.argv):
        score -= 40  # a matrix row building for another platform: needs its toolchain, often its OS
    return score - _flag_penalty(resolved)


_TARGET_TRIPLE = re.compile(r"(?:x86_64|i[3-6]86|aarch64|arm\w*|thumb\w*|wasm(?:32|64)|riscv\w+|powerpc\w*|ppc\w*|s390x|mips\w*|sparc\w*|"
                            r"loongarch\w*)-(?:[a-z0-9_]+-)?(?:windows|darwin|ios|android\w*|linux|freebsd|netbsd|openbsd|none|wasi\w*|"
                            r"unknown|emscripten|solaris|illumos|fuchsia)(?:-[a-z0-9_]+)?")
_HOST_TRIPLES = {"x86_64-unknown-linux-gnu"}


def _foreign_target(argv: list[str]) -> bool:
    """The command names a target triple other than the reader's Linux host (`ci/test.bash cargo
    i686-pc-windows-msvc`, `cargo test --target wasm32-unknown-unknown`): one row of a cross matrix."""
    for word in argv:
        value = word.split("=", 1)[1] if word.startswith("--target=") else word
        if _TARGET_TRIPLE.fullmatch(value) and value not in _HOST_TRIPLES:
            return True
    return False


_GENERIC_RUNNERS = {"mvn", "mvnw", "gradle", "gradlew", "make", "gmake", "just", "task", "dotnet", "cargo", "go", "npm", "pnpm", "yarn",
                    "bun", "ant", "sbt", "bazel", "bazelisk", "rake", "composer", "pipx", "uvx", "uv", "hatch", "nox", "tox", "cmake", "meson", "pixi"}


def _runs_something(argv: list[str], resolved: Resolved) -> bool:
    """The command is a repository script, an entry point or a build tool's goal: something a step
    name can tell the kind of (not a shell statement or a line of another language)."""
    _prefix, core = split_launcher(argv)
    return bool(core) and ("script" in resolved.flags or bool(resolved.entry) or tool_name(core[0]) in _GENERIC_RUNNERS)


def _step_kind(name: str) -> str | None:
    """The check kind a step's name states; none when it also names tests, builds or fixes."""
    words = set(re.split(r"[^a-z0-9]+", name.lower()))
    if words & {"test", "tests", "build", "fix", "apply", "autofix", "install", "setup", "publish", "deploy", "release", "generate",
                 "performance", "perf", "measurement", "measure", "bench", "benchmark", "size", "coverage", "report", "upload"}:
        return None
    return by_name("-".join(sorted(w for w in words if w)))


def _flag_penalty(resolved: Resolved) -> float:
    penalty = 0.0
    for flag, value in (("step-name", 10), ("partial", 20), ("e2e", 20), ("toolchain", 20), ("device", 40), ("coverage", 3), ("watch", 50), ("by-name", 8), ("workspaces", 5), ("extras", 15)):
        if flag in resolved.flags:
            penalty += value
    if resolved.kind == "test" and not resolved.runs:
        penalty += 5
    if resolved.kind in CHECK_KINDS and resolved.runs == [] and "by-name" in resolved.flags:
        penalty += 2
    return penalty


def _entry_score(proposal: ecosystems.Proposal, resolved: Resolved) -> float:
    base = {"entry": 60.0, "config": 42.0, "convention": 35.0}[proposal.source]
    name = proposal.argv[-1].lower() if proposal.source == "entry" and len(proposal.argv) > 1 else ""
    if proposal.source == "entry":
        if resolved.kind == "test" and name in ("test", "tests"):
            base += 15
        elif resolved.kind in CHECK_KINDS and name in ("lint", "check", "typecheck", "format:check", "fmt-check", "format-check", "style"):
            base += 12
        elif resolved.kind == "test" and name in ("check", "spec", "unit", "test:unit"):
            base += 8
        if re.search(r"(watch|dev|debug|update|snapshot|ci$|all$|full|slow|e2e|integration|browser|coverage|cov\b|report)", name):
            base -= 10
        if proposal.argv[:1] == ["tox"] and len(proposal.argv) == 1:
            base += 5
        if proposal.argv[:1] == ["nox"] and len(proposal.argv) == 1:
            base += 5
        if proposal.argv[:2] == ["hatch", "test"]:
            base += 3
    return base - _flag_penalty(resolved)


def _fold_env(argv: list[str], env: dict[str, str]) -> list[str]:
    """Environment variables that select what an entry point runs become its own options."""
    _prefix, core = split_launcher(argv)
    if not core:
        return argv
    name = tool_name(core[0])
    if name == "tox" and not any(a in ("-e", "-f", "-m") or a.startswith("-e") for a in core):
        selected = env.get("TOXENV") or env.get("TOX_ENV")
        if selected and re.fullmatch(r"[A-Za-z0-9_.,-]+", selected):
            return [*argv, "-e", selected]
    if name == "nox" and not any(a in ("-s", "--session", "--sessions", "-e") for a in core):
        selected = env.get("NOXSESSION")
        if selected and re.fullmatch(r"[A-Za-z0-9_.,-]+", selected):
            return [*argv, "-s", selected]
    return argv


def _ci_candidates(tree: TreeBase, resolver: Resolver, commands: list[ci_model.CiCommand]) -> list[Candidate]:
    out: list[Candidate] = []
    cmake_root = tree.kind("CMakeLists.txt") == "file"
    for command in commands:
        if cmake_root and command.cwd and not tree.is_dir(command.cwd) and _build_dir_test(command.argv):
            # `make test` / `ninja test` in the build folder CMake made runs ctest there
            command = ci_model.CiCommand(["ctest", "--test-dir", command.cwd], "", command.env, command.evidence, command.workflow,
                                         command.job, command.job_name, command.triggers, command.platform, command.via,
                                         command.order, command.diff_checked, command.matrix)
        if command.feed and command.via == ci_model.OUTSIDE_BUILD:
            continue
        # The env that selects what an entry point runs (TOXENV=black) is part of the command: it is
        # resolved with it, or `tox` would be read as the default test envs.
        if any("--cfg" in command.env.get(name, "") for name in ("RUSTFLAGS", "RUSTDOCFLAGS")):
            continue  # compiles only with CI's `--cfg` flags (an unstable feature gate): not runnable as written
        argv = _fresh_checkout(tree, _native_target(_fold_env(_user_bin(command.argv), command.env)), command.cwd)
        while argv and len(argv) > 1 and argv[-1] == "--":
            if re.fullmatch(r"-[A-Za-z]", argv[-2]):
                argv = []  # `pytest -k "$T"` with T=--: the `--` is the option's value, and without it the option has none
                break
            argv = argv[:-1]  # `tox run -e lint --` once CI's extra arguments are empty: the `--` passes nothing
        if not argv:
            continue  # nothing but an upload to an analysis server is left
        if _probe_or_dashboard(argv):
            continue
        resolver.tools = set()
        try:
            resolved = resolver.argv(argv, command.cwd, diff_checked=command.diff_checked)
        except RecursionError:
            continue
        tools = frozenset(resolver.tools)
        if resolved.kind in ("other", "build") and command.step_name and _runs_something(argv, resolved):
            # A step named as a check ("Verify formatting", "Lint") whose command says nothing of its kind
            # (a script checking `git status`, a generic build goal): the name is weak evidence.
            stated = _step_kind(command.step_name)
            if stated in CHECK_KINDS:
                resolved = Resolved(stated, resolved.runs, resolved.flags | {"step-name"}, resolved.entry)
        if resolved.kind not in RENDERED_KINDS and resolved.kind != "build":
            continue
        if command.via == ci_model.OUTSIDE_BUILD:
            # CI builds it in a folder outside the checkout: the build line is the template's
            resolved = Resolved(resolved.kind, resolved.runs, resolved.flags | {"outside"}, resolved.entry)
        cwd = command.cwd
        argv = _portable(tree, resolver, argv, cwd, resolved)
        if cwd and not tree.is_dir(cwd):
            # A folder CI creates (a build directory): say it in the command itself.
            if tool_name(argv[0]) == "ctest" and "--test-dir" not in argv:
                argv = ["ctest", "--test-dir", cwd, *argv[1:]]
                cwd = ""
            else:
                continue
        if resolved.kind == "test" and _adhoc_js_runner(tree, argv, cwd):
            continue
        if command.feed:
            # `find src -name '*.h' | xargs clang-format -n`: stated whole, the file list with the tool
            text = render_feed(command.feed, command.xargs, argv)
        else:
            text = render(argv, cwd=cwd)
            if text is None:
                argv = _without_reporting(argv)
                text = render(argv, cwd=cwd)
        if text is None:
            continue
        out.append(Candidate(argv, text, resolved.kind, cwd, command.evidence, "ci", _ci_score(command, resolved), command.order,
                             resolved, (command.workflow, command.job), tools))
        if resolved.kind == "test":
            checks = _tox_check_envs(resolver, argv, cwd)
            if checks is not None:
                # `tox -e py313,lint`: CI's lint too, stated as the check envs alone
                check_argv, check = checks
                check_text = render(check_argv)
                if check_text is not None:
                    out.append(Candidate(check_argv, check_text, check.kind, cwd, command.evidence, "ci", _ci_score(command, check),
                                         command.order, check, (command.workflow, command.job), tools))
    return out


def _tox_check_envs(resolver: Resolver, argv: list[str], cwd: str) -> tuple[list[str], Resolved] | None:
    """For `tox -e py313,lint` (a test env and a check env in one run): `tox -e lint` and its kind."""
    prefix, core = split_launcher(argv)
    if not core or tool_name(core[0]) != "tox":
        return None
    index = next((i for i, w in enumerate(core) if w in ("-e", "--env") and i + 1 < len(core)), None)
    if index is None or "," not in core[index + 1] or "--" in core[:index]:
        return None
    envs = [e for e in core[index + 1].split(",") if e]
    checks = []
    for env in envs[:20]:
        single = [*core[:index + 1], env, *core[index + 2:]]
        resolved = resolver.argv([*prefix, *single], cwd)
        if resolved.kind in CHECK_KINDS:
            checks.append((env, resolved))
    if not checks or len(checks) == len(envs):
        return None
    check_argv = [*prefix, *core[:index + 1], ",".join(e for e, _r in checks), *core[index + 2:]]
    kinds = {r.kind for _e, r in checks}
    kind = kinds.pop() if len(kinds) == 1 else "lint"
    return check_argv, Resolved(kind, [], set(), "tox")


def _probe_or_dashboard(argv: list[str]) -> bool:
    """`golangci-lint run --help`, `cmake --version`: CI printing what it has, not a check or a build;
    `ctest -D ExperimentalSubmit` / `-T Submit`: a run that uploads its results to a CDash dashboard."""
    _prefix, core = split_launcher(argv)
    if any(word in ("--help", "-help", "--version", "-version") for word in core[1:]):
        return True
    if core and tool_name(core[0]) == "ctest":
        for index, word in enumerate(core[1:], 1):
            value = core[index + 1] if index + 1 < len(core) else ""
            if word in ("-D", "--dashboard", "-T", "--test-action") and re.match(r"(Experimental|Nightly|Continuous|Submit)", value):
                return True
            if re.match(r"-D(Experimental|Nightly|Continuous)", word):
                return True
    return False


# Options that only make sense after CI's own earlier steps: on a fresh checkout the command without
# them works, with them it fails (`dotnet test --no-build` has nothing built; `tox --skip-pkg-install`
# has no package installed after `tox --notest`; `--parallel-live` only chooses tox's output).
_AFTER_CI_STEPS = {"dotnet": {"--no-build", "--no-restore"}, "tox": {"--skip-pkg-install", "--parallel-live"}}


def _fresh_checkout(tree: TreeBase, argv: list[str], cwd: str) -> list[str]:
    """The command as it works on a fresh checkout: without options that lean on CI's earlier steps,
    and without `cargo --locked`/`--frozen` where the repository has no Cargo.lock (CI makes one first;
    with --locked, cargo refuses to create it)."""
    prefix, core = split_launcher(argv)
    if not core:
        return argv
    name = tool_name(core[0])
    if name in _BUILD_TOOLS and any(_uploads(word) for word in core[1:]):
        return _without_uploads(prefix, core)
    drop = set(_AFTER_CI_STEPS.get(name, ()))
    if name == "cargo" and not _has_lockfile(tree, cwd):
        drop |= {"--locked", "--frozen"}
    if not drop or not drop & set(core):
        return argv
    return [*prefix, core[0], *[a for a in core[1:] if a not in drop]]


# Maven goals and Gradle tasks that send results to a server with CI's secret token (SonarCloud,
# Coveralls): without it they fail, so they are no part of a command a developer runs
# (pf4j: `mvn -B verify org.sonarsource.scanner.maven:sonar-maven-plugin:sonar`).
_BUILD_TOOLS = {"mvn", "mvnw", "gradle", "gradlew"}
_UPLOAD_GOAL = re.compile(r"^(?:[\w.-]+:)?(?:sonar-maven-plugin:(?:[\w.-]+:)?sonar|sonar:sonar|coveralls:report|sonar|sonarqube|coveralls)$")


def _uploads(word: str) -> bool:
    return bool(_UPLOAD_GOAL.match(word)) or word.startswith(("-Dsonar.", "-Dcoveralls."))


def _without_uploads(prefix: list[str], core: list[str]) -> list[str]:
    """The build without its upload goals; nothing when no goal or task is left (`mvn sonar:sonar`
    alone would run the default goal instead)."""
    kept: list[str] = []
    for word in core[1:]:
        if _uploads(word):
            if kept and kept[-1] in ("-x", "--exclude-task"):
                kept.pop()  # `-x sonar` excluded it anyway
            continue
        kept.append(word)
    if not any(not word.startswith("-") for word in kept):
        return []
    return [*prefix, core[0], *kept]


def _has_lockfile(tree: TreeBase, cwd: str) -> bool:
    parts = [p for p in cwd.split("/") if p] if cwd else []
    for depth in range(len(parts), -1, -1):
        folder = "/".join(parts[:depth])
        if tree.kind(_in(folder, "Cargo.lock")) == "file":
            return True
    return False


# Options that only choose where reports go; dropped when the whole command is too long to print.
_REPORTING = {"--logger", "-l", "--collect", "--results-directory", "--verbosity", "-v", "--diag", "--blame-hang-timeout"}


# Maven options that only shape CI's log or its network pool (`-B -V -ntp -Dmaven.wagon.http.pool=false`,
# often a long `$MAVEN_ARGS`); dropped when the whole command is too long to print.
_MAVEN_CI_ONLY = {"-B", "--batch-mode", "-V", "--show-version", "-ntp", "--no-transfer-progress", "-e", "--errors"}
_MAVEN_CI_ONLY_PROPERTY = re.compile(r"-D(http\.keepAlive|maven\.wagon\.[A-Za-z0-9_.]+|style\.color|org\.slf4j\.simpleLogger\.[A-Za-z0-9_.]+)=[^ ]*")


def _without_reporting(argv: list[str]) -> list[str]:
    _prefix, core = split_launcher(argv)
    if core and tool_name(core[0]) in ("mvn", "mvnw"):
        return [w for w in argv if w not in _MAVEN_CI_ONLY and not _MAVEN_CI_ONLY_PROPERTY.fullmatch(w)]
    if not core or tool_name(core[0]) != "dotnet":
        return argv
    out: list[str] = []
    skip = False
    for word in argv:
        if skip:
            skip = False
            continue
        if word in _REPORTING:
            skip = True
            continue
        if word.split(":", 1)[0] in _REPORTING or word.split("=", 1)[0] in _REPORTING:
            continue
        out.append(word)
    return out


_JS_LAUNCHERS = {("npx",), ("pnpx",), ("bunx",), ("pnpm", "exec"), ("pnpm", "dlx"), ("yarn", "exec"), ("yarn", "dlx"), ("npm", "exec")}


def _adhoc_js_runner(tree: TreeBase, argv: list[str], cwd: str) -> bool:
    """`npx playwright test` where no package.json is in reach: CI installed the runner and wrote the
    tests itself in earlier steps; on a checkout there is nothing to run."""
    if not argv or not ((argv[0],) in _JS_LAUNCHERS or tuple(argv[:2]) in _JS_LAUNCHERS):
        return False
    parts = [p for p in cwd.split("/") if p] if cwd else []
    return not any(tree.kind(_in("/".join(parts[:depth]), "package.json")) == "file" for depth in range(len(parts), -1, -1))


_USER_BIN = re.compile(r"^(?:~|\$HOME|\$\{HOME\})/(?:\.composer/vendor/bin|\.config/composer/vendor/bin|\.cargo/bin|go/bin|\.local/bin)/"
                       r"([A-Za-z0-9][A-Za-z0-9_.-]*)$")


def _user_bin(argv: list[str]) -> list[str]:
    """`~/.composer/vendor/bin/php-cs-fixer` (a tool CI installed globally, into the user's tool
    folder) is that tool on the reader's PATH: the CI machine's home folder is not the reader's."""
    match = _USER_BIN.match(argv[0]) if argv else None
    return [match.group(1), *argv[1:]] if match else argv


_NATIVE_TRIPLES = {"x86_64-unknown-linux-gnu", "aarch64-unknown-linux-gnu", "x86_64-apple-darwin", "aarch64-apple-darwin",
                   "x86_64-pc-windows-msvc"}


def _native_target(argv: list[str]) -> list[str]:
    """`cargo test --target x86_64-unknown-linux-gnu` (a CI matrix naming the runner's own platform)
    is `cargo test` on the reader's machine: the native triple is dropped. A cross target is kept."""
    _prefix, core = split_launcher(argv)
    if not core or tool_name(core[0]) not in ("cargo", "cross"):
        return argv
    out: list[str] = []
    skip = False
    for index, word in enumerate(argv):
        if skip:
            skip = False
            continue
        if word == "--target" and index + 1 < len(argv) and argv[index + 1] in _NATIVE_TRIPLES:
            skip = True
            continue
        if word.startswith("--target=") and word.split("=", 1)[1] in _NATIVE_TRIPLES:
            continue
        out.append(word)
    return out


def _build_dir_test(argv: list[str]) -> bool:
    words = [a for a in argv if not re.match(r"^[A-Z_][A-Z0-9_]*=", a)]  # make's VAR=value arguments
    return (len(words) == 2 and tool_name(words[0]) in ("make", "gmake", "ninja") and words[1] == "test") or \
        (words[:2] == ["cmake", "--build"] and words[3:5] == ["--target", "test"] and len(words) == 5)


def _portable(tree: TreeBase, resolver: Resolver, argv: list[str], cwd: str, resolved: Resolved) -> list[str]:
    """`build.cmd ci` (a Windows job's batch bootstrapper) as `./build.sh ci` when the same folder has a
    build.sh that resolves to the same kind: the command a reader can run anywhere. (A .ps1 script
    runs under pwsh everywhere and is kept as CI runs it.)"""
    head = argv[0].replace("\\", "/") if argv else ""
    stem, dot, suffix = head.rpartition(".")
    if not dot or suffix.lower() not in ("cmd", "bat") or not stem.removeprefix("./") or ".." in stem.split("/"):
        return argv
    sibling = f"./{stem.removeprefix('./')}.sh" if "/" not in stem.removeprefix("./") else f"{stem.removeprefix('./')}.sh"
    if tree.kind(_in(cwd, sibling[2:])) != "file":
        return argv
    other = resolver.argv([sibling, *argv[1:]], cwd)
    return [sibling, *argv[1:]] if other.kind == resolved.kind and other.runs == resolved.runs else argv


def _in(cwd: str, rel: str) -> str:
    return f"{cwd}/{rel}" if cwd else rel


def _proposal_candidates(resolver: Resolver, proposals: list[ecosystems.Proposal]) -> list[Candidate]:
    out: list[Candidate] = []
    for order, proposal in enumerate(proposals):
        resolver.tools = set()
        try:
            resolved = resolver.argv(proposal.argv, proposal.cwd)
        except RecursionError:
            continue
        tools = frozenset(resolver.tools)
        if resolved.kind not in RENDERED_KINDS:
            continue
        if proposal.hint and proposal.source != "entry" and resolved.kind != proposal.hint and not (proposal.hint in CHECK_KINDS and resolved.kind in CHECK_KINDS):
            continue
        text = render(proposal.argv, cwd=proposal.cwd)
        if text is None:
            continue
        out.append(Candidate(proposal.argv, text, resolved.kind, proposal.cwd, proposal.evidence, proposal.source,
                             _entry_score(proposal, resolved), 10_000 + order, resolved, tools=tools))
    return out


_RUNNER_LANGUAGES = {
    "pytest": ("Python",), "unittest": ("Python",), "nose2": ("Python",), "nosetests": ("Python",), "trial": ("Python",),
    "stestr": ("Python",), "zope-testrunner": ("Python",), "go test": ("Go",), "cargo test": ("Rust",), "cargo nextest": ("Rust",),
    "maven": ("Java", "Kotlin", "Scala"), "gradle": ("Java", "Kotlin", "Scala"), "rspec": ("Ruby",), "minitest": ("Ruby",),
    "cucumber": ("Ruby",), "phpunit": ("PHP",), "pest": ("PHP",), "dotnet test": ("C#", "F#"), "ctest": ("C", "C++"),
    "meson test": ("C", "C++"), "swift test": ("Swift",), "mix test": ("Elixir",),
}
_JS = ("JavaScript", "TypeScript", "Vue", "Svelte")


def _runner_share(candidate: Candidate, languages: dict[str, float]) -> float | None:
    """The share of the repository's code in the language the test runner tests; None when unknown."""
    runner = candidate.resolved.runs[0] if candidate.resolved.runs else ""
    family = _RUNNER_LANGUAGES.get(runner)
    if family is None and runner in ("jest", "vitest", "mocha", "ava", "tap", "tape", "jasmine", "uvu", "borp", "lab", "qunit",
                                     "node --test", "bun test", "deno test"):
        family = _JS
    if family is None or not languages:
        return None
    return sum(languages.get(language, 0.0) for language in family)


def _secondary_language(tests: list[Candidate], languages: dict[str, float]) -> None:
    """A test run of a secondary language (the Rust bindings' `cargo test` in a C++ library) ranks
    below a run of the language most of the code is in: that one is the project's main test."""
    shares = [(c, _runner_share(c, languages)) for c in tests]
    if not any(share is not None and share >= 0.5 for _c, share in shares):
        return
    for candidate, share in shares:
        if share is not None and share < 0.1:
            candidate.score -= 10


def _pick(candidates: list[Candidate], languages: dict[str, float] | None = None) -> tuple[list[Candidate], list[Candidate]]:
    # The command CI runs in more jobs is more likely the project's test command.
    jobs: dict[tuple[str, str], set[tuple[str, str]]] = {}
    for candidate in candidates:
        if candidate.source == "ci":
            jobs.setdefault((candidate.cwd, candidate.text), set()).add(candidate.job)
    for candidate in candidates:
        if candidate.source == "ci":
            candidate.score += min(6, 2 * (len(jobs[(candidate.cwd, candidate.text)]) - 1))
            job = candidate.job[1].lower()
            if job in ("test", "tests", "unit", "unit-tests", "pytest") or (job == "lint" and candidate.kind in CHECK_KINDS):
                candidate.score += 5
            if _canonical(candidate.argv, candidate.kind):
                candidate.score += 4
    best: dict[tuple[str, str], Candidate] = {}
    for candidate in candidates:
        key = (candidate.cwd, candidate.text)
        if key not in best or (candidate.score, -candidate.order) > (best[key].score, -best[key].order):
            best[key] = candidate
    _secondary_language([c for c in best.values() if c.kind == "test"], languages or {})
    ranked = sorted(best.values(), key=lambda c: (-c.score, c.order))
    tests = [c for c in ranked if c.kind == "test"]
    checks: list[Candidate] = []
    low: set[int] = set()
    for candidate in ranked:
        if candidate.kind not in CHECK_KINDS:
            continue
        if _low_value(candidate):
            candidate.score -= 25
            low.add(id(candidate))
        checks.append(candidate)
    # A spell, link or vulnerability check is not the project's lint while it has a code linter of its
    # own (an entry point that CI may run through a workflow kept elsewhere): that one comes first.
    # When CI runs a linter or a format check, that is the project's lint line; a type check (often a
    # test script's `test:typings` step) comes after it, and first only when it is the only check.
    # (pre-commit.ci, an app outside the workflows, does not put the workflows' own type check second)
    ci_linted = any(c.source == "ci" and c.kind in ("lint", "format") and id(c) not in low and c.job[1] != ci_model.PRECOMMIT_CI for c in checks)
    checks.sort(key=lambda c: (id(c) in low, ci_linted and c.kind == "typecheck", -c.score, c.order))
    return tests, checks


_RUNNERS = {"node", "npm", "pnpm", "yarn", "bun", "npx", "sh", "bash", "python", "python3", "make", "just", "task", "tox", "nox", "uv"}


def _low_value(candidate: Candidate) -> bool:
    """A spell, packaging, link or workflow check: by its own tool, or by every check tool its entry
    point runs (`npm run check:packaging` running publint)."""
    if _check_tool(candidate.argv) in LOW_VALUE_CHECKS:
        return True
    tools = {t for t in candidate.tools if t not in _RUNNERS}
    return bool(tools) and tools <= LOW_VALUE_CHECKS


def _check_tool(argv: list[str]) -> str:
    _prefix, core = split_launcher(argv)
    return tool_name(core[0]) if core else ""


def _canonical(argv: list[str], kind: str) -> bool:
    """The project's own conventional entry point for that kind: `npm test`, `make test`, `tox`, `make lint`, ..."""
    _prefix, core = split_launcher(argv)
    if not core:
        return False
    tool = tool_name(core[0])
    names = [a for a in core[1:] if not a.startswith("-") and "=" not in a]
    if tool in ("npm", "pnpm", "yarn", "bun") and names[:1] == ["run"]:
        names = names[1:]
    wanted = {"test": ("test", "tests"), "lint": ("lint", "check"), "format": ("format", "fmt", "format:check", "fmt-check", "format-check"),
              "typecheck": ("typecheck", "types", "typing", "type-check")}.get(kind, ())
    if tool in ("npm", "pnpm", "yarn", "bun", "make", "rake", "composer", "just", "task"):
        return names[:1] in ([w] for w in wanted) or (tool == "rake" and not names and kind == "test")
    if tool in ("tox", "nox") and kind == "test":
        # the default envs, or a per-python one (`py312`, `pypy3.10`, `3.13`, `3.13-tests`)
        return not names or all(re.fullmatch(r"(py|pypy|tests?)[\d.-]*\w*|\d+(\.\d+)*t?(-\w+)?", n) for n in names[-1:])
    return False


def _runs_note(candidate: Candidate) -> str:
    _prefix, core = split_launcher(candidate.argv)
    tool = tool_name(core[0]) if core else ""
    runs = [r for r in candidate.resolved.runs if r and not r.startswith((tool, f"{tool} ")) and "/" not in r]
    if candidate.resolved.entry and runs:
        return ", ".join(runs[:2])
    return ""


def _watch_safe(candidate: Candidate, manager: str) -> Candidate:
    """A test script that starts vitest in watch mode gets `--run`, so it ends in a terminal too."""
    if "watch" not in candidate.resolved.flags or candidate.resolved.runs != ["vitest"]:
        return candidate
    _prefix, core = split_launcher(candidate.argv)
    direct = bool(core) and (tool_name(core[0]) == "vitest" or (tool_name(core[0]) in ("pnpm", "yarn", "bun") and core[1:2] == ["vitest"]))  # `pnpm vitest --coverage` as CI runs it (CI's env ends it)
    if candidate.resolved.entry != "npm" and not direct:
        return candidate
    extra = ["--", "--run"] if tool_name(candidate.argv[0]) == "npm" and not direct else ["--run"]
    argv = [*candidate.argv, *extra]
    text = render(argv, cwd=candidate.cwd)
    if text is None:
        return candidate
    flags = candidate.resolved.flags - {"watch"}
    return Candidate(argv, text, candidate.kind, candidate.cwd, candidate.evidence, candidate.source, candidate.score + 50,
                     candidate.order, Resolved(candidate.resolved.kind, candidate.resolved.runs, flags, candidate.resolved.entry), candidate.job)


def _build_before(test: Candidate, candidates: list[Candidate], ecosystems_found: list[str]) -> list[Candidate]:
    """CI's build steps that the chosen test command needs: those in the same job, before it."""
    if test.source != "ci" or "outside" in test.resolved.flags:
        return []
    runs = test.resolved.runs
    native = any(r in ("ctest", "meson test") for r in runs)
    steps = [c for c in candidates if c.source == "ci" and c.job == test.job and c.kind == "build" and c.order < test.order and c.cwd == test.cwd]
    if native:
        steps = steps[-2:]
        # `cmake --build dir` alone fails on a fresh checkout: without CI's configure step (dropped
        # when it depends on values only CI has), the caller writes the plain template instead.
        return steps if any(_configures(c.argv) for c in steps) else []
    if "node" in ecosystems_found and steps and tool_name(steps[-1].argv[0]) in ("npm", "pnpm", "yarn", "bun"):
        return steps[-1:]
    return []


def _configures(argv: list[str]) -> bool:
    """`cmake -S . -B build` or `cmake ..` (not `cmake --build`), or `meson setup`."""
    _prefix, core = split_launcher(argv)
    if not core:
        return False
    tool = tool_name(core[0])
    if tool == "cmake":
        return not any(a in ("--build", "--install", "-E", "-P") for a in core[1:])
    return tool == "meson" and core[1:2] == ["setup"]


def _native_build(test: Candidate) -> list[str] | None:
    runs = test.resolved.runs
    if "ctest" in runs:
        directory = next((test.argv[i + 1] for i, w in enumerate(test.argv[:-1]) if w == "--test-dir"), "build")
        return ["cmake", "-B", directory, "&&", "cmake", "--build", directory]
    if "meson test" in runs:
        directory = next((test.argv[i + 1] for i, w in enumerate(test.argv[:-1]) if w == "-C"), "build")
        return ["meson", "setup", directory, "&&", "meson", "compile", "-C", directory]
    return None


def _analyze(tree: TreeBase, files: list[Entry], commands: list[ci_model.CiCommand], name: str, depth: int,
             manager: str = "", members: list[str] | None = None) -> Analysis:
    a = Analysis(root=name, languages=_languages(files))
    lazy = ep.Lazy(tree)
    resolver = Resolver(lazy)
    facts = ecosystems.detect(tree, "", files, lazy, manager)
    a.build = _unique([Fact(tool, evidence) for tool, evidence in facts.build if safe.one_line(tool, 60)])
    a.runtime = _unique([Fact(value, evidence) for value, evidence in facts.runtime if safe.one_line(value, 80)])
    candidates = _ci_candidates(tree, resolver, commands) + _proposal_candidates(resolver, facts.proposals)
    tests, checks = _pick(candidates, a.languages)
    tests = sorted((_watch_safe(c, facts.manager) for c in tests), key=lambda c: (-c.score, c.order))
    if tests:
        primary = tests[0]
        a.test.append(Fact(primary.text, primary.evidence, "test", primary.cwd, _runs_note(primary), primary.source))
        for other in tests[1:]:
            if (other.source == "ci" and other.score >= 90 and primary.resolved.runs and other.resolved.runs
                    and not set(other.resolved.runs) & set(primary.resolved.runs) and "partial" not in other.resolved.flags):
                a.test.append(Fact(other.text, other.evidence, "test", other.cwd, _runs_note(other), other.source))
                break
        builds = _build_before(primary, candidates, facts.ecosystems)
        if builds:
            texts = [b.text for b in builds]
            a.build_commands.append(Fact(" && ".join(texts), builds[0].evidence, "build", primary.cwd))
        else:
            native = _native_build(primary)
            if native:
                a.build_commands.append(Fact(" ".join(native), primary.evidence, "build", primary.cwd))
        for fact_test in a.test[:1]:
            runner = next((r for r in primary.resolved.runs), "")
            if runner in ("jest", "vitest", "mocha", "ava") and primary.resolved.flags & {"env", "chain"}:
                break  # the runner needs the script's environment or steps; a bare invocation may not work
            launcher = facts.launcher if facts.launcher and (primary.argv[:2] == facts.launcher or primary.resolved.entry in ("tox", "nox", "make", "hatch", "pdm", "poe", "pixi") or primary.source != "ci") else []
            if primary.resolved.entry == "pixi" and primary.argv[:2] == ["pixi", "run"]:
                # The runner lives in the pixi environment the test task ran in: `pixi run -e ENV pytest ...`.
                environment = primary.argv[2:4] if primary.argv[2:3] in (["-e"], ["--environment"]) and len(primary.argv) > 4 else []
                launcher = ["pixi", "run", *environment]
            single = layout.single_test(tree, files, runner, launcher, facts.manager, primary.argv, fact_test.cwd)
            text = render(single, cwd=fact_test.cwd) if single else None
            if text and text != fact_test.value:
                a.single_test.append(Fact(text, primary.evidence, "test", fact_test.cwd, "", primary.source))
    # A check read off a tool's config (`black --check .` from [tool.black]) is left out when the project
    # runs that tool through its own CI or entry points: those choose the files and options; the bare
    # invocation may not (flask's `mypy .`, alembic's black on the whole tree).
    wrapped = set().union(*(c.tools for c in checks if c.source != "config" and c.cwd == "")) if checks else set()
    # When CI runs checks of its own, a linter only read off its config file that CI never runs is not
    # the project's gate (a `.golangci.yml` next to a CI that only runs gofmt): running it may fail.
    ci_tools = set().union(*(c.tools for c in candidates if c.source == "ci")) if any(c.source == "ci" for c in checks) else None
    seen_kinds: set[str] = set()
    for check in checks:
        if check.source == "config" and check.cwd == "" and _check_tool(check.argv) in wrapped:
            continue
        if check.source == "config" and ci_tools is not None and _check_tool(check.argv) not in ci_tools:
            continue
        if check.kind in seen_kinds:
            continue
        seen_kinds.add(check.kind)
        note = "rewrites files; CI then fails on any diff" if "diff" in check.resolved.flags else ""
        a.lint.append(Fact(check.text, check.evidence, check.kind, check.cwd, _runs_note(check), check.source, note))
        if len(a.lint) >= 3:
            break
    a.source_roots = [r for r in layout.source_roots(tree, files, facts.ecosystems)
                      if not any(m.startswith(r) for m in (f"{m}/" for m in members or []))]  # packages are listed on their own
    a.test_roots = layout.test_roots(tree, files)
    if depth == 0:
        a.boundaries = [Fact(text, evidence) for text, evidence in layout.boundaries(tree)]
        pyproject = safe.load_toml(safe.read_text(tree, "pyproject.toml"))
        a.conventions = [Fact(text, evidence) for text, evidence in layout.conventions(tree, pyproject)]
    return a


def _unique(facts: list[Fact]) -> list[Fact]:
    seen: dict[str, Fact] = {}
    for fact in facts:
        seen.setdefault(fact.value, fact)
    return list(seen.values())


def _rebase(commands: list[ci_model.CiCommand], member: str) -> list[ci_model.CiCommand]:
    out = []
    for command in commands:
        if command.cwd == member or command.cwd.startswith(member + "/"):
            rest = command.cwd[len(member):].lstrip("/")
            out.append(ci_model.CiCommand(command.argv, rest, command.env, command.evidence, command.workflow, command.job, command.job_name,
                                          command.triggers, command.platform, command.via, command.order, command.diff_checked, command.matrix,
                                          command.feed, command.xargs))
    return out


def analyze(source: Path | TreeBase, depth: int = 0) -> Analysis:
    """Facts about a repository: a folder on disk (read without following symlinks) or a tree such
    as a commit's. Nothing is executed and no file is read past its size bound; a malformed or
    hostile file is skipped, never raised. The whole analysis (CI files, scripts, entry points, the
    root and every workspace member) shares one expansion budget, one resolution budget and one CI reading budget."""
    with expansion_budget(ANALYSIS_EXPANSION_BUDGET), resolution_budget(), ci_model.ci_budget():
        return _analyze_repository(source, depth)


def _analyze_repository(source: Path | TreeBase, depth: int) -> Analysis:
    root = WorkTree(source.resolve()) if isinstance(source, Path) else source
    files = root.files("", SKIP_DIRS, MAX_FILES)
    name = str(source.resolve()) if isinstance(source, Path) else root.describe()
    try:
        commands = ci_model.collect(root) if depth == 0 else []
    except RecursionError:
        commands = []
    root_commands = [c for c in commands]
    members: list[str] = []
    if depth == 0:
        try:
            members, _evidence = layout.workspace_members(root, ep.Lazy(root))
        except RecursionError:
            members = []
    try:
        analysis = _analyze(root, files, root_commands, name, depth, members=members)
    except RecursionError:
        analysis = Analysis(root=name, languages=_languages(files), warnings=["the analysis was cut short: nesting too deep"])
    if depth == 0:
        manager = next((f.value.split()[0] for f in analysis.build if f.value.split()[0] in safe.PACKAGE_MANAGERS), "")
        for member in members[:100]:
            prefix = member + "/"
            member_files = [Entry(f.path[len(prefix):], f.kind, f.size) for f in files if f.path.startswith(prefix)]
            try:
                package = _analyze(root.sub(member), member_files, _rebase(commands, member), member, depth + 1, manager)
            except RecursionError:
                continue
            package.root = member
            analysis.packages.append(package)
        fanned = _fanned_out(root)
        for package in analysis.packages:
            # `pnpm run lint` in forty example packages, when the root's `lint` runs it in every one
            # (`turbo lint`, `pnpm -r lint`): the root-level command says it once.
            covered = [f for f in package.lint if _covered_by_root(f, package.root, fanned)]
            package.lint = [f for f in package.lint if f not in covered]
            for fact in covered:
                words = fact.value.split()
                script = fanned[(words[2:] if words[1:2] == ["run"] else words[1:])[0]][1]
                value = f"{words[0]} run {script}"
                if len(analysis.lint) < 3 and value not in {f.value for f in analysis.lint} and render(value.split()) == value:
                    analysis.lint.append(Fact(value, "package.json", fact.kind, "", "", "entry", "runs it in every package"))
    return analysis


_WORKSPACE_MANAGERS = ("npm", "pnpm", "yarn", "bun")


def _fanned_out(tree: TreeBase) -> dict[str, tuple[list[str] | None, str]]:
    """Script names the root package.json runs in the workspace packages, with the folder patterns it
    limits them to (None: every package): `turbo lint`, `turbo run lint --filter=./packages/*`,
    `pnpm -r lint`, `pnpm --filter ./packages/* typecheck`, `npm run lint --workspaces`,
    `yarn workspaces foreach -A run lint`, `lerna run lint`, `nx run-many -t lint`."""
    out: dict[str, tuple[list[str] | None, str]] = {}
    package, _text = ep.read_package_json(tree, "")
    for script, body in ep.scripts(package).items():
        for part in re.split(r"&&|\|\||;", body)[:8]:
            words = part.split()
            if not words:
                continue
            tool, args = words[0], words[1:]
            names: list[str] = []
            filters: list[str] = []
            fans = False
            i = 0
            while i < len(args):
                arg = args[i]
                value = arg.split("=", 1)[1] if "=" in arg else (args[i + 1] if i + 1 < len(args) else "")
                if arg in ("--filter", "-F") or arg.startswith("--filter="):
                    filters.append(value.strip("'\""))
                    i += 1 if "=" in arg else 2
                    continue
                if arg in ("-t", "--target", "--targets") or arg.startswith(("--target=", "--targets=")):
                    names += value.split(",")
                    i += 1 if "=" in arg else 2
                    continue
                if arg in ("-r", "--recursive", "--workspaces", "-ws", "run-many", "foreach") or (tool == "lerna" and arg == "run"):
                    fans = True
                elif not arg.startswith("-") and arg not in ("run", "workspaces", "exec"):
                    names.append(arg)
                    break
                i += 1
            if tool == "turbo" or (tool in ("pnpm", "yarn") and filters):
                fans = True
            if not fans or tool not in ("turbo", "lerna", "nx", *_WORKSPACE_MANAGERS) or not names:
                continue
            paths = [f.removeprefix("./").rstrip("/") for f in filters]
            if filters and not all(f.startswith("./") for f in filters):
                continue  # filtered by package name: which folders that is is not known here
            for name in names[:1] if tool != "nx" else names[:4]:
                if name in out and (out[name][0] is None or filters):
                    continue  # the first script that fans it out is the one named
                out[name] = (None if not filters else paths, script)
    return out


def _covered_by_root(fact: Fact, root: str, fanned: dict[str, tuple[list[str] | None, str]]) -> bool:
    words = fact.value.split()
    if fact.source != "entry" or fact.cwd or not words or words[0] not in _WORKSPACE_MANAGERS:
        return False
    rest = words[2:] if words[1:2] == ["run"] else words[1:]
    if len(rest) != 1 or rest[0] not in fanned:
        return False
    patterns = fanned[rest[0]][0]
    return patterns is None or any(fnmatch.fnmatchcase(root, p) for p in patterns)
