"""The running local system driven over HTTP exactly as NanoMDM and an admin's scripts would:
webhooks in, commands out to a fake MDM server, results read back through the API."""

from __future__ import annotations

import json
import plistlib
from typing import Any

import pytest

from tests.e2e.client import (
    DEVINFOLOG,
    INVENTORY,
    SHARED,
    call,
    eventually,
    inventory,
    reply_plists,
    sent_commands,
    start,
    webhook,
)
from tests.fakes.mdm_server import FakeMDMServer
from tests.fakes.reports import checkin_webhook, connect_webhook, device_information, report


def tokenupdate_body(udid: str) -> bytes:
    path = SHARED / "mdm" / "foss" / "testdata" / "tokenupdate.json"
    if path.is_file():
        doc = json.loads(path.read_text())
        doc["checkin_event"]["udid"] = udid
        return json.dumps(doc).encode()
    return checkin_webhook("TokenUpdate", udid, tally=1)


@pytest.mark.parametrize("order", ["devinfo-first", "secinfo-first"])
def test_inventory_workflow_end_to_end(local_stack: Any, fake_mdm: FakeMDMServer, order: str) -> None:
    udid = "FF269FDC-7A93-5F12-A4B7-09923F0D1F7F"
    assert webhook(local_stack, tokenupdate_body(udid)) == 200

    status, body = start(local_stack, INVENTORY, udid)
    assert status == 200 and set(body) == {"instance_id"}
    di, si = sent_commands(fake_mdm, udid, 2)
    assert [di["Command"]["RequestType"], si["Command"]["RequestType"]] == [
        "DeviceInformation",
        "SecurityInfo",
    ]
    requests = fake_mdm.enqueued()
    assert all(r.auth_ok and r.method == "PUT" for r in requests)

    di_raw, si_raw = reply_plists(udid, di["CommandUUID"], si["CommandUUID"])
    replies = [(di["CommandUUID"], di_raw), (si["CommandUUID"], si_raw)]
    if order == "secinfo-first":
        replies.reverse()
    for uuid, raw in replies:
        assert webhook(local_stack, connect_webhook(udid, uuid, raw, url_params={"group": "staff"})) == 200

    record = eventually(
        lambda: (r := inventory(local_stack, udid).get(udid)) and "model" in r and "sip_enabled" in r and r
    )
    assert record["model"] == "MacBookPro11,3"
    assert record["sip_enabled"] is True and record["fde_enabled"] is False
    assert record["last_source"] in {"DeviceInformation", "SecurityInfo"}
    # the step is over: the exclusive workflow can start again for this id
    assert eventually(lambda: start(local_stack, INVENTORY, udid)[0] == 200)
    assert inventory(local_stack, "someone-else") == {}


def test_notnow_then_acknowledged(local_stack: Any, fake_mdm: FakeMDMServer) -> None:
    udid = "NOTNOW-DEVICE"
    assert start(local_stack, DEVINFOLOG, udid)[0] == 200
    [command] = sent_commands(fake_mdm, udid, 1)
    uuid = command["CommandUUID"]
    assert webhook(local_stack, connect_webhook(udid, uuid, report(uuid, udid, "NotNow"))) == 200
    assert local_stack.wait_queue_empty()
    status, body = start(local_stack, DEVINFOLOG, udid)
    assert (status, body) == (409, {"error": "workflow already started on 1 (of 1) ids"})
    assert webhook(local_stack, connect_webhook(udid, uuid, device_information(uuid, udid, Model="M"))) == 200
    assert eventually(lambda: start(local_stack, DEVINFOLOG, udid)[0] == 200)


def test_untracked_reports_are_accepted_and_ignored(local_stack: Any, fake_mdm: FakeMDMServer) -> None:
    udid = "UNTRACKED-DEVICE"
    body = connect_webhook(
        udid, "not-a-command-of-ours", device_information("not-a-command-of-ours", udid, Model="X")
    )
    assert webhook(local_stack, body) == 200
    assert local_stack.wait_queue_empty()
    assert inventory(local_stack, udid) == {}
    assert fake_mdm.enqueued() == []


def test_a_hundred_ids_in_one_start(local_stack: Any, fake_mdm: FakeMDMServer) -> None:
    ids = [f"FLEET-{i:03d}" for i in range(100)]
    query = "&".join(f"id={i}" for i in ids)
    status, _, body = call(local_stack.base_url, "POST", f"/v1/workflow/{INVENTORY}/start?{query}")
    assert status == 200 and "instance_id" in body
    requests = fake_mdm.enqueued()
    assert sorted(len(r.ids) for r in requests) == [10, 10, 30, 30, 30, 30, 30, 30]
    assert all(r.command is not None for r in requests)  # every chunk carries its command (GAP-10)
    assert len({r.command_uuid for r in requests}) == len(requests)  # NanoMDM stores a UUID once
    for enrollment_id in ids:
        assert [c["Command"]["RequestType"] for c in fake_mdm.commands_for(enrollment_id)] == [
            "DeviceInformation",
            "SecurityInfo",
        ]
    # a device past the first chunk answers under its chunk's UUIDs and still completes
    late = ids[77]
    di, si = fake_mdm.commands_for(late)
    di_raw, si_raw = reply_plists(late, di["CommandUUID"], si["CommandUUID"])
    webhook(local_stack, connect_webhook(late, di["CommandUUID"], di_raw))
    webhook(local_stack, connect_webhook(late, si["CommandUUID"], si_raw))
    record = eventually(
        lambda: inventory(local_stack, late).get(late, {}).get("model") and inventory(local_stack, late)[late]
    )
    assert record["model"] == "MacBookPro11,3"


