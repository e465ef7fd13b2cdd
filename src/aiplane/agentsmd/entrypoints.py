"""A project's own entry points, read as data: what `tox -e X`, `nox -s X`, `npm run X`, `make X`,
`just X`, `task X`, `rake X`, `composer X`, `hatch run X`, `pdm run X` and `poe X` run.

Every reader answers plain strings (command lines) per entry point name; nothing is executed. A
noxfile is parsed with `ast`, never imported.
"""

from __future__ import annotations

import ast
import configparser
import re
from dataclasses import dataclass, field
from functools import cached_property
from itertools import islice, product
from typing import Any

from aiplane.agentsmd import safe
from aiplane.repository.tree import TreeBase

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9:_.@/+-]{0,79}$")
MAX_ENTRIES = 500


def valid_name(name: Any) -> bool:
    return isinstance(name, str) and bool(_NAME.match(name))


def _join(dir_: str, name: str) -> str:
    return f"{dir_}/{name}" if dir_ else name


def _line(text: str, needle: str) -> int:
    index = text.find(needle)
    return text.count("\n", 0, index) + 1 if index >= 0 else 1


@dataclass
class Entry:
    name: str
    commands: list[str]  # command lines, in order
    line: int = 1
    refs: list[str] = field(default_factory=list)  # other entries of the same kind it runs first/instead
    default: bool = True  # runs when the tool is called without a name (tox env_list, nox defaults)


# -- tox ----------------------------------------------------------------------------------------


def brace_expand(pattern: str, limit: int = 200) -> list[str]:
    """tox's generative names: `py{38,39}-django{3,4}` and ranges `py3{10-12}`."""
    parts = re.split(r"(\{[^{}]*\})", pattern)
    choices: list[list[str]] = []
    for part in parts:
        if part.startswith("{") and part.endswith("}"):
            options: list[str] = []
            for item in part[1:-1].split(","):
                item = item.strip()
                span = re.fullmatch(r"(\d+)-(\d+)", item)
                if span and int(span.group(2)) - int(span.group(1)) < 50:
                    options += [str(n) for n in range(int(span.group(1)), int(span.group(2)) + 1)]
                else:
                    options.append(item)
            choices.append(options)
        else:
            choices.append([part])
    out: list[str] = []
    for combo in product(*choices):
        out.append("".join(combo))
        if len(out) >= limit:
            break
    return out


def _split_env_list(value: str) -> list[str]:
    items, depth, current = [], 0, ""
    for char in value:
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
        if (char in ",\n" and depth == 0):
            if current.strip():
                items.append(current.strip())
            current = ""
            continue
        current += char
    if current.strip():
        items.append(current.strip())
    out: list[str] = []
    for item in items:
        out += [name for name in brace_expand(item) if name]
    return out


