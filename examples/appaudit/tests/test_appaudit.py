"""The example workflow: its decisions on an in-memory engine stand-in, then the whole thing on
the engine with DynamoDB Local and a fake NanoMDM, found the way a deployment finds it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from nanocmd_appaudit.workflow import NAME, AppAuditWorkflow, make_workflow

from nanocmd_core.config import Settings
from nanocmd_core.engine.registry import WorkflowNameClashError
from nanocmd_core.mdm.commands import DeviceInformation, InstalledApplicationList
from nanocmd_core.mdm.responses import parse_response
from nanocmd_core.plugins import WorkflowDeps, declared_workflows, plugin_workflows
from nanocmd_core.subsystems.inventory.storage import DynamoInventoryStore
from nanocmd_core.workflow import StepEnqueueing, StepResult, StepStart, WorkflowError
from tests.fakes.reports import device_information, report
from tests.support.engine import Harness, engine_harness

REQUIRED = b"com.apple.Safari,com.example.vpn"


class Enqueued:
    def __init__(self) -> None:
        self.steps: list[StepEnqueueing] = []

    def enqueue_step(self, workflow_name: str, step: StepEnqueueing) -> None:
        self.steps.append(step)


class Memory:
    def __init__(self) -> None:
        self.records: dict[str, dict[str, Any]] = {}

    def retrieve(self, ids: Any) -> dict[str, dict[str, Any]]:
        return {i: self.records[i] for i in ids if i in self.records}

    def store(self, enrollment_id: str, values: Any) -> None:
        self.records.setdefault(enrollment_id, {}).update(values)

    def delete(self, enrollment_id: str) -> None:
        self.records.pop(enrollment_id, None)


def apps_report(uuid: str, udid: str, *bundle_ids: str) -> bytes:
    apps = [{"Identifier": b, "Name": b.rsplit(".", 1)[-1]} for b in bundle_ids]
    return report(uuid, udid, InstalledApplicationList=apps)


def test_only_macs_get_the_application_list() -> None:
    enqueued, inventory = Enqueued(), Memory()
    workflow = AppAuditWorkflow(enqueued, inventory)
    workflow.start(StepStart(instance_id="i", ids=["MAC", "PHONE"], context=["com.apple.Safari"]))
    [first] = enqueued.steps
    assert isinstance(first.commands[0], DeviceInformation) and first.context == ["com.apple.Safari"]

    def info(udid: str, product: str) -> StepResult:
        raw = device_information("u", udid, ProductName=product)
        return StepResult(
            instance_id="i",
            id=udid,
            context=["com.apple.Safari"],
            command_results=[parse_response("DeviceInformation", raw)],
        )

    workflow.step_completed(info("PHONE", "iPhone15,2"))
    assert (
        len(enqueued.steps) == 1 and inventory.records["PHONE"]["appaudit.skipped"] == "not a Mac: iPhone15,2"
    )
    workflow.step_completed(info("MAC", "MacBookPro18,3"))
    second = enqueued.steps[1]
    assert (
        second.name == "apps"
        and second.ids == ["MAC"]
        and isinstance(second.commands[0], InstalledApplicationList)
    )


def test_a_start_without_required_apps_is_refused() -> None:
    with pytest.raises(WorkflowError, match="no required bundle ids"):
        AppAuditWorkflow(Enqueued(), Memory()).start(StepStart(instance_id="i", ids=["A"], context=[""]))


@pytest.fixture
def harness(table_name: str) -> Iterator[Harness]:
    with engine_harness(table_name) as h:
        yield h


def test_on_the_engine(harness: Harness) -> None:
    inventory = DynamoInventoryStore()
    deps = WorkflowDeps(enqueuer=harness.engine, settings=Settings(), inventory=inventory)
    harness.engine.register(make_workflow(deps))
    harness.engine.start_workflow(NAME, ["MAC-1"], REQUIRED)
    [info] = harness.sent("MAC-1")
    uuid = info["CommandUUID"]
    harness.engine.handle_command_report(
        "MAC-1", uuid, device_information(uuid, "MAC-1", ProductName="Mac14,2")
    )
    apps = harness.sent("MAC-1")[1]
    assert apps["Command"]["RequestType"] == "InstalledApplicationList"
    uuid = apps["CommandUUID"]
    harness.engine.handle_command_report("MAC-1", uuid, apps_report(uuid, "MAC-1", "com.apple.Safari", "x.y"))
    record = inventory.retrieve(["MAC-1"])["MAC-1"]
    assert record["appaudit.app_count"] == 2 and record["appaudit.missing"] == ["com.example.vpn"]
    # the instance is over: the exclusive workflow can run again
    assert harness.engine.start_workflow(NAME, ["MAC-1"], REQUIRED).started_ids == ["MAC-1"]


def test_found_through_the_setting_and_a_clash_is_an_error(harness: Harness) -> None:
    deps = WorkflowDeps(enqueuer=harness.engine, settings=Settings(), inventory=DynamoInventoryStore())
    sources = declared_workflows("nanocmd_appaudit.workflow:make_workflow")
    assert [w.name for w in plugin_workflows(deps, [s for s in sources if "NANOCMD_WORKFLOWS" in s[0]])] == [
        NAME
    ]
    harness.engine.register(plugin_workflows(deps, [sources[-1]])[0])
    with pytest.raises(WorkflowNameClashError):
        harness.engine.register(make_workflow(deps))
