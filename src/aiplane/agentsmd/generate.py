"""Rendering AGENTS.md from verified facts, and checking an existing one for staleness.

Every command in the output must come from the analysis; `verify_commands` enforces that on any
text, including a model's phrasing, so nothing invented reaches the file. The staleness check is
built for precision: it reports a command only when it can show the command no longer works (its
target, script or build file is gone), a path only when it is clearly a path and nothing in the
repository answers to it, and, against a base, only what the change itself broke.
"""

from __future__ import annotations

import fnmatch
import re
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from aiplane.agentsmd import entrypoints as ep
from aiplane.agentsmd import safe
from aiplane.agentsmd.analyze import SKIP_DIRS, Analysis, Fact, analyze
from aiplane.agentsmd.commands import split_launcher, tool_name
from aiplane.repository import git
from aiplane.repository.tree import GitTree, TreeBase, WorkTree

MAX_WORDS = 400
_CODE = re.compile(r"`([^`\n]+)`")
_COMMAND_START = re.compile(
    r"^(uv|uvx|poetry|pdm|hatch|pipenv|pytest|py\.test|python3?|pip|npm|pnpm|yarn|bun|bunx|npx|deno|node|go|cargo|cross|make|just|task|"
    r"tox|nox|ruff|mypy|pyright|black|isort|flake8|pylint|mvn|\./mvnw|gradle|\./gradlew|golangci-lint|pre-commit|prek|eslint|tsc|"
    r"prettier|biome|bundle|rake|rspec|rubocop|standardrb|ruby|composer|php|vendor/bin/\S+|\./vendor/bin/\S+|dotnet|ctest|cmake|"
    r"meson|coverage|vitest|jest|mocha|bash|sh|pwsh|scripts/\S+|\./\S+|find|git ls-files|\{|clang-format\S*|"
    # Tools and script folders the analysis also prints (each seen in the bench corpus): every printed
    # command must be recognised here, or neither the model check nor the bench would see it.
    r"poe|pixi|pipx|gofmt|gofumpt|goimports|golint|staticcheck|gotestsum|php-cs-fixer|phpstan|psalm|phpcs|pest|phpunit|"
    r"cpplint|cppcheck|bazel|bazelisk|sbt|ant|shellcheck|codespell|typos|xvfb-run|turbo|nx|lerna|"
    r"(?:bin|ci|\.ci|script|tools|build|dev)/\S+|(?:\.\./)+\S+)(\s|$)")
WATCHED = ("pyproject.toml", "setup.cfg", "setup.py", "tox.ini", "noxfile.py", "ruff.toml", ".pre-commit-config.yaml", "package.json",
           "pnpm-workspace.yaml", "go.mod", "go.work", "Cargo.toml", "Makefile", "makefile", "GNUmakefile", "justfile", "Taskfile.yml",
           "Rakefile", "Gemfile", "composer.json", "pom.xml", "build.gradle", "build.gradle.kts", "settings.gradle", "settings.gradle.kts",
           "CMakeLists.txt", "meson.build", ".golangci.yml", ".golangci.yaml", ".github/workflows/", ".github/actions/", ".gitlab-ci.yml",
           ".circleci/", "azure-pipelines.yml", ".azure-pipelines/", ".travis.yml", "appveyor.yml", ".appveyor.yml", "hatch.toml",
           "tox.toml", "global.json", "Directory.Build.props")
PATH_SUFFIXES = {"py", "pyi", "ts", "tsx", "js", "jsx", "mjs", "cjs", "go", "rs", "java", "kt", "kts", "rb", "php", "cs", "fs", "c", "h",
                 "cc", "cpp", "hpp", "swift", "scala", "toml", "json", "yaml", "yml", "md", "rst", "txt", "cfg", "ini", "lock", "sh", "ps1",
                 "xml", "gradle", "sql", "html", "css", "scss", "vue", "svelte", "proto", "mod", "sum", "conf", "properties", "csproj",
                 "sln", "slnx", "cmake", "mk", "j2", "jinja", "tf", "ipynb", "env", "neon", "dist"}


class InventedCommand(Exception):
    def __init__(self, commands: list[str]) -> None:
        super().__init__(f"commands not found by the analysis: {', '.join(commands)}")
        self.commands = commands