@dataclass
class Tox:
    file: str
    env_list: list[str]
    sections: dict[str, dict[str, str]]  # INI: section name -> keys
    native: dict[str, Any]  # TOML form (tox.toml or [tool.tox] without legacy_tox_ini)
    text: str
    labels: dict[str, list[str]] = field(default_factory=dict)

    def _section_for(self, env: str) -> str | None:
        if f"testenv:{env}" in self.sections:
            return f"testenv:{env}"
        for section in self.sections:
            if section.startswith("testenv:") and env in brace_expand(section.removeprefix("testenv:")):
                return section
        return None

    def envs(self) -> list[str]:
        names = list(self.env_list)
        for section in self.sections:
            if section.startswith("testenv:"):
                names += [n for n in brace_expand(section.removeprefix("testenv:")) if n not in names]
        for name in safe.as_dict(self.native.get("env")):
            if name not in names:
                names.append(name)
        return names

    def has_env(self, env: str) -> bool:
        if env in self.envs():
            return True
        # tox creates py, py3, py311, pypy3, 3.13 ... on demand from the base section
        return bool(re.fullmatch(r"(py|pypy)(\d[\d.]*t?)?|\d\.\d+t?", env))

    def commands(self, env: str) -> list[str]:
        if self.native:
            return self._native_commands(env)
        section = self._section_for(env)
        raw = ""
        if section and "commands" in self.sections[section]:
            raw = self.sections[section]["commands"]
        elif "testenv" in self.sections:
            raw = self.sections["testenv"].get("commands", "")
        return self._expand(raw, env)

    def _expand(self, raw: str, env: str, depth: int = 0) -> list[str]:
        factors = set(env.split("-"))
        out: list[str] = []
        for line in raw.replace("\\\n", " ").splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            condition = re.match(r"^([!A-Za-z0-9_.,{}-]+):\s+(.*)$", line)
            if condition and not line.startswith(("python", "{")):
                wanted = condition.group(1)
                line = condition.group(2)
                if not any(self._factor_match(option, factors) for option in _split_env_list(wanted)):
                    continue
            reference = re.fullmatch(r"\{\[([^\]]+)\]commands\}", line)
            if reference and depth < 3:
                other = self.sections.get(reference.group(1), {}).get("commands", "")
                out += self._expand(other, env, depth + 1)
                continue
            out.append(self._substitute(line))
        return [c for c in out if c]

    @staticmethod
    def _factor_match(option: str, factors: set[str]) -> bool:
        required = option.split("-")
        return all((f[1:] not in factors) if f.startswith("!") else (f in factors) for f in required)

    @staticmethod
    def _substitute(line: str) -> str:
        line = re.sub(r"\{posargs:([^}]*)\}", r"\1", line)
        line = line.replace("{posargs}", "").replace("{envpython}", "python").replace("{toxinidir}", ".")
        line = re.sub(r"\{env:[A-Za-z0-9_]+:([^}]*)\}", r"\1", line)
        line = re.sub(r"\{env:[^}]*\}", "", line)
        return re.sub(r"\{[^}]*\}", "", line).strip()

    def _native_commands(self, env: str) -> list[str]:
        table = safe.as_dict(safe.as_dict(self.native.get("env")).get(env))
        commands = table.get("commands")
        if commands is None:
            commands = safe.as_dict(self.native.get("env_run_base")).get("commands")
        out: list[str] = []
        for command in safe.as_list(commands):
            words: list[str] = []
            for word in safe.as_list(command):
                if isinstance(word, str):
                    words.append(word)
                elif isinstance(word, dict) and word.get("replace") == "posargs":
                    words += safe.strs(word.get("default"))
            if words:
                out.append(" ".join(_quote(w) for w in words))
        return out

    def envs_with_factor(self, factor: str) -> list[str]:
        return [e for e in self.envs() if factor in e.split("-")]


def _native_env_list(value: Any) -> list[str]:
    """A TOML `env_list`: names, and `{ product = [...] }` tables whose axes are lists of factors or
    ranges (`{ prefix = "3.", start = 10, stop = 14 }`, both ends included, as in INI's `py3{10-14}`)."""
    out: list[str] = []
    for item in safe.as_list(value)[:MAX_ENTRIES]:
        if len(out) >= MAX_ENTRIES:
            break  # the file's total, whatever its entries (a hundred 4-axis products of 50 factors each)
        if isinstance(item, str):
            out.append(item)
            continue
        axes: list[list[str]] = []
        for axis in safe.as_list(safe.as_dict(item).get("product"))[:4]:
            if isinstance(axis, list):
                axes.append([a for a in axis if isinstance(a, str)][:50])
            elif isinstance(axis, dict) and isinstance(axis.get("start"), int) and isinstance(axis.get("stop"), int):
                start, stop = axis["start"], axis["stop"]
                if not 0 <= stop - start <= 50:
                    axes = []
                    break
                axes.append([f"{safe.as_str(axis.get('prefix'))}{n}" for n in range(start, stop + 1)])
            else:
                axes = []
                break
        if axes:
            # lazily: the product of four 50-factor axes is 6,250,000 names, of which 200 are taken
            out += ["-".join(combo) for combo in islice(product(*axes), min(200, MAX_ENTRIES - len(out)))]
    return out[:MAX_ENTRIES]


def _quote(word: str) -> str:
    return word if re.fullmatch(r"[A-Za-z0-9_./:=@%+,~^*{}-]+", word) else "'" + word.replace("'", "") + "'"


def _ini(text: str) -> dict[str, dict[str, str]]:
    parser = configparser.RawConfigParser(strict=False, delimiters=("=",), comment_prefixes=("#", ";"), inline_comment_prefixes=None)
    try:
        parser.read_string(text)
    except (configparser.Error, ValueError):
        return {}
    out: dict[str, dict[str, str]] = {}
    for section in parser.sections()[:MAX_ENTRIES]:
        try:
            out[section] = {k: v or "" for k, v in parser.items(section)}
        except (configparser.Error, ValueError):
            continue
    return out


