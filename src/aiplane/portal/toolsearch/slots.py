"""Argument kinds: what a request supplies, and what each tool's parameters take.

A request that names a URL wants a tool that takes one; one that names two files, a tool that
takes several paths; "at 14:00 Berlin time", a tool with a time and a time zone. The tool's input
schema says what it takes (parameter names, types, formats, descriptions), so this needs no word
of the tool's description to match the request's: it works for tools nobody wrote a lexicon line
for. `kinds` reads the request, `accepts` reads a schema; the ranking moves a tool that takes what
the request supplies up (toolsearch.ToolIndex.search).

Kinds: url; file (a name with an extension, a dotfile), folder (a path without one), paths (two or
more); revision (a commit hash, HEAD~2, v1.2); clock (14:00, 3pm), date (yesterday, this week,
2024-01-15), zone (Europe/Paris, UTC, a city of the time zone database); name, names (capitalised
words that are not ordinary words: "Priya Shah", "Acme"; hyphenated ones: "auth-service"); pattern (a glob: "*.test.ts"); number;
text (quoted).
"""

from __future__ import annotations

import re
import unicodedata
import zoneinfo
from collections.abc import Callable, Mapping
from functools import lru_cache
from itertools import islice

MAX_QUERY_CHARS = 1000
MAX_PARAMS = 64

# The literals a request carries, shared with toolsearch.literals (which reduces them to words).
URL = re.compile(r"\b(?:https?|ftp)://\S+|\bwww\.\S+", re.IGNORECASE)
# A host name with a common top-level domain and an optional path, without a scheme: "nodejs.org/en/blog".
HOST = re.compile(r"(?<![\w@/.])(?:[a-z0-9-]{1,63}\.){1,10}(?:com|org|net|io|dev|ai|gov|edu|info)"
                  r"(?::\d{1,5})?(?:/\S{0,2000})?(?![\w.])", re.IGNORECASE)
QUOTED = re.compile(r"\"[^\"]{1,200}\"|(?<!\w)'[^']{1,200}'(?!\w)|`[^`]{1,200}`|\u201c[^\u201d]{1,200}\u201d")
# A file name with an extension, optionally in folders: "server.log", "docs/index.md", "./a.py".
FILE = re.compile(r"(?<![\w@/.])(?:\.{0,2}/|~/)?(?:[\w.-]{1,100}/){0,20}[\w-]{1,100}\.[A-Za-z][A-Za-z0-9]{0,5}(?![\w/])")
# A dotfile, optionally in folders: ".gitignore", "config/.env.example" (lower-case first letter:
# ".NET" is a word).
DOTFILE = re.compile(r"(?<![\w@/.])(?:\.{0,2}/|~/)?(?:[\w.-]{1,100}/){0,20}\.[a-z][\w.-]{0,60}(?![\w/])")
# A file known by its name alone: "README", "Dockerfile", "Makefile".
KNOWN_FILE = re.compile(r"(?<![\w@/.-])(?:README|LICENSE|CHANGELOG|CONTRIBUTING|Dockerfile|Makefile|Jenkinsfile|Vagrantfile|"
                        r"Procfile|Gemfile|Rakefile|Brewfile|Containerfile|CODEOWNERS)(?![\w/.-])")
# A hyphenated lower-case name ("ledger-sync", "auth-service"), once files and paths are taken.
_SLUG = re.compile(r"(?<![\w./-])[a-z][a-z0-9]{1,30}(?:-[a-z][a-z0-9]{1,30}){1,4}(?![\w/.-])")
# A glob: "*.test.ts", "src/**/x", "report-?.csv".
GLOB = re.compile(r"(?<!\S)\S{0,100}[*?]\S{0,100}\.\S{1,20}|(?<!\S)\S{0,100}\*\*?/\S{0,100}|(?<!\S)\S{1,100}\*(?!\S)")
# A path of folders: "a/b/c", "./src/"; not an IANA time zone ("Europe/Paris", "America/New_York").
FOLDER = re.compile(r"(?<![\w@/])(?![A-Z][a-z]+/[A-Z])(?:\.{0,2}/|~/)?(?:[\w.-]{1,100}/){1,20}[\w.-]{0,100}")
_ZONE_PATH = re.compile(r"\b(?:Africa|America|Antarctica|Arctic|Asia|Atlantic|Australia|Europe|Indian|Pacific|Etc|US)"
                        r"/[A-Za-z_]{2,40}(?:/[A-Za-z_]{2,40})?\b")
