"""The engine against DynamoDB Local and a fake MDM server over real HTTP.

Rule ids (ST-n, EQ-n, CR-n, CT-n, GAP-n) are those of the spec's engine.md.
"""

from __future__ import annotations

import plistlib
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest

from nanocmd_core.engine.engine import (
    AlreadyStartedError,
    Engine,
    InvalidIDsError,
    NoSuchWorkflowError,
    StartError,
    StepError,
)
from nanocmd_core.mdm.commands import DeviceInformation, SecurityInfo
from nanocmd_core.mdm.responses import DeviceInformationResponse, SecurityInfoResponse
from nanocmd_core.mdmserver.client import HTTPMDMServerClient
from nanocmd_core.storage.engine_store import DynamoEngineStore
from nanocmd_core.storage.models import bind_table
from nanocmd_core.workflow import (
    EventFlag,
    MDMContext,
    WorkflowError,
)
from tests.fakes.mdm_server import FakeMDMServer
from tests.fakes.reports import device_information, error_report, report, security_info
from tests.support.engine import AllResponses, Harness, MultiWorkflow, Recorder, StepsWorkflow, engine_harness

DEVICE = "D1-UDID"


@pytest.fixture
def harness(table_name: str) -> Iterator[Harness]:
    with engine_harness(table_name) as h:
        yield h


def test_start_sends_the_step_and_a_final_report_completes_it_with_context(harness: Harness) -> None:
    """ST-7, EQ-4/5, CR-4, CR-10: the workflow gets the typed result and its stored context."""
    result = harness.engine.start_workflow(StepsWorkflow.name, [DEVICE], b"hello")
    assert result.started_ids == [DEVICE]
    sent = harness.sent(DEVICE)
    assert [c["Command"]["RequestType"] for c in sent] == ["DeviceInformation"]
    uuid = sent[0]["CommandUUID"]

    harness.engine.handle_command_report(
        DEVICE, uuid, device_information(uuid, DEVICE, Model="Mac14,2"), MDMContext({"group": "staff"})
    )

    [done] = harness.rec.completed
    assert done.id == DEVICE and done.instance_id == result.instance_id and done.name == ""
    assert done.context == "ctx:hello"
    assert done.mdm_context == MDMContext({"group": "staff"})  # CR-11
    [info] = done.command_results
    assert isinstance(info, DeviceInformationResponse)
    assert info.query_responses.model == "Mac14,2"
    assert info.command_uuid == uuid


def test_follow_up_step_keeps_the_lock_and_its_own_context(harness: Harness) -> None:
    """GAP-3: between a step completing and the next being sent the id stays busy."""
    harness.engine.start_workflow(StepsWorkflow.name, [DEVICE])
    first = harness.uuids(DEVICE)[0]
    harness.engine.handle_command_report(DEVICE, first, report(first, DEVICE))
    with pytest.raises(AlreadyStartedError):
        harness.engine.start_workflow(StepsWorkflow.name, [DEVICE])
    second = harness.uuids(DEVICE)[1]
    assert harness.sent(DEVICE)[1]["Command"]["RequestType"] == "SecurityInfo"
    harness.engine.handle_command_report(DEVICE, second, security_info(second, DEVICE))
    assert [r.name for r in harness.rec.completed] == ["", "two"]
    assert harness.rec.completed[1].context == "second"
    # the instance has no step left: a new start is allowed again
    assert harness.engine.start_workflow(StepsWorkflow.name, [DEVICE]).started_ids == [DEVICE]


def test_notnow_does_not_complete_then_acknowledged_does(harness: Harness) -> None:
    """CT-23, CR-4: NotNow is not an answer; the result holds the Acknowledged report."""
    harness.commands = [SecurityInfo()]
    harness.engine.start_workflow(StepsWorkflow.name, [DEVICE])
    uuid = harness.uuids(DEVICE)[0]
    harness.engine.handle_command_report(DEVICE, uuid, report(uuid, DEVICE, "NotNow"))
    assert harness.rec.completed == []
    harness.engine.handle_command_report(DEVICE, uuid, security_info(uuid, DEVICE, FDE_Enabled=True))
    [done] = harness.rec.completed
    [info] = done.command_results
    assert isinstance(info, SecurityInfoResponse)
    assert info.status == "Acknowledged" and info.security_info.fde_enabled is True


