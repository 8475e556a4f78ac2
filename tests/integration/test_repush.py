"""Re-pushes (engine.md WK-10..13, SC-11, CT-9, CT-25, MI-6; design.md §6: a report resets the clock)."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest

from nanocmd_core.mdm.checkin import CheckOut
from nanocmd_core.mdm.commands import DeviceInformation, SecurityInfo
from tests.fakes.reports import report
from tests.support.engine import Harness, MultiWorkflow, engine_harness

DAY = timedelta(days=1)


def now() -> datetime:
    return datetime.now(UTC)


@pytest.fixture
def harness(table_name: str) -> Iterator[Harness]:
    with engine_harness(table_name) as h:
        h.multi.step_timeout_at = now() + 60 * DAY  # keep timeouts out of these sweeps
        h.engine.repush_interval = 86_400
        # the starts push on enqueue, so every push request below is a sweep's re-push
        h.engine.push_per_step = False
        yield h


def pushed(h: Harness) -> list[str]:
    return h.mdm.pushed_ids()


def test_ids_waiting_a_day_are_pushed_once_per_interval(harness: Harness) -> None:
    """CT-9: the id that completed is not pushed; a second sweep right after pushes nothing."""
    harness.engine.start_workflow(MultiWorkflow.name, ["ID-1", "ID-2"])
    uuid = harness.uuids("ID-1")[0]
    harness.engine.handle_command_report("ID-1", uuid, report(uuid, "ID-1"))
    assert harness.engine.sweep(now() + timedelta(hours=23)).repushed == 0
    assert harness.engine.sweep(now() + DAY + timedelta(minutes=1)).repushed == 1
    assert pushed(harness) == ["ID-2"]
    assert harness.engine.sweep(now() + DAY + timedelta(minutes=2)).repushed == 0
    assert harness.engine.sweep(now() + 2 * DAY + timedelta(minutes=5)).repushed == 1
    assert pushed(harness) == ["ID-2", "ID-2"]


def test_an_id_with_several_waiting_commands_is_pushed_once(harness: Harness) -> None:
    """CT-25, GAP-26."""
    harness.commands = [DeviceInformation(queries=["Model"]), SecurityInfo()]
    harness.engine.start_workflow(MultiWorkflow.name, ["ID-1"])
    harness.engine.start_workflow(MultiWorkflow.name, ["ID-1"])  # a second instance, two more commands
    assert harness.engine.sweep(now() + DAY + timedelta(minutes=1)).repushed == 1
    assert pushed(harness) == ["ID-1"]


def test_any_report_resets_the_clock(harness: Harness) -> None:
    """GAP-12: a NotNow means the device is there; it is not pushed again for a day."""
    harness.engine.start_workflow(MultiWorkflow.name, ["ID-1"])
    uuid = harness.uuids("ID-1")[0]
    harness.engine.store.record_report(
        "ID-1",
        harness.engine.store.lookup_command("ID-1", uuid)[0],  # type: ignore[index]
        uuid,
        report(uuid, "ID-1", "NotNow"),
        False,
        now() + timedelta(hours=20),
    )
    assert harness.engine.sweep(now() + DAY + timedelta(minutes=1)).repushed == 0
    assert harness.engine.sweep(now() + timedelta(hours=44, minutes=1)).repushed == 1


def test_cancelled_ids_are_no_longer_pushed(harness: Harness) -> None:
    """MI-6, CT-22: cancelling A leaves B on the re-push clock."""
    harness.engine.start_workflow(MultiWorkflow.name, ["A", "B"])
    harness.engine.handle_checkin("A", CheckOut(MessageType="CheckOut", UDID="A"))
    harness.engine.sweep(now() + DAY + timedelta(minutes=1))
    assert pushed(harness) == ["B"]


def test_concurrent_sweeps_push_each_id_once(harness: Harness) -> None:
    ids = [f"DEV-{i}" for i in range(10)]
    harness.engine.start_workflow(MultiWorkflow.name, ids)
    due = now() + DAY + timedelta(minutes=1)
    with ThreadPoolExecutor(max_workers=3) as pool:
        total = sum(pool.map(lambda _: harness.engine.sweep(due).repushed, range(3)))
    assert total == 10
    assert sorted(pushed(harness)) == sorted(ids)


def test_zero_interval_disables_repush(harness: Harness) -> None:
    harness.engine.repush_interval = 0
    harness.engine.start_workflow(MultiWorkflow.name, ["ID-1"])
    assert harness.engine.sweep(now() + 30 * DAY).repushed == 0
    assert pushed(harness) == []


def test_a_refused_push_is_logged_and_not_retried_at_once(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    """WK-13."""
    harness.engine.start_workflow(MultiWorkflow.name, ["ID-1"])
    harness.mdm.fail_always(500, kind="push")
    assert harness.engine.sweep(now() + DAY + timedelta(minutes=1)).repushed == 1
    assert "re-push refused by the MDM server" in caplog.text
    assert harness.engine.sweep(now() + DAY + timedelta(minutes=2)).repushed == 0
