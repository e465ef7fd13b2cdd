"""What a command runs, and so what it is for: test, lint, format, typecheck, build, docs, publish,
bench, install or other.

A command is classified by evidence, not by the first pattern that matches its text: launchers
(`uv run`, `bundle exec`, `npx`, `python -m`, ...) are looked through, and a project entry point
(`tox -e X`, `nox -s X`, `npm run X`, `make X`, `rake X`, `composer X`, `hatch run X`, a script in
the repository, ...) is classified by the commands it runs, recursively. `tox -e lint` running
pre-commit is lint; `npm run test:lint` running eslint is lint; `tox -e publish` running twine is
publish and is never shown.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Container
from contextlib import AbstractContextManager
from contextvars import ContextVar
from dataclasses import dataclass, field
from posixpath import normpath

from aiplane.agentsmd import entrypoints as ep
from aiplane.agentsmd import safe
from aiplane.agentsmd.shell import ARGS, is_noise, parse_script

CHECK_KINDS = ("lint", "format", "typecheck")
MAX_DEPTH = 6
# Resolution work of one analysis, all entry points and scripts together: each command resolved
# (one argv) costs a node. Entry points made of other entry points' names (`s0 = ["s1", "s1"]`,
# twenty a level) are resolved once each (memoised), and past the budget a command is other.
MAX_RESOLVE_NODES = 20_000
# Distinct (script, arguments) pairs parsed per analysis, and their text in total: one script called
# with thousands of different arguments, or a thousand scripts, are parsed for the first ones only
# (parsing costs about 5 ms per 6 KB script, expansions aside).
MAX_SCRIPT_CALLS = 200
MAX_SCRIPT_TEXT = 1024 * 1024


@dataclass
class Work:
    """What resolving may still do; one per analysis when the caller opens `resolution_budget()`."""

    nodes: int = MAX_RESOLVE_NODES
    script_calls: int = MAX_SCRIPT_CALLS
    script_text: int = MAX_SCRIPT_TEXT


_work: ContextVar[Work | None] = ContextVar("agentsmd_resolution_work", default=None)


def resolution_budget() -> AbstractContextManager[None]:
    """One resolution budget for every Resolver made inside (the root and each workspace member)."""
    return safe.shared_work(_work, Work)


@dataclass
class Resolved:
    kind: str  # test | lint | format | typecheck | build | docs | publish | bench | install | fix | missing | other
    runs: list[str] = field(default_factory=list)  # test runners underneath: pytest, jest, go test, ...
    flags: set[str] = field(default_factory=set)  # watch, e2e, by-name, partial, coverage, device
    entry: str = ""  # the entry point kind when the command is one: tox, nox, npm, make, ...


def _other(kind: str = "other", *flags: str) -> Resolved:
    return Resolved(kind, [], set(flags))


def _copy(result: Resolved) -> Resolved:
    return Resolved(result.kind, list(result.runs), set(result.flags), result.entry)


def combine(parts: list[Resolved]) -> Resolved:
    """The kind of a sequence of commands: anything that publishes makes it publish; otherwise a test
    makes it a test (a test script that lints first is still the test command); otherwise the first
    check; otherwise build, docs, bench, install."""
    kinds = [p.kind for p in parts]
    runs: list[str] = []
    flags: set[str] = set()
    for part in parts:
        if part.kind == "test" or "test" not in kinds:
            runs += [r for r in part.runs if r not in runs]
        flags |= part.flags
    if "publish" in kinds:
        return Resolved("publish", runs, flags)
    if "test" in kinds:
        tests = [p for p in parts if p.kind == "test"]
        test_flags: set[str] = set()
        # runs over several folders (`go test .` then `go test ./internal/...`) are the suite; one folder
        # run twice (`TYPE=a go test ./tests/x`, `TYPE=b go test ./tests/x`) is still that folder's
        folders = {frozenset(f for f in p.flags if f.startswith("sub-path:")) for p in tests}
        for part in tests:
            test_flags |= part.flags - {"partial"} - {f for f in part.flags if f.startswith("sub-path:")} \
                if len(folders) > 1 and any(f.startswith("sub-path:") for f in part.flags) else part.flags
        if any("e2e" not in p.flags for p in tests):
            test_flags.discard("e2e")  # the unit run next to an end-to-end one: the whole suite
        return Resolved("test", runs, test_flags | ({"watch"} & flags))
    checks = [k for k in kinds if k in CHECK_KINDS]
    if checks:
        return Resolved(checks[0] if len(set(checks)) == 1 else "lint", runs, flags)
    for kind in ("build", "docs", "bench", "fix", "install"):
        if kind in kinds:
            return Resolved(kind, runs, flags)
    if kinds and all(k == "missing" for k in kinds):
        return Resolved("missing", runs, flags)
    return Resolved("other", runs, flags)


def named(result: Resolved, parts: list[Resolved], name: str) -> Resolved:
    """An entry point whose name states a check (typing, lint) and whose body runs that check next to a
    test of it (`pyright` then `pytest tests/test_pyright.py`) is that check."""
    kind = by_name(name)
    if kind in CHECK_KINDS and result.kind == "test" and any(p.kind in CHECK_KINDS for p in parts):
        return Resolved(kind, result.runs, result.flags, result.entry)
    return result


def by_name(name: str) -> str | None:
    """The kind an entry point's name states, for bodies that cannot be read."""
    words = set(re.split(r"[:_.\-/]", name.lower()))
    if words & {"publish", "release", "deploy", "upload", "push"}:
        return "publish"
    if words & {"bench", "benchmark", "benchmarks"}:
        return "bench"
    if words & {"coverage", "cov", "report", "codecov", "coveralls", "watch", "serve", "dev"}:
        return None
    if words & {"typecheck", "typing", "types", "mypy", "pyright", "tsc"} or "type-check" in name.lower():
        return "typecheck"
    if words & {"lint", "linter", "linting", "style", "rubocop", "clippy", "vet", "cppcheck", "cpplint", "tidy", "analyze", "analysis"}:
        return "lint"
    if words & {"fmt", "format", "formatting"} and words & {"check", "diff", "verify"}:
        return "format"
    if words & {"fmt", "format"}:
        return "fix"
    if words & {"test", "tests", "unit", "spec", "specs", "unittest", "unittests", "pytest"}:
        return "test"
    if words & {"docs", "doc", "documentation"}:
        return "docs"
    if words & {"build", "compile", "dist", "package"}:
        return "build"
    if words & {"install", "deps", "setup", "bootstrap", "sync"}:
        return "install"
    return None


_UV_VALUE_OPTIONS = {"--group", "--extra", "--with", "--with-requirements", "--with-editable", "--python", "-p", "--directory",
                     "--project", "--package", "--env-file", "--index", "--only-group", "--no-group", "--default-index",
                     "--index-url", "--extra-index-url", "--frozen-groups"}
_PY_MODULE_TOOLS = {"pytest", "tox", "nox", "unittest", "mypy", "ruff", "black", "isort", "flake8", "pylint", "pip", "build", "twine",
                    "coverage", "sphinx", "pyright", "pre_commit", "pre-commit", "hatch", "poetry", "pdm", "uv", "nose2",
                    "doctest", "mkdocs", "twisted.trial", "codespell", "bandit", "pydocstyle", "pycodestyle", "pyflakes",
                    "basedpyright", "pyrefly", "ty", "sphinx.cmd.build", "zope.testrunner", "stestr", "xdist", "maturin"}


def split_launcher(argv: list[str]) -> tuple[list[str], list[str]]:
    """(launcher words, the command they launch). `uv run --group dev tox -e py` -> (['uv', 'run', '--group', 'dev'], ['tox', '-e', 'py'])."""
    prefix: list[str] = []
    argv = list(argv)
    for _ in range(6):
        if not argv:
            break
        head = argv[0].rsplit("/", 1)[-1] if not argv[0].startswith(("./", "../")) else argv[0]
        if head in ("uv", "rye") and len(argv) > 1 and argv[1] == "run":
            i = 2
            while i < len(argv) and argv[i].startswith("-") and argv[i] != "--":
                i += 2 if argv[i] in _UV_VALUE_OPTIONS and "=" not in argv[i] else 1
            if i < len(argv) and argv[i] == "--":
                i += 1
            prefix += argv[:i]
            argv = argv[i:]
            continue
        if head == "uvx" or (head == "uv" and argv[1:3] == ["tool", "run"]):
            i = 1 if head == "uvx" else 3
            while i < len(argv) and argv[i].startswith("-"):
                i += 2 if argv[i] in ("--with", "--from", "--python", "-p") else 1
            prefix += argv[:i]
            argv = argv[i:]
            continue
        if head in ("poetry", "pipenv") and argv[1:2] == ["run"]:
            prefix += argv[:2]
            argv = argv[2:]
            continue
        if head == "bundle" and argv[1:2] == ["exec"]:
            prefix += argv[:2]
            argv = argv[2:]
            continue
        if head in ("npx", "bunx", "pnpx"):
            i = 1
            while i < len(argv) and argv[i].startswith("-"):
                i += 2 if argv[i] in ("-p", "--package") else 1
            prefix += argv[:i]
            argv = argv[i:]
            continue
        if head in ("pnpm", "yarn", "npm", "bun") and len(argv) > 1 and argv[1] in ("exec", "dlx", "x"):
            i = 2
            while i < len(argv) and argv[i].startswith("-"):
                i += 1
            if i < len(argv) and argv[i] == "--":
                i += 1
            prefix += argv[:i]
            argv = argv[i:]
            continue
        if head == "composer" and argv[1:2] == ["exec"]:
            i = 2
            while i < len(argv) and argv[i].startswith("-") and argv[i] != "--":
                i += 1
            prefix += argv[:i]
            argv = argv[i:]
            if argv and argv[0] == "--":
                argv = argv[1:]
            continue
        if head in ("conda", "micromamba", "mamba") and argv[1:2] == ["run"]:
            i = 2
            while i < len(argv) and argv[i].startswith("-"):
                i += 2 if argv[i] in ("-n", "--name", "-p", "--prefix") else 1
            prefix += argv[:i]
            argv = argv[i:]
            continue
        if re.fullmatch(r"(python|python3|python3\.\d+|pypy3?|py)(\.exe)?", head):
            i = 1
            module = None
            while i < len(argv) and argv[i].startswith("-"):
                if argv[i] == "-m" or (re.fullmatch(r"-[A-Za-z]*m", argv[i]) and not argv[i].startswith("--")):
                    module = i + 1
                    break
                i += 1
            if module is not None and module < len(argv) and argv[module] in _PY_MODULE_TOOLS | {"pip"}:
                prefix += argv[:module]
                tool = argv[module]
                argv = [{"pre_commit": "pre-commit", "sphinx.cmd.build": "sphinx-build", "twisted.trial": "trial"}.get(tool, tool)] + argv[module + 1:]
                continue
            break
        if head in ("cross-env", "dotenv"):
            i = 1
            while i < len(argv) and (re.match(r"^[A-Za-z_]\w*=", argv[i]) or argv[i] in ("--", "-e")):
                i += 1
            prefix += argv[:i]
            argv = argv[i:]
            continue
        if head in ("c8", "nyc"):
            i = 1
            while i < len(argv) and argv[i].startswith("-"):
                i += 1
            if i < len(argv) and argv[i] in ("report", "check-coverage", "merge", "instrument"):
                break
            prefix += argv[:i]
            argv = argv[i:]
            continue
        if head == "coverage" and argv[1:2] == ["run"]:
            i = 2
            while i < len(argv) and argv[i].startswith("-") and argv[i] != "-m":
                i += 2 if argv[i] in ("--rcfile", "--source", "--include", "--omit", "--data-file", "--concurrency", "--context",
                                      "--debug") else 1
            if i < len(argv) and argv[i] == "-m":
                prefix += argv[:i + 1]
                argv = argv[i + 1:]
                continue
            prefix += argv[:i]
            argv = argv[i:]
            continue
        if head == "php" and len(argv) > 1:
            i = 1
            while i < len(argv) and argv[i].startswith("-"):
                i += 2 if argv[i] == "-d" else 1
            if i < len(argv):
                prefix += argv[:i]
                argv = argv[i:]
                continue
            break
        break
    return prefix, argv


