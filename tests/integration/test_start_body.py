"""Issue 12 item 1: a start with its ids in a JSON body, beside the query form Go clients use."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from nanocmd_core.api.start_request import MAX_START_BODY, MAX_START_IDS
from tests.integration.test_api import INVENTORY, Api
from tests.integration.test_api import api as api


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
