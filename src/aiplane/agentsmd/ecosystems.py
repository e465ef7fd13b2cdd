"""Per-ecosystem facts: build tools, runtime versions, the tools a project declares, and the
commands its own configuration supports when CI says nothing.

A fallback command needs evidence that the project runs the tool: an entry point (script, target,
env, session, task), or a tool configuration *and* the tool declared in the project's
dependencies, or a language's built-in runner with tests present (`go test`, `cargo test`, the
Maven and Gradle test tasks, `dotnet test`, `ctest`, `meson test`). Nothing is derived from the
mere presence of a configuration table.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from aiplane.agentsmd import entrypoints as ep
from aiplane.agentsmd import safe
from aiplane.repository.tree import TreeBase


@dataclass
class Proposal:
    """A command the project's configuration supports, before ranking."""

    argv: list[str]
    evidence: str
    source: str  # entry | config | convention
    cwd: str = ""
    hint: str = ""  # the kind it is expected to be (checked by the resolver)


@dataclass
class Facts:
    build: list[tuple[str, str]] = field(default_factory=list)  # (tool, evidence)
    runtime: list[tuple[str, str]] = field(default_factory=list)
    proposals: list[Proposal] = field(default_factory=list)
    declared: set[str] = field(default_factory=set)  # tool names declared as dependencies
    launcher: list[str] = field(default_factory=list)  # how Python tools are run: ["uv", "run"], ["poetry", "run"], ...
    manager: str = ""  # the JS package manager
    ecosystems: list[str] = field(default_factory=list)


def _join(dir_: str, name: str) -> str:
    return f"{dir_}/{name}" if dir_ else name


def _line(text: str, needle: str) -> int:
    index = text.find(needle)
    return text.count("\n", 0, index) + 1 if index >= 0 else 1


def _requirement_names(items: list[str]) -> set[str]:
    out = set()
    for item in items:
        match = re.match(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)", item)
        if match:
            out.add(match.group(1).lower().replace("_", "-"))
    return out


# -- Python ------------------------------------------------------------------------------------------------


