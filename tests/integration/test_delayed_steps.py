"""Delayed (NotUntil) steps: stored unsent, sent once at their time by a one-time schedule or the
sweep's safety net (engine.md EQ-6, WK-4/5, SC-9, CT-7, CT-10, CT-21, CT-24, GAP-8, GAP-20, GAP-35)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import boto3
import pytest

from nanocmd_core.aws.scheduler import EventBridgeStepScheduler
from nanocmd_core.engine.engine import AlreadyStartedError
from nanocmd_core.engine.webhook_events import delayed_step_id
from nanocmd_core.mdm.checkin import CheckOut
from tests.fakes.reports import report
from tests.support.engine import Harness, MultiWorkflow, StepsWorkflow, engine_harness


def now() -> datetime:
    return datetime.now(UTC)


class RecordingScheduler:
    def __init__(self) -> None:
        self.scheduled: list[tuple[str, datetime]] = []

    def schedule_step(self, step_id: str, at: datetime) -> None:
        self.scheduled.append((step_id, at))


@pytest.fixture
def scheduler() -> RecordingScheduler:
    return RecordingScheduler()


@pytest.fixture
def harness(table_name: str, scheduler: RecordingScheduler) -> Iterator[Harness]:
    with engine_harness(table_name, scheduler=scheduler) as h:
        h.engine.repush_interval = 0
        yield h


def test_a_delayed_step_is_stored_unsent_and_sent_once_at_its_time(
    harness: Harness, scheduler: RecordingScheduler
) -> None:
    """EQ-6, CT-7: nothing goes out at enqueue; the schedule's message sends it; then nothing more."""
    at = now() + timedelta(minutes=10)
    harness.steps.not_until = at
    harness.engine.start_workflow(StepsWorkflow.name, ["A", "B"])
    assert harness.mdm.enqueued() == []
    [(step_id, when)] = scheduler.scheduled
    assert when == at
    with pytest.raises(AlreadyStartedError):  # a delayed step counts as outstanding (SC-4)
        harness.engine.start_workflow(StepsWorkflow.name, ["A"])
    assert harness.engine.sweep(now()).sent == 0  # not due yet

    assert harness.engine.send_delayed_step(step_id) == 2  # what the schedule's message does
    [request] = harness.mdm.enqueued()
    assert request.ids == ["A", "B"] and request.request_type == "DeviceInformation"
    assert harness.engine.send_delayed_step(step_id) == 0
    assert harness.engine.sweep(at + timedelta(minutes=1)).sent == 0
    assert len(harness.mdm.enqueued()) == 1

    uuid = request.command_uuid
    assert uuid is not None
    harness.engine.handle_command_report("A", uuid, report(uuid, "A"))
    assert [r.id for r in harness.rec.completed] == ["A"]


def test_the_sweep_sends_an_overdue_step_whose_schedule_was_lost(harness: Harness) -> None:
    """design.md §1: a lost schedule costs latency, never the step."""
    harness.steps.not_until = now() + timedelta(minutes=5)
    harness.engine.start_workflow(StepsWorkflow.name, ["A"])
    assert harness.engine.sweep(now() + timedelta(minutes=6)).sent == 1
    assert len(harness.mdm.enqueued()) == 1


def test_schedule_and_sweep_racing_send_once(harness: Harness, scheduler: RecordingScheduler) -> None:
    harness.steps.not_until = now() + timedelta(seconds=30)
    harness.engine.start_workflow(StepsWorkflow.name, ["A"])
    [(step_id, _)] = scheduler.scheduled
    due = now() + timedelta(minutes=1)
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = [pool.submit(harness.engine.send_delayed_step, step_id, due) for _ in range(2)]
        futures += [pool.submit(lambda: harness.engine.sweep(due).sent) for _ in range(2)]
        total = sum(f.result() for f in futures)
    assert total == 1
    assert len(harness.mdm.enqueued()) == 1


def test_a_past_not_until_sends_at_once(harness: Harness, scheduler: RecordingScheduler) -> None:
    harness.steps.not_until = now() - timedelta(minutes=1)
    harness.engine.start_workflow(StepsWorkflow.name, ["A"])
    assert len(harness.mdm.enqueued()) == 1 and scheduler.scheduled == []


def test_default_timeout_counts_from_not_until(harness: Harness) -> None:
    """GAP-20: a step delayed past the default timeout does not time out before it is sent."""
    harness.engine.step_timeout = 3600
    harness.steps.not_until = now() + timedelta(hours=5)
    harness.engine.start_workflow(StepsWorkflow.name, ["A"])
    assert harness.engine.sweep(now() + timedelta(hours=2)).timed_out == 0
    swept = harness.engine.sweep(now() + timedelta(hours=6, minutes=1))
    assert (swept.sent, swept.timed_out) == (1, 1)  # WK-5: sent, then timed out, in one pass


