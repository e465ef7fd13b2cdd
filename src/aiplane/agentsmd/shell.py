"""Shell scripts as data: the simple commands a script runs, with their directory and environment.

Only what can be known without running anything is kept: compound statements (if/for/while/case,
functions, subshells, heredocs), command substitutions and background jobs are skipped; a `cd` to
an unknown place stops the script. Nothing here executes or expands anything.
"""

from __future__ import annotations

import re
import shlex
from contextlib import AbstractContextManager
from contextvars import ContextVar
from dataclasses import dataclass, field
from posixpath import normpath

from aiplane.agentsmd.safe import shared_work

_ASSIGN = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$", re.S)
_ALL_ARGS = {"$@", "${@}", "$*", "${*}"}
ARGS = "@"  # the env key holding a script's arguments (space-separated); positional ones are "1", "2", ...
# A bash array `A=(x y)` is kept as env["A[@]"] = "x\x1fy" (and env["A"] = "x", as bash reads `$A`).
ARRAY_SUFFIX = "[@]"
ARRAY_SEP = "\x1f"
_OPENERS = {"if", "for", "while", "until", "case", "select", "function"}
_CLOSERS = {"fi", "done", "esac"}
_SEPARATORS = {"&&", "||", ";", ";;", "&", "|", "|&", "\n"}
# Commands that only shape the environment or print; they are skipped, not classified.
_NOISE = {"echo", "printf", "set", "source", ".", "true", ":", "exit", "return", "shopt", "trap", "wait",
          "unset", "alias", "local", "declare", "typeset", "readonly", "ulimit", "umask", "hash", "type", "which",
          "command", "sleep", "read", "getopts", "date", "ls", "pwd", "cat", "mkdir", "rm", "cp", "mv", "chmod", "touch", "env",
          "printenv", "df", "du", "free", "uname", "whoami", "id", "ln", "test", "[", "[[", "git", "gh", "curl", "wget",
          "tar", "unzip", "sudo", "apt-get", "apt", "brew", "choco", "yum", "dnf", "apk", "nproc", "tee", "find", "xargs",
          "grep", "sed", "awk", "jq", "yq", "head", "tail", "sort", "wc", "diff", "cut", "tr", "basename", "dirname",
          "export", "cd", "pushd", "popd", "eval", "exec", "docker", "docker-compose", "systemctl", "service"}
# Wrappers whose argument is the real command.
_WRAPPERS = {"time", "nice", "nohup", "xvfb-run", "stdbuf", "caffeinate", "unbuffer", "dbus-run-session"}
_PIPE_SINKS = {"tee", "cat", "less", "more", "head", "tail"}
MAX_LINES = 2_000
# Caps on what expansion may produce, so a hostile script (`V="$V $V"` thirty times, `A+=("${A[@]}")`,
# `${V//a/$V$V}`, a 100 KB value referenced on every line) costs bounded time and memory. Over a cap the
# value is unknown, as any unknown value: the command using it is not stated.
MAX_VALUE_CHARS = 2_000  # one expanded word or variable value
MAX_ARRAY_WORDS = 200  # one array's items
MAX_PATTERN_CHARS = 100  # the pattern of `${V#p}`, `${V%p}`, `${V/p/r}`
MAX_MATCH_CELLS = 50_000  # value length x pattern length for one pattern operation (about 20 ms)
_CELL_COST = 4  # budget units per matching cell: a cell costs more than a character copied
# Everything one script (or one CI file, its steps together) may produce by expansion: characters of
# values and words, plus the cells pattern matching visits. Past it, further expansions are unknown.
EXPANSION_BUDGET = 1_000_000
# Everything one analysis may produce by expansion, every script and CI system together (about
# 150 ms of pattern matching): a script called thousands of times with different arguments, or a
# thousand scripts, cannot each spend a budget of their own.
ANALYSIS_EXPANSION_BUDGET = 4 * EXPANSION_BUDGET
# A value from a variable, an array or the environment that would put shell syntax into a printed word
# (`T='tests; curl evil|sh'` then `pytest "$T"`): the command is not stated.
_UNSAFE_VALUE = re.compile(r"[;|&$`<>()\\\n\r]")
_budget: ContextVar[list[int] | None] = ContextVar("agentsmd_shell_expansion_budget", default=None)


def expansion_budget(units: int = EXPANSION_BUDGET) -> AbstractContextManager[None]:
    """One budget for the expansions made inside (a script, or a CI file's steps); a nested call
    shares the outer one."""
    return shared_work(_budget, lambda: [units])


def _spend(units: int) -> bool:
    """Take `units` from the current budget; False (and the budget left empty) when it cannot pay."""
    budget = _budget.get()
    if budget is None:
        return True
    if budget[0] < units:
        budget[0] = 0
        return False
    budget[0] -= units
    return True


@dataclass
class Simple:
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    cwd: str = ""  # relative to the directory the script started in; "" is that directory
    line: int = 0  # 0-based line in the script
    diff_checked: bool = False  # followed by `git diff --exit-code`: a formatter used as a check
    # `find src -name '*.h' | xargs clang-format -n`: the commands listing the files (producers) and the
    # `xargs` words; argv is then the tool xargs runs, for classification.
    feed: list[list[str]] = field(default_factory=list)
    xargs: list[str] = field(default_factory=list)


def _join_continuations(text: str) -> list[tuple[int, str]]:
    lines = text.splitlines()[:MAX_LINES]
    out: list[tuple[int, str]] = []
    buffer, start = "", 0
    for number, line in enumerate(lines):
        if not buffer:
            start = number
        stripped = line.rstrip()
        trailing = len(stripped) - len(stripped.rstrip("\\"))
        if trailing % 2 == 1:
            buffer += stripped[:-1] + " "
            continue
        buffer += line
        # An array literal spread over lines (`ARGS=(` ... `)`) is one statement.
        if _ARRAY_START.match(buffer) and _paren_balance(buffer) > 0 and number + 1 < len(lines):
            buffer += "\n"  # a newline, so a comment in the list ends with its line
            continue
        # A line ending in a pipe or a logical operator continues too.
        if re.search(r"(\|\||&&|\|)\s*$", buffer) and number + 1 < len(lines):
            buffer += " "
            continue
        out.append((start, buffer))
        buffer = ""
    if buffer:
        out.append((start, buffer))
    return out