@pytest.mark.parametrize("order", [(0, 1), (1, 0)])
def test_multi_command_step_completes_once_all_commands_answered_in_any_order(
    harness: Harness, order: tuple[int, int]
) -> None:
    """CR-7, CT-5, DM-7: both results delivered together, whichever report comes last."""
    harness.commands = [DeviceInformation(queries=["Model"]), SecurityInfo()]
    harness.engine.start_workflow(StepsWorkflow.name, [DEVICE])
    uuids = harness.uuids(DEVICE)
    reports = [device_information(uuids[0], DEVICE, Model="M"), security_info(uuids[1], DEVICE)]
    first, last = order
    harness.engine.handle_command_report(DEVICE, uuids[first], reports[first])
    assert harness.rec.completed == []
    harness.engine.handle_command_report(DEVICE, uuids[last], reports[last])
    [done] = harness.rec.completed
    assert {type(r) for r in done.command_results} == {DeviceInformationResponse, SecurityInfoResponse}
    assert {r.command_uuid for r in done.command_results} == set(uuids)


def test_error_status_is_final(harness: Harness) -> None:
    """CR-4: Error completes a command; the workflow sees the error chain."""
    harness.engine.start_workflow(StepsWorkflow.name, [DEVICE])
    uuid = harness.uuids(DEVICE)[0]
    harness.engine.handle_command_report(DEVICE, uuid, error_report(uuid, DEVICE))
    [done] = harness.rec.completed
    assert done.command_results[0].status == "Error"
    assert done.command_results[0].error_chain


def test_untracked_and_repeated_reports_are_ignored(harness: Harness) -> None:
    """CR-2, CR-13, CT-3(c), CT-4: nothing happens, nothing is delivered twice."""
    harness.engine.handle_command_report(DEVICE, "not-ours", report("not-ours", DEVICE))
    harness.engine.start_workflow(StepsWorkflow.name, [DEVICE])
    uuid = harness.uuids(DEVICE)[0]
    harness.engine.handle_command_report("OTHER-DEVICE", uuid, report(uuid, "OTHER-DEVICE"))
    assert harness.rec.completed == []
    harness.engine.handle_command_report(DEVICE, uuid, report(uuid, DEVICE))
    harness.engine.handle_command_report(DEVICE, uuid, report(uuid, DEVICE))
    assert len(harness.rec.completed) == 1


def test_each_id_of_a_multi_id_step_completes_on_its_own(harness: Harness) -> None:
    """MI-1, MI-4: one completion per id; a finished id is no longer busy."""
    ids = ["A", "B", "C"]
    harness.engine.start_workflow(MultiWorkflow.name, ids)
    uuid = harness.uuids("A")[0]
    assert harness.uuids("B") == [uuid] and harness.uuids("C") == [uuid]  # one request, one UUID
    assert len(harness.mdm.enqueued()) == 1
    harness.engine.handle_command_report("B", uuid, report(uuid, "B"))
    assert [r.id for r in harness.rec.completed] == ["B"]
    harness.engine.handle_command_report("A", uuid, report(uuid, "A"))
    assert [r.id for r in harness.rec.completed] == ["B", "A"]


def test_exclusive_start_partial_and_all_busy(harness: Harness) -> None:
    """ST-3, ST-4, GAP-14: busy ids are skipped and reported; all busy is an error."""
    harness.engine.start_workflow(StepsWorkflow.name, ["A"])
    partial = harness.engine.start_workflow(StepsWorkflow.name, ["A", "B"])
    assert partial.started_ids == ["B"] and partial.skipped_ids == ["A"]
    with pytest.raises(AlreadyStartedError, match=r"workflow already started on 2 \(of 2\) ids"):
        harness.engine.start_workflow(StepsWorkflow.name, ["B", "A", "A"])


def test_multiple_simultaneous_workflows_are_not_locked(harness: Harness) -> None:
    first = harness.engine.start_workflow(MultiWorkflow.name, [DEVICE])
    second = harness.engine.start_workflow(MultiWorkflow.name, [DEVICE])
    assert first.instance_id != second.instance_id
    assert len(harness.sent(DEVICE)) == 2