def tool_name(word: str) -> str:
    name = word.rsplit("/", 1)[-1].rsplit("\\", 1)[-1].lower()
    for suffix in (".exe", ".cmd", ".bat", ".phar"):
        name = name.removesuffix(suffix)
    # LLVM's tools as distributions install them side by side: clang-format-20 is clang-format
    versioned = re.fullmatch(r"(clang-format|clang-tidy|run-clang-tidy|run-clang-format|clangd)-\d+(?:\.\d+)*", name)
    return versioned.group(1) if versioned else name


def _pytest(args: list[str]) -> Resolved:
    joined = " ".join(args)
    if re.search(r"--(mypy|flake8|pylint|pycodestyle|black|isort|ruff)\b", joined) or re.search(r"(^|\s)-m\s+['\"]?(mypy|flake8|ruff)\b", joined):
        return Resolved("lint" if "--mypy" not in joined else "typecheck", ["pytest"])
    if re.search(r"(^|\s)-k\s+['\"]?[\w ]*(mypy|typing|pyright|lint)", joined) or "--test-mypy" in joined:
        return Resolved("typecheck", ["pytest"])
    if re.search(r"--(benchmark-only|codspeed|benchmark-enable)\b|--memray\b", joined) or any("bench" in a for a in args if not a.startswith("-")):
        return Resolved("bench", ["pytest"])
    flags = set()
    if "--cov" in joined:
        flags.add("coverage")
    if any(re.search(r"(integration|e2e|functional|acceptance)", a) for a in args):
        flags.add("partial")
    if _pytest_selects(args):
        flags.add("partial")
    return Resolved("test", ["pytest"], flags)


# pytest options whose value is the next word (not a path to collect)
_PYTEST_VALUE_OPTIONS = {"-k", "-m", "-p", "-c", "-o", "-n", "-W", "--ignore", "--ignore-glob", "--deselect", "--rootdir", "--confcutdir",
                         "--basetemp", "--junitxml", "--junit-xml", "--log-file", "--cov-report", "--cov-config", "--durations", "--maxfail",
                         "--tb", "--import-mode", "--override-ini", "--dist", "--numprocesses", "--config-file", "--log-level", "-r",
                         "--timeout", "--reruns", "--randomly-seed", "--splits", "--group", "--capture"}


def _positionals(args: list[str], value_options: Container[str]) -> list[str]:
    """A command's arguments that are not options, skipping the value after each option in `value_options`."""
    out: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg in value_options:
            skip = True
        elif not arg.startswith("-"):
            out.append(arg)
    return out


def _pytest_selects(args: list[str]) -> bool:
    """`pytest tests/test_s3 tests/test_sqs tests/test_core/test_proxy.py` (several folders below the
    test root) or `pytest tests/x.py::test_y`: a chosen subset, not the project's whole run. Top-level
    folders (`pytest tests src`) are the whole suite."""
    paths = [arg.removeprefix("./").rstrip("/") for arg in _positionals(args, _PYTEST_VALUE_OPTIONS)]
    if any("::" in p for p in paths):
        return True
    nested = [p for p in paths if "/" in p and not p.startswith(("$", "{", "..")) and "*" not in p]
    return len(nested) >= 2 and len(nested) == len(paths)


def classify_tool(argv: list[str]) -> Resolved | None:
    """The kind of a direct tool invocation (no entry point involved), or None when not a known tool."""
    if not argv:
        return None
    name = tool_name(argv[0])
    args = argv[1:]
    sub = args[0] if args else ""
    if name in ("pytest", "py.test"):
        return _pytest(args)
    if name in ("unittest", "nose2", "nosetests", "trial", "zope-testrunner", "stestr", "green", "ward"):
        return Resolved("test", [name])
    if name in ("jest", "vitest", "mocha", "ava", "tap", "tape", "jasmine", "uvu", "borp", "lab", "qunit", "karma", "wdio", "playwright", "cypress", "testcafe"):
        if name == "vitest" and sub in ("bench",):
            return Resolved("bench", [name])
        if name == "vitest" and sub in ("typecheck",):
            return Resolved("typecheck", [name])
        if name in ("playwright", "cypress", "testcafe", "wdio") and sub not in ("test", "run", ""):
            return _other("install" if sub == "install" else "other")
        flags = set()
        if name == "vitest" and sub != "run" and "--run" not in args and "--watch=false" not in args and "--no-watch" not in args:
            flags.add("watch")
        if name in ("jest", "mocha", "ava") and ("--watch" in args or "--watchAll" in args or "-w" in args):
            flags.add("watch")
        if name in ("karma", "playwright", "cypress", "testcafe", "wdio"):
            flags.add("e2e")
        if "--coverage" in args:
            flags.add("coverage")
        return Resolved("test", [name], flags)
    if name == "attw":
        return _other("build")  # are-the-types-wrong checks a packed tarball's exports for publishing, not the code
    if name in ("tsd", "tstyche", "dtslint", "expect-type"):
        return Resolved("typecheck")
    if name == "node":
        if "--test" in args:
            return Resolved("test", ["node --test"], {"watch"} if "--watch" in args else set())
        return None
    if name == "deno":
        return {"test": Resolved("test", ["deno test"]), "lint": Resolved("lint"), "check": Resolved("typecheck"),
                "fmt": Resolved("format" if "--check" in args else "fix"), "publish": Resolved("publish")}.get(sub)
    if name == "bun" and sub == "test":
        return Resolved("test", ["bun test"], {"watch"} if "--watch" in args else set())
    if name in ("tsc", "vue-tsc", "tsgo"):
        if "--watch" in args or "-w" in args:
            return _other("other", "watch")
        if "--noEmit" in args or "-noEmit" in args or "--build" in args or "-b" in args or "-p" in args or "--project" in args or not args:
            return Resolved("typecheck")
        return Resolved("build")
    if name in ("eslint", "xo", "standard", "oxlint", "stylelint", "markdownlint", "markdownlint-cli2", "knip", "publint", "jshint",
                "semistandard", "lockfile-lint", "installed-check", "editorconfig-checker", "ec", "commitlint", "ls-lint",
                "flake8", "pylint", "pydocstyle", "pycodestyle", "pyflakes", "bandit", "codespell", "typos", "vulture", "yamllint",
                "shellcheck", "hadolint", "actionlint", "rubocop", "standardrb", "reek", "phpcs", "phpmd", "php-cs-fixer", "pint",
                "golangci-lint", "staticcheck", "revive", "golint", "errcheck", "ineffassign", "misspell", "govulncheck",
                "ktlint", "detekt", "checkstyle", "clang-tidy", "cppcheck", "cpplint", "cmake-lint", "buf", "sqlfluff",
                "biome", "dprint", "prettier", "black", "isort", "autopep8", "yapf", "gofmt", "goimports", "gofumpt", "rustfmt",
                "clang-format", "cmake-format", "swiftformat", "swiftlint", "ruff", "pre-commit", "prek", "lefthook", "herb"):
        return _check_tool(name, args)
    if name in ("mypy", "dmypy", "pyright", "basedpyright", "pyrefly", "pytype", "phpstan", "psalm", "srb", "steep", "flow", "sorbet"):
        if name == "pyrefly" and sub not in ("check", ""):
            return _other()
        return Resolved("typecheck")
    if name == "ty":
        return Resolved("typecheck") if sub == "check" else None
    if name == "go":
        if sub == "test":
            # go's flags take one dash or two, and `-test.` spellings (`-test.bench=.`) as the test binary does
            plain = [re.sub(r"^--?(test\.)?", "-", a) for a in args if a.startswith("-")]
            if any(a.startswith(("-bench", "-fuzz")) for a in plain):
                return Resolved("bench" if any(a.startswith("-bench") for a in plain) else "other", ["go test"])
            return Resolved("test", ["go test"], _sub_path_flags([a for a in args[1:] if a.startswith(("./", "../")) or "/..." in a],
                                                                  {".", "./", "./..."}))
        return {"vet": Resolved("lint"), "build": Resolved("build"), "install": Resolved("build"), "generate": _other(),
                "mod": _other("install") if sub == "mod" and args[1:2] in (["download"], ["tidy"]) else _other(),
                "fmt": Resolved("fix"), "get": Resolved("install"), "tool": _other()}.get(sub, _other())
    if name in ("cargo", "cross"):
        return _cargo(args)
    if name == "rustup":
        return _other("install")
    if name in ("mvn", "mvnw", "./mvnw"):
        return _maven(args)
    if name in ("gradle", "gradlew"):
        return _gradle(args)
    if name == "dotnet":
        return _dotnet(args)
    if name in ("rspec", "cucumber", "minitest", "turnip"):
        return Resolved("test", ["rspec" if name == "rspec" else name])
    if name == "ruby":
        if any(a.startswith("-I") and "test" in a for a in args) or any(re.search(r"(^|/)test_[\w]+\.rb$|_test\.rb$|_spec\.rb$", a) for a in args):
            return Resolved("test", ["minitest"])
        script = next((a for a in args if not a.startswith("-")), "")
        if script.endswith(("exe/rake", "bin/rake")):
            return None  # handled as rake by the resolver
        return None
    if name in ("phpunit", "pest", "paratest", "simple-phpunit", "codecept", "infection", "behat", "phpspec"):
        if name == "infection":
            return Resolved("other")
        if name == "simple-phpunit" and sub == "install":
            return _other("install")  # Symfony's bridge downloads PHPUnit; the tests run on the next line
        return Resolved("test", ["pest" if name == "pest" else "phpunit"])
    if name in ("ctest",):
        # -R/-L pick tests by name or label: a partial run (-E/-LE only leave some out)
        selects = any(a in ("-R", "--tests-regex", "-L", "--label-regex", "-I", "--tests-information") or a.startswith(("-R", "-L")) and not a.startswith("-LE")
                      for a in args)
        return Resolved("test", ["ctest"], {"partial"} if selects else set())
    if name == "meson":
        return {"test": Resolved("test", ["meson test"]), "compile": Resolved("build"), "setup": Resolved("build"),
                "dist": Resolved("build"), "install": Resolved("build"), "devenv": None}.get(sub, _other())
    if name == "cmake":
        if "--build" in args and "--target" in args and args.index("--target") + 1 < len(args):
            target = args[args.index("--target") + 1]
            kind = by_name(target.replace("_", "-"))
            if kind in ("test", *CHECK_KINDS):
                return Resolved(kind, ["ctest"] if kind == "test" else [], {"by-name"})
        return Resolved("build") if args else None
    if name in ("ninja", "msbuild", "bazel", "bazelisk", "scons", "autoreconf", "configure", "./configure", "autogen.sh"):
        if name.startswith("bazel") and sub == "test":
            return Resolved("test", ["bazel test"])
        return Resolved("build")
    if name in ("swift",):
        return Resolved("test", ["swift test"]) if sub == "test" else Resolved("build")
    if name in ("mix",):
        return Resolved("test", ["mix test"]) if sub == "test" else _other()
    if name in ("twine", "gem", "semantic-release", "changeset", "changesets", "np", "release-it", "lerna-publish", "vsce", "ovsx", "goreleaser", "flit"):
        if name == "gem" and sub not in ("push", "release"):
            return _other("build" if sub == "build" else "install")
        if name == "twine" and sub == "check":
            return _other("build")
        if name == "changeset" and sub not in ("publish", "version"):
            return _other()
        if name == "flit" and sub != "publish":
            return _other("build")
        return Resolved("publish")
    if name in ("sphinx-build", "sphinx", "mkdocs", "typedoc", "jsdoc", "docfx", "doxygen", "mike", "rdoc", "yard", "yardoc", "sphinx-autobuild", "dokka"):
        if name in ("mkdocs", "mike") and sub in ("gh-deploy", "deploy"):
            return Resolved("publish")
        if name == "sphinx-autobuild" or (name == "mkdocs" and sub == "serve"):
            return _other("other", "watch")
        return Resolved("docs")
    if name in ("pip", "pip3", "pipx", "poetry", "pdm", "uv", "npm", "pnpm", "yarn", "bun", "composer", "bundle", "bundler", "conda",
                "mamba", "micromamba", "apt-get", "brew", "hatch", "rye"):
        return _package_manager(name, args)
    if name in ("docker", "kubectl", "helm", "terraform", "aws", "gcloud", "az", "vercel", "netlify", "wrangler", "firebase", "heroku", "fly", "flyctl", "serverless", "sls", "cdk"):
        if name == "docker" and sub in ("build", "compose", "run"):
            return _other()
        return Resolved("publish")
    if name in ("sh", "bash", "zsh", "pwsh", "powershell"):
        return None  # a script: handled by the resolver
    if name in ("hyperfine", "asv", "pyperf", "criterion", "phpbench", "bencher", "codspeed"):
        return Resolved("bench")
    if name in ("maturin", "tsup", "tsdown", "rollup", "webpack", "esbuild", "vite", "parcel", "babel", "swc", "unbuild", "pkgroll",
                "microbundle", "ncc", "pyinstaller", "nuitka", "del-cli", "rimraf", "gulp", "grunt", "tsx", "ts-node"):
        if name == "vite" and sub in ("", "dev", "serve", "preview"):
            return _other("other", "watch")
        if name == "maturin" and sub in ("publish", "upload"):
            return Resolved("publish")
        if name in ("tsx", "ts-node"):
            return None
        if name == "maturin" and sub == "develop":
            return Resolved("install")
        return Resolved("build")
    return None