_ARRAY_START = re.compile(r"^\s*(?:(?:declare|typeset|local|readonly)(?:\s+-[A-Za-z]+)*\s+)?[A-Za-z_][A-Za-z0-9_]*\+?=\(")
_ARRAY_ASSIGN = re.compile(r"^(?:(?:declare|typeset|local|readonly)(?:\s+-[A-Za-z]+)*\s+)?([A-Za-z_][A-Za-z0-9_]*)(\+?)=\((.*)\)\s*;?\s*$", re.S)
_APPEND = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\+=(.*)$", re.S)
_SPLICE = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\[[@*]\]\}$")


def _paren_balance(text: str) -> int:
    """Open minus closed parentheses outside quotes and comments."""
    balance, quote, i = 0, "", 0
    while i < len(text):
        char = text[i]
        if quote:
            if char == quote:
                quote = ""
            elif char == "\\" and quote == '"':
                i += 1
        elif char in "'\"":
            quote = char
        elif char == "\\":
            i += 1
        elif char == "#" and (i == 0 or text[i - 1] in " \t\n("):
            end = text.find("\n", i)
            if end < 0:
                break
            i = end
        elif char == "(":
            balance += 1
        elif char == ")":
            balance -= 1
        i += 1
    return balance


def _assign_array(match: re.Match[str], env: dict[str, str]) -> None:
    """`A=(x "y z")` and `A+=(w)`: the array's words when every one is known, else A is unknown."""
    name, append, body = match.group(1), match.group(2), match.group(3)
    words = _tokens(body)
    items: list[str] | None = []
    if words is None or any(w in _SEPARATORS or w in ("(", ")", "<", ">") for w in words):
        items = None
    else:
        for word in words:
            spliced = _splice(word, env)
            if spliced is not None:
                items += spliced
            else:
                value = expand(word, env)
                if value is None:
                    items = None
                    break
                items.append(value)
            if len(items) > MAX_ARRAY_WORDS:
                items = None  # `A+=("${A[@]}")` over and over: too big to know
                break
    if items is not None and append:
        if name + ARRAY_SUFFIX in env:
            items = env[name + ARRAY_SUFFIX].split(ARRAY_SEP) + items if env[name + ARRAY_SUFFIX] else items
        elif name in env and "$" not in env[name]:
            items = ([env[name]] if env[name] else []) + items
        else:
            items = None
    if items is not None and (len(items) > MAX_ARRAY_WORDS or sum(len(item) + 1 for item in items) > MAX_VALUE_CHARS):
        items = None
    if items is None or any(ARRAY_SEP in item or "$" in item for item in items):
        env.pop(name, None)
        env.pop(name + ARRAY_SUFFIX, None)
        return
    env[name + ARRAY_SUFFIX] = ARRAY_SEP.join(items)
    env[name] = items[0] if items else ""


def _splice(word: str, env: dict[str, str]) -> list[str] | None:
    """The words of `"${A[@]}"` (an array, or a plain variable as a one-item array); None for any other word
    or an unknown array. An empty array gives no words."""
    match = _SPLICE.match(word)
    if not match:
        return None
    name = match.group(1)
    array = name + ARRAY_SUFFIX in env
    if array:
        value = env[name + ARRAY_SUFFIX]
    elif name in env and "$" not in env[name]:
        value = env[name]
    else:
        return None
    if len(value) > MAX_VALUE_CHARS or not _spend(len(value) + 1):
        return None
    if not array:
        return [value]
    return value.split(ARRAY_SEP) if value else []