def test_fifty_concurrent_exclusive_starts_yield_one_instance(harness: Harness) -> None:
    """ST-2..4 with GAP-1 fixed, design.md §3.1, CT-27: 50 racing starts for one id (threads, real
    DynamoDB Local), exactly one running instance."""
    barrier = threading.Barrier(50)

    def start(_: int) -> str | None:
        barrier.wait()
        try:
            return harness.engine.start_workflow(StepsWorkflow.name, [DEVICE]).instance_id
        except AlreadyStartedError:
            return None

    with ThreadPoolExecutor(max_workers=50) as pool:
        winners = [i for i in pool.map(start, range(50)) if i]
    assert len(winners) == 1
    assert len(harness.sent(DEVICE)) == 1
    assert [s.instance_id for s in harness.rec.started] == winners


def test_starts_racing_a_completing_step_never_overlap(harness: Harness) -> None:
    """design.md §3.1: the lock is held until the instance has no step left, so starts racing
    the last report of the running instance either fail or begin after it ended: never two."""
    harness.steps.follow_up = False
    for round_ in range(3):
        device = f"RACE-START-{round_}"
        first = harness.engine.start_workflow(StepsWorkflow.name, [device]).instance_id
        uuid = harness.uuids(device)[0]
        barrier = threading.Barrier(11)

        def finish(device: str = device, uuid: str = uuid, barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            harness.engine.handle_command_report(device, uuid, report(uuid, device))

        def start(device: str = device, barrier: threading.Barrier = barrier) -> str | None:
            barrier.wait()
            try:
                return harness.engine.start_workflow(StepsWorkflow.name, [device]).instance_id
            except AlreadyStartedError:
                return None

        with ThreadPoolExecutor(max_workers=11) as pool:
            done = pool.submit(finish)
            starts = [pool.submit(start) for _ in range(10)]
            done.result()
            winners = [i for f in starts if (i := f.result())]
        assert len(winners) <= 1
        assert harness.engine.store.outstanding(StepsWorkflow.name, [device], datetime.now(UTC)) == (
            [device] if winners else []
        )
        instances = [s.instance_id for s in harness.rec.started if s.ids == [device]]
        assert instances == [first, *winners]
        assert len(harness.sent(device)) == 1 + len(winners)


def test_concurrent_final_reports_deliver_once(harness: Harness) -> None:
    """GAP-2, CT-27: two final reports of a 2-command step racing, one StepCompleted."""
    harness.commands = [DeviceInformation(queries=["Model"]), SecurityInfo()]
    for round_ in range(5):
        device = f"RACE-{round_}"
        harness.engine.start_workflow(StepsWorkflow.name, [device])
        u = harness.uuids(device)
        reports = [(u[0], device_information(u[0], device)), (u[1], security_info(u[1], device))] * 2
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(lambda r, d=device: harness.engine.handle_command_report(d, r[0], r[1]), reports))
        assert [r.id for r in harness.rec.completed].count(device) == 1


def test_start_errors(harness: Harness) -> None:
    """ST-1, GAP-15, GAP-21, EQ-3."""
    with pytest.raises(NoSuchWorkflowError, match=r"no such workflow: io\.example"):
        harness.engine.start_workflow("io.example", [DEVICE])
    with pytest.raises(InvalidIDsError):
        harness.engine.start_workflow(StepsWorkflow.name, [])
    with pytest.raises(InvalidIDsError):
        harness.engine.start_workflow(StepsWorkflow.name, [DEVICE, ""])
    with pytest.raises(StartError, match="starting workflow: not startable") as info:
        harness.engine.start_workflow(AllResponses.name, [DEVICE])
    assert info.value.client_error
    # a rejected start leaves nothing behind: the lock was released
    harness.commands = [SecurityInfo(), SecurityInfo(command_uuid="dup")]
    harness.commands[0] = SecurityInfo(command_uuid="dup")
    with pytest.raises(StartError, match="duplicate command uuid"):
        harness.engine.start_workflow(StepsWorkflow.name, [DEVICE])
    harness.commands = [SecurityInfo()]
    assert harness.engine.start_workflow(StepsWorkflow.name, [DEVICE]).started_ids == [DEVICE]