def commands_in(text: str) -> list[str]:
    return [c.strip() for c in _CODE.findall(text) if _COMMAND_START.match(c.strip()) and not _path_pattern(c.strip())]


def _path_pattern(code: str) -> bool:
    """`scripts/*`, `scripts/` (a Boundaries path, a glob): one word naming files, never a command."""
    return not re.search(r"\s", code) and (any(c in code for c in "*?[") or code.endswith("/"))


def verify_commands(text: str, analysis: Analysis) -> None:
    allowed = analysis.commands()
    invented = [c for c in commands_in(text) if c not in allowed]
    if invented:
        raise InventedCommand(invented)


# -- rendering --------------------------------------------------------------------------------------------


def _where(fact: Fact) -> str:
    return f" (in `{fact.cwd}/`)" if fact.cwd and safe.clean_rel_path(fact.cwd) else ""


def _command(fact: Fact) -> str:
    runs = f" (runs {fact.runs})" if fact.runs and re.fullmatch(r"[A-Za-z0-9 ._/+-]{1,40}(, [A-Za-z0-9 ._/+-]{1,40})?", fact.runs) else ""
    note = f" ({fact.note})" if fact.note and safe.one_line(fact.note, 80) else ""
    return f"`{fact.value}`{_where(fact)}{runs}{note}"


_CHECK_LABEL = {"lint": "Lint", "format": "Format check", "typecheck": "Type check"}


def _command_lines(a: Analysis) -> list[str]:
    lines: list[str] = []
    if a.build_commands:
        lines.append("- Build first: " + "; ".join(_command(f) for f in a.build_commands[:1]))
    if a.test:
        lines.append("- Test: " + "; ".join(_command(f) for f in a.test[:2]))
    if a.single_test:
        lines.append("- One test: " + "; ".join(f"`{f.value}`{_where(f)}" for f in a.single_test[:1]))
    for fact in a.lint[:3]:
        lines.append(f"- {_CHECK_LABEL.get(fact.kind, 'Lint')}: {_command(fact)}")
    return lines


def _facts_line(a: Analysis) -> str | None:
    runtime = [f.value for f in a.runtime if safe.one_line(f.value, 80)]
    tools = [f.value for f in a.build if safe.one_line(f.value, 60)]
    parts = []
    if runtime:
        parts.append("Runtime: " + ", ".join(runtime[:3]))
    if tools:
        parts.append("tools: " + ", ".join(tools[:4]))
    if not parts and a.languages:
        parts.append("Languages: " + ", ".join(a.languages)[:120])
    return "- " + "; ".join(parts) if parts else None


def _package_lines(a: Analysis) -> list[str]:
    groups: dict[tuple[str, ...], list[str]] = {}
    root_tools = {f.value.split()[0] for f in a.test}
    for package in a.packages:
        path = safe.clean_rel_path(package.root)
        if path is None:
            continue
        # A package's own entry points and CI commands; what a language does by convention in every
        # package (`cargo test` in each crate) is already covered by the root's command.
        commands = tuple(_command(f) for f in package.test[:1] + package.lint[:2]
                         if not (f.source in ("convention", "config") and f.value.split()[0] in root_tools))
        if not commands:
            continue
        groups.setdefault(commands, []).append(path)
    lines = []
    for commands, paths in groups.items():
        shown = ", ".join(f"`{p}/`" for p in paths[:4]) + (f" and {len(paths) - 4} more" if len(paths) > 4 else "")
        lines.append(f"- {shown}: " + "; ".join(commands))
    return lines


def _clean_title(name: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9_.@+ -]", "", name)[:80].strip()
    return cleaned or "repository"


