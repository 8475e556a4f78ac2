"""The storage conformance cases of engine.md §4.3 (CT-1..CT-27) against DynamoDB Local.

The Go suite calls storage operations (SC-n); here the same cases run through this project's store
and engine API. Cases proven in other files, with the test that proves them:

- CT-12, CT-26: test_subscriptions.py::test_store_round_trip_by_name_and_by_event
- CT-15, CT-17, CT-19 (parsing): tests/unit/mdm/test_mdm_shared_testdata.py and test_mdm_commands.py
- CT-18: test_engine.py::test_micromdm_mode_starts_each_id_separately
- CT-23: test_engine.py::test_notnow_does_not_complete_then_acknowledged_does
- CT-24: test_delayed_steps.py::test_delayed_step_with_a_past_timeout_is_sent_once_then_times_out_once
- CT-25: test_repush.py::test_an_id_with_several_waiting_commands_is_pushed_once
- CT-27: test_engine.py::test_concurrent_final_reports_deliver_once and ::test_fifty_concurrent_starts...
"""

from __future__ import annotations

import plistlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from nanocmd_core.engine.engine import Engine, StepError
from nanocmd_core.mdm.commands import DeviceInformation, RawCommand, SecurityInfo
from nanocmd_core.mdm.webhook import parse_webhook
from nanocmd_core.storage.engine_store import DelayedCommandData, DelayedState, DynamoEngineStore
from nanocmd_core.subsystems.inventory.storage import DynamoInventoryStore
from nanocmd_core.workflow import StepEnqueueing, StepResult, StepStart, StringContext, Workflow
from nanocmd_core.workflows.inventory import InventoryWorkflow
from tests.fakes.reports import report
from tests.support.engine import Harness, engine_harness

WF = "workflow.name.test1"
SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "testdata" / "nanocmd"


class ConformanceWorkflow(Workflow):
    name = WF

    def __init__(self, enqueuer: Any) -> None:
        super().__init__(enqueuer)
        self.starts: list[StepStart] = []
        self.on_start: list[Any] = []
        """Commands to enqueue from Start (none by default)."""
        self.completed: list[StepResult] = []
        self.timed_out: list[StepResult] = []

    def context_codec(self, step_name: str) -> StringContext:
        return StringContext()

    def start(self, step: StepStart) -> None:
        self.starts.append(step)
        if self.on_start:
            self.enqueue(step.new_step_enqueueing(*self.on_start))

    def step_completed(self, result: StepResult) -> None:
        self.completed.append(result)

    def step_timeout(self, result: StepResult) -> None:
        self.timed_out.append(result)


@pytest.fixture
def h(table_name: str) -> Iterator[Harness]:
    with engine_harness(table_name) as harness:
        yield harness


@pytest.fixture
def wf(h: Harness) -> ConformanceWorkflow:
    workflow = ConformanceWorkflow(h.engine)
    h.engine.register(workflow)
    return workflow


def now() -> datetime:
    return datetime.now(UTC)


def enqueue(
    engine: Engine,
    ids: list[str],
    *commands: Any,
    instance: str = "I",
    context: str = "",
    timeout: datetime | None = None,
    not_until: datetime | None = None,
) -> None:
    engine.enqueue_step(
        WF,
        StepEnqueueing(
            instance_id=instance,
            ids=ids,
            commands=list(commands),
            context=context,
            timeout=timeout,
            not_until=not_until,
        ),
    )


def test_ct1_ct2_nil_and_empty_steps_are_rejected(h: Harness, wf: ConformanceWorkflow) -> None:
    with pytest.raises(StepError):
        h.engine.enqueue_step(WF, None)  # type: ignore[arg-type]
    with pytest.raises(StepError):
        h.engine.enqueue_step("", StepEnqueueing(instance_id="", ids=[], commands=[]))
    assert h.mdm.enqueued() == []