def _tokens(line: str) -> list[str] | None:
    """Words and operators of one line, quotes removed; None when it cannot be tokenized."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars="();<>|&")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    try:
        return list(lexer)
    except ValueError:
        return None


def _has_substitution(line: str) -> bool:
    return "`" in line or "$(" in line or "<(" in line or ">(" in line


_STAR = "*"
_ANY = "?"


def _glob_tokens(pattern: str) -> list[str | re.Pattern[str]] | None:
    """A shell pattern as tokens: `*`, `?`, a literal character, or a compiled one-character class for
    `[...]`; None for a pattern too long or with a class not worth guessing (`[[:alpha:]]`)."""
    if len(pattern) > MAX_PATTERN_CHARS:
        return None
    out: list[str | re.Pattern[str]] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "*":
            if out[-1:] != [_STAR]:  # `**` is `*`
                out.append(_STAR)
        elif char == "?":
            out.append(_ANY)
        elif char == "[":
            end = pattern.find("]", i + 2 if pattern[i + 1:i + 2] in ("!", "^") else i + 1)
            if end < 0:
                out.append("\\" + char)
            else:
                body = pattern[i + 1:end]
                negate = body[:1] in ("!", "^")
                body = body[1:] if negate else body
                if "[:" in body:
                    return None  # character classes: not worth guessing
                try:
                    out.append(re.compile("[" + ("^" if negate else "") + body.replace("\\", "\\\\") + "]", re.S))
                except re.error:
                    return None
                i = end
        elif char == "\\" and i + 1 < len(pattern):
            out.append("\\" + pattern[i + 1])
            i += 1
        else:
            out.append("\\" + char)
        i += 1
    return out


def _match_ends(pattern: str, value: str) -> tuple[list[int], list[int]] | None:
    """For each start i of `value`, the shortest and the longest end e such that value[i:e] matches the
    shell pattern (-1 when none). One backward pass over value x pattern (no backtracking, so
    `*a*a*a*b` costs what `ab` does); None when the pattern is not read or the work is over its caps."""
    tokens = _glob_tokens(pattern)
    n, m = len(value), len(tokens or [])
    cells = (n + 1) * (m + 1)
    if tokens is None or n > MAX_VALUE_CHARS or cells > MAX_MATCH_CELLS or not _spend(_CELL_COST * cells):
        return None
    shortest, longest = [-1] * (n + 1), [-1] * (n + 1)
    next_lo: list[int] = []
    next_hi: list[int] = []
    for i in range(n, -1, -1):
        lo, hi = [-1] * (m + 1), [-1] * (m + 1)
        lo[m] = hi[m] = i  # the empty rest of the pattern matches the empty string
        char = value[i] if i < n else ""
        for k in range(m - 1, -1, -1):
            token = tokens[k]
            if token == _STAR:
                # `*` matches nothing (go on with the pattern) or this character (stay on the star)
                a_lo, a_hi = lo[k + 1], hi[k + 1]
                b_lo, b_hi = (next_lo[k], next_hi[k]) if i < n else (-1, -1)
                hi[k] = max(a_hi, b_hi)
                lo[k] = a_lo if b_lo < 0 else b_lo if a_lo < 0 else min(a_lo, b_lo)
            elif i < n and (token == _ANY or (token[1:] == char if isinstance(token, str) else token.match(char))):
                lo[k], hi[k] = next_lo[k + 1], next_hi[k + 1]
        shortest[i], longest[i] = lo[0], hi[0]
        next_lo, next_hi = lo, hi
    return shortest, longest


def _trim(value: str, op: str, pattern: str) -> str | None:
    """`${V#p}`, `${V##p}`, `${V%p}`, `${V%%p}`: the value without its shortest/longest matching prefix/suffix."""
    ends = _match_ends(pattern, value)
    if ends is None:
        return None
    shortest, longest = ends
    n = len(value)
    if op in ("#", "##"):
        cut = shortest[0] if op == "#" else longest[0]
        return value if cut < 0 else value[cut:]
    # a suffix value[i:] matches when the longest match from i reaches the end
    starts = [i for i in range(n + 1) if longest[i] == n]
    if not starts:
        return value
    return value[:starts[-1] if op == "%" else starts[0]]


def _replace(value: str, op: str, pattern: str, replacement: str) -> str | None:
    """`${V/p/r}` (first), `${V//p/r}` (all), `${V/#p/r}` (at the start), `${V/%p/r}` (at the end); longest match."""
    if not pattern:
        return value if _glob_tokens(pattern) is not None else None
    ends = _match_ends(pattern, value)
    if ends is None:
        return None
    longest = ends[1]
    n = len(value)
    if op == "/#":
        return value if longest[0] < 0 else replacement + value[longest[0]:]
    if op == "/%":
        start = next((i for i in range(n + 1) if longest[i] == n), None)
        return value if start is None else value[:start] + replacement
    out: list[str] = []
    size = 0
    i = 0
    while i < n:
        if longest[i] > i:
            out.append(replacement)
            size += len(replacement)
            i = longest[i]
            if op == "/":
                out.append(value[i:])
                break
        else:
            out.append(value[i])
            size += 1
            i += 1
        if size > MAX_VALUE_CHARS:
            return None  # `${V//a/$V$V}`: grows past what is kept
    return "".join(out)


_PARAM = re.compile(r"^(#?)([A-Za-z_][A-Za-z0-9_]*|[0-9]+|[@*#?])(\[[^\]]*\])?(.*)$", re.S)


def _parameter(inner: str, env: dict[str, str], depth: int) -> str | None:
    """The value of `${inner}`, or None when it cannot be known. Supports the defaults (`:-`, `-`, `:=`,
    `:+`), prefix/suffix trimming (`#`, `##`, `%`, `%%`), substitution (`/`, `//`, `/#`, `/%`), case
    (`^^`, `,,`, `^`, `,`), substrings (`:offset[:length]`), lengths (`#V`) and arrays (`A[@]`, `A[n]`)."""
    match = _PARAM.match(inner)
    if not match:
        return None
    length, name, index, rest = match.groups()
    if name in ("#", "?") or (name in ("@", "*") and ARGS not in env):
        return None
    if name in ("@", "*"):
        value: str | None = env.get(ARGS, "")
    elif index is not None:
        key = index[1:-1].strip()
        items = env[name + ARRAY_SUFFIX].split(ARRAY_SEP) if name + ARRAY_SUFFIX in env else ([env[name]] if name in env else None)
        if items is None:
            value = None
        elif key in ("@", "*"):
            value = " ".join(items)
        elif key.isdigit():
            value = items[int(key)] if int(key) < len(items) else ""
        else:
            return None
    elif name.isdigit() and name not in env and ARGS in env:
        value = ""  # a script run with fewer arguments
    else:
        value = env.get(name)
    if value is not None and ("$" in value or len(value) > MAX_VALUE_CHARS):
        value = None  # a value that is itself unknown, or too long to be kept
    if length:
        return None if value is None or rest else str(len(value))
    if not rest:
        return value

    def word(text: str) -> str | None:
        return expand(text, env, depth + 1)

    for op in (":-", ":=", ":+", ":?", "-", "=", "+", "?"):
        if not rest.startswith(op):
            continue
        argument = rest[len(op):]
        unknown_but_set = value is None and name in env
        if unknown_but_set:
            return None
        unset = value is None
        missing = unset or (op.startswith(":") and value == "")
        if op[-1] == "+":
            return "" if missing else word(argument)
        if op[-1] == "?":
            return None if missing else value
        # unset here (not in the known environment): the default applies, as a script run without it
        return word(argument) if missing else value
    if value is None:
        return None
    for op in ("##", "#", "%%", "%"):
        if rest.startswith(op):
            pattern = word(rest[len(op):])
            return None if pattern is None else _trim(value, op, pattern)
    if rest.startswith("/"):
        op = "//" if rest.startswith("//") else "/#" if rest.startswith("/#") else "/%" if rest.startswith("/%") else "/"
        body = rest[len(op):]
        pattern_text, _slash, replacement_text = body.partition("/")
        pattern, replacement = word(pattern_text), word(replacement_text)
        if pattern is None or replacement is None:
            return None
        return _replace(value, op, pattern, replacement)
    if rest in ("^^", ",,", "^", ","):
        if rest == "^^":
            return value.upper()
        if rest == ",,":
            return value.lower()
        return (value[:1].upper() if rest == "^" else value[:1].lower()) + value[1:]
    substring = re.fullmatch(r":\s*(-?\d+)\s*(?::\s*(-?\d+))?", rest)
    if substring:
        start = int(substring.group(1))
        start = max(0, len(value) + start) if start < 0 else start
        if substring.group(2) is None:
            return value[start:]
        count = int(substring.group(2))
        end = start + count if count >= 0 else len(value) + count
        return value[start:max(start, end)]
    return None


def _closing_brace(text: str, start: int) -> int:
    """The index of the `}` closing the `${` that opens at `start`, or -1."""
    depth = 0
    i = start
    while i < len(text):
        if text.startswith("${", i):
            depth += 1
            i += 2
            continue
        if text[i] == "\\":
            i += 2
            continue
        if text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


def expand(word: str, env: dict[str, str], _depth: int = 0) -> str | None:
    """`$NAME`, `${NAME}` and the common `${NAME...}` expansions from a known environment; None when any
    reference is unknown (the word is then not stated as if it were literal), when the result would be
    longer than MAX_VALUE_CHARS, or when the expansion budget is spent."""
    if "$" not in word:
        return word
    if _depth > 4 or len(word) > 4 * MAX_VALUE_CHARS:
        return None
    out: list[str] = []
    size = 0
    i = 0
    while i < len(word):
        char = word[i]
        if char == "\\" and i + 1 < len(word):
            out.append(word[i:i + 2])
            size += 2
            i += 2
            continue
        if char != "$":
            out.append(char)
            size += 1
            i += 1
            continue
        if word.startswith("${", i):
            end = _closing_brace(word, i)
            if end < 0:
                return None
            value = _parameter(word[i + 2:end], env, _depth)
            i = end + 1
        else:
            simple = re.match(r"\$([A-Za-z_][A-Za-z0-9_]*|[0-9])", word[i:])
            if not simple:
                return None  # `$(`, `$'...'`, `$$`, a lone `$`
            value = _parameter(simple.group(1), env, _depth)
            i += simple.end()
        if value is None:
            return None
        size += len(value)
        if size > MAX_VALUE_CHARS or not _spend(len(value) + 1):
            return None  # `V="$V $V"` thirty times: too long to know
        out.append(value)
    return "".join(out) if size <= MAX_VALUE_CHARS else None


def _strip_redirections(words: list[str]) -> list[str] | None:
    out: list[str] = []
    i = 0
    while i < len(words):
        word = words[i]
        if word in (">", ">>", "<", ">&", "&>", "<<<", ">|"):
            i += 2  # the operator and its target
            continue
        if word in ("<<", "<<-"):
            return None  # a heredoc: its body is not a command
        if word.isdigit() and i + 1 < len(words) and words[i + 1] in (">", ">>", ">&", "<"):
            i += 3
            continue
        out.append(word)
        i += 1
    return out


_CHANGE_DIR = frozenset({"cd", "pushd", "chdir", "Set-Location", "set-location", "sl"})
_SCRIPT_HOME = re.compile(r"dirname|\$0\b|\$\{0\}|BASH_SOURCE|rev-parse\s+--show-toplevel|PSScriptRoot")
# The checkout's root in each CI system (`${{ github.workspace }}` is read as $GITHUB_WORKSPACE).
_WORKSPACE_ROOT = re.compile(r"""^["']?\$(\{)?(?:GITHUB_WORKSPACE|CI_PROJECT_DIR|TRAVIS_BUILD_DIR|BUILD_SOURCESDIRECTORY|"""
                             r"""APPVEYOR_BUILD_FOLDER|CIRCLE_WORKING_DIRECTORY)(?(1)\})((?:/[\w.-]+)*/?)["']?$""")


