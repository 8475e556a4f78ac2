"""GET /openapi.json: an OpenAPI 3 document generated from the registered routes, covering every
path and method of the Go NanoCMD's documented API (issue 4 item 5)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.local.events import proxy_event
from infra.local.lambda_runtime import LambdaContext
from nanocmd_core.api.app import create_api
from nanocmd_core.config import Settings

OPENAPI = Path(__file__).resolve().parents[2].parent / "shared" / "testdata" / "nanocmd" / "openapi.yaml"
# api.md §2, the route table, with /v1/inventory as documented
ROUTE_TABLE = {
    ("/version", "get"), ("/webhook", "post"), ("/v1/workflow/{name}/start", "post"),
    ("/v1/event/{name}", "get"), ("/v1/event/{name}", "put"), ("/v1/inventory", "get"),
    ("/v1/profile/{name}", "put"), ("/v1/profile/{name}", "get"), ("/v1/profile/{name}", "delete"),
    ("/v1/profiles", "get"), ("/v1/fvenable/profiletemplate", "get"), ("/v1/cmdplan/{name}", "get"),
    ("/v1/cmdplan/{name}", "put"),
}  # fmt: skip


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    resolver = create_api(Settings(api_key_value="k", version="9.9.9"), lambda: None)
    reply = resolver.resolve(proxy_event("GET", "/openapi.json"), LambdaContext("ApiFunction"))
    assert reply["statusCode"] == 200  # no auth needed for the document
    import json

    doc: dict[str, Any] = json.loads(reply["body"])
    return doc


def operations(doc: dict[str, Any]) -> set[tuple[str, str]]:
    return {(path, method) for path, ops in doc["paths"].items() for method in ops}


def test_the_document_covers_the_route_table(document: dict[str, Any]) -> None:
    assert document["openapi"].startswith("3.") and document["info"]["version"] == "9.9.9"
    assert operations(document) >= ROUTE_TABLE
    start = document["paths"]["/v1/workflow/{name}/start"]["post"]
    assert {(p["name"], p["in"], p["required"]) for p in start["parameters"]} == {
        ("name", "path", True),
        ("id", "query", False),
        ("context", "query", False),
    }
    assert start["security"] == [{"basicAuth": []}]
    assert "requestBody" in document["paths"]["/v1/profile/{name}"]["put"]


def test_every_documented_operation_of_the_go_nanocmd_exists(document: dict[str, Any]) -> None:
    if not OPENAPI.is_file():
        pytest.skip("shared testdata not present")
    go = yaml.safe_load(OPENAPI.read_text())
    documented = {
        (path, method)
        for path, ops in go["paths"].items()
        for method in ops
        if method in {"get", "put", "post", "delete", "patch", "head"}
    }
    assert documented and documented <= operations(document)
