"""``make run`` keeps its state: stop the whole local system (its own DynamoDB Local, fauxqs and moto,
kept in a data directory) and start it again, as an admin's Ctrl-C and ``make run`` would.

What an admin set up is still there, a workflow running before the stop is still running (a new start
answers 409), a step sent before the stop completes when its device answers after it, and a webhook
accepted before the stop is processed after it. After a wipe (``make run FRESH=1``) nothing is left.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.local.durable import wipe
from infra.local.stack_process import StackProcess
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
from tests.fakes.reports import connect_webhook
from tests.unit.subsystems.profile.profile_fixtures import profile_xml

pytestmark = pytest.mark.slow

PROFILE = profile_xml("com.example.kept", "9E3C2A5B-6B0F-4C1E-9F43-7C1D2B4A5E60")


@pytest.fixture
def fake_mdm() -> Iterator[FakeMDMServer]:
    with FakeMDMServer() as mdm:
        yield mdm


def _stack(data_dir: Path, mdm: FakeMDMServer, *args: str) -> StackProcess:
    """``make run`` on ``data_dir``, in a process of its own: a restart is a new process, as when an
    admin presses Ctrl-C and types ``make run`` again."""
    return StackProcess(
        {
            "NANOCMD_API": API_KEY,
            "NANOCMD_WORKER_INTERVAL": "0",
            "NANOCMD_ENQUEUE_URL": mdm.enqueue_url,
            "NANOCMD_PUSH_URL": mdm.push_url,
            "NANOCMD_ENQUEUE_API": mdm.api_key,
        },
        prefix="nanocmd-restart",
        data_dir=data_dir,
        args=args,
    )


def _answer(stack: StackProcess, mdm: FakeMDMServer, udid: str) -> None:
    di, si = sent_commands(mdm, udid, 2)
    di_raw, si_raw = reply_plists(udid, di["CommandUUID"], si["CommandUUID"])
    for uuid, raw in ((di["CommandUUID"], di_raw), (si["CommandUUID"], si_raw)):
        assert webhook(stack, connect_webhook(udid, uuid, raw)) == 200


def _has_inventory(stack: StackProcess, udid: str) -> bool:
    record = inventory(stack, udid).get(udid) or {}
    return "model" in record and "sip_enabled" in record


def test_state_and_work_in_flight_survive_a_restart(tmp_path: Path, fake_mdm: FakeMDMServer) -> None:
    data = tmp_path / "data"
    done, waiting, late = "KEPT-DONE-1", "KEPT-WAITING-2", "KEPT-LATE-3"
    subscription = {"workflow": INVENTORY, "event": "Enrollment"}
    plan = {"profile_names": ["com.example.kept"], "manifest_urls": []}

    with _stack(data, fake_mdm) as first:
        url = first.base_url
        assert call(url, "PUT", "/v1/profile/com.example.kept", PROFILE)[0] in (200, 204)
        assert call(url, "PUT", "/v1/cmdplan/kept-plan", json.dumps(plan).encode())[0] in (200, 204)
        assert call(url, "PUT", "/v1/event/kept-sub", json.dumps(subscription).encode())[0] in (200, 204)
        status, _, template_before = call(url, "GET", "/v1/fvenable/profiletemplate")
        assert status == 200
        # one device's inventory completes; another's step is sent and left waiting for its device
        assert start(first, INVENTORY, done)[0] == 200
        _answer(first, fake_mdm, done)
        eventually(lambda: _has_inventory(first, done))
        assert start(first, INVENTORY, waiting, late)[0] == 200
        sent_commands(fake_mdm, late, 2)

    # webhooks accepted while nothing processes events (as when the stop came before the worker got
    # to them): the device `late` answers now, the stack stops before a single event is handled
    with _stack(data, fake_mdm, "--events-concurrency", "0") as paused:
        _answer(paused, fake_mdm, late)
        assert paused.queue_depths() == (2, 0)
        assert late not in inventory(paused, late)

    with _stack(data, fake_mdm) as second:
        url = second.base_url
        assert _has_inventory(second, done)
        status, _, profile = call(url, "GET", "/v1/profile/com.example.kept")
        assert status == 200 and b"com.example.kept" in (
            profile if isinstance(profile, bytes) else json.dumps(profile).encode()
        )
        status, _, kept_plan = call(url, "GET", "/v1/cmdplan/kept-plan")
        assert status == 200 and kept_plan["profile_names"] == ["com.example.kept"]
        status, _, kept_sub = call(url, "GET", "/v1/event/kept-sub")
        assert status == 200 and kept_sub["workflow"] == INVENTORY
        # the FileVault key pair is the same one: keys escrowed before can still be read
        assert call(url, "GET", "/v1/fvenable/profiletemplate")[2] == template_before

        # the webhooks accepted before the restart are processed after it
        eventually(lambda: _has_inventory(second, late))
        # the step sent before the restart is still running, and ends when its device answers
        assert start(second, INVENTORY, waiting) == (
            409,
            {"error": "workflow already started on 1 (of 1) ids"},
        )
        _answer(second, fake_mdm, waiting)
        eventually(lambda: _has_inventory(second, waiting))
        assert eventually(lambda: start(second, INVENTORY, waiting)[0] == 200)

    # the documented clean slate (make run FRESH=1 wipes the data directory): nothing is left
    wipe(data)
    with _stack(data, fake_mdm) as fresh:
        assert call(fresh.base_url, "GET", "/v1/profile/com.example.kept")[0] == 404
        assert inventory(fresh, done) == {}
        assert start(fresh, INVENTORY, waiting)[0] == 200


def test_a_fleet_start_stopped_midway_finishes_after_a_restart(
    tmp_path: Path, fake_mdm: FakeMDMServer
) -> None:
    """Ctrl-C while the chunks of a 2,400-id asynchronous start are being worked through: the
    consumer finishes the batch in hand (a chunk it has no time for goes back to the durable queue)
    and the chunks it never received stay queued; after ``make run`` again every id gets its
    commands exactly once and the counts add up."""
    data = tmp_path / "data"
    ids = [f"MIDWAY-{n:04d}" for n in range(2400)]  # 12 chunks of 200: more than a batch of 10
    body = json.dumps({"ids": ids}).encode()
    with _stack(data, fake_mdm, "--events-concurrency", "1") as first:
        status, _, accepted = call(
            first.base_url,
            "POST",
            f"/v1/workflow/{INVENTORY}/start",
            body,
            headers={"Content-Type": "application/json"},
        )
        assert status == 202, accepted
        # stop as soon as the first chunk's commands are at the MDM server, the others not all done
        fake_mdm.wait_for(lambda: fake_mdm.commands_for(ids[0]), timeout=30)
    before = sum(1 for i in ids if fake_mdm.commands_for(i))
    assert 0 < before < len(ids), f"the stop came after {before} ids: not midway"

    with _stack(data, fake_mdm) as second:
        path = accepted["status_url"]
        progress = eventually(
            lambda: (p := call(second.base_url, "GET", path)[2])["counts"]["pending"] == 0 and p, timeout=120
        )
        assert progress["counts"]["started"] == len(ids), progress["counts"]
        assert progress["counts"]["failed"] == progress["counts"]["skipped"] == 0
        sent = {i: [c["Command"]["RequestType"] for c in fake_mdm.commands_for(i)] for i in ids}
        assert all(sorted(kinds) == ["DeviceInformation", "SecurityInfo"] for kinds in sent.values()), [
            (i, k) for i, k in sent.items() if sorted(k) != ["DeviceInformation", "SecurityInfo"]
        ][:5]