def _check_tool(name: str, args: list[str]) -> Resolved:
    joined = " ".join(args)
    sub = args[0] if args else ""
    fixing = any(a in ("--fix", "-a", "-A", "--autocorrect", "--auto-correct", "--write", "-w", "--fix-only", "--apply") for a in args)
    if name == "ruff":
        if sub == "format":
            return Resolved("format") if ("--check" in args or "--diff" in args) else Resolved("fix")
        return Resolved("fix") if "--fix" in args and "--exit-non-zero-on-fix" not in args else Resolved("lint")
    if name in ("gofumpt", "gofmt", "goimports") and "-w" in args:
        return Resolved("fix")  # `gofumpt -w -l .` rewrites the files and lists them: not a check
    if name in ("black", "isort", "autopep8", "yapf", "gofumpt", "rustfmt", "swiftformat", "cmake-format"):
        return Resolved("format") if re.search(r"--check|--diff|-l\b|--dry-run", joined) else Resolved("fix")
    if name in ("gofmt", "goimports"):
        return Resolved("format") if re.search(r"(^|\s)-(l|d)\b|-s -d|-d ", " " + joined) else Resolved("fix")
    if name == "prettier":
        if "--write" in args or "-w" in args:
            return Resolved("fix")  # `--write --list-different` rewrites the files and lists them
        return Resolved("format") if ("--check" in args or "-c" in args or "--list-different" in args or "-l" in args) else Resolved("fix")
    if name == "clang-format":
        return Resolved("format") if ("--dry-run" in args or "-n" in args or "--Werror" in args) else Resolved("fix")
    if name == "biome":
        if sub == "format":
            return Resolved("fix") if "--write" in args else Resolved("format")
        return Resolved("fix") if ("--write" in args or "--apply" in args) else Resolved("lint")
    if name == "dprint":
        return Resolved("format") if sub == "check" else Resolved("fix")
    if name in ("php-cs-fixer", "pint"):
        return Resolved("format") if ("--dry-run" in args or "--test" in args) else Resolved("fix")
    if name in ("pre-commit", "prek", "lefthook"):
        if sub in ("install", "autoupdate", "auto-update", "clean", "gc", "init-templatedir", "migrate-config", "sample-config", "validate-config", "install-hooks"):
            return _other("install")
        return Resolved("lint")
    if name == "golangci-lint":
        if sub in ("fmt",):
            return Resolved("format") if "--diff" in args else Resolved("fix")
        return Resolved("fix") if "--fix" in args else Resolved("lint")
    if name == "buf":
        return Resolved("lint") if sub in ("lint", "breaking", "format") else _other()
    if fixing and name in ("eslint", "xo", "standard", "stylelint", "oxlint", "markdownlint-cli2", "markdownlint"):
        return Resolved("fix")
    return Resolved("lint")


def _pnpm_regex(script: str) -> re.Pattern[str] | None:
    """pnpm's `/pattern/` script selector, for the plain forms (`/^test:/`, `/^lint:.*$/`): literal
    name characters with anchors and `.*`/`.+`. Anything else is not compiled (a manifest's regex
    could be made to backtrack for ever)."""
    match = re.fullmatch(r"/(\^?)((?:[A-Za-z0-9:_-]|\.\*|\.\+){1,60})(\$?)/", script)
    if not match:
        return None
    body = "".join(".*" if t == ".*" else ".+" if t == ".+" else re.escape(t) for t in re.findall(r"\.\*|\.\+|.", match.group(2)))
    return re.compile(match.group(1) + body + match.group(3))


def _root_manifest(args: list[str]) -> bool:
    """`--manifest-path ./Cargo.toml` names the workspace the command already runs in: not a selection."""
    for index, arg in enumerate(args):
        value = args[index + 1] if arg == "--manifest-path" and index + 1 < len(args) else arg.split("=", 1)[1] if arg.startswith("--manifest-path=") else None
        if value is not None:
            return value in ("Cargo.toml", "./Cargo.toml")
    return False


def _cargo(args: list[str]) -> Resolved:
    words = [a for a in args if not a.startswith(("+", "-"))]
    sub = words[0] if words else ""
    if sub in ("test", "t", "nextest"):
        selects = ("-p", "--package", "--lib", "--bin", "--doc", "--manifest-path", "--target", "--no-run", "--examples", "--example",
                   "--benches", "--bench")
        own = _root_manifest(args)
        partial = {"partial"} if any((a in selects and not (a == "--manifest-path" and own)) or a.startswith(("--package=", "--target"))
                                     or (a.startswith("--manifest-path=") and not own) for a in args) else set()
        # `cargo +1.80 test` (an MSRV or nightly job) needs that toolchain installed: ranked below the plain run
        pinned = {"toolchain"} if any(a.startswith("+") and a not in ("+stable",) for a in args[:1]) else set()
        return Resolved("test", ["cargo test" if sub != "nextest" else "cargo nextest"], partial | pinned)
    if sub == "hack" and "test" in words:
        return Resolved("test", ["cargo test"])
    if sub == "miri":
        return Resolved("test", ["cargo miri"], {"partial"}) if "test" in words else _other("install")
    if sub == "clippy":
        return Resolved("fix") if "--fix" in args else Resolved("lint")
    if sub == "fmt":
        return Resolved("format") if "--check" in args else Resolved("fix")
    if sub in ("build", "b", "check", "c"):
        return Resolved("build")
    if sub in ("doc", "docs-rs", "rustdoc"):
        return Resolved("docs")
    if sub in ("bench",):
        return Resolved("bench")
    if sub in ("publish", "release", "dist"):
        return Resolved("publish")
    if sub in ("deny", "audit", "outdated", "udeps", "machete", "semver-checks", "vet"):
        return _other()  # dependency and API audits, not code checks
    if sub in ("install", "binstall", "fetch", "update", "generate-lockfile"):
        return _other("install")
    return _other()


# tox environments named for a Python version (py, py312, py3.12, pypy3, py313t, 3.12): its per-Python test runs
_TOX_PYTHON_ENV = re.compile(r"(py|pypy)(\d+(\.\d+)?t?)?(-[\w.-]+)?|\d+\.\d+t?(-[\w.-]+)?")


_MVN_TEST_GOALS = {"test", "verify", "install", "integration-test", "package"}
_MVN_CHECK = re.compile(r"^(checkstyle|spotless|pmd|spotbugs|animal-sniffer|apache-rat|rat|enforcer|revapi|japicmp|forbiddenapis|errorprone|license|formatter|fmt|sortpom|modernizer|dependency-check|ktlint|detekt)(:|$)")


