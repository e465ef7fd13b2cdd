"""The catalog loader under hostile catalog files and hostile remote hosts.

Each class of attack from issue 16 ("the catalog loader") is reproduced here with real files and
symlinks in temp dirs, a real HTTP host on 127.0.0.1 (allowed explicitly through
`catalog_loader.allowed_networks`, as the loader refuses loopback otherwise), the real CLI in a
subprocess and the real catalog MCP server over stdio.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import pytest
from mcp import Client, StdioServerParameters
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from aiplane.catalog.loader import load_all
from aiplane.config import CatalogLoaderSettings
from tests.conftest import AIPLANE, clean_env
from tests.doubles.server import ServerThread

SECRET = "TOP-SECRET-7f3a9c"

COMPONENT = """apiVersion: backstage.io/v1alpha1
kind: Component
metadata:
  name: {name}
spec:
  type: service
  lifecycle: production
  owner: team-a
"""


def api(name: str, placeholder: str, target: str) -> str:
    return (
        f"apiVersion: backstage.io/v1alpha1\nkind: API\nmetadata:\n  name: {name}\nspec:\n  type: openapi\n"
        f"  lifecycle: production\n  owner: team-a\n  definition:\n    {placeholder}: {target}\n"
    )


def location(name: str, *targets: str) -> str:
    listed = "".join(f"    - {t}\n" for t in targets)
    return f"apiVersion: backstage.io/v1alpha1\nkind: Location\nmetadata:\n  name: {name}\nspec:\n  targets:\n{listed}"


def write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def loopback(port: int, **extra) -> CatalogLoaderSettings:
    """Loopback on one port, allowed explicitly (the loader refuses both by default)."""
    return CatalogLoaderSettings(allowed_hosts=[f"127.0.0.1:{port}"], allowed_networks=["127.0.0.0/8"], **extra)


def messages(result) -> str:
    return "\n".join(str(p) for p in result.problems)


def dump(result) -> str:
    return json.dumps({k: e for k, (e, _s) in result.entities.items()})


@pytest.fixture()
def outside(tmp_path: Path) -> Path:
    """A secret beside the catalog tree, and a descriptor there that must never be ingested."""
    write(tmp_path / "outside", {"secret.txt": SECRET + "\n", "evil.yaml": COMPONENT.format(name="evil") + f"  description: {SECRET}\n"})
    (tmp_path / "outside" / "secret.json").write_text(json.dumps({"token": SECRET}))
    return tmp_path / "outside"


# ---------------------------------------------------------------------------------------------
# Confinement of Location targets and placeholders to the location's own tree


def test_location_targets_outside_the_tree_are_refused(tmp_path, outside):
    tree = write(
        tmp_path / "repo",
        {
            "catalog-info.yaml": location("root", "../outside/evil.yaml", str(outside / "evil.yaml"), "/etc/passwd", "./svc.yaml", "sub/../svc.yaml", f"file://{outside}/evil.yaml"),
            "svc.yaml": COMPONENT.format(name="svc"),
        },
    )
    result = load_all([str(tree / "catalog-info.yaml")], follow_remote=False)
    assert set(result.entities) == {"location:default/root", "component:default/svc"}
    text = messages(result)
    assert text.count("(rule: confinement)") == 3
    assert "target ../outside/evil.yaml refused: it resolves outside the location's tree" in text
    assert "target /etc/passwd refused" in text
    assert f"target file://{outside}/evil.yaml: scheme 'file:' is not supported" in text
    assert SECRET not in dump(result) and "root:" not in dump(result)


@pytest.mark.parametrize("placeholder", ["$text", "$json", "$yaml"])
def test_placeholders_outside_the_tree_are_refused(tmp_path, outside, placeholder):
    target = {"$text": "../outside/secret.txt", "$json": "../outside/secret.json", "$yaml": "../outside/evil.yaml"}[placeholder]
    tree = write(
        tmp_path / "repo",
        {
            "a.yaml": api("relative", placeholder, target),
            "b.yaml": api("absolute", placeholder, str(outside / Path(target).name)),
            "c.yaml": api("passwd", placeholder, "/etc/passwd"),
            "d.yaml": COMPONENT.format(name="elsewhere") + f"  extra:\n    {placeholder}: {target}\n",
        },
    )
    result = load_all([str(tree)], follow_remote=False)
    assert len(result.entities) == 4  # the entities stay; only the reads are refused
    assert SECRET not in dump(result) and "root:x" not in dump(result)
    for name in ("relative", "absolute", "passwd"):
        definition = result.entities[f"api:default/{name}"][0]["spec"]["definition"]
        # Served as a string (Backstage's model requires one), saying why, with no local path of ours.
        assert isinstance(definition, str) and definition.startswith("(definition not loaded: outside the location's tree)")
        assert str(tree) not in definition  # the tree's own location is never disclosed
    assert messages(result).count("refused: it resolves outside the location's tree") == 4


def test_placeholders_inside_the_tree_resolve_to_strings_in_definitions(tmp_path):
    tree = write(
        tmp_path / "repo",
        {
            "api.yaml": api("texted", "$text", "./specs/openapi.yaml")
            + "---\n" + api("jsoned", "$json", "specs/openapi.json")
            + "---\n" + api("yamled", "$yaml", "./specs/openapi.yaml")
            + "---\n" + COMPONENT.format(name="parsed") + "  extra:\n    $json: ./specs/openapi.json\n",
            "specs/openapi.yaml": "openapi: 3.0.0\ninfo: {title: t, version: '1'}\n",
            "specs/openapi.json": '{"openapi": "3.0.0"}',
        },
    )
    result = load_all([str(tree / "api.yaml")], follow_remote=False)
    assert not result.errors, messages(result)
    assert result.entities["api:default/texted"][0]["spec"]["definition"].startswith("openapi: 3.0.0")
    assert result.entities["api:default/jsoned"][0]["spec"]["definition"] == '{"openapi": "3.0.0"}'
    assert result.entities["api:default/yamled"][0]["spec"]["definition"].startswith("openapi: 3.0.0")
    # Outside a definition, $json and $yaml give data, as in Backstage.
    assert result.entities["component:default/parsed"][0]["spec"]["extra"] == {"openapi": "3.0.0"}


def test_symlinked_descriptors_pointing_out_are_refused(tmp_path, outside):
    tree = write(tmp_path / "repo", {"real/svc.yaml": COMPONENT.format(name="svc"), "spec.txt": "inside"})
    (tree / "evil.yaml").symlink_to(outside / "evil.yaml")
    (tree / "alias.yaml").symlink_to(tree / "real" / "svc.yaml")  # inside: fine, read once
    (tree / "linked-dir").symlink_to(outside, target_is_directory=True)
    (tree / "leak.txt").symlink_to(outside / "secret.txt")
    (tree / "passwd.txt").symlink_to("/etc/passwd")
    write(tree, {"api.yaml": api("leaky", "$text", "./leak.txt") + "---\n" + api("passwd", "$text", "passwd.txt") + "---\n" + api("fine", "$text", "spec.txt")})
    result = load_all([str(tree)], follow_remote=False)
    assert set(result.entities) == {"component:default/svc", "api:default/leaky", "api:default/passwd", "api:default/fine"}
    assert result.entities["api:default/fine"][0]["spec"]["definition"] == "inside"
    assert SECRET not in dump(result) and "root:" not in dump(result)
    text = messages(result)
    assert "evil.yaml: error: symlink resolves outside the location's tree" in text
    assert "$text ./leak.txt: refused" in text and "$text passwd.txt: refused" in text


def test_a_named_target_that_is_a_symlink_out_of_its_directory_is_refused(tmp_path, outside):
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    (checkout / "catalog-info.yaml").symlink_to(outside / "evil.yaml")
    (checkout / "catalog").symlink_to(outside, target_is_directory=True)
    result = load_all([str(checkout / "catalog-info.yaml"), str(checkout / "catalog")], follow_remote=False)
    assert not result.entities
    assert messages(result).count("resolves outside the location's tree") == 2


def test_special_files_never_block(tmp_path):
    tree = write(tmp_path / "repo", {"ok.yaml": COMPONENT.format(name="ok")})
    os.mkfifo(tree / "fifo.yaml")
    write(tree, {"api.yaml": api("piped", "$text", "./fifo.yaml")})
    started = time.monotonic()
    result = load_all([str(tree)], follow_remote=False)
    assert time.monotonic() - started < 10
    assert {"component:default/ok", "api:default/piped"} <= set(result.entities)
    assert "is not a regular file" in messages(result)


def _rows(data_dir: Path) -> dict[str, tuple[str, str]]:
    with sqlite3.connect(data_dir / "aiplane.db") as db:
        return {ref: (body, source) for ref, body, source in db.execute("select ref, body, source from catalog_entities")}


def _mcp_get(env: dict[str, str], ref: str) -> str:
    async def run() -> str:
        params = StdioServerParameters(command=AIPLANE, args=["catalog", "mcp"], env=env)
        async with Client(params) as client:
            result = await client.call_tool("get_entity", {"ref": ref})
            assert not result.is_error
            return json.dumps(result.model_dump(mode="json"))

    return asyncio.run(asyncio.wait_for(run(), 60))


def test_nothing_outside_is_stored_or_served_over_mcp(tmp_path, outside):
    tree = write(tmp_path / "repo", {"catalog-info.yaml": location("root", "../outside/evil.yaml", "./api.yaml"), "api.yaml": api("leaky", "$text", "../outside/secret.txt")})
    (tree / "linked.yaml").symlink_to(outside / "evil.yaml")
    env = clean_env(AIPLANE_DATA_DIR=str(tmp_path / "data"))
    run = subprocess.run([AIPLANE, "catalog", "ingest", str(tree), "--no-remote"], env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert "(rule: confinement)" in run.stderr and "ingested 2 entities" in run.stdout
    rows = _rows(tmp_path / "data")
    assert set(rows) == {"location:default/root", "api:default/leaky"}
    assert all(SECRET not in body for body, _ in rows.values())
    served = _mcp_get(env, "api:default/leaky")
    assert "definition not loaded" in served and SECRET not in served


# ---------------------------------------------------------------------------------------------
# Remote fetching: opt-in per host, no private addresses, same-host redirects, bounded


class Host:
    """A catalog host on 127.0.0.1 that records what it was asked for."""

    def __init__(self) -> None:
        self.hits: list[tuple[str, str]] = []  # (path, Host header)
        self.files: dict[str, str] = {}

        async def serve(request: Request) -> Response:
            path = request.url.path
            self.hits.append((path, request.headers.get("host", "")))
            port = request.url.port
            if path == "/redirect/same":
                return RedirectResponse("/files/svc.yaml", status_code=302)
            if path == "/redirect/other-host":
                return RedirectResponse(f"http://localhost:{port}/files/svc.yaml", status_code=302)
            if path == "/redirect/file":
                return RedirectResponse("file:///etc/passwd", status_code=302)
            if path == "/redirect/malformed":
                return Response(status_code=302, headers={"location": "//[oops/x"})
            if path.startswith("/redirect/to-port/"):  # http on an allowed port -> https on another
                return RedirectResponse(f"https://127.0.0.1:{path.rsplit('/', 1)[1]}/secret", status_code=302)
            if path == "/redirect/loop":
                return RedirectResponse("/redirect/loop", status_code=302)
            if path == "/huge":
                return PlainTextResponse("x" * (2 * 1024 * 1024))
            if path == "/huge-unannounced":

                async def chunks():
                    for _ in range(64):
                        yield b"# " + b"x" * 65534

                return StreamingResponse(chunks(), media_type="text/yaml")
            if path == "/slow":

                async def drip():
                    for _ in range(100):
                        yield b"# still here\n"
                        await asyncio.sleep(0.2)

                return StreamingResponse(drip(), media_type="text/yaml")
            if path == "/gzip":
                return Response(b"\x1f\x8b\x08\x00", headers={"content-encoding": "gzip"})
            if path.startswith("/files/") and path[len("/files/") :] in self.files:
                return PlainTextResponse(self.files[path[len("/files/") :]], media_type="text/yaml")
            return PlainTextResponse("not found", status_code=404)

        self.app = Starlette(routes=[Route("/{path:path}", serve)])

    def __enter__(self) -> Host:
        self.server = ServerThread(self.app).__enter__()
        self.url = self.server.url
        return self

    def __exit__(self, *exc) -> None:
        self.server.__exit__(*exc)

    def paths(self) -> list[str]:
        return [p for p, _ in self.hits]


@pytest.fixture()
def host():
    with Host() as served:
        served.files["svc.yaml"] = COMPONENT.format(name="remote-svc")
        yield served


def test_remote_fetching_is_off_by_default(tmp_path, host):
    tree = write(tmp_path / "repo", {"catalog-info.yaml": location("root", f"{host.url}/files/svc.yaml") + "---\n" + api("remote-def", "$text", f"{host.url}/files/svc.yaml")})
    result = load_all([str(tree)])  # default settings, --remote on: still nothing is fetched
    assert set(result.entities) == {"location:default/root", "api:default/remote-def"}
    assert host.hits == []
    assert f"host 127.0.0.1:{host.server.port} is not in catalog_loader.allowed_hosts" in messages(result)
    definition = result.entities["api:default/remote-def"][0]["spec"]["definition"]
    assert definition == f"(definition not loaded: host not allowed) {host.url}/files/svc.yaml"
    assert not result.errors  # not opted in is a warning, not a failure


def test_loopback_is_refused_unless_its_network_is_allowed(tmp_path, host):
    tree = write(tmp_path / "repo", {"catalog-info.yaml": location("root", f"{host.url}/files/svc.yaml", f"http://localhost:{host.server.port}/files/svc.yaml")})
    port = host.server.port
    refused = load_all([str(tree)], settings=CatalogLoaderSettings(allowed_hosts=[f"127.0.0.1:{port}", f"localhost:{port}"]))
    assert "component:default/remote-svc" not in refused.entities and host.hits == []
    text = messages(refused)
    assert "127.0.0.1 resolves to a private, loopback or link-local address (127.0.0.1)" in text
    assert "localhost resolves to a private" in text  # checked after DNS resolution, not by name
    allowed = load_all([str(tree)], settings=loopback(port))
    assert "component:default/remote-svc" in allowed.entities
    assert host.paths() == ["/files/svc.yaml"]


def test_the_connection_goes_to_the_address_that_was_checked(tmp_path, host, monkeypatch):
    real = socket.getaddrinfo
    answers = {"catalog.test": ["127.0.0.1"], "rebind.test": ["127.0.0.1", "10.0.0.7"]}
    asked: list[str] = []

    def fake_dns(name, port, *args, **kwargs):
        if name in answers:
            asked.append(name)
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in answers[name]]
        return real(name, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake_dns)
    port = host.server.port
    tree = write(tmp_path / "repo", {"catalog-info.yaml": location("root", f"http://catalog.test:{port}/files/svc.yaml", f"http://rebind.test:{port}/files/svc.yaml")})
    settings = CatalogLoaderSettings(allowed_hosts=[f"*.test:{port}"], allowed_networks=["127.0.0.0/8"])
    result = load_all([str(tree)], settings=settings)
    assert "component:default/remote-svc" in result.entities
    # One resolution per name; the request reached the checked address with the name as Host.
    assert asked == ["catalog.test", "rebind.test"]
    assert host.hits == [("/files/svc.yaml", f"catalog.test:{port}")]
    assert "rebind.test resolves to a private, loopback or link-local address (10.0.0.7)" in messages(result)


def test_redirects_stay_on_the_same_host(tmp_path, host):
    tree = write(
        tmp_path / "repo",
        {"catalog-info.yaml": location("root", *(f"{host.url}/redirect/{name}" for name in ("same", "other-host", "file", "loop")))},
    )
    port = host.server.port
    result = load_all([str(tree)], settings=CatalogLoaderSettings(allowed_hosts=[f"127.0.0.1:{port}", f"localhost:{port}"], allowed_networks=["127.0.0.0/8"]))
    assert "component:default/remote-svc" in result.entities  # via the same-host redirect
    text = messages(result)
    assert "redirect to another host (localhost) refused" in text
    assert "redirect to a 'file:' URL refused" in text
    assert "more than 3 redirects" in text
    assert all(h == f"127.0.0.1:{host.server.port}" for _p, h in host.hits)


def test_a_remote_document_never_reads_local_files(tmp_path, host, outside):
    host.files["evil-location.yaml"] = location("remote-root", f"file://{outside}/evil.yaml", f"{outside}/evil.yaml", "./svc.yaml")
    host.files["evil-api.yaml"] = api("remote-api", "$text", f"file://{outside}/secret.txt") + "---\n" + api("pathy", "$text", str(outside / "secret.txt"))
    result = load_all([f"{host.url}/files/evil-location.yaml", f"{host.url}/files/evil-api.yaml"], settings=loopback(host.server.port))
    assert {"location:default/remote-root", "component:default/remote-svc", "api:default/remote-api", "api:default/pathy"} <= set(result.entities)
    assert "component:default/evil" not in result.entities
    assert SECRET not in dump(result)
    assert "a remote document cannot point at local files" in messages(result)
    assert "a remote document cannot read local files" in messages(result)
    # An absolute path in a remote document names a path on that host, never a local file.
    assert f"{outside}/evil.yaml" in host.paths() and f"{outside}/secret.txt" in host.paths()


def test_remote_reads_are_bounded_in_size_and_time(tmp_path, host):
    settings = loopback(host.server.port, max_document_bytes=1024 * 1024, timeout_seconds=2)
    started = time.monotonic()
    result = load_all([f"{host.url}/{p}" for p in ("huge", "huge-unannounced", "slow", "gzip")], settings=settings)
    elapsed = time.monotonic() - started
    text = messages(result)
    assert text.count("the document is larger than 1048576 bytes") == 2
    assert "took longer than 2 s" in text
    assert "gzip-encoded" in text
    assert elapsed < 8


def test_remote_ingest_through_the_cli_needs_the_settings(tmp_path, host):
    env = clean_env(AIPLANE_DATA_DIR=str(tmp_path / "data"))
    url = f"{host.url}/files/svc.yaml"
    off = subprocess.run([AIPLANE, "catalog", "validate", url], env=env, capture_output=True, text=True, timeout=120)
    assert "not in catalog_loader.allowed_hosts" in off.stderr and host.hits == []
    env.update(AIPLANE_CATALOG_LOADER__ALLOWED_HOSTS=f'["127.0.0.1:{host.server.port}"]', AIPLANE_CATALOG_LOADER__ALLOWED_NETWORKS='["127.0.0.1/32"]')
    on = subprocess.run([AIPLANE, "catalog", "ingest", url], env=env, capture_output=True, text=True, timeout=120)
    assert on.returncode == 0, on.stderr
    assert "ingested 1 entities" in on.stdout
    assert _rows(tmp_path / "data")["component:default/remote-svc"][1] == url


# ---------------------------------------------------------------------------------------------
# YAML: bounded alias expansion and nesting, one bad document at a time

BOMB = (
    COMPONENT.format(name="bomb")
    + '  a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    + "".join(f"  {n}: &{n} [*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p}]\n" for p, n in zip("abcdef", "bcdefg", strict=True))
)


def deep(levels: int) -> str:
    return COMPONENT.format(name="deep") + "  x: " + "[" * levels + "]" * levels + "\n"


def test_an_alias_bomb_is_refused_and_the_rest_ingests(tmp_path):
    assert len(BOMB.encode()) <= 466
    tree = write(tmp_path / "repo", {"bomb.yaml": BOMB + "---\n" + COMPONENT.format(name="after-bomb"), "ok.yaml": COMPONENT.format(name="ok")})
    result = load_all([str(tree)], follow_remote=False)
    assert set(result.entities) == {"component:default/after-bomb", "component:default/ok"}
    assert "bomb.yaml[0]: error: aliases expand to more than 1000000 nodes and characters (rule: yaml)" in messages(result)


def test_ordinary_anchors_still_work(tmp_path):
    text = COMPONENT.format(name="anchored").replace("  owner: team-a\n", "  owner: &owner team-a\n  tags: &t [a, b]\n") + "---\n" + COMPONENT.format(name="second").replace("owner: team-a", "owner: team-b")
    result = load_all([str(write(tmp_path, {"a.yaml": text}) / "a.yaml")], follow_remote=False)
    assert not result.errors and len(result.entities) == 2


@pytest.mark.parametrize("doc", ["self", "deep-flow", "deep-block", "deep-alias", "big-int", "bad-date", "unhashable", "undefined-alias"])
def test_a_bad_document_is_reported_and_the_rest_ingests(tmp_path, doc):
    bad = {
        "self": COMPONENT.format(name="x") + "  loop: &l [*l]\n",
        "deep-flow": deep(990),
        "deep-block": COMPONENT.format(name="x") + "".join("  " * (i + 1) + f"k{i}:\n" for i in range(990)) + "  " * 991 + "v: 1\n",
        "deep-alias": COMPONENT.format(name="x") + "  a: &a " + "[" * 40 + "]" * 40 + "\n  b: &b " + "[" * 30 + "*a" + "]" * 30 + "\n",
        "big-int": COMPONENT.format(name="x") + "  n: " + "9" * 5000 + "\n",
        "bad-date": COMPONENT.format(name="x") + "  d: !!timestamp 2020-13-45\n",
        "unhashable": COMPONENT.format(name="x") + "  ? [a, b]\n  : 1\n",
        "undefined-alias": COMPONENT.format(name="x") + "  a: *nowhere\n",
    }[doc]
    tree = write(tmp_path / "repo", {"mixed.yaml": COMPONENT.format(name="before") + "---\n" + bad + "---\n" + COMPONENT.format(name="after"), "other.yaml": COMPONENT.format(name="other")})
    result = load_all([str(tree)], follow_remote=False)
    assert set(result.entities) == {"component:default/before", "component:default/after", "component:default/other"}
    assert [(p.index, p.rule) for p in result.errors] == [(1, "yaml")]


def test_yaml_limits_apply_to_placeholder_targets(tmp_path):
    tree = write(tmp_path / "repo", {"bomb.yaml": BOMB, "deep.json": "[" * 990 + "]" * 990, "api.yaml": COMPONENT.format(name="c") + "  a:\n    $yaml: ./bomb.yaml\n  b:\n    $json: ./deep.json\n"})
    result = load_all([str(tree / "api.yaml")], follow_remote=False)
    spec = result.entities["component:default/c"][0]["spec"]
    assert spec["a"] == {"$yaml": "./bomb.yaml"} and spec["b"] == {"$json": "./deep.json"}
    assert "aliases expand" in messages(result) and "nesting deeper than 64 levels" in messages(result)


def test_hostile_yaml_through_the_cli_stays_small(tmp_path):
    larger = BOMB.replace("  g: &g", "  h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]\n  g: &g")  # the 569-byte kind
    tree = write(tmp_path / "repo", {"bomb.yaml": BOMB, "bigger.yaml": larger, "deep.yaml": deep(990), "ok.yaml": COMPONENT.format(name="ok")})
    env = clean_env(AIPLANE_DATA_DIR=str(tmp_path / "data"))
    proc = subprocess.Popen([AIPLANE, "catalog", "ingest", str(tree)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    usage: list = []

    def reap() -> None:
        usage.append(os.wait4(proc.pid, 0))

    waiter = threading.Thread(target=reap)
    waiter.start()
    stdout, stderr = proc.stdout.read(), proc.stderr.read()
    waiter.join(120)
    _pid, status, rusage = usage[0]
    assert os.waitstatus_to_exitcode(status) == 1 and "Traceback" not in stderr
    assert "ingested 1 entities (3 rejected)" in stdout
    assert rusage.ru_maxrss < 400 * 1024  # KiB: the 569-byte file once took 3.8 GB
    assert max(len(body) for body, _ in _rows(tmp_path / "data").values()) < 10_000


# ---------------------------------------------------------------------------------------------
# Ownership: the first location that defined an entity keeps it


def test_a_second_location_in_one_run_gets_a_conflict(tmp_path):
    tree = write(tmp_path / "repo", {"a.yaml": COMPONENT.format(name="Payments"), "b.yaml": COMPONENT.format(name="payments").replace("team-a", "team-b")})
    result = load_all([str(tree)], follow_remote=False)
    entity, source = result.entities["component:default/payments"]
    assert source.endswith("a.yaml") and entity["spec"]["owner"] == "team-a"
    [conflict] = result.conflicts
    assert conflict.source.endswith("b.yaml") and not conflict.warning
    assert f"component:default/payments is already defined by {tree.resolve() / 'a.yaml'}" in conflict.message


def _ingest(env: dict[str, str], *targets: str) -> subprocess.CompletedProcess:
    return subprocess.run([AIPLANE, "catalog", "ingest", *targets, "--no-remote"], env=env, capture_output=True, text=True, timeout=120)


def test_ownership_holds_across_runs_and_moves_only_when_released(tmp_path):
    env = clean_env(AIPLANE_DATA_DIR=str(tmp_path / "data"))
    first = write(tmp_path / "first", {"catalog-info.yaml": COMPONENT.format(name="billing")})
    second = write(tmp_path / "second", {"catalog-info.yaml": COMPONENT.format(name="BILLING").replace("team-a", "mallory")})
    assert _ingest(env, str(first)).returncode == 0

    takeover = _ingest(env, str(second))
    assert takeover.returncode == 1 and "Traceback" not in takeover.stderr
    assert "component:default/BILLING is already defined by" in takeover.stderr and "(rule: conflict)" in takeover.stderr
    body, source = _rows(tmp_path / "data")["component:default/billing"]
    assert json.loads(body)["spec"]["owner"] == "team-a" and source == str((first / "catalog-info.yaml").resolve())

    # The owner itself updates freely.
    write(first, {"catalog-info.yaml": COMPONENT.format(name="billing").replace("team-a", "team-c")})
    assert _ingest(env, str(first)).returncode == 0
    assert json.loads(_rows(tmp_path / "data")["component:default/billing"][0])["spec"]["owner"] == "team-c"

    # Moving it within a tree: the old file no longer defines it, so the new one takes over.
    write(first, {"catalog-info.yaml": COMPONENT.format(name="other"), "moved.yaml": COMPONENT.format(name="billing").replace("team-a", "team-d")})
    moved = _ingest(env, str(first))
    assert moved.returncode == 0, moved.stderr
    assert "moves here from" in moved.stderr
    body, source = _rows(tmp_path / "data")["component:default/billing"]
    assert json.loads(body)["spec"]["owner"] == "team-d" and source.endswith("moved.yaml")


def test_a_server_dripping_its_headers_is_cut_at_the_deadline(tmp_path):
    """Every read is within its own timeout, yet the whole fetch must still end on time."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    stop = threading.Event()

    def drip() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
            while not stop.is_set():
                try:
                    conn.sendall(b"a")
                except OSError:
                    return
                time.sleep(0.3)

    thread = threading.Thread(target=drip, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/catalog-info.yaml"
    started = time.monotonic()
    try:
        result = load_all([url], settings=loopback(listener.getsockname()[1], timeout_seconds=2))
    finally:
        stop.set()
        listener.close()
    assert time.monotonic() - started < 5
    assert "took longer than 2 s" in messages(result)


def test_messages_cannot_drive_the_terminal(tmp_path):
    name = "evil\x1b[2J\x1b]0;owned\x07\u202e.yaml"
    tree = write(tmp_path / "repo", {"root.yaml": location("root", json.dumps(f"./{name}")), "noise.yaml": "---\n{}\n" * 500})
    result = load_all([str(tree)], follow_remote=False)
    text = messages(result)
    assert "\x1b" not in text and "\u202e" not in text and "\\u001b[2J" in text
    noise = [p for p in result.problems if p.source.endswith("noise.yaml")]
    assert len(noise) == 101 and noise[-1].message == "400 more problems are not listed" and noise[-1].warning


def test_placeholders_cannot_multiply_one_file(tmp_path):
    many = "".join(f"  p{i}:\n    $text: ./big.txt\n" for i in range(100))
    tree = write(tmp_path / "repo", {"big.txt": "x" * 200_000, "a.yaml": COMPONENT.format(name="amplified") + many})
    result = load_all([str(tree / "a.yaml")], follow_remote=False, settings=CatalogLoaderSettings(max_document_bytes=1024 * 1024))
    stored = len(json.dumps(result.entities["component:default/amplified"][0]))
    assert stored < 1_100_000  # five copies fit in the 1 MiB per-document budget, not a hundred
    assert "placeholders add more than 1048576 characters to one document" in messages(result)


def test_a_run_spends_bounded_time_on_remote_hosts(tmp_path, host):
    tree = write(tmp_path / "repo", {"catalog-info.yaml": location("root", *(f"{host.url}/slow?n={i}" for i in range(20)))})
    started = time.monotonic()
    result = load_all([str(tree)], settings=loopback(host.server.port, timeout_seconds=1, max_remote_seconds=3))
    assert time.monotonic() - started < 8
    assert "the run spent its 3 s of remote fetching" in messages(result)


def test_deeply_nested_directories_are_not_walked(tmp_path):
    tree = tmp_path / "repo"
    deep_dir = tree.joinpath(*["d"] * 40)
    write(deep_dir, {"svc.yaml": COMPONENT.format(name="buried")})
    write(tree, {"top.yaml": COMPONENT.format(name="top")})
    result = load_all([str(tree)], follow_remote=False)
    assert set(result.entities) == {"component:default/top"}
    assert "directories nested deeper than 32 levels are not read" in messages(result)


def test_nesting_millions_deep_neither_crashes_nor_stalls(tmp_path):
    """libyaml's own composer recurses in C (a segfault at this depth) and its scanner slows with depth."""
    tree = write(tmp_path / "repo", {"deep.yaml": COMPONENT.format(name="before") + "---\n" + "[" * 3_000_000 + "]" * 3_000_000 + "\n---\n" + COMPONENT.format(name="lost"), "ok.yaml": COMPONENT.format(name="ok")})
    env = clean_env(AIPLANE_DATA_DIR=str(tmp_path / "data"))
    started = time.monotonic()
    run = subprocess.run([AIPLANE, "catalog", "validate", str(tree)], env=env, capture_output=True, text=True, timeout=120)
    assert time.monotonic() - started < 60
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert "deep.yaml[1]: error: nesting deeper than 64 levels; the rest of this file is not read" not in run.stderr  # fatal: no index
    assert "deep.yaml: error: nesting deeper than 64 levels; the rest of this file is not read (rule: yaml)" in run.stderr
    assert "2 valid entities" in run.stdout  # before (same file) and ok (another file)


def test_parsing_one_file_is_bounded_in_time(tmp_path):
    flood = COMPONENT.format(name="flood") + "  x: [" + "[]," * 1_000_000 + "]\n"
    tree = write(tmp_path / "repo", {"flood.yaml": flood, "ok.yaml": COMPONENT.format(name="ok")})
    started = time.monotonic()
    result = load_all([str(tree)], follow_remote=False, settings=CatalogLoaderSettings(max_parse_seconds=1))
    assert time.monotonic() - started < 10
    assert set(result.entities) == {"component:default/ok"}
    assert "parsing took longer than 1 s; the rest of this file is not read" in messages(result)


def test_a_broken_owner_file_gives_nothing_up(tmp_path):
    env = clean_env(AIPLANE_DATA_DIR=str(tmp_path / "data"))
    tree = write(tmp_path / "repo", {"b-owner.yaml": COMPONENT.format(name="ledger")})
    assert _ingest(env, str(tree)).returncode == 0
    # The owner breaks (a syntax error before the entity); a newcomer defines the entity meanwhile.
    write(tree, {"b-owner.yaml": "kind: [unclosed\n---\n" + COMPONENT.format(name="ledger"), "a-newcomer.yaml": COMPONENT.format(name="ledger").replace("team-a", "mallory")})
    run = _ingest(env, str(tree))
    assert run.returncode == 1 and "(rule: conflict)" in run.stderr
    body, source = _rows(tmp_path / "data")["component:default/ledger"]
    assert json.loads(body)["spec"]["owner"] == "team-a" and source.endswith("b-owner.yaml")


def test_an_allowed_host_is_allowed_on_its_default_port_only(tmp_path, host):
    """`git.corp` in the allowlist must not let a catalog file reach git.corp's database port."""
    port = host.server.port
    tree = write(tmp_path / "repo", {"catalog-info.yaml": location("root", f"{host.url}/files/svc.yaml")})
    result = load_all([str(tree)], settings=CatalogLoaderSettings(allowed_hosts=["127.0.0.1"], allowed_networks=["127.0.0.0/8"]))
    assert host.hits == [] and f"host 127.0.0.1:{port} is not in catalog_loader.allowed_hosts" in messages(result)
    result = load_all([str(tree)], settings=CatalogLoaderSettings(allowed_hosts=[f"127.0.0.1:{port}"], allowed_networks=["127.0.0.0/8"]))
    assert "component:default/remote-svc" in result.entities


def test_a_run_reads_a_bounded_number_of_files(tmp_path):
    files = {f"svc-{i:02}.yaml": COMPONENT.format(name=f"svc-{i:02}") for i in range(30)}
    tree = write(tmp_path / "repo", {**files, "root.yaml": location("root", *files)})
    result = load_all([str(tree / "root.yaml")], follow_remote=False, settings=CatalogLoaderSettings(max_files=10))
    assert len(result.entities) == 10  # the Location and nine of its targets
    limits = [p for p in result.problems if p.rule == "limit"]
    assert len(limits) == 2 and not any(p.warning for p in limits)  # said once, counted once; the run fails
    assert limits[-1].message == "21 files or URLs were not read (over budget)"
    # A directory walk stops at the same bound.
    walked = load_all([str(tree)], follow_remote=False, settings=CatalogLoaderSettings(max_files=10))
    assert len(walked.entities) <= 10 and "more than 10 entries; the rest is not read" in messages(walked)


@pytest.mark.parametrize(
    "address",
    ["169.254.169.254", "127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "100.64.0.1", "0.0.0.0", "224.0.0.1",
     "255.255.255.255", "::1", "fe80::1", "fd00::1", "::ffff:127.0.0.1", "::ffff:169.254.169.254", "64:ff9b::a9fe:a9fe",
     "2002:7f00:1::1", "::", "::7f00:1", "::a9fe:a9fe", "::ffff:0:a9fe:a9fe", "64:ff9b::808:808", "64:ff9b:1::a00:1",
     "fec0::1"],
)
def test_non_public_addresses_are_refused(address):
    """Cloud metadata, loopback, private, shared, link-local and multicast: also when IPv4 hides inside IPv6."""
    import ipaddress

    from aiplane.catalog.fetch import RemotePolicy

    assert not RemotePolicy().address_allowed(ipaddress.ip_address(address))
    assert RemotePolicy(allowed_networks=(ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0"))).address_allowed(ipaddress.ip_address(address))


def test_public_addresses_pass():
    import ipaddress

    from aiplane.catalog.fetch import RemotePolicy

    assert RemotePolicy().address_allowed(ipaddress.ip_address("93.184.216.34"))
    assert RemotePolicy().address_allowed(ipaddress.ip_address("2606:2800:220:1:248:1893:25c8:1946"))


def test_odd_shapes_are_reported_per_document(tmp_path):
    odd = (
        "apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata: {name: odd2, namespace: 5, tags: 7}\n---\n"
        "apiVersion: backstage.io/v1alpha1\nkind: Group\nmetadata: {name: g}\nspec: {type: team, children: [1, {a: b}]}\n---\n"
        "apiVersion: 5\nkind: {x: 1}\nmetadata: []\n---\n"
        "apiVersion: backstage.io/v1alpha1\nkind: Location\nmetadata: {name: l}\nspec: {targets: [ftp://user:pw@host/x?token=abc]}\n---\n"
        + COMPONENT.format(name="fine")
    )
    result = load_all([str(write(tmp_path, {"odd.yaml": odd}) / "odd.yaml")], follow_remote=False)
    assert set(result.entities) == {"location:default/l", "component:default/fine"}
    assert [p.index for p in result.errors] == [0, 1, 2, 3]
    assert "pw" not in messages(result) and "token=abc" not in messages(result)


def test_redirect_rules():
    from urllib.parse import urlsplit

    from aiplane.catalog.fetch import _redirect_problem

    origin = urlsplit("https://git.corp.example/a/catalog-info.yaml")
    assert _redirect_problem(origin, "https://git.corp.example/b.yaml") is None
    assert _redirect_problem(origin, "https://GIT.corp.example./b.yaml") is None
    assert _redirect_problem(origin, "http://git.corp.example/b.yaml") == "redirect from https to http refused"
    assert _redirect_problem(origin, "https://git.corp.example:2375/containers") == "redirect to another port refused"
    assert _redirect_problem(origin, "https://u:p@git.corp.example/b.yaml") == "redirect to a URL with credentials refused"
    assert _redirect_problem(origin, "https://169.254.169.254/latest/meta-data") == "redirect to another host (169.254.169.254) refused"
    assert _redirect_problem(origin, "gopher://git.corp.example/x") == "redirect to a 'gopher:' URL refused"


# ---------------------------------------------------------------------------------------------
# Second round: values that pass parsing but break storage or serving, and bounded work


def test_malformed_urls_are_problems_of_one_document(tmp_path, host):
    """`//[bad` in a remote Location target, a remote $text, or a redirect header: never a traceback."""
    host.files["loc.yaml"] = (
        location("remote-loc", "//[bad/x", "./svc.yaml")
        + "---\n"
        + api("remote-api", "$text", "//[bad/x")
        + "---\n"
        + location("via-redirect", "/redirect/malformed")
    )
    tree = write(tmp_path / "repo", {"catalog-info.yaml": location("root", f"{host.url}/files/loc.yaml") + "---\n" + COMPONENT.format(name="local")})
    result = load_all([str(tree)], settings=loopback(host.server.port))
    assert {"component:default/local", "component:default/remote-svc", "api:default/remote-api", "location:default/via-redirect"} <= set(result.entities)
    text = messages(result)
    assert "target (malformed URL) is not a valid URL" in text
    assert "spec.definition: $text (malformed URL): not a valid URL" in text
    assert "redirect to a malformed URL" in text


def test_a_redirect_target_must_pass_the_allowlist_on_any_scheme(tmp_path, host):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)
    listener.setblocking(False)
    other = listener.getsockname()[1]
    try:
        tree = write(tmp_path / "repo", {"catalog-info.yaml": location("root", f"{host.url}/redirect/to-port/{other}")})
        result = load_all([str(tree)], settings=loopback(host.server.port))
        assert f"host 127.0.0.1:{other} is not in catalog_loader.allowed_hosts" in messages(result)
        with pytest.raises(BlockingIOError):
            listener.accept()  # nothing ever connected to the unlisted port
    finally:
        listener.close()


def test_values_that_are_not_json_data_are_refused_at_ingest(tmp_path):
    """Non-string keys, huge integers, NaN/inf, non-string descriptions, a name that is not UTF-8:
    each is one rejected document (or skipped file); the rest is stored and served, never a traceback."""
    bad = {
        "int-key": "  extra: {1: x}\n",
        "binary-key": "  extra: {? !!binary aGVsbG8= : x}\n",
        "set-value": "  extra: !!set {a, b}\n",
        "hex-int": "  n: 0x" + "f" * 5000 + "\n",
        "octal-int": "  n: 0" + "7" * 5000 + "\n",
        "nan": "  score: .nan\n",
        "inf": "  score: -.inf\n",
        "date-value": "  d: !!timestamp 2020-01-01\n",
        "surrogate": '  s: "\\udcff"\n',
    }
    files = {f"{name}.yaml": COMPONENT.format(name=name) + extra for name, extra in bad.items()}
    files["desc.yaml"] = COMPONENT.format(name="desc").replace("  name: desc\n", "  name: desc\n  description: {a: 1}\n")
    files["title.yaml"] = COMPONENT.format(name="title").replace("  name: title\n", "  name: title\n  title: 5\n")
    # YAML 1.2, as Backstage reads it: a date-looking key or a base-60 number is text, and kept.
    files["datekey.yaml"] = COMPONENT.format(name="datekey") + "  extra: {2020-01-01: x, t: 1:30:00}\n"
    files["good.yaml"] = COMPONENT.format(name="good")
    tree = write(tmp_path / "repo", files)
    (tree / os.fsdecode(b"\xff-bad.yaml")).write_text(COMPONENT.format(name="badname"))
    result = load_all([str(tree)], follow_remote=False)
    assert set(result.entities) == {"component:default/good", "component:default/datekey"}
    assert result.entities["component:default/datekey"][0]["spec"]["extra"] == {"2020-01-01": "x", "t": "1:30:00"}
    text = messages(result)
    assert "\\udcff-bad.yaml: error: file name is not valid UTF-8" in text
    assert len(result.errors) == len(bad) + 3

    env = clean_env(AIPLANE_DATA_DIR=str(tmp_path / "data"))
    for command in ("ingest", "validate"):
        run = subprocess.run([AIPLANE, "catalog", command, str(tree), "--no-remote"], env=env, capture_output=True, text=True, timeout=120)
        assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr[-2000:]
    assert set(_rows(tmp_path / "data")) == {"component:default/good", "component:default/datekey"}


def test_yaml_construction_is_bounded(tmp_path):
    from aiplane.catalog.yamlsafe import iter_documents

    started = time.monotonic()
    [(_, sexagesimal)] = iter_documents("a: 1" + ":59" * 320_000 + "\n")  # 960 KB: a minute in YAML 1.1
    assert isinstance(sexagesimal["a"], str)
    [(_, explicit)] = iter_documents("a: !!int 1" + ":59" * 320_000 + "\n")
    assert "base-60" in explicit.message
    [(_, merged)] = iter_documents("a: {" + ", ".join(["<<: {}"] * 100_000) + "}\n")
    assert "merge keys" in merged.message
    [(_, listed)] = iter_documents("a: {<<: [" + ", ".join(["{}"] * 100_000) + "]}\n")
    assert "mappings merged" in listed.message
    [(_, ordinary)] = iter_documents("base: &b {x: 1}\na: {<<: *b, y: 2}\n")
    assert ordinary["a"] == {"x": 1, "y": 2}
    assert time.monotonic() - started < 20


def test_placeholders_shared_through_aliases_count_once_per_use(tmp_path):
    big = "x" * (512 * 1024)
    doc = COMPONENT.format(name="mult") + "  a: &x [{$text: ./big.txt}]\n  b: [" + ", ".join(["*x"] * 40) + "]\n"
    tree = write(tmp_path / "repo", {"big.txt": big, "mult.yaml": doc, "ok.yaml": COMPONENT.format(name="ok") + "  a: &y [{$text: ./big.txt}]\n  b: [*y]\n"})
    result = load_all([str(tree)], follow_remote=False)
    assert set(result.entities) == {"component:default/ok"}
    assert "after placeholders: the entity is larger than 8388608 characters" in messages(result)
    assert len(dump(result)) < 2 * len(big) + 10_000


def test_a_directory_named_many_times_is_walked_once(tmp_path, monkeypatch):
    from aiplane.catalog.confine import Tree

    files = {f"sub/f{i}.yaml": COMPONENT.format(name=f"f{i}") for i in range(200)}
    files["catalog-info.yaml"] = location("loc", *(["./sub", "./sub/", " ./sub", "./sub/../sub"] * 250))
    tree = write(tmp_path / "repo", files)
    walks: list[str] = []
    real = Tree.walk

    def counted(self, relative, limit):
        walks.append(relative)
        return real(self, relative, limit)

    monkeypatch.setattr(Tree, "walk", counted)
    result = load_all([str(tree / "catalog-info.yaml")], follow_remote=False)
    assert len(result.entities) == 201 and not result.errors
    assert walks == ["sub"]

    # Targets that lead nowhere still cost work: a run follows at most 4 x max_files of them.
    many = write(tmp_path / "many", {"loc.yaml": location("many", *(f"./missing-{i}.yaml" for i in range(100)))})
    capped = load_all([str(many / "loc.yaml")], follow_remote=False, settings=CatalogLoaderSettings(max_files=10))
    assert "more than 40 Location targets in one run" in messages(capped)
    assert sum("does not exist" in p.message for p in capped.problems) == 40


def test_names_and_kinds_match_whole_strings(tmp_path):
    evil = (
        'apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata: {name: "payments\\n"}\nspec: {type: service, lifecycle: production, owner: x}\n---\n'
        'apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata: {name: p, namespace: "default\\n"}\nspec: {type: service, lifecycle: production, owner: x}\n---\n'
        'apiVersion: backstage.io/v1alpha1\nkind: "Component\\n"\nmetadata: {name: payments}\nspec: {type: service, lifecycle: production, owner: x}\n---\n'
        'apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata: {name: q, tags: ["a\\n"], labels: {"k\\n": v}}\nspec: {type: service, lifecycle: production, owner: x}\n'
    )
    tree = write(tmp_path / "repo", {"a.yaml": COMPONENT.format(name="payments"), "b.yaml": evil})
    result = load_all([str(tree)], follow_remote=False)
    assert set(result.entities) == {"component:default/payments"}
    assert [p.index for p in result.errors] == [0, 1, 2, 3]


def test_references_with_control_characters_cannot_forge_warnings(tmp_path):
    owner = "group:default/x\\u001b[31mRED\\nerror: /etc/shadow[0]: forged\\u202e"
    tree = write(tmp_path / "repo", {"c.yaml": COMPONENT.format(name="termx").replace("owner: team-a", f'owner: "{owner}"'), "ok.yaml": COMPONENT.format(name="ok")})
    env = clean_env(AIPLANE_DATA_DIR=str(tmp_path / "data"))
    run = subprocess.run([AIPLANE, "catalog", "validate", str(tree), "--no-remote"], env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert "\x1b" not in run.stdout + run.stderr and "\u202e" not in run.stdout + run.stderr
    assert "\nerror: /etc/shadow" not in run.stderr and "control or bidi characters" in run.stderr


def test_api_definitions_are_text_and_placeholder_keys_are_parsed_keys(tmp_path):
    as_mapping = api("dictdef", "openapi", '"3.0.0"')
    escaped = COMPONENT.format(name="esc") + '  x: {"\\x24text": ./inner.txt}\n'
    tree = write(tmp_path / "repo", {"inner.txt": "inner", "a.yaml": as_mapping, "b.yaml": escaped})
    result = load_all([str(tree)], follow_remote=False)
    assert "spec.definition must be text" in messages(result)
    # The escaped spelling is the key `$text` once parsed, as Backstage reads it: resolved
    # whether or not a literal `$text` appears elsewhere in the file.
    assert result.entities["component:default/esc"][0]["spec"]["x"] == "inner"


def test_get_entity_answers_are_capped_whole(tmp_path):
    """A valid entity far over 32 KiB outside spec.definition: the MCP answer is still capped."""
    from aiplane.catalog.tools import MAX_RESULT_BYTES

    annotations = "".join(f"    example.com/a{i}: {'v' * 1000}\n" for i in range(100))
    big = COMPONENT.format(name="big").replace("  name: big\n", "  name: big\n  annotations:\n" + annotations)
    tree = write(tmp_path / "repo", {"big.yaml": big})
    env = clean_env(AIPLANE_DATA_DIR=str(tmp_path / "data"))
    run = subprocess.run([AIPLANE, "catalog", "ingest", str(tree), "--no-remote"], env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    answer = json.loads(_mcp_get(env, "component:default/big"))
    [content] = answer["content"]
    assert len(content["text"].encode()) <= MAX_RESULT_BYTES
    served = json.loads(content["text"])
    assert served["metadata"]["name"] == "big" and "truncated" in served
