"""Layout facts from evidence: source and test folders that hold code, real workspace packages,
generated or vendored paths, a few conventions the configuration states, and how to run one test.
A line without evidence is not produced."""

from __future__ import annotations

import fnmatch
import re
from typing import Any

from aiplane.agentsmd import entrypoints as ep
from aiplane.agentsmd import safe
from aiplane.repository.tree import TreeBase

CODE_SUFFIXES = {".py", ".ts", ".tsx", ".js", ".jsx", ".mjs", ".cjs", ".go", ".rs", ".java", ".kt", ".kts", ".rb", ".c", ".h",
                 ".cc", ".cpp", ".cxx", ".hpp", ".hh", ".cs", ".fs", ".swift", ".php", ".scala", ".vue", ".svelte", ".ex", ".exs"}
NOT_SOURCE = {"tests", "test", "spec", "specs", "docs", "doc", "documentation", "examples", "example", "benchmarks", "benchmark",
              "bench", "benches", "scripts", "script", "tools", "tool", "ci", ".ci", ".github", "samples", "sample", "fixtures",
              "testdata", "test_data", "e2e", "playground", "demo", "demos", "contrib", "extras", "misc", "build", "dist", "target",
              "vendor", "third_party", "thirdparty", "node_modules", "assets", "static", "public", "site", "website", "changelog.d",
              "changes", "release", "packaging", "__tests__", "testing", "t", "integration", "integration_tests", "fuzz", "perf",
              "coverage", "htmlcov", "bin", "typings", "types", "stubs", "tmp", "temp", "out", "cmake", "m4", "debian", "rpm",
              "nix", "docker", "deploy", "deployment", "k8s", "helm", "config", "configs", "etc", "data", "resources", "res",
              "runtime-tests", "perf-measures", "benchmarks-new", "gradle", "buildSrc", ".mvn", ".cargo", ".devcontainer", ".vscode",
              "codemods", "test_suite", "examples-old", "sandbox", "util", "utils", "support"}
TEST_DIRS = ("tests", "test", "spec", "specs", "__tests__", "testing", "t", "unittests", "test_suite")
_TEST_FILE = re.compile(r"(^test_.*\.py$|.*_test\.py$|.*_test\.go$|.*\.(test|spec)\.[cm]?[jt]sx?$|.*_spec\.rb$|.*_test\.rb$|^test_.*\.rb$|"
                        r".*Test\.(java|kt|php|cs)$|.*Tests\.(java|kt|cs)$|.*_test\.(c|cc|cpp)$|^test.*\.(c|cc|cpp)$)")


def _join(dir_: str, name: str) -> str:
    return f"{dir_}/{name}" if dir_ else name


def _suffix(name: str) -> str:
    return "." + name.rsplit(".", 1)[-1] if "." in name else ""


def source_roots(tree: TreeBase, files: list[Any], ecosystems: list[str]) -> list[str]:
    """Top-level folders (and `src/<package>/` for Python) holding a real share of the code."""
    sizes: dict[str, int] = {}
    total = 0
    for entry in files:
        if _suffix(entry.name) not in CODE_SUFFIXES or _TEST_FILE.match(entry.name):
            continue
        total += entry.size
        if "/" not in entry.path:
            sizes[""] = sizes.get("", 0) + entry.size
            continue
        top = entry.path.split("/", 1)[0]
        sizes[top] = sizes.get(top, 0) + entry.size
    if not total:
        return []
    out: list[str] = []
    for top, size in sorted(sizes.items(), key=lambda kv: -kv[1]):
        if top == "" or top in NOT_SOURCE or top.startswith(".") or size / total < 0.05:
            continue
        path = safe.clean_rel_path(top)
        if path is None or not tree.is_dir(top):
            continue
        if top == "src" and "python" in ecosystems:
            packages = [e.name for e in tree.list_dir("src") if e.kind == "dir" and tree.is_file(f"src/{e.name}/__init__.py")]
            if len(packages) == 1 and safe.clean_rel_path(f"src/{packages[0]}"):
                out.append(f"src/{packages[0]}/")
                continue
        if top == "src" and ("maven" in ecosystems or "gradle" in ecosystems) and tree.is_dir("src/main"):
            out.append("src/main/")
            continue
        out.append(f"{path}/")
        if len(out) >= 4:
            break
    if sizes.get("", 0) / total >= 0.2 and "go" in ecosystems:
        out.insert(0, "the repository root (Go package)")
    return out


