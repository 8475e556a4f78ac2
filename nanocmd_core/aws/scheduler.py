"""One-time EventBridge Scheduler schedules that send a delayed step at its NotUntil time
(design.md §1). The schedule puts a message on the events queue; it deletes itself after running."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Protocol

from nanocmd_core.aws.clients import LazyClient

SEND_STEP_KEY = "nanocmd_send_step"
"""Key of the queue message a schedule sends: ``{"nanocmd_send_step": "<step id>"}``."""


class StepScheduler(Protocol):
    def schedule_step(self, step_id: str, at: datetime) -> None: ...


def send_step_message(step_id: str) -> str:
    return json.dumps({SEND_STEP_KEY: step_id})


class EventBridgeStepScheduler:
    client = LazyClient("scheduler")

    def __init__(self, group: str, role_arn: str, target_arn: str, client: Any = None) -> None:
        self.group = group
        self.role_arn = role_arn
        self.target_arn = target_arn
        self._client = client

    def schedule_step(self, step_id: str, at: datetime) -> None:
        when = at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
        self.client.create_schedule(
            Name=f"step-{step_id}",
            GroupName=self.group,
            ScheduleExpression=f"at({when})",
            ScheduleExpressionTimezone="UTC",
            FlexibleTimeWindow={"Mode": "OFF"},
            ActionAfterCompletion="DELETE",
            Target={
                "Arn": self.target_arn,
                "RoleArn": self.role_arn,
                "Input": send_step_message(step_id),
                "SqsParameters": {"MessageGroupId": f"step-{step_id}"},
            },
        )