def python(tree: TreeBase, dir_: str, facts: Facts, lazy: ep.Lazy) -> None:
    text = safe.read_text(tree, _join(dir_, "pyproject.toml"))
    data = safe.load_toml(text)
    has_setup = tree.is_file(_join(dir_, "setup.py")) or tree.is_file(_join(dir_, "setup.cfg"))
    requirements = [e for e in tree.list_dir(dir_) if e.kind == "file" and re.match(r"^(requirements|dev-requirements|test-requirements|requirements[-_].*)\.(txt|in)$", e.name)]
    if not (data or has_setup or requirements or tree.is_file(_join(dir_, "tox.ini")) or tree.is_file(_join(dir_, "noxfile.py"))):
        return
    facts.ecosystems.append("python")
    tool = safe.as_dict(data.get("tool"))
    project = safe.as_dict(data.get("project"))
    declared: set[str] = set()
    declared |= _requirement_names(safe.strs(project.get("dependencies")))
    for group in safe.as_dict(project.get("optional-dependencies")).values():
        declared |= _requirement_names(safe.strs(group))
    for group in safe.as_dict(data.get("dependency-groups")).values():
        declared |= _requirement_names(safe.strs(group))
    declared |= _requirement_names(safe.strs(safe.dig(tool, "uv", "dev-dependencies")))
    for group in safe.as_dict(safe.dig(tool, "pdm", "dev-dependencies")).values():
        declared |= _requirement_names(safe.strs(group))
    poetry = safe.as_dict(tool.get("poetry"))
    for table in (poetry.get("dependencies"), poetry.get("dev-dependencies")):
        declared |= {str(k).lower() for k in safe.as_dict(table)}
    for group in safe.as_dict(poetry.get("group")).values():
        declared |= {str(k).lower() for k in safe.as_dict(safe.as_dict(group).get("dependencies"))}
    for env in safe.as_dict(safe.dig(tool, "hatch", "envs")).values():
        declared |= _requirement_names(safe.strs(safe.as_dict(env).get("dependencies")) + safe.strs(safe.as_dict(env).get("extra-dependencies")))
    for entry in requirements:
        declared |= _requirement_names(safe.read_text(tree, entry.path).splitlines())
    setup_cfg = safe.read_text(tree, _join(dir_, "setup.cfg"))
    if setup_cfg:
        declared |= _requirement_names(re.findall(r"^\s+([A-Za-z0-9][\w.-]*)", setup_cfg, re.M))
    tox = lazy.get("tox", dir_)
    if tox is not None:
        declared |= _requirement_names(re.findall(r"^\s+([A-Za-z0-9][\w.-]*)", tox.text, re.M))
        declared.add("tox")
    facts.declared |= declared

    if tree.is_file(_join(dir_, "uv.lock")) or "uv" in tool:
        facts.build.append(("uv", _join(dir_, "uv.lock") + ":1" if tree.is_file(_join(dir_, "uv.lock")) else f"{_join(dir_, 'pyproject.toml')}:{_line(text, '[tool.uv')}"))
        facts.launcher = ["uv", "run"]
    elif "poetry" in tool:
        facts.build.append(("poetry", f"{_join(dir_, 'pyproject.toml')}:{_line(text, '[tool.poetry')}"))
        facts.launcher = ["poetry", "run"]
    elif "pdm" in tool or tree.is_file(_join(dir_, "pdm.lock")):
        facts.build.append(("pdm", f"{_join(dir_, 'pyproject.toml')}:{_line(text, '[tool.pdm')}"))
        facts.launcher = ["pdm", "run"]
    elif "envs" in safe.as_dict(tool.get("hatch")) or tree.is_file(_join(dir_, "hatch.toml")):
        facts.build.append(("hatch", f"{_join(dir_, 'pyproject.toml')}:{_line(text, '[tool.hatch.envs')}"))
    elif "flit" in safe.as_str(safe.dig(data, "build-system", "build-backend")):
        facts.build.append(("flit", f"{_join(dir_, 'pyproject.toml')}:{_line(text, 'flit')}"))
    elif data or has_setup:
        name = "setuptools" if (has_setup or "setuptools" in text) else "pip"
        facts.build.append((name, f"{_join(dir_, 'setup.py' if has_setup and not data else 'pyproject.toml')}:1"))
    elif requirements:
        facts.build.append(("pip", f"{requirements[0].path}:1"))

    requires = safe.clean_version(project.get("requires-python"))
    if requires:
        facts.runtime.append((f"Python {requires}", f"{_join(dir_, 'pyproject.toml')}:{_line(text, 'requires-python')}"))
    version_file = safe.read_text(tree, _join(dir_, ".python-version"), 1024).strip().splitlines()
    if version_file and safe.clean_version(version_file[0]):
        facts.runtime.append((f"Python {version_file[0].strip()}", f"{_join(dir_, '.python-version')}:1"))

    # Entry points
    if tox is not None:
        facts.proposals.append(Proposal(["tox"], f"{tox.file}:1", "entry", dir_))
        for env in tox.envs()[:40]:
            facts.proposals.append(Proposal(["tox", "-e", env], f"{tox.file}:{_line(tox.text, env)}", "entry", dir_))
    nox = lazy.get("nox", dir_)
    if nox is not None:
        facts.proposals.append(Proposal(["nox"], f"{nox.file}:1", "entry", dir_))
        for name, entry in list(nox.sessions.items())[:40]:
            facts.proposals.append(Proposal(["nox", "-s", name], f"{nox.file}:{entry.line}", "entry", dir_))
    scripts = lazy.get("py", dir_)
    if scripts is not None:
        for name in scripts.pdm:
            facts.proposals.append(Proposal(["pdm", "run", name], f"{_join(dir_, 'pyproject.toml')}:{_line(text, name)}", "entry", dir_))
        for name in scripts.poe:
            facts.proposals.append(Proposal(["poe", name], f"{_join(dir_, 'pyproject.toml')}:{_line(text, name)}", "entry", dir_))
        if scripts.pixi:
            # the tasks come from [tool.pixi] when pyproject.toml has it, else from pixi.toml
            pixi_file, pixi_text = ("pyproject.toml", text) if "pixi" in tool else ("pixi.toml", safe.read_text(tree, _join(dir_, "pixi.toml")))
            for name in scripts.pixi:
                facts.proposals.append(Proposal(["pixi", "run", name], f"{_join(dir_, pixi_file)}:{_line(pixi_text, name)}", "entry", dir_))
        for env, table in scripts.hatch.items():
            for name in table:
                target = name if env == "default" else f"{env}:{name}"
                facts.proposals.append(Proposal(["hatch", "run", target], f"{_join(dir_, 'pyproject.toml')}:{_line(text, name)}", "entry", dir_))
    if "envs" in safe.as_dict(tool.get("hatch")) or tree.is_file(_join(dir_, "hatch.toml")):
        # hatch as the environment manager (not only hatchling as the build backend)
        facts.proposals.append(Proposal(["hatch", "test"], f"{_join(dir_, 'pyproject.toml')}:{_line(text, '[tool.hatch.envs')}", "entry", dir_, "test"))

    # Configured tools that are declared
    launch = facts.launcher
    pytest_config = "pytest" in tool or tree.is_file(_join(dir_, "pytest.ini")) or "[tool:pytest]" in setup_cfg or \
        (tox is not None and "[pytest]" in tox.text) or tree.is_file(_join(dir_, "conftest.py"))
    if "pytest" in declared and (pytest_config or _has_tests(tree, dir_, r"^(test_.*|.*_test)\.py$")):
        where = f"{_join(dir_, 'pyproject.toml')}:{_line(text, '[tool.pytest')}" if "pytest" in tool else f"{_join(dir_, 'pyproject.toml')}:1"
        facts.proposals.append(Proposal([*launch, "pytest"], where, "config", dir_, "test"))
    elif not declared & {"pytest"} and _has_tests(tree, dir_, r"^test.*\.py$", contains="import unittest"):
        facts.proposals.append(Proposal(["python", "-m", "unittest"], f"{_join(dir_, 'tests')}:1", "convention", dir_, "test"))
    if "ruff" in declared and ("ruff" in tool or tree.is_file(_join(dir_, "ruff.toml")) or tree.is_file(_join(dir_, ".ruff.toml"))):
        facts.proposals.append(Proposal([*launch, "ruff", "check"], f"{_join(dir_, 'pyproject.toml')}:{_line(text, '[tool.ruff')}", "config", dir_, "lint"))
    mypy = safe.as_dict(tool.get("mypy"))
    if "mypy" in declared and (mypy.get("files") or mypy.get("packages")):
        facts.proposals.append(Proposal([*launch, "mypy"], f"{_join(dir_, 'pyproject.toml')}:{_line(text, '[tool.mypy')}", "config", dir_, "typecheck"))
    if "black" in declared and "black" in tool:
        facts.proposals.append(Proposal([*launch, "black", "--check", "."], f"{_join(dir_, 'pyproject.toml')}:{_line(text, '[tool.black')}", "config", dir_, "format"))
    precommit = safe.read_text(tree, _join(dir_, ".pre-commit-config.yaml"))
    if precommit and ("pre-commit" in declared or re.search(r"^ci:", precommit, re.M)):
        facts.proposals.append(Proposal(["pre-commit", "run", "--all-files"], f"{_join(dir_, '.pre-commit-config.yaml')}:1", "config", dir_, "lint"))