def _maven(args: list[str]) -> Resolved:
    goals = [a for a in args if not a.startswith("-")]
    skip_tests = any(a in ("-DskipTests", "-Dmaven.test.skip", "-Dmaven.test.skip=true", "-DskipTests=true") for a in args)
    if any(g in ("deploy", "release:perform", "release:prepare", "nexus-staging:release", "central-publishing:publish") or g.startswith(("deploy:", "gpg:", "release:")) for g in goals):
        return Resolved("publish")
    if not goals:
        return Resolved("test", ["maven"], {"default-goal"}) if not skip_tests else Resolved("build")
    if not skip_tests and any(g.rsplit(":", 1)[-1] in _MVN_TEST_GOALS and ":" not in g or g in ("surefire:test", "failsafe:integration-test") for g in goals):
        return Resolved("test", ["maven"])
    checks = [g for g in goals if _MVN_CHECK.match(g)]
    if checks:
        kind = "format" if any(g.startswith(("spotless", "formatter", "fmt", "sortpom")) for g in checks) else "lint"
        if any(g.endswith((":apply", ":format", ":sort")) for g in checks):
            return Resolved("fix")
        return Resolved(kind)
    if any(g.startswith(("javadoc", "site")) for g in goals):
        return Resolved("docs")
    if any(g in ("compile", "package", "install", "test-compile") for g in goals):
        return Resolved("build")
    return _other()


_GRADLE_TEST = re.compile(r"(^|:)(test|check|build|allTests|jvmTest|connectedCheck|nativeTest|testDebugUnitTest|testReleaseUnitTest|connectedAndroidTest|[a-z]+Test)$")
_GRADLE_CHECK = re.compile(r"(^|:)(spotlessCheck|ktlintCheck|detekt|checkstyle\w*|lint|lintKotlin|apiCheck|pmd\w*|spotbugs\w*|errorprone\w*|ktfmtCheck\w*)$")
# Tasks of static-analysis plugins, per source set: `detektTest`, `checkstyleTest`, `pmdTest`,
# `spotbugsTest`, `ktlintTestSourceSetCheck` analyse the test sources; they run no test.
_GRADLE_ANALYSIS = re.compile(r"(^|:)(detekt\w*|ktlint\w*|checkstyle\w*|pmd\w*|spotbugs\w*|errorprone\w*|ktfmt\w*|spotless\w*Check|"
                              r"apiCheck|lintKotlin\w*)$")


def _gradle_test_task(task: str) -> bool:
    return bool(_GRADLE_TEST.search(task)) and not _GRADLE_ANALYSIS.search(task)


# Options whose value is the next word, not a task; `-x`/`--exclude-task` names a task that does NOT run.
_GRADLE_VALUE_OPTIONS = {"-p", "--project-dir", "-b", "--build-file", "-c", "--settings-file", "-I", "--init-script", "-g",
                         "--gradle-user-home", "--console", "--warning-mode", "--max-workers", "--include-build", "--priority",
                         "--project-cache-dir", "-D", "-P"}


def _gradle_words(args: list[str]) -> tuple[list[str], list[str], bool]:
    """The tasks a Gradle invocation runs, the tasks it excludes, and whether a `--tests` filter narrows it."""
    tasks: list[str] = []
    excluded: list[str] = []
    filtered = False
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in ("-x", "--exclude-task") and i + 1 < len(args):
            excluded.append(args[i + 1])
            i += 2
            continue
        if arg.startswith("--exclude-task="):
            excluded.append(arg.split("=", 1)[1])
        elif arg == "--tests" and i + 1 < len(args):
            filtered = True
            i += 2
            continue
        elif arg in _GRADLE_VALUE_OPTIONS and i + 1 < len(args):
            i += 2
            continue
        elif not arg.startswith("-"):
            tasks.append(arg)
        i += 1
    return tasks, excluded, filtered


def _gradle(args: list[str]) -> Resolved:
    tasks, excluded, filtered = _gradle_words(args)
    # `check -x test` (or `build -x test`) runs everything but the tests: the verification tasks, or the build.
    if excluded and any(re.search(r"(^|:)(test|allTests|jvmTest)$", t) for t in excluded):
        aggregates = [t for t in tasks if re.search(r"(^|:)(check|build)$", t)]
        if aggregates and not any(_gradle_test_task(t) for t in tasks if t not in aggregates):
            return Resolved("lint" if any(t.endswith("check") for t in aggregates) else "build")
    if any(re.search(r"(publish|closeAndRelease|release|uploadArchives|githubRelease|bintrayUpload|nexus)", t, re.I) for t in tasks):
        return Resolved("publish")
    if any(_GRADLE_CHECK.search(t) or _GRADLE_ANALYSIS.search(t) for t in tasks) and not any(_gradle_test_task(t) for t in tasks):
        if any(re.search(r"(spotlessApply|ktlintFormat|Format$|Baseline$)", t) for t in tasks):
            return Resolved("fix")
        return Resolved("format" if any("spotless" in t or "ktfmt" in t for t in tasks) else "lint")
    if any(_gradle_test_task(t) for t in tasks):
        flags = {"device"} if any(t.endswith(("connectedCheck", "connectedAndroidTest")) for t in tasks) else set()
        if any(t.endswith("nativeTest") for t in tasks) or filtered:
            flags.add("partial")
        if all(":" in t.lstrip(":") for t in tasks if _gradle_test_task(t)):
            flags.add("partial")  # `:module:test` tests one subproject
        return Resolved("test", ["gradle"], flags)
    if any(re.search(r"(dokka|javadoc)", t, re.I) for t in tasks):
        return Resolved("docs")
    if any(re.search(r"(assemble|jar|compile|shadowJar)", t, re.I) for t in tasks):
        return Resolved("build")
    return _other()


def _dotnet(args: list[str]) -> Resolved:
    sub = args[0] if args else ""
    if sub == "test":
        return Resolved("test", ["dotnet test"])
    if sub in ("build", "pack", "msbuild"):
        return Resolved("build")
    if sub == "format":
        # --check is dotnet-format 5's spelling of --verify-no-changes
        return Resolved("format") if ("--verify-no-changes" in args or "--check" in args) else Resolved("fix")
    if sub == "nuget" and args[1:2] == ["push"]:
        return Resolved("publish")
    if sub in ("restore", "tool"):
        return _other("install")
    if sub == "publish":
        return Resolved("build")
    return _other()


def _package_manager(name: str, args: list[str]) -> Resolved | None:
    sub = args[0] if args else ""
    if name in ("pip", "pip3", "pipx"):
        return _other("install") if sub in ("install", "download", "wheel", "uninstall") else _other()
    if name == "uv":
        if sub in ("sync", "pip", "venv", "lock", "tool", "python"):
            return _other("install")
        if sub == "build":
            return Resolved("build")
        if sub == "publish":
            return Resolved("publish")
        return None
    if name in ("poetry", "pdm", "rye"):
        if sub in ("install", "sync", "lock", "add", "update", "self"):
            return _other("install")
        if sub == "build":
            return Resolved("build")
        if sub == "publish":
            return Resolved("publish")
        if sub == "check":
            return _other()
        return None
    if name in ("bundle", "bundler"):
        return _other("install") if sub in ("install", "update", "config", "lock", "") else None
    if name == "composer":
        if sub in ("install", "update", "require", "remove", "config", "dump-autoload", "global", "bin", "self-update", "normalize"):
            return _other("install")
        if sub == "validate":
            return Resolved("lint")
        return None
    if name in ("npm", "pnpm", "yarn", "bun"):
        if sub in ("install", "ci", "i", "add", "link", "rebuild", "dedupe", "prune", "remove", "audit", "up", "update", "config", "set", "cache") or (name == "yarn" and not sub):
            return _other("install")
        if sub in ("publish", "dist-tag", "version", "pack", "stage"):
            return Resolved("publish") if sub in ("publish", "dist-tag", "stage") else _other("build")
        return None
    if name == "hatch":
        if sub == "test":
            return Resolved("test", ["pytest"])
        if sub == "fmt":
            return Resolved("lint") if "--check" in args else Resolved("fix")
        if sub == "build":
            return Resolved("build")
        if sub == "publish":
            return Resolved("publish")
        if sub in ("env", "version", "dep", "project", "python", "self", "status", "config", "shell", "clean"):
            return _other("install") if sub == "env" else _other()
        return None
    return _other("install")


# -- the resolver --------------------------------------------------------------------------------