def test_ct3_each_id_of_a_step_completes_once(h: Harness, wf: ConformanceWorkflow) -> None:
    enqueue(
        h.engine,
        ["AAA111", "BBB222"],
        DeviceInformation(command_uuid="UUID-2"),
        instance="B",
        context="WFCTX-I",
    )
    for device in ("AAA111", "BBB222"):
        tracked = h.engine.store.lookup_command(device, "UUID-2")
        assert tracked is not None and tracked.request_type == "DeviceInformation"
        raw = report("UUID-2", device)
        h.engine.handle_command_report(device, "UUID-2", raw)
        done = wf.completed[-1]
        assert done.id == device and done.context == "WFCTX-I" and done.instance_id == "B"
        [result] = done.command_results
        assert result.command_uuid == "UUID-2" and result.raw == raw  # report bytes compared, too
    # (c) a repeat after completion: untracked, nothing delivered
    assert h.engine.store.lookup_command("BBB222", "UUID-2") is None
    h.engine.handle_command_report("BBB222", "UUID-2", report("UUID-2", "BBB222"))
    assert len(wf.completed) == 2


def test_ct4_unknown_uuid_is_untracked(h: Harness, wf: ConformanceWorkflow) -> None:
    enqueue(h.engine, ["456DFB"], DeviceInformation(command_uuid="UUID-3"), instance="C")
    assert h.engine.store.lookup_command("456DFB", "UUID-NotFound") is None
    h.engine.handle_command_report("456DFB", "UUID-NotFound", report("UUID-NotFound", "456DFB"))
    assert wf.completed == []


def test_ct5_two_commands_complete_together(h: Harness, wf: ConformanceWorkflow) -> None:
    enqueue(
        h.engine,
        ["AAA111"],
        DeviceInformation(command_uuid="X-UUID-1"),
        SecurityInfo(command_uuid="X-UUID-2"),
        instance="D",
    )
    assert h.engine.store.lookup_command("AAA111", "X-UUID-1").request_type == "DeviceInformation"  # type: ignore[union-attr]
    h.engine.handle_command_report("AAA111", "X-UUID-1", report("X-UUID-1", "AAA111"))
    assert wf.completed == []
    assert h.engine.store.lookup_command("AAA111", "X-UUID-2").request_type == "SecurityInfo"  # type: ignore[union-attr]
    h.engine.handle_command_report("AAA111", "X-UUID-2", report("X-UUID-2", "AAA111"))
    [done] = wf.completed
    assert {r.command_uuid for r in done.command_results} == {"X-UUID-1", "X-UUID-2"}


def test_ct6_duplicate_uuid_in_a_step_stores_nothing_and_start_times_round_trip(
    h: Harness, wf: ConformanceWorkflow
) -> None:
    with pytest.raises(StepError):
        enqueue(
            h.engine,
            ["CCC222"],
            DeviceInformation(command_uuid="W-UUID-1"),
            SecurityInfo(command_uuid="W-UUID-1"),
            instance="E",
        )
    t = datetime(2026, 5, 6, 7, 8, 9, 654321, tzinfo=UTC)
    h.engine.store.record_started(WF, ["CCC222"], t)
    assert h.engine.store.last_started("CCC222", WF) == t.replace(microsecond=0)
    assert h.engine.store.lookup_command("CCC222", "W-UUID-1") is None
    assert h.mdm.enqueued() == []


def test_ct7_a_due_delayed_step_is_returned_once(h: Harness) -> None:
    store = h.engine.store
    assert isinstance(store, DynamoEngineStore)
    raw = DeviceInformation(command_uuid="UUID-1").to_plist()
    store.put_delayed(
        DelayedState(
            step_id="s7",
            workflow=WF,
            instance_id="InstanceID-1",
            step_name="",
            ids=["EnrollmentID-1", "EnrollmentID-2"],
            pending=["EnrollmentID-1", "EnrollmentID-2"],
            chunk_size=30,
            commands=[DelayedCommandData("UUID-1", "DeviceInformation", raw)],
            send_at=int((now() - timedelta(minutes=1)).timestamp()),
        ),
        None,
    )
    assert store.due_delayed(now()) == ["s7"]
    claimed = store.claim_delayed("s7", now())
    assert claimed is not None and claimed.commands[0].request_type == "DeviceInformation"
    assert all(c.plist for c in claimed.commands) and claimed.ids
    assert RawCommand.from_plist(claimed.commands[0].plist).command_uuid == "UUID-1"
    assert store.claim_delayed("s7", now()) is None  # claimed: not returned again
    store.finish_delayed("s7")
    assert store.due_delayed(now()) == []