def _has_tests(tree: TreeBase, dir_: str, pattern: str, contains: str | None = None) -> bool:
    regex = re.compile(pattern)
    for folder in ("tests", "test", "testing"):
        entries = tree.list_dir(_join(dir_, folder))
        for entry in entries[:200]:
            if entry.kind == "file" and regex.match(entry.name):
                if contains is None or contains in safe.read_text(tree, entry.path, safe.MAX_SCRIPT_BYTES):
                    return True
    return False


# -- JavaScript / TypeScript ----------------------------------------------------------------------------


def node(tree: TreeBase, dir_: str, facts: Facts, lazy: ep.Lazy, inherited: str = "") -> None:
    package, text = ep.read_package_json(tree, dir_)
    if not text:
        return
    facts.ecosystems.append("node")
    manager = inherited if inherited in safe.PACKAGE_MANAGERS else "npm"  # a workspace member uses its root's manager
    evidence = f"{_join(dir_, 'package.json')}:1"
    for lock, name in (("pnpm-lock.yaml", "pnpm"), ("yarn.lock", "yarn"), ("bun.lockb", "bun"), ("bun.lock", "bun"), ("package-lock.json", "npm")):
        if tree.is_file(_join(dir_, lock)):
            manager, evidence = name, f"{_join(dir_, lock)}:1"
            break
    pinned = safe.package_manager(package.get("packageManager"))
    if pinned:
        manager = pinned[0]
        evidence = f"{_join(dir_, 'package.json')}:{_line(text, 'packageManager')}"
        facts.build.append((f"{pinned[0]} {pinned[1]}", evidence))
    elif not inherited:
        facts.build.append((manager, evidence))
    facts.manager = manager
    deps: set[str] = set()
    for key in ("dependencies", "devDependencies", "peerDependencies", "optionalDependencies"):
        deps |= {k for k in safe.as_dict(package.get(key)) if isinstance(k, str)}
    facts.declared |= deps
    engines = safe.clean_version(safe.as_dict(package.get("engines")).get("node"))
    if engines:
        facts.runtime.append((f"Node {engines}", f"{_join(dir_, 'package.json')}:{_line(text, 'engines')}"))
    for name in (".nvmrc", ".node-version"):
        first = safe.read_text(tree, _join(dir_, name), 1024).strip().splitlines()
        if first and safe.clean_version(first[0].removeprefix("v")):
            facts.runtime.append((f"Node {first[0].strip()}", f"{_join(dir_, name)}:1"))
    for name in ep.scripts(package):
        argv = [manager, "test"] if name == "test" and manager != "bun" else [manager, "run", name]
        facts.proposals.append(Proposal(argv, f"{_join(dir_, 'package.json')}:{_line(text, chr(34) + name + chr(34))}", "entry", dir_))
    runner = {"npm": ["npx"], "pnpm": ["pnpm", "exec"], "yarn": ["yarn"], "bun": ["bunx"]}[manager]
    if "test" not in ep.scripts(package):
        for tool, argv in (("vitest", ["vitest", "run"]), ("jest", ["jest"]), ("mocha", ["mocha"]), ("ava", ["ava"])):
            if tool in deps:
                facts.proposals.append(Proposal([*runner, *argv], f"{_join(dir_, 'package.json')}:{_line(text, chr(34) + tool + chr(34))}", "config", dir_, "test"))
                break
    if "eslint" in deps and any(e.name.startswith(("eslint.config.", ".eslintrc")) for e in tree.list_dir(dir_)):
        facts.proposals.append(Proposal([*runner, "eslint", "."], f"{_join(dir_, 'package.json')}:{_line(text, chr(34) + 'eslint' + chr(34))}", "config", dir_, "lint"))
    if "@biomejs/biome" in deps and any(e.name in ("biome.json", "biome.jsonc") for e in tree.list_dir(dir_)):
        facts.proposals.append(Proposal([*runner, "biome", "check"], f"{_join(dir_, 'package.json')}:{_line(text, 'biome')}", "config", dir_, "lint"))
    deno = safe.load_json(safe.read_text(tree, _join(dir_, "deno.json")))
    if isinstance(deno, dict) and isinstance(safe.dig(deno, "tasks", "test"), str):
        facts.proposals.append(Proposal(["deno", "task", "test"], f"{_join(dir_, 'deno.json')}:1", "entry", dir_))


