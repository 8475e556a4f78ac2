"""The OpenAPI document the route kit builds is valid OpenAPI 3.0.3, with pydantic v2's JSON Schema
2020-12 turned into 3.0's dialect (a 3.0 validator rejects null types, ``const`` and ``$defs``)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, Literal

from openapi_spec_validator import OpenAPIV30SpecValidator
from pydantic import BaseModel, Field

from infra.local.events import proxy_event
from infra.local.lambda_runtime import LambdaContext
from nanocmd_core.api.app import create_api
from nanocmd_core.api.kit import RouteSpec, openapi30_schema, openapi_document
from nanocmd_core.config import Settings


class Inner(BaseModel):
    """An inner model."""

    code: int | None = None


class Outer(BaseModel):
    title: str
    """A property called title must survive the dropping of pydantic's titles."""
    kind: Literal["only"] = "only"
    inner: Inner | None = None
    inners: list[Inner] | None = None
    required_inner: Inner = Field(description="a $ref with a sibling")
    count: int = Field(default=1, gt=0)
    either: int | str | None = None


def errors(doc: dict[str, Any]) -> list[str]:
    return [str(error).splitlines()[0] for error in OpenAPIV30SpecValidator(doc).iter_errors()]


def walk(node: Any) -> Iterator[Any]:
    yield node
    children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else []
    for child in children:
        yield from walk(child)


def test_the_served_document_is_valid_openapi_3_0() -> None:
    resolver: Any = create_api(Settings(api_key_value="k", version="1.0.0"), lambda: None)
    reply = resolver.resolve(proxy_event("GET", "/openapi.json"), LambdaContext("ApiFunction"))
    doc = json.loads(reply["body"])
    assert doc["openapi"] == "3.0.3"
    assert errors(doc) == []
    refs = {n["$ref"] for n in walk(doc) if isinstance(n, dict) and "$ref" in n}
    assert {ref.rsplit("/", 1)[-1] for ref in refs} <= set(doc["components"]["schemas"])


def test_pydantic_schemas_become_openapi_3_0() -> None:
    spec = RouteSpec("/x/<name>", ["GET", "HEAD"], True, {}, None, "", response=Outer)
    doc = openapi_document([spec], "1")
    assert errors(doc) == []
    schemas = doc["components"]["schemas"]
    assert set(schemas) == {"JSONError", "Outer", "Inner"}
    for node in walk(schemas):
        if isinstance(node, dict):
            assert "$defs" not in node and "const" not in node and node.get("type") != "null"
            assert "$ref" not in node or len(node) == 1  # 3.0 ignores a $ref's siblings
    outer = schemas["Outer"]["properties"]
    assert "title" in outer and "title" not in outer["title"]
    assert outer["kind"]["enum"] == ["only"]
    assert outer["inner"] == {
        "allOf": [{"$ref": "#/components/schemas/Inner"}],
        "nullable": True,
        "default": None,
    }
    assert outer["inners"]["type"] == "array" and outer["inners"]["nullable"] is True
    assert outer["required_inner"]["allOf"] == [{"$ref": "#/components/schemas/Inner"}]
    assert outer["count"]["minimum"] == 0 and outer["count"]["exclusiveMinimum"] is True
    assert outer["either"]["nullable"] is True and len(outer["either"]["anyOf"]) == 2
    assert schemas["Inner"]["properties"]["code"] == {"type": "integer", "nullable": True, "default": None}
    assert schemas["Inner"]["description"] == "An inner model."

    get = doc["paths"]["/x/{name}"]["get"]["responses"]
    assert get["200"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Outer"}
    assert "204" not in get  # a route with an answer model answers 200
    assert "content" not in doc["paths"]["/x/{name}"]["head"]["responses"]["200"]


def test_a_raw_schema_may_name_models_and_list_further_statuses() -> None:
    spec = RouteSpec(
        "/map",
        ["POST"],
        True,
        {"id": True},
        None,
        "",
        response={"type": "object", "additionalProperties": Inner},
        statuses={202: "accepted", 409: "busy"},
    )
    doc = openapi_document([spec], "1")
    assert errors(doc) == []
    responses = doc["paths"]["/map"]["post"]["responses"]
    assert responses["200"]["content"]["application/json"]["schema"] == {
        "type": "object",
        "additionalProperties": {"$ref": "#/components/schemas/Inner"},
    }
    assert "Inner" in doc["components"]["schemas"]
    assert responses["202"] == {"description": "accepted"}
    assert responses["409"]["content"]["application/json"]["schema"]["$ref"].endswith("/JSONError")


def test_routes_without_an_answer_model_keep_their_responses() -> None:
    doc = openapi_document([RouteSpec("/v", ["GET"], False, {}, None, "version")], "1")
    assert set(doc["paths"]["/v"]["get"]["responses"]) == {"200", "204", "400", "404"}
    assert set(doc["components"]["schemas"]) == {"JSONError"}


def test_a_null_type_list_becomes_nullable() -> None:
    assert openapi30_schema({"type": ["string", "null"], "title": "T"}) == {
        "nullable": True,
        "type": "string",
    }
    assert openapi30_schema({"anyOf": [{"type": "null"}]}) == {"nullable": True}