def test_ct8_overdue_step_completes_for_one_id_and_times_out_for_the_others(
    h: Harness, wf: ConformanceWorkflow
) -> None:
    ids = ["EnrollmentID-1", "EnrollmentID-2", "EnrollmentID-3"]
    enqueue(
        h.engine,
        ids,
        DeviceInformation(command_uuid="Y-UUID-1"),
        instance="InstanceID-1",
        timeout=now() - timedelta(minutes=1),
    )
    h.engine.handle_command_report(ids[0], "Y-UUID-1", report("Y-UUID-1", ids[0]))
    assert [r.id for r in wf.completed] == [ids[0]]
    assert h.engine.sweep(now()).timed_out == 2
    assert sorted(r.id for r in wf.timed_out) == ids[1:]
    assert h.engine.sweep(now()).timed_out == 0


def test_ct9_ct10_repush_by_time(h: Harness, wf: ConformanceWorkflow) -> None:
    store = h.engine.store
    t0 = now()
    enqueue(h.engine, ["EnrollmentID-1", "EnrollmentID-2"], DeviceInformation(command_uuid="W-UUID-1"))
    h.engine.handle_command_report("EnrollmentID-1", "W-UUID-1", report("W-UUID-1", "EnrollmentID-1"))
    assert store.claim_repushes(t0 + timedelta(seconds=2), t0 + timedelta(seconds=4)) == ["EnrollmentID-2"]
    assert store.claim_repushes(t0 + timedelta(seconds=2), t0 + timedelta(seconds=4)) == []
    # CT-10: an unsent delayed step is never re-pushed; once sent it is
    h.engine.clock = lambda: t0  # type: ignore[method-assign]
    enqueue(
        h.engine,
        ["EnrollmentID-3"],
        DeviceInformation(command_uuid="UUID-1"),
        not_until=t0 + timedelta(seconds=3),
    )
    assert store.claim_repushes(t0 + timedelta(seconds=2), t0 + timedelta(seconds=4)) == []
    h.engine.sweep(t0 + timedelta(seconds=4))
    assert sorted(store.claim_repushes(t0 + timedelta(seconds=6), t0 + timedelta(seconds=8))) == [
        "EnrollmentID-2",
        "EnrollmentID-3",
    ]
    assert store.claim_repushes(t0 + timedelta(seconds=6), t0 + timedelta(seconds=8)) == []


def test_ct11_outstanding_and_per_workflow_cancel(h: Harness, wf: ConformanceWorkflow) -> None:
    ids = ["EnrollmentID-4", "EnrollmentID-5"]
    wf.on_start = [DeviceInformation(command_uuid="UUID-1")]
    h.engine.start_workflow(WF, ids)
    assert sorted(h.engine.store.outstanding(WF, ids, now())) == ids
    h.engine.handle_command_report(ids[0], "UUID-1", report("UUID-1", ids[0]))
    assert h.engine.store.outstanding(WF, ids, now()) == [ids[1]]
    h.engine.store.cancel_steps(ids[1], "invalid.workflow.name")
    assert h.engine.store.outstanding(WF, [ids[1]], now()) == [ids[1]]
    assert h.engine.store.lookup_command(ids[1], "UUID-1") is not None
    h.engine.store.cancel_steps(ids[1], WF)
    assert h.engine.store.outstanding(WF, [ids[1]], now()) == []
    assert h.engine.store.lookup_command(ids[1], "UUID-1") is None


def test_ct13_never_started_is_not_an_error(h: Harness) -> None:
    assert h.engine.store.last_started("id.should.not.exist", "wfname.whaa") is None


def test_ct14_start_step_carries_context_instance_and_ids(h: Harness, wf: ConformanceWorkflow) -> None:
    result = h.engine.start_workflow(WF, ["a", "b", "c"], b"hello")
    [start] = wf.starts
    assert start.context == "hello" and start.name == "" and start.ids == ["a", "b", "c"]
    assert start.instance_id == result.instance_id