def parse_script(text: str, env: dict[str, str] | None = None, *, start_cwd: str = "", _nesting: int = 0) -> tuple[list[Simple], dict[str, str]]:
    """The simple commands of a POSIX shell script and the environment it exports (`export X=y`).
    Its expansions share one budget (the caller's, when it opened one for a whole CI file)."""
    with expansion_budget():
        return _parse_script(text, env, start_cwd=start_cwd, _nesting=_nesting)


def _parse_script(text: str, env: dict[str, str] | None, *, start_cwd: str, _nesting: int) -> tuple[list[Simple], dict[str, str]]:
    env = dict(env or {})
    exported: dict[str, str] = {}
    cwd: str | None = start_cwd
    out: list[Simple] = []
    depth = 0
    heredoc: str | None = None
    # The then-branch of an `if` at the top level: the commands CI runs in the configurations the
    # condition selects (`if [ "$GO" = latest ]; then golint ./...; fi`); else-branches are skipped.
    if_body: list[str] | None = None
    if_start = 0
    if_nested = 0
    if_else = False
    if_false = False
    # A `{ ...; }` group over several lines: its commands run in this shell; piped into `xargs TOOL`,
    # they list the files TOOL gets.
    group_body: list[str] | None = None
    group_start = 0
    group_nested = 0
    for number, line in _join_continuations(text):
        if group_body is not None:
            inner_words = _tokens(line.strip()) or []
            group_nested += inner_words.count("{") - inner_words.count("}")
            if group_nested < 0:
                closing = _GROUP_CLOSE.match(line.strip())
                if closing is not None and cwd is not None:
                    group_body.append(closing.group(1))
                    found = _group("\n".join(group_body), closing.group(2), env, cwd, group_start, _nesting)
                    out += found
                group_body, group_nested = None, 0
                continue
            group_body.append(line)
            continue
        if if_body is not None:
            words = _tokens(line.strip()) or []
            head = words[0] if words else ""
            if_nested += sum(1 for w in words if w in _OPENERS and w != "function") - sum(1 for w in words if w in _CLOSERS)
            if if_nested < 0:  # the `fi` of this if
                if _nesting < 3 and cwd is not None:
                    inner, _exported = parse_script("\n".join(if_body), env, start_cwd=cwd, _nesting=_nesting + 1)
                    for item in inner:
                        item.line += if_start + 1
                    out += inner
                if_body, if_nested, if_else = None, 0, False
                continue
            if if_nested == 0 and head in ("else", "elif"):
                # A condition known to be false (`[ "Linux" == "macOS" ]` once CI's values are in) runs
                # its else-branch instead; after an elif nothing is known.
                if_else, if_false = True, if_false and head == "else"
                if if_false and line.strip()[4:].strip():
                    if_body.append(line.strip()[4:])
                continue
            if if_false == if_else:  # the then-branch, or a false condition's else-branch
                if_body.append(line)
            continue
        if heredoc is not None:
            if line.strip() == heredoc:
                heredoc = None
            continue
        marker = re.search(r"(?<!<)<<-?(?!<)\s*['\"]?([A-Za-z_][A-Za-z0-9_]*)['\"]?", line)
        if marker:
            heredoc = marker.group(1)
            continue
        if cwd is None:
            break
        stripped = _fold_echo_pipelines(line.strip(), env)
        if not stripped or stripped.startswith("#"):
            continue
        words = _tokens(stripped)
        if words is None:
            continue
        first = words[0] if words else ""
        # Compound statements and functions are skipped as a whole (an if's then-branch is read).
        opens = sum(1 for w in words if (w in _OPENERS and w != "function") or w in ("{", "("))
        closes = sum(1 for w in words if w in _CLOSERS or w in ("}", ")"))
        if not depth and first in ("if", "while", "until") and _nesting < 3:
            # The condition is a command CI runs (`if ! npm run lint; then`, `while pytest -x; do`).
            condition = _CONDITION.match(stripped)
            if condition:
                inner, _exported = parse_script(condition.group(1), env, start_cwd=cwd or "", _nesting=_nesting + 1)
                for item in inner:
                    item.line = number
                out += [item for item in inner if not is_noise(item.argv)]  # `[ -f x ]`, `command -v y`: tests only
        if not depth and first == "{" and _nesting < 3:
            one_line_group = _ONE_LINE_GROUP.match(stripped)
            if one_line_group:
                out += _group(one_line_group.group(1), one_line_group.group(2), env, cwd or "", number, _nesting)
                continue
            if stripped == "{" or (opens - closes == 1 and words.count("{") == 1 and words.count("}") == 0):
                group_body, group_start, group_nested = [stripped[1:]], number, 0
                continue
        if not depth and first == "if" and _nesting < 3:
            one_line = _ONE_LINE_IF.match(stripped)
            if one_line and _known_condition(stripped, env) is False:
                continue
            if one_line:
                inner, _exported = parse_script(one_line.group(1).replace(";", "\n"), env, start_cwd=cwd or "", _nesting=_nesting + 1)
                for item in inner:
                    item.line = number
                out += inner
                continue
            if re.search(r"(^|;)\s*then$", stripped) and opens == 1 and closes == 0:
                if_body, if_start, if_nested, if_else = [], number, 0, False
                if_false = _known_condition(stripped, env) is False
                continue
        if depth or first in _OPENERS or first in ("{", "(", "}", ")") or re.match(r"^[A-Za-z_][\w-]*\s*\(\s*\)", stripped):
            depth = max(0, depth + opens - closes)
            continue
        array = _ARRAY_ASSIGN.match(stripped)
        if array and _paren_balance(stripped) == 0:
            _assign_array(array, env)
            continue
        if len(words) == 1 and _APPEND.match(words[0]):
            # `FLAGS+=" -v"`: appended when both sides are known
            match = _APPEND.match(words[0])
            assert match is not None
            value = expand(match.group(2), env)
            name = match.group(1)
            known = env.get(name, "") if name not in env or "$" not in env[name] else None
            env.pop(name + ARRAY_SUFFIX, None)
            if value is None or known is None:
                env.pop(name, None)
            else:
                env[name] = known + value
            continue
        if all(_ASSIGN.match(w) for w in words) and words:
            # `cmd="${1:-test}"`: a shell variable for the lines after it
            for word in words:
                match = _ASSIGN.match(word)
                assert match is not None
                value = expand(match.group(2), env)
                if value is None:
                    env.pop(match.group(1), None)
                else:
                    env[match.group(1)] = value
            continue
        stripped = _split_unquoted(stripped, env)
        words = _tokens(stripped) or words
        checked = _output_check(stripped)
        if checked is not None:
            # `test -z "$(gofmt -l .)"`, `diff -u <(echo -n) <(go fmt ./...)`: the formatter, used as a check
            simple = _simple(checked, env, cwd or "", number, False)
            if simple is not None and simple.argv:
                simple.diff_checked = True
                out.append(simple)
            continue
        substitution = _has_substitution(stripped)
        segment: list[str] = []
        pipeline: list[list[str]] = []
        words.append("\n")
        last_separator = "\n"
        for index, word in enumerate(words):
            if word not in _SEPARATORS:
                segment.append(word)
                continue
            if word in ("|", "|&"):
                pipeline.append(segment)
                segment = []
                continue
            pipeline.append(segment)
            segment = []
            head, rest = pipeline[0], pipeline[1:]
            pipeline = []
            preceding, last_separator = last_separator, word
            if word == "||" and words[index + 1:index + 2] in (["true"], [":"]) and words[index + 2:index + 3][0] in _SEPARATORS:
                continue  # `mypy -c "import trio" || true`: its failure is ignored, so it checks nothing
            if len(rest) == 1 and rest[0][:1] == ["xargs"] and word != "&":
                # `find . -name '*.go' | xargs gofmt -l`: the tool xargs runs, on the files listed
                producer = _simple(head, env, cwd or "", number, substitution)
                consumer = _xargs(rest[0], env, cwd or "", number, substitution)
                if producer is not None and consumer is not None and _lists_files(producer.argv):
                    consumer.feed = [producer.argv]
                    out.append(consumer)
                continue
            if any(not part or part[0] not in _PIPE_SINKS for part in rest):
                continue  # a pipeline whose result depends on a filter is not one command
            if word == "&":
                continue  # a background job
            simple = _simple(head, env, cwd, number, substitution)
            if head[:1] and head[0] in _CHANGE_DIR and (simple is None or simple.argv[:1] != head[:1]):
                root = _WORKSPACE_ROOT.match(head[1]) if len(head) == 2 else None
                if root:  # `cd "$GITHUB_WORKSPACE/sub"`: the checkout's root, which is known
                    cwd = _change_dir("", root.group(2).lstrip("/") or ".")
                elif _SCRIPT_HOME.search(" ".join(head[1:])):
                    continue  # `cd "$(dirname "$0")"/..`: the script moving to its project, read from where it is called
                else:
                    cwd = None  # `cd "$X"` to a place not known here: where the commands after it run is not known
                if cwd is None:
                    break
                continue
            if simple is None:
                continue
            if simple.argv and simple.argv[0] in ("cd", "pushd"):
                target = simple.argv[1] if len(simple.argv) > 1 else None
                cwd = _change_dir(cwd, target)
                if cwd is None:
                    break
                continue
            if simple.argv and simple.argv[0] == "export":
                for item in simple.argv[1:]:
                    match = _ASSIGN.match(item)
                    if match:
                        value = expand(match.group(2), env)
                        if value is not None:
                            env[match.group(1)] = exported[match.group(1)] = value
                continue
            if simple.argv and simple.argv[0] == "exit":
                if preceding in ("||", "&&"):
                    continue  # `pytest || exit 1`: the script ends only when the command before fails
                return out, exported
            if len(simple.argv) == 3 and simple.argv[0] in ("sh", "bash") and simple.argv[1] in ("-c", "-ec", "-ex", "-exc") and _nesting < 2:
                # `sh -c 'cd sub && mvn test'`: the inner script's commands, in a subshell (its cd does not leak).
                inner, _exported = parse_script(simple.argv[2], env, start_cwd=cwd or "", _nesting=_nesting + 1)
                for item in inner:
                    item.line = number
                out += inner
                continue
            if simple.argv[:2] == ["git", "diff"] and ("--exit-code" in simple.argv or "--quiet" in simple.argv) and out:
                # the command checked is the last one before (a `git status` printing the change in between)
                checked_one = next((o for o in reversed(out) if o.argv[:2] not in (["git", "status"], ["git", "add"])), out[-1])
                checked_one.diff_checked = True
                continue
            if simple.argv:
                out.append(simple)
    return out, exported