def render(a: Analysis, name: str, catalog: dict[str, str] | None = None) -> str:
    out = [f"# AGENTS.md — {_clean_title(name)}", "", "## Repository"]
    facts = _facts_line(a)
    if facts:
        out.append(facts)
    out += _command_lines(a)
    package_lines = _package_lines(a)
    navigate: list[str] = []
    sources = [r for r in a.source_roots if safe.clean_rel_path(r.rstrip("/")) or r.startswith("the repository root")]
    if sources:
        navigate.append("- Source: " + ", ".join(f"`{r}`" if r.endswith("/") else r for r in sources))
    tests = [r for r in a.test_roots if safe.clean_rel_path(r.rstrip("/")) or r.endswith(" next to the code")]
    if tests:
        navigate.append("- Tests: " + ", ".join(f"`{r}`" if r.endswith("/") else f"`{r.split(' ', 1)[0]}` next to the code" for r in tests))
    packages = [p.root for p in a.packages if safe.clean_rel_path(p.root)]
    if packages:
        if len(packages) > 8:
            groups: dict[str, int] = {}
            for package in packages:
                top = package.split("/", 1)[0]
                groups[top] = groups.get(top, 0) + 1
            shown = ", ".join(f"`{top}/` ({count})" for top, count in sorted(groups.items(), key=lambda kv: -kv[1])[:6])
        else:
            shown = ", ".join(f"`{p}/`" for p in packages)
        navigate.append(f"- Packages ({len(packages)}): {shown}")
        navigate += package_lines
    if navigate:
        out += ["", "## How to navigate", *navigate]
    conventions = [f"- {f.value}" for f in a.conventions if _markdown_safe(f.value)]
    if conventions:
        out += ["", "## Conventions", *conventions]
    boundaries = [f"- {f.value}" for f in a.boundaries if _markdown_safe(f.value)]
    if boundaries:
        out += ["", "## Boundaries", *boundaries]
    if catalog:
        rows = [f"- {k}: {v}" for k, v in catalog.items() if safe.one_line(k, 40) and safe.one_line(v, 300)]
        if rows:
            out += ["", "## Dependencies", *rows]
    text = "\n".join(out) + "\n"
    if len(text.split()) > MAX_WORDS:
        # Drop per-package lines first: they are the bulk in big monorepos.
        keep = [line for line in out if line not in package_lines]
        text = "\n".join(keep) + "\n"
    return text


def _markdown_safe(text: str) -> bool:
    return bool(text) and "\n" not in text and len(text) < 300 and text.count("`") % 2 == 0


PHRASE_PROMPT = (
    "Improve the wording of this AGENTS.md for a coding agent. Keep every fact and every command in "
    "backticks exactly as written; add no commands, no project overview and nothing from a README; "
    "keep the section headings; stay under 400 words. Answer with the file only.\n\n"
)


def generate(root: Path | TreeBase, catalog: dict[str, str] | None = None) -> tuple[Analysis, str]:
    analysis = analyze(root)
    name = root.resolve().name if isinstance(root, Path) else root.describe().rsplit("/", 1)[-1]
    text = render(analysis, name, catalog)
    verify_commands(text, analysis)
    return analysis, text


def phrase(text: str, analysis: Analysis, model) -> tuple[str, str | None]:  # noqa: ANN001 - a pydantic-ai model
    """Let a model reword the verified draft; keep the draft if the result adds a command or grows too long."""
    from pydantic_ai import Agent

    try:
        result = Agent(model).run_sync(PHRASE_PROMPT + text)
        phrased = str(result.output).strip() + "\n"
    except Exception as exc:  # noqa: BLE001 - the deterministic draft is always good enough
        return text, f"the model did not answer ({exc.__class__.__name__}); kept the template"
    try:
        verify_commands(phrased, analysis)
    except InventedCommand as exc:
        return text, f"rejected the model's version: {exc}"
    if len(phrased.split()) > MAX_WORDS:
        return text, "rejected the model's version: longer than the word limit"
    return phrased, None


def catalog_facts(root: Path, index, ref: str | None = None) -> dict[str, str]:  # noqa: ANN001 - a catalog index
    """Owner, system and neighbours of the repository's catalog entity: `ref` when known, else the
    entity whose source location matches the git remote."""
    from aiplane.catalog import tools

    target = ref
    if target is None:
        remote = subprocess.run(["git", "-C", str(root), "remote", "get-url", "origin"], capture_output=True, text=True, timeout=30)
        target = remote.stdout.strip() if remote.returncode == 0 and remote.stdout.strip() else root.resolve().name
    try:
        owned = tools.who_owns(index, target)
    except tools.ToolError:
        return {}
    ref = owned["entity"]["ref"]
    facts = {"Catalog entity": f"{ref} (evidence: catalog)"}
    if owned["owners"]:
        facts["Owner"] = ", ".join(o["ref"] for o in owned["owners"])
    if owned["entity"].get("system"):
        facts["System"] = owned["entity"]["system"]
    key = ref.lower()
    depends = [h.ref for h in index.dependencies(key, 1)]
    dependents = [h.ref for h in index.dependents(key, 1)]
    if depends:
        facts["Depends on"] = ", ".join(depends[:10])
    if dependents:
        facts["Used by"] = ", ".join(dependents[:10])
    return {k: v for k, v in facts.items() if safe.one_line(v, 300)}


