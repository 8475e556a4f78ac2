"""``com.example.wf.appaudit.v1``: which required apps are missing on each Mac?

Step 1 (``""``): ask DeviceInformation for every started id.
Step 2 (``apps``): only for Macs (iPhones and iPads are done after step 1), ask for the installed
applications; the step context carries the bundle ids the admin requires.
Then: write a summary into the inventory (``appaudit.*`` keys).

Start context: the required bundle ids, comma separated, e.g. ``com.apple.Safari,com.example.vpn``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from nanocmd_core.mdm.commands import DeviceInformation, InstalledApplicationList
from nanocmd_core.mdm.responses import (
    DeviceInformationResponse,
    InstalledApplicationListResponse,
)
from nanocmd_core.plugins import WorkflowDeps
from nanocmd_core.subsystems.inventory.storage import InventoryStore
from nanocmd_core.workflow import (
    CommaListContext,
    ContextCodec,
    StepEnqueuer,
    StepResult,
    StepStart,
    UnknownStepNameError,
    Workflow,
    WorkflowError,
)

NAME = "com.example.wf.appaudit.v1"


class AppAuditWorkflow(Workflow):
    name = NAME  # exclusive (the default config): one audit at a time per device

    def __init__(self, enqueuer: StepEnqueuer, inventory: InventoryStore) -> None:
        super().__init__(enqueuer)
        self.inventory = inventory

    def context_codec(self, step_name: str) -> ContextCodec[Any]:
        # The start context and both steps' contexts are the list of required bundle ids.
        return CommaListContext()

    def start(self, step: StepStart) -> None:
        required = [b for b in step.context if b]
        if not required:
            raise WorkflowError("no required bundle ids in the start context")
        self.enqueue(
            step.new_step_enqueueing(
                DeviceInformation(queries=["ProductName", "OSVersion", "SerialNumber"]), context=required
            )
        )

    def step_completed(self, result: StepResult) -> None:
        if result.name == "":
            self._after_device_information(result)
        elif result.name == "apps":
            self._after_app_list(result)
        else:
            raise UnknownStepNameError(result.name)

    def _after_device_information(self, result: StepResult) -> None:
        info = result.single_response(DeviceInformationResponse, "device information")
        product = info.query_responses.product_name or ""
        if not product.startswith("Mac"):  # only Macs need the (large) application list
            self.inventory.store(result.id, {"appaudit.skipped": f"not a Mac: {product or 'unknown'}"})
            return
        self.enqueue(
            result.new_step_enqueueing(
                InstalledApplicationList(managed_apps_only=False), name="apps", context=result.context
            )
        )

    def _after_app_list(self, result: StepResult) -> None:
        apps = result.single_response(InstalledApplicationListResponse, "installed applications")
        installed = {a.identifier for a in apps.installed_application_list if a.identifier}
        required: list[str] = result.context or []
        self.inventory.store(
            result.id,
            {
                "appaudit.app_count": len(installed),
                "appaudit.missing": [b for b in required if b not in installed],
                "appaudit.checked": datetime.now(UTC).isoformat(),
            },
        )


def make_workflow(deps: WorkflowDeps) -> AppAuditWorkflow:
    """The entry point: nanocmd builds the workflow with the engine and the stores it needs."""
    return AppAuditWorkflow(deps.enqueuer, deps.inventory)