# A commit: a hexadecimal id of 7 to 40 digits with a letter and a digit, HEAD (~n, ^), a version tag.
_REVISION = re.compile(r"\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{7,40}\b|\bHEAD(?:[~^]\d{0,3})*(?![\w])|"
                       r"(?<![\w.])v\d{1,4}(?:\.\d{1,4}){1,3}\b")
_CLOCK = re.compile(r"\b(?:[01]?\d|2[0-3]):[0-5]\d\b|\b(?:1[0-2]|0?[1-9])(?::[0-5]\d)?\s?(?:am|pm)\b", re.IGNORECASE)
_ZONE_ABBREVIATION = re.compile(r"\b(?:UTC|GMT|EST|EDT|CST|CDT|MST|MDT|PST|PDT|AKST|HST|CET|CEST|EET|EEST|WET|WEST|BST|IST|"
                                r"JST|KST|HKT|SGT|AEST|AEDT|ACST|AWST|NZST|NZDT|MSK|BRT|ART)\b")
# Someone or something by name: "Priya Shah", "Acme", "Falcon": capitalised words that are not
# ordinary words (the caller says which are), acronyms ("CI") nor CamelCase ("GitHub").
_CAPITALISED = re.compile(r"(?<![\w./-])[A-Za-z][A-Za-z]{0,30}(?![\w/.-])|[^\sA-Za-z]+")
# A day or a period: "yesterday", "this week", "3 days ago", "since Monday", "2024-01-15".
_DATE = re.compile(r"\b(?:yesterday|today|tonight|tomorrow|(?:this|last|past|previous|next)\s+(?:\d{1,3}\s+)?"
                   r"(?:week|month|year|day|sprint|quarter|weekend|monday|tuesday|wednesday|thursday|friday|saturday|sunday)s?|"
                   r"\d{1,3}\s+(?:days?|weeks?|months?|years?|hours?)\s+ago|"
                   r"(?:since|until|before|after)\s+(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday|january|february|"
                   r"march|april|may|june|july|august|september|october|november|december|jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec)|"
                   r"\d{4}-\d{2}-\d{2})\b", re.IGNORECASE)
_NUMBER = re.compile(r"(?<![\w.])\d{1,15}(?:\.\d{1,15})?(?![\w.])")
# Time zone database names that are also ordinary words or common project names ("central",
# "phoenix", "victoria"): a request saying them is not naming a place.
_NOT_PLACES = frozenset(
    "center central continental east eastern west north south general factory universal troll zulu mountain casey "
    "davis palmer victoria regina stanley christmas easter wake midway virgin knox oral norfolk jersey guernsey phoenix "
    "resolute chatham creston dawson marengo monticello beulah vevay winamac yukon vatican localtime navajo reunion "
    "turkey cuba georgia hawaii alaska arizona michigan eire gb nz roc rok prc act nsw lhi met uct wet est mst hst "
    "canary cocos comoro chagos nome thule juba lima ceuta dili aden wallis efate darwin sofia adelaide jakarta "
    "marigot salta".split())


@lru_cache(maxsize=1)
def _places() -> re.Pattern[str] | None:
    """The cities and regions of the time zone database ("Tokyo", "New York", "Sao Paulo"), as one
    case-insensitive pattern; None without the database."""
    try:
        names = zoneinfo.available_timezones()
    except Exception:  # no tzdata: no places, the other kinds still work
        return None
    places = {name.rsplit("/", 1)[-1].replace("_", " ") for name in names}
    places = {p for p in places if len(p) >= 4 and p.replace(" ", "").isalpha() and p.lower() not in _NOT_PLACES}
    if not places:
        return None
    return re.compile(r"\b(?:" + "|".join(sorted(map(re.escape, places), key=len, reverse=True)) + r")\b", re.IGNORECASE)


def fold(text: str) -> str:
    """Accents off ("São Paulo": "Sao Paulo", "café": "cafe"); other scripts unchanged."""
    if text.isascii():
        return text
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


