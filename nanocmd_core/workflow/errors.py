"""Errors workflows raise by convention (engine.md §1.7, workflows.md §1.7)."""

from __future__ import annotations


class WorkflowError(Exception):
    """Base of the conventional workflow errors; the engine logs them with context."""


class TimeoutNotUsedError(WorkflowError):
    def __init__(self) -> None:
        super().__init__("workflow does not utilize timeouts")


class EventsNotSupportedError(WorkflowError):
    def __init__(self) -> None:
        super().__init__("events not supported for this workflow")


class StepResultCommandLenMismatchError(WorkflowError):
    def __init__(self) -> None:
        super().__init__("mismatched number of commands in step result")


class UnknownStepNameError(WorkflowError):
    def __init__(self, name: str) -> None:
        super().__init__(f"unknown step name: {name}")


class IncorrectCommandTypeError(WorkflowError):
    def __init__(self) -> None:
        super().__init__("incorrect command type")


class IncorrectContextTypeError(WorkflowError):
    def __init__(self) -> None:
        super().__init__("incorrect context type")


class InvalidContextError(WorkflowError):
    def __init__(self) -> None:
        super().__init__("invalid context")
