"""Issue 12 item 7, the synchronous half: with ``NANOCMD_MICROMDM=true`` a start of many ids gives
each id its own Start and its own commands (the Go NanoCMD got this wrong until nanocmd PR #128),
against the MicroMDM-shaped fake server.

MicroMDM's ``/v1/commands/{udid}`` takes one device per request and keeps no record of
CommandUUIDs, so a UUID reused across ids is accepted silently and the engine could no longer
tell the ids' reports apart: every test here checks that no request names two ids and that no
CommandUUID reaches two ids. The asynchronous start is proven in test_async_start.py.
"""

from __future__ import annotations

import json
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from nanocmd_core.api.app import create_api
from nanocmd_core.config import Settings
from nanocmd_core.engine.engine import Engine
from nanocmd_core.mdm.commands import DeviceInformation, SecurityInfo
from nanocmd_core.mdmserver.client import HTTPMDMServerClient
from nanocmd_core.storage.engine_store import DynamoEngineStore
from nanocmd_core.storage.instance_store import DynamoInstanceStore
from nanocmd_core.storage.models import bind_table
from nanocmd_core.wiring import build_app
from nanocmd_core.workflow import StepStart, WorkflowError
from tests.fakes.mdm_server import FakeMDMServer, RecordedRequest
from tests.fakes.reports import device_information, report, security_info
from tests.integration.test_api import API_KEY, INVENTORY, Api
from tests.support.engine import Harness, Recorder, StepsWorkflow, engine_harness

FLEET = [f"MICRO-{n:04d}" for n in range(250)]


@pytest.fixture
def harness(table_name: str) -> Iterator[Harness]:
    with engine_harness(table_name, micromdm=True) as h:
        h.steps.follow_up = False
        h.commands[:] = [DeviceInformation(queries=["Model"]), SecurityInfo()]  # two commands a step
        yield h


def requests_per_id(requests: list[RecordedRequest]) -> dict[str, list[RecordedRequest]]:
    """The enqueue requests of each id, after checking that none named two ids."""
    per_id: dict[str, list[RecordedRequest]] = defaultdict(list)
    for r in requests:
        assert len(r.ids) == 1, f"one request named several ids: {r.path}"
        assert r.method == "POST" and r.path.startswith("/v1/commands/")
        per_id[r.ids[0]].append(r)
    return per_id


def assert_own_commands(requests: list[RecordedRequest], ids: list[str], request_types: set[str]) -> None:
    """Each id got each command once, in a request of its own, under UUIDs no other id got."""
    per_id = requests_per_id(requests)
    assert sorted(per_id) == sorted(ids)
    for i, sent in per_id.items():
        assert Counter(r.request_type for r in sent) == Counter(dict.fromkeys(request_types, 1)), i
        assert all(r.status == 201 for r in sent)
    owners: dict[str, set[str]] = defaultdict(set)
    for r in requests:
        assert r.command_uuid
        owners[r.command_uuid].add(r.ids[0])
    assert all(len(o) == 1 for o in owners.values()), "a CommandUUID went to two ids"
    assert len(owners) == len(ids) * len(request_types)


def test_a_250_id_start_gives_each_id_its_own_start_and_commands(harness: Harness) -> None:
    engine, mdm, rec = harness.engine, harness.mdm, harness.rec
    result = engine.start_workflow(StepsWorkflow.name, FLEET, b"rollout")
    assert sorted(result.started_ids) == FLEET
    assert (result.skipped_ids, result.failed_ids, result.retrying_ids) == ([], [], [])

    # the workflow's Start ran once per id, with exactly that id, all in the one instance
    assert [s.ids for s in rec.started] == [[i] for i in FLEET]
    assert {s.instance_id for s in rec.started} == {result.instance_id}
    assert all(s.context == "rollout" for s in rec.started)

    assert_own_commands(mdm.enqueued(), FLEET, {"DeviceInformation", "SecurityInfo"})
    assert mdm.pushes() == []  # MicroMDM pushes on every enqueue: no separate push requests
    status = engine.instance_status(result.instance_id)
    assert status is not None
    assert (status.requested, status.counts.started, status.counts.in_flight) == (250, 250, 250)

    # a device answering with another device's CommandUUID completes nothing: the UUID is not its own
    a, b = FLEET[0], FLEET[1]
    for uuid in harness.uuids(a):
        engine.handle_command_report(b, uuid, report(uuid, b))
    assert rec.completed == []

    # every id's reports complete its own step, and only that (every fifth id reports, to keep it quick)
    reporters = FLEET[::5]
    for i in reporters:
        for uuid in harness.uuids(i):
            engine.handle_command_report(i, uuid, report(uuid, i))
    assert sorted(r.id for r in rec.completed) == reporters
    for r in rec.completed:
        assert r.instance_id == result.instance_id
        assert {c.command_uuid for c in r.command_results} == set(harness.uuids(r.id))
    silent = [i for i in FLEET if i not in reporters]
    now = datetime.now(UTC)
    assert engine.store.outstanding(StepsWorkflow.name, silent, now) == silent
    assert engine.store.outstanding(StepsWorkflow.name, reporters, now) == []
    status = engine.instance_status(result.instance_id)
    assert status is not None and not status.done
    assert (status.counts.completed, status.counts.in_flight) == (len(reporters), 250 - len(reporters))


