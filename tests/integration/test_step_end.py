"""A step's end on DynamoDB Local: the id's outcome and the lock's release go in one transaction,
then the deletes; when a condition of it does not hold, a part at a time with the same result an
admin sees (the outcome counted once, the lock left to whoever holds it, nothing left tracked)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from nanocmd_core.engine.errors import AlreadyStartedError
from nanocmd_core.mdm.commands import DeviceInformation
from nanocmd_core.storage.models import LOCK, WorkflowLock, enrollment_pk
from tests.fakes.reports import report
from tests.support.engine import Harness, StepsWorkflow, engine_harness


@pytest.fixture
def harness(table_name: str) -> Iterator[Harness]:
    with engine_harness(table_name) as h:
        h.engine.push_per_step = False
        h.steps.follow_up = False  # one step: its end is the instance's end for the id
        yield h


def ack_all(h: Harness, device: str) -> None:
    for uuid in h.uuids(device):
        h.engine.handle_command_report(device, uuid, report(uuid, device))


def counts(h: Harness, instance_id: str) -> dict[str, int]:
    status = h.engine.instance_status(instance_id)
    assert status is not None
    return status.counts.model_dump()


def test_a_step_end_leaves_nothing_tracked_counts_once_and_frees_the_id(harness: Harness) -> None:
    started = harness.engine.start_workflow(StepsWorkflow.name, ["E1"])
    ack_all(harness, "E1")
    assert len(harness.rec.completed) == 1
    assert harness.engine.device_status(["E1"])["E1"].model_dump() == {"steps": [], "running": []}
    c = counts(harness, started.instance_id)
    assert (c["completed"], c["in_flight"]) == (1, 0)
    again = harness.engine.start_workflow(StepsWorkflow.name, ["E1"])  # the lock is free
    assert again.started_ids == ["E1"]


def test_an_outcome_ended_meanwhile_is_not_counted_twice(harness: Harness) -> None:
    started = harness.engine.start_workflow(StepsWorkflow.name, ["E2"])
    instances = harness.engine.instances
    assert instances is not None
    assert instances.end_outcome(started.instance_id, "E2", "timed_out", datetime.now(UTC))
    ack_all(harness, "E2")  # the transaction's outcome condition fails: a part at a time
    assert len(harness.rec.completed) == 1
    c = counts(harness, started.instance_id)
    assert (c["timed_out"], c["completed"], c["in_flight"]) == (1, 0, 0)
    assert harness.engine.device_status(["E2"])["E2"].model_dump() == {"steps": [], "running": []}
    assert harness.engine.start_workflow(StepsWorkflow.name, ["E2"]).started_ids == ["E2"]


def test_a_lock_another_instance_holds_is_left_to_it(harness: Harness) -> None:
    started = harness.engine.start_workflow(StepsWorkflow.name, ["E3"])
    expires = datetime.now(UTC) + timedelta(days=1)
    WorkflowLock(
        enrollment_pk("E3"), LOCK + StepsWorkflow.name, instance_id="other", acquired_at=0, ttl=expires
    ).save()
    ack_all(harness, "E3")
    c = counts(harness, started.instance_id)
    assert (c["completed"], c["in_flight"]) == (1, 0)
    assert harness.engine.device_status(["E3"])["E3"].steps == []
    with pytest.raises(AlreadyStartedError):  # the other instance still runs there
        harness.engine.start_workflow(StepsWorkflow.name, ["E3"])


def test_a_step_of_99_commands_ends_in_batches(harness: Harness) -> None:
    harness.commands = [DeviceInformation(queries=["Model"]) for _ in range(99)]
    started = harness.engine.start_workflow(StepsWorkflow.name, ["E4"])
    assert len(harness.uuids("E4")) == 99
    ack_all(harness, "E4")
    assert len(harness.rec.completed) == 1
    assert len(harness.rec.completed[0].command_results) == 99
    c = counts(harness, started.instance_id)
    assert (c["completed"], c["in_flight"]) == (1, 0)
    assert harness.engine.device_status(["E4"])["E4"].model_dump() == {"steps": [], "running": []}
    assert harness.engine.start_workflow(StepsWorkflow.name, ["E4"]).started_ids == ["E4"]
