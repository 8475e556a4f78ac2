"""What the instance and history routes answer: an instance's counts and its ids' outcomes, and
pages of the history. Import them from ``nanocmd_core.status.views`` (which imports this module
on first use)."""

# Real annotations (no ``from __future__ import annotations``): pydantic would otherwise evaluate
# every annotation string when it creates a model class, at import (issue 14: cold starts).
from pydantic import Field

from nanocmd_core.status.views import Outcome, View


class Counts(View):
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


class IdOutcome(View):
    id: str
    outcome: Outcome
    updated_at: str | None = None
    error: str | None = None
    """For ``errored``: the request type and the device's error chain, or the workflow's error."""


class InstanceSummary(View):
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


class InstancePage(View):
    instances: list[InstanceSummary]
    next: str | None = None
