"""The workflow engine: starts workflows, sends their steps, routes each command report back to
the step that sent it and tells the workflow when a step is complete (engine.md §2).

It knows nothing of Lambda, API Gateway or SQS: the functions call these methods with
enrollment ids, command UUIDs and raw plists. Storage and the MDM server sit behind the
``EngineStore`` and ``MDMServerClient`` interfaces.

One class, one module per seam: ``start`` (starts), ``send`` (enqueue, chunks, delayed steps,
send retries), ``reports`` (command reports), ``sweep`` (timeouts, re-pushes, overdue sends),
``checkins`` (check-ins, idle, events), ``cancel`` (cancels and resets), ``status`` (status,
instance progress, history), on ``core`` (what they share). Import from here.
"""

from __future__ import annotations

from nanocmd_core.engine.checkins import CheckinsMixin
from nanocmd_core.engine.core import LOCK_TTL, chunk_command_uuid, retry_command_uuid
from nanocmd_core.engine.errors import (
    AlreadyStartedError,
    EngineError,
    InvalidIDsError,
    NoSuchWorkflowError,
    StartError,
    StepError,
)
from nanocmd_core.engine.reports import ReportsMixin
from nanocmd_core.engine.send import SEND_RETRY_DELAYS
from nanocmd_core.engine.status import StatusMixin
from nanocmd_core.engine.sweep import SweepMixin
from nanocmd_core.engine.types import EngineStore, StartResult, SweepReport

__all__ = [
    "LOCK_TTL",
    "SEND_RETRY_DELAYS",
    "AlreadyStartedError",
    "Engine",
    "EngineError",
    "EngineStore",
    "InvalidIDsError",
    "NoSuchWorkflowError",
    "StartError",
    "StartResult",
    "StepError",
    "SweepReport",
    "chunk_command_uuid",
    "retry_command_uuid",
]


class Engine(CheckinsMixin, StatusMixin, SweepMixin, ReportsMixin):
    """The engine; its methods live in the seam modules named above."""