_EMPTY = r"(?:echo\s+-n|echo\s+-n\s+''|printf\s+''|printf\s+\"\"|true|:)?"
_INNER = r"(?P<cmd>[^()`]*(?:\$\([^()`]*\)[^()`]*)?)"
_OUTPUT_CHECKS = (
    # diff [-u] <(echo -n) <(CMD), either order: CI fails when CMD prints anything
    re.compile(rf"^(?:diff|cmp)(?:\s+-[A-Za-z]+)*\s+<\(\s*{_EMPTY}\s*\)\s+<\(\s*{_INNER}\s*\)$"),
    re.compile(rf"^(?:diff|cmp)(?:\s+-[A-Za-z]+)*\s+<\(\s*{_INNER}\s*\)\s+<\(\s*{_EMPTY}\s*\)$"),
    # test -z "$(CMD)", [ -z "$(CMD)" ], [[ -z $(CMD) ]]
    re.compile(rf"^(?:test|\[\[?)\s+-z\s+\"?\$\(\s*{_INNER}\s*\)\"?(?:\s+\]\]?)?$"),
)
# `$(go list ./...)` as an argument names the same packages as the pattern itself
_GO_LIST = re.compile(r"\$\(\s*go\s+list\s+(\./\.\.\.)\s*\)")