class PickyWorkflow(StepsWorkflow):
    """Refuses to start on the ids in ``refuse``: a per-id verdict only a per-id Start can give."""

    name = "test.wf.picky"
    refuse: frozenset[str] = frozenset()

    def start(self, step: StepStart) -> None:
        if set(step.ids) & self.refuse:
            raise WorkflowError(f"not for {step.ids}")
        super().start(step)


def test_one_id_refused_by_micromdm_or_the_workflow_leaves_the_others_started(harness: Harness) -> None:
    engine, mdm = harness.engine, harness.mdm
    picky = PickyWorkflow(engine, harness.rec, harness.steps.make_commands)
    picky.refuse = frozenset({FLEET[3]})
    engine.register(picky)
    mdm.fail_command_for(FLEET[7], message="device not found")

    result = engine.start_workflow(PickyWorkflow.name, FLEET)
    assert result.failed_ids == [FLEET[3]]  # its own Start refused it; nobody else's
    assert sorted(result.started_ids) == sorted(set(FLEET) - {FLEET[3]})
    assert result.retrying_ids == [FLEET[7]]  # started; the engine sends it again after a backoff
    assert any("device not found" in e for e in result.errors)

    requests = mdm.enqueued()
    refused = [r for r in requests if r.ids == [FLEET[7]]]
    assert refused and all(r.status == 500 for r in refused)
    accepted = [r for r in requests if r.ids != [FLEET[7]]]
    others = [i for i in FLEET if i not in (FLEET[3], FLEET[7])]
    assert_own_commands(accepted, others, {"DeviceInformation", "SecurityInfo"})
    assert mdm.commands_for(FLEET[3]) == [] and mdm.commands_for(FLEET[7]) == []

    status = engine.instance_status(result.instance_id)
    assert status is not None
    assert (status.counts.started, status.counts.failed) == (249, 1)


def test_an_id_the_server_answers_too_slowly_does_not_hold_back_the_others(table_name: str) -> None:
    """A request that times out fails that id's send (retried later), not the start."""
    bind_table(table_name)
    ids = FLEET[:20]
    slow = ids[4]
    with FakeMDMServer(micromdm=True) as mdm:
        client = HTTPMDMServerClient(
            mdm.enqueue_url, mdm.push_url, mdm.api_key, micromdm=True, timeout=0.2, retries=0
        )
        engine = Engine(DynamoEngineStore(), client, instances=DynamoInstanceStore())
        rec = Recorder()
        engine.register(StepsWorkflow(engine, rec, lambda: [DeviceInformation(queries=["Model"])]))
        mdm.slow_for(slow, seconds=5)
        began = time.monotonic()
        try:
            result = engine.start_workflow(StepsWorkflow.name, ids)
        finally:
            mdm.heal()  # answers the held request at once
        assert time.monotonic() - began < 3
        assert sorted(result.started_ids) == sorted(ids) and result.retrying_ids == [slow]
        assert [s.ids for s in rec.started] == [[i] for i in ids]
        others = [i for i in ids if i != slow]
        assert all(len(mdm.commands_for(i)) == 1 for i in others)


@pytest.fixture
def api(table_name: str) -> Iterator[Api]:
    """The API of a MicroMDM deployment, synchronous for the whole fleet."""
    with FakeMDMServer(micromdm=True) as mdm:
        settings = Settings(table_name=table_name, api_key_value=API_KEY, micromdm=True, sync_start_max=400)
        client = HTTPMDMServerClient(mdm.enqueue_url, mdm.push_url, mdm.api_key, micromdm=True, backoff=0.01)
        app = build_app(settings, mdm=client)
        yield Api(app=app, mdm=mdm, resolver=create_api(settings, lambda: app))


def test_the_api_starts_the_inventory_workflow_per_id(api: Api) -> None:
    body = json.dumps({"ids": FLEET + FLEET[:3]}).encode()
    status, _, answer = api.call("POST", f"/v1/workflow/{INVENTORY}/start", body=body)
    assert status == 200 and set(answer) == {"instance_id"}, answer
    instance_id = answer["instance_id"]
    assert_own_commands(api.mdm.enqueued(), FLEET, {"DeviceInformation", "SecurityInfo"})

    status, _, progress = api.call("GET", f"/v1/instance/{instance_id}")
    assert status == 200 and progress["requested"] == 250
    assert progress["counts"]["started"] == 250 and progress["counts"]["in_flight"] == 250

    # each device's answers land in its own inventory and end its own step
    engine = api.app.engine
    reporters = FLEET[:5]
    for n, i in enumerate(reporters):
        by_type = {c["Command"]["RequestType"]: c["CommandUUID"] for c in api.mdm.commands_for(i)}
        info, sec = by_type["DeviceInformation"], by_type["SecurityInfo"]
        engine.handle_command_report(i, info, device_information(info, i, SerialNumber=f"SN{n}"))
        engine.handle_command_report(i, sec, security_info(sec, i, FDE_Enabled=True))
    status, _, inventory = api.call("GET", "/v1/inventory", {"id": reporters + FLEET[5:7]})
    assert status == 200
    assert {i: inventory[i]["serial_number"] for i in reporters} == {
        i: f"SN{n}" for n, i in enumerate(reporters)
    }
    assert FLEET[5] not in inventory and FLEET[6] not in inventory
    status, _, progress = api.call("GET", f"/v1/instance/{instance_id}")
    assert (progress["counts"]["completed"], progress["counts"]["in_flight"]) == (5, 245)