class Resolver:
    """Classifies command lines of one repository, looking into its entry points through `Lazy`."""

    def __init__(self, lazy: ep.Lazy) -> None:
        self.lazy = lazy
        self.tree = lazy.tree
        self._memo: dict[tuple[str, str], Resolved] = {}
        self.tools: set[str] = set()  # every tool named while resolving, for the caller to reset and read
        self.work = _work.get() or Work()

    def _once(self, key: tuple[str, str], compute: Callable[[], Resolved | None]) -> Resolved | None:
        """`compute()` memoised under `key` for this analysis; a cycle back into `key` resolves to other.
        Callers get a copy, since they set `entry` and `flags` on what they are given."""
        if key in self._memo:
            return _copy(self._memo[key])
        self._memo[key] = _other()
        result = compute()
        if result is None:
            del self._memo[key]
            return None
        self._memo[key] = result
        return _copy(result)

    def line(self, text: str, cwd: str = "", depth: int = 0) -> Resolved:
        """A command line (possibly a chain of commands), as a shell would run it from `cwd`."""
        key = (text, cwd)
        if depth == 0 and key in self._memo:
            return self._memo[key]
        simples, _env = parse_script(text)
        kept = [s for s in simples if not is_noise(s.argv)]
        parts = [self.argv(s.argv, _join_cwd(cwd, s.cwd), depth + 1, diff_checked=s.diff_checked) for s in kept]
        result = combine(parts) if parts else _other()
        if len(kept) > 1:
            result.flags = result.flags | {"chain"}
        if any(s.env or (s.argv and tool_name(s.argv[0]) in ("cross-env", "dotenv")) for s in kept):
            result.flags = result.flags | {"env"}
        if depth == 0:
            self._memo[key] = result
        return result

    def argv(self, argv: list[str], cwd: str = "", depth: int = 0, *, diff_checked: bool = False) -> Resolved:
        if depth > MAX_DEPTH or not argv:
            return _other()
        self.work.nodes -= 1
        if self.work.nodes < 0:
            return _other("other", "unknown")
        _prefix, core = split_launcher(argv)
        if not core:
            return _other()
        self.tools.add(tool_name(core[0]))
        if tool_name(core[0]) in ("tsc", "vue-tsc", "tsgo") and _emits(core):
            return Resolved("build")  # `--noEmit false --emitDeclarationOnly`: it writes declarations
        if tool_name(core[0]) in ("tsc", "vue-tsc", "tsgo") and not any(a in ("--noEmit", "-noEmit", "--watch", "-w") for a in core):
            return self._tsc(core, cwd)
        result = self._entry(core, cwd, depth)
        if result is None:
            result = classify_tool(core)
        if result is None:
            result = self._script(core, cwd, depth)
        if result is None:
            result = _other()
        if diff_checked and result.kind == "fix":
            result = Resolved("format", result.runs, result.flags | {"diff"}, result.entry)
        return result

    def _tsc(self, argv: list[str], cwd: str) -> Resolved:
        """`tsc` type-checks only when its tsconfig says noEmit; otherwise it builds."""
        project = next((argv[i + 1] for i, a in enumerate(argv[:-1]) if a in ("-p", "--project", "-b", "--build")), "tsconfig.json")
        path = _join_cwd(cwd, project if project.endswith(".json") else f"{project}/tsconfig.json")
        config = safe.load_json(_strip_json_comments(safe.read_text(self.tree, path)))
        no_emit = safe.dig(config, "compilerOptions", "noEmit") is True
        return Resolved("typecheck") if no_emit else Resolved("build")

    # -- entry points ------------------------------------------------------------------------

    def _entry(self, argv: list[str], cwd: str, depth: int) -> Resolved | None:
        name = tool_name(argv[0])
        args = argv[1:]
        if name == "tox":
            return self._tox(args, cwd, depth)
        if name == "nox":
            return self._nox(args, cwd, depth)
        if name in ("npm", "pnpm", "yarn", "bun") and args:
            return self._npm(name, args, cwd, depth)
        if name == "node" and args[:1] == ["--run"] and len(args) > 1:
            return self._script_body("npm", args[1], cwd, depth)
        if name in ("make", "gmake"):
            return self._make(args, cwd, depth)
        if name == "just":
            return self._named("just", [a for a in args if not a.startswith("-") and "=" not in a][:1] or [""], cwd, depth)
        if name == "task" and (self.lazy.get("task", cwd) or not self._taskipy(cwd)):
            return self._named("task", [a for a in args if not a.startswith("-")][:1] or ["default"], cwd, depth)
        if name == "task":
            return self._pyscript("taskipy", args[0] if args else "", cwd, depth)
        if name == "rake" or (name == "ruby" and any(a.endswith(("exe/rake", "bin/rake")) for a in args)):
            tasks = [a for a in args if not a.startswith("-") and not a.endswith(("exe/rake", "bin/rake")) and "=" not in a]
            return self._rake(tasks, cwd, depth)
        if name == "thor":
            task = args[0] if args else ""
            return Resolved(by_name(task) or "other", ["rspec"] if task == "spec" else [], {"by-name"}, "thor")
        if name == "composer" and args:
            sub = args[0]
            script = args[1] if sub in ("run-script", "run") and len(args) > 1 else sub
            return self._composer(script, cwd, depth)
        if name == "hatch" and args and args[0] == "run":
            # `+py=3.12` / `-type=min` select matrix variables of the environment; the script comes after them.
            rest = args[1:]
            while rest and re.fullmatch(r"[+-][A-Za-z0-9_-]+=\S*", rest[0]):
                rest = rest[1:]
            if rest:
                return self._hatch(rest[0], rest[1:], cwd, depth)
        if name == "pdm" and args:
            sub = args[1] if args[0] == "run" and len(args) > 1 else args[0]
            resolved = self._pyscript("pdm", sub, cwd, depth)
            if resolved is not None:
                return resolved
            if args[0] == "run":
                return self.argv(args[1:], cwd, depth + 1)
            return None
        if name == "pixi" and args[:1] == ["run"]:
            rest = args[1:]
            while rest and rest[0].startswith("-"):
                # `-e ENV`, `--environment ENV`, `--manifest-path FILE` take a value; the rest are switches.
                takes_value = rest[0] in ("-e", "--environment", "--manifest-path") and len(rest) > 1
                rest = rest[2:] if takes_value else rest[1:]
            if not rest:
                return None
            resolved = self._pyscript("pixi", rest[0], cwd, depth)
            if resolved is None:  # `pixi run pytest ...`: a command in the environment
                resolved = self.argv(rest, cwd, depth + 1)
                resolved.entry = "pixi"
            return resolved
        if name == "poe" or (name == "poetry" and args[:1] == ["poe"]):
            task = (args[1:] if name == "poetry" else args)[:1]
            return self._pyscript("poe", task[0] if task else "", cwd, depth)
        if name == "nuke" or (name == "dotnet" and args[:1] == ["nuke"]):
            return self._nuke(args[1:] if name == "dotnet" else args, cwd, "")
        if name in ("turbo", "nx", "lerna", "moon", "wireit"):
            task = next((a for a in args if not a.startswith("-") and a not in ("run", "run-many", "exec", "-t")), "")
            kind = by_name(task)
            return Resolved(kind or "other", [], {"by-name", "workspaces"}, name) if kind else _other()
        if name in ("run-s", "run-p", "npm-run-all", "npm-run-all2"):
            patterns = [a for a in args if not a.startswith("-")]
            return self._npm_patterns(patterns, cwd, depth)
        if name == "concurrently":
            # `concurrently 'npm:test:only' 'npm:lint'`: its shorthand for a package script
            parts = [self._shorthand(a.split(":", 1)[1], cwd, depth) if re.match(r"(npm|pnpm|yarn|bun):\S", a) else
                     self.line(a, cwd, depth + 1) for a in _concurrently_commands(args)]
            return combine(parts) if parts else _other()
        return None

    def _tox(self, args: list[str], cwd: str, depth: int) -> Resolved:
        tox = self.lazy.get("tox", cwd)
        if tox is None:
            return Resolved("missing", [], set(), "tox")
        if args[:1] == ["exec"]:
            # `tox exec -e py -- CMD` runs CMD in the environment, not the environment's commands.
            inner = args[args.index("--") + 1:] if "--" in args else []
            result = self.argv(inner, cwd, depth + 1) if inner else _other()
            return Resolved(result.kind, result.runs, result.flags, "tox")
        envs: list[str] = []
        i = 0
        while i < len(args):
            arg = args[i]
            if arg == "--":
                break  # the rest goes to the commands ({posargs})
            if arg in ("-e", "--env") and i + 1 < len(args):
                envs += [e for e in args[i + 1].split(",") if e]
                i += 2
                continue
            if arg.startswith("-e") and len(arg) > 2 and not arg.startswith("--"):
                envs += arg[2:].split(",")
            elif arg in ("-f", "--factor") and i + 1 < len(args):
                for factor in args[i + 1].split(","):
                    envs += tox.envs_with_factor(factor)
                i += 2
                continue
            elif arg in ("-m", "--labels") and i + 1 < len(args):
                envs += tox.labels.get(args[i + 1], [])
                i += 2
                continue
            elif arg == "--notest":
                return Resolved("install", [], set(), "tox")  # creates the environments, runs nothing
            elif arg in ("--installpkg", "--root", "-c", "--conf", "--workdir", "-x", "--override", "-p", "--parallel") and i + 1 < len(args):
                i += 2
                continue
            i += 1
        selected = bool(envs) and envs != ["ALL"]
        if not envs or envs == ["ALL"]:
            envs = tox.env_list or ["py"]
        parts = []
        for env in envs[:20]:
            if not tox.has_env(env):
                return Resolved("missing", [], set(), "tox")
            commands = tox.commands(env)
            inner = [self.line(c, cwd, depth + 1) for c in commands]
            body = named(combine(inner), inner, env) if commands else Resolved(by_name(env) or "other", [], {"by-name"})
            if body.kind in ("other", "install", "build") and commands and _TOX_PYTHON_ENV.fullmatch(env):
                # `py312` running the project's own driver (`python igor.py test_with_core ctrace`): tox's
                # per-Python environments are its test runs, so `tox` over [py312, lint] is not a lint.
                body = Resolved("test", body.runs, body.flags | {"by-name"})
            parts.append(body)
        result = combine(parts)
        if selected and result.kind == "test" and any(p.kind not in ("test", *CHECK_KINDS) for p in parts):
            # `tox -e base,dist,docs`: an extra run that builds docs or a package next to some test,
            # not the project's main per-python test env.
            result.flags = result.flags | {"extras"}
        result.entry = "tox"
        return _posargs(result, args)

    def _nox(self, args: list[str], cwd: str, depth: int) -> Resolved:
        nox = self.lazy.get("nox", cwd)
        if nox is None:
            return Resolved("missing", [], set(), "nox")
        names: list[str] = []
        tags: list[str] = []
        i = 0
        while i < len(args):
            arg = args[i]
            if arg == "--":
                break
            if arg in ("-s", "--session", "--sessions", "-e") and i + 1 < len(args):
                j = i + 1
                while j < len(args) and not args[j].startswith("-"):
                    names.append(args[j])
                    j += 1
                i = j
                continue
            if arg.startswith("--session=") or arg.startswith("--sessions="):
                names += arg.split("=", 1)[1].split(",")
            elif arg in ("-t", "--tags") and i + 1 < len(args):
                tags.append(args[i + 1])
                i += 2
                continue
            elif arg in ("-p", "--python", "--force-python", "-k", "--keywords", "-f", "--noxfile") and i + 1 < len(args):
                i += 2
                continue
            i += 1
        entries: list[ep.Entry] = []
        for name in names:
            entry = nox.find(name)
            if entry is None:
                return Resolved("missing", [], set(), "nox")
            entries.append(entry)
        for tag in tags:
            entries += nox.tagged(tag)
        if not names and not tags:
            default_names = nox.defaults if nox.defaults is not None else [e.name for e in nox.sessions.values() if e.default]
            entries = [e for e in (nox.find(n) for n in default_names) if e is not None]
        parts = []
        for entry in entries[:20]:
            inner = [self.line(c, cwd, depth + 1) for c in entry.commands]
            body = named(combine(inner), inner, entry.name) if entry.commands else _other()
            if body.kind == "other":
                body = Resolved(by_name(entry.name) or "other", body.runs, body.flags | {"by-name"})
            parts.append(body)
        result = combine(parts) if parts else _other()
        result.entry = "nox"
        return _posargs(result, args)

    def _npm(self, manager: str, args: list[str], cwd: str, depth: int) -> Resolved | None:
        words = list(args)
        workspaces = others = False
        while words and words[0].startswith("-"):
            flag = words.pop(0)
            if flag in ("--filter", "-F", "--workspace", "-w", "--prefix", "-C", "--dir", "--cwd") and words:
                value = words.pop(0)
                if flag in ("--prefix", "-C", "--dir", "--cwd"):
                    cwd = _join_cwd(cwd, value)
                elif value not in (".", "./"):
                    workspaces = True
                    others = True  # `--filter ./pkgs/**`: the named packages' scripts, not the root's
            elif flag in ("-r", "--recursive", "--workspaces", "-ws"):
                workspaces = True
        if not words:
            return None
        sub = words[0]
        rest = words[1:]
        if manager == "bun" and sub == "test":
            return None  # bun's own test runner, not a script
        if sub in ("run", "run-script", "rum", "urn") and rest:
            while rest and rest[0].startswith("-"):
                rest = rest[1:]
            if not rest:
                return None
            script = rest[0]
        elif sub in ("test", "t", "tst") and manager != "bun":
            script = "test"
        elif sub in ("start", "stop", "restart"):
            return _other()
        elif manager in ("pnpm", "yarn", "bun") and sub not in ("install", "ci", "i", "add", "exec", "dlx", "x", "publish", "link", "remove", "up", "update", "why", "list", "ls", "outdated", "audit", "pack", "version", "config", "create", "init", "rebuild", "prune", "dedupe", "store", "patch", "import", "stage"):
            script = sub
        else:
            return None
        if workspaces:
            package = self.lazy.get("package", cwd) or {}
            if others or script not in ep.scripts(package):
                kind = by_name(script)
                return Resolved(kind or "other", [], {"by-name", "workspaces"}, "npm")
        selected = _pnpm_regex(script) if manager == "pnpm" else None
        if selected is not None:
            # `pnpm run /^test:/` runs every script whose name matches
            names = [n for n in ep.scripts(self.lazy.get("package", cwd) or {}) if selected.search(n)]
            parts = [self._script_body("npm", n, cwd, depth) for n in names[:50]]
            resolved = combine(parts) if parts else Resolved("missing", [], set(), "npm")
            resolved.entry = "npm"
            return resolved
        resolved = self._script_body("npm", script, cwd, depth)
        extra = rest[1:] if sub in ("run", "run-script", "rum", "urn") else rest
        if resolved.kind in CHECK_KINDS and any(a in ("--fix", "--write", "--apply") for a in extra):
            # `pnpm run lint --fix`: the check's script, told to rewrite the files
            return Resolved("fix", resolved.runs, resolved.flags, resolved.entry)
        if resolved.kind == "test" and any(not a.startswith("-") and a != "--" for a in extra):
            # `npm test some-filter`: a subset of the suite
            resolved = Resolved(resolved.kind, resolved.runs, resolved.flags | {"partial"}, resolved.entry)
        if resolved.kind == "test" and set(re.split(r"[:_.\-/]", script.lower())) & {"smoke", "sanity"}:
            # A smoke test checks that the thing starts, not the suite.
            resolved = Resolved(resolved.kind, resolved.runs, resolved.flags | {"partial"}, resolved.entry)
        if resolved.kind == "missing" and manager in ("yarn", "pnpm", "bun") and sub == script:
            return self.argv([script, *rest[1:]] if sub == "run" else [script, *words[1:]], cwd, depth + 1)
        return resolved

    def _shorthand(self, script: str, cwd: str, depth: int) -> Resolved:
        """concurrently's `npm:name` (one package script) or `npm:lint-*` (every script matching)."""
        if "*" in script:
            return self._npm_patterns([script], cwd, depth)
        return self._script_body("npm", script, cwd, depth)

    def _npm_patterns(self, patterns: list[str], cwd: str, depth: int) -> Resolved:
        names = ep.scripts(self.lazy.get("package", cwd) or {})
        parts = []
        for pattern in patterns:
            regex = re.compile("^" + re.escape(pattern).replace(r"\*\*", ".*").replace(r"\*", "[^:]*") + "$")
            for name in names:
                if regex.match(name):
                    parts.append(self._script_body("npm", name, cwd, depth))
        return combine(parts) if parts else _other()

    def _script_body(self, kind: str, name: str, cwd: str, depth: int) -> Resolved:
        key = (f"{kind}:{name}", cwd)
        if key in self._memo:
            return self._memo[key]
        self._memo[key] = _other()  # a cycle resolves to other
        package = self.lazy.get("package", cwd) or {}
        body = ep.scripts(package).get(name)
        if body is None:
            result = Resolved("missing", [], set(), "npm")
        elif re.search(r"no test specified", body):
            result = Resolved("missing", [], set(), "npm")
        else:
            result = self.line(body, cwd, depth + 1)
            if result.kind == "test" and _PREPARES.match(name.lower()) and all("/" in r or "." in r for r in result.runs):
                result = _other()  # `setup-test-db` running a script of its own: it sets up what the tests need
            if result.kind == "other":
                guess = by_name(name)
                if guess == "test" and _PREPARES.match(name.lower()):
                    guess = None
                if guess:
                    result = Resolved(guess, result.runs, result.flags | {"by-name"})
        result.entry = "npm"
        self._memo[key] = result
        return result

    def _make(self, args: list[str], cwd: str, depth: int) -> Resolved:
        makefile_name = None
        targets: list[str] = []
        i = 0
        while i < len(args):
            arg = args[i]
            if arg in ("-C", "--directory") and i + 1 < len(args):
                cwd = _join_cwd(cwd, args[i + 1])
                i += 2
                continue
            if arg.startswith("-C") and len(arg) > 2:
                cwd = _join_cwd(cwd, arg[2:])
            elif arg in ("-f", "--file", "--makefile") and i + 1 < len(args):
                makefile_name = args[i + 1]
                i += 2
                continue
            elif arg in ("-j", "-l") and i + 1 < len(args) and args[i + 1].isdigit():
                i += 2
                continue
            elif not arg.startswith("-") and "=" not in arg:
                targets.append(arg)
            i += 1
        makefile = ep.read_makefile(self.tree, cwd, makefile_name) if makefile_name else self.lazy.get("make", cwd)
        if makefile is None:
            return Resolved("missing", [], set(), "make")
        if not targets:
            targets = [makefile.default] if makefile.default else []
        parts = []
        for target in targets[:10]:
            parts.append(self._make_target(makefile, target, cwd, depth))
        result = combine(parts) if parts else Resolved("build", [], set())
        result.entry = "make"
        return result

    def _make_target(self, makefile: ep.Makefile, target: str, cwd: str, depth: int, seen: frozenset[str] = frozenset()) -> Resolved:
        key = (f"make:{makefile.file}:{target}", cwd)
        return self._once(key, lambda: self._make_target_body(makefile, target, cwd, depth, seen)) or _other()

    def _make_target_body(self, makefile: ep.Makefile, target: str, cwd: str, depth: int, seen: frozenset[str]) -> Resolved:
        entry = makefile.find(target)
        if entry is None:
            return Resolved("missing")
        if target in seen or depth > MAX_DEPTH:
            return _other()
        prereqs: list[Resolved] = []
        for prereq in entry.refs[:10]:
            if makefile.find(prereq) is not None:
                sub = self._make_target(makefile, prereq, cwd, depth + 1, seen | {target})
                if sub.kind in ("test", *CHECK_KINDS, "publish"):
                    prereqs.append(sub)
        own: list[Resolved] = []
        for command in entry.commands[:40]:
            expanded = makefile.expand(command, target)
            if expanded is None:
                # a `$(shell ...)` decides the words; the tools the line runs still tell its kind when
                # that is a test run (`for d in $(GO_MOD_DIRS); do (cd $$d && go vet && go test ./...); done`)
                loose = makefile.expand(command, target, unknown="unknown-value") if _RUNS_TESTS.search(command) else None
                inner = self.line(loose, cwd, depth + 1) if loose is not None else None
                own.append(Resolved("test", inner.runs, {"unknown"}) if inner is not None and inner.kind == "test"
                           else Resolved("other", [], {"unknown"}))
                continue
            own.append(self.line(expanded, cwd, depth + 1))
        mine = combine(own) if own else _other()
        # What the target itself runs decides its kind; prerequisites count when it runs nothing
        # of its own (`check: lint test`) or when one of them publishes.
        if mine.kind in ("other", "install") or any(p.kind == "publish" for p in prereqs):
            result = combine(prereqs + own) if prereqs or own else _other()
        else:
            result = mine
        if result.kind in ("other", "install", "build") and any(re.search(r"(^|\s)-o\s*\$(@|\(@\)|\{@\})", c) for c in entry.commands):
            # `test: test.cc ...` whose recipe compiles `-o $@`: the target is the test binary it makes,
            # so `make test` builds it and runs nothing (its name says test, its recipe says build).
            return Resolved("build", result.runs, result.flags)
        if result.kind in ("other", "install") or (result.kind == "build" and by_name(target) in ("test",) + CHECK_KINDS):
            guess = by_name(target)
            if guess:
                result = Resolved(guess, result.runs, result.flags | {"by-name"})
        return result

    def _named(self, kind: str, names: list[str], cwd: str, depth: int, seen: frozenset[str] = frozenset()) -> Resolved:
        key = (f"{kind}:{names[0] if names else ''}", cwd)
        return self._once(key, lambda: self._named_body(kind, names, cwd, depth, seen)) or _other()

    def _named_body(self, kind: str, names: list[str], cwd: str, depth: int, seen: frozenset[str]) -> Resolved:
        recipes = self.lazy.get(kind, cwd) or {}
        if not recipes:
            return Resolved("missing", [], set(), kind)
        name = names[0] or next(iter(recipes), "")
        entry = recipes.get(name)
        if entry is None:
            return Resolved("missing", [], set(), kind)
        if name in seen or depth > MAX_DEPTH:
            return _other()
        parts = [self._named(kind, [r], cwd, depth + 1, seen | {name}) for r in entry.refs[:10] if r in recipes]
        parts = [p for p in parts if p.kind in ("test", "publish", *CHECK_KINDS)]
        parts += [self.line(c, cwd, depth + 1) for c in entry.commands[:40]]
        result = combine(parts) if parts else _other()
        if result.kind == "other":
            guess = by_name(name)
            if guess:
                result = Resolved(guess, result.runs, result.flags | {"by-name"})
        result.entry = kind
        return result

    def _rake(self, tasks: list[str], cwd: str, depth: int, seen: frozenset[str] = frozenset()) -> Resolved:
        key = (f"rake:{' '.join(tasks)}", cwd)
        return self._once(key, lambda: self._rake_body(tasks, cwd, depth, seen)) or _other()

    def _rake_body(self, tasks: list[str], cwd: str, depth: int, seen: frozenset[str]) -> Resolved:
        known = self.lazy.get("rake", cwd) or {}
        if not known:
            return Resolved("missing", [], set(), "rake")
        parts = []
        for task in tasks or ["default"]:
            entry = known.get(task)
            if entry is None:
                guess = by_name(task) if "*" in known else None
                parts.append(Resolved(guess, [], {"by-name"}) if guess else Resolved("missing"))
                continue
            if task in seen or depth > MAX_DEPTH:
                continue
            inner = [self._rake([r], cwd, depth + 1, seen | {task}) for r in entry.refs[:10] if r in known]
            inner += [self.line(c, cwd, depth + 1) for c in entry.commands[:20]]
            body = combine(inner) if inner else _other()
            if body.kind in ("other", "missing"):
                guess = by_name(task)
                if guess:
                    body = Resolved(guess, body.runs, body.flags | {"by-name"})
            parts.append(body)
        result = combine(parts) if parts else _other()
        result.entry = "rake"
        return result

    def _composer(self, script: str, cwd: str, depth: int, seen: frozenset[str] = frozenset()) -> Resolved | None:
        return self._once((f"composer:{script}", cwd), lambda: self._composer_body(script, cwd, depth, seen))

    def _composer_body(self, script: str, cwd: str, depth: int, seen: frozenset[str]) -> Resolved | None:
        scripts = self.lazy.get("composer", cwd) or {}
        entry = scripts.get(script)
        if entry is None:
            return Resolved("missing", [], set(), "composer") if script not in ("exec",) else None
        if script in seen or depth > MAX_DEPTH:
            return _other()
        parts = []
        for command in entry.commands[:20]:
            words = command.split()
            if words[:1] == ["composer"] and len(words) > 1 and words[1] in scripts:
                parts.append(self._composer(words[1], cwd, depth + 1, seen | {script}) or _other())
            else:
                parts.append(self.line(_vendor_bin(command), cwd, depth + 1))
        result = combine(parts) if parts else _other()
        if result.kind == "other":
            guess = by_name(script)
            if guess:
                result = Resolved(guess, result.runs, result.flags | {"by-name"})
        result.entry = "composer"
        return result

    def _hatch(self, target: str, rest: list[str], cwd: str, depth: int) -> Resolved:
        key = (f"hatch:{target}\0{chr(0).join(rest)}", cwd)
        return self._once(key, lambda: self._hatch_body(target, rest, cwd, depth)) or _other()

    def _hatch_body(self, target: str, rest: list[str], cwd: str, depth: int) -> Resolved:
        env, _, script = target.rpartition(":")
        env = env or "default"
        scripts = (self.lazy.get("py", cwd) or ep.PyScripts({}, {}, {}, {})).hatch.get(env, {})
        entry = scripts.get(script)
        if entry is None:
            resolved = self.argv([script, *rest], cwd, depth + 1)
            resolved.entry = "hatch"
            return resolved if resolved.kind != "other" else Resolved(by_name(script) or "other", [], {"by-name"}, "hatch")
        parts = []
        for line in entry.commands[:20]:
            first = line.split()[0] if line.split() else ""
            # A script that names another script of its environment runs that one (in the same environment).
            local = first in scripts and first != script
            parts.append(self._hatch(f"{env}:{first}", [], cwd, depth + 1) if local else self.line(line, cwd, depth + 1))
        for ref in entry.refs:
            if ref in scripts and ref != script:
                parts.append(self._hatch(f"{env}:{ref}", [], cwd, depth + 1))
        result = combine(parts) if parts else Resolved(by_name(script) or "other", [], {"by-name"})
        result.entry = "hatch"
        return result

    def _taskipy(self, cwd: str) -> bool:
        py = self.lazy.get("py", cwd)
        return bool(py and py.taskipy)

    def _pyscript(self, kind: str, name: str, cwd: str, depth: int, seen: frozenset[str] = frozenset()) -> Resolved | None:
        return self._once((f"{kind}:{name}", cwd), lambda: self._pyscript_body(kind, name, cwd, depth, seen))

    def _pyscript_body(self, kind: str, name: str, cwd: str, depth: int, seen: frozenset[str]) -> Resolved | None:
        py = self.lazy.get("py", cwd)
        table = getattr(py, kind, {}) if py else {}
        entry = table.get(name)
        if entry is None:
            return None
        if name in seen or depth > MAX_DEPTH:
            return _other()
        parts = []
        for line in entry.commands[:20]:
            first = line.split()[0] if line.split() else ""
            if first in table and first != name:
                parts.append(self._pyscript(kind, first, cwd, depth + 1, seen | {name}) or _other())
            else:
                parts.append(self.line(line, cwd, depth + 1))
        for ref in entry.refs:
            parts.append(self._pyscript(kind, ref, cwd, depth + 1, seen | {name}) or _other())
        result = combine(parts) if parts else _other()
        if result.kind == "other":
            guess = by_name(name)
            if guess:
                result = Resolved(guess, result.runs, result.flags | {"by-name"})
        result.entry = kind
        return result

    # -- scripts in the repository -------------------------------------------------------------

    def _script(self, argv: list[str], cwd: str, depth: int) -> Resolved | None:
        name = tool_name(argv[0])
        path = argv[0]
        if name in ("sh", "bash", "zsh", "pwsh", "powershell"):
            rest = [a for a in argv[1:] if not a.startswith("-")]
            if not rest:
                return None
            path = rest[0]
        elif name in ("node", "tsx", "ts-node", "ruby", "python", "python3", "php", "bun", "deno", "go"):
            module = _python_module(argv) if name in ("python", "python3") else None
            if module is not None:
                # `python -m pkg.test`: the package's own test runner module
                last = module.rsplit(".", 1)[-1].lower()
                if re.fullmatch(r"(tests?|runtests|run_tests|test_all|alltests|testsuite)", last):
                    return Resolved("test", [f"python -m {module}"], set())
                return _other()
            rest = [a for a in argv[1:] if not a.startswith("-")]
            if name == "deno" and rest[:1] == ["run"]:
                rest = rest[1:]
            if name == "go" and rest[:1] == ["run"]:
                rest = rest[1:]
            path = rest[0] if rest else ""
            if not path:
                return None
            after = argv[argv.index(path) + 1:] if path in argv else []
            if after and classify_tool(after) is not None and not after[0].startswith("-"):
                return self.argv(after, cwd, depth + 1)  # a wrapper script that runs the tool it is given
            kind = _test_path_kind(path)
            if kind:
                return Resolved(kind, [path] if kind == "test" else [], {"script"} | _example_flag(path))
            return _other()
        elif "/" not in path and not path.endswith((".sh", ".ps1", ".py", ".bash", ".cmd", ".bat")):
            return None
        rel = normpath(_join_cwd(cwd, path.removeprefix("./").replace("\\", "/")))
        if rel.startswith("..") or rel.startswith("/"):
            return None
        if self.tree.kind(rel) != "file":
            return Resolved("missing", [], {"script"})
        text = safe.read_text(self.tree, rel, safe.MAX_SCRIPT_BYTES)
        if _NUKE_BOOTSTRAP.search(text):
            script_args = argv[argv.index(path) + 1:] if path in argv else []
            return self._nuke(script_args, rel.rsplit("/", 1)[0] if "/" in rel else "", text)
        if rel.endswith((".ps1", ".cmd", ".bat")):
            return _powershell(text, rel)
        if rel.endswith(".py"):
            kind = _test_path_kind(rel)
            return Resolved(kind or "other", [rel] if kind == "test" else [], {"script"} | _example_flag(rel))
        script_args = [a for a in (argv[argv.index(path) + 1:] if path in argv else []) if re.fullmatch(r"[A-Za-z0-9_.,:=/+-]+", a)][:9]
        if any(a.lower() in _INSTALL_ARGS for a in script_args):
            # `./scripts/vet.sh -install`: the script's mode that installs its tools; the check is its plain run
            return Resolved("install", [], {"script"})
        key = (f"script:{rel}:{' '.join(script_args)}", cwd)
        if key in self._memo:
            return self._memo[key]
        self.work.script_calls -= 1
        self.work.script_text -= len(text)
        if self.work.script_calls < 0 or self.work.script_text < 0:
            return _other("other", "script", "unknown")
        self._memo[key] = _other()
        positional = {ARGS: " ".join(script_args), **{str(i + 1): a for i, a in enumerate(script_args)}}
        simples, _env = parse_script(text, positional)
        parts = [self.argv(s.argv, _join_cwd(cwd, s.cwd), depth + 1, diff_checked=s.diff_checked) for s in simples[:200] if not is_noise(s.argv)]
        result = combine(parts) if parts else _other()
        if result.kind == "other":
            guess = by_name(rel.rsplit("/", 1)[-1].split(".")[0])
            if guess in ("test", *CHECK_KINDS):
                result = Resolved(guess, result.runs, result.flags | {"by-name"})
        result.flags = result.flags | {"script"} | (_example_flag(rel) - {"partial"})
        self._memo[key] = result
        return result


    # -- NUKE builds ----------------------------------------------------------------------------

    def _nuke(self, args: list[str], cwd: str, bootstrap: str) -> Resolved:
        """A NUKE build (`build.cmd ci`, `./build.sh Test`, `dotnet nuke Test`): the targets named (or
        the default one) resolved through their `DependsOn` chains in the build project's C# files."""
        targets = [a for a in args if not a.startswith("-")][:1]
        if args[:1] and args[0].startswith("-") and not targets:
            return _other()
        sources = self._nuke_sources(cwd, bootstrap)
        if not sources:
            kind = by_name(targets[0]) if targets else None
            return Resolved(kind or "other", ["dotnet test"] if kind == "test" else [], {"by-name", "script"}, "nuke")
        text = "\n".join(sources)
        bodies: dict[str, str] = {}
        for match in _NUKE_TARGET.finditer(text):
            end = _NUKE_TARGET.search(text, match.end())
            bodies[match.group(1).lower()] = text[match.end():end.start() if end else len(text)][:20_000]
        if not targets:
            default = re.search(r"Execute<\w+>\(\s*\w+\s*=>\s*\w+\.(\w+)", text)
            targets = [default.group(1)] if default else []
        if not targets or targets[0].lower() not in bodies:
            return Resolved("missing", [], {"script"}, "nuke")

        def resolve(name: str, seen: frozenset[str]) -> Resolved:
            body = bodies.get(name.lower(), "")
            parts: list[Resolved] = []
            for group in re.findall(r"\.DependsOn\(([^)]*)\)", body):
                for dep in re.findall(r"\w+", group):
                    if dep.lower() in bodies and dep.lower() not in seen and len(seen) < 30:
                        parts.append(resolve(dep, seen | {dep.lower()}))
            own = re.sub(r"\.(DependsOn|After|Before|TriggeredBy|Triggers)\([^)]*\)", "", body)
            if re.search(r"\b(DotNetTest|DotNetTasks\.DotNetTest|XUnit2|NUnit3|VSTest|DotCoverCover\w*|Coverlet\w*)\s*\(", own):
                parts.append(Resolved("test", ["dotnet test"]))
            if re.search(r"\b(DotNetNuGetPush|NuGetPush|GitHubTasks\.\w+Release|PublishRelease|DotNetNuGetPushSettings)\b", own):
                parts.append(Resolved("publish"))
            if re.search(r"\bDotNetFormat\s*\(", own):
                parts.append(Resolved("format" if re.search(r"VerifyNoChanges|--verify-no-changes", own) else "fix"))
            if re.search(r"\b(DotNetBuild|DotNetPack|DotNetPublish|MSBuild|DotNetRestore)\s*\(", own):
                parts.append(Resolved("build"))
            return combine(parts) if parts else _other()

        result = resolve(targets[0], frozenset({targets[0].lower()}))
        result.flags = result.flags | {"script"}
        result.entry = "nuke"
        return result

    def _nuke_sources(self, cwd: str, bootstrap: str) -> list[str]:
        """The C# files of the build project: the folder a bootstrapper names (`BUILD_PROJECT_FILE`), or
        `build/` or `.nuke`'s conventional neighbours; bounded."""
        folders: list[str] = []
        texts = [bootstrap] + [safe.read_text(self.tree, _join_cwd(cwd, n), safe.MAX_SCRIPT_BYTES) for n in ("build.sh", "build.ps1", "build.cmd")]
        for text in texts:
            for match in re.finditer(r"BUILD_PROJECT_FILE\s*=\s*\"?(?:\$\{?\w+\}?|\$PSScriptRoot|%~dp0|\.)?[/\\]?([\w./\\-]+?\.csproj)", text):
                project = match.group(1).replace("\\", "/")
                folder = project.rsplit("/", 1)[0] if "/" in project else ""
                if folder:
                    folders.append(_join_cwd(cwd, folder))
        folders += [_join_cwd(cwd, n) for n in ("build", "Build", "_build", "nuke", "tools/build", "src/Build", "source/build")]
        out: list[str] = []
        for folder in dict.fromkeys(folders):
            if not folder or folder.startswith("..") or not self.tree.is_dir(folder):
                continue
            for entry in self.tree.list_dir(folder)[:200]:
                if entry.kind == "file" and entry.name.endswith(".cs") and len(out) < 20:
                    text = safe.read_text(self.tree, entry.path, safe.MAX_SCRIPT_BYTES)
                    if "NukeBuild" in text or "Target " in text:
                        out.append(text)
            if out:
                break
        return out


