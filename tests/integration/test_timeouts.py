"""Step timeouts and the sweeper (engine.md EQ-1/2, WK-6..9, MI-3, CT-8; design.md §3.2)."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest

from nanocmd_core.engine.engine import AlreadyStartedError, EngineError
from nanocmd_core.mdm.commands import DeviceInformation, SecurityInfo
from nanocmd_core.mdm.responses import SecurityInfoResponse
from nanocmd_core.workflow import MDMContext, StepEnqueueing
from tests.fakes.reports import report, security_info
from tests.support.engine import Harness, MultiWorkflow, StepsWorkflow, engine_harness

LATER = timedelta(days=4)  # past the engine default of 3 days


@pytest.fixture
def harness(table_name: str) -> Iterator[Harness]:
    with engine_harness(table_name) as h:
        yield h


def now() -> datetime:
    return datetime.now(UTC)


def test_unfinished_ids_time_out_once_with_the_reports_that_arrived(harness: Harness) -> None:
    """WK-6, WK-7, MI-3, CT-8, GAP-25: one StepTimeout per unfinished id, NotNow reports included;
    ids that completed get nothing; a second sweep finds nothing."""
    harness.commands = [DeviceInformation(queries=["Model"]), SecurityInfo()]
    harness.engine.start_workflow(MultiWorkflow.name, ["A", "B", "C"])
    di, si = harness.uuids("A")
    for uuid in (di, si):
        harness.engine.handle_command_report("A", uuid, report(uuid, "A"))
    harness.engine.handle_command_report("B", si, report(si, "B", "NotNow"))

    assert harness.engine.sweep(now()).timed_out == 0  # nothing due yet
    swept = harness.engine.sweep(now() + timedelta(hours=2))  # MultiWorkflow's own 1 h timeout
    assert swept.timed_out == 2
    by_id = {r.id: r for r in harness.rec.timed_out}
    assert set(by_id) == {"B", "C"}
    assert [(type(r), r.status) for r in by_id["B"].command_results] == [(SecurityInfoResponse, "NotNow")]
    assert by_id["C"].command_results == []
    assert by_id["B"].context == "ctx:" and by_id["B"].mdm_context == MDMContext()  # WK-7
    assert harness.engine.sweep(now() + timedelta(hours=3)).timed_out == 0
    assert len(harness.rec.timed_out) == 2
    # late replies after the timeout are untracked (WK-9)
    harness.engine.handle_command_report("C", di, report(di, "C"))
    assert [r.id for r in harness.rec.completed] == ["A"]


def test_timeout_precedence_step_then_workflow_then_engine(table_name: str) -> None:
    """EQ-1, EQ-2: the step's own timeout, else the workflow's config, else the engine default;
    a zero engine default means steps never time out."""
    with engine_harness(table_name, step_timeout=60) as h:
        h.engine.start_workflow(StepsWorkflow.name, ["ENGINE-DEFAULT"])  # 60 s
        h.engine.start_workflow(MultiWorkflow.name, ["WORKFLOW-CONFIG"])  # 1 h
        h.steps.step_timeout_at = now() + timedelta(days=10)
        h.engine.start_workflow(StepsWorkflow.name, ["STEP-OWN"])  # 10 days
        h.engine.sweep(now() + timedelta(minutes=5))
        assert [r.id for r in h.rec.timed_out] == ["ENGINE-DEFAULT"]
        h.engine.sweep(now() + timedelta(days=2))
        assert [r.id for r in h.rec.timed_out] == ["ENGINE-DEFAULT", "WORKFLOW-CONFIG"]
        h.engine.sweep(now() + timedelta(days=11))
        assert [r.id for r in h.rec.timed_out] == ["ENGINE-DEFAULT", "WORKFLOW-CONFIG", "STEP-OWN"]
    with engine_harness(table_name, step_timeout=0) as h:
        h.engine.start_workflow(StepsWorkflow.name, ["NEVER"])
        assert h.engine.sweep(now() + timedelta(days=365)).timed_out == 0


def test_timeout_releases_the_lock(harness: Harness) -> None:
    harness.engine.start_workflow(StepsWorkflow.name, ["A"])
    with pytest.raises(AlreadyStartedError):
        harness.engine.start_workflow(StepsWorkflow.name, ["A"])
    harness.engine.sweep(now() + LATER)
    assert harness.engine.start_workflow(StepsWorkflow.name, ["A"]).started_ids == ["A"]


def test_a_step_enqueued_by_the_timeout_handler_keeps_the_lock(harness: Harness) -> None:
    harness.steps.retry_on_timeout = True
    harness.engine.start_workflow(StepsWorkflow.name, ["A"])
    harness.engine.sweep(now() + LATER)
    assert [c["Command"]["RequestType"] for c in harness.sent("A")] == ["DeviceInformation", "SecurityInfo"]
    with pytest.raises(AlreadyStartedError):
        harness.engine.start_workflow(StepsWorkflow.name, ["A"])


def test_report_and_timeout_racing_end_in_exactly_one(harness: Harness) -> None:
    """design.md §3.2: a final report racing the sweep is delivered as completion or timeout, once."""
    ids = [f"RACE-{i}" for i in range(12)]
    harness.engine.start_workflow(MultiWorkflow.name, ids)
    uuid = harness.uuids(ids[0])[0]
    due = now() + timedelta(hours=2)

    def report_all() -> None:
        for i in ids:
            harness.engine.handle_command_report(i, uuid, report(uuid, i))

    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = [
            pool.submit(report_all),
            pool.submit(harness.engine.sweep, due),
            pool.submit(harness.engine.sweep, due),
        ]
        for f in futures:
            f.result()
    completed = [r.id for r in harness.rec.completed]
    timed_out = [r.id for r in harness.rec.timed_out]
    assert sorted(completed + timed_out) == sorted(ids)  # every (step, id) ended, none twice
    assert harness.engine.sweep(due + timedelta(hours=1)).timed_out == 0


def test_concurrent_sweeps_deliver_each_timeout_once(harness: Harness) -> None:
    """GAP-34: sweeps claim with conditional writes."""
    ids = [f"DEV-{i}" for i in range(20)]
    harness.engine.start_workflow(MultiWorkflow.name, ids)
    due = now() + timedelta(hours=2)
    with ThreadPoolExecutor(max_workers=4) as pool:
        totals = list(pool.map(lambda _: harness.engine.sweep(due).timed_out, range(4)))
    assert sum(totals) == 20
    assert sorted(r.id for r in harness.rec.timed_out) == sorted(ids)


def test_a_failing_timeout_handler_is_retried_by_a_later_sweep(harness: Harness) -> None:
    harness.engine.start_workflow(StepsWorkflow.name, ["A"])
    harness.rec.fail_next.append(RuntimeError("downstream unavailable"))
    first = harness.engine.sweep(now() + LATER)
    assert (first.timed_out, first.failed) == (0, 1)
    assert harness.engine.sweep(now() + LATER).timed_out == 0  # the claim's lease holds
    later = now() + timedelta(minutes=16)
    harness.engine.clock = lambda: later  # type: ignore[method-assign]  # the lease ran out
    assert harness.engine.sweep(now() + LATER).timed_out == 1
    assert [r.id for r in harness.rec.timed_out] == ["A"]


def test_a_completion_whose_delivery_died_is_delivered_by_the_sweep(harness: Harness) -> None:
    """GAP-6: the final report was recorded, then the process died before StepCompleted ran."""
    harness.engine.start_workflow(StepsWorkflow.name, ["A"])
    uuid = harness.uuids("A")[0]
    tracked = harness.engine.store.lookup_command("A", uuid)
    assert tracked is not None
    step_id = tracked.step_id
    an_hour_ago = now() - timedelta(hours=1)  # its delivery lease has long run out
    state = harness.engine.store.record_report("A", step_id, uuid, report(uuid, "A"), True, an_hour_ago)
    assert state is not None  # completion won, and then nothing delivered it
    assert harness.engine.sweep(now() + LATER).redelivered == 1
    assert [r.id for r in harness.rec.completed] == ["A"]
    assert harness.rec.timed_out == []
    assert harness.engine.sweep(now() + LATER + timedelta(hours=1)).redelivered == 0


def test_steps_without_a_timeout_are_not_swept(table_name: str) -> None:
    with engine_harness(table_name, step_timeout=0) as h:
        h.engine.enqueue_step(
            "wf.other", StepEnqueueing(instance_id="i", ids=["X"], commands=[SecurityInfo()])
        )
        assert h.engine.sweep(now() + timedelta(days=1000)).timed_out == 0
        uuid = h.uuids("X")[0]
        assert h.engine.store.lookup_command("X", uuid) is not None
        # CR-9: its workflow is not registered here; the step stays tracked for the queue's retry
        with pytest.raises(EngineError, match=r"workflow not registered: wf\.other"):
            h.engine.handle_command_report("X", uuid, security_info(uuid, "X"))
        assert h.engine.store.lookup_command("X", uuid) is not None
