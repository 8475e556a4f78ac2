"""Decisions of the inventory and devinfolog workflows, against an in-memory engine stand-in
(workflows.md §3 and §10). Storage and routing are tested on DynamoDB Local elsewhere."""

from __future__ import annotations

import logging
import plistlib
from pathlib import Path
from typing import Any

import pytest

from nanocmd_core.mdm.commands import DeviceInformation, SecurityInfo
from nanocmd_core.mdm.responses import CommandResponse, parse_response
from nanocmd_core.workflow import (
    Event,
    EventFlag,
    StepResult,
    StepResultCommandLenMismatchError,
    StepStart,
    TimeoutNotUsedError,
    WorkflowError,
)
from nanocmd_core.workflows.devinfolog import DeviceInfoLogWorkflow
from nanocmd_core.workflows.inventory import QUERIES, InventoryWorkflow
from tests.fakes.reports import device_information, error_report, report, security_info
from tests.fakes.stores import Enqueued, MemoryInventory

SHARED = Path(__file__).resolve().parents[3].parent / "shared" / "testdata" / "nanocmd"


def result(enrollment_id: str, *responses: CommandResponse) -> StepResult:
    return StepResult(instance_id="i", id=enrollment_id, command_results=list(responses))


def typed(request_type: str, raw: bytes) -> CommandResponse:
    return parse_response(request_type, raw)


@pytest.fixture
def inventory() -> tuple[InventoryWorkflow, Enqueued, MemoryInventory]:
    enqueued, store = Enqueued(), MemoryInventory()
    return InventoryWorkflow(enqueued, store), enqueued, store


def test_inventory_start_sends_one_step_with_both_commands(inventory: Any) -> None:
    workflow, enqueued, _ = inventory
    workflow.start(StepStart(instance_id="i", ids=["A", "B"]))
    [(name, step)] = enqueued.steps
    assert name == "io.micromdm.wf.inventory.v1" and step.ids == ["A", "B"] and step.name == ""
    info, sec = step.commands
    assert isinstance(info, DeviceInformation) and isinstance(sec, SecurityInfo)
    assert info.queries == QUERIES
    assert plistlib.loads(info.to_plist())["Command"]["Queries"][:3] == ["Model", "SerialNumber", "Model"]
    assert info.command_uuid != sec.command_uuid


def test_inventory_stores_only_what_the_device_returned(inventory: Any) -> None:
    workflow, _, store = inventory
    info = typed(
        "DeviceInformation",
        device_information(
            "U1",
            "A",
            SerialNumber="C02X",
            Model="Mac14,2",
            ModelName="MacBook Air",
            DeviceName="Air",
            BuildVersion="22E261",
            OSVersion="13.3.1",
            EthernetMAC="aa:bb",
            IsSupervised=False,
            IsAppleSilicon=True,
            HasBattery=True,
            SupportsLOMDevice=False,
            IsMultiUser=False,
            UDID="A",
        ),
    )
    workflow.step_completed(result("A", info, typed("SecurityInfo", security_info("U2", "A"))))
    record = store.records["A"]
    assert {k: v for k, v in record.items() if k != "modified"} == {
        "serial_number": "C02X",
        "model": "Mac14,2",
        "model_name": "MacBook Air",
        "device_name": "Air",
        "build_version": "22E261",
        "os_version": "13.3.1",
        "ethernet_mac": "aa:bb",
        "supervised": False,
        "apple_silicon": True,
        "has_battery": True,
        "supports_lom": False,
        "is_multiuser": False,
        "last_source": "DeviceInformation",
    }
    assert record["modified"].startswith("20")

    workflow.step_completed(
        result(
            "B",
            typed("DeviceInformation", device_information("U1", "B")),
            typed("SecurityInfo", security_info("U2", "B")),
        )
    )
    assert "B" not in store.records  # nothing returned, nothing written