# -- Go, Rust ----------------------------------------------------------------------------------------------


def go(tree: TreeBase, dir_: str, facts: Facts, files: list[Any]) -> None:
    text = safe.read_text(tree, _join(dir_, "go.mod"))
    if not text:
        return
    facts.ecosystems.append("go")
    facts.build.append(("go modules", f"{_join(dir_, 'go.mod')}:1"))
    version = re.search(r"^go\s+(\S+)", text, re.M)
    if version and safe.clean_version(version.group(1)):
        facts.runtime.append((f"Go {version.group(1)}", f"{_join(dir_, 'go.mod')}:{_line(text, version.group(0))}"))
    prefix = f"{dir_}/" if dir_ else ""
    test_file = next((f.path for f in files if f.path.startswith(prefix) and f.path.endswith("_test.go")), None)
    if test_file:
        facts.proposals.append(Proposal(["go", "test", "./..."], f"{test_file}:1", "convention", dir_, "test"))
    for config in (".golangci.yml", ".golangci.yaml", ".golangci.toml", ".golangci.json"):
        if tree.is_file(_join(dir_, config)):
            facts.proposals.append(Proposal(["golangci-lint", "run"], f"{_join(dir_, config)}:1", "config", dir_, "lint"))
            break


def rust(tree: TreeBase, dir_: str, facts: Facts) -> None:
    text = safe.read_text(tree, _join(dir_, "Cargo.toml"))
    if not text:
        return
    facts.ecosystems.append("rust")
    data = safe.load_toml(text)
    facts.build.append(("cargo", f"{_join(dir_, 'Cargo.toml')}:1"))
    for name in ("rust-toolchain.toml", "rust-toolchain"):
        toolchain = safe.read_text(tree, _join(dir_, name), 4096)
        if toolchain:
            channel = safe.as_str(safe.dig(safe.load_toml(toolchain), "toolchain", "channel")) if name.endswith(".toml") else toolchain.strip()
            if safe.clean_version(channel) or channel in ("stable", "beta", "nightly"):
                facts.runtime.append((f"Rust {channel}", f"{_join(dir_, name)}:1"))
            break
    msrv = safe.clean_version(safe.dig(data, "package", "rust-version")) or safe.clean_version(safe.dig(data, "workspace", "package", "rust-version"))
    if msrv:
        facts.runtime.append((f"Rust >= {msrv} (MSRV)", f"{_join(dir_, 'Cargo.toml')}:{_line(text, 'rust-version')}"))
    workspace = isinstance(data.get("workspace"), dict)
    argv = ["cargo", "test", "--workspace"] if workspace and isinstance(data.get("package"), dict) else ["cargo", "test"]
    facts.proposals.append(Proposal(argv, f"{_join(dir_, 'Cargo.toml')}:1", "convention", dir_, "test"))
    for config in ("clippy.toml", ".clippy.toml"):
        if tree.is_file(_join(dir_, config)):
            facts.proposals.append(Proposal(["cargo", "clippy"], f"{_join(dir_, config)}:1", "config", dir_, "lint"))
            break
    for config in ("rustfmt.toml", ".rustfmt.toml"):
        if tree.is_file(_join(dir_, config)):
            facts.proposals.append(Proposal(["cargo", "fmt", "--check"], f"{_join(dir_, config)}:1", "config", dir_, "format"))
            break