def test_roots(tree: TreeBase, files: list[Any]) -> list[str]:
    out: list[str] = []
    for name in TEST_DIRS:
        if tree.is_dir(name) and any(f.path.startswith(name + "/") for f in files):
            out.append(f"{name}/")
    if tree.is_dir("src/test"):
        out.append("src/test/")
    colocated = [f for f in files if _TEST_FILE.match(f.name) and not any(f.path.startswith(d + "/") for d in (*TEST_DIRS, "src/test"))
                 and f.path.split("/", 1)[0] not in NOT_SOURCE and "/tests/" not in f.path and "/test/" not in f.path]
    if len(colocated) >= 2 or (colocated and not out):
        suffixes = sorted({_pattern(f.name) for f in colocated if _pattern(f.name)})
        for pattern in suffixes[:2]:
            out.append(f"{pattern} next to the code")
    return out[:4]


def _pattern(name: str) -> str:
    for regex, pattern in ((r"_test\.go$", "*_test.go"), (r"\.test\.tsx?$", "*.test.ts"), (r"\.test\.[cm]?jsx?$", "*.test.js"),
                           (r"\.spec\.tsx?$", "*.spec.ts"), (r"\.spec\.[cm]?jsx?$", "*.spec.js"), (r"^test_.*\.py$", "test_*.py"),
                           (r"_spec\.rb$", "*_spec.rb")):
        if re.search(regex, name):
            return pattern
    return ""


# -- workspace packages -------------------------------------------------------------------------------------

MANIFESTS = ("package.json", "pyproject.toml", "Cargo.toml", "go.mod", "pom.xml", "build.gradle", "build.gradle.kts", "composer.json",
             "setup.py", "Gemfile", "CMakeLists.txt")


def workspace_members(tree: TreeBase, lazy: ep.Lazy) -> tuple[list[str], str]:
    """Folders declared as workspace members that exist and hold their own manifest, and where that
    is declared. Members outside the repository (`../x`) or that are the root itself are dropped."""
    declared: list[tuple[str, str, tuple[str, ...]]] = []  # (pattern, evidence, manifests that count)
    excluded: list[str] = []
    pnpm = safe.load_yaml(safe.read_text(tree, "pnpm-workspace.yaml"))
    for pattern in safe.strs(safe.as_dict(pnpm).get("packages")):
        (excluded if pattern.startswith("!") else declared).append(pattern.lstrip("!") if pattern.startswith("!") else (pattern, "pnpm-workspace.yaml:1", ("package.json",)))  # type: ignore[arg-type]
    package = lazy.get("package", "") or {}
    workspaces = package.get("workspaces")
    for pattern in safe.strs(workspaces) + safe.strs(safe.as_dict(workspaces).get("packages")):
        if pattern.startswith("!"):
            excluded.append(pattern[1:])
        else:
            declared.append((pattern, "package.json:1", ("package.json",)))
    cargo = safe.load_toml(safe.read_text(tree, "Cargo.toml"))
    workspace = safe.as_dict(cargo.get("workspace"))
    for pattern in safe.strs(workspace.get("members")):
        declared.append((pattern, "Cargo.toml:1", ("Cargo.toml",)))
    excluded += safe.strs(workspace.get("exclude"))
    gowork = safe.read_text(tree, "go.work")
    for pattern in re.findall(r"^\s*(?:use\s+)?(\./[^\s()]+|[A-Za-z0-9_][^\s()]*)\s*$", re.sub(r"(?s)^.*?use\s*\(|\).*$", "", gowork) if "use" in gowork else "", re.M):
        declared.append((pattern, "go.work:1", ("go.mod",)))
    uv = safe.as_dict(safe.dig(safe.load_toml(safe.read_text(tree, "pyproject.toml")), "tool", "uv", "workspace"))
    for pattern in safe.strs(uv.get("members")):
        declared.append((pattern, "pyproject.toml:1", ("pyproject.toml",)))
    excluded += safe.strs(uv.get("exclude"))
    pom = safe.read_text(tree, "pom.xml")
    for module in re.findall(r"<module>\s*([^<\s]+)\s*</module>", pom)[:200]:
        declared.append((module, "pom.xml:1", ("pom.xml",)))
    found: list[str] = []
    evidence = ""
    for pattern, where, manifests in declared[:500]:
        if not isinstance(pattern, str) or pattern.strip() in ("", ".", "./"):
            continue
        for match in tree.glob(pattern.strip().rstrip("/"))[:500]:
            path = safe.clean_rel_path(match)
            if path is None or path in found or not tree.is_dir(path):
                continue
            if any(fnmatch.fnmatchcase(path, e.strip("/")) for e in excluded):
                continue
            if not any(tree.is_file(f"{path}/{m}") for m in manifests):
                continue  # a plain folder is not a package
            found.append(path)
            evidence = evidence or where
    if not found:
        # A polyglot monorepo without a workspace file: top-level folders with their own manifest,
        # when the root itself has none of that kind.
        root_manifests = {m for m in MANIFESTS if tree.is_file(m)}
        for entry in tree.list_dir(""):
            if entry.kind != "dir" or entry.name.startswith(".") or entry.name in ("node_modules", "vendor", "third_party", "docs", "examples", "example"):
                continue
            manifests = [m for m in MANIFESTS[:5] if tree.is_file(f"{entry.path}/{m}") and m not in root_manifests]
            path = safe.clean_rel_path(entry.path)
            if manifests and path:
                found.append(path)
                evidence = f"{path}/{manifests[0]}:1"
        if len(found) < 2:
            found = []
    return found[:200], evidence


