"""AGENTS.md analysis against real repositories: are the test and lint commands the ones CI runs?

    # 1. Prepare: clone every repository of the gold file at its pinned commit (outside this repo).
    .venv/bin/python bench/agentsmd.py prepare --corpus /work/corpus [--split S] [--repo owner/name ...]
    #    (from local mirrors instead of GitHub: --mirror-root DIR, a DIR/<owner>+<name>/repo bare clone each;
    #     repositories without a mirror are skipped)
    # 2. Score the analyser and the naive per-language default.
    .venv/bin/python bench/agentsmd.py run --corpus /work/corpus [--split dev|heldout-1..heldout-13|all] [--repo owner/name] [--show-misses] [--json]
    #    (held-out gold not yet run sits in bench/agentsmd_sealed.json; --sealed adds it, for its first run only)
    # 3. The staleness check on the corpus's own hand-written AGENTS.md files (findings to judge by hand).
    .venv/bin/python bench/agentsmd.py staleness --corpus /work/corpus [--commits 5]

The gold file (`bench/agentsmd_gold.json`) holds, per repository, its URL and pinned commit, its
ecosystem, and the test and lint commands its CI runs (read by hand from the CI files). Scoring:

- test top-1: the first test command the analysis gives (with its folder) matches one of the gold
  test patterns; over repositories whose CI runs tests.
- lint: the first lint/format/type-check command matches one of the gold lint patterns; over
  repositories whose CI runs a lint of its own.
- false-command rate: of every command printed in the generated AGENTS.md, the share that would
  not work as written. A command is counted as working when it matches the gold (CI runs it), or
  when a mechanical check finds its target: the Makefile target, package.json script, tox env, nox
  session, composer script, rake task, hatch script, pixi or poe task or Taskfile task exists in that folder; the build file the tool
  needs exists (`go.mod`, `Cargo.toml`, `pom.xml`, `gradlew`, a solution, `CMakeLists.txt`); the test
  file a one-test command names exists. Anything else is counted as false.
- the naive default is one command per ecosystem (pytest, npm test, go test ./..., cargo test,
  mvn test, ./gradlew test, rspec or rake test, phpunit, dotnet test, ctest or meson test; for lint:
  ruff check ., npm run lint, golangci-lint run, cargo clippy, mvn checkstyle:check, ./gradlew check,
  rubocop, phpstan analyse, dotnet format --verify-no-changes), scored the same way.

Matching normalises both sides the same way: whitespace; quotes; leading `VAR=value`; launchers that
only choose the environment (`uv run [options]`, `uvx [options]`, `poetry run`, `pdm run` and `pipenv run` before a
tool, `bundle exec`, `npx`, `pnpm exec`, `yarn exec`, `bunx`, `composer exec`, `python -m`, `php -d ...`);
`vendor/bin/`, `./vendor/bin/`, `./node_modules/.bin/`; a leading `./` on scripts; `./mvnw` as `mvn`;
Maven's and Gradle's output-only flags (`-B`, `-q`, `-ntp`, `-ff`, `--stacktrace`, `--scan`, ...);
`npm run test` as `npm test`; `pnpm run X` / `yarn run X` as `pnpm X` / `yarn X`; `nox --session X` as
`nox -s X`; a trailing switch that only turns watch mode off (`--run`, `-- --run`, `--watch=false`).
Gold patterns may use `*`. A printed command that appears as written in a CI file counts as working.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import re
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from aiplane.agentsmd.analyze import analyze  # noqa: E402
from aiplane.agentsmd.generate import commands_in, render  # noqa: E402

GOLD = ROOT / "bench" / "agentsmd_gold.json"
# Held-out gold committed before its first run and kept apart until then, so that runs over
# --split all (while the analyser is being fixed) never score it by accident.
SEALED = ROOT / "bench" / "agentsmd_sealed.json"
SPLITS = ("dev", "heldout-1", "heldout-2", "heldout-3", "heldout-4", "heldout-5", "heldout-6", "heldout-7", "heldout-8", "heldout-9", "heldout-10", "heldout-11", "heldout-12", "heldout-13", "all")
_PY_TOOLS = {"pytest", "tox", "nox", "mypy", "ruff", "black", "isort", "flake8", "pylint", "coverage", "pre-commit", "pyright", "unittest",
             "codespell", "sphinx-build", "mkdocs", "python"}
_MAVEN_NOISE = {"-B", "--batch-mode", "-q", "--quiet", "-ntp", "--no-transfer-progress", "-ff", "--fail-fast", "-e", "--errors", "-V",
                "--show-version"}
_GRADLE_NOISE = {"--stacktrace", "-s", "--scan", "--info", "-i", "--no-daemon", "--console=plain", "-q", "--quiet", "--build-cache",
                 "--parallel", "--continue", "--warning-mode=all"}


def _words(command: str) -> list[str]:
    try:
        return shlex.split(command)
    except ValueError:
        return command.split()


def _normalise_one(command: str) -> str:
    words = _words(command)
    while words and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0]):
        words = words[1:]
    for _ in range(4):
        if words[:1] == ["uvx"] or words[:3] == ["uv", "tool", "run"]:
            i = 1 if words[0] == "uvx" else 3
            while i < len(words) and words[i].startswith("-"):
                i += 1 if "=" in words[i] else 2
            words = words[i:]
        elif words[:2] in (["uv", "run"], ["rye", "run"]):
            i = 2
            while i < len(words) and words[i].startswith("-") and words[i] != "--":
                i += 2 if words[i] in ("--group", "--extra", "--with", "--python", "-p", "--directory", "--package", "--only-group") else 1
            words = words[i + (1 if i < len(words) and words[i] == "--" else 0):]
        elif words[:2] == ["pixi", "run"] and any(w in _PY_TOOLS for w in words[2:5]):
            i = 2  # `pixi run -e ENV --frozen pytest ...`: the environment, then the tool
            while i < len(words) and words[i].startswith("-"):
                i += 2 if words[i] in ("-e", "--environment", "--manifest-path") else 1
            words = words[i:] if i < len(words) and words[i] in _PY_TOOLS else words
        elif words[:2] in (["poetry", "run"], ["pdm", "run"], ["pipenv", "run"]) and len(words) > 2 and words[2] in _PY_TOOLS:
            words = words[2:]
        elif words[:2] in (["bundle", "exec"], ["pnpm", "exec"], ["yarn", "exec"], ["composer", "exec"]):
            words = words[2:]
            if words[:1] == ["--"]:
                words = words[1:]
        elif words[:1] in (["npx"], ["bunx"]):
            words = [w for w in words[1:] if w not in ("-y", "--yes", "--no-install")]
        elif words[:1] and re.fullmatch(r"python3?(\.\d+)?", words[0]) and len(words) > 2 and words[1] in ("-m", "-Im"):
            words = words[2:]
        elif words[:1] == ["php"] and len(words) > 1:
            i = 1
            while i < len(words) and words[i].startswith("-"):
                i += 2 if words[i] == "-d" else 1
            words = words[i:]
        else:
            break
    if words:
        head = words[0]
        for prefix in ("./vendor/bin/", "vendor/bin/", "./node_modules/.bin/", "node_modules/.bin/"):
            if head.startswith(prefix):
                head = head[len(prefix):]
        head = head.removeprefix("./")
        if head in ("mvnw", "mvn"):
            head = "mvn"
            words = [w for w in words if w not in _MAVEN_NOISE]
        if head == "gradlew":
            head = "./gradlew"
        if head in ("./gradlew", "gradle"):
            words = [w for w in words if w not in _GRADLE_NOISE]
        words[0] = head
        if head in ("npm", "pnpm", "yarn") and words[1:3] == ["run", "test"]:
            words = [head, "test", *words[3:]]
        elif head in ("pnpm", "yarn") and words[1:2] == ["run"] and len(words) > 2:
            words = [head, *words[2:]]
        if head == "nox":
            out = [words[0]]
            i = 1
            while i < len(words):
                if words[i] in ("--session", "--sessions", "-e"):
                    out.append("-s")
                elif words[i].startswith("--session="):
                    out += ["-s", words[i].split("=", 1)[1]]
                else:
                    out.append(words[i])
                i += 1
            words = out
    return " ".join(words)


def normalise(command: str) -> str:
    text = " && ".join(_normalise_one(part) for part in command.split(" && "))
    return re.sub(r"( -- --run| --run| --watch=false)$", "", text)  # watch mode off: the same tests


def matches(command: str | None, patterns: list[str]) -> bool:
    if not command:
        return False
    norm = normalise(command)
    return any(fnmatch.fnmatchcase(norm, normalise(p)) or norm == p for p in patterns)


def with_cwd(value: str, cwd: str) -> str:
    return f"cd {cwd} && {value}" if cwd else value


# -- the mechanical check of a printed command ------------------------------------------------------------


def _has_make_target(folder: Path, target: str) -> bool:
    for name in ("GNUmakefile", "makefile", "Makefile"):
        path = folder / name
        if path.is_file():
            text = path.read_text(errors="replace")
            if re.search(rf"^{re.escape(target)}\s*:(?!=)", text, re.M):
                return True
            for pattern in re.findall(r"^([A-Za-z0-9_.-]*%[A-Za-z0-9_.-]*)\s*:", text, re.M):
                if fnmatch.fnmatchcase(target, pattern.replace("%", "*")):
                    return True
            return False
    return False


def _package_deps(folder: Path) -> set:
    try:
        data = json.loads((folder / "package.json").read_text())
    except (OSError, ValueError):
        return set()
    return {name for key in ("dependencies", "devDependencies") for name in (data.get(key) or {})}


def _package_scripts(folder: Path) -> dict:
    try:
        return json.loads((folder / "package.json").read_text()).get("scripts") or {}
    except (OSError, ValueError, AttributeError):
        return {}


def _ci_text(repo: Path) -> str:
    paths = [*sorted((repo / ".github" / "workflows").glob("*.y*ml")), *sorted((repo / ".github" / "actions").glob("*/action.y*ml")),
             repo / ".gitlab-ci.yml", repo / ".circleci" / "config.yml", repo / "azure-pipelines.yml", repo / ".travis.yml"]
    text = "\n".join(p.read_text(errors="replace") for p in paths if p.is_file())
    return re.sub(r"\s+", " ", text.replace("\\\n", " "))


def in_ci(command: str, repo: Path) -> bool:
    """The command appears as written in a CI file: CI runs it (the cwd prefix is CI's working-directory)."""
    plain = command.split(" && ", 1)[1] if command.startswith("cd ") and " && " in command else command
    return len(plain) > 6 and plain in _ci_text(repo)


def mechanically_valid(command: str, repo: Path) -> bool:
    if in_ci(command, repo):
        return True
    cwd = repo
    parts = command.split(" && ")
    if parts[0].startswith("cd "):
        cwd = repo / parts[0][3:].strip()
        parts = parts[1:]
        if not cwd.is_dir():
            return parts[:1] != [] and parts[0].startswith("ctest")
    if len(parts) > 1:
        # A native build chain works when it configures first (`cmake -B dir` / `meson setup dir`), then builds.
        native = all(p.split()[0] in ("cmake", "meson") for p in parts)
        first = parts[0].split()
        configures = (first[0] == "cmake" and not {"--build", "--install", "-E", "-P"} & set(first)) or first[:2] == ["meson", "setup"]
        return all(mechanically_valid(p, cwd) for p in parts) or (native and configures)
    words = normalise(parts[0]).split()
    if not words:
        return False
    head = words[0]
    args = words[1:]

    def exists(path: str) -> bool:
        return (cwd / path.split("::", 1)[0]).exists()

    if head == "make":
        targets = [a for a in args if not a.startswith("-") and "=" not in a]
        return all(_has_make_target(cwd, t) for t in targets) if targets else (cwd / "Makefile").is_file()
    if head in ("npm", "pnpm", "yarn", "bun"):
        scripts = _package_scripts(cwd)
        name = args[1] if args[:1] == ["run"] and len(args) > 1 else args[0] if args else ""
        if name in scripts or (head == "bun" and name == "test"):
            return True
        # `yarn vitest run test/x.spec.ts`: yarn and pnpm run a declared tool's binary by its name
        return head in ("yarn", "pnpm") and name in _package_deps(cwd) and all(exists(a) for a in args[1:] if "/" in a)
    if head == "tox":
        text = "".join((cwd / n).read_text(errors="replace") for n in ("tox.ini", "tox.toml", "pyproject.toml", "setup.cfg") if (cwd / n).is_file())
        envs = [args[i + 1] for i, a in enumerate(args[:-1]) if a == "-e"]
        return bool(text) and all(re.fullmatch(r"(py|pypy)\d*[\d.]*t?", e) or e in text or re.sub(r"\d", "", e) in text for e in envs)
    if head == "nox":
        text = (cwd / "noxfile.py").read_text(errors="replace") if (cwd / "noxfile.py").is_file() else ""
        sessions = [args[i + 1] for i, a in enumerate(args[:-1]) if a == "-s"]
        return bool(text) and all(re.sub(r"-[\d.]+t?$", "", s) in text for s in sessions)
    if head == "task":
        # go-task: the named tasks exist in the folder's Taskfile (a task of an included Taskfile is not looked up)
        text = "".join((cwd / n).read_text(errors="replace") for n in ("Taskfile.yml", "Taskfile.yaml", "taskfile.yml", "taskfile.yaml")
                       if (cwd / n).is_file())
        names = [a for a in args if not a.startswith("-") and "=" not in a] or ["default"]
        return bool(text) and all(re.search(rf"^\s+['\"]?{re.escape(n)}['\"]?:\s*(#.*)?$", text, re.M) for n in names)
    if head == "composer" and args:
        try:
            return args[0] in (json.loads((cwd / "composer.json").read_text()).get("scripts") or {})
        except (OSError, ValueError):
            return False
    if head == "rake":
        text = (cwd / "Rakefile").read_text(errors="replace") if (cwd / "Rakefile").is_file() else ""
        return bool(text) and all(a.split(":")[-1] in text for a in args if not a.startswith("-"))
    if head in ("pixi", "poe"):
        # the task exists in the folder's pixi or poe tables (`pixi run -e ENV TASK`, `poe TASK`)
        text = "".join((cwd / n).read_text(errors="replace") for n in ("pyproject.toml", "pixi.toml") if (cwd / n).is_file())
        rest = args[1:] if head == "pixi" and args[:1] == ["run"] else args
        while rest and rest[0].startswith("-"):
            rest = rest[2:] if rest[0] in ("-e", "--environment", "--manifest-path") else rest[1:]
        return bool(rest) and re.search(rf"^\s*['\"]?{re.escape(rest[0])}['\"]?\s*=", text, re.M) is not None
    if head == "hatch":
        text = "".join((cwd / n).read_text(errors="replace") for n in ("pyproject.toml", "hatch.toml") if (cwd / n).is_file())
        return args[:1] == ["test"] or (args[:1] == ["run"] and len(args) > 1 and args[1].split(":")[-1] in text)
    if head == "go":
        return (cwd / "go.mod").is_file() and all(exists(a) for a in args if a.startswith("./") and "..." not in a)
    if head in ("cargo",):
        return (cwd / "Cargo.toml").is_file() and ("--test" not in args or exists(f"tests/{args[args.index('--test') + 1]}.rs"))
    if head == "mvn":
        test = next((a.split("=", 1)[1] for a in args if a.startswith("-Dtest=")), None)
        return (cwd / "pom.xml").is_file() and (test is None or any(cwd.rglob(f"{test}.java")))
    if head in ("./gradlew", "gradle"):
        test = args[args.index("--tests") + 1] if "--tests" in args else None
        ok = (cwd / "gradlew").is_file() if head == "./gradlew" else True
        return ok and (test is None or any(cwd.rglob(test.rsplit(".", 1)[-1] + ".*")))
    if head == "dotnet":
        return any(cwd.glob("*.sln*")) or any(cwd.rglob("*.csproj"))
    if head == "ctest":
        return (cwd / "CMakeLists.txt").is_file()
    if head in ("pytest", "vitest", "jest", "mocha", "rspec", "phpunit", "simple-phpunit", "pest", "node", "ruby", "bun"):
        paths = [a for a in args if not a.startswith("-") and ("/" in a or "." in a) and a not in ("run", "test")]
        return bool(paths) and all(exists(p) for p in paths)
    # A tool that the project declares and configures runs as written (whether the tree passes it is
    # another question): pre-commit with its config, rubocop, eslint, ruff.
    if head in ("pre-commit", "prek") and args[:1] == ["run"]:
        return (cwd / ".pre-commit-config.yaml").is_file()
    if head == "rubocop":
        gemfile = (cwd / "Gemfile").read_text(errors="replace") if (cwd / "Gemfile").is_file() else ""
        return "rubocop" in gemfile and (cwd / ".rubocop.yml").is_file()
    if head == "eslint":
        package = (cwd / "package.json").read_text(errors="replace") if (cwd / "package.json").is_file() else ""
        return '"eslint"' in package and any(cwd.glob("eslint.config.*")) or any(cwd.glob(".eslintrc*"))
    if head == "unittest":
        modules = [a for a in args if not a.startswith("-")]
        return bool(modules) and all((cwd / (m.replace(".", "/") + ".py")).is_file() for m in modules)
    return False


# -- naive default ------------------------------------------------------------------------------------------------


def naive(ecosystem: str, repo: Path) -> tuple[str, str | None]:
    if ecosystem == "python":
        return "pytest", "ruff check ."
    if ecosystem == "js":
        return "npm test", "npm run lint"
    if ecosystem == "go":
        return "go test ./...", "golangci-lint run"
    if ecosystem == "rust":
        return "cargo test", "cargo clippy"
    if ecosystem == "java-maven":
        return "mvn test", "mvn checkstyle:check"
    if ecosystem == "java-gradle":
        return "./gradlew test", "./gradlew check"
    if ecosystem == "ruby":
        return ("bundle exec rspec" if (repo / "spec").is_dir() else "bundle exec rake test"), "bundle exec rubocop"
    if ecosystem == "php":
        return "vendor/bin/phpunit", "vendor/bin/phpstan analyse"
    if ecosystem == "dotnet":
        return "dotnet test", "dotnet format --verify-no-changes"
    if ecosystem == "cpp":
        return ("meson test" if (repo / "meson.build").is_file() and not (repo / "CMakeLists.txt").is_file() else "ctest"), None
    return "", None


# -- commands -----------------------------------------------------------------------------------------------------


def _gold(args: argparse.Namespace) -> dict:
    gold = json.loads(GOLD.read_text())
    if getattr(args, "sealed", False) and SEALED.exists():
        gold["repos"] += json.loads(SEALED.read_text())["repos"]
    return gold


def prepare(args: argparse.Namespace) -> None:
    gold = _gold(args)
    corpus = Path(args.corpus)
    corpus.mkdir(parents=True, exist_ok=True)
    for entry in gold["repos"]:
        if (args.split != "all" and entry["split"] != args.split) or (args.repo and entry["repo"] not in args.repo):
            continue
        target = corpus / entry["repo"].replace("/", "+")
        source = entry["url"]
        if args.mirror_root:
            source = str(Path(args.mirror_root) / entry["repo"].replace("/", "+") / "repo")
            if not Path(source).is_dir() and not (target / ".git").exists():
                print(f"{entry['repo']}: no mirror at {source}, skipped", file=sys.stderr)
                continue
        if not (target / ".git").exists():
            subprocess.run(["git", "clone", "-q", "--no-checkout", source, str(target)], check=True)
        subprocess.run(["git", "-C", str(target), "checkout", "-q", "-f", entry["commit"]], check=False)
        print(f"{entry['repo']} @ {entry['commit'][:12]}")


def run(args: argparse.Namespace) -> None:
    gold = _gold(args)
    corpus = Path(args.corpus)
    rows = []
    for entry in gold["repos"]:
        if (args.split != "all" and entry["split"] != args.split) or (args.repo and entry["repo"] not in args.repo):
            continue
        repo = corpus / entry["repo"].replace("/", "+")
        if not repo.is_dir():
            print(f"missing {repo}; run `prepare` first", file=sys.stderr)
            continue
        samples, analysis, crash = [], None, None
        for _ in range(args.repeat):
            started = time.perf_counter()
            try:
                analysis = analyze(repo)
            except Exception as exc:  # noqa: BLE001 - a crash is a result here
                crash = f"{exc.__class__.__name__}: {exc}"
                break
            samples.append(time.perf_counter() - started)
        row = {"repo": entry["repo"], "ecosystem": entry["ecosystem"], "crash": crash, "ms": statistics.median(samples) * 1000 if samples else None}
        if analysis is not None:
            test = with_cwd(analysis.test[0].value, analysis.test[0].cwd) if analysis.test else None
            lint = with_cwd(analysis.lint[0].value, analysis.lint[0].cwd) if analysis.lint else None
            try:
                text = render(analysis, repo.name)
                printed = commands_in(text)
            except Exception as exc:  # noqa: BLE001
                row["crash"] = f"render: {exc.__class__.__name__}: {exc}"
                printed = []
            known = entry["test"] + entry["lint"] + entry.get("valid", [])
            by_value = {f.value: f.cwd for f in analysis.test + analysis.lint + analysis.single_test + analysis.build_commands}
            for package in analysis.packages:
                by_value.update({f.value: f"{package.root}/{f.cwd}".rstrip("/") for f in package.test + package.lint + package.single_test})
            false = []
            for command in printed:
                full = with_cwd(command, by_value.get(command, ""))
                if not (matches(full, known) or mechanically_valid(full, repo)):
                    false.append(full)
            naive_test, naive_lint = naive(entry["ecosystem"], repo)
            naive_printed = [c for c in (naive_test, naive_lint) if c]
            row.update({
                "test": test, "test_ok": matches(test, entry["test"]) if entry["test"] else None,
                "lint": lint, "lint_ok": matches(lint, entry["lint"]) if entry["lint"] else None,
                "printed": len(printed), "false": false,
                "naive_test_ok": matches(naive_test, entry["test"]) if entry["test"] else None,
                "naive_lint_ok": matches(naive_lint, entry["lint"]) if entry["lint"] else None,
                "naive_printed": len(naive_printed),
                "naive_false": [c for c in naive_printed if not (matches(c, known) or mechanically_valid(c, repo))],
            })
        rows.append(row)
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    print("| repository | ecosystem | ms | test (top-1) | ok | lint (first) | ok | printed | false |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        mark = {True: "yes", False: "**no**", None: "—"}
        print(f"| {row['repo']} | {row['ecosystem']} | {row['ms']:.0f} | `{row.get('test')}` | {mark[row.get('test_ok')]} | "
              f"`{row.get('lint')}` | {mark[row.get('lint_ok')]} | {row.get('printed', 0)} | {len(row.get('false', []))} |"
              if row["ms"] is not None else f"| {row['repo']} | {row['ecosystem']} | crash: {row['crash']} |")
    summary(rows)
    if args.show_misses:
        for row in rows:
            for command in row.get("false", []):
                print(f"false command in {row['repo']}: {command}")


def summary(rows: list[dict]) -> None:
    def share(values: list[bool | None]) -> str:
        counted = [v for v in values if v is not None]
        return f"{sum(counted)}/{len(counted)} = {100 * sum(counted) / max(1, len(counted)):.0f}%"

    printed = sum(r.get("printed", 0) for r in rows)
    false = sum(len(r.get("false", [])) for r in rows)
    naive_printed = sum(r.get("naive_printed", 0) for r in rows)
    naive_false = sum(len(r.get("naive_false", [])) for r in rows)
    times = [r["ms"] for r in rows if r["ms"] is not None]
    ecosystems: dict[str, int] = {}
    for row in rows:
        ecosystems[row["ecosystem"]] = ecosystems.get(row["ecosystem"], 0) + 1
    print()
    print(f"repositories: {len(rows)} ({', '.join(f'{k} {v}' for k, v in sorted(ecosystems.items()))}); crashes: {sum(1 for r in rows if r['crash'])}")
    print(f"test top-1:  analysis {share([r.get('test_ok') for r in rows])}; naive default {share([r.get('naive_test_ok') for r in rows])}")
    print(f"lint first:  analysis {share([r.get('lint_ok') for r in rows])}; naive default {share([r.get('naive_lint_ok') for r in rows])}")
    print(f"false commands: analysis {false}/{printed} = {100 * false / max(1, printed):.1f}% "
          f"(files with one: {sum(1 for r in rows if r.get('false'))}); naive default {naive_false}/{naive_printed} = {100 * naive_false / max(1, naive_printed):.1f}%")
    if times:
        print(f"analysis time: median {statistics.median(times):.0f} ms, max {max(times):.0f} ms")


def staleness(args: argparse.Namespace) -> None:
    """The staleness check on real hand-written AGENTS.md files: at HEAD without a base (the CLI), and
    for each of the last commits against its parent (what the reviewer runs on a change). Every
    finding is printed to be judged by hand; on a current file at HEAD each one is suspect."""
    from aiplane.agentsmd.generate import check
    from aiplane.repository.tree import GitTree

    corpus = Path(args.corpus)
    repos = sorted(p for p in corpus.iterdir() if (p / ".git").exists() and (p / "AGENTS.md").is_file())
    findings = checks = 0
    times: list[float] = []
    for repo in repos:
        started = time.perf_counter()
        result = check(repo)
        times.append(time.perf_counter() - started)
        checks += 1
        found = [f"stale command: {c}" for c in result.stale_commands] + [f"missing path: {p}" for p in result.missing_paths]
        findings += len(found)
        for line in found:
            print(f"{repo.name} @ HEAD: {line}")
        revs = subprocess.run(["git", "-C", str(repo), "log", f"-{args.commits}", "--format=%H %P", "--", "."],
                              capture_output=True, text=True, check=False).stdout.split("\n")
        for rev in revs:
            parts = rev.split()
            if len(parts) != 2:
                continue  # a root or merge commit
            head, parent = parts
            changed = subprocess.run(["git", "-C", str(repo), "diff", "--name-only", parent, head], capture_output=True, text=True,
                                     check=False).stdout.split()
            started = time.perf_counter()
            result = check(GitTree(repo, head), base=GitTree(repo, parent), changed=changed)
            times.append(time.perf_counter() - started)
            checks += 1
            found = ([f"stale command: {c}" for c in result.stale_commands] + [f"missing path: {p}" for p in result.missing_paths]
                     + [f"changed: {p}" for p in result.touched_watched])
            findings += len(found)
            for line in found:
                print(f"{repo.name} @ {head[:10]}: {line}")
    print(f"repositories with AGENTS.md: {len(repos)}; checks: {checks}; findings: {findings}; "
          f"median check {statistics.median(times) * 1000 if times else 0:.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="clone the gold repositories at their pinned commits")
    p.add_argument("--corpus", required=True)
    p.add_argument("--mirror-root", help="clone from DIR/<owner>+<name>/repo instead of GitHub (repositories without one are skipped)")
    p.add_argument("--split", default="all", choices=SPLITS)
    p.add_argument("--repo", action="append", help="only this owner/name (repeatable)")
    p.add_argument("--sealed", action="store_true", help="include the sealed held-out gold (bench/agentsmd_sealed.json)")
    r = sub.add_parser("run", help="score the analysis against the gold file")
    r.add_argument("--corpus", required=True)
    r.add_argument("--split", default="all", choices=SPLITS)
    r.add_argument("--repo", action="append", help="only this owner/name (repeatable)")
    r.add_argument("--sealed", action="store_true", help="include the sealed held-out gold: only for a split's first run")
    r.add_argument("--repeat", type=int, default=3)
    r.add_argument("--show-misses", action="store_true")
    r.add_argument("--json", action="store_true")
    t = sub.add_parser("staleness", help="run the staleness check on the corpus's own AGENTS.md files")
    t.add_argument("--corpus", required=True)
    t.add_argument("--commits", type=int, default=5, help="recent commits checked against their parents")
    args = parser.parse_args()
    {"prepare": prepare, "run": run, "staleness": staleness}[args.command](args)


if __name__ == "__main__":
    main()