def kinds(query: str, ordinary: Callable[[str], bool] | None = None) -> set[str]:
    """What the request supplies, by kind (see the module's docstring). `ordinary(word)`: is this
    lower-cased word an ordinary one (not a name)? Without it, every capitalised word may be a name."""
    text = fold(query[:MAX_QUERY_CHARS])
    found: set[str] = set()

    def take(pattern: re.Pattern[str], kind: str) -> int:
        nonlocal text
        count = 0

        def blank(match: re.Match[str]) -> str:
            nonlocal count
            count += 1
            return " "

        text = pattern.sub(blank, text)
        if count:
            found.add(kind)
        return count

    take(URL, "url")
    take(HOST, "url")
    take(QUOTED, "text")
    take(_ZONE_PATH, "zone")
    take(_ZONE_ABBREVIATION, "zone")
    places = _places()
    if places is not None:
        take(places, "zone")
    take(_CLOCK, "clock")
    take(_DATE, "date")
    take(GLOB, "pattern")
    files = take(FILE, "file") + take(DOTFILE, "file") + take(KNOWN_FILE, "file") + take(FOLDER, "folder")
    if files >= 2:
        found.add("paths")
    take(_REVISION, "revision")
    take(_NUMBER, "number")
    # Runs of capitalised words that are not ordinary words: each run is one name.
    names, run = [], []
    for match in _CAPITALISED.finditer(text + " ."):
        word = match.group(0)
        is_name = word[:1].isupper() and word[1:].islower() and len(word) > 1 and not (ordinary and ordinary(word.lower()))
        if is_name and (not run or text[run[-1][1]:match.start()].strip() == ""):
            run.append((word, match.end()))
            continue
        if run:
            names.append(" ".join(w for w, _ in run))
        run = [(word, match.end())] if is_name else []
    names += [m.group(0) for m in _SLUG.finditer(text)]  # "billing-service": a lower-case name
    if names:
        found.add("name")
    if len(set(names)) >= 2:
        found.add("names")
    return found


# A parameter named like this takes a file, a folder, or either (a plain "path", "source").
_FILE_NAMES = frozenset("file files filename filenames filepath filepaths".split())
_FOLDER_NAMES = frozenset("repo repository dir dirs directory directories folder folders root cwd workdir".split())
_PATH_NAMES = frozenset("path paths source destination dest src dst".split())
_NOT_PATH_NAMES = frozenset("timezone time url uri branch name".split())
_URL_NAMES = frozenset("url urls uri uris link links href endpoint website webpage".split())
_REVISION_NAMES = frozenset("revision rev commit sha ref hash tag treeish".split())
_CLOCK_NAMES = frozenset("time timestamp datetime hour".split())
_DATE_NAMES = frozenset("date timestamp datetime since until day".split())
_ZONE_NAMES = frozenset("timezone tz zone location city place".split())
_TEXT_NAMES = frozenset("content contents message text body note comment data value".split())
_SPLIT = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+")
_DESCRIPTION_WORD = re.compile(r"[a-z]+")


def _names(name: str) -> set[str]:
    return {part.lower() for part in _SPLIT.findall(name[:100])}


def _path_kinds(words: set[str]) -> set[str]:
    if words & _FOLDER_NAMES:
        return {"folder"}
    if words & _FILE_NAMES:
        return {"file"}
    if words & _PATH_NAMES:
        return {"file", "folder"}
    return set()


def _said_path(said: set[str]) -> set[str]:
    """A parameter whose description says "path": of a file, a folder, or either."""
    if not said & {"path", "paths"}:
        return set()
    return _path_kinds(said - {"path", "paths"}) or {"file", "folder"}


def _param_kinds(name: str, spec: object) -> set[str]:
    """The kinds one parameter takes ("paths" if it is an array of paths)."""
    spec = spec if isinstance(spec, Mapping) else {}
    names = _names(name)
    declared = spec.get("type")
    types = {t for t in (declared if isinstance(declared, list) else [declared]) if t is None or isinstance(t, str)}
    description = spec.get("description")
    said = set(_DESCRIPTION_WORD.findall(description[:300].lower())) if isinstance(description, str) else set()
    fmt = str(spec.get("format") or "").lower()
    textual = bool(types & {"string", "array", None})
    found: set[str] = set()
    if fmt in ("uri", "url", "iri", "uri-reference") or names & _URL_NAMES or "url" in said:
        found.add("url")
    elif textual and not names & _NOT_PATH_NAMES and (path := _path_kinds(names) or _said_path(said)):
        if len(path) == 2:  # a plain "path": its description may say which ("file paths")
            path = _path_kinds(said & (_FILE_NAMES | _FOLDER_NAMES)) or path
        found |= path
        if "array" in types:
            found.add("paths")
    if textual and "boolean" not in types and (names & _REVISION_NAMES or said & {"revision", "sha", "commit"}):
        found.add("revision")
    if names & _CLOCK_NAMES or fmt in ("time", "date-time"):
        found.add("clock")
    if (names & _DATE_NAMES or fmt in ("date", "date-time")):
        found.add("date")
    if names & _ZONE_NAMES:
        found.add("zone")
    if types & {"number", "integer"}:
        found.add("number")
    if textual and names & {"pattern", "patterns", "glob", "globs", "wildcard"}:
        found.add("pattern")
    if names & _TEXT_NAMES and "string" in types and fmt not in ("uri", "url"):
        found.add("text")
    if textual and "enum" not in spec and not found - {"text"} and not names & {"branch", "file", "type"} and not said & {"file", "branch"} and (
            names & {"name", "names"} or said & {"name", "names"}):
        found.add("name")
        if "array" in types or names & {"names"}:
            found.add("names")
    return found


