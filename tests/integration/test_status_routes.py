"""Routing and input checks of the status, instance, history and cancel routes, against a canned
engine: what reaches the engine, the 400/401/404s, 405/OPTIONS beside the start route, and the
answers' schemas in /openapi.json. The engine's behaviour behind them is tested against the real one."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
from openapi_spec_validator import OpenAPIV30SpecValidator

from infra.local.events import basic_auth, proxy_event, reply_headers
from infra.local.lambda_runtime import LambdaContext
from nanocmd_core.api.app import create_api
from nanocmd_core.config import Settings
from nanocmd_core.engine.errors import NoSuchWorkflowError
from nanocmd_core.status.errors import InvalidPageToken
from nanocmd_core.status.views import (
    CancelResult,
    DeviceStatus,
    InstancePage,
    InstanceStatus,
    InstanceSummary,
    RunningWorkflow,
)

AUTH = basic_auth("nanocmd", "k")
WORKFLOW = "io.micromdm.wf.inventory.v1"
SUMMARY = {"workflow": WORKFLOW, "started_at": "2024-01-01T00:00:00Z", "started_by": "api"}


@dataclass
class CannedEngine:
    """The five status/cancel methods with canned answers; ``calls`` records what they got."""

    calls: list[tuple[str, Any]] = field(default_factory=list)

    def device_status(self, ids: list[str]) -> dict[str, DeviceStatus]:
        self.calls.append(("device_status", ids))
        running = [RunningWorkflow(workflow=WORKFLOW, instance_id="i1")]
        return {i: DeviceStatus(running=running) for i in ids}

    def instance_status(
        self, instance_id: str, *, with_ids: bool = False, limit: int = 100, next_token: str | None = None
    ) -> InstanceStatus | None:
        self.calls.append(("instance_status", (instance_id, with_ids, limit, next_token)))
        if next_token == "bad":
            raise InvalidPageToken("invalid next token")
        if instance_id == "gone":
            return None
        return InstanceStatus(instance_id=instance_id, **SUMMARY, requested=2, ids=[] if with_ids else None)

    def instance_history(
        self, workflow: str | None, *, limit: int = 50, next_token: str | None = None
    ) -> InstancePage:
        self.calls.append(("instance_history", (workflow, limit, next_token)))
        if next_token == "bad":
            raise InvalidPageToken("invalid next token")
        return InstancePage(instances=[InstanceSummary(instance_id="i1", **SUMMARY)], next="n2")

    def cancel_instance(self, instance_id: str, ids: list[str] | None = None) -> CancelResult | None:
        self.calls.append(("cancel_instance", (instance_id, ids)))
        return None if instance_id == "gone" else CancelResult(cancelled_ids=ids or ["A"])

    def cancel_workflow(self, name: str, ids: list[str]) -> CancelResult:
        self.calls.append(("cancel_workflow", (name, ids)))
        if name != WORKFLOW:
            raise NoSuchWorkflowError(name)
        return CancelResult(cancelled_ids=ids[:1], not_running_ids=ids[1:])

    def start_workflow(self, name: str, ids: list[str], context: bytes) -> Any:
        self.calls.append(("start_workflow", (name, ids)))
        raise NoSuchWorkflowError(name)


@dataclass
class Client:
    engine: CannedEngine
    resolver: Any

    def call(
        self, method: str, path: str, query: dict[str, list[str]] | None = None, auth: str | None = AUTH
    ) -> tuple[int, dict[str, str], Any]:
        reply = self.resolver.resolve(proxy_event(method, path, query, auth), LambdaContext("ApiFunction"))
        body = reply.get("body") or ""
        return reply["statusCode"], reply_headers(reply), json.loads(body) if body else None


@pytest.fixture
def api() -> Client:
    engine = CannedEngine()
    services = SimpleNamespace(engine=engine)
    return Client(engine, create_api(Settings(api_key_value="k", version="1.0.0"), lambda: services))


ROUTES = [
    ("GET", "/v1/status", {"id": ["A"]}),
    ("GET", "/v1/instance/i1", None),
    ("GET", "/v1/instances", None),
    ("DELETE", "/v1/instance/i1", None),
    ("POST", f"/v1/workflow/{WORKFLOW}/cancel", {"id": ["A"]}),
]


@pytest.mark.parametrize(("method", "path", "query"), ROUTES)
def test_every_route_needs_basic_auth(api: Client, method: str, path: str, query: Any) -> None:
    status, headers, body = api.call(method, path, query, auth=basic_auth("nanocmd", "wrong"))
    assert (status, body) == (401, {"error": "unauthorized"})
    assert headers["www-authenticate"] == 'Basic realm="nanocmd"'
    assert api.call(method, path, query, auth=None)[0] == 401
    assert api.engine.calls == []
    assert api.call(method, path, query)[0] == 200


def test_device_status_answers_a_map_of_the_distinct_ids(api: Client) -> None:
    status, _, body = api.call("GET", "/v1/status", {"id": ["A", "B", "A"]})
    assert status == 200 and set(body) == {"A", "B"}
    assert body["A"] == {"steps": [], "running": [{"workflow": WORKFLOW, "instance_id": "i1", "since": None}]}
    assert api.engine.calls == [("device_status", ["A", "B"])]
    assert api.call("HEAD", "/v1/status", {"id": ["A"]})[0] == 200


@pytest.mark.parametrize(
    ("query", "message"),
    [
        (None, "no IDs provided"),
        ({"id": ["A", ""]}, "empty enrollment id"),
        ({"id": [f"D{n}" for n in range(101)]}, "too many IDs: 101 (at most 100 a request)"),
    ],
)
def test_device_status_refuses_bad_ids(api: Client, query: Any, message: str) -> None:
    assert api.call("GET", "/v1/status", query)[::2] == (400, {"error": message})
    assert api.engine.calls == []


def test_device_status_takes_100_distinct_ids(api: Client) -> None:
    ids = [f"D{n}" for n in range(100)]
    assert api.call("GET", "/v1/status", {"id": [*ids, *ids]})[0] == 200
    assert api.engine.calls == [("device_status", ids)]


def test_instance_status_passes_its_parameters(api: Client) -> None:
    status, _, body = api.call("GET", "/v1/instance/i%2F1")
    assert status == 200 and body["instance_id"] == "i/1" and body["ids"] is None
    assert body["counts"]["started"] == 0 and body["done"] is False
    status, _, body = api.call("GET", "/v1/instance/i1", {"ids": ["true"], "limit": ["1000"], "next": ["t"]})
    assert status == 200 and body["ids"] == []
    assert api.call("GET", "/v1/instance/i1", {"ids": ["0"], "limit": ["1"]})[0] == 200
    assert [args for _, args in api.engine.calls] == [
        ("i/1", False, 100, None),
        ("i1", True, 1000, "t"),
        ("i1", False, 1, None),
    ]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"limit": ["0"]}, "invalid limit: '0' (an integer from 1 to 1000)"),
        ({"limit": ["1001"]}, "invalid limit: '1001' (an integer from 1 to 1000)"),
        ({"limit": ["-1"]}, "invalid limit: '-1' (an integer from 1 to 1000)"),
        ({"limit": ["ten"]}, "invalid limit: 'ten' (an integer from 1 to 1000)"),
        ({"ids": ["yes"]}, "invalid ids: 'yes' (1 or 0)"),
        ({"next": [""]}, "invalid next: empty (the last page has a null next)"),
        ({"next": ["bad"]}, "invalid next token"),
    ],
)
def test_instance_status_refuses_bad_parameters(api: Client, query: Any, message: str) -> None:
    assert api.call("GET", "/v1/instance/i1", query)[::2] == (400, {"error": message})


def test_an_unknown_instance_is_404(api: Client) -> None:
    assert api.call("GET", "/v1/instance/gone")[::2] == (404, {"error": "instance not found: gone"})
    assert api.call("DELETE", "/v1/instance/gone")[::2] == (404, {"error": "instance not found: gone"})


def test_instance_history_passes_its_parameters(api: Client) -> None:
    status, _, body = api.call("GET", "/v1/instances")
    assert status == 200 and body["next"] == "n2" and body["instances"][0]["instance_id"] == "i1"
    assert (
        api.call("GET", "/v1/instances", {"workflow": [WORKFLOW], "limit": ["100"], "next": ["t"]})[0] == 200
    )
    assert [args for _, args in api.engine.calls] == [(None, 50, None), (WORKFLOW, 100, "t")]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"limit": ["101"]}, "invalid limit: '101' (an integer from 1 to 100)"),
        ({"limit": ["5x"]}, "invalid limit: '5x' (an integer from 1 to 100)"),
        ({"workflow": [""]}, "empty workflow name"),
        ({"next": ["bad"]}, "invalid next token"),
    ],
)
def test_instance_history_refuses_bad_parameters(api: Client, query: Any, message: str) -> None:
    assert api.call("GET", "/v1/instances", query)[::2] == (400, {"error": message})


def test_cancel_instance_on_some_or_all_ids(api: Client) -> None:
    assert api.call("DELETE", "/v1/instance/i1")[::2] == (
        200,
        {"cancelled_ids": ["A"], "not_running_ids": []},
    )
    status, _, body = api.call("DELETE", "/v1/instance/i1", {"id": ["B", "C", "B"]})
    assert status == 200 and body["cancelled_ids"] == ["B", "C"]
    assert api.call("DELETE", "/v1/instance/i1", {"id": [""]})[::2] == (400, {"error": "empty enrollment id"})
    assert [args for _, args in api.engine.calls] == [("i1", None), ("i1", ["B", "C"])]


def test_cancel_workflow(api: Client) -> None:
    path = f"/v1/workflow/{WORKFLOW}/cancel"
    status, _, body = api.call("POST", path, {"id": ["A", "B"]})
    assert (status, body) == (200, {"cancelled_ids": ["A"], "not_running_ids": ["B"]})
    assert api.call("POST", path)[::2] == (400, {"error": "no IDs provided"})
    unknown = api.call("POST", "/v1/workflow/nope/cancel", {"id": ["A"]})
    assert unknown[::2] == (404, {"error": "no such workflow: nope"})
    assert [name for name, _ in api.engine.calls] == ["cancel_workflow", "cancel_workflow"]


def test_cancel_and_start_routes_do_not_clash(api: Client) -> None:
    assert api.call("POST", "/v1/workflow/w/start", {"id": ["A"]})[0] == 404
    assert api.engine.calls == [("start_workflow", ("w", ["A"]))]
    status, headers, body = api.call("GET", "/v1/workflow/w/cancel", {"id": ["A"]})
    assert (status, headers["allow"], body) == (405, "POST, OPTIONS", {"error": "method not allowed"})
    status, headers, _ = api.call("OPTIONS", "/v1/instance/i1")
    assert (status, headers["allow"]) == (204, "GET, HEAD, DELETE, OPTIONS")
    assert api.call("PUT", "/v1/instances")[0] == 405
    assert api.call("GET", "/v1/workflow/w/stop")[0] == 404


def test_the_document_has_the_routes_and_their_answers(api: Client) -> None:
    doc = api.call("GET", "/openapi.json", auth=None)[2]
    assert OpenAPIV30SpecValidator(doc).is_valid()

    def answer(path: str, method: str) -> Any:
        return doc["paths"][path][method]["responses"]["200"]["content"]["application/json"]["schema"]

    ref = "#/components/schemas/{}".format
    assert answer("/v1/status", "get") == {
        "type": "object",
        "additionalProperties": {"$ref": ref("DeviceStatus")},
        "description": "by enrollment id",
    }
    assert answer("/v1/instance/{instance_id}", "get") == {"$ref": ref("InstanceStatus")}
    assert answer("/v1/instances", "get") == {"$ref": ref("InstancePage")}
    assert answer("/v1/instance/{instance_id}", "delete") == {"$ref": ref("CancelResult")}
    assert answer("/v1/workflow/{name}/cancel", "post") == {"$ref": ref("CancelResult")}
    schemas = doc["components"]["schemas"]
    assert {"DeviceStatus", "StepStatus", "CommandStatus", "InstanceStatus", "IdOutcome", "Counts"} <= set(
        schemas
    )
    cancel = doc["paths"]["/v1/workflow/{name}/cancel"]["post"]
    assert {(p["name"], p["in"], p["required"]) for p in cancel["parameters"]} == {
        ("name", "path", True),
        ("id", "query", True),
    }
    assert cancel["security"] == [{"basicAuth": []}]
    instance = doc["paths"]["/v1/instance/{instance_id}"]["get"]
    assert {p["name"] for p in instance["parameters"]} == {"instance_id", "ids", "limit", "next"}
