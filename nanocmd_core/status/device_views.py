"""What ``GET /v1/status`` answers per enrollment id: its steps, their commands, the workflows
holding its lock. Import them from ``nanocmd_core.status.views`` (which imports this module on
first use)."""

# Real annotations (no ``from __future__ import annotations``): pydantic would otherwise evaluate
# every annotation string when it creates a model class, at import (issue 14: cold starts).
from nanocmd_core.status.views import CommandState, View


class ErrorChainEntry(View):
    code: int | None = None
    domain: str | None = None
    description: str | None = None


class CommandStatus(View):
    command_uuid: str
    request_type: str
    status: CommandState
    not_now_count: int = 0
    reported_at: str | None = None
    error_chain: list[ErrorChainEntry] | None = None
    """The device's ErrorChain for Error and CommandFormatError reports."""


class SendError(View):
    """The MDM server refused the step's commands for this id; the engine retries the send."""

    error: str
    retry_at: str | None = None


class StepStatus(View):
    workflow: str
    instance_id: str
    step_name: str
    created_at: str | None = None
    sent_at: str | None = None
    """Null while the step waits for its NotUntil time or for a send retry."""
    not_until: str | None = None
    timeout_at: str | None = None
    last_push_at: str | None = None
    send_error: SendError | None = None
    commands: list[CommandStatus] = []


class RunningWorkflow(View):
    """A workflow holding the id's exclusivity lock."""

    workflow: str
    instance_id: str
    since: str | None = None


class DeviceStatus(View):
    steps: list[StepStatus] = []
    running: list[RunningWorkflow] = []