# -- JVM -----------------------------------------------------------------------------------------------------


def jvm(tree: TreeBase, dir_: str, facts: Facts) -> None:
    pom = safe.read_text(tree, _join(dir_, "pom.xml"))
    gradle_files = [n for n in ("build.gradle.kts", "build.gradle", "settings.gradle.kts", "settings.gradle") if tree.is_file(_join(dir_, n))]
    if pom:
        facts.ecosystems.append("maven")
        wrapper = tree.is_file(_join(dir_, "mvnw"))
        mvn = "./mvnw" if wrapper else "mvn"
        facts.build.append(("maven (./mvnw)" if wrapper else "maven", f"{_join(dir_, 'pom.xml')}:1"))
        if tree.is_dir(_join(dir_, "src/test")) or "<modules>" in pom:
            facts.proposals.append(Proposal([mvn, "test"], f"{_join(dir_, 'pom.xml')}:1", "convention", dir_, "test"))
        for plugin, goal, kind in (("maven-checkstyle-plugin", "checkstyle:check", "lint"), ("spotless-maven-plugin", "spotless:check", "format")):
            if plugin in pom:
                facts.proposals.append(Proposal([mvn, goal], f"{_join(dir_, 'pom.xml')}:{_line(pom, plugin)}", "config", dir_, kind))
        release = re.search(r"<maven\.compiler\.(?:release|source)>\s*([\d.]+)\s*<", pom)
        if release and safe.clean_version(release.group(1)):
            facts.runtime.append((f"Java {release.group(1)}", f"{_join(dir_, 'pom.xml')}:{_line(pom, release.group(0))}"))
    elif gradle_files:
        facts.ecosystems.append("gradle")
        wrapper = tree.is_file(_join(dir_, "gradlew"))
        gradle = "./gradlew" if wrapper else "gradle"
        facts.build.append(("gradle (./gradlew)" if wrapper else "gradle", f"{_join(dir_, gradle_files[0])}:1"))
        facts.proposals.append(Proposal([gradle, "test"], f"{_join(dir_, gradle_files[0])}:1", "convention", dir_, "test"))
        build = "\n".join(safe.read_text(tree, _join(dir_, n)) for n in gradle_files)
        for marker, task, kind in (("spotless", "spotlessCheck", "format"), ("ktlint", "ktlintCheck", "lint"), ("detekt", "detekt", "lint")):
            if re.search(rf"\b{marker}\b", build):
                facts.proposals.append(Proposal([gradle, task], f"{_join(dir_, gradle_files[0])}:{_line(build, marker)}", "config", dir_, kind))