# -- staleness ------------------------------------------------------------------------------------------------


@dataclass
class Staleness:
    stale_commands: list[str] = field(default_factory=list)
    missing_paths: list[str] = field(default_factory=list)
    touched_watched: list[str] = field(default_factory=list)

    @property
    def stale(self) -> bool:
        return bool(self.stale_commands or self.missing_paths or self.touched_watched)


MAX_AGENTS_MD_BYTES = 1024 * 1024


class _Repo:
    """What the staleness check asks of one tree: files, folders, entry points, once each."""

    def __init__(self, tree: TreeBase) -> None:
        self.tree = tree
        self.lazy = ep.Lazy(tree)
        self._files: list[str] | None = None

    @property
    def files(self) -> list[str]:
        if self._files is None:
            self._files = [e.path for e in self.tree.files("", SKIP_DIRS, 50_000)]
        return self._files

    def dirs(self) -> set[str]:
        out: set[str] = set()
        for path in self.files:
            parts = path.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                out.add("/".join(parts[:i]))
        return out

    def manifest_dirs(self, name: str) -> list[str]:
        return [p.rsplit("/", 1)[0] if "/" in p else "" for p in self.files if p.rsplit("/", 1)[-1] == name][:200]


def _path_refs(text: str) -> list[str]:
    refs: list[str] = []
    for code in _CODE.findall(text):
        ref = code.strip()
        if not ref or any(c.isspace() for c in ref) or _COMMAND_START.match(ref):
            continue
        ref = re.sub(r"(:\d+(-\d+)?|#[\w-]*)$", "", ref)
        if ref.startswith(("/", "-", "~", "$", "..", "http")) or "://" in ref or "//" in ref:
            continue
        if not re.fullmatch(r"[A-Za-z0-9_.@+/-]+", ref):
            continue  # globs, placeholders (<name>), braces and options are not paths
        refs.append(ref)
    return refs


_EXAMPLE = re.compile(r"\b(e\.g\.|for example|examples?|for instance|such as|placeholder|sample)\b|\bstyle\)", re.I)


def _claims(text: str) -> str:
    """The text without its example sentences: a path given as an example, a placeholder or a sample
    is not a claim that the repository has it. Sentences are read across wrapped lines, within one
    paragraph or list item."""
    kept: list[str] = []
    block: list[str] = []

    def flush() -> None:
        joined = " ".join(block)
        for sentence in re.split(r"(?<=[.!?:])\s+(?=[A-Z`(*])", joined):
            if not _EXAMPLE.search(sentence):
                kept.append(sentence)
        block.clear()

    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or re.match(r"^([-*+]|\d+[.)]|#+)\s", stripped) or stripped.startswith("```"):
            flush()
        if stripped:
            block.append(stripped)
    flush()
    return "\n".join(kept)


def _gitignored(ref: str, patterns: list[str]) -> bool:
    name = ref.rstrip("/")
    for pattern in patterns:
        clean = pattern.strip().rstrip("/")
        if not clean or clean.startswith(("#", "!")):
            continue
        clean = clean.lstrip("/")
        if fnmatch.fnmatchcase(name, clean) or fnmatch.fnmatchcase(name.split("/", 1)[0], clean) or fnmatch.fnmatchcase(name.rsplit("/", 1)[-1], clean):
            return True
    return False


def _is_clear_path(ref: str, repo: _Repo) -> bool:
    body = ref.removeprefix("./").rstrip("/")
    last = body.rsplit("/", 1)[-1]
    suffix = last.rsplit(".", 1)[-1].lower() if "." in last.strip(".") else ""
    if suffix in PATH_SUFFIXES:
        return True
    if "/" in body or ref.endswith("/"):
        first = body.split("/", 1)[0]
        return repo.tree.is_dir(first)  # a branch name or owner/repo slug does not start at a real folder
    return False


def _path_exists(ref: str, repo: _Repo) -> bool:
    body = ref.removeprefix("./").rstrip("/")
    if not body:
        return True
    if repo.tree.exists(body):
        return True
    suffix = "/" + body
    if any(p.endswith(suffix) or p == body for p in repo.files):
        return True
    return any(d.endswith(suffix) or d == body for d in repo.dirs())


