"""``io.micromdm.wf.inventory.v1``: collect device facts into the inventory (workflows.md §3)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from nanocmd_core.mdm.errors import MDMResponseError
from nanocmd_core.subsystems.inventory.storage import InventoryStore
from nanocmd_core.workflow import (
    Config,
    Event,
    EventFlag,
    MDMContext,
    StepEnqueuer,
    StepResult,
    StepResultCommandLenMismatchError,
    StepStart,
    Workflow,
    WorkflowError,
    event_name,
)
from nanocmd_core.workflows.common import local_timestamp

NAME = "io.micromdm.wf.inventory.v1"

# Queried exactly as the Go workflow does (Model twice, IsSupervised not asked; workflows.md §12.3).
QUERIES = [
    "Model",
    "SerialNumber",
    "Model",
    "ModelName",
    "DeviceName",
    "BuildVersion",
    "OSVersion",
    "EthernetMAC",
    "IsAppleSilicon",
    "HasBattery",
    "IsMultiUser",
    "SupportsLOMDevice",
]

# inventory key → DeviceInformation QueryResponses field (Apple key)
DEVICE_INFORMATION_KEYS = {
    "serial_number": "SerialNumber",
    "model": "Model",
    "model_name": "ModelName",
    "device_name": "DeviceName",
    "build_version": "BuildVersion",
    "os_version": "OSVersion",
    "ethernet_mac": "EthernetMAC",
    "supervised": "IsSupervised",
    "apple_silicon": "IsAppleSilicon",
    "has_battery": "HasBattery",
    "supports_lom": "SupportsLOMDevice",
    "is_multiuser": "IsMultiUser",
}
SECURITY_INFO_KEYS = {
    "sip_enabled": "SystemIntegrityProtectionEnabled",
    "fde_enabled": "FDE_Enabled",
}


def present_values(model: Any, mapping: dict[str, str]) -> dict[str, Any]:
    """Inventory values for the fields the device actually returned (absent ≠ false)."""
    if model is None:
        return {}
    raw = model.model_dump(by_alias=True, exclude_unset=True)
    return {key: raw[field] for key, field in mapping.items() if raw.get(field) is not None}


class InventoryWorkflow(Workflow):
    name = NAME
    config = Config(all_command_response_request_types=("SecurityInfo",))

    def __init__(self, enqueuer: StepEnqueuer, inventory: InventoryStore) -> None:
        super().__init__(enqueuer)
        self.inventory = inventory

    def start(self, step: StepStart) -> None:
        from nanocmd_core.mdm.commands import DeviceInformation, SecurityInfo

        self.enqueue(step.new_step_enqueueing(DeviceInformation(queries=list(QUERIES)), SecurityInfo()))

    def step_completed(self, result: StepResult) -> None:
        from nanocmd_core.mdm.responses import DeviceInformationResponse

        if len(result.command_results) != 2:
            raise StepResultCommandLenMismatchError()
        info = result.result_of(DeviceInformationResponse)
        if info is None:
            raise WorkflowError("incorrect command type")
        try:
            info.validate_status()
        except MDMResponseError as exc:
            raise WorkflowError(f"device info response: {exc}") from exc
        values = present_values(info.query_responses, DEVICE_INFORMATION_KEYS)
        self._store(result.id, values, "DeviceInformation")

    def event(self, event: Event, enrollment_id: str, mdm_context: MDMContext | None) -> None:
        from nanocmd_core.mdm.responses import SecurityInfoResponse

        if event.flag != EventFlag.ALL_COMMAND_RESPONSE or not isinstance(event.data, SecurityInfoResponse):
            raise WorkflowError(f"unknown event data type for event: {event_name(event.flag)}")
        try:
            event.data.validate_status()
        except MDMResponseError as exc:
            raise WorkflowError(f"security info response: {exc}") from exc
        values = present_values(event.data.security_info, SECURITY_INFO_KEYS)
        self._store(enrollment_id, values, "SecurityInfo")

    def _store(self, enrollment_id: str, values: dict[str, Any], source: str) -> None:
        if not values:
            return
        values["last_source"] = source
        values["modified"] = local_timestamp(datetime.now().astimezone())
        self.inventory.store(enrollment_id, values)