def test_duplicate_ids_collapse_in_first_seen_order(harness: Harness) -> None:
    """GAP-15."""
    result = harness.engine.start_workflow(MultiWorkflow.name, ["B", "A", "B"])
    assert result.started_ids == ["B", "A"]
    [request] = harness.mdm.enqueued()
    assert request.ids == ["B", "A"]


def test_enqueue_validation(harness: Harness) -> None:
    from nanocmd_core.workflow import StepEnqueueing

    with pytest.raises(StepError):
        harness.engine.enqueue_step(
            "", StepEnqueueing(instance_id="i", ids=[DEVICE], commands=[SecurityInfo()])
        )
    with pytest.raises(StepError):
        harness.engine.enqueue_step(
            "wf", StepEnqueueing(instance_id="", ids=[DEVICE], commands=[SecurityInfo()])
        )
    with pytest.raises(StepError):
        harness.engine.enqueue_step("wf", StepEnqueueing(instance_id="i", ids=[], commands=[SecurityInfo()]))
    with pytest.raises(StepError):
        harness.engine.enqueue_step("wf", StepEnqueueing(instance_id="i", ids=[DEVICE], commands=[]))
    assert harness.mdm.enqueued() == []


def test_tracked_pair_cannot_be_stored_twice(harness: Harness) -> None:
    """SC-3/EQ-4: a command UUID already tracked for an id is rejected and nothing is stored."""
    from nanocmd_core.workflow import StepEnqueueing

    harness.engine.enqueue_step(
        "wf", StepEnqueueing(instance_id="i", ids=["A"], commands=[SecurityInfo(command_uuid="U1")])
    )
    with pytest.raises(StepError, match="already tracked"):
        harness.engine.enqueue_step(
            "wf", StepEnqueueing(instance_id="j", ids=["B", "A"], commands=[SecurityInfo(command_uuid="U1")])
        )
    # B was rolled back: a report for it is untracked
    assert harness.engine.store.lookup_command("B", "U1") is None
    assert harness.engine.store.lookup_command("A", "U1") is not None


def test_a_command_enqueued_again_is_looked_up_though_it_drew_its_own_uuid(harness: Harness) -> None:
    """SC-3 holds without its lookup for fresh UUIDs (engine/fresh_uuids.py): the same command
    object, or a copy of it, enqueued again for an id whose step holds it is rejected."""
    from nanocmd_core.workflow import StepEnqueueing

    command = SecurityInfo()  # its UUID drawn by its own default factory
    harness.engine.enqueue_step("wf", StepEnqueueing(instance_id="i", ids=["A"], commands=[command]))
    for again in (command, command.model_copy()):
        with pytest.raises(StepError, match="already tracked"):
            harness.engine.enqueue_step("wf", StepEnqueueing(instance_id="j", ids=["A"], commands=[again]))
    tracked = harness.engine.store.lookup_command("A", command.command_uuid)
    assert tracked is not None and tracked.request_type == "SecurityInfo"
    # a fresh command for the same id stores and is tracked beside the first
    fresh = SecurityInfo()
    harness.engine.enqueue_step("wf", StepEnqueueing(instance_id="k", ids=["A"], commands=[fresh]))
    assert harness.engine.store.lookup_command("A", fresh.command_uuid) is not None


def test_more_than_thirty_ids_are_chunked_with_a_uuid_per_chunk(harness: Harness) -> None:
    """design.md §6, GAP-10: every chunk carries the command, each under its own UUID, and the
    workflow still sees the UUID it gave the command."""
    ids = [f"DEV-{i:03d}" for i in range(65)]
    harness.engine.start_workflow(MultiWorkflow.name, ids)
    requests = harness.mdm.enqueued()
    assert [len(r.ids) for r in requests] == [30, 30, 5]
    assert all(
        r.command is not None and r.command["Command"]["RequestType"] == "DeviceInformation" for r in requests
    )
    assert len({r.command_uuid for r in requests}) == 3
    logical = requests[0].command_uuid
    late = ids[40]
    sent_uuid = harness.uuids(late)[0]
    assert sent_uuid != logical
    harness.engine.handle_command_report(late, sent_uuid, report(sent_uuid, late))
    [done] = harness.rec.completed
    assert done.id == late and done.command_results[0].command_uuid == logical