# -- boundaries and conventions -------------------------------------------------------------------------------

_LOCKS = {"uv.lock": "pyproject.toml", "poetry.lock": "pyproject.toml", "pdm.lock": "pyproject.toml", "Pipfile.lock": "Pipfile",
          "package-lock.json": "package.json", "pnpm-lock.yaml": "package.json", "yarn.lock": "package.json", "bun.lock": "package.json",
          "Cargo.lock": "Cargo.toml", "Gemfile.lock": "Gemfile", "composer.lock": "composer.json", "go.sum": "go.mod",
          "requirements.lock": "pyproject.toml", "packages.lock.json": "*.csproj"}


def boundaries(tree: TreeBase) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    attributes = safe.read_text(tree, ".gitattributes", safe.MAX_SCRIPT_BYTES)
    generated: list[str] = []
    vendored: list[str] = []
    for number, line in enumerate(attributes.splitlines()[:2000], 1):
        parts = line.split()
        if len(parts) < 2 or parts[0].startswith("#"):
            continue
        pattern = parts[0].lstrip("/")
        if not re.fullmatch(r"[A-Za-z0-9_.@+*/-]{1,100}", pattern) or ".." in pattern:
            continue
        attrs = set(parts[1:])
        if attrs & {"linguist-generated", "linguist-generated=true"} and len(generated) < 5:
            generated.append(pattern)
            if len(generated) == 1:
                out.append(("", f".gitattributes:{number}"))
        elif attrs & {"linguist-vendored", "linguist-vendored=true"} and len(vendored) < 5:
            vendored.append(pattern)
    if generated:
        out[-1] = ("Generated (regenerate, do not edit): " + ", ".join(f"`{p}`" for p in generated), out[-1][1])
    if vendored:
        out.append(("Vendored (do not edit): " + ", ".join(f"`{p}`" for p in vendored), ".gitattributes:1"))
    if tree.is_file("vendor/modules.txt"):
        out.append(("`vendor/` holds vendored Go modules; do not edit by hand", "vendor/modules.txt:1"))
    locks = [name for name, manifest in _LOCKS.items() if tree.is_file(name) and (manifest.startswith("*") or tree.is_file(manifest))]
    if locks:
        out.append(("Lock files are generated by their tools; do not edit them by hand: " + ", ".join(f"`{n}`" for n in locks[:4]), f"{locks[0]}:1"))
    return out


