"""Bad input on every route (issue 4 item 6): schemathesis generates requests from our OpenAPI
document — valid and invalid ones (wrong types, missing fields, garbage bodies), with and without
auth — and sends them to the running local system. None may end in a 5xx: every error is a 4xx
with a JSON body."""

from __future__ import annotations

import base64
from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from tests.e2e.conftest import API_KEY

# profile uploads are raw bytes: send whatever was generated as bytes (garbage must be a 400)
schemathesis.serializer.alias("application/x-apple-aspen-config", "application/octet-stream")

AUTH = "Basic " + base64.b64encode(f"nanocmd:{API_KEY}".encode()).decode()
PUBLIC = {"/version", "/webhook", "/openapi.json"}


def operations(local_stack: Any) -> list[Any]:
    schema = schemathesis.openapi.from_url(f"{local_stack.base_url}/openapi.json")
    return [result.ok() for result in schema.get_all_operations()]


def check(response: Any, path: str, authorized: bool) -> None:
    label = (
        f"{response.request.method} {response.request.url} -> {response.status_code}: {response.text[:200]}"
    )
    assert response.status_code < 500, label
    if not authorized and path not in PUBLIC:
        assert response.status_code == 401, label
    if 400 <= response.status_code < 500 and path != "/webhook" and response.request.method != "HEAD":
        content_type = (response.headers.get("content-type") or [""])[0]
        assert content_type.startswith("application/json"), label
        assert "error" in response.json(), label


def test_no_input_makes_the_api_fail(local_stack: Any) -> None:
    for operation in operations(local_stack):
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            strategy = operation.as_strategy(generation_mode=mode)

            @given(case=strategy)
            @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck), database=None)
            def run(case: Any) -> None:
                path = case.operation.path
                headers = {} if path == "/webhook" else {"Authorization": AUTH}
                check(case.call(headers=headers), path, authorized=True)

            try:
                run()
            except Unsatisfiable:  # nothing invalid to make for this operation (no parameters)
                assert mode is GenerationMode.NEGATIVE


def test_without_auth_every_management_route_is_401(local_stack: Any) -> None:
    for operation in operations(local_stack):

        @given(case=operation.as_strategy())
        @settings(max_examples=3, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def run(case: Any) -> None:
            check(case.call(), case.operation.path, authorized=False)

        run()
