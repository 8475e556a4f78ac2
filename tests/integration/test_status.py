"""Issue 11 on DynamoDB Local: what an admin sees of a device, an instance and the history, and
what a cancel does (the engine's side; tests/integration/test_status_routes.py has the HTTP side).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from nanocmd_core.engine.engine import NoSuchWorkflowError, StartError
from nanocmd_core.mdm.checkin import Authenticate, CheckOut
from nanocmd_core.mdm.commands import DeviceInformation, SecurityInfo
from nanocmd_core.status.errors import InvalidPageToken
from nanocmd_core.status.views import InstanceStatus
from nanocmd_core.workflow import StepStart, Workflow, WorkflowError
from tests.fakes.reports import error_report, report
from tests.support.engine import Harness, MultiWorkflow, StepsWorkflow, engine_harness


@pytest.fixture
def harness(table_name: str) -> Iterator[Harness]:
    with engine_harness(table_name) as h:
        h.engine.push_per_step = False
        yield h


def ack(h: Harness, device: str, status: str = "Acknowledged") -> None:
    """The device answers the last command it was sent."""
    uuid = h.uuids(device)[-1]
    h.engine.handle_command_report(device, uuid, report(uuid, device, status))


def progress(h: Harness, instance_id: str) -> InstanceStatus:
    status = h.engine.instance_status(instance_id)
    assert status is not None
    return status


def test_status_follows_a_step_from_sent_through_notnow_and_error_to_its_end(harness: Harness) -> None:
    harness.commands = [DeviceInformation(queries=["Model"]), SecurityInfo()]
    started = harness.engine.start_workflow(StepsWorkflow.name, ["MAC1"], b"ctx")
    [step] = harness.engine.device_status(["MAC1"])["MAC1"].steps
    assert (step.workflow, step.instance_id, step.step_name) == (StepsWorkflow.name, started.instance_id, "")
    assert step.sent_at and step.created_at and step.timeout_at and step.last_push_at
    assert step.not_until is None and step.send_error is None
    assert [(c.request_type, c.status, c.not_now_count) for c in step.commands] == [
        ("DeviceInformation", "Pending", 0),
        ("SecurityInfo", "Pending", 0),
    ]
    [running] = harness.engine.device_status(["MAC1"])["MAC1"].running
    assert (running.workflow, running.instance_id) == (StepsWorkflow.name, started.instance_id)

    info, security = harness.uuids("MAC1")
    for _ in range(2):
        harness.engine.handle_command_report("MAC1", info, report(info, "MAC1", "NotNow"))
    harness.engine.handle_command_report("MAC1", security, error_report(security, "MAC1", code=12021))
    [step] = harness.engine.device_status(["MAC1"])["MAC1"].steps
    first, second = step.commands
    assert (first.status, first.not_now_count, first.error_chain) == ("NotNow", 2, None)
    assert first.reported_at is not None
    assert second.status == "Error" and second.error_chain is not None
    assert [(e.code, e.domain) for e in second.error_chain] == [(12021, "MCMDMErrorDomain")]

    harness.engine.handle_command_report("MAC1", info, report(info, "MAC1"))  # the step completes
    [step] = harness.engine.device_status(["MAC1"])["MAC1"].steps  # and its follow-up is sent
    assert step.step_name == "two" and [c.status for c in step.commands] == ["Pending"]
    assert progress(harness, started.instance_id).counts.in_flight == 1
    ack(harness, "MAC1")
    assert harness.engine.device_status(["MAC1"])["MAC1"].model_dump() == {"steps": [], "running": []}
    done = progress(harness, started.instance_id)
    # the first step's error decides the id's outcome, though the workflow went on
    assert done.done and done.counts.errored == 1 and done.counts.completed == 0


def test_an_id_with_nothing_in_flight_answers_empty_lists(harness: Harness) -> None:
    status = harness.engine.device_status(["NEVER-SEEN", "NEVER-SEEN", "OTHER"])
    assert set(status) == {"NEVER-SEEN", "OTHER"}
    assert all(s.steps == [] and s.running == [] for s in status.values())


def test_a_delayed_step_is_not_sent_and_says_until_when(harness: Harness) -> None:
    harness.steps.not_until = datetime.now(UTC) + timedelta(hours=2)
    harness.engine.start_workflow(StepsWorkflow.name, ["MAC2"])
    [step] = harness.engine.device_status(["MAC2"])["MAC2"].steps
    assert step.sent_at is None and step.not_until is not None
    assert datetime.fromisoformat(step.not_until) == harness.steps.not_until.replace(microsecond=0)


def test_a_refused_send_shows_the_mdm_servers_answer_and_the_retry(harness: Harness) -> None:
    harness.mdm.fail_always(503, b"queue full\n")
    harness.engine.start_workflow(StepsWorkflow.name, ["MAC3"])
    [step] = harness.engine.device_status(["MAC3"])["MAC3"].steps
    assert step.sent_at is None and step.send_error is not None
    assert "503" in step.send_error.error and step.send_error.retry_at is not None
    harness.mdm.heal()
    assert harness.engine.sweep(datetime.now(UTC) + timedelta(seconds=90)).sent == 1
    [step] = harness.engine.device_status(["MAC3"])["MAC3"].steps
    assert step.send_error is None and step.sent_at is not None


def test_instance_counts_every_outcome_and_pages_through_its_ids(harness: Harness) -> None:
    harness.steps.follow_up = False
    ids = [f"FLEET-{n:02d}" for n in range(40)]
    busy = harness.engine.start_workflow(StepsWorkflow.name, ids[:2])
    started = harness.engine.start_workflow(StepsWorkflow.name, ids, b"rollout")
    assert sorted(started.skipped_ids) == ids[:2]
    status = progress(harness, started.instance_id)
    assert (status.workflow, status.started_by, status.context, status.requested) == (
        StepsWorkflow.name,
        "api",
        "rollout",
        40,
    )
    assert status.counts.model_dump() == {
        "pending": 0, "started": 38, "skipped": 2, "failed": 0, "in_flight": 38,
        "completed": 0, "timed_out": 0, "cancelled": 0, "errored": 0,
    }  # fmt: skip
    assert not status.done
    for device in ids[2:12]:
        ack(harness, device)
    for device in ids[12:17]:
        uuid = harness.uuids(device)[-1]
        harness.engine.handle_command_report(device, uuid, error_report(uuid, device))
    cancel = harness.engine.cancel_instance(started.instance_id, ids[17:20] + ids[:1])
    assert cancel is not None
    assert cancel.cancelled_ids == ids[17:20] and cancel.not_running_ids == ids[:1]  # another instance
    assert progress(harness, busy.instance_id).counts.in_flight == 2  # untouched
    harness.engine.sweep(datetime.now(UTC) + timedelta(days=4))  # the rest time out
    status = progress(harness, started.instance_id)
    assert status.counts.model_dump() == {
        "pending": 0, "started": 38, "skipped": 2, "failed": 0, "in_flight": 0,
        "completed": 10, "timed_out": 20, "cancelled": 3, "errored": 5,
    }  # fmt: skip
    assert status.done

    outcomes: dict[str, str] = {}
    token = None
    pages = 0
    while True:
        page = harness.engine.instance_status(started.instance_id, with_ids=True, limit=7, next_token=token)
        assert page is not None and page.ids is not None and len(page.ids) <= 7
        for entry in page.ids:
            assert entry.id not in outcomes, "an id on two pages"
            outcomes[entry.id] = entry.outcome
        pages += 1
        if page.next is None:
            break
        token = page.next
    assert pages >= 6
    expected = {i: "skipped" for i in ids[:2]} | {i: "completed" for i in ids[2:12]}
    expected |= {i: "errored" for i in ids[12:17]} | {i: "cancelled" for i in ids[17:20]}
    expected |= {i: "timed_out" for i in ids[20:]}
    assert outcomes == expected
    with pytest.raises(InvalidPageToken):
        harness.engine.instance_status(started.instance_id, with_ids=True, next_token="garbage!")


def test_an_errored_id_says_which_command_failed_and_why(harness: Harness) -> None:
    started = harness.engine.start_workflow(MultiWorkflow.name, ["MAC4"])
    uuid = harness.uuids("MAC4")[-1]
    harness.engine.handle_command_report(
        "MAC4", uuid, error_report(uuid, "MAC4", code=12064, description="Profile not found")
    )
    page = harness.engine.instance_status(started.instance_id, with_ids=True)
    assert page is not None and page.ids is not None
    [entry] = page.ids
    assert entry.outcome == "errored" and entry.error is not None
    assert (
        "DeviceInformation" in entry.error and "Profile not found" in entry.error and "12064" in entry.error
    )


def test_a_start_the_workflow_refuses_is_kept_with_its_failed_ids(harness: Harness) -> None:
    class Refuses(Workflow):
        name = "test.wf.refuses"

        def start(self, step: StepStart) -> None:
            raise WorkflowError("no such profile")

        def step_completed(self, result: object) -> None:
            raise AssertionError

    harness.engine.register(Refuses(harness.engine))
    with pytest.raises(StartError):
        harness.engine.start_workflow(Refuses.name, ["MAC5", "MAC6"])
    [entry] = harness.engine.instance_history(Refuses.name).instances
    status = progress(harness, entry.instance_id)
    assert (status.counts.started, status.counts.failed, status.counts.in_flight) == (0, 2, 0)
    page = harness.engine.instance_status(entry.instance_id, with_ids=True)
    assert page is not None and page.ids is not None
    assert {(i.id, i.outcome) for i in page.ids} == {("MAC5", "failed"), ("MAC6", "failed")}
    assert all("no such profile" in (i.error or "") for i in page.ids)


def test_history_is_newest_first_per_workflow_in_pages_and_expires(harness: Harness) -> None:
    instances = []
    for n in range(7):
        workflow = StepsWorkflow.name if n % 2 == 0 else MultiWorkflow.name
        instances.append((workflow, harness.engine.start_workflow(workflow, [f"HIST-{n}"]).instance_id))
        time.sleep(0.003)  # distinct start times (ms)
    seen: list[str] = []
    token = None
    while True:
        page = harness.engine.instance_history(None, limit=3, next_token=token)
        assert len(page.instances) <= 3
        seen += [i.instance_id for i in page.instances]
        if page.next is None:
            break
        token = page.next
    assert seen == [i for _, i in reversed(instances)]
    steps_only = harness.engine.instance_history(StepsWorkflow.name, limit=50).instances
    assert [i.instance_id for i in steps_only] == [
        i for w, i in reversed(instances) if w == StepsWorkflow.name
    ]
    assert all(i.started_by == "api" and i.requested == 1 for i in steps_only)
    with pytest.raises(InvalidPageToken):  # a token of one query is not valid for another
        harness.engine.instance_history(StepsWorkflow.name, limit=3, next_token=token or page.next or "x")

    later = datetime.now(UTC) + timedelta(days=31)  # past NANOCMD_HISTORY_DAYS (30)
    harness.engine.clock = lambda: later
    assert harness.engine.instance_status(instances[0][1]) is None
    assert harness.engine.instance_history(None).instances == []


def test_cancel_ends_the_instance_tells_the_workflow_and_frees_the_ids(harness: Harness) -> None:
    started = harness.engine.start_workflow(StepsWorkflow.name, ["C1", "C2", "C3"], b"why")
    old = {d: harness.uuids(d)[-1] for d in ("C1", "C2", "C3")}
    assert harness.engine.cancel_instance("no-such-instance") is None
    result = harness.engine.cancel_instance(started.instance_id)
    assert result is not None
    assert sorted(result.cancelled_ids) == ["C1", "C2", "C3"] and result.not_running_ids == []
    assert sorted((r.id, r.context) for r in harness.rec.cancelled) == [
        ("C1", "ctx:why"), ("C2", "ctx:why"), ("C3", "ctx:why"),
    ]  # fmt: skip
    status = progress(harness, started.instance_id)
    assert status.counts.cancelled == 3 and status.done
    assert harness.engine.device_status(["C1"])["C1"].running == []
    again = harness.engine.start_workflow(StepsWorkflow.name, ["C1"])  # at once, no 409
    assert again.started_ids == ["C1"]
    # a late report for a cancelled command is untracked
    harness.engine.handle_command_report("C2", old["C2"], report(old["C2"], "C2"))
    assert harness.rec.completed == []
    repeat = harness.engine.cancel_instance(started.instance_id, ["C2", "C9"])
    assert repeat is not None and repeat.cancelled_ids == [] and repeat.not_running_ids == ["C2", "C9"]


def test_cancel_of_a_workflow_takes_its_steps_only(harness: Harness) -> None:
    harness.engine.start_workflow(StepsWorkflow.name, ["W1"])
    multi = harness.engine.start_workflow(MultiWorkflow.name, ["W1"])
    result = harness.engine.cancel_workflow(StepsWorkflow.name, ["W1", "W2"])
    assert result.cancelled_ids == ["W1"] and result.not_running_ids == ["W2"]
    [step] = harness.engine.device_status(["W1"])["W1"].steps
    assert step.instance_id == multi.instance_id
    with pytest.raises(NoSuchWorkflowError):
        harness.engine.cancel_workflow("no.such.workflow", ["W1"])


def test_a_delayed_step_is_cancelled_before_it_is_sent(harness: Harness) -> None:
    harness.steps.not_until = datetime.now(UTC) + timedelta(minutes=5)
    started = harness.engine.start_workflow(StepsWorkflow.name, ["D1"])
    assert harness.engine.cancel_instance(started.instance_id) is not None
    harness.engine.sweep(datetime.now(UTC) + timedelta(minutes=6))
    assert harness.sent("D1") == []  # never sent
    assert progress(harness, started.instance_id).counts.cancelled == 1


@pytest.mark.parametrize("message", [Authenticate, CheckOut])
def test_the_devices_reset_ends_its_user_channels_too(harness: Harness, message: type) -> None:
    device, user = "UDID-7", "UDID-7:USER-1"
    on_user = harness.engine.start_workflow(MultiWorkflow.name, [user])
    on_device = harness.engine.start_workflow(StepsWorkflow.name, [device])
    harness.engine.handle_checkin(device, message(MessageType=message.__name__, UDID=device))
    assert sorted(r.id for r in harness.rec.cancelled) == [device, user]
    for enrollment_id in (device, user):
        assert harness.engine.device_status([enrollment_id])[enrollment_id].steps == []
    assert progress(harness, on_user.instance_id).counts.cancelled == 1
    assert progress(harness, on_device.instance_id).counts.cancelled == 1
    # the marker went with it: a second reset finds nothing to end
    harness.engine.handle_checkin(device, message(MessageType=message.__name__, UDID=device))
    assert len(harness.rec.cancelled) == 2


def test_every_command_error_is_logged_with_its_step(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    started = harness.engine.start_workflow(MultiWorkflow.name, ["LOG1"])
    uuid = harness.uuids("LOG1")[-1]
    caplog.clear()
    harness.engine.handle_command_report("LOG1", uuid, error_report(uuid, "LOG1", description="Disk full"))
    [logged] = [r for r in caplog.records if r.getMessage() == "device reported a command error"]
    assert logged.levelname == "ERROR"
    fields = logged.__dict__
    assert (fields["workflow"], fields["instance_id"], fields["request_type"]) == (
        MultiWorkflow.name,
        started.instance_id,
        "DeviceInformation",
    )
    assert fields["step_name"] == "" and "Disk full" in fields["error_chain"]