def _output_check(line: str) -> list[str] | None:
    """The words of CMD when a line only checks that CMD prints nothing (a formatter listing files it
    would change); None for any other line. `go fmt ./...` rewrites files and prints their names, so
    its check is `gofmt -l .`, which lists them without rewriting."""
    for pattern in _OUTPUT_CHECKS:
        match = pattern.match(line)
        if not match:
            continue
        inner = _GO_LIST.sub(r"\1", match.group("cmd").strip())
        if not inner or _has_substitution(inner):
            return None
        words = _tokens(inner)
        if not words or any(w in _SEPARATORS or w in ("(", ")", "<", ">") for w in words):
            return None
        if words[:2] == ["go", "fmt"] and all(w in ("./...", ".") for w in words[2:]):
            return ["gofmt", "-l", "."]
        return words
    return None


_ECHO_PIPELINE = re.compile(r"\$\(\s*echo\s+(\"[^\"$`\\]*\"|'[^']*'|[^\s|)$`\"'\\]+)\s*((?:\|\s*(?:tr|cut)\s[^|)`$]*)+)\)")


def _fold_echo_pipelines(line: str, env: dict[str, str]) -> str:
    """`py$(echo 3.10 | tr -d . | cut -f 1 -d '-')` (a known value reshaped by tr and cut) as its result,
    `py310`; any other substitution is left alone (and the line is not a command we can state)."""
    if "$(echo" not in line.replace("$( echo", "$(echo"):
        return line

    def fold(match: re.Match[str]) -> str:
        value = (_tokens(match.group(1)) or [""])[0] if match.group(1)[:1] in "\"'" else match.group(1)
        for stage in match.group(2).split("|")[1:]:
            words = _tokens(stage.strip())
            result = _tr_cut(value, words) if words else None
            if result is None:
                return match.group(0)
            value = result
        return value if re.fullmatch(r"[A-Za-z0-9_.+-]*", value) else match.group(0)

    return _ECHO_PIPELINE.sub(fold, line)


def _tr_cut(value: str, words: list[str]) -> str | None:
    """One `tr -d SET`, `tr A B` or `cut -f N -d C` stage over a one-line value; None when it is another form."""
    if words[0] == "tr":
        args = words[1:]
        if len(args) == 2 and args[0] == "-d" and not re.search(r"[\[\]\\-]", args[1][1:-1] if len(args[1]) > 2 else ""):
            return "".join(c for c in value if c not in args[1])
        if len(args) == 2 and not args[0].startswith("-") and len(args[0]) == len(args[1]) and not re.search(r"[\[\]\\]|.-.", args[0] + args[1]):
            return value.translate(str.maketrans(args[0], args[1]))
        return None
    if words[0] == "cut":
        field = delimiter = None
        args = words[1:]
        i = 0
        while i < len(args):
            arg = args[i]
            if arg in ("-f", "-d") and i + 1 < len(args):
                field, delimiter = (args[i + 1], delimiter) if arg == "-f" else (field, args[i + 1])
                i += 2
                continue
            if arg.startswith("-f") and len(arg) > 2:
                field = arg[2:]
            elif arg.startswith("-d") and len(arg) > 2:
                delimiter = arg[2:]
            else:
                return None
            i += 1
        if field is None or not field.isdigit() or int(field) < 1 or (delimiter is not None and len(delimiter) != 1):
            return None
        parts = value.split(delimiter or "\t")
        if len(parts) == 1:
            return value  # cut prints a line without the delimiter whole
        return parts[int(field) - 1] if int(field) <= len(parts) else ""
    return None


_IF_TEST = re.compile(r"^if\s+(.+?)\s*;\s*then\b")


