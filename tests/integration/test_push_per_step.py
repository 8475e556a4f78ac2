"""One push per device per step (nanocmd #8): in NanoMDM mode a step's commands are queued with
``?nopush=1`` and each id is then pushed once, so a device checks in once for all of them."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator

import pytest

from nanocmd_core.mdm.commands import DeviceInformation, SecurityInfo
from tests.support.engine import Harness, MultiWorkflow, engine_harness


@pytest.fixture
def harness(table_name: str) -> Iterator[Harness]:
    with engine_harness(table_name) as h:
        h.commands = [
            DeviceInformation(queries=["Model"]),
            SecurityInfo(),
            DeviceInformation(queries=["UDID"]),
        ]
        yield h


def test_a_three_command_step_to_a_thousand_ids_pushes_each_id_once(harness: Harness) -> None:
    ids = [f"FLEET-{i:04d}" for i in range(1000)]
    harness.engine.start_workflow(MultiWorkflow.name, ids)
    enqueues, pushes = harness.mdm.enqueued(), harness.mdm.pushes()
    assert len(enqueues) == 3 * 34  # 1,000 ids in chunks of 30, three commands
    assert all(r.query == "nopush=1" and r.status == 200 and not r.pushed_ids for r in enqueues)
    assert len(pushes) == 34
    assert Counter(harness.mdm.pushed_ids()) == Counter(dict.fromkeys(ids, 1))
    assert all(len(harness.sent(i)) == 3 for i in ids)


def test_the_switch_keeps_a_push_per_command(harness: Harness) -> None:
    harness.engine.push_per_step = False  # NANOCMD_PUSH_PER_STEP=false
    harness.engine.start_workflow(MultiWorkflow.name, ["A", "B"])
    assert [r.query for r in harness.mdm.enqueued()] == ["", "", ""]
    assert harness.mdm.pushes() == []
    assert Counter(i for r in harness.mdm.enqueued() for i in r.pushed_ids) == {"A": 3, "B": 3}


def test_per_id_push_errors_are_counted_and_the_commands_stay(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    harness.mdm.fail_push_for("B", message="no push token")
    with caplog.at_level(logging.WARNING):
        result = harness.engine.start_workflow(MultiWorkflow.name, ["A", "B", "C"])
    assert result.failed_ids == [] and sorted(result.started_ids) == ["A", "B", "C"]
    assert sorted(harness.mdm.pushed_ids()) == ["A", "C"]
    assert len(harness.sent("B")) == 3  # queued: the device gets them at its next check-in
    [warning] = [r for r in caplog.records if "could not push" in r.getMessage()]
    assert warning.push_failed == 1 and warning.enrollment_ids == ["B"]  # type: ignore[attr-defined]


def test_a_refused_push_request_leaves_the_step_running(harness: Harness) -> None:
    harness.mdm.fail_always(500, kind="push")
    harness.engine.start_workflow(MultiWorkflow.name, ["A"])
    assert len(harness.sent("A")) == 3
    # still tracked: the device's answers at its next check-in complete the step
    assert all(harness.engine.store.lookup_command("A", u) is not None for u in harness.uuids("A"))


def test_micromdm_pushes_on_enqueue(table_name: str) -> None:
    with engine_harness(table_name, micromdm=True) as h:
        h.engine.start_workflow(MultiWorkflow.name, ["A", "B"])
        assert all(r.query == "" for r in h.mdm.enqueued()) and h.mdm.pushes() == []
