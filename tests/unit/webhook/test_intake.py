"""Webhook intake: what NanoMDM sees for each kind of body (engine.md §5, design.md §4, §6)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime

import pytest

from nanocmd_core.webhook.intake import BLOB_POINTER, MAX_MESSAGE_BYTES, accept_webhook
from tests.fakes.reports import checkin_webhook, connect_webhook, idle_webhook, report

NOW = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


class MemoryQueue:
    def __init__(self) -> None:
        self.messages: list[tuple[str, str, str, dict[str, str]]] = []

    def send(self, body: str, group_id: str, dedup_id: str, attributes: dict[str, str]) -> None:
        self.messages.append((body, group_id, dedup_id, attributes))


class MemoryBlobs:
    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}

    def put(self, key: str, data: bytes) -> None:
        self.blobs[key] = data

    def get(self, key: str) -> bytes:
        return self.blobs[key]

    def delete(self, key: str) -> None:
        self.blobs.pop(key, None)


def sign(body: bytes, key: str) -> str:
    return base64.b64encode(hmac.new(key.encode(), body, hashlib.sha256).digest()).decode()


@pytest.fixture
def queue() -> MemoryQueue:
    return MemoryQueue()


def test_command_report_is_queued_by_enrollment_id(queue: MemoryQueue) -> None:
    body = connect_webhook("DEV-1", "U-1", report("U-1", "DEV-1"))
    reply = accept_webhook(body, {}, queue=queue, received_at=NOW)
    assert reply.status == 200 and reply.body == ""
    [(text, group, dedup, attrs)] = queue.messages
    assert json.loads(text) == json.loads(body)
    assert group == "DEV-1"
    assert dedup == hashlib.sha256(body).hexdigest()
    assert attrs["received_at"] == NOW.isoformat() and attrs["topic"] == "mdm.Connect"
    # what the events function looks a batch's reports up by, without reading the bodies
    assert attrs["command_uuid"] == "U-1" and attrs["enrollment_id"] == "DEV-1"


def test_idle_and_checkins_carry_no_report_keys(queue: MemoryQueue) -> None:
    for body in (idle_webhook("DEV-1"), checkin_webhook("TokenUpdate", "DEV-1")):
        assert accept_webhook(body, {}, queue=queue, received_at=NOW).status == 200
    assert all("command_uuid" not in attrs for *_, attrs in queue.messages)


@pytest.mark.parametrize(
    ("enrollment_id", "command_uuid", "error"),
    [
        ("DEV-1", "U" * 1001, "command_uuid longer than 1000 bytes"),
        ("D" * 1001, "U-1", "enrollment id longer than 1000 bytes"),
    ],
)
def test_ids_too_long_to_track_are_refused(
    queue: MemoryQueue, enrollment_id: str, command_uuid: str, error: str
) -> None:
    body = connect_webhook(enrollment_id, command_uuid, report(command_uuid, enrollment_id))
    reply = accept_webhook(body, {}, queue=queue, received_at=NOW)
    assert reply.status == 400 and json.loads(reply.body)["error"].endswith(error)
    assert queue.messages == []


def test_checkins_and_idle_are_queued(queue: MemoryQueue) -> None:
    for body in (
        checkin_webhook("TokenUpdate", "DEV-1", tally=1),
        checkin_webhook("Authenticate", "DEV-1"),
        checkin_webhook("CheckOut", "DEV-1"),
        idle_webhook("DEV-1"),
    ):
        assert accept_webhook(body, {}, queue=queue, received_at=NOW).status == 200
    assert [m[3]["topic"] for m in queue.messages] == [
        "mdm.TokenUpdate",
        "mdm.Authenticate",
        "mdm.CheckOut",
        "mdm.Connect",
    ]


def test_nanomdm_ids_take_precedence(queue: MemoryQueue) -> None:
    """design.md §6: ids.id, else udid, else enrollment_id (user channels)."""
    doc = json.loads(connect_webhook("DEVICE-UDID", "U-1", report("U-1", "DEVICE-UDID")))
    doc["acknowledge_event"]["ids"] = {"id": "USER-CHANNEL-ID", "parent_id": "DEVICE-UDID", "type": "User"}
    accept_webhook(json.dumps(doc).encode(), {}, queue=queue, received_at=NOW)
    doc = json.loads(connect_webhook("", "U-2", report("U-2", "X")))
    doc["acknowledge_event"]["enrollment_id"] = "BYOD-ENROLLMENT"
    accept_webhook(json.dumps(doc).encode(), {}, queue=queue, received_at=NOW)
    assert [m[1] for m in queue.messages] == ["USER-CHANNEL-ID", "BYOD-ENROLLMENT"]


@pytest.mark.parametrize(
    "topic",
    [
        "mdm.UserAuthenticate",
        "mdm.SetBootstrapToken",
        "mdm.GetBootstrapToken",
        "mdm.DeclarativeManagement",
        "mdm.GetToken",
    ],
)
def test_other_checkin_topics_are_acknowledged_and_dropped(queue: MemoryQueue, topic: str) -> None:
    """GAP-16."""
    body = json.dumps({"topic": topic, "checkin_event": {"udid": "DEV-1", "raw_payload": ""}}).encode()
    assert accept_webhook(body, {}, queue=queue, received_at=NOW).status == 200
    assert queue.messages == []


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"event_id": "no topic"}',
        b'{"topic": "mdm.Connect"}',
        b'{"topic": "mdm.Connect", "created_at": "yesterday", "acknowledge_event": {}}',
        b'{"topic": "mdm.Connect", "acknowledge_event": {"udid": "D", "status": "Acknowledged",'
        b' "command_uuid": "U", "raw_payload": "%%%not base64"}}',
        b'{"topic": "mdm.Connect", "acknowledge_event": {"udid": "D", "status": "Acknowledged",'
        b' "command_uuid": "U", "raw_payload": "bm90IGEgcGxpc3Q="}}',
        b'{"topic": "mdm.Connect", "acknowledge_event": {"udid": "", "status": "Idle", "raw_payload": ""}}',
        b'{"topic": "mdm.Connect", "acknowledge_event": {"udid": "D", "status": "Acknowledged",'
        b' "raw_payload": ""}}',
        b'{"topic": "mdm.TokenUpdate", "checkin_event": {"udid": "D", "raw_payload": "",'
        b' "token_update_tally": "1"}}',
        b'{"topic": "mdm.TokenUpdate"}',
        b'{"topic": "mdm.Connect", "acknowledge_event": {"udid": "D", "status": "Idle",'
        b' "url_params": {"a": 1}}}',
    ],
)
def test_malformed_bodies_are_400_with_a_json_error(queue: MemoryQueue, body: bytes) -> None:
    reply = accept_webhook(body, {}, queue=queue, received_at=NOW)
    assert reply.status == 400
    assert json.loads(reply.body)["error"]
    assert queue.messages == []


def test_hmac_signature_required_when_configured(queue: MemoryQueue) -> None:
    body = idle_webhook("DEV-1")
    assert accept_webhook(body, {}, queue=queue, hmac_key="k", received_at=NOW).status == 401
    bad = {"X-Hmac-Signature": sign(body, "other")}
    assert accept_webhook(body, bad, queue=queue, hmac_key="k", received_at=NOW).status == 401
    assert (
        accept_webhook(body, {"X-Hmac-Signature": "!!"}, queue=queue, hmac_key="k", received_at=NOW).status
        == 401
    )
    good = {"x-hmac-signature": sign(body, "k")}
    assert accept_webhook(body, good, queue=queue, hmac_key="k", received_at=NOW).status == 200
    assert len(queue.messages) == 1


def test_large_bodies_go_to_the_blob_store(queue: MemoryQueue) -> None:
    raw = report("U-1", "DEV-1", Padding="x" * MAX_MESSAGE_BYTES)
    body = connect_webhook("DEV-1", "U-1", raw)
    blobs = MemoryBlobs()
    assert accept_webhook(body, {}, queue=queue, blobs=blobs, received_at=NOW).status == 200
    [(text, group, _, _)] = queue.messages
    key = json.loads(text)[BLOB_POINTER]
    assert blobs.get(key) == body and group == "DEV-1"
    assert accept_webhook(body, {}, queue=MemoryQueue(), received_at=NOW).status == 413
