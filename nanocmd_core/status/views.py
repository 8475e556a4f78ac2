"""What the status, instance, history and cancel routes answer (issue 11), as pydantic models:
the engine builds them, the API serialises them, and their JSON schemas go into /openapi.json.

Times are RFC 3339 strings in UTC (as the Go NanoCMD writes times), or null when not (yet) known.

Every model defers its schema to first use (``defer_build``), so importing this module, which the
events and sweeper functions do through the engine, builds nothing; list defaults are plain
``[]`` (pydantic copies them per instance), since a ``default_factory`` costs an
``inspect.signature`` per field at class creation.
"""

# Real annotations (no ``from __future__ import annotations``): pydantic would otherwise evaluate
# every annotation string when it creates a model class, at import (issue 14: cold starts).
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

CommandState = Literal["Pending", "NotNow", "Acknowledged", "Error", "CommandFormatError", "Idle"]
"""``Pending``: sent (or waiting to be), no report yet; otherwise the device's last Status."""

Outcome = Literal["in_flight", "completed", "timed_out", "cancelled", "errored", "skipped", "failed"]
"""Where one id of an instance stands. ``skipped``: the exclusive workflow already ran there;
``failed``: the workflow's start raised for it; ``errored``: its last step ended with an Error or
CommandFormatError report, or the workflow raised on it."""

FINAL_OUTCOMES: tuple[Outcome, ...] = ("completed", "timed_out", "cancelled", "errored")
"""Outcomes an id reaches after it started (each counted once per id of an instance)."""


class _View(BaseModel):
    model_config = ConfigDict(defer_build=True)


class ErrorChainEntry(_View):
    code: int | None = None
    domain: str | None = None
    description: str | None = None


class CommandStatus(_View):
    command_uuid: str
    request_type: str
    status: CommandState
    not_now_count: int = 0
    reported_at: str | None = None
    error_chain: list[ErrorChainEntry] | None = None
    """The device's ErrorChain for Error and CommandFormatError reports."""


class SendError(_View):
    """The MDM server refused the step's commands for this id; the engine retries the send."""

    error: str
    retry_at: str | None = None


class StepStatus(_View):
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


class RunningWorkflow(_View):
    """A workflow holding the id's exclusivity lock."""

    workflow: str
    instance_id: str
    since: str | None = None


class DeviceStatus(_View):
    steps: list[StepStatus] = []
    running: list[RunningWorkflow] = []


class Counts(_View):
    pending: int = 0
    """Ids of an asynchronous start not processed yet (accepted, queued); 0 for a synchronous one."""
    started: int = 0
    skipped: int = 0
    failed: int = 0
    in_flight: int = 0
    completed: int = 0
    timed_out: int = 0
    cancelled: int = 0
    errored: int = 0


class IdOutcome(_View):
    id: str
    outcome: Outcome
    updated_at: str | None = None
    error: str | None = None
    """For ``errored``: the request type and the device's error chain, or the workflow's error."""


class InstanceSummary(_View):
    """One entry of the history: what the start recorded."""

    instance_id: str
    workflow: str
    started_at: str
    started_by: str
    """``api``, or the name of the event subscription that started it."""
    context: str | None = None
    requested: int = 0
    """Ids asked for (after dropping duplicates)."""


class InstanceStatus(InstanceSummary):
    counts: Counts = Field(default_factory=lambda: Counts())
    done: bool = False
    """No id is in flight any more."""
    ids: list[IdOutcome] | None = None
    """With ``?ids=1``: one page of the ids' outcomes (see ``next``)."""
    next: str | None = None
    """Pass as ``next`` to get the following page of ``ids``; null on the last page."""


class InstancePage(_View):
    instances: list[InstanceSummary]
    next: str | None = None


class CancelResult(_View):
    cancelled_ids: list[str] = []
    not_running_ids: list[str] = []