def test_mdm_server_answering_500(local_stack: Any, fake_mdm: FakeMDMServer) -> None:
    fake_mdm.fail_always(500)
    status, body = start(local_stack, INVENTORY, "FAILING-DEVICE")
    assert status == 502
    assert body["retrying_ids"] == ["FAILING-DEVICE"] and "retries" in body["error"]
    assert fake_mdm.enqueued() and all(r.status == 500 for r in fake_mdm.enqueued())
    fake_mdm.heal()
    # the step is kept for the engine's retry, so the exclusive workflow is still running
    assert start(local_stack, INVENTORY, "FAILING-DEVICE")[0] == 409


def test_webhook_and_api_errors_over_http(local_stack: Any) -> None:
    base = local_stack.base_url
    assert call(base, "POST", "/webhook", b"{not json", auth=False)[0] == 400
    status, headers, body = call(base, "POST", "/webhook", b'{"topic": "mdm.Connect"}', auth=False)
    assert status == 400 and headers["content-type"] == "application/json" and body["error"]
    assert webhook(local_stack, checkin_webhook("UserAuthenticate", "D")) == 200
    status, headers, body = call(base, "GET", "/version", auth=False)
    assert status == 200 and "version" in body
    status, headers, body = call(base, "POST", f"/v1/workflow/{INVENTORY}/start?id=A", auth=False)
    assert status == 401 and headers["www-authenticate"] == 'Basic realm="nanocmd"'
    status, _, body = call(base, "POST", "/v1/workflow/io.example.nope/start?id=A")
    assert (status, body) == (404, {"error": "no such workflow: io.example.nope"})
    status, _, body = call(base, "POST", f"/v1/workflow/{INVENTORY}/start")
    assert (status, body) == (400, {"error": "no IDs provided"})


def test_check_out_frees_the_enrollment(local_stack: Any, fake_mdm: FakeMDMServer) -> None:
    udid = "CHECKOUT-DEVICE"
    assert start(local_stack, DEVINFOLOG, udid)[0] == 200
    assert start(local_stack, DEVINFOLOG, udid)[0] == 409
    assert webhook(local_stack, checkin_webhook("CheckOut", udid)) == 200
    assert eventually(lambda: start(local_stack, DEVINFOLOG, udid)[0] == 200)


def test_a_delayed_step_goes_out_through_its_one_time_schedule(
    local_stack: Any, fake_mdm: FakeMDMServer
) -> None:
    """design.md §1, §5: the engine creates an EventBridge Scheduler one-time schedule; the local
    stack fires it into the events queue; the events function sends the step, once."""
    import sys
    from datetime import UTC, datetime, timedelta

    from nanocmd_core.mdm.commands import SecurityInfo
    from nanocmd_core.workflow import StepEnqueueing

    engine = sys.modules["nanocmd_fn_events"]._app().engine  # the running events function's engine
    assert engine.scheduler is not None
    engine.enqueue_step(
        "io.example.delayed",
        StepEnqueueing(
            instance_id="i-1",
            ids=["DELAYED-DEVICE"],
            commands=[SecurityInfo()],
            not_until=datetime.now(UTC) + timedelta(seconds=2),
        ),
    )
    assert fake_mdm.commands_for("DELAYED-DEVICE") == []
    [command] = sent_commands(fake_mdm, "DELAYED-DEVICE", 1)
    assert command["Command"]["RequestType"] == "SecurityInfo"
    assert local_stack.wait_queue_empty()
    assert local_stack.sweep()["sent"] == 0  # the sweep's safety net finds nothing left to send
    assert len(fake_mdm.commands_for("DELAYED-DEVICE")) == 1


def test_a_poison_event_lands_in_the_dead_letter_queue(local_stack: Any, fake_mdm: FakeMDMServer) -> None:
    """design.md §3.3: a webhook answered 200 is processed or lands in the dead-letter queue. A
    report that cannot be decoded for its request type fails every try (5), then is parked."""
    import boto3

    udid = "POISON-DEVICE"
    assert start(local_stack, DEVINFOLOG, udid)[0] == 200
    [command] = sent_commands(fake_mdm, udid, 1)
    uuid = command["CommandUUID"]
    broken = plistlib.dumps(
        {"CommandUUID": uuid, "Status": "Acknowledged", "UDID": udid, "QueryResponses": "not a dictionary"}
    )
    assert webhook(local_stack, connect_webhook(udid, uuid, broken)) == 200
    assert local_stack.wait_queue_empty(timeout=60)
    dlq = local_stack.provisioned.ref("EventsDeadLetterQueue")
    sqs = boto3.client("sqs")
    # the move to the DLQ happens on the receive after the last try: poll until it is there
    messages = eventually(
        lambda: sqs.receive_message(
            QueueUrl=dlq, MaxNumberOfMessages=10, AttributeNames=["All"], WaitTimeSeconds=1
        ).get("Messages"),
        timeout=60,
    )
    [parked] = messages
    assert json.loads(parked["Body"])["acknowledge_event"]["command_uuid"] == uuid
    assert parked["Attributes"]["MessageGroupId"] == udid
    # the step was not consumed by the failures: a good report still completes it
    good = device_information(uuid, udid, Model="M")
    assert webhook(local_stack, connect_webhook(udid, uuid, good)) == 200
    assert eventually(lambda: start(local_stack, DEVINFOLOG, udid)[0] == 200)