def read_tox(tree: TreeBase, dir_: str = "") -> Tox | None:
    for name in ("tox.ini", "tox.toml", "pyproject.toml", "setup.cfg"):
        path = _join(dir_, name)
        text = safe.read_text(tree, path)
        if not text:
            continue
        if name == "tox.toml":
            data = safe.load_toml(text)
            return Tox(path, _native_env_list(data.get("env_list")), {}, data, text, _labels(data.get("labels")))
        if name == "pyproject.toml":
            table = safe.as_dict(safe.dig(safe.load_toml(text), "tool", "tox"))
            if not table:
                continue
            legacy = table.get("legacy_tox_ini")
            if isinstance(legacy, str):
                sections = _ini(legacy)
                return Tox(path, _split_env_list(sections.get("tox", {}).get("envlist", sections.get("tox", {}).get("env_list", ""))),
                           sections, {}, text)
            return Tox(path, _native_env_list(table.get("env_list")), {}, table, text, _labels(table.get("labels")))
        sections = _ini(text)
        head = "tox:tox" if name == "setup.cfg" else "tox"
        if name == "setup.cfg" and head not in sections:
            continue
        if name == "tox.ini" and not sections:
            continue
        envlist = sections.get(head, {}).get("envlist", sections.get(head, {}).get("env_list", ""))
        labels = {k.strip(): _split_env_list(v) for k, v in _ini_labels(sections.get(head, {}).get("labels", "")).items()}
        return Tox(path, _split_env_list(envlist), sections, {}, text, labels)
    return None


def _labels(value: Any) -> dict[str, list[str]]:
    return {k: safe.strs(v) for k, v in safe.as_dict(value).items()}


def _ini_labels(value: str) -> dict[str, str]:
    out = {}
    for line in value.splitlines():
        if "=" in line:
            key, _, rest = line.partition("=")
            out[key.strip()] = rest
    return out


# -- nox ----------------------------------------------------------------------------------------


@dataclass
class Nox:
    file: str
    sessions: dict[str, Entry]
    defaults: list[str] | None  # nox.options.sessions, when set
    # Per session, the string values a project's own decorator is given (`@tox_parameters([...],
    # [VERSIONS, DATABASES], base_tag=...)`), from which it makes tags at run time; and nox.options.tags.
    generated: dict[str, set[str]] = field(default_factory=dict)
    option_tags: list[str] = field(default_factory=list)

    def names(self) -> list[str]:
        return list(self.sessions)

    def find(self, name: str) -> Entry | None:
        if name in self.sessions:
            return self.sessions[name]
        base = re.sub(r"-(\d[\d.]*t?|pypy[\d.]*)$", "", name)  # tests-3.12 -> tests
        entry = self.sessions.get(base)
        return entry if entry is not None and entry.refs == ["python"] else None

    def tagged(self, tag: str) -> list[Entry]:
        found = [e for e in self.sessions.values() if tag in e.refs]
        if found:
            return found
        # A tag made at run time from parameter values (`py-sqla14`): the sessions whose decorator is
        # given every part of it that is not a base tag, a Python selector or the session's name.
        parts = [p for p in re.split(r"[-_]", tag) if p]
        out = []
        for name, values in self.generated.items():
            rest = [p for p in parts if p not in self.option_tags and p != name and not re.fullmatch(r"py(py)?[\d.]*t?", p)]
            if rest and all(p in values for p in rest) and name in self.sessions:
                out.append(self.sessions[name])
        return out


def _decorator_session(node: ast.expr) -> ast.Call | bool:
    target = node.func if isinstance(node, ast.Call) else node
    name = target.attr if isinstance(target, ast.Attribute) else target.id if isinstance(target, ast.Name) else ""
    if name != "session":
        return False
    return node if isinstance(node, ast.Call) else True