def _known_condition(line: str, env: dict[str, str]) -> bool | None:
    """The value of an `if` whose condition compares two known strings (`[ "Linux" == "macOS" ]`,
    `[[ $OS = linux ]]` with OS known, `test a != b`); None for any other condition."""
    match = _IF_TEST.match(line)
    words = _tokens(match.group(1)) if match else None
    if not words:
        return None
    if words[0] == "test":
        words = words[1:]
    elif (words[0], words[-1]) in (("[", "]"), ("[[", "]]")):
        words = words[1:-1]
    else:
        return None
    if len(words) != 3 or words[1] not in ("=", "==", "!="):
        return None
    left, right = expand(words[0], env), expand(words[2], env)
    if left is None or right is None or any(c in left + right for c in "*?[$`"):
        return None
    return (left == right) == (words[1] != "!=")


_CONDITION = re.compile(r"^(?:if|while|until)\s+(.+?)\s*;\s*(?:then|do)\b")
_ONE_LINE_GROUP = re.compile(r"^\{\s(.*);\s*\}(.*)$", re.S)
_GROUP_CLOSE = re.compile(r"^(.*?);?\s*\}(.*)$", re.S)
# Commands whose output is a list of files (to be piped into `xargs TOOL`).
_FILE_LISTERS = {"find", "ls", "echo", "printf"}
# xargs options that take a value as the next word
_XARGS_VALUE = {"-n", "-P", "-L", "-d", "-s", "-E", "-I", "--max-args", "--max-procs", "--max-lines", "--delimiter", "--max-chars"}


def _lists_files(argv: list[str]) -> bool:
    return bool(argv) and (argv[0] in _FILE_LISTERS or argv[:2] == ["git", "ls-files"])


def _xargs(words: list[str], env: dict[str, str], cwd: str, number: int, substitution: bool) -> Simple | None:
    """`xargs [options] TOOL ARGS`: TOOL ARGS as the command, the xargs words kept for the rendering."""
    i = 1
    while i < len(words) and words[i].startswith("-"):
        if words[i] in ("-a", "--arg-file") or words[i].startswith("--arg-file="):
            return None  # the list comes from a file, not from the pipe
        i += 2 if words[i] in _XARGS_VALUE else 1
    if i >= len(words):
        return None
    simple = _simple(words[i:], env, cwd, number, substitution)
    if simple is None or not simple.argv:
        return None
    prefix = [expand(w, env) for w in words[:i]]
    if any(w is None for w in prefix):
        return None
    simple.xargs = [w for w in prefix if w is not None]
    return simple


def _group(body: str, tail: str, env: dict[str, str], cwd: str, number: int, nesting: int) -> list[Simple]:
    """The commands of a `{ ...; }` group and what follows its `}`: a pipe into `xargs TOOL` (the group
    lists files), `&& more`, a redirection, or nothing."""
    inner, _exported = parse_script(body, env, start_cwd=cwd, _nesting=nesting + 1)
    for item in inner:
        item.line += number
    tail = tail.strip()
    if tail.startswith("|") and not tail.startswith("||"):
        words = _tokens(tail[1:].strip()) or []
        if not words or words[0] != "xargs" or any(w in _SEPARATORS for w in words):
            return []
        consumer = _xargs(words, env, cwd, number, _has_substitution(tail))
        producers = [item.argv for item in inner if item.argv]
        if consumer is None or not producers or not all(_lists_files(p) for p in producers):
            return []
        consumer.feed = producers
        return [consumer]
    if not tail or re.match(r"^(?:\d?>>?|&>)", tail):
        return inner
    if tail.startswith("&&"):
        more, _exported = parse_script(tail[2:], env, start_cwd=cwd, _nesting=nesting + 1)
        for item in more:
            item.line = number
        return inner + more
    return []  # `} || true` and the like: the group's result is not checked


def render_feed(feed: list[list[str]], xargs: list[str], argv: list[str]) -> str | None:
    """`find src -name '*.h' | xargs clang-format -n`, or `{ find a; find b; } | xargs ...` for several
    producers: each part rendered (checked) word by word."""
    # a pattern the producer matches itself (`find -name '*.h'`, `git ls-files '*.py'`) stays quoted
    producers = [render(p, quote_globs=p[:1] == ["find"] or p[:2] == ["git", "ls-files"]) for p in feed[:4]]
    consumer = render([*xargs, *argv])
    if not producers or len(feed) > 4 or consumer is None or any(p is None for p in producers):
        return None
    listed = producers[0] if len(producers) == 1 else "{ " + "; ".join(p for p in producers if p) + "; }"
    text = f"{listed} | {consumer}"
    return text if len(text) <= MAX_COMMAND_CHARS else None


_ONE_LINE_IF = re.compile(r"^if\s+[^;]+;\s*then\s+([^;]+(?:;\s*(?!else\b|elif\b|fi\b)[^;]+)*?)\s*;?\s*(?:;\s*(?:else|elif)\b.*)?;\s*fi$")


_SPLITTABLE = re.compile(r"^[A-Za-z0-9_./:=@%+,~^*\- ]*$")


def _split_unquoted(line: str, env: dict[str, str]) -> str:
    """`./mvnw $MAVEN_ARGS verify`: an unquoted variable whose known value holds several words is
    word-split as the shell does (a quoted one stays one word)."""
    if "$" not in line:
        return line
    out: list[str] = []
    quote = ""
    i = 0
    while i < len(line):
        char = line[i]
        if quote:
            if char == quote:
                quote = ""
            elif char == "\\" and quote == '"':
                out.append(line[i:i + 2])
                i += 2
                continue
            out.append(char)
            i += 1
            continue
        if char in "'\"":
            quote = char
        elif char == "\\":
            out.append(line[i:i + 2])
            i += 2
            continue
        elif char == "$":
            match = re.match(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))", line[i:])
            if match:
                value = env.get(match.group(1) or match.group(2) or "")
                if (value is not None and " " in value.strip() and len(value) <= MAX_VALUE_CHARS and _SPLITTABLE.match(value)
                        and _spend(len(value) + 1)):
                    out.append(" ".join(value.split()))
                    i += match.end()
                    continue
        out.append(char)
        i += 1
    return "".join(out)


def _change_dir(cwd: str, target: str | None) -> str | None:
    if target is None or target.startswith(("/", "~", "-")) or "$" in target:
        return None
    joined = normpath(f"{cwd}/{target}" if cwd else target)
    if joined == ".":
        return ""
    if joined.startswith(".."):
        return None
    return joined