def _commands_in_context(text: str, repo: _Repo) -> list[tuple[str, list[str]]]:
    """Each command of the file with the folders its line names (`(in `web/`)`, a package list, or a
    folder mentioned in the sentence); a line that names none means the repository root."""
    out: list[tuple[str, list[str]]] = []
    dirs = repo.dirs()
    for line in text.splitlines():
        commands = commands_in(line)
        if not commands:
            continue
        words = {w.strip("`'\"()[],.;:").rstrip("/") for w in re.split(r"\s+", line)}
        named = sorted({w for w in words if w in dirs and "/" in w} | {w for w in words if w in dirs and f"`{w}/`" in line})
        for command in commands:
            out.append((command, named))
    return out


def _command_broken(command: str, repo: _Repo, analysis: Analysis, dirs: list[str] | None = None) -> bool:
    """True only when the command can be shown not to work: its entry point, script or build file is gone."""
    located = analysis.located_commands()
    if any((d, command) in located for d in (dirs or [""])):
        return False
    try:
        words = shlex.split(command)
    except ValueError:
        return False
    parts: list[list[str]] = [[]]
    for word in words:
        if word in ("&&", "||", ";", "|"):
            parts.append([])
        else:
            parts[-1].append(word)
    here = dirs or [""]
    return any(_part_broken(p, repo, here) for p in parts if p)


def _part_broken(words: list[str], repo: _Repo, here: list[str]) -> bool:
    def _dirs_with(repo: _Repo, *names: str) -> list[str]:
        """The folders the command may run in (its line's, else the root) that hold one of `names`."""
        return [d for d in here if any(repo.tree.is_file(f"{d}/{n}" if d else n) for n in names)]

    while words and re.match(r"^[A-Za-z_]\w*=", words[0]):
        words = words[1:]
    if not words:
        return False
    if words[0] == "cd":
        return len(words) > 1 and safe.clean_rel_path(words[1]) is not None and not repo.tree.is_dir(words[1])
    _prefix, core = split_launcher(words)
    if not core:
        return False
    tool = tool_name(core[0])
    args = core[1:]
    names = [a for a in args if not a.startswith("-") and "=" not in a]
    if tool in ("make", "gmake"):
        if "-C" in args or "-f" in args:
            return False
        dirs = _dirs_with(repo, "Makefile", "makefile", "GNUmakefile")
        if not dirs:
            return True
        makefiles = [repo.lazy.get("make", d) for d in dirs]
        return bool(names) and not any(m is not None and all(m.find(n) is not None for n in names) for m in makefiles)
    if tool in ("npm", "pnpm", "yarn", "bun") and args:
        script = None
        if args[0] in ("run", "run-script") and len(args) > 1:
            script = args[1]
        elif args[0] in ("test", "t") and tool != "bun":
            script = "test"
        if script is None or any(a.startswith(("--filter", "-w", "--workspace", "-r")) for a in args):
            return False
        dirs = _dirs_with(repo, "package.json")
        return not any(script in ep.scripts(repo.lazy.get("package", d) or {}) for d in dirs)
    if tool == "tox":
        dirs = [d for d in _dirs_with(repo, "tox.ini", "tox.toml", "pyproject.toml", "setup.cfg") if repo.lazy.get("tox", d) is not None]
        if not dirs:
            return True
        envs = [e for i, a in enumerate(args[:-1]) if a == "-e" for e in args[i + 1].split(",")]
        return bool(envs) and not any(all(repo.lazy.get("tox", d).has_env(e) for e in envs) for d in dirs)
    if tool == "nox":
        dirs = [d for d in _dirs_with(repo, "noxfile.py") if repo.lazy.get("nox", d) is not None]
        if not dirs:
            return True
        sessions = [args[i + 1] for i, a in enumerate(args[:-1]) if a in ("-s", "--session", "-e")]
        return bool(sessions) and not any(all(repo.lazy.get("nox", d).find(s) is not None for s in sessions) for d in dirs)
    if tool == "composer" and names and names[0] not in ("install", "update", "require", "remove", "exec", "validate", "dump-autoload", "config", "global", "show", "outdated", "bin", "run-script", "run", "audit", "normalize"):
        dirs = _dirs_with(repo, "composer.json")
        return not any(names[0] in (repo.lazy.get("composer", d) or {}) for d in dirs)
    if tool in ("just",) and names:
        dirs = _dirs_with(repo, "justfile", "Justfile", ".justfile")
        return not any(names[0] in (repo.lazy.get("just", d) or {}) for d in dirs)
    if tool in ("mvn",) or core[0] == "./mvnw":
        return not _dirs_with(repo, "pom.xml") or (core[0] == "./mvnw" and not _dirs_with(repo, "mvnw"))
    if core[0] == "./gradlew":
        return not _dirs_with(repo, "gradlew")
    if tool in ("cargo",) and args[:1] in (["test"], ["build"], ["clippy"], ["fmt"], ["check"]):
        return not _dirs_with(repo, "Cargo.toml")
    if tool == "go" and args[:1] in (["test"], ["build"], ["vet"]):
        if not _dirs_with(repo, "go.mod"):
            return True
        return any(a.startswith("./") and "..." not in a and not repo.tree.exists(a[2:]) for a in args)
    if tool in ("pytest", "py.test", "vitest", "jest", "mocha", "rspec", "phpunit", "pest"):
        paths = [a.split("::", 1)[0] for a in names if ("/" in a or a.endswith((".py", ".js", ".ts", ".rb", ".php"))) and a not in ("run",)]
        return any(safe.clean_rel_path(p) is not None and not repo.tree.exists(p) and not _path_exists(p, repo) for p in paths)
    if core[0].startswith(("./", "scripts/", "bin/")) and safe.clean_rel_path(core[0].removeprefix("./")):
        return not repo.tree.is_file(core[0].removeprefix("./"))
    return False