def conventions(tree: TreeBase, pyproject: dict[str, Any]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    tool = safe.as_dict(pyproject.get("tool"))
    towncrier = safe.as_dict(tool.get("towncrier"))
    directory = safe.clean_rel_path(towncrier.get("directory")) if towncrier else None
    if directory and tree.is_dir(directory):
        out.append((f"Each change needs a news fragment in `{directory}/` (towncrier)", "pyproject.toml:1"))
    elif tree.is_file(".changeset/config.json"):
        out.append(("Each change needs a changeset file in `.changeset/`", ".changeset/config.json:1"))
    for name, value, evidence in (
        ("ruff", safe.dig(tool, "ruff", "line-length"), "pyproject.toml"),
        ("black", safe.dig(tool, "black", "line-length"), "pyproject.toml"),
    ):
        if isinstance(value, int) and not isinstance(value, bool) and 40 <= value <= 400:
            out.append((f"Line length {value} ({name})", f"{evidence}:1"))
            break
    else:
        ruff = safe.load_toml(safe.read_text(tree, "ruff.toml") or safe.read_text(tree, ".ruff.toml"))
        length = ruff.get("line-length")
        if isinstance(length, int) and not isinstance(length, bool) and 40 <= length <= 400:
            out.append((f"Line length {length} (ruff)", "ruff.toml:1"))
    for name in ("commitlint.config.js", "commitlint.config.mjs", "commitlint.config.cjs", "commitlint.config.ts", ".commitlintrc",
                 ".commitlintrc.json", ".commitlintrc.yml", ".commitlintrc.js"):
        if tree.is_file(name):
            out.append(("Commit messages follow Conventional Commits (commitlint)", f"{name}:1"))
            break
    return out


# -- one test --------------------------------------------------------------------------------------------------


def _first_test_file(files: list[Any], pattern: str, under: str = "") -> Any:
    regex = re.compile(pattern)
    candidates = [f for f in files if regex.search(f.path) and (not under or f.path.startswith(under)) and safe.clean_rel_path(f.path)
                  and not re.search(r"(^|/)(fixtures?|testdata|data|node_modules|vendor|examples?|bench\w*|helpers?|utils?|support)/", f.path)
                  and not f.name.startswith(("_", ".")) and not re.search(r"(fixture|helper|setup|util|conftest|__init__)", f.name)]
    candidates.sort(key=lambda f: (f.path.count("/"), f.path))
    return candidates[0] if candidates else None


def single_test(tree: TreeBase, files: list[Any], runner: str, launcher: list[str], manager: str, test_command: list[str],
                cwd: str = "") -> list[str] | None:
    """A command that runs one test with the detected runner, on a real test file (and a real test
    name where the file shows one), or None."""
    base = f"{cwd}/" if cwd else ""
    sub = [f for f in files if f.path.startswith(base)] if base else files

    def rel(path: str) -> str:
        return path[len(base):] if base and path.startswith(base) else path

    if runner == "pytest":
        found = _first_test_file(sub, r"(^|/)(test_[^/]*|[^/]*_test)\.py$")
        if not found:
            return None
        text = safe.read_text(tree, found.path, safe.MAX_SCRIPT_BYTES)
        name = re.search(r"^def (test_\w+)\(", text, re.M)
        target = f"{rel(found.path)}::{name.group(1)}" if name else rel(found.path)
        if test_command[:2] == ["hatch", "test"]:
            return ["hatch", "test", target]
        return [*launcher, "pytest", target]
    if runner == "unittest":
        found = _first_test_file(sub, r"(^|/)test[^/]*\.py$")
        if not found:
            return None
        module = rel(found.path)[:-3].replace("/", ".")
        return ["python", "-m", "unittest", module] if re.fullmatch(r"[A-Za-z0-9_.]+", module) else None
    if runner == "go test":
        found = _first_test_file(sub, r"_test\.go$")
        if not found:
            return None
        text = safe.read_text(tree, found.path, safe.MAX_SCRIPT_BYTES)
        name = re.search(r"^func (Test\w+)\(", text, re.M)
        folder = rel(found.path).rsplit("/", 1)[0] if "/" in rel(found.path) else ""
        package = f"./{folder}" if folder else "."
        return ["go", "test", package, "-run", name.group(1)] if name else ["go", "test", package]
    if runner in ("cargo test", "cargo nextest"):
        found = _first_test_file(sub, r"^(tests/[^/]+\.rs)$") if not base else _first_test_file(sub, r"/tests/[^/]+\.rs$")
        if found:
            stem = found.path.rsplit("/", 1)[-1][:-3]
            return ["cargo", "test", "--test", stem] if re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_-]*", stem) else None
        for entry in sub[:2000]:
            if entry.path.endswith(".rs") and entry.size < safe.MAX_SCRIPT_BYTES:
                text = safe.read_text(tree, entry.path, safe.MAX_SCRIPT_BYTES)
                name = re.search(r"#\[test\]\s*(?:#\[[^\]]*\]\s*)*fn\s+(\w+)", text)
                if name:
                    return ["cargo", "test", name.group(1)]
        return None
    if runner in ("jest", "vitest", "mocha", "ava", "node --test", "bun test"):
        found = _first_test_file(sub, r"\.(test|spec)\.[cm]?[jt]sx?$") or _first_test_file(sub, r"(^|/)(test|tests|__tests__)/[^/]+\.[cm]?[jt]sx?$")
        if not found:
            return None
        path = rel(found.path)
        if runner == "node --test":
            return ["node", "--test", path]
        if runner == "bun test":
            return ["bun", "test", path]
        exec_ = {"npm": ["npx"], "pnpm": ["pnpm", "exec"], "yarn": ["yarn"], "bun": ["bunx"]}.get(manager, ["npx"])
        argv = {"jest": ["jest"], "vitest": ["vitest", "run"], "mocha": ["mocha"], "ava": ["ava"]}[runner]
        return [*exec_, *argv, path]
    if runner == "rspec":
        found = _first_test_file(sub, r"(^|/)spec/.*_spec\.rb$")
        prefix = ["bundle", "exec"] if tree.is_file(_join(cwd, "Gemfile")) else []
        return [*prefix, "rspec", rel(found.path)] if found else None
    if runner == "minitest":
        found = _first_test_file(sub, r"(^|/)test/.*(_test|test_[^/]*)\.rb$")
        prefix = ["bundle", "exec"] if tree.is_file(_join(cwd, "Gemfile")) else []
        return [*prefix, "ruby", "-Ilib:test", rel(found.path)] if found else None
    if runner in ("phpunit", "pest"):
        found = _first_test_file(sub, r"(^|/)tests?/.*Test\.php$")
        if runner == "phpunit" and test_command and any(w.rsplit("/", 1)[-1] == "simple-phpunit" for w in test_command):
            # Symfony's bridge installs PHPUnit outside vendor/bin: the file goes to simple-phpunit
            return ["vendor/bin/simple-phpunit", rel(found.path)] if found else None
        return [f"vendor/bin/{runner}", rel(found.path)] if found else None
    if runner == "maven":
        found = _first_test_file(sub, r"src/test/java/.*Test\.java$")
        if not found:
            return None
        mvn = test_command[0] if test_command and test_command[0] in ("mvn", "./mvnw") else "mvn"
        class_name = found.name[:-5]
        module = rel(found.path).split("/src/test/", 1)[0] if "/src/test/" in rel(found.path) else ""
        if module and safe.clean_rel_path(module):
            return [mvn, "test", "-pl", module, "-am", f"-Dtest={class_name}", "-Dsurefire.failIfNoSpecifiedTests=false"]
        return [mvn, "test", f"-Dtest={class_name}"]
    if runner == "gradle":
        found = _first_test_file(sub, r"src/(test|jvmTest|commonTest)/(java|kotlin)/.*Test\.(java|kt)$")
        if not found:
            return None
        gradle = test_command[0] if test_command and test_command[0] in ("gradle", "./gradlew") else "./gradlew"
        path = rel(found.path)
        module, _, inside = path.partition("/src/")
        if not inside:
            module, inside = "", path.removeprefix("src/")
        source_set, _, class_path = inside.partition("/")
        class_name = class_path.split("/", 1)[1].rsplit(".", 1)[0].replace("/", ".") if "/" in class_path else ""
        task = "jvmTest" if source_set in ("jvmTest", "commonTest") else "test"
        target = f":{module.replace('/', ':')}:{task}" if module else task
        return [gradle, target, "--tests", class_name] if class_name and re.fullmatch(r"[\w.]+", class_name) else None
    if runner == "dotnet test":
        found = _first_test_file(sub, r"Tests?\.cs$")
        if not found:
            return None
        filter_ = ["--filter", f"FullyQualifiedName~{found.name[:-3]}"]
        if any("/" not in rel(f.path) and f.name.endswith((".sln", ".slnx", ".csproj", ".fsproj")) for f in sub):
            return ["dotnet", "test", *filter_]
        # No solution or project where it runs (`dotnet test` would stop with MSB1003): the test
        # file's own project folder is named.
        folders = [rel(f.path).rsplit("/", 1)[0] for f in sub if f.name.endswith((".csproj", ".fsproj")) and "/" in rel(f.path)]
        owner = max((d for d in folders if rel(found.path).startswith(d + "/")), key=len, default="")
        return ["dotnet", "test", owner, *filter_] if owner and safe.clean_rel_path(owner) else None
    return None
