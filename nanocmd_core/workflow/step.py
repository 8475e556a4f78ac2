"""The step shapes exchanged between the engine and a workflow (engine.md §1.5, §1.6)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from nanocmd_core.mdm.commands import Command, RawCommand
from nanocmd_core.mdm.responses import CommandResponse, MDMResponseError
from nanocmd_core.workflow.events import Event

R = TypeVar("R", bound=CommandResponse)


@dataclass(frozen=True)
class MDMContext:
    """URL query parameters the device used on its check-in/server URL (``url_params``)."""

    params: dict[str, str] = field(default_factory=dict)


@dataclass(kw_only=True)
class StepContext:
    """What every step shape carries: its instance, its name, its context and the device's URL
    parameters."""

    instance_id: str
    name: str = ""
    context: Any = None
    mdm_context: MDMContext | None = None


@dataclass(kw_only=True)
class StepEnqueueing(StepContext):
    """A step a workflow asks the engine to send: one or more commands to one or more ids.

    ``timeout`` and ``not_until`` are absolute (timezone-aware) times; unset means the
    workflow's or engine's default timeout, and "send now".
    """

    ids: list[str]
    commands: list[Command | RawCommand] = field(default_factory=list)
    timeout: datetime | None = None
    not_until: datetime | None = None


@dataclass(kw_only=True)
class StepStart(StepContext):
    """A new instance for ``ids`` (and the event that started it, if one did)."""

    ids: list[str]
    event: Event | None = None

    def new_step_enqueueing(
        self, *commands: Command | RawCommand, name: str = "", context: Any = None
    ) -> StepEnqueueing:
        """DM-6: a step for this instance and all started ids."""
        return StepEnqueueing(
            instance_id=self.instance_id,
            ids=list(self.ids),
            commands=list(commands),
            name=name,
            context=context,
        )


@dataclass(kw_only=True)
class StepResult(StepContext):
    """The answers of one enrollment id to every command of a step (all final on completion;
    on timeout, only those that arrived). Order is not defined (DM-7): match by type or UUID."""

    id: str
    command_results: list[CommandResponse] = field(default_factory=list)

    def new_step_enqueueing(
        self, *commands: Command | RawCommand, name: str = "", context: Any = None
    ) -> StepEnqueueing:
        """DM-6: a follow-up step for this instance and this one id."""
        return StepEnqueueing(
            instance_id=self.instance_id, ids=[self.id], commands=list(commands), name=name, context=context
        )

    def results_of(self, response_type: type[R]) -> list[R]:
        return [r for r in self.command_results if isinstance(r, response_type)]

    def result_of(self, response_type: type[R]) -> R | None:
        found = self.results_of(response_type)
        return found[0] if found else None

    def single_response(self, response_type: type[R], what: str) -> R:
        """The one response of a one-command step, of ``response_type`` and successful; else the
        conventional workflow error (``what`` prefixes the MDM error, e.g. "validating X response")."""
        from nanocmd_core.workflow.errors import (
            IncorrectCommandTypeError,
            StepResultCommandLenMismatchError,
            WorkflowError,
        )

        if len(self.command_results) != 1:
            raise StepResultCommandLenMismatchError()
        response = self.command_results[0]
        if not isinstance(response, response_type):
            raise IncorrectCommandTypeError()
        try:
            response.validate_status()
        except MDMResponseError as exc:
            raise WorkflowError(f"{what}: {exc}") from exc
        return response


def unique_ids(ids: Sequence[str]) -> list[str]:
    """Collapse duplicates keeping first-seen order (GAP-15)."""
    return list(dict.fromkeys(ids))
