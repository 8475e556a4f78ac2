"""What the status, instance, history and cancel routes answer (issue 11), as pydantic models:
the engine builds them, the API serialises them, and their JSON schemas go into /openapi.json.

Times are RFC 3339 strings in UTC (as the Go NanoCMD writes times), or null when not (yet) known.

Import the models from here. Each is built where it is first needed (issue 14: cold starts): the
events and sweeper functions import this module through the engine's cancels, which need
``CancelResult`` alone, so the device views (``device_views``) and the instance views
(``instance_views``) are imported on first access (PEP 562 ``__getattr__``); the API's SnapStart
priming imports them before the snapshot (``snapstart.load_deferred``). Every model also defers
its schema to first use (``defer_build``); list defaults are plain ``[]`` (pydantic copies them
per instance), since a ``default_factory`` costs an ``inspect.signature`` per field at class
creation.
"""

# Real annotations (no ``from __future__ import annotations``): pydantic would otherwise evaluate
# every annotation string when it creates a model class, at import (issue 14: cold starts).
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict

from nanocmd_core.deferred import deferred_attributes

if TYPE_CHECKING:
    from nanocmd_core.status.device_views import (
        CommandStatus,
        DeviceStatus,
        ErrorChainEntry,
        RunningWorkflow,
        SendError,
        StepStatus,
    )
    from nanocmd_core.status.instance_views import (
        Counts,
        IdOutcome,
        InstancePage,
        InstanceStatus,
        InstanceSummary,
    )

__all__ = [
    "FINAL_OUTCOMES",
    "CancelResult",
    "CommandState",
    "CommandStatus",
    "Counts",
    "DeviceStatus",
    "ErrorChainEntry",
    "IdOutcome",
    "InstancePage",
    "InstanceStatus",
    "InstanceSummary",
    "Outcome",
    "RunningWorkflow",
    "SendError",
    "StepStatus",
    "View",
]

CommandState = Literal["Pending", "NotNow", "Acknowledged", "Error", "CommandFormatError", "Idle"]
"""``Pending``: sent (or waiting to be), no report yet; otherwise the device's last Status."""

Outcome = Literal["in_flight", "completed", "timed_out", "cancelled", "errored", "skipped", "failed"]
"""Where one id of an instance stands. ``skipped``: the exclusive workflow already ran there;
``failed``: the workflow's start raised for it; ``errored``: its last step ended with an Error or
CommandFormatError report, or the workflow raised on it."""

FINAL_OUTCOMES: tuple[Outcome, ...] = ("completed", "timed_out", "cancelled", "errored")
"""Outcomes an id reaches after it started (each counted once per id of an instance)."""

_DEVICE = "nanocmd_core.status.device_views"
_INSTANCE = "nanocmd_core.status.instance_views"
_DEFERRED = {
    **dict.fromkeys(
        ("CommandStatus", "DeviceStatus", "ErrorChainEntry", "RunningWorkflow", "SendError", "StepStatus"),
        _DEVICE,
    ),
    **dict.fromkeys(("Counts", "IdOutcome", "InstancePage", "InstanceStatus", "InstanceSummary"), _INSTANCE),
}
"""Models of this module defined elsewhere, imported on first access: name → module."""


__getattr__ = deferred_attributes(__name__, _DEFERRED)


class View(BaseModel):
    """Base of the status models."""

    model_config = ConfigDict(defer_build=True)


class CancelResult(View):
    cancelled_ids: list[str] = []
    not_running_ids: list[str] = []