def test_delayed_step_with_a_past_timeout_is_sent_once_then_times_out_once(harness: Harness) -> None:
    """CT-24."""
    harness.steps.not_until = now() + timedelta(minutes=1)
    harness.steps.step_timeout_at = now() + timedelta(seconds=30)
    harness.engine.start_workflow(StepsWorkflow.name, ["A"])
    swept = harness.engine.sweep(now() + timedelta(minutes=2))
    assert (swept.sent, swept.timed_out) == (1, 1)
    swept = harness.engine.sweep(now() + timedelta(minutes=3))
    assert (swept.sent, swept.timed_out) == (0, 0)
    assert [r.id for r in harness.rec.timed_out] == ["A"]


def test_cancelled_ids_are_not_sent_the_delayed_step(harness: Harness) -> None:
    """CT-21, GAP-4: a check-out before the send time drops that id only."""
    harness.engine.step_timeout = 0
    harness.multi.not_until = now() + timedelta(minutes=5)
    harness.engine.start_workflow(MultiWorkflow.name, ["A", "B"])
    harness.engine.handle_checkin("A", CheckOut(MessageType="CheckOut", UDID="A"))
    harness.engine.sweep(now() + timedelta(minutes=6))
    [request] = harness.mdm.enqueued()
    assert request.ids == ["B"]


def test_unsent_delayed_commands_are_not_repushed_until_sent(harness: Harness) -> None:
    """CT-10."""
    harness.engine.step_timeout = 0
    harness.engine.repush_interval = 3600
    harness.steps.not_until = now() + timedelta(hours=3)
    harness.engine.start_workflow(StepsWorkflow.name, ["A"])
    assert harness.engine.sweep(now() + timedelta(hours=2)).repushed == 0
    assert harness.engine.sweep(now() + timedelta(hours=3, minutes=1)).sent == 1
    assert harness.engine.sweep(now() + timedelta(hours=3, minutes=30)).repushed == 0
    assert harness.engine.sweep(now() + timedelta(hours=4, minutes=2)).repushed == 1


def test_a_refused_delayed_send_is_retried_with_backoff(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    """GAP-8, design.md §3.4: failures are retried, logged with the ids, never silently dropped."""
    harness.engine.step_timeout = 0
    harness.steps.not_until = now() + timedelta(minutes=1)
    harness.engine.start_workflow(StepsWorkflow.name, ["A"])
    harness.mdm.fail_always(500)
    t = now() + timedelta(minutes=2)
    assert harness.engine.sweep(t).sent == 0
    assert "MDM server did not accept the step; the engine retries the send" in caplog.text
    harness.mdm.heal()
    assert harness.engine.sweep(t + timedelta(seconds=30)).sent == 0  # backoff not over
    assert harness.engine.sweep(t + timedelta(minutes=2)).sent == 1
    assert harness.mdm.commands_for("A")


def test_chunked_delayed_step_keeps_each_chunks_uuid(harness: Harness) -> None:
    ids = [f"DEV-{i:02d}" for i in range(35)]
    harness.multi.not_until = now() + timedelta(minutes=1)
    harness.engine.start_workflow(MultiWorkflow.name, ids)
    harness.engine.sweep(now() + timedelta(minutes=2))
    requests = harness.mdm.enqueued()
    assert [len(r.ids) for r in requests] == [30, 5]
    late = ids[32]
    uuid = harness.uuids(late)[0]
    harness.engine.handle_command_report(late, uuid, report(uuid, late))
    assert [r.id for r in harness.rec.completed] == [late]


def test_eventbridge_schedule_targets_the_events_queue(aws_env: dict[str, str]) -> None:
    """The one-time schedule as created on EventBridge Scheduler (moto): at(), UTC, deletes
    itself, and sends the message the events function turns back into a send."""
    client = boto3.client("scheduler")
    group = f"g-{int(now().timestamp() * 1000)}"
    client.create_schedule_group(Name=group)
    target = "arn:aws:sqs:us-east-1:123456789012:events.fifo"
    adapter = EventBridgeStepScheduler(group, "arn:aws:iam::123456789012:role/scheduler", target, client)
    at = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    adapter.schedule_step("abc123", at)
    schedule = client.get_schedule(Name="step-abc123", GroupName=group)
    assert schedule["ScheduleExpression"] == "at(2030-01-02T03:04:05)"
    assert schedule["ActionAfterCompletion"] == "DELETE"
    assert schedule["Target"]["Arn"] == target
    assert schedule["Target"]["SqsParameters"]["MessageGroupId"] == "step-abc123"
    assert delayed_step_id(schedule["Target"]["Input"]) == "abc123"
    assert json.loads(schedule["Target"]["Input"]) == {"nanocmd_send_step": "abc123"}