def _const_str(node: ast.expr) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def read_nox(tree: TreeBase, dir_: str = "") -> Nox | None:
    path = _join(dir_, "noxfile.py")
    text = safe.read_text(tree, path, safe.MAX_SCRIPT_BYTES)
    if not text:
        return None
    try:
        module = ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    functions = {n.name: n for n in module.body if isinstance(n, ast.FunctionDef)}
    defaults: list[str] | None = None
    option_tags: list[str] = []
    lists: dict[str, list[str]] = {}  # module-level lists of strings, by name
    for node in module.body:
        if isinstance(node, ast.Assign) and any(ast.unparse(t) == "nox.options.sessions" for t in node.targets):
            if isinstance(node.value, (ast.List, ast.Tuple)):
                defaults = [s for s in (_const_str(e) for e in node.value.elts) if s]
        if isinstance(node, ast.Assign) and any(ast.unparse(t) == "nox.options.tags" for t in node.targets):
            if isinstance(node.value, (ast.List, ast.Tuple)):
                option_tags = [s for s in (_const_str(e) for e in node.value.elts) if s]
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name) and isinstance(node.value, (ast.List, ast.Tuple)):
            lists[node.targets[0].id] = [s for s in (_const_str(e) for e in node.value.elts[:200]) if s]

    def strings(node: ast.AST) -> set[str]:
        found: set[str] = set()
        for item in list(ast.walk(node))[:2_000]:
            if isinstance(item, ast.Constant) and isinstance(item.value, str) and len(item.value) < 80:
                found.add(item.value)
            elif isinstance(item, ast.Name) and item.id in lists:
                found |= set(lists[item.id])
        return found

    def runs(fn: ast.FunctionDef, depth: int = 0) -> list[str]:
        out: list[str] = []
        for call in ast.walk(fn):
            if not isinstance(call, ast.Call):
                continue
            func = call.func
            if isinstance(func, ast.Attribute) and func.attr in ("run", "run_always", "run_install") and isinstance(func.value, ast.Name):
                words = [s for s in (_const_str(a) for a in call.args) if s is not None]
                if words and len(words) == len([a for a in call.args if not isinstance(a, ast.Starred)]):
                    out.append(" ".join(_quote(w) for w in words))
            elif isinstance(func, ast.Name) and func.id in functions and depth < 2 and functions[func.id] is not fn:
                out += runs(functions[func.id], depth + 1)
        return out[:50]

    sessions: dict[str, Entry] = {}
    generated: dict[str, set[str]] = {}
    for fn in functions.values():
        decorator = next((d for d in (_decorator_session(x) for x in fn.decorator_list) if d), None)
        if decorator is None:
            continue
        name = fn.name
        custom = [d for d in fn.decorator_list if isinstance(d, ast.Call) and not _decorator_session(d)
                  and not (isinstance(d.func, ast.Attribute) and d.func.attr == "parametrize")]
        refs: list[str] = []
        default = True
        if isinstance(decorator, ast.Call):
            for keyword in decorator.keywords:
                if keyword.arg == "name" and _const_str(keyword.value):
                    name = str(_const_str(keyword.value))
                elif keyword.arg == "python" and not (isinstance(keyword.value, ast.Constant) and keyword.value.value in (None, False)):
                    if isinstance(keyword.value, (ast.List, ast.Tuple, ast.Name)):
                        refs.append("python")
                elif keyword.arg == "tags" and isinstance(keyword.value, (ast.List, ast.Tuple)):
                    refs += [s for s in (_const_str(e) for e in keyword.value.elts) if s]
                elif keyword.arg == "default" and isinstance(keyword.value, ast.Constant) and keyword.value.value is False:
                    default = False
        if valid_name(name):
            sessions[name] = Entry(name, runs(fn), fn.lineno, refs, default)
            if custom:
                generated[name] = set().union(*(strings(d) for d in custom))
    return Nox(path, sessions, defaults, generated, option_tags)


# -- package.json scripts -----------------------------------------------------------------------


def read_package_json(tree: TreeBase, dir_: str = "") -> tuple[dict[str, Any], str]:
    text = safe.read_text(tree, _join(dir_, "package.json"))
    data = safe.load_json(text)
    return (data if isinstance(data, dict) else {}), text