def test_mdm_server_refusal_is_reported_and_retried_by_the_sweep(harness: Harness) -> None:
    """GAP-7..10, design.md §3.4: the caller sees the refusal; the step stays tracked (the id is
    busy) and the sweep sends it again after a backoff; then it completes normally."""
    harness.mdm.fail_always(500)
    result = harness.engine.start_workflow(StepsWorkflow.name, [DEVICE])
    assert result.started_ids == [DEVICE] and result.retrying_ids == [DEVICE]
    assert "DeviceInformation" in result.errors[0] and "500" in result.errors[0]
    with pytest.raises(AlreadyStartedError):
        harness.engine.start_workflow(StepsWorkflow.name, [DEVICE])
    refused = {r.command_uuid for r in harness.mdm.enqueued()}
    harness.mdm.heal()
    assert harness.engine.sweep(datetime.now(UTC) + timedelta(seconds=30)).sent == 0  # backoff
    assert harness.engine.sweep(datetime.now(UTC) + timedelta(seconds=90)).sent == 1
    [accepted] = [r for r in harness.mdm.enqueued() if r.status == 200]
    # the same command under a new UUID: NanoMDM refuses a UUID it already holds
    assert accepted.request_type == "DeviceInformation" and accepted.command_uuid not in refused
    uuid = harness.uuids(DEVICE)[-1]
    harness.engine.handle_command_report(DEVICE, uuid, report(uuid, DEVICE))
    assert [r.id for r in harness.rec.completed] == [DEVICE]


def test_a_refused_id_among_others_is_retried_alone(harness: Harness) -> None:
    harness.mdm.fail_command_for("B")
    result = harness.engine.start_workflow(MultiWorkflow.name, ["A", "B", "C"])
    assert result.started_ids == ["A", "B", "C"] and result.retrying_ids == ["B"]
    harness.mdm.heal()
    harness.engine.sweep(datetime.now(UTC) + timedelta(seconds=90))
    retry = harness.mdm.enqueued()[-1]
    assert retry.status == 200 and retry.ids == ["B"]
    first = harness.mdm.enqueued()[0]
    assert retry.command_uuid != first.command_uuid  # NanoMDM already holds the first UUID (from A, C)
    for device in ("A", "B", "C"):
        uuid = harness.uuids(device)[-1]
        harness.engine.handle_command_report(device, uuid, report(uuid, device))
    assert sorted(r.id for r in harness.rec.completed) == ["A", "B", "C"]
    assert all(r.command_results[0].command_uuid == first.command_uuid for r in harness.rec.completed)
    for device in ("A", "B", "C"):  # nothing left behind, aliases included
        assert all(harness.engine.store.lookup_command(device, u) is None for u in harness.uuids(device))


def test_a_next_step_the_mdm_server_refuses_is_retried_not_redelivered(harness: Harness) -> None:
    """The workflow enqueued its next step from StepCompleted: a refused send does not make the
    completion fail (which would deliver it again); the engine retries the send."""
    harness.engine.start_workflow(StepsWorkflow.name, [DEVICE])
    uuid = harness.uuids(DEVICE)[0]
    harness.mdm.fail_always(500)
    harness.engine.handle_command_report(DEVICE, uuid, report(uuid, DEVICE))
    assert len(harness.rec.completed) == 1
    harness.mdm.heal()
    harness.engine.sweep(datetime.now(UTC) + timedelta(seconds=90))
    assert [c["Command"]["RequestType"] for c in harness.sent(DEVICE)] == [
        "DeviceInformation",
        "SecurityInfo",
    ]


def test_failed_delivery_is_redelivered_on_retry(harness: Harness) -> None:
    """GAP-6: a handler that raises leaves the result recoverable; the retry delivers once."""
    harness.engine.start_workflow(StepsWorkflow.name, [DEVICE])
    uuid = harness.uuids(DEVICE)[0]
    harness.rec.fail_next.append(RuntimeError("database down"))
    with pytest.raises(RuntimeError):
        harness.engine.handle_command_report(DEVICE, uuid, report(uuid, DEVICE))
    assert harness.rec.completed == []
    harness.engine.handle_command_report(DEVICE, uuid, report(uuid, DEVICE))  # the queue's retry
    harness.engine.handle_command_report(DEVICE, uuid, report(uuid, DEVICE))  # a late duplicate
    assert len(harness.rec.completed) == 1


