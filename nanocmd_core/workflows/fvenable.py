"""``io.micromdm.wf.fvenable.v1``: install a FileVault profile that escrows the personal recovery
key (PRK) to the MDM, then poll SecurityInfo until the device returns the encrypted PRK, which is
decrypted and escrowed in inventory (workflows.md §7).

Deliberate change (design.md §6): with no stored profile named ``io.micromdm.wf.fvenable.v1`` the
built-in template is used, as the Go documentation promises (the Go code fails the start).
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from aws_lambda_powertools import Logger

from nanocmd_core.mdm.errors import MDMResponseError
from nanocmd_core.subsystems.filevault.service import FileVaultError, FileVaultOps
from nanocmd_core.subsystems.profile.store import ProfileNotFoundError
from nanocmd_core.workflow import (
    ContextCodec,
    IncorrectCommandTypeError,
    IntContext,
    StepEnqueuer,
    StepResult,
    StepResultCommandLenMismatchError,
    StepStart,
    UnknownStepNameError,
    Workflow,
    WorkflowError,
)
from nanocmd_core.workflows.common import enqueue_for_id

if TYPE_CHECKING:
    from nanocmd_core.mdm.responses import SecurityInfoResponse

NAME = "io.micromdm.wf.fvenable.v1"
PROFILE_NAME = NAME
"""The profile-store name an operator uploads a customised template under."""
CERTIFICATE_PLACEHOLDER = b"__CERTIFICATE__"
POLL_INTERVAL = timedelta(minutes=2)
POLL_COUNTER = 180
STEP_INSTALL = "install"
STEP_POLL = "poll"

logger = Logger(service="nanocmd", child=True)

# The built-in template, byte for byte (workflows.md §7.7: 1940 bytes, SHA-256 a1566619…).
PROFILE_TEMPLATE = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b'<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">\n'
    b'<plist version="1.0">\n'
    b"<dict>\n"
    b"\t<key>PayloadContent</key>\n"
    b"\t<array>\n"
    b"\t\t<dict>\n"
    b"\t\t\t<key>EncryptCertPayloadUUID</key>\n"
    b"\t\t\t<string>00FD73C8-9AE6-4A1E-BBD0-22315CDE7533</string>\n"
    b"\t\t\t<key>Location</key>\n"
    b"\t\t\t<string>MDM server</string>\n"
    b"\t\t\t<key>PayloadIdentifier</key>\n"
    b"\t\t\t<string>io.micromdm.wf.fvenable.v1.payload.escrow</string>\n"
    b"\t\t\t<key>PayloadType</key>\n"
    b"\t\t\t<string>com.apple.security.FDERecoveryKeyEscrow</string>\n"
    b"\t\t\t<key>PayloadUUID</key>\n"
    b"\t\t\t<string>5943E786-24DD-4DE7-A27C-3F84B55A7A4B</string>\n"
    b"\t\t\t<key>PayloadVersion</key>\n"
    b"\t\t\t<integer>1</integer>\n"
    b"\t\t</dict>\n"
    b"\t\t<dict>\n"
    b"\t\t\t<key>Defer</key>\n"
    b"\t\t\t<true/>\n"
    b"\t\t\t<key>DeferForceAtUserLoginMaxBypassAttempts</key>\n"
    b"\t\t\t<integer>0</integer>\n"
    b"\t\t\t<key>Enable</key>\n"
    b"\t\t\t<string>On</string>\n"
    b"\t\t\t<key>PayloadIdentifier</key>\n"
    b"\t\t\t<string>io.micromdm.wf.fvenable.v1.payload.filevault</string>\n"
    b"\t\t\t<key>PayloadType</key>\n"
    b"\t\t\t<string>com.apple.MCX.FileVault2</string>\n"
    b"\t\t\t<key>PayloadUUID</key>\n"
    b"\t\t\t<string>ED92D4D5-FF80-430B-AACC-67C32B685E59</string>\n"
    b"\t\t\t<key>PayloadVersion</key>\n"
    b"\t\t\t<integer>1</integer>\n"
    b"\t\t\t<key>ShowRecoveryKey</key>\n"
    b"\t\t\t<false/>\n"
    b"\t\t</dict>\n"
    b"\t\t<dict>\n"
    b"\t\t\t<key>PayloadContent</key>\n"
    b"\t\t\t<data>__CERTIFICATE__</data>\n"
    b"\t\t\t<key>PayloadIdentifier</key>\n"
    b"\t\t\t<string>io.micromdm.wf.fvenable.v1.payload.pkcs1</string>\n"
    b"\t\t\t<key>PayloadType</key>\n"
    b"\t\t\t<string>com.apple.security.pkcs1</string>\n"
    b"\t\t\t<key>PayloadUUID</key>\n"
    b"\t\t\t<string>00FD73C8-9AE6-4A1E-BBD0-22315CDE7533</string>\n"
    b"\t\t\t<key>PayloadVersion</key>\n"
    b"\t\t\t<integer>1</integer>\n"
    b"\t\t</dict>\n"
    b"\t</array>\n"
    b"\t<key>PayloadDisplayName</key>\n"
    b"\t<string>FileVault</string>\n"
    b"\t<key>PayloadIdentifier</key>\n"
    b"\t<string>io.micromdm.wf.fvenable.v1.profile</string>\n"
    b"\t<key>PayloadType</key>\n"
    b"\t<string>Configuration</string>\n"
    b"\t<key>PayloadUUID</key>\n"
    b"\t<string>49DDB449-163E-4408-B05D-FA4814CDEE3E</string>\n"
    b"\t<key>PayloadVersion</key>\n"
    b"\t<integer>1</integer>\n"
    b"</dict>\n"
    b"</plist>\n"
)


class RawProfiles(Protocol):
    """The part of ``ProfileStore`` fvenable needs."""

    def retrieve_raw(self, name: str) -> bytes: ...


def render_profile(template: bytes, certificate_der: bytes) -> bytes:
    """The template with its first ``__CERTIFICATE__`` replaced by the base64 DER (inside the
    pkcs1 payload's ``<data>``); a template without the placeholder is sent unchanged."""
    return template.replace(CERTIFICATE_PLACEHOLDER, base64.b64encode(certificate_der), 1)


class FileVaultEnableWorkflow(Workflow):
    name = NAME

    def __init__(
        self,
        enqueuer: StepEnqueuer,
        profiles: RawProfiles,
        filevault: FileVaultOps,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        super().__init__(enqueuer)
        self.profiles = profiles
        self.filevault = filevault
        self.clock = clock or (lambda: datetime.now(UTC))

    def context_codec(self, step_name: str) -> ContextCodec[Any] | None:
        return IntContext() if step_name == STEP_POLL else None

    def template(self) -> bytes:
        """The stored override, or the built-in template when none (or an empty one) is stored."""
        try:
            raw = self.profiles.retrieve_raw(PROFILE_NAME)
        except ProfileNotFoundError:
            return PROFILE_TEMPLATE
        except Exception as exc:  # storage trouble: the caller may retry, so not a WorkflowError
            raise RuntimeError(f"getting profile: retrieving profile {PROFILE_NAME}: {exc}") from exc
        return raw or PROFILE_TEMPLATE

    def start(self, step: StepStart) -> None:
        """One ``install`` step per id (workflows.md §1.5), each with its own command UUID."""
        from nanocmd_core.mdm.commands import InstallProfile

        template = self.template()
        for enrollment_id in step.ids:
            try:
                certificate = self.filevault.retrieve_prk_cert_raw(enrollment_id)
            except Exception as exc:
                raise RuntimeError(
                    f"creating install profile command for {enrollment_id}: retrieving PRK cert raw: {exc}"
                ) from exc
            command = InstallProfile(payload=render_profile(template, certificate))
            enqueue_for_id(self, step.new_step_enqueueing(command, name=STEP_INSTALL), enrollment_id)

    def step_completed(self, result: StepResult) -> None:
        if result.name == STEP_INSTALL:
            self._installed(result)
        elif result.name == STEP_POLL:
            self._polled(result)
        else:
            raise UnknownStepNameError(result.name)

    def _installed(self, result: StepResult) -> None:
        from nanocmd_core.mdm.responses import InstallProfileResponse

        result.single_response(InstallProfileResponse, "validating install response")
        self._poll(result, POLL_COUNTER)

    def _polled(self, result: StepResult) -> None:
        from nanocmd_core.mdm.responses import SecurityInfoResponse

        if len(result.command_results) != 1:
            raise StepResultCommandLenMismatchError()
        response = result.command_results[0]
        if not isinstance(response, SecurityInfoResponse):
            raise IncorrectCommandTypeError()
        counter = result.context
        if not isinstance(counter, int):
            raise WorkflowError("invalid context value type")
        if counter < 0:
            raise WorkflowError("maximum poll counter reached, ending workflow")
        problem = self._escrow(result.id, response)
        if problem is None:
            logger.info("PRK escrowed", extra=self._log(result))
            return
        logger.info(problem, extra={**self._log(result), "poll_counter": counter})
        self._poll(result, counter - 1)

    def _escrow(self, enrollment_id: str, response: SecurityInfoResponse) -> str | None:
        """None when the PRK is escrowed, else why polling goes on (first matching rule wins)."""
        try:
            response.validate_status()
        except MDMResponseError as exc:
            return f"validating security info response: {exc}"
        info = response.security_info
        if not info.fde_enabled:
            return "FDE not enabled"
        if info.fde_personal_recovery_key_cms is None:
            return "FDE enabled but PRK CMS not present"
        try:
            self.filevault.escrow_prk(enrollment_id, info.fde_personal_recovery_key_cms)
        except FileVaultError as exc:
            return f"escrow PRK: {exc}"
        return None

    def _poll(self, result: StepResult, counter: int) -> None:
        """Another SecurityInfo for this id, sent ``POLL_INTERVAL`` from now."""
        from nanocmd_core.mdm.commands import SecurityInfo

        enqueueing = result.new_step_enqueueing(SecurityInfo(), name=STEP_POLL, context=counter)
        enqueueing.not_until = self.clock() + POLL_INTERVAL
        self.enqueue(enqueueing)

    @staticmethod
    def _log(result: StepResult) -> dict[str, Any]:
        return {"workflow": NAME, "enrollment_id": result.id, "instance_id": result.instance_id}
