"""The engine's shared base: its collaborators, chunk and retry UUIDs, the enqueue scope."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger

from nanocmd_core.aws.queue import MessageQueue
from nanocmd_core.aws.scheduler import StepScheduler
from nanocmd_core.engine.registry import WorkflowRegistry
from nanocmd_core.engine.subscriptions import CachedSubscriptions
from nanocmd_core.engine.types import EngineStore, InstanceStore
from nanocmd_core.mdm.responses import CommandResponse, parse_response
from nanocmd_core.observability import NoTelemetry, Telemetry
from nanocmd_core.storage.engine_store import (
    TargetState,
)
from nanocmd_core.workflow.context import decode_context
from nanocmd_core.workflow.events import Event
from nanocmd_core.workflow.step import MDMContext, StepResult
from nanocmd_core.workflow.workflow import Workflow

if TYPE_CHECKING:
    from nanocmd_core.mdmserver.client import MDMServerClient

logger = Logger(service="nanocmd", child=True)


LOCK_TTL = timedelta(days=30)
"""Safety net for a running lock whose instance vanished; timeouts and completions release it."""

_CHUNK_NAMESPACE = uuid.UUID("6f1d0c1e-5b8e-4a3c-9a57-6a0f1f0c2d10")


def _utcnow() -> datetime:
    return datetime.now(UTC)


def chunk_command_uuid(command_uuid: str, chunk: int) -> str:
    """The UUID a command carries in the ``chunk``-th request of a fan-out. NanoMDM stores a
    command UUID once, so every chunk past the first needs its own (design.md §6); it is
    derived deterministically so a retried send reuses it."""
    if chunk == 0:
        return command_uuid
    return str(uuid.uuid5(_CHUNK_NAMESPACE, f"{command_uuid}/{chunk}"))


@dataclass
class _Scope:
    """What the steps enqueued during one workflow call did."""

    enqueued: set[tuple[str, str, str]] = field(default_factory=set)
    """(workflow, instance, id) of every step enqueued: the instance still runs for those ids."""
    send_failures: dict[str, str] = field(default_factory=dict)
    """Ids whose commands the MDM server refused (retried later), with why."""
    outcome_tracked: bool = False
    """Steps enqueued here belong to an instance that records its ids' outcomes."""
    prior_error: str = ""
    """The error the step that led here (or one before it) ended with, carried on."""


_scope: ContextVar[_Scope | None] = ContextVar("nanocmd_scope", default=None)


def retry_command_uuid(command_uuid: str, chunk: int, attempt: int) -> str:
    """The UUID of the ``attempt``-th retry of a chunk's command (deterministic, like chunks)."""
    return str(uuid.uuid5(_CHUNK_NAMESPACE, f"{command_uuid}/{chunk}/retry-{attempt}"))


class EngineCore:
    """The engine's parts and the steps every entry point shares (results, finishing a step)."""

    def __init__(
        self,
        store: EngineStore,
        mdm: MDMServerClient,
        registry: WorkflowRegistry | None = None,
        *,
        step_timeout: int = 259_200,
        repush_interval: int = 86_400,
        push_per_step: bool = True,
        scheduler: StepScheduler | None = None,
        instances: InstanceStore | None = None,
        start_queue: MessageQueue | None = None,
        subscriptions: CachedSubscriptions | None = None,
        telemetry: Telemetry | None = None,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.store = store
        self.mdm = mdm
        self.registry = registry or WorkflowRegistry()
        self.step_timeout = step_timeout
        self.repush_interval = repush_interval
        # one push per id per step where the MDM server can queue without pushing (NanoMDM)
        self.push_per_step = push_per_step and bool(getattr(mdm, "pushes_separately", False))
        self.scheduler = scheduler
        self.instances = instances
        self.start_queue = start_queue
        self.subscriptions = subscriptions
        self.telemetry: Telemetry = telemetry or NoTelemetry()
        self.clock = clock

    def register(self, workflow: Workflow) -> None:
        self.registry.register(workflow)

    @contextmanager
    def _tracking_enqueues(self, outcome_tracked: bool = False, prior_error: str = "") -> Iterator[_Scope]:
        """Collect the steps enqueued inside a workflow call, to know whether the instance still
        runs for an id when the call returns (GAP-3), and which sends the MDM server refused.
        ``outcome_tracked``: the call runs for an instance with recorded outcomes (its next
        steps carry the mark on, so their end ends the id's outcome)."""
        scope = _Scope(outcome_tracked=outcome_tracked, prior_error=prior_error)
        token = _scope.set(scope)
        try:
            yield scope
        finally:
            _scope.reset(token)

    def _finish(
        self,
        workflow: Workflow,
        state: TargetState,
        enqueued: set[tuple[str, str, str]],
        outcome: str = "completed",
        error: str = "",
    ) -> None:
        """The step ended for this id; when the workflow enqueued nothing more for the instance
        there, the instance ended for it too: its outcome is recorded first, once, in one
        transaction with the lock's release, so a crash before the deletes redelivers without
        counting twice."""
        ended = (state.workflow, state.instance_id, state.enrollment_id) not in enqueued
        if outcome == "completed" and state.prior_error:  # an earlier step of it had failed
            outcome, error = "errored", state.prior_error
        end_outcome = ended and state.outcome_tracked and self.instances is not None
        release = ended and self.registry.config_of(workflow).exclusive
        now = self.clock()
        writes: list[dict[str, Any]] = []
        if end_outcome and self.instances is not None:
            writes = self.instances.outcome_end_writes(
                state.instance_id, state.enrollment_id, outcome, now, error
            )
        if self.store.end_step(state, release, writes):
            return
        # a condition did not hold (the outcome had ended already, the lock is another
        # instance's) or the transaction conflicted: a part at a time
        if end_outcome and self.instances is not None:
            self.instances.end_outcome(state.instance_id, state.enrollment_id, outcome, now, error)
        self.store.delete_target(state)
        if release:
            self.store.release_lock(state.workflow, state.enrollment_id, state.instance_id)

    def _step_result(
        self,
        workflow: Workflow,
        state: TargetState,
        parsed: dict[str, CommandResponse],
        mdm_context: MDMContext | None,
    ) -> StepResult:
        """CR-10: one typed response per command that has a report; the workflow sees the UUIDs
        it gave its commands even where a chunk was sent under a derived one."""
        results: list[CommandResponse] = []
        for command in state.commands:
            response = parsed.get(command.uuid)
            if response is None:
                raw = state.results.get(command.uuid)
                if raw is None:
                    continue
                response = parse_response(command.request_type, raw)
            if command.logical != command.uuid or response.command_uuid != command.logical:
                response = response.model_copy(update={"command_uuid": command.logical})
            results.append(response)
        context: Any = decode_context(workflow.context_codec(state.step_name), state.context)
        return StepResult(
            instance_id=state.instance_id,
            name=state.step_name,
            context=context,
            mdm_context=mdm_context or MDMContext(),  # CR-11
            id=state.enrollment_id,
            command_results=results,
        )

    @staticmethod
    def _call_event(
        workflow: Workflow, event: Event, enrollment_id: str, mdm_context: MDMContext | None
    ) -> None:
        try:
            workflow.event(event, enrollment_id, mdm_context if mdm_context and mdm_context.params else None)
        except Exception as exc:
            logger.warning(
                "workflow event handler failed",
                extra={
                    "workflow": workflow.name,
                    "event": event.name,
                    "enrollment_id": enrollment_id,
                    "error": str(exc),
                },
            )
