"""The command-plan model (Go's JSON decoding and omission rules), the in-memory store and the
``/v1/cmdplan/<name>`` routes over it (subsystems.md §6, api.md §8.2-8.3, design.md §6).
The DynamoDB store runs the same checks in tests/integration/test_cmdplan.py."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest

from infra.local.events import basic_auth, proxy_event, reply_headers
from infra.local.lambda_runtime import LambdaContext
from nanocmd_core.api.app import create_api
from nanocmd_core.config import Settings
from nanocmd_core.subsystems.cmdplan import (
    CommandPlan,
    CommandPlanInvalidError,
    CommandPlanNotFoundError,
    MemoryCommandPlanStore,
)
from nanocmd_core.subsystems.cmdplan.http import cmdplan_routes, parse_plan
from nanocmd_core.subsystems.cmdplan.storage import MAX_NAME_BYTES, MAX_PLAN_BYTES

API_KEY = "k"

# --- the model -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        (None, {}),
        ({}, {}),
        ({"profile_names": ["a"], "unknown": {"x": 1}}, {"profile_names": ["a"]}),
        ({"Profile_Names": ["a"], "MANIFEST_URLS": ["u"], "Device_Configured": True},
         {"profile_names": ["a"], "manifest_urls": ["u"], "device_configured": True}),
        ({"profile_names": ["a"], "PROFILE_NAMES": ["b"]}, {"profile_names": ["b"]}),  # later key wins
        ({"profile_names": ["a"], "Profile_names": None}, {}),  # null empties a list
        ({"device_configured": True, "DEVICE_CONFIGURED": None}, {}),  # a *bool, as in Go
        ({"device_configured": None}, {}),
        ({"device_configured": False}, {"device_configured": False}),  # a stored false is kept
        ({"profile_names": [], "manifest_urls": []}, {}),
    ],
)  # fmt: skip
def test_plan_decodes_like_go(doc: Any, expected: dict[str, Any]) -> None:
    assert parse_plan(doc).to_json() == expected


@pytest.mark.parametrize(
    ("doc", "where"),
    [
        ([], "invalid command plan"),
        ("plan", "invalid command plan"),
        ({"profile_names": "a"}, "profile_names"),
        ({"profile_names": [1]}, "profile_names.0"),
        ({"manifest_urls": {"a": "b"}}, "manifest_urls"),
        ({"device_configured": "true"}, "device_configured"),
        ({"device_configured": 1}, "device_configured"),
    ],
)
def test_plan_types_are_strict(doc: Any, where: str) -> None:
    with pytest.raises(ValueError, match=r"^invalid command plan") as info:
        parse_plan(doc)
    assert where in str(info.value)


def test_plan_keeps_order_and_duplicates() -> None:
    plan = CommandPlan(profile_names=["b", "a", "b"], manifest_urls=["u2", "u1"])
    assert plan.to_json() == {"profile_names": ["b", "a", "b"], "manifest_urls": ["u2", "u1"]}


# --- the store (conformance, subsystems.md §6.4) ----------------------------------------------


def test_memory_store_conformance() -> None:
    store = MemoryCommandPlanStore()
    plan = CommandPlan(profile_names=["hello"], manifest_urls=["gopher://example.com/1/news"])
    store.store("test1", plan)
    assert store.retrieve("test1") == plan and store.retrieve("test1").device_configured is None
    store.delete("test1")
    with pytest.raises(CommandPlanNotFoundError) as info:
        store.retrieve("test1")
    assert str(info.value) == "key not found: test1"
    store.delete("test1")  # missing is not an error


def test_memory_store_replaces_and_limits() -> None:
    store = MemoryCommandPlanStore()
    store.store("p", CommandPlan(profile_names=["a"], device_configured=True))
    store.store("p", CommandPlan(manifest_urls=["u"]))
    assert store.retrieve("p").to_json() == {"manifest_urls": ["u"]}
    with pytest.raises(CommandPlanInvalidError):
        store.store("n" * (MAX_NAME_BYTES + 1), CommandPlan())
    with pytest.raises(CommandPlanInvalidError):
        store.store("big", CommandPlan(manifest_urls=["u" * MAX_PLAN_BYTES]))


# --- the routes ------------------------------------------------------------------------------


def call(resolver: Any, method: str, path: str, body: bytes | None = None) -> tuple[int, dict[str, str], Any]:
    event = proxy_event(method, path, auth=basic_auth("nanocmd", API_KEY), body=body)
    reply = resolver.resolve(event, LambdaContext("ApiFunction"))
    text = reply.get("body") or ""
    return reply["statusCode"], reply_headers(reply), json.loads(text) if text else None


@pytest.fixture
def api() -> tuple[Any, MemoryCommandPlanStore]:
    store = MemoryCommandPlanStore()
    services = SimpleNamespace(cmdplans=store)
    return create_api(Settings(api_key_value=API_KEY), lambda: services, modules=[cmdplan_routes]), store


def test_put_then_get(api: Any) -> None:
    resolver, store = api
    body = b'{"profile_names":["test1"],"manifest_urls":[],"device_configured":true,"x":1}'
    status, _, reply = call(resolver, "PUT", "/v1/cmdplan/plan1", body)
    assert (status, reply) == (204, None)
    status, headers, reply = call(resolver, "GET", "/v1/cmdplan/plan1")
    assert status == 200 and headers["content-type"] == "application/json"
    assert reply == {"profile_names": ["test1"], "device_configured": True}
    assert store.retrieve("plan1").profile_names == ["test1"]


def test_put_replaces_and_names_are_unescaped(api: Any) -> None:
    resolver, store = api
    call(
        resolver,
        "PUT",
        "/v1/cmdplan/a%20b%2Fc",
        b'{"manifest_urls":["https://x/m"],"device_configured":false}',
    )
    call(resolver, "PUT", "/v1/cmdplan/a%20b%2Fc", b'{"device_configured":false}')
    assert store.retrieve("a b/c").to_json() == {"device_configured": False}
    assert call(resolver, "GET", "/v1/cmdplan/a%20b%2Fc")[2] == {"device_configured": False}


def test_put_null_stores_an_empty_plan(api: Any) -> None:
    resolver, _ = api
    assert call(resolver, "PUT", "/v1/cmdplan/p", b"null")[0] == 204
    assert call(resolver, "GET", "/v1/cmdplan/p")[2] == {}


def test_get_unknown_is_404(api: Any) -> None:
    status, headers, reply = call(api[0], "GET", "/v1/cmdplan/nope%21")
    assert status == 404 and headers["content-type"] == "application/json"
    assert reply == {"error": "key not found: nope!"}


@pytest.mark.parametrize(
    "body",
    [None, b"", b"{", b"[]", b'"plan"', b'{"device_configured":"yes"}', b'{"profile_names":[1]}', b"\xff"],
)
def test_put_bad_body_is_400(api: Any, body: bytes | None) -> None:
    resolver, store = api
    status, headers, reply = call(resolver, "PUT", "/v1/cmdplan/p", body)
    assert status == 400 and headers["content-type"] == "application/json"
    assert set(reply) == {"error"} and reply["error"]
    with pytest.raises(CommandPlanNotFoundError):
        store.retrieve("p")


def test_put_too_large_is_400(api: Any) -> None:
    body = json.dumps({"manifest_urls": ["u" * MAX_PLAN_BYTES]}).encode()
    status, _, reply = call(api[0], "PUT", "/v1/cmdplan/p", body)
    assert status == 400 and "larger than" in reply["error"]


def test_other_methods_and_auth(api: Any) -> None:
    resolver, _ = api
    status, headers, _ = call(resolver, "DELETE", "/v1/cmdplan/p")
    assert status == 405 and "PUT" in headers["allow"] and "GET" in headers["allow"]
    event_reply = resolver.resolve(proxy_event("GET", "/v1/cmdplan/p"), LambdaContext("ApiFunction"))
    assert event_reply["statusCode"] == 401
