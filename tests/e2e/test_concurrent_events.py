"""The local event source mapping runs several batches at once, as Lambda scales a FIFO queue's
consumers: one slow device does not hold back the fleet, and the engine's guarantees hold while
consumers, the sweeper and API starts run side by side in different processes."""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
from typing import Any

import pytest

from tests.e2e.client import (
    INVENTORY,
    call,
    eventually,
    inventory,
    reply_plists,
    sent_commands,
    start,
    webhook,
)
from tests.e2e.conftest import API_KEY
from tests.fakes.mdm_server import FakeMDMServer
from tests.fakes.reports import checkin_webhook, connect_webhook, report
from tests.unit.subsystems.profile.profile_fixtures import profile_xml

pytestmark = pytest.mark.slow

CERTPROF = "io.micromdm.wf.certprof.v1"
PROFILE = profile_xml("com.example.identity", "1B0E7C4A-2D3F-4E5A-8B6C-7D8E9F0A1B2C")


@pytest.fixture
def local_stack_env() -> dict[str, str]:
    return {
        "NANOCMD_API": API_KEY,
        "NANOCMD_WORKER_INTERVAL": "0",
        "NANOCMD_LOCAL_EVENTS_CONCURRENCY": "4",
    }


@pytest.fixture
def local_stack_options() -> dict[str, Any]:
    """HTTP served by two gateway processes, as make run does (Lambda scales the intake too)."""
    return {"gateway_processes": 2}


def _answer_inventory(stack: Any, mdm: FakeMDMServer, udid: str) -> None:
    di, si = sent_commands(mdm, udid, 2)
    di_raw, si_raw = reply_plists(udid, di["CommandUUID"], si["CommandUUID"])
    for uuid, raw in ((di["CommandUUID"], di_raw), (si["CommandUUID"], si_raw)):
        assert webhook(stack, connect_webhook(udid, uuid, raw)) == 200


def test_a_slow_device_does_not_hold_back_the_fleet(local_stack: Any, fake_mdm: FakeMDMServer) -> None:
    slow = "SLOW-ENROLLING-DEVICE"
    fleet = [f"FAST-{i:02d}" for i in range(20)]
    subscription = json.dumps({"event": "Enrollment", "workflow": INVENTORY}).encode()
    assert call(local_stack.base_url, "PUT", "/v1/event/enroll", subscription)[0] in (200, 204)
    # the slow device's enrollment starts its inventory from the events function, whose enqueue to
    # the MDM server then hangs (until heal): that consumer is busy for as long
    fake_mdm.slow_for(slow, seconds=60)
    assert webhook(local_stack, checkin_webhook("TokenUpdate", slow, tally=1)) == 200
    time.sleep(1)  # a consumer has it in hand (they long-poll the queue)

    assert start(local_stack, INVENTORY, *fleet)[0] == 200
    threads = [threading.Thread(target=_answer_inventory, args=(local_stack, fake_mdm, u)) for u in fleet]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)

    def fleet_done() -> bool:
        records = inventory(local_stack, *fleet)
        return all("model" in records.get(u, {}) and "sip_enabled" in records.get(u, {}) for u in fleet)

    eventually(fleet_done, timeout=30)
    # the whole fleet was done while the slow device's enqueue was still under way
    assert fake_mdm.commands_for(slow) == []
    # and the slow device gets its commands once its server round-trip ends
    fake_mdm.heal()
    assert len(sent_commands(fake_mdm, slow, 2)) == 2


def test_each_step_ends_once_with_racing_consumers_sweeps_and_starts(
    local_stack: Any, fake_mdm: FakeMDMServer
) -> None:
    """certprof's first step (CertificateList) leads to an InstallProfile step when it completes: a
    step ending twice would send two. Each device answers NotNow, then its final answer twice (with
    different bodies, so the queue's deduplication does not hide the repeat), while the sweeper runs
    and new starts for the same ids race the step's end."""
    ids = [f"RACE-{i:02d}" for i in range(24)]
    assert call(local_stack.base_url, "PUT", "/v1/profile/com.example.identity", PROFILE)[0] in (200, 204)
    context = urllib.parse.quote(
        json.dumps({"profile": "com.example.identity", "filter": {"cn_prefix": "device-"}})
    )
    query = "&".join(f"id={i}" for i in ids)
    path = f"/v1/workflow/{CERTPROF}/start?{query}&context={context}"
    status, _, body = call(local_stack.base_url, "POST", path)
    assert status == 200, body

    stop = threading.Event()
    busy_starts: list[int] = []

    def sweep_and_start() -> None:
        while not stop.is_set():
            local_stack.sweep()
            status, _, _ = call(local_stack.base_url, "POST", f"/v1/workflow/{CERTPROF}/start?id={ids[0]}")
            busy_starts.append(status)

    racer = threading.Thread(target=sweep_and_start)
    racer.start()

    def answer(udid: str) -> None:
        [command] = sent_commands(fake_mdm, udid, 1)
        uuid = command["CommandUUID"]
        assert webhook(local_stack, connect_webhook(udid, uuid, report(uuid, udid, "NotNow"))) == 200
        final = report(uuid, udid, CertificateList=[])
        for n in range(2):
            assert webhook(local_stack, connect_webhook(udid, uuid, final, url_params={"n": str(n)})) == 200

    try:
        threads = [threading.Thread(target=answer, args=(u,)) for u in ids]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert local_stack.wait_queue_empty(timeout=30)
    finally:
        stop.set()
        racer.join(30)

    def installs(udid: str) -> list[dict[str, Any]]:
        return [c for c in fake_mdm.commands_for(udid) if c["Command"]["RequestType"] == "InstallProfile"]

    eventually(lambda: all(installs(u) for u in ids), timeout=30)
    assert {u: len(installs(u)) for u in ids} == dict.fromkeys(ids, 1)
    # while the instance ran (its InstallProfile steps are still unanswered), every racing start for
    # one of its ids was refused: exclusivity held
    assert busy_starts and set(busy_starts) == {409}
