"""The management API through its resolver, with API Gateway REST proxy events, on DynamoDB Local."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from infra.local.events import basic_auth as basic
from infra.local.events import proxy_event, reply_headers
from infra.local.lambda_runtime import LambdaContext
from nanocmd_core.api.app import create_api
from nanocmd_core.config import Settings
from nanocmd_core.mdmserver.client import HTTPMDMServerClient
from nanocmd_core.wiring import App, build_app
from tests.fakes.mdm_server import FakeMDMServer
from tests.fakes.reports import device_information, report, security_info

API_KEY = "api-secret"
INVENTORY = "io.micromdm.wf.inventory.v1"


@dataclass
class Api:
    app: App
    mdm: FakeMDMServer
    resolver: Any

    def call(
        self,
        method: str,
        path: str,
        query: dict[str, list[str]] | None = None,
        auth: str | None = basic("nanocmd", API_KEY),
        body: bytes | None = None,
    ) -> tuple[int, dict[str, str], Any]:
        reply = self.resolver.resolve(
            proxy_event(method, path, query, auth, body), LambdaContext("ApiFunction")
        )
        headers = reply_headers(reply)
        body = reply.get("body") or ""
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = body
        return reply["statusCode"], headers, parsed


@pytest.fixture
def api(table_name: str) -> Iterator[Api]:
    with FakeMDMServer() as mdm:
        settings = Settings(table_name=table_name, api_key_value=API_KEY, version="1.2.3")
        client = HTTPMDMServerClient(mdm.enqueue_url, mdm.push_url, mdm.api_key, backoff=0.01)
        app = build_app(settings, mdm=client)
        yield Api(app=app, mdm=mdm, resolver=create_api(settings, lambda: app))


def test_version_needs_no_auth(api: Api) -> None:
    status, headers, body = api.call("GET", "/version", auth=None)
    assert status == 200 and body == {"version": "1.2.3"}
    assert headers["content-type"] == "application/json"


@pytest.mark.parametrize(
    "auth", [None, basic("nanocmd", "wrong"), basic("admin", API_KEY), "Bearer x", "Basic !!"]
)
def test_management_routes_need_basic_auth(api: Api, auth: str | None) -> None:
    status, headers, body = api.call("POST", "/v1/workflow/x/start", {"id": ["A"]}, auth=auth)
    assert status == 401
    assert headers["www-authenticate"] == 'Basic realm="nanocmd"'
    assert body == {"error": "unauthorized"}
    assert api.call("GET", "/v1/inventory", {"id": ["A"]}, auth=auth)[0] == 401


def test_no_api_key_means_no_management_api(table_name: str) -> None:
    settings = Settings(table_name=table_name, api_key_value="")
    resolver = create_api(settings, lambda: pytest.fail("must not build the engine"))
    reply = resolver.resolve(
        proxy_event("POST", "/v1/workflow/x/start", {"id": ["A"]}, basic("nanocmd", "")),
        LambdaContext("ApiFunction"),
    )
    assert reply["statusCode"] == 404


def test_start_inventory_then_read_it(api: Api) -> None:
    status, headers, body = api.call("POST", f"/v1/workflow/{INVENTORY}/start", {"id": ["DEV-1"]})
    assert status == 200 and headers["content-type"] == "application/json"
    assert set(body) == {"instance_id"}
    sent = api.mdm.commands_for("DEV-1")
    assert [c["Command"]["RequestType"] for c in sent] == ["DeviceInformation", "SecurityInfo"]
    di, si = (c["CommandUUID"] for c in sent)
    engine = api.app.engine
    engine.handle_command_report(
        "DEV-1", si, security_info(si, "DEV-1", SystemIntegrityProtectionEnabled=True, FDE_Enabled=False)
    )
    engine.handle_command_report(
        "DEV-1", di, device_information(di, "DEV-1", Model="Mac14,2", SerialNumber="S1", IsAppleSilicon=True)
    )
    for path in ("/v1/inventory", "/inventory"):
        status, _, body = api.call("GET", path, {"id": ["DEV-1", "UNKNOWN"]})
        assert status == 200
        record = body["DEV-1"]
        assert set(body) == {"DEV-1"}
        assert record["model"] == "Mac14,2" and record["serial_number"] == "S1"
        assert (
            record["apple_silicon"] is True
            and record["sip_enabled"] is True
            and record["fde_enabled"] is False
        )
        assert record["last_source"] == "DeviceInformation"
        assert "supervised" not in record  # not returned by the device, so not stored


def test_start_error_codes(api: Api) -> None:
    status, _, body = api.call("POST", f"/v1/workflow/{INVENTORY}/start")
    assert (status, body) == (400, {"error": "no IDs provided"})
    status, _, body = api.call("POST", "/v1/workflow/io.example/start", {"id": ["A"]})
    assert (status, body) == (404, {"error": "no such workflow: io.example"})
    assert api.call("POST", f"/v1/workflow/{INVENTORY}/start", {"id": ["A"]})[0] == 200
    status, _, body = api.call("POST", f"/v1/workflow/{INVENTORY}/start", {"id": ["A"]})
    assert (status, body) == (409, {"error": "workflow already started on 1 (of 1) ids"})
    status, _, body = api.call("POST", f"/v1/workflow/{INVENTORY}/start", {"id": ["A", "B"]})
    assert status == 200 and body["skipped_ids"] == ["A"]
    assert api.call("POST", f"/v1/workflow/{INVENTORY}/start", {"id": [""]})[0] == 400


def test_mdm_server_failure_is_502_and_the_engine_retries(api: Api) -> None:
    """design.md §3.4: the admin sees the refusal and that the engine keeps the step and retries."""
    api.mdm.fail_always(500)
    status, _, body = api.call("POST", f"/v1/workflow/{INVENTORY}/start", {"id": ["A"]})
    assert status == 502
    assert body["retrying_ids"] == ["A"] and body["instance_id"]
    assert "retries" in body["error"] and any("500" in e for e in body["errors"])
    api.mdm.heal()
    assert api.call("POST", f"/v1/workflow/{INVENTORY}/start", {"id": ["A"]})[0] == 409


def test_inventory_needs_ids(api: Api) -> None:
    status, _, body = api.call("GET", "/v1/inventory")
    assert (status, body) == (400, {"error": "no IDs provided"})
    assert api.call("GET", "/v1/inventory", {"id": ["nobody"]})[2] == {}


def test_unknown_paths_and_wrong_methods(api: Api) -> None:
    status, _, body = api.call("GET", "/v1/nothing")
    assert status == 404 and body == {"error": "not found"}
    status, headers, _ = api.call("GET", f"/v1/workflow/{INVENTORY}/start")
    assert status == 405 and headers["allow"] == "POST, OPTIONS"
    status, headers, _ = api.call("OPTIONS", "/v1/inventory")
    assert status == 204 and headers["allow"] == "GET, HEAD, OPTIONS"


def test_completed_step_frees_the_workflow(api: Api) -> None:
    api.call("POST", f"/v1/workflow/{INVENTORY}/start", {"id": ["A"]})
    for command in api.mdm.commands_for("A"):
        api.app.engine.handle_command_report("A", command["CommandUUID"], report(command["CommandUUID"], "A"))
    assert api.call("POST", f"/v1/workflow/{INVENTORY}/start", {"id": ["A"]})[0] == 200


def test_event_subscription_routes(api: Api) -> None:
    """api.md §5.2-5.3 with design.md §6: 404 for unknown names, 400 for bad bodies, PUT
    replaces the whole subscription, plus DELETE and a list."""
    status, _, body = api.call("GET", "/v1/event/enroll")
    assert (status, body) == (404, {"error": "event subscription not found: enroll"})
    doc = {"event": "Enrollment", "workflow": INVENTORY, "context": "c1"}
    status, _, body = api.call("PUT", "/v1/event/enroll", body=json.dumps(doc).encode())
    assert (status, body) == (204, None)
    status, headers, body = api.call("GET", "/v1/event/enroll")
    assert (status, body) == (200, doc) and headers["content-type"] == "application/json"
    api.call(
        "PUT", "/v1/event/enroll", body=json.dumps({"Event": "Enrollment", "WORKFLOW": INVENTORY}).encode()
    )
    assert api.call("GET", "/v1/event/enroll")[2] == {"event": "Enrollment", "workflow": INVENTORY}
    api.call(
        "PUT",
        "/v1/event/idle",
        body=b'{"event": "IdleNotStartedSince", "workflow": "%s", '
        b'"event_context": "86400"}' % INVENTORY.encode(),
    )
    status, _, body = api.call("GET", "/v1/events")
    assert status == 200 and set(body) == {"enroll", "idle"}
    assert body["idle"]["event_context"] == "86400"
    assert api.call("DELETE", "/v1/event/enroll")[0] == 204
    assert api.call("GET", "/v1/event/enroll")[0] == 404
    assert api.call("DELETE", "/v1/event/enroll")[0] == 204
    status, headers, _ = api.call("POST", "/v1/event/enroll")
    assert status == 405 and headers["allow"] == "GET, HEAD, PUT, DELETE, OPTIONS"


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"", "invalid JSON body"),
        (b"{not json", "invalid JSON body"),
        (b"[]", "body must be a JSON object"),
        (b"{}", "missing event type"),
        (b'{"event": "Sometimes", "workflow": "x"}', "invalid event type: Sometimes"),
        (b'{"event": "enrollment", "workflow": "x"}', "invalid event type: enrollment"),
        (b'{"event": "AllCommandResponse", "workflow": "%s"}' % INVENTORY.encode(), "cannot start workflows"),
        (b'{"event": "Enrollment"}', "missing workflow name"),
        (b'{"event": "Enrollment", "workflow": "io.example.none"}', "workflow not registered"),
        (b'{"event": "Enrollment", "workflow": 5}', "workflow must be a string"),
        (b'{"event": "IdleNotStartedSince", "workflow": "%s"}' % INVENTORY.encode(), "event_context"),
        (
            b'{"event": "IdleNotStartedSince", "workflow": "%s", "event_context": "0"}' % INVENTORY.encode(),
            "event_context",
        ),
        (
            b'{"event": "IdleNotStartedSince", "workflow": "%s", "event_context": "soon"}'
            % INVENTORY.encode(),
            "event_context",
        ),
    ],
)
def test_bad_subscription_bodies_are_400_and_store_nothing(api: Api, body: bytes, error: str) -> None:
    status, headers, reply = api.call("PUT", "/v1/event/bad", body=body)
    assert status == 400 and headers["content-type"] == "application/json"
    assert error in reply["error"]
    assert api.call("GET", "/v1/event/bad")[0] == 404
