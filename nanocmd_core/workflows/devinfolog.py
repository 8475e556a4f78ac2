"""``io.micromdm.wf.devinfolog.v1``: a harmless read-only workflow that logs device facts
(workflows.md §10)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aws_lambda_powertools import Logger

from nanocmd_core.workflow import (
    StepResult,
    StepStart,
    Workflow,
)

if TYPE_CHECKING:
    from nanocmd_core.mdm.responses import DeviceInformationResponse

NAME = "io.micromdm.wf.devinfolog.v1"
QUERIES = ["UDID", "SerialNumber", "Model", "ModelName", "DeviceName", "OSVersion", "BuildVersion"]

logger = Logger(service="nanocmd", child=True)


def device_info_line(info: DeviceInformationResponse) -> str:
    """The one log line, with empty strings for values the device did not return."""
    raw = info.query_responses.model_dump(by_alias=True) if info.query_responses else {}
    return ", ".join(f"{key}={raw.get(key) or ''}" for key in QUERIES)


class DeviceInfoLogWorkflow(Workflow):
    name = NAME

    def start(self, step: StepStart) -> None:
        from nanocmd_core.mdm.commands import DeviceInformation

        self.enqueue(step.new_step_enqueueing(DeviceInformation(queries=list(QUERIES))))

    def step_completed(self, result: StepResult) -> None:
        from nanocmd_core.mdm.responses import DeviceInformationResponse

        info = result.single_response(DeviceInformationResponse, "validating device information response")
        logger.info(
            device_info_line(info),
            extra={"workflow": NAME, "enrollment_id": result.id, "instance_id": result.instance_id},
        )
