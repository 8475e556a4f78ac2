"""The interface a workflow author sees: the Workflow base, its Config, steps, contexts, events."""

from nanocmd_core.workflow.context import (
    CommaListContext,
    ContextCodec,
    ContextDecodeError,
    IntContext,
    JSONContext,
    StringContext,
)
from nanocmd_core.workflow.errors import (
    EventsNotSupportedError,
    IncorrectCommandTypeError,
    IncorrectContextTypeError,
    InvalidContextError,
    StepResultCommandLenMismatchError,
    TimeoutNotUsedError,
    UnknownStepNameError,
    WorkflowError,
)
from nanocmd_core.workflow.events import Event, EventFlag, event_flag_from_name, event_name
from nanocmd_core.workflow.step import MDMContext, StepContext, StepEnqueueing, StepResult, StepStart
from nanocmd_core.workflow.workflow import DEFAULT_CONFIG, Config, Exclusivity, StepEnqueuer, Workflow

__all__ = [
    "DEFAULT_CONFIG",
    "CommaListContext",
    "Config",
    "ContextCodec",
    "ContextDecodeError",
    "Event",
    "EventFlag",
    "EventsNotSupportedError",
    "Exclusivity",
    "IncorrectCommandTypeError",
    "IncorrectContextTypeError",
    "IntContext",
    "InvalidContextError",
    "JSONContext",
    "MDMContext",
    "StepContext",
    "StepEnqueueing",
    "StepEnqueuer",
    "StepResult",
    "StepResultCommandLenMismatchError",
    "StepStart",
    "StringContext",
    "TimeoutNotUsedError",
    "UnknownStepNameError",
    "Workflow",
    "WorkflowError",
    "event_flag_from_name",
    "event_name",
]