def test_ct16_non_commands_are_rejected(h: Harness, wf: ConformanceWorkflow) -> None:
    with pytest.raises(StepError, match="nil"):
        enqueue(h.engine, ["A"], None)
    with pytest.raises(StepError, match="invalid command type"):
        enqueue(h.engine, ["A"], "DeviceInformation")
    assert h.mdm.enqueued() == []


def test_ct19_tokenupdate_webhook_raises_enrollment(h: Harness) -> None:
    path = SHARED / "mdm" / "foss" / "testdata" / "tokenupdate.json"
    if not path.is_file():
        pytest.skip("shared testdata not present")
    event = parse_webhook(path.read_bytes())
    assert event.enrollment_id == "FF269FDC-7A93-5F12-A4B7-09923F0D1F7F" and event.url_params is None
    assert event.checkin_event is not None and event.checkin_event.enrolling


def test_ct20_inventory_on_the_engine_with_the_go_testdata(h: Harness) -> None:
    folder = SHARED / "workflow" / "inventory" / "testdata"
    if not folder.is_dir():
        pytest.skip("shared testdata not present")
    inventory = DynamoInventoryStore()
    h.engine.register(InventoryWorkflow(h.engine, inventory))
    device = "AAABBBCCC111222333"
    h.engine.start_workflow(InventoryWorkflow.name, [device])
    [request_di, request_si] = h.mdm.enqueued()
    assert request_di.ids == [device]
    for request, name in ((request_di, "devinfo.plist"), (request_si, "secinfo.plist")):
        doc = plistlib.loads((folder / name).read_bytes())
        doc["CommandUUID"] = request.command_uuid
        h.engine.handle_command_report(device, str(request.command_uuid), plistlib.dumps(doc))
    record = inventory.retrieve([device])[device]
    assert record["model"] == "MacBookPro11,3" and record["sip_enabled"] is True


def test_ct21_cancel_all_covers_every_workflow_and_delayed_steps(h: Harness, wf: ConformanceWorkflow) -> None:
    h.engine.repush_interval = 3600
    h.steps.step_timeout_at = now() + timedelta(hours=1)
    h.engine.start_workflow(h.steps.name, ["X"])
    h.engine.enqueue_step(
        "other.workflow",
        StepEnqueueing(
            instance_id="J",
            ids=["X"],
            commands=[SecurityInfo()],
            not_until=now() + timedelta(minutes=5),
            timeout=now() + timedelta(hours=1),
        ),
    )
    h.engine.store.acquire_locks("other.workflow", "J", ["X"], now(), now() + timedelta(days=1))
    sent_before, pushed_before = len(h.mdm.enqueued()), len(h.mdm.pushes())
    h.engine.store.cancel_steps("X", "")
    assert h.engine.store.outstanding(h.steps.name, ["X"], now()) == []
    assert h.engine.store.outstanding("other.workflow", ["X"], now()) == []
    swept = h.engine.sweep(now() + timedelta(hours=2))
    assert (swept.sent, swept.timed_out, swept.repushed) == (0, 0, 0)
    assert len(h.mdm.enqueued()) == sent_before and len(h.mdm.pushes()) == pushed_before


def test_ct22_cancelling_one_id_leaves_the_others(h: Harness, wf: ConformanceWorkflow) -> None:
    h.engine.repush_interval = 3600
    h.steps.step_timeout_at = now() + timedelta(hours=3)
    h.commands = [DeviceInformation(command_uuid="dup")]  # the harness keeps a "dup" UUID as given
    h.engine.push_per_step = False  # the start pushes on enqueue: every push request is a re-push
    h.engine.start_workflow(h.steps.name, ["A", "B", "C"])
    h.engine.store.cancel_steps("A", h.steps.name)
    assert h.engine.store.outstanding(h.steps.name, ["A", "B"], now()) == ["B"]
    h.engine.sweep(now() + timedelta(hours=1, minutes=1))
    assert sorted(h.mdm.pushed_ids()) == ["B", "C"]  # still re-pushed
    h.engine.handle_command_report("B", "dup", report("dup", "B"))  # still completes
    assert [r.id for r in h.rec.completed] == ["B"]
    assert h.engine.sweep(now() + timedelta(hours=4)).timed_out == 1  # and still times out
    assert [r.id for r in h.rec.timed_out] == ["C"]