_NUKE_BOOTSTRAP = re.compile(r"\bdotnet(?:\.exe)?[\"']?\s+(?:tool\s+run\s+)?nuke\b|BUILD_PROJECT_FILE", re.I)
_NUKE_TARGET = re.compile(r"\bTarget\s+(\w+)\s*=>\s*\w+\s*=>\s*\w+")


def _strip_json_comments(text: str) -> str:
    """JSON with comments and trailing commas (tsconfig.json) as plain JSON."""
    out: list[str] = []
    i, n = 0, len(text)
    in_string = False
    while i < n:
        char = text[i]
        if in_string:
            out.append(char)
            if char == "\\" and i + 1 < n:
                out.append(text[i + 1])
                i += 2
                continue
            if char == '"':
                in_string = False
            i += 1
            continue
        if char == '"':
            in_string = True
            out.append(char)
        elif text.startswith("//", i):
            end = text.find("\n", i)
            i = n if end < 0 else end
            continue
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            i = n if end < 0 else end + 2
            continue
        else:
            out.append(char)
        i += 1
    return re.sub(r",(\s*[}\]])", r"\1", "".join(out))


def _posargs(result: Resolved, args: list[str]) -> Resolved:
    """Arguments passed through `--` that pick one kind of test (functional, integration) make a partial run."""
    rest = args[args.index("--") + 1:] if "--" in args else []
    if result.kind == "test" and any(re.search(r"(functional|integration|e2e|acceptance|zipapp|slow)", a) for a in rest):
        result.flags = result.flags | {"partial"}
    return result


