"""The catalog REST API as Backstage clients see it: the real npm `@backstage/catalog-client` drives every
read call against a running gateway, and `@backstage/catalog-model` validates every served entity."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import AIPLANE, GatewayProcess, gateway_env

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT.parent / "shared" / "fixtures" / "backstage-examples"
DRIVER = ROOT / "tests" / "e2e" / "backstage_catalog_client.mjs"
CLIENT = ROOT / "tests" / "e2e" / "node_modules" / "@backstage" / "catalog-client"
NODE = shutil.which("node")
if not FIXTURES.is_dir():
    pytest.skip("../shared/fixtures/backstage-examples is not beside the repository", allow_module_level=True)


@pytest.fixture(scope="module")
def catalog_gateway(tmp_path_factory, upstream):
    server, _ = upstream
    data = tmp_path_factory.mktemp("backstage-api")
    gateway = GatewayProcess(data, gateway_env(data, server.url))
    result = subprocess.run([AIPLANE, "catalog", "ingest", str(FIXTURES), "--no-remote"], env=gateway.env,
                            capture_output=True, text=True, timeout=120)
    assert "ingested" in result.stdout, result.stderr
    gateway.start()
    yield gateway
    gateway.stop()


@pytest.fixture(scope="module")
def client_run(catalog_gateway) -> dict:
    """One run of the driver: every catalog-client read call, and the validators."""
    if NODE is None or not CLIENT.is_dir():
        pytest.skip("node or tests/e2e/node_modules/@backstage/catalog-client is missing (npm install --prefix tests/e2e)")
    gw = catalog_gateway
    env = {**gw.env, "CATALOG_URL": gw.url + "/api/catalog", "TOKEN": gw.token(), "ADMIN_TOKEN": gw.token("root@example.com", "--admin")}
    result = subprocess.run([NODE, str(DRIVER)], env=env, capture_output=True, text=True, timeout=120, cwd=DRIVER.parent)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


def test_get_entities_filters_orders_and_pages(client_run):
    services = client_run["getEntities"]
    assert len(services) == 18 and all(set(e) == {"kind", "metadata"} for e in services)
    listed = [e["metadata"]["name"] for e in services]
    assert listed == sorted(listed, reverse=True)
    paged = client_run["getEntitiesPaged"]
    assert len(paged["first"]) == 8 and 'rel="next"' in paged["link"]
    assert paged["next"] == paged["offset"] and len(paged["next"]) == 8
    assert not set(paged["first"]) & set(paged["next"])
    assert len(client_run["all"]) == 92


def test_entities_are_served_as_backstage_serves_them(client_run):
    uids = set()
    for entity in client_run["all"]:
        metadata = entity["metadata"]
        assert metadata["namespace"] and metadata["uid"] and metadata["etag"]
        assert metadata["annotations"]["backstage.io/managed-by-location"].startswith("file:")
        assert isinstance(entity["relations"], list)
        uids.add(metadata["uid"])
    assert len(uids) == 92
    assert {e["metadata"]["namespace"] for e in client_run["all"]} == {"default", "alternative", "development"}  # default filled in


def test_by_refs_honours_fields_filter_and_query(client_run):
    items = client_run["getEntitiesByRefs"]
    assert items[0] == {"kind": "Component", "metadata": {"name": "artist-lookup"}} and items[2] is None
    assert client_run["getEntitiesByRefsFiltered"] == [None, "wayback-search", None]
    assert client_run["getEntitiesByRefsQuery"] == ["artist-lookup", None, None]


def test_query_entities_get_and_predicate(client_run):
    by_filter = client_run["queryEntities"]
    assert by_filter["totalItems"] == 23 and len(by_filter["names"]) == 23 == len(set(by_filter["names"]))
    assert by_filter["names"] == sorted(by_filter["names"])
    assert client_run["queryEntitiesFullText"]["totalItems"] >= 3
    predicate = client_run["queryEntitiesPredicate"]
    assert predicate["totalItems"] == len(predicate["names"]) > 3  # paged through POST cursors
    assert predicate["names"] == sorted(predicate["names"], reverse=True)
    assert "artist-lookup" not in predicate["names"]  # experimental
    assert "artist-lookup" in client_run["queryEntitiesFilterAsPredicate"]["names"]  # tag java, kind component
    bad = client_run["queryEntitiesBadPredicate"]
    assert bad["statusCode"] == 400 and bad["errorName"] == "InputError"
    assert len(client_run["streamEntities"]) == 17


def test_single_entities_uid_and_ancestry(client_run):
    artist = client_run["getEntityByRef"]
    assert artist["metadata"]["name"] == "artist-lookup" and client_run["getEntityByRefMissing"] is None
    assert client_run["getEntityByName"] == artist["metadata"]["uid"]
    assert client_run["getEntityByUid"] == {"status": 200, "name": "artist-lookup"}
    missing = client_run["getEntityByUidMissing"]
    assert missing["status"] == 404 and missing["body"]["error"]["name"] == "NotFoundError"
    assert missing["body"]["response"]["statusCode"] == 404 and missing["body"]["request"]["method"] == "GET"
    ancestry = client_run["getEntityAncestors"]
    assert ancestry["rootEntityRef"] == "component:default/artist-lookup"
    assert ancestry["items"] == [
        {"ref": "component:default/artist-lookup", "parents": ["location:default/example-components"]},
        {"ref": "location:default/example-components", "parents": ["location:default/example-all"]},
        {"ref": "location:default/example-all", "parents": []},
    ]


def test_facets_get_and_post(client_run):
    kinds = {f["value"]: f["count"] for f in client_run["getEntityFacets"]["kind"]}
    assert kinds == {"Component": 23, "API": 20}
    types = {f["value"] for f in client_run["getEntityFacetsQuery"]["spec.type"]}
    assert types <= {"openapi", "grpc"} and "openapi" in types


def test_locations(client_run):
    locations = client_run["getLocations"]
    assert locations and all(set(loc) == {"id", "type", "target"} for loc in locations)
    assert client_run["queryLocations"]["totalItems"] == len(locations) and len(client_run["queryLocations"]["items"]) == 5
    assert client_run["streamLocations"] == len(locations)
    assert client_run["getLocationById"] == locations[0] and client_run["getLocationByIdMissing"] is None
    origin = client_run["getLocationByEntity"]
    assert origin["type"] == "file" and origin["target"].endswith("/all.yaml")
    assert client_run["getLocationByRef"] == locations[0]


def test_validate_refresh_and_errors(client_run):
    assert client_run["validateEntity"] == {"valid": True}
    invalid = client_run["validateEntityInvalid"]
    assert invalid["valid"] is False and "metadata.name" in invalid["errors"][0]["message"]
    assert client_run["refreshAsUser"]["statusCode"] == 403 and client_run["refreshAsUser"]["errorName"] == "NotAllowedError"
    assert client_run["refreshAsAdmin"] is None
    assert client_run["refreshMissing"]["statusCode"] == 404
    # catalog-client parses our 401 as Backstage's own error.
    assert client_run["unauthenticated"]["statusCode"] == 401 and client_run["unauthenticated"]["errorName"] == "AuthenticationError"


def test_catalog_model_validates_every_served_entity(client_run):
    results = client_run["validation"]
    assert len(results) == 92
    # Every entity passes Backstage's own policies and kind validators, including the APIs whose
    # definition is a `$text` placeholder: the loader serves those as strings (issue 20, loader part).
    assert not [r for r in results if not r["ok"]], [r for r in results if not r["ok"]]
    unchecked = {r["ref"] for r in results if not r["kindChecked"]}
    # Environment is not a Backstage kind; catalog-model 1.10.3 has no schema for `ai-model-server` APIs.
    assert unchecked == {"environment:default/dev", "environment:default/prod", "api:default/local-inference-server"}


def test_unknown_routes_and_methods_answer_in_backstage_envelope(catalog_gateway):
    gw = catalog_gateway
    headers = {"authorization": f"Bearer {gw.token()}"}
    missing = httpx.get(gw.url + "/api/catalog/no-such-thing", headers=headers)
    assert missing.status_code == 404 and missing.json()["error"]["name"] == "NotFoundError"
    wrong = httpx.delete(gw.url + "/api/catalog/entities/by-uid/x", headers=headers)
    assert wrong.status_code == 405 and wrong.json()["error"]["name"] == "MethodNotAllowedError"
    anonymous = httpx.get(gw.url + "/api/catalog/entities")
    assert anonymous.status_code == 401 and anonymous.json()["error"]["name"] == "AuthenticationError"


@pytest.mark.parametrize("body,fragment", [
    ({"query": {"$all": [{"kind": "a"}] * 600}}, "larger than"),
    ({"query": {"kind": {"$contains": "x"}}}, "invalid predicate value"),
    ({"query": {"$any": {"kind": "a"}}}, "$any takes a list"),
    ({"query": [1]}, "query must be an object"),
    ({"cursor": "!!!"}, "cursor is not valid"),
    ({"limit": -1}, "non-negative"),
])
def test_bad_predicate_requests_are_input_errors(catalog_gateway, body, fragment):
    gw = catalog_gateway
    response = httpx.post(gw.url + "/api/catalog/entities/by-query", json=body, headers={"authorization": f"Bearer {gw.token()}"})
    assert response.status_code == 400 and response.json()["error"]["name"] == "InputError"
    assert fragment in response.json()["error"]["message"]


def test_deep_predicate_is_refused_not_a_crash(catalog_gateway):
    gw = catalog_gateway
    text = '{"$not":' * 5000 + '{"kind":"component"}' + "}" * 5000
    response = httpx.post(gw.url + "/api/catalog/entities/by-query", content='{"query": ' + text + "}",
                          headers={"authorization": f"Bearer {gw.token()}", "content-type": "application/json"})
    assert response.status_code == 400 and response.json()["error"]["name"] == "InputError"


def test_uid_and_etag_are_stable_and_etag_follows_content(catalog_gateway, tmp_path):
    gw = catalog_gateway
    headers = {"authorization": f"Bearer {gw.token()}"}
    url = gw.url + "/api/catalog/entities/by-name/component/default/etag-probe"
    descriptor = tmp_path / "catalog-info.yaml"
    text = ("apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata:\n  name: etag-probe\n  description: {}\n"
            "spec:\n  type: service\n  lifecycle: production\n  owner: team-a\n")

    def served(description: str, previous: dict | None = None) -> dict:
        descriptor.write_text(text.format(description))
        subprocess.run([AIPLANE, "catalog", "ingest", str(descriptor)], env=gw.env, capture_output=True, timeout=120, check=True)
        deadline = time.monotonic() + 15  # the gateway checks the database every 5 s
        while True:
            response = httpx.get(url, headers=headers)
            if response.status_code == 200 and response.json()["metadata"].get("description") == description:
                return response.json()["metadata"]
            assert time.monotonic() < deadline, response.text
            time.sleep(0.2)

    first = served("one")
    again = served("one")
    changed = served("two")
    assert first["uid"] == again["uid"] == changed["uid"]
    assert first["etag"] == again["etag"] != changed["etag"]
