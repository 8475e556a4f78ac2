"""Issue 11 over HTTP on the running local system: an admin follows a rollout (status of a
device, progress of the instance, the history) and stops it, as curl would."""

from __future__ import annotations

from typing import Any

from tests.e2e.client import INVENTORY, call, eventually, sent_commands, start, webhook
from tests.fakes.mdm_server import FakeMDMServer
from tests.fakes.reports import checkin_webhook, connect_webhook, report


def get(stack: Any, path: str) -> Any:
    status, headers, body = call(stack.base_url, "GET", path)
    assert status == 200 and headers["content-type"] == "application/json", (status, body)
    return body


def test_an_admin_follows_a_rollout_and_stops_it(local_stack: Any, fake_mdm: FakeMDMServer) -> None:
    devices = ["ROLL-1", "ROLL-2", "ROLL-3"]
    status, body = start(local_stack, INVENTORY, *devices)
    assert status == 200
    instance_id = body["instance_id"]
    for device in devices:
        sent_commands(fake_mdm, device, 2)

    query = "&".join(f"id={d}" for d in devices)
    device_status = get(local_stack, f"/v1/status?{query}")
    assert set(device_status) == set(devices)
    [step] = device_status["ROLL-1"]["steps"]
    assert step["workflow"] == INVENTORY and step["instance_id"] == instance_id and step["sent_at"]
    assert {c["request_type"] for c in step["commands"]} == {"DeviceInformation", "SecurityInfo"}
    assert all(c["status"] == "Pending" for c in step["commands"])
    assert device_status["ROLL-1"]["running"][0]["instance_id"] == instance_id

    # ROLL-1 says NotNow: the status shows it once the event is processed
    uuid = sent_commands(fake_mdm, "ROLL-1", 2)[0]["CommandUUID"]
    assert webhook(local_stack, connect_webhook("ROLL-1", uuid, report(uuid, "ROLL-1", "NotNow"))) == 200
    eventually(
        lambda: any(
            c["status"] == "NotNow" and c["not_now_count"] == 1
            for c in get(local_stack, "/v1/status?id=ROLL-1")["ROLL-1"]["steps"][0]["commands"]
        )
    )

    progress = get(local_stack, f"/v1/instance/{instance_id}?ids=1&limit=2")
    assert progress["workflow"] == INVENTORY and progress["started_by"] == "api"
    assert progress["counts"]["started"] == 3 and progress["counts"]["in_flight"] == 3
    assert not progress["done"] and len(progress["ids"]) == 2 and progress["next"]
    rest = get(local_stack, f"/v1/instance/{instance_id}?ids=1&limit=2&next={progress['next']}")
    assert {i["id"] for i in progress["ids"] + rest["ids"]} == set(devices)
    assert {i["outcome"] for i in progress["ids"] + rest["ids"]} == {"in_flight"}

    history = get(local_stack, f"/v1/instances?workflow={INVENTORY}")
    assert history["instances"][0]["instance_id"] == instance_id

    # stop ROLL-1 only, then the whole instance
    status, _, cancelled = call(local_stack.base_url, "DELETE", f"/v1/instance/{instance_id}?id=ROLL-1")
    assert (status, cancelled) == (200, {"cancelled_ids": ["ROLL-1"], "not_running_ids": []})
    assert start(local_stack, INVENTORY, "ROLL-1")[0] == 200  # free again at once
    status, _, cancelled = call(local_stack.base_url, "DELETE", f"/v1/instance/{instance_id}")
    assert status == 200 and sorted(cancelled["cancelled_ids"]) == ["ROLL-2", "ROLL-3"]
    done = get(local_stack, f"/v1/instance/{instance_id}")
    assert done["done"] and done["counts"]["cancelled"] == 3 and done["counts"]["in_flight"] == 0

    # the workflow route takes the new instance's step on ROLL-1
    status, _, cancelled = call(local_stack.base_url, "POST", f"/v1/workflow/{INVENTORY}/cancel?id=ROLL-1")
    assert (status, cancelled) == (200, {"cancelled_ids": ["ROLL-1"], "not_running_ids": []})
    assert get(local_stack, "/v1/status?id=ROLL-1")["ROLL-1"] == {"steps": [], "running": []}


def test_status_routes_answer_json_errors(local_stack: Any) -> None:
    base = local_stack.base_url
    assert call(base, "GET", "/v1/status")[0] == 400
    assert call(base, "GET", "/v1/status?id=X", auth=False)[0] == 401
    status, _, body = call(base, "GET", "/v1/instance/no-such-instance")
    assert status == 404 and "error" in body
    assert call(base, "DELETE", "/v1/instance/no-such-instance")[0] == 404
    assert call(base, "GET", "/v1/instances?limit=0")[0] == 400
    assert call(base, "GET", "/v1/instances?next=not-a-token")[0] == 400
    assert call(base, "POST", "/v1/workflow/no.such.workflow/cancel?id=X")[0] == 404


def test_a_user_channel_ends_with_its_devices_check_out(local_stack: Any, fake_mdm: FakeMDMServer) -> None:
    device, channel = "CHAN-DEV", "CHAN-DEV:USER-501"
    assert start(local_stack, INVENTORY, channel)[0] == 200
    sent_commands(fake_mdm, channel, 2)
    assert webhook(local_stack, checkin_webhook("CheckOut", device)) == 200
    eventually(lambda: get(local_stack, f"/v1/status?id={channel}")[channel]["steps"] == [])
    assert start(local_stack, INVENTORY, channel)[0] == 200


def test_a_fleet_start_answers_202_and_reaches_every_device(
    local_stack: Any, fake_mdm: FakeMDMServer
) -> None:
    import json

    ids = [f"FLEET-{n:04d}" for n in range(1200)]
    status, headers, body = call(
        local_stack.base_url,
        "POST",
        f"/v1/workflow/{INVENTORY}/start",
        json.dumps({"ids": ids, "context": "wave-1"}).encode(),
        headers={"Content-Type": "application/json"},
    )
    assert status == 202 and headers["location"] == body["status_url"], body
    progress = eventually(
        lambda: (p := get(local_stack, body["status_url"]))["counts"]["pending"] == 0 and p, timeout=60
    )
    assert progress["counts"]["started"] == 1200 and progress["context"] == "wave-1"
    reached = {i for r in fake_mdm.enqueued() for i in r.ids}
    assert reached >= set(ids)