def test_workflow_error_ends_the_step(harness: Harness) -> None:
    """A WorkflowError is the workflow's verdict on the result: the step ends, the id is free."""
    harness.engine.start_workflow(MultiWorkflow.name, [DEVICE])
    uuid = harness.uuids(DEVICE)[0]
    harness.rec.fail_next.append(WorkflowError("bad answer"))
    harness.engine.handle_command_report(DEVICE, uuid, report(uuid, DEVICE))
    assert harness.engine.store.lookup_command(DEVICE, uuid) is None


def test_all_command_response_subscribers_see_tracked_reports_only(harness: Harness) -> None:
    """CR-2, CR-5, CT-20: every tracked SecurityInfo report (NotNow too) reaches the subscriber."""
    harness.engine.handle_command_report(DEVICE, "not-ours", security_info("not-ours", DEVICE))
    assert harness.rec.events == []
    harness.commands = [SecurityInfo()]
    harness.engine.start_workflow(StepsWorkflow.name, [DEVICE])
    uuid = harness.uuids(DEVICE)[0]
    harness.engine.handle_command_report(DEVICE, uuid, report(uuid, DEVICE, "NotNow"))
    harness.engine.handle_command_report(
        DEVICE, uuid, security_info(uuid, DEVICE, SystemIntegrityProtectionEnabled=True)
    )
    assert [e[0].data.status for e in harness.rec.events] == ["NotNow", "Acknowledged"]
    assert all(e[0].flag == EventFlag.ALL_COMMAND_RESPONSE and e[1] == DEVICE for e in harness.rec.events)


def test_idle_reaches_config_subscribers(harness: Harness) -> None:
    """ID-1."""
    harness.engine.handle_idle(DEVICE, MDMContext({"a": "b"}))
    [(event, enrollment_id, ctx)] = harness.rec.events
    assert event.flag == EventFlag.IDLE and enrollment_id == DEVICE and ctx == MDMContext({"a": "b"})


def test_check_out_cancels_every_step_of_the_id_only(harness: Harness) -> None:
    """CI-1, GAP-4, CT-21, CT-22 (cancel part): the id's steps and locks go, other ids stay."""
    from nanocmd_core.mdm.checkin import CheckOut

    harness.engine.start_workflow(StepsWorkflow.name, ["A", "B"])
    harness.engine.start_workflow(MultiWorkflow.name, ["A"])
    uuids_a = harness.uuids("A")
    uuid_b = harness.uuids("B")[0]
    harness.engine.handle_checkin("A", CheckOut(MessageType="CheckOut", UDID="A"))
    for uuid in uuids_a:
        assert harness.engine.store.lookup_command("A", uuid) is None
    assert harness.engine.start_workflow(StepsWorkflow.name, ["A"]).started_ids == ["A"]
    harness.engine.handle_command_report("B", uuid_b, report(uuid_b, "B"))
    assert [r.id for r in harness.rec.completed] == ["B"]


def test_micromdm_mode_starts_each_id_separately(table_name: str) -> None:
    """ST-8, ST-12/CT-18: one Start and one request per id."""
    bind_table(table_name)
    rec = Recorder()
    with FakeMDMServer(micromdm=True) as mdm:
        client = HTTPMDMServerClient(mdm.enqueue_url, mdm.push_url, mdm.api_key, micromdm=True, backoff=0.01)
        engine = Engine(DynamoEngineStore(), client)
        engine.register(MultiWorkflow(engine, rec, lambda: [DeviceInformation(queries=["Model"])]))
        result = engine.start_workflow(MultiWorkflow.name, ["A", "B"])
        assert result.started_ids == ["A", "B"]
        requests = mdm.enqueued()
        assert [r.ids for r in requests] == [["A"], ["B"]]
        assert requests[0].command_uuid != requests[1].command_uuid
        assert all(plistlib.loads(r.body)["Command"]["RequestType"] == "DeviceInformation" for r in requests)
