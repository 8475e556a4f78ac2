"""The registry of workflows, built once per process and immutable afterwards (GAP-31)."""

from __future__ import annotations

from collections.abc import Iterator

from nanocmd_core.workflow.events import EventFlag
from nanocmd_core.workflow.workflow import DEFAULT_CONFIG, Config, Workflow


class WorkflowNameClashError(ValueError):
    """Two workflows claim one name: an error at start-up rather than a silent replacement."""


class WorkflowRegistry:
    def __init__(self) -> None:
        self._workflows: dict[str, Workflow] = {}
        self._all_response: dict[str, list[Workflow]] = {}

    def register(self, workflow: Workflow) -> None:
        name = workflow.name
        if not name:
            raise ValueError(f"{type(workflow).__name__} has no workflow name")
        if name in self._workflows:
            raise WorkflowNameClashError(f"workflow name already registered: {name}")
        self._workflows[name] = workflow
        for request_type in dict.fromkeys(self.config_of(workflow).all_command_response_request_types):
            self._all_response.setdefault(request_type, []).append(workflow)  # WF-3

    def get(self, name: str) -> Workflow | None:
        """EN-1."""
        return self._workflows.get(name)

    def __contains__(self, name: object) -> bool:
        """WF-4."""
        return name in self._workflows

    def __iter__(self) -> Iterator[Workflow]:
        return iter(self._workflows.values())

    def names(self) -> list[str]:
        return list(self._workflows)

    def event_workflows(self, flag: EventFlag) -> list[Workflow]:
        """EN-2: workflows whose config subscribes to any bit of ``flag``."""
        return [w for w in self._workflows.values() if w.config is not None and w.config.events & flag]

    def all_response_workflows(self, request_type: str) -> list[Workflow]:
        """EN-3."""
        return list(self._all_response.get(request_type, ()))

    @staticmethod
    def config_of(workflow: Workflow) -> Config:
        return workflow.config or DEFAULT_CONFIG
