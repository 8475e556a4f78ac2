"""What a workflow author implements (engine.md §1.1-1.3).

A workflow is a shared, stateless object (WF-1): keep state in the step context or in a
subsystem's storage, never in memory, because every Lambda invocation may be a new process.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import timedelta
from enum import IntEnum
from typing import Any, ClassVar, Protocol

from nanocmd_core.workflow.context import ContextCodec
from nanocmd_core.workflow.errors import EventsNotSupportedError, TimeoutNotUsedError
from nanocmd_core.workflow.events import Event, EventFlag
from nanocmd_core.workflow.step import MDMContext, StepEnqueueing, StepResult, StepStart


class Exclusivity(IntEnum):
    EXCLUSIVE = 0
    """A new instance may not start for an id that still runs this workflow."""
    MULTIPLE_SIMULTANEOUS = 1
    """No lock: any number of instances per id."""


@dataclass(frozen=True)
class Config:
    """A workflow's configuration; ``None`` from ``Workflow.config`` means all defaults."""

    timeout: timedelta | None = None
    exclusivity: Exclusivity = Exclusivity.EXCLUSIVE
    all_command_response_request_types: tuple[str, ...] = ()
    events: EventFlag = EventFlag(0)  # noqa: RUF009 - an immutable int flag

    @property
    def exclusive(self) -> bool:
        return self.exclusivity == Exclusivity.EXCLUSIVE


DEFAULT_CONFIG = Config()


class StepEnqueuer(Protocol):
    """The engine as a workflow sees it."""

    def enqueue_step(self, workflow_name: str, step: StepEnqueueing) -> None: ...


class Workflow(ABC):
    """Base class of every workflow. Subclasses set ``name`` and implement ``start`` and
    ``step_completed``; the defaults of the rest follow the Go conventions."""

    name: ClassVar[str]
    config: ClassVar[Config | None] = None

    def __init__(self, enqueuer: StepEnqueuer) -> None:
        self.enqueuer = enqueuer

    def enqueue(self, step: StepEnqueueing) -> None:
        self.enqueuer.enqueue_step(self.name, step)

    def context_codec(self, step_name: str) -> ContextCodec[Any] | None:
        """The codec for a step's context, or None when the step keeps no context."""
        return None

    @abstractmethod
    def start(self, step: StepStart) -> None:
        """A new instance started for ``step.ids``; normally enqueues the first step."""

    @abstractmethod
    def step_completed(self, result: StepResult) -> None:
        """Every command of a step has a final answer from ``result.id``."""

    def step_timeout(self, result: StepResult) -> None:
        """The step timed out for ``result.id`` before it completed."""
        raise TimeoutNotUsedError()

    def step_cancelled(self, result: StepResult) -> None:
        """The step was cancelled for ``result.id`` before it completed: by the cancel routes,
        or by the device's Authenticate or CheckOut. ``result`` carries the step's context and
        the reports that did arrive. Clean up what the workflow keeps elsewhere; enqueue
        nothing (the instance has ended for the id). The default does nothing (GAP-32)."""
        return None

    def event(self, event: Event, enrollment_id: str, mdm_context: MDMContext | None) -> None:
        """An event this workflow subscribed to in its config."""
        raise EventsNotSupportedError()