def _powershell(text: str, rel: str) -> Resolved:
    """A PowerShell or batch build script: what it runs, by the tool invocations in it."""
    kinds: list[Resolved] = []
    for match in re.finditer(r"\b(dotnet(?:\.exe)?)\s+(test|build|pack|nuget\s+push|publish|format|cake|tool\s+run)\b", text, re.I):
        verb = match.group(2).lower()
        kinds.append(Resolved("test", ["dotnet test"]) if verb == "test" else Resolved("publish") if "push" in verb else
                     Resolved("build") if verb in ("build", "pack", "publish") else _other())
    if re.search(r"\b(nuget(\.exe)?\s+push|Publish-Module|Invoke-Publish)\b", text, re.I):
        kinds.append(Resolved("publish"))
    if re.search(r"\bdotnet\s+cake\b|\bcake\.cs\b|Cake\.(Frosting|Tool)|\./build\.sh", text) and not kinds:
        kinds.append(Resolved("test", ["dotnet test"], {"by-name"}))
    if not kinds:
        guess = by_name(rel.rsplit("/", 1)[-1].split(".")[0])
        return Resolved(guess or "other", [], {"by-name", "script"})
    # a build script that packs and pushes only behind a condition is still how CI tests;
    # one that pushes unconditionally is publish and is never shown.
    result = combine(kinds)
    result.flags |= {"script"}
    return result