def check(source: Path | TreeBase, base: str | TreeBase | None = None, changed: list[str] | None = None) -> Staleness:
    """What AGENTS.md states that is no longer true, in a folder (no-follow reads) or a tree such as
    a commit's. With `base` (a ref of a git folder, or a tree), only what changed since the base is
    reported: commands and paths that worked at the base and are broken now, and the changed files
    AGENTS.md depends on when the verified commands changed with them. `changed` (or, for a git
    folder and a ref, the files changed since `base`) lists the files of the change."""
    tree = WorkTree(source) if isinstance(source, Path) else source
    text = tree.read_text("AGENTS.md", MAX_AGENTS_MD_BYTES, errors="replace") or ""
    result = Staleness()
    if not text:
        return result
    analysis = analyze(tree)
    repo = _Repo(tree)
    base_tree: TreeBase | None = None
    if isinstance(base, TreeBase):
        base_tree = base
    elif isinstance(base, str) and isinstance(source, Path):
        base_tree = _base_tree(source, base)
        if changed is None:
            changed = _changed_since(source, base)
    base_repo = _Repo(base_tree) if base_tree is not None else None
    base_analysis = analyze(base_tree) if base_tree is not None else None

    # Without a base, what the checkout held when AGENTS.md was last written tells a path that went
    # stale from an example or a placeholder (`CHANGES/1234.bugfix.rst`, `spec/path/to/file_spec.rb`).
    history = _History(source) if base_repo is None and isinstance(source, Path) else None

    for command, dirs in _commands_in_context(text, repo):
        if _command_broken(command, repo, analysis, dirs):
            if base_repo is not None and base_analysis is not None and _command_broken(command, base_repo, base_analysis, dirs):
                continue  # already broken before this change
            files = _test_file_args(command) if history is not None else []
            if files and not any(history.existed(f) for f in files):
                continue  # the test file it names never existed: an example
            if command not in result.stale_commands:
                result.stale_commands.append(command)
    ignored = (safe.read_text(tree, ".gitignore", safe.MAX_SCRIPT_BYTES) or "").splitlines()
    claimed = set(_path_refs(_claims(text)))
    for ref in dict.fromkeys(_path_refs(text)):
        if ref not in claimed:
            continue  # named only as an example ("e.g. `CHANGES/1234.bugfix.rst`")
        clear = _is_clear_path(ref, repo) or (base_repo is not None and _is_clear_path(ref, base_repo))
        if _gitignored(ref, ignored) or not clear or _path_exists(ref, repo):
            continue
        if base_repo is not None and not _path_exists(ref, base_repo):
            continue  # it was not there before this change either
        if history is not None and not history.existed(ref):
            continue  # never in this repository: an example, a placeholder or another project's path
        result.missing_paths.append(ref)
    if changed and "AGENTS.md" not in changed:  # a change that edits AGENTS.md has looked at it
        touched = [p for p in changed if any(p == w or p.startswith(w) or p.rsplit("/", 1)[-1] == w for w in WATCHED)]
        if touched and _facts_moved(base_analysis, analysis):
            result.touched_watched = [p for p in touched if p != "AGENTS.md"]
    return result