# -- Ruby, PHP ------------------------------------------------------------------------------------------------


def ruby(tree: TreeBase, dir_: str, facts: Facts, lazy: ep.Lazy) -> None:
    gemfile = safe.read_text(tree, _join(dir_, "Gemfile"))
    gemspecs = [e for e in tree.list_dir(dir_) if e.kind == "file" and e.name.endswith(".gemspec")]
    rakefile = lazy.get("rake", dir_)
    if not (gemfile or gemspecs or rakefile):
        return
    facts.ecosystems.append("ruby")
    gems = set(re.findall(r"""^\s*gem\s+["']([\w-]+)["']""", gemfile, re.M))
    for spec in gemspecs[:3]:
        gems |= set(re.findall(r"""add_(?:development_)?dependency[\s(]+["']([\w-]+)["']""", safe.read_text(tree, spec.path)))
    facts.declared |= gems
    bundle = ["bundle", "exec"] if gemfile else []
    if gemfile:
        facts.build.append(("bundler", f"{_join(dir_, 'Gemfile')}:1"))
    version = safe.read_text(tree, _join(dir_, ".ruby-version"), 1024).strip().splitlines()
    if version and safe.clean_version(version[0]):
        facts.runtime.append((f"Ruby {version[0].strip()}", f"{_join(dir_, '.ruby-version')}:1"))
    if rakefile:
        text = safe.read_text(tree, _join(dir_, "Rakefile"), safe.MAX_SCRIPT_BYTES)
        facts.proposals.append(Proposal([*bundle, "rake"], f"{_join(dir_, 'Rakefile')}:1", "entry", dir_))
        for name, entry in list(rakefile.items())[:60]:
            facts.proposals.append(Proposal([*bundle, "rake", name], f"{_join(dir_, 'Rakefile')}:{entry.line if text else 1}", "entry", dir_))
    if "rspec" in gems or "rspec-core" in gems:
        if tree.is_dir(_join(dir_, "spec")):
            facts.proposals.append(Proposal([*bundle, "rspec"], f"{_join(dir_, 'Gemfile') if gemfile else gemspecs[0].path}:1", "config", dir_, "test"))
    if "rubocop" in gems and tree.is_file(_join(dir_, ".rubocop.yml")):
        facts.proposals.append(Proposal([*bundle, "rubocop"], f"{_join(dir_, '.rubocop.yml')}:1", "config", dir_, "lint"))
    if "standard" in gems:
        facts.proposals.append(Proposal([*bundle, "standardrb"], f"{_join(dir_, 'Gemfile')}:{_line(gemfile, 'standard')}", "config", dir_, "lint"))


