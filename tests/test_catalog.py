"""The service catalog: Backstage's own example catalog in, REST and graph answers out."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import pytest

from aiplane.catalog import tools
from aiplane.catalog.index import CatalogIndex, parse_filter
from aiplane.catalog.loader import load_all
from tests.conftest import AIPLANE, clean_env

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT.parent / "shared" / "fixtures" / "backstage-examples"
if not FIXTURES.is_dir():
    pytest.skip("../shared/fixtures/backstage-examples is not beside the repository", allow_module_level=True)

ENTITIES = 92  # 93 documents with a kind, less the intentionally invalid component
RELATIONS = 197
DANGLING = 21


@pytest.fixture(scope="module")
def index() -> CatalogIndex:
    result = load_all([str(FIXTURES)], follow_remote=False)
    return CatalogIndex(entity for entity, _ in result.entities.values())


def _cli(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([AIPLANE, "catalog", *args], env=env, capture_output=True, text=True, timeout=120)


def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


COMPONENT = """apiVersion: backstage.io/v1alpha1
kind: Component
metadata:
  name: {name}
spec:
  type: service
  lifecycle: production
  owner: team-a
"""


def test_ingest_backstage_examples(tmp_path):
    env = clean_env(AIPLANE_DATA_DIR=str(tmp_path))
    result = _cli(env, "ingest", str(FIXTURES), "--no-remote")
    assert result.returncode == 1  # one document was rejected; the rest are stored
    assert f"ingested {ENTITIES} entities (1 rejected)" in result.stdout
    assert f"{RELATIONS} relations, {DANGLING} dangling references" in result.stdout
    assert (
        "components/invalid-component.yaml[0]: error: metadata.name 'invalid component' is not valid: "
        "1-63 characters of [a-zA-Z0-9-_.], starting and ending alphanumeric (rule: name)"
    ) in result.stderr
    assert "remote location not followed" in result.stderr
    assert "Traceback" not in result.stderr


def test_counts_by_kind_and_relation(index):
    assert len(index.entities) == ENTITIES
    assert len(index.relations) == RELATIONS
    kinds: dict[str, int] = {}
    for key in index.entities:
        kinds[key.split(":")[0]] = kinds.get(key.split(":")[0], 0) + 1
    assert kinds == {"component": 23, "api": 20, "user": 17, "location": 10, "group": 9, "airesource": 4, "domain": 3, "system": 3, "environment": 2, "resource": 1}
    # Every relation whose target exists has its reverse.
    from aiplane.catalog.model import REVERSE

    for source, relation, target in index.relations:
        if target in index.entities and source in index.entities:
            assert (target, REVERSE[relation], source) in index.relations


def test_validate_writes_nothing(tmp_path):
    env = clean_env(AIPLANE_DATA_DIR=str(tmp_path))
    result = _cli(env, "validate", str(FIXTURES / "components"))
    assert result.returncode == 1 and "invalid-component.yaml[0]" in result.stderr
    assert not (tmp_path / "aiplane.db").exists()


def test_bad_documents_are_skipped_and_nothing_stored_is_lost(tmp_path):
    env = clean_env(AIPLANE_DATA_DIR=str(tmp_path))
    first = _write(tmp_path / "first", {"catalog-info.yaml": COMPONENT.format(name="alpha")})
    assert _cli(env, "ingest", str(first)).returncode == 0
    second = _write(
        tmp_path / "second",
        {
            "catalog-info.yaml": COMPONENT.format(name="beta")
            + "---\napiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata:\n  name: gamma\nspec:\n  type: service\n"
            + "---\n" + COMPONENT.format(name="delta")
            + "  dependsOn: ['alpha']\n",
            "broken.yaml": "kind: [unclosed\n",
        },
    )
    result = _cli(env, "ingest", str(second))
    assert result.returncode == 1
    assert "catalog-info.yaml[1]: error: component entities require spec.lifecycle (rule: spec)" in result.stderr
    assert "catalog-info.yaml[2]: error: reference 'alpha' must name a kind" in result.stderr
    assert "broken.yaml: error: invalid YAML at line" in result.stderr
    assert "catalog now holds 2 entities" in result.stdout  # alpha (kept) and beta (new)


def test_locations_are_followed_relative_and_cycles_end(tmp_path):
    root = _write(
        tmp_path,
        {
            "root.yaml": "apiVersion: backstage.io/v1alpha1\nkind: Location\nmetadata:\n  name: root\nspec:\n  targets: [./teams/loc.yaml, ./missing.yaml]\n",
            "teams/loc.yaml": "apiVersion: backstage.io/v1alpha1\nkind: Location\nmetadata:\n  name: teams\nspec:\n  targets: [../root.yaml, ./svc.yaml]\n",
            "teams/svc.yaml": COMPONENT.format(name="svc"),
        },
    )
    result = load_all([str(root / "root.yaml")], follow_remote=False)
    assert set(result.entities) == {"location:default/root", "location:default/teams", "component:default/svc"}
    assert any("missing.yaml does not exist" in str(p) for p in result.problems)


def test_filters_and_graph_answers(index):
    services = index.query([parse_filter("kind=component,spec.type=service")])
    assert len(services) == 18 and all(k.startswith("component:") for k in services)
    either = index.query([parse_filter("kind=system"), parse_filter("kind=domain")])
    assert len(either) == 6
    owned = index.query([parse_filter("relations.ownedby=group:default/team-a")])
    assert "component:default/artist-lookup" in owned
    assert index.query([parse_filter("metadata.tags=java")])  # list values match by membership

    deps = {h.ref: h.depth for h in index.dependencies("component:default/www-artist", 3)}
    assert deps == {"component:default/artist-lookup": 1, "resource:default/artists-db": 2}
    blast = {h.ref: h.depth for h in index.dependents("resource:default/artists-db", 3)}
    assert blast["component:default/artist-lookup"] == 1
    assert blast["component:default/www-artist"] == 2

    owner = tools.who_owns(index, "artist-lookup")
    assert owner["owners"][0]["ref"] == "group:default/team-a"
    assert tools.databases_of(index, "www-artist")["databases"][0]["ref"] == "resource:default/artists-db"
    members = tools.team_members(index, "team-a")
    assert members["members"] and all(m["ref"].startswith("user:") for m in members["members"])
    system = tools.system_map(index, "audio-playback")
    assert system["domain"] == "domain:default/playback" and "component" in system["parts"]
    with pytest.raises(tools.ToolError, match="no entity"):
        tools.get_entity(index, "component:default/nope")


def test_who_owns_a_file_path(tmp_path):
    annotated = COMPONENT.format(name="billing").replace(
        "  name: billing\n",
        "  name: billing\n  annotations:\n    backstage.io/source-location: url:https://github.com/acme/monorepo/tree/main/services/billing/\n",
    )
    other = COMPONENT.format(name="monorepo").replace(
        "  name: monorepo\n",
        "  name: monorepo\n  annotations:\n    github.com/project-slug: acme/monorepo\n",
    )
    src = _write(tmp_path, {"a.yaml": annotated, "b.yaml": other})
    result = load_all([str(src)])
    idx = CatalogIndex(e for e, _ in result.entities.values())
    assert tools.who_owns(idx, "https://github.com/acme/monorepo/blob/main/services/billing/app.py")["entity"]["ref"] == "component:default/billing"
    assert tools.who_owns(idx, "github.com/acme/monorepo/README.md")["entity"]["ref"] == "component:default/monorepo"


@pytest.fixture()
def catalog_gateway(make_gateway):
    gateway = make_gateway("catalog")
    result = _cli(gateway.env, "ingest", str(FIXTURES), "--no-remote")
    assert "ingested" in result.stdout, result.stderr
    return gateway


def test_rest_api_mirrors_backstage(catalog_gateway):
    gw = catalog_gateway
    headers = {"authorization": f"Bearer {gw.token()}"}
    base = gw.url + "/api/catalog"
    assert httpx.get(base + "/entities/by-query").status_code == 401

    def get(path, **params):
        response = httpx.get(base + path, params=params, headers=headers)
        return response.status_code, response.json()

    status, body = get("/entities/by-query", filter="kind=component,spec.type=service", limit="5", fields="kind,metadata.name")
    assert status == 200 and body["totalItems"] == 18 and len(body["items"]) == 5
    assert set(body["items"][0]) == {"kind", "metadata"}
    names = [i["metadata"]["name"] for i in body["items"]]
    cursor = body["pageInfo"]["nextCursor"]
    seen = list(names)
    while cursor:
        status, page = get("/entities/by-query", cursor=cursor)
        seen += [i["metadata"]["name"] for i in page["items"]]
        cursor = page["pageInfo"].get("nextCursor")
    assert len(seen) == 18 == len(set(seen))

    response = httpx.get(base + "/entities/by-query", params=[("filter", "kind=system"), ("filter", "kind=domain")], headers=headers)
    assert response.json()["totalItems"] == 6
    status, body = get("/entities/by-query", filter="relations.ownedby=group:default/team-a", orderField="metadata.name,desc")
    names = [i["metadata"]["name"] for i in body["items"]]
    assert names == sorted(names, reverse=True) and "artist-lookup" in names
    status, body = get("/entities/by-query", fullTextFilterTerm="wayback")
    assert body["totalItems"] >= 3

    status, entity = get("/entities/by-name/component/default/artist-lookup")
    assert status == 200 and {"type": "ownedBy", "targetRef": "group:default/team-a"} in entity["relations"]
    status, missing = get("/entities/by-name/component/default/nope")
    assert status == 404 and missing["error"]["name"] == "NotFoundError"

    refs = httpx.post(base + "/entities/by-refs", json={"entityRefs": ["component:default/artist-lookup", "api:default/nope"]}, headers=headers).json()
    assert refs["items"][0]["metadata"]["name"] == "artist-lookup" and refs["items"][1] is None

    status, facets = get("/entity-facets", facet="kind")
    assert {"value": "Component", "count": 23} in facets["facets"]["kind"]
    status, bad = get("/entities/by-query", filter="=x")
    assert status == 400 and bad["error"]["name"] == "InputError"
    status, bad = get("/entities/by-query", cursor="not-a-cursor")
    assert status == 400


def test_api_definitions_are_served_as_strings(index):
    """Backstage's catalog-model requires spec.definition to be text: placeholders never reach clients."""
    apis = [e for key, e in index.entities.items() if key.startswith("api:")]
    definitions = {e["metadata"]["name"]: e["spec"].get("definition") for e in apis}
    assert all(isinstance(d, str) and d for d in definitions.values() if d is not None)
    assert definitions["petstore-webhook"].startswith("openapi: 3.1.0")  # $text ./petstore-webhook.oas.yaml, read
    # Remote ones are not fetched here (--no-remote): a string says so and where the text lives.
    assert definitions["spotify"].startswith("(definition not loaded: remote fetching is off) https://github.com/")
