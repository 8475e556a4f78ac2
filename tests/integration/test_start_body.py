"""Issue 12 item 1: a start with its ids in a JSON body, beside the query form Go clients use."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from nanocmd_core.api.app import create_api
from nanocmd_core.api.start_request import MAX_START_BODY, MAX_START_IDS
from nanocmd_core.aws.clients import aws_client
from nanocmd_core.config import Settings
from nanocmd_core.engine.fleet_start import start_chunk_of
from nanocmd_core.mdmserver.client import HTTPMDMServerClient
from nanocmd_core.wiring import build_app
from tests.fakes.mdm_server import FakeMDMServer
from tests.integration.test_api import API_KEY, INVENTORY, Api


@pytest.fixture
def api(table_name: str, queue_url: str) -> Iterator[Api]:
    """The API with the events queue, synchronous up to 400 ids."""
    with FakeMDMServer() as mdm:
        settings = Settings(
            table_name=table_name, queue_url=queue_url, api_key_value=API_KEY, sync_start_max=400
        )
        client = HTTPMDMServerClient(mdm.enqueue_url, mdm.push_url, mdm.api_key, backoff=0.01)
        app = build_app(settings, mdm=client)
        yield Api(app=app, mdm=mdm, resolver=create_api(settings, lambda: app))


@pytest.fixture
def fleet() -> Iterator[list[str]]:
    # 300 UUID-shaped ids: far past what fits in an API Gateway URL (about 200-250)
    yield [f"00000000-0000-4000-8000-{n:012d}" for n in range(300)]


def test_a_json_body_starts_the_workflow_on_every_id(api: Api, fleet: list[str]) -> None:
    body = json.dumps({"ids": fleet + fleet[:5] + [fleet[0]], "context": "rollout-7"}).encode()
    status, _, answer = api.call("POST", f"/v1/workflow/{INVENTORY}/start", body=body)
    assert status == 200 and set(answer) == {"instance_id"}, answer
    sent = {i for r in api.mdm.enqueued() for i in r.ids}
    assert sent == set(fleet)  # duplicates collapsed, every id sent to
    progress = api.app.engine.instance_status(answer["instance_id"])
    assert progress is not None
    assert (progress.requested, progress.context, progress.counts.started) == (300, "rollout-7", 300)
    # the same ids again: all busy, as with the query form
    status, _, answer = api.call("POST", f"/v1/workflow/{INVENTORY}/start", body=body)
    assert status == 409 and "already started" in answer["error"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "invalid start body"),
        (b'{"ids": []}', "ids"),
        (b'{"ids": "ABC"}', "ids"),
        (b'{"ids": [1, 2]}', "ids"),
        (b'{"ids": ["A"], "context": 5}', "context"),
        (b'{"ids": ["A"], "extra": true}', "extra"),
        (b'["A"]', "invalid start body"),
        (b'{"ids": ["A", ""]}', "empty enrollment id"),
    ],
)
def test_bad_bodies_are_400_with_a_json_error(api: Api, body: bytes, message: str) -> None:
    status, headers, answer = api.call("POST", f"/v1/workflow/{INVENTORY}/start", body=body)
    assert status == 400 and headers["content-type"] == "application/json"
    assert message in answer["error"]
    assert api.mdm.enqueued() == []


def test_ids_in_both_the_query_and_the_body_are_refused(api: Api) -> None:
    body = json.dumps({"ids": ["A"]}).encode()
    status, _, answer = api.call("POST", f"/v1/workflow/{INVENTORY}/start", {"id": ["B"]}, body=body)
    assert status == 400 and "not both" in answer["error"]


def test_too_many_ids_or_too_large_a_body_is_413(api: Api) -> None:
    many = json.dumps({"ids": [f"D{n}" for n in range(MAX_START_IDS + 1)]}).encode()
    assert len(many) < MAX_START_BODY
    status, _, answer = api.call("POST", f"/v1/workflow/{INVENTORY}/start", body=many)
    assert status == 413 and str(MAX_START_IDS) in answer["error"]
    huge = b'{"ids": ["' + b"X" * MAX_START_BODY + b'"]}'
    status, _, answer = api.call("POST", f"/v1/workflow/{INVENTORY}/start", body=huge)
    assert status == 413 and "bytes" in answer["error"]
    assert api.mdm.enqueued() == []


def test_the_query_form_still_works(api: Api) -> None:
    status, _, answer = api.call("POST", f"/v1/workflow/{INVENTORY}/start", {"id": ["Q1", "Q2"]})
    assert status == 200 and "instance_id" in answer
    status, _, answer = api.call("POST", f"/v1/workflow/{INVENTORY}/start")
    assert (status, answer) == (400, {"error": "no IDs provided"})


def test_past_the_synchronous_maximum_the_start_answers_202_and_queues_the_ids(
    api: Api, queue_url: str
) -> None:
    ids = [f"FLEET-{n:04d}" for n in range(900)]
    status, headers, answer = api.call(
        "POST", f"/v1/workflow/{INVENTORY}/start", body=json.dumps({"ids": ids}).encode()
    )
    assert status == 202 and set(answer) == {"instance_id", "status_url"}
    assert answer["status_url"] == f"/v1/instance/{answer['instance_id']}" == headers["location"]
    assert api.mdm.enqueued() == []  # nothing sent yet: the events function does it
    status, _, progress = api.call("GET", answer["status_url"])
    assert status == 200 and progress["counts"]["pending"] == 900 and not progress["done"]
    sqs = aws_client("sqs")
    reply = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)
    chunks = [start_chunk_of(m["Body"]) for m in reply.get("Messages") or []]
    assert chunks and all(c is not None and c.instance_id == answer["instance_id"] for c in chunks)
    status, _, missing = api.call(
        "POST", "/v1/workflow/no.such.workflow/start", body=json.dumps({"ids": ids}).encode()
    )
    assert status == 404 and "no such workflow" in missing["error"]