def php(tree: TreeBase, dir_: str, facts: Facts, lazy: ep.Lazy) -> None:
    scripts, data, text = ep.composer_scripts(tree, dir_)
    if not text:
        return
    facts.ecosystems.append("php")
    facts.build.append(("composer", f"{_join(dir_, 'composer.json')}:1"))
    dev = {k.lower() for k in safe.as_dict(data.get("require-dev")) if isinstance(k, str)}
    facts.declared |= dev
    php_version = safe.clean_version(safe.as_dict(data.get("require")).get("php"))
    if php_version:
        facts.runtime.append((f"PHP {php_version}", f"{_join(dir_, 'composer.json')}:{_line(text, chr(34) + 'php' + chr(34))}"))
    for name in scripts:
        facts.proposals.append(Proposal(["composer", name], f"{_join(dir_, 'composer.json')}:{_line(text, chr(34) + name + chr(34))}", "entry", dir_))
    names = {e.name for e in tree.list_dir(dir_)}
    if "pestphp/pest" in dev:
        facts.proposals.append(Proposal(["vendor/bin/pest"], f"{_join(dir_, 'composer.json')}:{_line(text, 'pestphp/pest')}", "config", dir_, "test"))
    if "phpunit/phpunit" in dev and names & {"phpunit.xml", "phpunit.xml.dist", "phpunit.dist.xml"}:
        facts.proposals.append(Proposal(["vendor/bin/phpunit"], f"{_join(dir_, 'composer.json')}:{_line(text, 'phpunit/phpunit')}", "config", dir_, "test"))
    if "phpstan/phpstan" in dev and names & {"phpstan.neon", "phpstan.neon.dist", "phpstan.dist.neon"}:
        facts.proposals.append(Proposal(["vendor/bin/phpstan", "analyse"], f"{_join(dir_, 'composer.json')}:{_line(text, 'phpstan/phpstan')}", "config", dir_, "typecheck"))
    if "friendsofphp/php-cs-fixer" in dev and names & {".php-cs-fixer.php", ".php-cs-fixer.dist.php"}:
        facts.proposals.append(Proposal(["vendor/bin/php-cs-fixer", "fix", "--dry-run", "--diff"], f"{_join(dir_, 'composer.json')}:{_line(text, 'php-cs-fixer')}", "config", dir_, "format"))
    if "vimeo/psalm" in dev and names & {"psalm.xml", "psalm.xml.dist"}:
        facts.proposals.append(Proposal(["vendor/bin/psalm"], f"{_join(dir_, 'composer.json')}:{_line(text, 'vimeo/psalm')}", "config", dir_, "typecheck"))
    if "squizlabs/php_codesniffer" in dev and names & {"phpcs.xml", "phpcs.xml.dist", ".phpcs.xml"}:
        facts.proposals.append(Proposal(["vendor/bin/phpcs"], f"{_join(dir_, 'composer.json')}:{_line(text, 'php_codesniffer')}", "config", dir_, "lint"))


# -- .NET, C/C++ --------------------------------------------------------------------------------------------


