"""Issue 12 item 3: a start repeated with the same Idempotency-Key gets the first answer and
starts nothing again; the key records live in the engine's table (DynamoDB Local)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from infra.local.events import basic_auth, proxy_event, reply_headers
from infra.local.lambda_runtime import LambdaContext
from nanocmd_core.api.app import create_api
from nanocmd_core.config import Settings
from nanocmd_core.mdmserver.client import HTTPMDMServerClient
from nanocmd_core.wiring import build_app
from tests.fakes.mdm_server import FakeMDMServer
from tests.integration.test_api import API_KEY, INVENTORY

DEVINFOLOG = "io.micromdm.wf.devinfolog.v1"


class Client:
    def __init__(self, resolver: Any) -> None:
        self.resolver = resolver

    def start(self, workflow: str, ids: list[str], key: str | None, context: str = "") -> tuple[int, Any]:
        event = proxy_event(
            "POST",
            f"/v1/workflow/{workflow}/start",
            auth=basic_auth("nanocmd", API_KEY),
            body=json.dumps({"ids": ids, "context": context}).encode(),
        )
        if key is not None:
            event["headers"]["Idempotency-Key"] = key
            event["multiValueHeaders"] = {k: [v] for k, v in event["headers"].items()}
        reply = self.resolver.resolve(event, LambdaContext("ApiFunction"))
        reply_headers(reply)
        return reply["statusCode"], json.loads(reply["body"])


@pytest.fixture
def env(table_name: str) -> Iterator[tuple[Client, FakeMDMServer]]:
    with FakeMDMServer() as mdm:
        settings = Settings(table_name=table_name, api_key_value=API_KEY)
        client = HTTPMDMServerClient(mdm.enqueue_url, mdm.push_url, mdm.api_key, backoff=0.01)
        app = build_app(settings, mdm=client)
        yield Client(create_api(settings, lambda: app)), mdm


def test_a_repeated_start_gets_the_first_answer_and_starts_nothing(env: tuple[Client, FakeMDMServer]) -> None:
    client, mdm = env
    first = client.start(INVENTORY, ["K1", "K2"], "rollout-2026-12-01")
    assert first[0] == 200
    sent = len(mdm.enqueued())
    again = client.start(INVENTORY, ["K1", "K2"], "rollout-2026-12-01")
    assert again == first  # the same instance id, 200 (not 409 for ids the first start holds)
    assert len(mdm.enqueued()) == sent
    other = client.start(INVENTORY, ["K3"], "another-key")
    assert other[0] == 200 and other[1]["instance_id"] != first[1]["instance_id"]


def test_the_key_of_another_request_is_422(env: tuple[Client, FakeMDMServer]) -> None:
    client, _ = env
    assert client.start(INVENTORY, ["K4"], "k-1")[0] == 200
    status, body = client.start(INVENTORY, ["K5"], "k-1")
    assert status == 422 and "another start" in body["error"]
    status, body = client.start(DEVINFOLOG, ["K4"], "k-1")
    assert status == 422


def test_a_refused_start_is_not_kept_for_its_key(env: tuple[Client, FakeMDMServer]) -> None:
    client, _ = env
    assert client.start(INVENTORY, ["K6"], None)[0] == 200
    busy = client.start(INVENTORY, ["K6"], "k-busy")
    assert busy[0] == 409
    assert client.start(INVENTORY, ["K6"], "k-busy")[0] == 409  # tried again, not replayed as kept
    assert client.start("no.such.workflow", ["K7"], "k-404")[0] == 404


def test_concurrent_repeats_start_once(env: tuple[Client, FakeMDMServer]) -> None:
    client, mdm = env
    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(pool.map(lambda _: client.start(DEVINFOLOG, ["K8"], "k-race"), range(6)))
    ok = [a for a in answers if a[0] == 200]
    assert ok and all(a == ok[0] for a in ok)
    assert {a[0] for a in answers} <= {200, 409}  # 409: the first was still running
    assert len([r for r in mdm.enqueued() if "K8" in r.ids]) == 1