class _History:
    """What the repository held when AGENTS.md was last written (the commit that last changed it, else
    HEAD), for a folder that is a git checkout's top. A path AGENTS.md names that was not there then
    is an example, a placeholder or another project's path, not something that went stale. Outside a
    git checkout (or before the first commit) it cannot tell, and every path counts."""

    MAX_LISTING = 16 * 1024 * 1024

    def __init__(self, root: Path) -> None:
        self.root = root
        self._paths: tuple[set[str], set[str]] | None = None
        self._known = (root / ".git").exists()

    def _load(self) -> tuple[set[str], set[str]] | None:
        if self._paths is None and self._known:
            try:
                commit = git.run(self.root, "log", "-1", "--format=%H", "--", "AGENTS.md", timeout=30, max_output=4096).decode().strip()
                commit = commit or git.run(self.root, "rev-parse", "--verify", "--quiet", "HEAD^{commit}", check=False,
                                           timeout=30, max_output=4096).decode().strip()
                if not re.fullmatch(r"[0-9a-f]{40,64}", commit):
                    self._known = False
                    return None
                listing = git.run(self.root, "ls-tree", "-r", "-z", "--name-only", "--end-of-options", commit, timeout=60,
                                  max_output=self.MAX_LISTING, truncate=True)
            except git.GitError:
                self._known = False
                return None
            files = {p for p in listing.decode("utf-8", "surrogateescape").split("\0") if p}
            dirs = {f.rsplit("/", 1)[0] for f in files if "/" in f}
            dirs |= {d.rsplit("/", i)[0] for d in list(dirs) for i in range(1, d.count("/") + 1)}
            self._paths = (files, dirs)
        return self._paths

    def existed(self, ref: str) -> bool:
        paths = self._load()
        if paths is None:
            return True
        body = ref.removeprefix("./").rstrip("/")
        files, dirs = paths
        if body in files or body in dirs:
            return True
        tail = "/" + body
        return any(p.endswith(tail) for p in files) or any(d.endswith(tail) for d in dirs)


def _test_file_args(command: str) -> list[str]:
    """The test files a test-runner command names (`pytest tests/test_x.py::t` -> tests/test_x.py)."""
    try:
        words = shlex.split(command)
    except ValueError:
        return []
    return [w.split("::", 1)[0] for w in words
            if not w.startswith("-") and ("/" in w or w.endswith((".py", ".js", ".ts", ".rb", ".php"))) and w not in ("run",)]


def _facts_moved(before: Analysis | None, after: Analysis) -> bool:
    """Whether the change moved any fact the generator would write (commands, versions, tools,
    layout); without a base, assume it may have."""
    if before is None:
        return True
    return render(before, "repository") != render(after, "repository")


def _base_tree(root: Path, base: str) -> TreeBase | None:
    try:
        base_sha, head_sha = git.resolve_commit(root, base), git.resolve_commit(root, "HEAD")
        if not base_sha or not head_sha:
            return None
        merge_base = git.run(root, "merge-base", "--end-of-options", base_sha, head_sha, timeout=60).decode().strip()
        return GitTree(root, merge_base or base_sha)
    except (git.GitError, ValueError):
        return None


def _changed_since(root: Path, base: str) -> list[str]:
    """Files changed between the merge base with `base` and HEAD (`git diff base...HEAD`)."""
    try:
        base_sha, head_sha = git.resolve_commit(root, base), git.resolve_commit(root, "HEAD")
        if not base_sha or not head_sha:
            return []
        out = git.run(root, "diff", "--name-only", "-z", "--no-renames", "--end-of-options", f"{base_sha}...{head_sha}", timeout=60)
    except git.GitError:
        return []
    return [p for p in out.decode("utf-8", "surrogateescape").split("\0") if p]