def _simple(words: list[str], env: dict[str, str], cwd: str, number: int, substitution: bool) -> Simple | None:
    stripped = _strip_redirections(words)
    if stripped is None:
        return None
    while stripped and stripped[0] == "!":
        stripped = stripped[1:]  # `! cmd`: CI checks its status (inverted), it still runs it
    local: dict[str, str] = {}
    argv: list[str] = []
    for index, word in enumerate(stripped):
        match = _ASSIGN.match(word)
        if not argv and match:
            local[match.group(1)] = match.group(2)
            continue
        argv = stripped[index:]
        break
    while argv and argv[0] in ("env",) and len(argv) > 1:
        argv = argv[1:]
        while argv and _ASSIGN.match(argv[0]):
            match = _ASSIGN.match(argv[0])
            assert match is not None
            local[match.group(1)] = match.group(2)
            argv = argv[1:]
    while argv and argv[0] in _WRAPPERS:
        argv = [a for a in argv[1:]]
        while argv and argv[0].startswith("-"):
            argv = argv[1:]
    if argv and argv[0] == "timeout" and len(argv) > 2:
        argv = argv[2:]
    if substitution and argv and argv[0] not in ("cd", "export", "echo"):
        return None
    expanded: list[str] = []
    scope = {**env, **local}
    grown = False
    for word in argv:
        if word in _ALL_ARGS:
            items = scope.get(ARGS, "").split()  # a script's own arguments (none when it was not given any)
            grown = True
        else:
            spliced = _splice(word, scope)  # `"${ARGS[@]}"`: the array's words
            grown = grown or spliced is not None
            value = expand(word, scope) if spliced is None else None
            if spliced is None and value is None:
                return Simple([], local, cwd, number)  # an unknown variable: not a command we can state
            items = spliced if spliced is not None else [value] if value is not None else []
        if "$" in word and any(len(item) > MAX_WORD_CHARS or _UNSAFE_VALUE.search(item) for item in items):
            # too long to print, or a value carrying shell syntax (`T='tests; curl evil|sh'`): not stated
            return Simple([], local, cwd, number)
        expanded += items
        if grown and len(expanded) > MAX_WORDS:
            return Simple([], local, cwd, number)  # `"${A[@]}"` of a long array: more words than are printed
    # `VAR=$X` in the prefix is kept only when known
    for key, value in list(local.items()):
        known = expand(value, env)
        if known is None:
            local.pop(key)
        else:
            local[key] = known
    return Simple(expanded, local, cwd, number)


def is_noise(argv: list[str]) -> bool:
    return not argv or argv[0] in _NOISE


# -- rendering ----------------------------------------------------------------------------------

_SAFE_WORD = re.compile(r"^[A-Za-z0-9_./:=@%+,~^*-]+$")
_QUOTABLE = re.compile(r"^[ -~]+$")  # printable ASCII
MAX_COMMAND_CHARS = 160
MAX_WORD_CHARS = 140  # a glob with a brace list (`--exclude-pattern=spec/{a,b,c}/*_spec.rb`) is long but one word
MAX_WORDS = 24


# Options whose value names workspace packages (`pnpm --filter NAME`, `lerna --scope NAME`): a package
# name is a manifest value, so shell syntax in it is refused even inside quotes.
_SELECTORS = {"--filter", "-F", "--scope", "--ignore", "--projects", "--project", "-p", "--workspace", "-w"}
_SELECTOR_UNSAFE = re.compile(r"[;|&<>()\s]")


def _escapes_root(word: str, cwd: str) -> bool:
    """A path word (or an option's `=path`) that goes above the repository root from `cwd`
    (`tests/../../../etc/passwd`)."""
    if ".." not in word:
        return False
    for part in (word, word.partition("=")[2]):
        if part and (part == ".." or part.startswith("../") or "/../" in part or part.endswith("/..")):
            joined = normpath(f"{cwd}/{part}" if cwd else part)
            if joined == ".." or joined.startswith("../"):
                return True
    return False


# A place on the CI machine, not in the reader's checkout: a drive (`C:\x`, `C:/x`, `C:dir/x`) or a
# file URL, as a word or an option's value.
_MACHINE_PATH = re.compile(r"(^|=)([A-Za-z]:([\\/]|[^\s\\/:]*[\\/])|file:)", re.I)
_ARGFILE_TOOLS = frozenset({"pytest", "py.test"})  # `pytest @args.txt` reads its arguments from a file


def render(argv: list[str], *, quote_globs: bool = False, cwd: str = "") -> str | None:
    """One command line from words, each checked: plain words as they are, others single-quoted when
    they are printable ASCII without a backtick, `$` or backslash. None when anything else is in it,
    when a path goes above the repository root (run from `cwd`), or when a package selector's value
    carries shell syntax. A brace or glob pattern (`spec/{a,b}/*_spec.rb`) is quoted, so the tool that
    takes it (rspec, a test runner) reads the pattern itself."""
    if not argv or len(argv) > MAX_WORDS:
        return None
    out: list[str] = []
    for index, word in enumerate(argv):
        if not word or len(word) > MAX_WORD_CHARS or word.startswith(("/", "~")) or re.search(r"=[/~]", word):
            return None  # an absolute path is the CI machine's, not the reader's
        if _escapes_root(word, cwd) or _MACHINE_PATH.search(word):
            return None
        if index > 0 and word.startswith("@") and any(w.rsplit("/", 1)[-1] in _ARGFILE_TOOLS for w in argv[:index]):
            return None  # the arguments are in a file the reader cannot see from the line
        selector = index > 0 and argv[index - 1] in _SELECTORS or word.split("=", 1)[0] in _SELECTORS and "=" in word
        if selector and _SELECTOR_UNSAFE.search(word):
            return None
        # a bare `*` (a value CI quoted, `-k "$T"`) is quoted too: unquoted, the reader's shell expands it
        if _SAFE_WORD.match(word) and not (quote_globs and any(c in word for c in "*?[")) and word.strip("*?"):
            out.append(word)
        elif _QUOTABLE.match(word) and not any(c in word for c in "`$\\'\"!"):
            out.append(shlex.quote(word))
        else:
            return None
    text = " ".join(out)
    return text if len(text) <= MAX_COMMAND_CHARS else None