def test_inventory_rejects_wrong_shapes_and_errors(inventory: Any) -> None:
    workflow, _, store = inventory
    with pytest.raises(StepResultCommandLenMismatchError):
        workflow.step_completed(result("A", typed("SecurityInfo", report("U", "A"))))
    with pytest.raises(WorkflowError, match=r"^device info response: MDM error for status Error"):
        workflow.step_completed(
            result(
                "A",
                typed("DeviceInformation", error_report("U1", "A")),
                typed("SecurityInfo", report("U2", "A")),
            )
        )
    with pytest.raises(TimeoutNotUsedError):
        workflow.step_timeout(result("A"))
    assert store.records == {}


def test_inventory_security_info_event(inventory: Any) -> None:
    workflow, _, store = inventory
    sec = typed(
        "SecurityInfo", security_info("U", "A", SystemIntegrityProtectionEnabled=True, FDE_Enabled=False)
    )
    workflow.event(Event(EventFlag.ALL_COMMAND_RESPONSE, sec), "A", None)
    assert store.records["A"]["sip_enabled"] is True and store.records["A"]["fde_enabled"] is False
    assert store.records["A"]["last_source"] == "SecurityInfo"
    workflow.event(
        Event(EventFlag.ALL_COMMAND_RESPONSE, typed("SecurityInfo", report("U", "B", "NotNow"))), "B", None
    )
    assert "B" not in store.records  # NotNow validates but carries nothing
    with pytest.raises(WorkflowError, match="security info response"):
        workflow.event(
            Event(EventFlag.ALL_COMMAND_RESPONSE, typed("SecurityInfo", error_report("U", "A"))), "A", None
        )
    with pytest.raises(WorkflowError, match="unknown event data type for event: Idle"):
        workflow.event(Event(EventFlag.IDLE), "A", None)


def test_inventory_with_the_go_testdata(inventory: Any) -> None:
    """workflows.md §3.7 with the real plists."""
    if not SHARED.is_dir():
        pytest.skip("shared testdata not present")
    workflow, _, store = inventory
    folder = SHARED / "workflow" / "inventory" / "testdata"
    info = typed("DeviceInformation", (folder / "devinfo.plist").read_bytes())
    sec = typed("SecurityInfo", (folder / "secinfo.plist").read_bytes())
    workflow.event(Event(EventFlag.ALL_COMMAND_RESPONSE, sec), "AAABBBCCC111222333", None)
    workflow.step_completed(result("AAABBBCCC111222333", info, sec))
    record = store.records["AAABBBCCC111222333"]
    assert (
        record["model"] == "MacBookPro11,3"
        and record["sip_enabled"] is True
        and record["fde_enabled"] is False
    )


def test_devinfolog_logs_one_line(caplog: pytest.LogCaptureFixture) -> None:
    enqueued = Enqueued()
    workflow = DeviceInfoLogWorkflow(enqueued)
    workflow.start(StepStart(instance_id="i", ids=["A"]))
    [(_, step)] = enqueued.steps
    [command] = step.commands
    assert isinstance(command, DeviceInformation)
    assert command.queries == [
        "UDID",
        "SerialNumber",
        "Model",
        "ModelName",
        "DeviceName",
        "OSVersion",
        "BuildVersion",
    ]
    info = typed(
        "DeviceInformation",
        device_information("U", "A", UDID="A", SerialNumber="S", Model="M", OSVersion="15.7"),
    )
    with caplog.at_level(logging.INFO):
        workflow.step_completed(result("A", info))
    assert (
        "UDID=A, SerialNumber=S, Model=M, ModelName=, DeviceName=, OSVersion=15.7, BuildVersion="
        in caplog.text
    )
    with pytest.raises(StepResultCommandLenMismatchError):
        workflow.step_completed(result("A", info, info))
    with pytest.raises(WorkflowError, match=r"^validating device information response: MDM error"):
        workflow.step_completed(result("A", typed("DeviceInformation", error_report("U", "A"))))