def scripts(package: dict[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, body in list(safe.as_dict(package.get("scripts")).items())[:MAX_ENTRIES]:
        if valid_name(name) and isinstance(body, str) and len(body) < 2000:
            out[name] = body
    return out


# -- Makefile -----------------------------------------------------------------------------------

MAKEFILES = ("GNUmakefile", "makefile", "Makefile")


@dataclass
class Makefile:
    file: str
    rules: dict[str, Entry]
    patterns: list[tuple[str, Entry]]
    variables: dict[str, str]
    default: str | None

    def find(self, target: str) -> Entry | None:
        if target in self.rules:
            return self.rules[target]
        for pattern, entry in self.patterns:
            prefix, _, suffix = pattern.partition("%")
            if target.startswith(prefix) and target.endswith(suffix) and len(target) > len(prefix) + len(suffix):
                stem = target[len(prefix):len(target) - len(suffix) if suffix else None]
                commands = [c.replace("$*", stem).replace("$(*)", stem) for c in entry.commands]
                return Entry(target, commands, entry.line, entry.refs)
        return None

    def expand(self, text: str, target: str, depth: int = 0, unknown: str | None = None) -> str | None:
        """Make's `$(VAR)` and `${VAR}` from the file's variables; None when a function or an unknown
        variable would decide the command. With `unknown`, such a reference becomes that word instead:
        the line can then tell which tools it runs (`for d in $(shell ...); do go test ./...`), never
        what to print."""
        text = text.replace("$$", "\0")
        text = text.replace("$@", target).replace("$(MAKE)", "make").replace("${MAKE}", "make")

        def sub(match: re.Match[str]) -> str:
            name = match.group(1) or match.group(2)
            if name in self.variables:
                inner = self.expand(self.variables[name], target, depth + 1, unknown) if depth < 6 else None
                if inner is not None:
                    return inner
                if unknown is not None:
                    return unknown
                raise KeyError(name)
            return ""  # make expands an undefined variable to nothing

        try:
            text = re.sub(r"\$\(([A-Za-z0-9_.-]+)\)|\$\{([A-Za-z0-9_.-]+)\}", sub, text)
        except KeyError:
            return None
        if unknown is not None:
            text = re.sub(r"\$\([^()]*\)|\$\{[^{}]*\}|\$[A-Za-z<^?*]", unknown, text)
        if re.search(r"\$[({]|\$[A-Za-z<^?*]", text):
            return None
        return text.replace("\0", "$")


def read_makefile(tree: TreeBase, dir_: str = "", name: str | None = None, depth: int = 0) -> Makefile | None:
    candidates = [name] if name else list(MAKEFILES)
    for candidate in candidates:
        path = _join(dir_, candidate)
        text = safe.read_text(tree, path, safe.MAX_SCRIPT_BYTES * 2)
        if text:
            return _parse_makefile(tree, dir_, path, text, depth)
    return None


def _parse_makefile(tree: TreeBase, dir_: str, path: str, text: str, depth: int) -> Makefile:
    rules: dict[str, Entry] = {}
    patterns: list[tuple[str, Entry]] = []
    variables: dict[str, str] = {"MAKE": "make"}  # make's own; every other variable must be defined in the file
    default: str | None = None
    current: list[Entry] = []
    prefix = "\t"
    lines = text.replace("\\\n", " ").splitlines()
    in_define = False
    for number, line in enumerate(lines, 1):
        if in_define:
            in_define = not line.strip().startswith("endef")
            continue
        if line.startswith("define "):
            in_define = True
            continue
        if line.startswith(prefix) and current:
            recipe = line[len(prefix):].strip()
            if recipe and not recipe.startswith("#"):
                recipe = recipe.lstrip("@-+ ")
                for entry in current:
                    entry.commands.append(recipe)
            continue
        stripped = line.split("#", 1)[0].rstrip()
        if not stripped.strip():
            continue
        include = re.match(r"^-?include\s+(\S+)$", stripped)
        if include and depth < 2:
            other = read_makefile(tree, dir_, include.group(1), depth + 1) if "$" not in include.group(1) else None
            if other is not None:
                for target, entry in other.rules.items():
                    rules.setdefault(target, entry)
                patterns += other.patterns
                for key, value in other.variables.items():
                    variables.setdefault(key, value)
            continue
        assign = re.match(r"^(?:export\s+|override\s+)?([A-Za-z0-9_.-]+)\s*(\?=|:::=|::=|:=|\+=|=)\s*(.*)$", stripped)
        if assign and not stripped.startswith("\t"):
            name, op, value = assign.groups()
            if op == "+=":
                variables[name] = (variables.get(name, "") + " " + value).strip()
            elif op == "?=":
                variables.setdefault(name, value)
            else:
                variables[name] = value
            if name == ".RECIPEPREFIX" and value:
                prefix = value[0]
            current = []
            continue
        rule = re.match(r"^([^:=#\t][^:=#]*?)\s*::?\s*(?!=)(.*)$", stripped)
        if rule:
            targets = rule.group(1).split()
            prereq_text = rule.group(2).split(";", 1)
            prereqs = [p for p in prereq_text[0].split() if "$" not in p and "=" not in p]
            current = []
            for target in targets:
                if target.startswith(".") and target not in (".DEFAULT_GOAL",):
                    continue
                if "$" in target or not valid_name(target.replace("%", "x")):
                    continue
                entry = Entry(target, [], number, prereqs)
                if len(prereq_text) > 1 and prereq_text[1].strip():
                    entry.commands.append(prereq_text[1].strip())
                if "%" in target:
                    patterns.append((target, entry))
                else:
                    if target in rules:  # a second rule for the same target adds prerequisites
                        rules[target].refs += prereqs
                        current.append(rules[target])
                        continue
                    rules[target] = entry
                    if default is None:
                        default = target
                current.append(entry)
            if len(rules) > MAX_ENTRIES:
                break
            continue
        current = []
    goal = variables.get(".DEFAULT_GOAL")
    if goal and goal in rules:
        default = goal
    return Makefile(path, rules, patterns, variables, default)


# -- justfile, Taskfile ------------------------------------------------------------------------


def read_justfile(tree: TreeBase, dir_: str = "") -> dict[str, Entry]:
    for name in ("justfile", "Justfile", ".justfile"):
        text = safe.read_text(tree, _join(dir_, name), safe.MAX_SCRIPT_BYTES)
        if text:
            break
    else:
        return {}
    recipes: dict[str, Entry] = {}
    current: Entry | None = None
    for number, line in enumerate(text.splitlines(), 1):
        if line[:1] in (" ", "\t") and current is not None:
            body = line.strip().lstrip("@-")
            if body and not body.startswith("#"):
                current.commands.append(body if "{{" not in body else "")
            continue
        match = re.match(r"^@?([A-Za-z_][A-Za-z0-9_-]*)((?:\s+[^:=]+?)?)\s*:(?!=)\s*(.*)$", line)
        if match:
            current = Entry(match.group(1), [], number, [d for d in match.group(3).split() if valid_name(d)])
            recipes.setdefault(match.group(1), current)
        else:
            current = None
    for entry in recipes.values():
        entry.commands = [c for c in entry.commands if c]
    return recipes


def read_taskfile(tree: TreeBase, dir_: str = "") -> dict[str, Entry]:
    for name in ("Taskfile.yml", "Taskfile.yaml", "taskfile.yml", "taskfile.yaml"):
        text = safe.read_text(tree, _join(dir_, name))
        if text:
            break
    else:
        return {}
    data = safe.load_yaml(text)
    out: dict[str, Entry] = {}
    for task, body in list(safe.as_dict(safe.as_dict(data).get("tasks")).items())[:MAX_ENTRIES]:
        if not valid_name(task):
            continue
        commands: list[str] = []
        refs: list[str] = []
        body_dict = safe.as_dict(body) if not isinstance(body, (str, list)) else {"cmds": body}
        for command in safe.as_list(body_dict.get("cmds")) or safe.strs(body_dict.get("cmds")):
            if isinstance(command, str):
                commands.append(command if "{{" not in command else "")
            elif isinstance(command, dict):
                if isinstance(command.get("cmd"), str) and "{{" not in command["cmd"]:
                    commands.append(command["cmd"])
                elif isinstance(command.get("task"), str):
                    refs.append(command["task"])
        refs += [d for d in safe.as_list(body_dict.get("deps")) if isinstance(d, str)]
        out[task] = Entry(task, [c for c in commands if c], _line(text, f"{task}:"), refs)
    return out


# -- Rakefile -----------------------------------------------------------------------------------


def read_rakefile(tree: TreeBase, dir_: str = "") -> dict[str, Entry]:
    """Rake tasks from the Rakefile (and rakelib/, tasks/, lib/tasks/ *.rake): names (with their
    namespaces), what they run and their prerequisites. Task kinds come from the library that
    defines them (Rake::TestTask, Minitest::TestTask, RSpec::Core::RakeTask, RuboCop::RakeTask,
    bundler/gem_tasks) or from the `sh` lines in their body. When the Rakefile loads task files this
    reader cannot follow, the key "*" is present: an unknown task may still exist."""
    texts: list[tuple[str, str]] = []
    for name in ("Rakefile", "rakefile", "Rakefile.rb"):
        text = safe.read_text(tree, _join(dir_, name), safe.MAX_SCRIPT_BYTES)
        if text:
            texts.append((name, text))
            break
    if not texts:
        return {}
    opened = bool(re.search(r"\b(load|import)\b|Dir\[|Dir\.glob|require_relative|require\s+[\"']\./", texts[0][1]))
    for folder in ("rakelib", "tasks", "lib/tasks"):
        for entry in tree.list_dir(_join(dir_, folder))[:50]:
            if entry.kind == "file" and entry.name.endswith(".rake"):
                texts.append((entry.path, safe.read_text(tree, entry.path, safe.MAX_SCRIPT_BYTES)))
    tasks: dict[str, Entry] = {}

    def add(name: str, commands: list[str], line: int, refs: list[str] | None = None) -> None:
        if valid_name(name):
            existing = tasks.get(name)
            if existing is None:
                tasks[name] = Entry(name, commands, line, refs or [])
            else:
                existing.commands += commands
                existing.refs += refs or []

    def label(match: re.Match[str], default: str) -> str:
        return match.group(1) or default

    for _file, text in texts:
        for pattern, default, command in ((r"Rake::TestTask\.new", "test", "ruby -Itest"), (r"Minitest::TestTask\.create", "test", "ruby -Itest"),
                                          (r"RSpec::Core::RakeTask\.new", "spec", "rspec"), (r"RuboCop::RakeTask\.new", "rubocop", "rubocop"),
                                          (r"Cucumber::Rake::Task\.new", "features", "cucumber")):
            for match in re.finditer(pattern + r"(?:\(\s*[:\"']?([\w:-]+)[\"']?)?", text):
                add(label(match, default), [command], _line(text, match.group(0)))
        if re.search(r"require\s+[\"']standard/rake[\"']", text):
            add("standard", ["standardrb"], _line(text, "standard/rake"))
        if re.search(r"require\s+[\"']bundler/gem_tasks[\"']|GemHelper\.install_tasks", text):
            for name in ("release", "build", "install"):
                add(name, ["gem push" if name == "release" else "gem build"], _line(text, "gem"))
        namespaces: list[tuple[str, int]] = []
        lines = text.splitlines()
        for number, line in enumerate(lines, 1):
            indent = len(line) - len(line.lstrip())
            stripped = line.strip()
            if stripped == "end" and namespaces and namespaces[-1][1] == indent:
                namespaces.pop()
                continue
            space = re.match(r"namespace\s*\(?\s*[:\"']([\w-]+)[\"']?\s*\)?\s*do\b", stripped)
            if space:
                namespaces.append((space.group(1), indent))
                continue
            match = re.match(r"task\s*\(?\s*(?::([\w-]+)|[\"']([\w:-]+)[\"']|([\w-]+):)\s*(?:(?:=>|,)?\s*(.*))?$", stripped)
            if not match:
                continue
            name = match.group(1) or match.group(2) or match.group(3)
            rest = match.group(4) or ""
            refs: list[str] = []
            for a, b, c in re.findall(r":([\w:-]+)|[\"']([\w:-]+)[\"']|%[wi]\[([^\]]*)\]", rest.split(" do", 1)[0]):
                refs += [a] if a else [b] if b else c.split()
            body: list[str] = []
            if re.search(r"\bdo\b(\s*\|[^|]*\|)?\s*$", rest) or stripped.endswith(" do"):
                for inner in lines[number:number + 60]:
                    inner_indent = len(inner) - len(inner.lstrip())
                    if inner.strip() == "end" and inner_indent <= indent:
                        break
                    for sh in re.finditer(r"\b(?:sh|system)\s*\(?\s*([\"'])([^\"'\n#]+)\1", inner):
                        body.append(sh.group(2))
                    for invoke in re.finditer(r"Rake::Task\[\s*[\"']([\w:-]+)[\"']\s*\]\.(?:invoke|execute)", inner):
                        refs.append(invoke.group(1))
            full = ":".join([n for n, _ in namespaces] + [name])
            add(full, body, number, [r for r in refs if r != full])
    if opened:
        tasks["*"] = Entry("*", [], 1)
    return tasks


# -- composer scripts ---------------------------------------------------------------------------


def composer_scripts(tree: TreeBase, dir_: str = "") -> tuple[dict[str, Entry], dict[str, Any], str]:
    text = safe.read_text(tree, _join(dir_, "composer.json"))
    data = safe.load_json(text)
    if not isinstance(data, dict):
        return {}, {}, text
    out: dict[str, Entry] = {}
    for name, body in list(safe.as_dict(data.get("scripts")).items())[:MAX_ENTRIES]:
        if not valid_name(name):
            continue
        commands: list[str] = []
        refs: list[str] = []
        for line in safe.strs(body):
            if line.startswith("@") and not line.startswith(("@php", "@composer", "@putenv")):
                refs.append(line[1:].split()[0])
                commands.append(f"composer {line[1:]}")
            elif line.startswith("@php "):
                commands.append("php " + line[5:])
            elif line.startswith("@composer "):
                commands.append("composer " + line[10:])
            elif "::" in line and " " not in line:
                commands.append("")  # a PHP callback
            elif not line.startswith("@putenv"):
                commands.append(line)
        out[name] = Entry(name, [c for c in commands if c], _line(text, f'"{name}"'), refs)
    return out, data, text


# -- pyproject task tables: hatch, pdm, poe, taskipy, pixi ---------------------------------------


@dataclass
class PyScripts:
    hatch: dict[str, dict[str, Entry]]  # env -> script -> entry
    pdm: dict[str, Entry]
    poe: dict[str, Entry]
    taskipy: dict[str, Entry]
    file: str = "pyproject.toml"
    # pixi tasks (`[tool.pixi.tasks]`, `[tool.pixi.feature.X.tasks]`, or the same tables in pixi.toml):
    # `pixi run -e ENV TASK` runs the task of whichever feature the environment includes; a name
    # is read once, from the first table that defines it.
    pixi: dict[str, Entry] = field(default_factory=dict)


def _script_lines(value: Any) -> tuple[list[str], list[str]]:
    """Command lines and references to other scripts of one task definition in any of the common forms."""
    if isinstance(value, str):
        return [value], []
    if isinstance(value, list):
        lines, refs = [], []
        for item in value:
            if isinstance(item, str):
                lines.append(item)
            elif isinstance(item, dict) and isinstance(item.get("ref"), str):
                refs.append(item["ref"])
        return lines, refs
    if isinstance(value, dict):
        for key in ("cmd", "shell"):
            body = value.get(key)
            if isinstance(body, str):
                return [body], []
            if isinstance(body, list) and all(isinstance(x, str) for x in body):
                return [" ".join(_quote(x) for x in body)], []
        for key in ("composite", "sequence"):
            if isinstance(value.get(key), list):
                return [x for x in value[key] if isinstance(x, str)], []
        if isinstance(value.get("ref"), str):
            return [], [value["ref"]]
    return [], []


def read_pyscripts(tree: TreeBase, dir_: str = "", pyproject: dict[str, Any] | None = None) -> PyScripts:
    data = pyproject if pyproject is not None else safe.load_toml(safe.read_text(tree, _join(dir_, "pyproject.toml")))
    tool = safe.as_dict(data.get("tool"))
    hatch_envs = safe.as_dict(safe.dig(tool, "hatch", "envs"))
    hatch_toml = safe.load_toml(safe.read_text(tree, _join(dir_, "hatch.toml")))
    if hatch_toml:
        hatch_envs = {**hatch_envs, **safe.as_dict(hatch_toml.get("envs"))}
    hatch: dict[str, dict[str, Entry]] = {}
    for env, table in list(hatch_envs.items())[:100]:
        entries: dict[str, Entry] = {}
        for name, body in list(safe.as_dict(safe.as_dict(table).get("scripts")).items())[:MAX_ENTRIES]:
            if valid_name(name):
                lines, refs = _script_lines(body)
                entries[name] = Entry(name, lines, 1, refs)
        if valid_name(env):
            hatch[env] = entries

    def table_entries(table: Any) -> dict[str, Entry]:
        out: dict[str, Entry] = {}
        for name, body in list(safe.as_dict(table).items())[:MAX_ENTRIES]:
            if valid_name(name) and not name.startswith("_"):
                lines, refs = _script_lines(body)
                out[name] = Entry(name, lines, 1, refs)
        return out

    def pixi_entries(*manifests: dict[str, Any]) -> dict[str, Entry]:
        out: dict[str, Entry] = {}
        for manifest in manifests:
            features = [safe.as_dict(feature).get("tasks") for feature in list(safe.as_dict(manifest.get("feature")).values())[:100]]
            for table in (manifest.get("tasks"), *features):
                for name, body in list(safe.as_dict(table).items())[:MAX_ENTRIES]:
                    if name in out or not valid_name(name) or name.startswith("_"):
                        continue
                    lines, refs = _script_lines(body)
                    if isinstance(body, dict):  # `depends-on` runs first: another task's name, or {task = ...}
                        depends = body.get("depends-on", body.get("depends_on"))
                        for dep in (depends if isinstance(depends, list) else [depends])[:20]:
                            dep = dep.get("task") if isinstance(dep, dict) else dep
                            if isinstance(dep, str) and valid_name(dep):
                                refs.append(dep)
                    out[name] = Entry(name, lines, 1, refs)
        return out

    pixi_toml = safe.load_toml(safe.read_text(tree, _join(dir_, "pixi.toml"))) if tree.is_file(_join(dir_, "pixi.toml")) else {}
    return PyScripts(hatch, table_entries(safe.dig(tool, "pdm", "scripts")), table_entries(safe.dig(tool, "poe", "tasks")),
                     table_entries(safe.dig(tool, "taskipy", "tasks")),
                     pixi=pixi_entries(safe.as_dict(tool.get("pixi")), safe.as_dict(pixi_toml)))


class Lazy:
    """Per-directory cache of everything above, so one analysis reads each file once."""

    def __init__(self, tree: TreeBase) -> None:
        self.tree = tree
        self._cache: dict[tuple[str, str], Any] = {}

    def get(self, kind: str, dir_: str) -> Any:
        key = (kind, dir_)
        if key not in self._cache:
            reader = {
                "tox": read_tox, "nox": read_nox, "make": read_makefile, "just": read_justfile, "task": read_taskfile,
                "rake": read_rakefile, "composer": lambda t, d: composer_scripts(t, d)[0],
                "package": lambda t, d: read_package_json(t, d)[0], "py": read_pyscripts,
            }[kind]
            try:
                self._cache[key] = reader(self.tree, dir_)
            except (RecursionError, ValueError, TypeError, KeyError, IndexError, AttributeError):
                self._cache[key] = None
        return self._cache[key]

    @cached_property
    def root_files(self) -> set[str]:
        return {e.name for e in self.tree.list_dir("")}
