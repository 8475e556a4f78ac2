"""``io.micromdm.wf.fvrotate.v1``: rotate the FileVault personal recovery key with the escrowed
one and escrow the new key the device returns encrypted to our certificate (workflows.md §8)."""

from __future__ import annotations

from aws_lambda_powertools import Logger

from nanocmd_core.subsystems.filevault.service import FileVaultError, FileVaultOps
from nanocmd_core.subsystems.filevault.storage import PRKStoreError
from nanocmd_core.workflow import (
    StepEnqueuer,
    StepResult,
    StepStart,
    Workflow,
    WorkflowError,
)
from nanocmd_core.workflows.common import enqueue_for_id

NAME = "io.micromdm.wf.fvrotate.v1"

logger = Logger(service="nanocmd", child=True)


class FileVaultRotateWorkflow(Workflow):
    name = NAME

    def __init__(self, enqueuer: StepEnqueuer, filevault: FileVaultOps) -> None:
        super().__init__(enqueuer)
        self.filevault = filevault

    def start(self, step: StepStart) -> None:
        """One step per id (workflows.md §1.5): each device unlocks with its own PRK."""
        from nanocmd_core.mdm.commands import FileVaultUnlock, RotateFileVaultKey

        for enrollment_id in step.ids:
            try:
                certificate = self.filevault.retrieve_prk_cert_raw(enrollment_id)
            except Exception as exc:
                raise RuntimeError(f"retrieving PRK cert raw for {enrollment_id}: {exc}") from exc
            try:
                prk = self.filevault.retrieve_prk(enrollment_id)
            except PRKStoreError as exc:
                # nothing escrowed for this id is the caller's problem (400), not a server fault
                message = f"retrieving PRK for {enrollment_id}: {exc}"
                raise (RuntimeError(message) if exc.transient else WorkflowError(message)) from exc
            command = RotateFileVaultKey(
                key_type="personal",
                file_vault_unlock=FileVaultUnlock(password=prk),
                reply_encryption_certificate=certificate,
            )
            enqueue_for_id(self, step.new_step_enqueueing(command), enrollment_id)

    def step_completed(self, result: StepResult) -> None:
        from nanocmd_core.mdm.responses import RotateFileVaultKeyResponse

        response = result.single_response(RotateFileVaultKeyResponse, "validating rotate response")
        encrypted = response.rotate_result.encrypted_new_recovery_key
        if encrypted is None:
            raise WorkflowError("rotate result has missing (nil) fields")
        try:
            self.filevault.escrow_prk(result.id, encrypted)
        except FileVaultError as exc:
            message = f"escrow PRK for {result.id}: {exc}"
            if exc.transient:  # storage trouble: let the engine redeliver the step result
                raise RuntimeError(message) from exc
            raise WorkflowError(message) from exc
        logger.info(
            "rotated PRK escrowed",
            extra={"workflow": NAME, "enrollment_id": result.id, "instance_id": result.instance_id},
        )
