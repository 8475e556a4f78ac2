"""Your own workflows beside the built-in ones, found without editing this project.

A package declares its workflows in the entry-point group ``nanocmd.workflows``::

    [project.entry-points."nanocmd.workflows"]
    appaudit = "nanocmd_appaudit.workflow:AppAuditWorkflow"

or a deployment lists import paths in ``NANOCMD_WORKFLOWS`` (``package.module:attr``, comma
separated). The target is either a ``Workflow`` subclass, constructed with the engine (its
``StepEnqueuer``), or a factory called with ``WorkflowDeps`` that returns a ``Workflow`` — use a
factory when the workflow needs subsystem stores. Every function that routes to workflows
(events, API, sweeper) builds the same registry from the same sources; a name that clashes with
a registered workflow is an error at start, never a silent replacement.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

from nanocmd_core.config import Settings
from nanocmd_core.subsystems.inventory.storage import InventoryStore
from nanocmd_core.workflow.workflow import StepEnqueuer, Workflow

ENTRY_POINT_GROUP = "nanocmd.workflows"


class WorkflowLoadError(RuntimeError):
    """A declared workflow could not be imported or built; the process refuses to start."""


@dataclass
class WorkflowDeps:
    """What a workflow factory gets: the engine to enqueue steps with and the subsystem stores."""

    enqueuer: StepEnqueuer
    settings: Settings
    inventory: InventoryStore
    stores: dict[str, Any] = field(default_factory=dict)
    """Further subsystem stores by name (``profiles``, ``cmdplans``, ``filevault``) when present."""


WorkflowSource = tuple[str, Any]
"""(where it was declared, the loaded object)."""


def _import_path(path: str) -> Any:
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise WorkflowLoadError(f"NANOCMD_WORKFLOWS entry {path!r} is not 'package.module:attr'")
    try:
        target: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as exc:
        raise WorkflowLoadError(f"cannot load workflow {path!r}: {exc}") from exc
    return target


def declared_workflows(setting: str = "") -> list[WorkflowSource]:
    """Entry points of the ``nanocmd.workflows`` group, then the ``NANOCMD_WORKFLOWS`` paths."""
    found: list[WorkflowSource] = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            found.append((f"entry point {ep.name} = {ep.value}", ep.load()))
        except Exception as exc:
            raise WorkflowLoadError(
                f"cannot load workflow entry point {ep.name} = {ep.value}: {exc}"
            ) from exc
    for path in (p.strip() for p in setting.split(",")):
        if path:
            found.append((f"NANOCMD_WORKFLOWS {path}", _import_path(path)))
    return found


def build_workflow(source: WorkflowSource, deps: WorkflowDeps) -> Workflow:
    where, target = source
    try:
        if isinstance(target, type) and issubclass(target, Workflow):
            workflow: Any = target(deps.enqueuer)
        elif callable(target):
            workflow = target(deps)
        else:
            raise TypeError("neither a Workflow subclass nor a factory")
    except WorkflowLoadError:
        raise
    except Exception as exc:
        raise WorkflowLoadError(f"cannot build workflow from {where}: {exc}") from exc
    if not isinstance(workflow, Workflow):
        raise WorkflowLoadError(f"{where} did not produce a Workflow (got {type(workflow).__name__})")
    return workflow


def plugin_workflows(deps: WorkflowDeps, sources: Iterable[WorkflowSource] | None = None) -> list[Workflow]:
    return [
        build_workflow(s, deps)
        for s in (declared_workflows(deps.settings.workflows) if sources is None else sources)
    ]


WorkflowFactory = Callable[[WorkflowDeps], Workflow]
