"""``io.micromdm.wf.lock.v1``: lock a device with a random 6-digit PIN escrowed in inventory
(workflows.md §9). The PIN is stored before the lock is sent, so a locked device's PIN can never
be lost; it comes from ``secrets`` (the Go original used a non-cryptographic PRNG)."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import datetime
from typing import Any

from aws_lambda_powertools import Logger

from nanocmd_core.subsystems.inventory.storage import InventoryStore
from nanocmd_core.workflow import (
    StepEnqueuer,
    StepResult,
    StepStart,
    Workflow,
)
from nanocmd_core.workflows.common import enqueue_for_id, local_timestamp

NAME = "io.micromdm.wf.lock.v1"
KEY_PIN = NAME + ".pin"
KEY_SENT = NAME + ".sent"
KEY_RECEIVED = NAME + ".received"
KEY_MESSAGE_RESULT = NAME + ".message_result"

logger = Logger(service="nanocmd", child=True)


def new_pin() -> str:
    """Six independent, uniformly random decimal digits (leading zeros allowed)."""
    return "".join(str(secrets.randbelow(10)) for _ in range(6))


class LockWorkflow(Workflow):
    name = NAME

    def __init__(
        self,
        enqueuer: StepEnqueuer,
        inventory: InventoryStore,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        super().__init__(enqueuer)
        self.inventory = inventory
        self.clock = clock or (lambda: datetime.now().astimezone())

    def start(self, step: StepStart) -> None:
        """Per id: escrow a fresh PIN (``modified`` untouched, as in Go), then send the lock."""
        from nanocmd_core.mdm.commands import DeviceLock

        for enrollment_id in step.ids:
            pin = new_pin()
            values: dict[str, Any] = {
                KEY_PIN: pin,
                KEY_SENT: local_timestamp(self.clock()),
                "last_source": NAME,
            }
            try:
                self.inventory.store(enrollment_id, values)
            except Exception as exc:
                raise RuntimeError(f"store inventory values for {enrollment_id}: {exc}") from exc
            enqueue_for_id(self, step.new_step_enqueueing(DeviceLock(pin=pin)), enrollment_id)

    def step_completed(self, result: StepResult) -> None:
        from nanocmd_core.mdm.responses import DeviceLockResponse

        response = result.single_response(DeviceLockResponse, "validating lock response")
        values: dict[str, Any] = {KEY_RECEIVED: local_timestamp(self.clock()), "last_source": NAME}
        if response.message_result:
            values[KEY_MESSAGE_RESULT] = response.message_result
        try:
            self.inventory.store(result.id, values)
        except Exception as exc:  # transient: the engine redelivers the step result
            raise RuntimeError(f"update inventory values for {result.id}: {exc}") from exc
        logger.info(
            "device lock acknowledged",
            extra={"workflow": NAME, "enrollment_id": result.id, "instance_id": result.instance_id},
        )