def dotnet(tree: TreeBase, dir_: str, facts: Facts, files: list[Any]) -> None:
    prefix = f"{dir_}/" if dir_ else ""
    top = [e for e in tree.list_dir(dir_) if e.kind == "file"]
    solutions = [e for e in top if e.name.endswith((".sln", ".slnx"))]
    projects = [f for f in files if f.path.startswith(prefix) and f.path.endswith((".csproj", ".fsproj", ".vbproj"))]
    if not (solutions or projects):
        return
    facts.ecosystems.append("dotnet")
    facts.build.append(("dotnet", f"{(solutions[0].path if solutions else projects[0].path)}:1"))
    global_json = safe.load_json(safe.read_text(tree, _join(dir_, "global.json")))
    sdk = safe.clean_version(safe.dig(global_json, "sdk", "version"))
    if sdk:
        facts.runtime.append((f".NET SDK {sdk}", f"{_join(dir_, 'global.json')}:1"))
    tests = [p for p in projects if re.search(r"(test|spec)", p.path.rsplit("/", 1)[-1], re.I)]
    if tests and (len(solutions) == 1 or len(projects) == 1):
        facts.proposals.append(Proposal(["dotnet", "test"], f"{tests[0].path}:1", "convention", dir_, "test"))


def native(tree: TreeBase, dir_: str, facts: Facts) -> None:
    cmake = safe.read_text(tree, _join(dir_, "CMakeLists.txt"))
    meson = safe.read_text(tree, _join(dir_, "meson.build"))
    if cmake:
        facts.ecosystems.append("cmake")
        facts.build.append(("cmake", f"{_join(dir_, 'CMakeLists.txt')}:1"))
        if re.search(r"\b(enable_testing|add_test|include\s*\(\s*CTest|catch_discover_tests|gtest_discover_tests)\b", cmake, re.I) or tree.is_dir(_join(dir_, "test")) or tree.is_dir(_join(dir_, "tests")):
            facts.proposals.append(Proposal(["ctest", "--test-dir", "build"], f"{_join(dir_, 'CMakeLists.txt')}:{_line(cmake, 'enable_testing')}", "convention", dir_, "test"))
    if meson:
        facts.ecosystems.append("meson")
        facts.build.append(("meson", f"{_join(dir_, 'meson.build')}:1"))
        facts.proposals.append(Proposal(["meson", "test", "-C", "build"], f"{_join(dir_, 'meson.build')}:1", "convention", dir_, "test"))


def makefile(tree: TreeBase, dir_: str, facts: Facts, lazy: ep.Lazy) -> None:
    make = lazy.get("make", dir_)
    if make is not None:
        for target, entry in list(make.rules.items())[:80]:
            facts.proposals.append(Proposal(["make", target], f"{make.file}:{entry.line}", "entry", dir_))
    for kind, runner in (("just", "just"), ("task", "task")):
        recipes = lazy.get(kind, dir_) or {}
        for name, entry in list(recipes.items())[:80]:
            facts.proposals.append(Proposal([runner, name], f"{_join(dir_, 'justfile' if kind == 'just' else 'Taskfile.yml')}:{entry.line}", "entry", dir_))


def detect(tree: TreeBase, dir_: str, files: list[Any], lazy: ep.Lazy, manager: str = "") -> Facts:
    facts = Facts()
    for step in (lambda: python(tree, dir_, facts, lazy), lambda: node(tree, dir_, facts, lazy, manager), lambda: go(tree, dir_, facts, files),
                 lambda: rust(tree, dir_, facts), lambda: jvm(tree, dir_, facts), lambda: ruby(tree, dir_, facts, lazy),
                 lambda: php(tree, dir_, facts, lazy), lambda: dotnet(tree, dir_, facts, files), lambda: native(tree, dir_, facts),
                 lambda: makefile(tree, dir_, facts, lazy)):
        try:
            step()
        except (RecursionError, ValueError, TypeError, KeyError, AttributeError, IndexError):
            continue
    return facts
