"""Shell scripts as data: the simple commands a script runs, with their directory and environment.

Only what can be known without running anything is kept: compound statements (if/for/while/case,
functions, subshells, heredocs), command substitutions and background jobs are skipped; a `cd` to
an unknown place stops the script. Nothing here executes or expands anything.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from posixpath import normpath

_ASSIGN = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$", re.S)
_VAR = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*|[0-9])(?::?-([^}$`]*))?\}|([A-Za-z_][A-Za-z0-9_]*|[0-9]))")
_ALL_ARGS = {"$@", "${@}", "$*", "${*}"}
ARGS = "@"  # the env key holding a script's arguments (space-separated); positional ones are "1", "2", ...
_OPENERS = {"if", "for", "while", "until", "case", "select", "function"}
_CLOSERS = {"fi", "done", "esac"}
_SEPARATORS = {"&&", "||", ";", ";;", "&", "|", "|&", "\n"}
# Commands that only shape the environment or print; they are skipped, not classified.
_NOISE = {"echo", "printf", "set", "source", ".", "true", ":", "exit", "return", "shopt", "trap", "wait",
          "unset", "alias", "local", "declare", "typeset", "readonly", "ulimit", "umask", "hash", "type", "which",
          "command", "sleep", "date", "ls", "pwd", "cat", "mkdir", "rm", "cp", "mv", "chmod", "touch", "env",
          "printenv", "df", "du", "free", "uname", "whoami", "id", "ln", "test", "[", "[[", "git", "gh", "curl", "wget",
          "tar", "unzip", "sudo", "apt-get", "apt", "brew", "choco", "yum", "dnf", "apk", "nproc", "tee", "find", "xargs",
          "grep", "sed", "awk", "jq", "yq", "head", "tail", "sort", "wc", "diff", "cut", "tr", "basename", "dirname",
          "export", "cd", "pushd", "popd", "eval", "exec", "docker", "docker-compose", "systemctl", "service"}
# Wrappers whose argument is the real command.
_WRAPPERS = {"time", "nice", "nohup", "xvfb-run", "stdbuf", "caffeinate", "unbuffer", "dbus-run-session"}
_PIPE_SINKS = {"tee", "cat", "less", "more", "head", "tail"}
MAX_LINES = 2_000


@dataclass
class Simple:
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    cwd: str = ""  # relative to the directory the script started in; "" is that directory
    line: int = 0  # 0-based line in the script
    diff_checked: bool = False  # followed by `git diff --exit-code`: a formatter used as a check


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
        # A line ending in a pipe or a logical operator continues too.
        if re.search(r"(\|\||&&|\|)\s*$", buffer) and number + 1 < len(lines):
            buffer += " "
            continue
        out.append((start, buffer))
        buffer = ""
    if buffer:
        out.append((start, buffer))
    return out


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


def expand(word: str, env: dict[str, str]) -> str | None:
    """`$NAME` and `${NAME}` from a known environment; None when any reference is unknown."""
    if "$" not in word:
        return word
    missing = False

    def sub(match: re.Match[str]) -> str:
        nonlocal missing
        name = match.group(1) or match.group(3)
        if name in env and (env[name] or match.group(2) is None):
            return env[name]
        if match.group(2) is not None and (name not in env or not env[name]):
            return match.group(2)  # ${NAME:-default}
        if name.isdigit() and ARGS in env:
            return ""  # a script run with fewer arguments
        missing = True
        return ""

    result = _VAR.sub(sub, word)
    if missing or "$" in result:
        return None
    return result


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


def parse_script(text: str, env: dict[str, str] | None = None, *, start_cwd: str = "", _nesting: int = 0) -> tuple[list[Simple], dict[str, str]]:
    """The simple commands of a POSIX shell script and the environment it exports (`export X=y`)."""
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
    for number, line in _join_continuations(text):
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
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        words = _tokens(stripped)
        if words is None:
            continue
        first = words[0] if words else ""
        # Compound statements and functions are skipped as a whole (an if's then-branch is read).
        opens = sum(1 for w in words if (w in _OPENERS and w != "function") or w in ("{", "("))
        closes = sum(1 for w in words if w in _CLOSERS or w in ("}", ")"))
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
            if any(not part or part[0] not in _PIPE_SINKS for part in rest):
                continue  # a pipeline whose result depends on a filter is not one command
            if word == "&":
                continue  # a background job
            simple = _simple(head, env, cwd, number, substitution)
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
                out[-1].diff_checked = True
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
                if value is not None and " " in value.strip() and _SPLITTABLE.match(value):
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
    for word in argv:
        if word in _ALL_ARGS:
            expanded += scope.get(ARGS, "").split()  # a script's own arguments (none when it was not given any)
            continue
        value = expand(word, scope)
        if value is None:
            return Simple([], local, cwd, number)  # an unknown variable: not a command we can state
        expanded.append(value)
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


def render(argv: list[str]) -> str | None:
    """One command line from words, each checked: plain words as they are, others single-quoted when
    they are printable ASCII without a backtick, `$` or backslash. None when anything else is in it.
    A brace or glob pattern (`spec/{a,b}/*_spec.rb`) is quoted, so the tool that takes it (rspec,
    a test runner) reads the pattern itself."""
    if not argv or len(argv) > MAX_WORDS:
        return None
    out: list[str] = []
    for word in argv:
        if not word or len(word) > MAX_WORD_CHARS or word.startswith(("/", "~")) or re.search(r"=[/~]", word):
            return None  # an absolute path is the CI machine's, not the reader's
        if _SAFE_WORD.match(word):
            out.append(word)
        elif _QUOTABLE.match(word) and not any(c in word for c in "`$\\'\"!"):
            out.append(shlex.quote(word))
        else:
            return None
    text = " ".join(out)
    return text if len(text) <= MAX_COMMAND_CHARS else None