def _properties(schema: object, limit: int = MAX_PARAMS) -> list[tuple[str, object]]:
    properties = schema.get("properties") if isinstance(schema, Mapping) else None
    if not isinstance(properties, Mapping):
        return []
    return [(str(name)[:100], spec) for name, spec in islice(properties.items(), limit)]


def accepts(schema: object) -> frozenset[str]:
    """The kinds an input schema's parameters take (see the module's docstring)."""
    return schema_kinds(schema)[0]


def requires(schema: object) -> frozenset[str]:
    """The telling kinds (TELLING_KINDS) the schema's required parameters take. An array of names
    requires one name; objects that each require two ({from, to}) require names."""
    return schema_kinds(schema)[1]


def schema_kinds(schema: object) -> tuple[frozenset[str], frozenset[str]]:
    """(accepts, requires) from one reading of the schema: each parameter's kinds are worked out once."""
    params = [(name, spec, _param_kinds(name, spec)) for name, spec in _properties(schema)]
    required = _required_names(schema, MAX_PARAMS)
    taken: set[str] = set()
    needed: set[str] = set()
    for name, _spec, kinds_of in params:
        taken |= kinds_of
        if name in required:
            needed |= kinds_of & TELLING_KINDS - {"names"}
    if sum(bool(kinds_of & {"file", "folder"}) for _n, _s, kinds_of in params) >= 2:
        taken.add("paths")
    # Objects inside arrays (the first MAX_ARRAY_PARAMS of them; for requires, of the required ones).
    arrays = [(name, spec["items"]) for name, spec, _k in params
              if isinstance(spec, Mapping) and isinstance(spec.get("items"), Mapping)]
    fields: dict[int, list[tuple[str, set[str]]]] = {}
    for _name, item in arrays[:MAX_ARRAY_PARAMS]:
        fields[id(item)] = [(n, _param_kinds(n, s)) for n, s in _properties(item, MAX_ITEM_PARAMS)]
        # Names inside objects: an array of {name, entityType} or of {from, to} takes several.
        if any("name" in kinds_of for _n, kinds_of in fields[id(item)]):
            taken |= {"name", "names"}
    for _name, item in [(name, item) for name, item in arrays if name in required][:MAX_ARRAY_PARAMS]:
        if id(item) not in fields:
            fields[id(item)] = [(n, _param_kinds(n, s)) for n, s in _properties(item, MAX_ITEM_PARAMS)]
        item_required = _required_names(item, MAX_ITEM_PARAMS)
        named = sum("name" in kinds_of for n, kinds_of in fields[id(item)] if n in item_required)
        if named:
            needed.add("names" if named >= 2 else "name")
    return frozenset(taken), frozenset(needed)


# A hostile upstream's schema is data: objects inside arrays are read for the first
# MAX_ARRAY_PARAMS arrays and MAX_ITEM_PARAMS fields each (a few hundred checks a tool at most).
MAX_ARRAY_PARAMS = 8
MAX_ITEM_PARAMS = 16


# Kinds a request states when it means them (a time of day, a URL, a commit, a zone, a name, a
# number); a tool that requires one the request does not give is likely not the one meant, if the
# request gives others ("add 17 and 25" gives numbers and no name: not add_observations).
TELLING_KINDS = frozenset({"clock", "url", "revision", "zone", "name", "names", "number"})


def _required_names(schema: object, limit: int) -> set[str]:
    required = schema.get("required") if isinstance(schema, Mapping) else None
    if not isinstance(required, list):
        return set()
    return {name[:100] for name in required[:limit] if isinstance(name, str)}