# A script or package script whose name starts with one of these verbs prepares what the tests need
# (fetches a fixture, sets up a database, regenerates data) even when "test" is in its name or folder.
_PREPARES = re.compile(r"^(get|setup|autogen|set-up|update|download|prepare|generate|gen|fetch|seed|populate|create|make|init|install|"
                       r"bootstrap|build|clean|refresh|regen|regenerate|sync|pull|record|start|stop|teardown)([_.:-]|$)")


def _emits(argv: list[str]) -> bool:
    """tsc told to write output: `--noEmit false`, `--emitDeclarationOnly`, `--outDir`, `--declaration`."""
    for index, word in enumerate(argv):
        if word in ("--noEmit", "-noEmit") and argv[index + 1:index + 2] == ["false"]:
            return True
    return any(w in ("--emitDeclarationOnly", "--outDir", "--outFile", "--declaration", "-d") for w in argv) and "--noEmit" not in argv


# concurrently's options that take a value (`-P`/`--passthrough-arguments` take none).
_CONCURRENTLY_VALUE_OPTIONS = frozenset((
    "-c", "--prefix-colors", "-n", "--names", "-p", "--prefix", "-l", "--prefix-length", "-t", "--timestamp-format",
    "--name-separator", "--restart-tries", "--restart-after", "-s", "--success", "--max-processes", "-m", "--handle-input",
    "--default-input-target", "--kill-signal", "--pad-prefix"))


def _concurrently_commands(args: list[str]) -> list[str]:
    """The commands given to concurrently, without its options and their values (`-c green,blue`, `-n a,b`)."""
    return _positionals(args, _CONCURRENTLY_VALUE_OPTIONS)


def _python_module(argv: list[str]) -> str | None:
    """The module of `python [-options] -m module ...`, or None."""
    for index, word in enumerate(argv[1:], 1):
        if not word.startswith("-"):
            return None
        if word == "-m" or (re.fullmatch(r"-[A-Za-z]*m", word) and not word.startswith("--")):
            following = argv[index + 1] if index + 1 < len(argv) else ""
            return following if re.fullmatch(r"[A-Za-z_][\w.]*", following) else None
    return None


def _test_path_kind(path: str) -> str | None:
    lowered = path.lower()
    if re.search(r"(^|/)(bench|benchmarks?)(/|\.|$)", lowered):
        return "bench"
    if re.match(r"(check|lint|verify|validate)[_-]", lowered.rsplit("/", 1)[-1]):
        return None  # check_test_class_order.py checks the test files; it does not run them
    if _PREPARES.match(lowered.rsplit("/", 1)[-1]):
        return None  # tests/get_spec.py, scripts/setup-test-db.js: they prepare the tests' data; they run none
    if re.search(r"(^|/|_|-)(tests?|spec|runtests|run_tests|test_runner)(/|\.|_|-|$)", lowered):
        return "test"
    return None


# a recipe line that names a test runner (looked at only when `$(shell ...)` hides its words)
_RUNS_TESTS = re.compile(r"\b(go test|pytest|cargo (nextest|test)|ctest|(npm|pnpm|yarn|bun) (run )?test|mvn\S* (test|verify)|gradlew? test|"
                         r"phpunit|rspec|dotnet test|tox|nox)\b")


_SERVICE_SUITE = re.compile(r"(^|/)(e2e|integration|integration[_-]tests?|it|acceptance|functional|system[_-]?tests?)(/|$)", re.I)


def _sub_path_flags(paths: list[str], whole: set[str]) -> set[str]:
    """A test run given one folder below the root (`go test ./pkg/e2e/`, `pytest tests/integration`):
    a partial run, ranked below the whole project's; an end-to-end or integration folder (a suite
    that needs services CI starts) is flagged as such too. Several folders may be the whole suite."""
    if len(paths) != 1 or paths[0].rstrip("/") in whole or paths[0] in whole:
        return set()
    flags = {"partial", f"sub-path:{paths[0].removeprefix('./').rstrip('/')}"}
    if _SERVICE_SUITE.search(paths[0].removeprefix("./").replace("/...", "")):
        flags.add("e2e")
    return flags


_INSTALL_ARGS = {"-install", "--install", "install", "setup", "--setup", "-setup", "--deps", "-deps", "deps", "--install-deps",
                 "install-deps", "--install-tools", "install-tools", "--bootstrap", "bootstrap"}
_SUITE_WORDS = {"e2e", "integration", "interop", "smoke", "acceptance"}
_PACKAGING_WORDS = {"packed", "package", "packaging", "pack", "tarball", "install", "installed", "dist"}


def _example_flag(path: str) -> set[str]:
    """A test script of one example (examples/embedding_service/test_embedding.py) tests that example
    (often against a service CI starts first), not the project: a partial run. A script whose path
    says it is an end-to-end, integration or smoke suite (internal/test/e2e/run.sh), or a test of the
    packed package (scripts/test-packed-package.ts), is not the project's whole test run either."""
    lowered = path.lower().replace("\\", "/")
    flags = {"partial"} if re.search(r"(^|/)(examples?|samples?|demos?)/", lowered) else set()
    words = set(re.split(r"[^a-z0-9]+", lowered))
    stem_words = set(re.split(r"[^a-z0-9]+", lowered.rsplit("/", 1)[-1]))
    if words & _SUITE_WORDS or stem_words & _PACKAGING_WORDS:
        flags.add("e2e")
    return flags


def _vendor_bin(command: str) -> str:
    words = command.split()
    if words and not words[0].startswith(("vendor/", "./", "php", "composer", "@")) and "/" not in words[0]:
        return command  # composer puts vendor/bin on PATH for scripts; the tool name is enough
    return command


def _join_cwd(cwd: str, sub: str) -> str:
    if not sub or sub == ".":
        return cwd
    if sub.startswith("/"):
        return sub
    joined = normpath(f"{cwd}/{sub}" if cwd else sub)
    return "" if joined == "." else joined
