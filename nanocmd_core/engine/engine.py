"""The workflow engine: starts workflows, sends their steps, routes each command report back to
the step that sent it and tells the workflow when a step is complete (engine.md §2).

It knows nothing of Lambda, API Gateway or SQS: the functions call these methods with
enrollment ids, command UUIDs and raw plists. Storage and the MDM server sit behind the
``EngineStore`` and ``MDMServerClient`` interfaces.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from aws_lambda_powertools import Logger

from nanocmd_core.aws.scheduler import StepScheduler
from nanocmd_core.engine.registry import WorkflowRegistry
from nanocmd_core.engine.subscriptions import CachedSubscriptions, EventSubscription
from nanocmd_core.mdm.checkin import Authenticate, CheckinMessage, CheckOut, TokenUpdate
from nanocmd_core.mdm.commands import Command, RawCommand
from nanocmd_core.mdm.responses import CommandResponse, parse_response
from nanocmd_core.observability import NoTelemetry, Telemetry
from nanocmd_core.storage.engine_store import (
    DelayedCommandData,
    DelayedState,
    DuplicateCommandError,
    NewTarget,
    TargetCommand,
    TargetState,
    TrackedCommand,
)
from nanocmd_core.workflow.context import ContextDecodeError, decode_context, encode_context
from nanocmd_core.workflow.errors import WorkflowError
from nanocmd_core.workflow.events import Event, EventFlag
from nanocmd_core.workflow.step import MDMContext, StepEnqueueing, StepResult, StepStart, unique_ids
from nanocmd_core.workflow.workflow import Workflow

if TYPE_CHECKING:
    from nanocmd_core.mdmserver.client import MDMServerClient

logger = Logger(service="nanocmd", child=True)

LOCK_TTL = timedelta(days=30)
SEND_RETRY_DELAYS = (60, 120, 300, 600, 1800, 3600, 3600, 3600)
"""Seconds before each new attempt to send commands the MDM server refused; after the last one
the engine gives up (logged as an error) and the step ends at its timeout."""
"""Safety net for a running lock whose instance vanished; timeouts and completions release it."""

_CHUNK_NAMESPACE = uuid.UUID("6f1d0c1e-5b8e-4a3c-9a57-6a0f1f0c2d10")


class EngineStore(Protocol):
    """What the engine needs from storage (storage/engine_store.py implements it on DynamoDB)."""

    def put_targets(self, targets: Sequence[NewTarget]) -> None: ...
    def prefetched_commands(self, pairs: Iterable[tuple[str, str]]) -> AbstractContextManager[None]: ...
    def lookup_command(self, enrollment_id: str, command_uuid: str) -> TrackedCommand | None: ...
    def add_aliases(self, step_id: str, aliases: Sequence[tuple[str, str, str, str]]) -> None: ...
    def record_report(
        self, enrollment_id: str, step_id: str, command_uuid: str, raw: bytes, final: bool, now: datetime
    ) -> TargetState | None: ...
    def reopen(self, enrollment_id: str, step_id: str, command_uuid: str) -> None: ...
    def delete_target(self, state: TargetState) -> None: ...
    def acquire_locks(
        self, workflow: str, instance_id: str, ids: Sequence[str], now: datetime, expires: datetime
    ) -> list[str]: ...
    def release_lock(self, workflow: str, enrollment_id: str, instance_id: str) -> None: ...
    def outstanding(self, workflow: str, ids: Sequence[str], now: datetime) -> list[str]: ...
    def record_started(self, workflow: str, ids: Sequence[str], when: datetime) -> None: ...
    def last_started(self, enrollment_id: str, workflow: str) -> datetime | None: ...
    def cancel_all(self, enrollment_id: str) -> int: ...
    def cancel_steps(self, enrollment_id: str, workflow: str = "", *, clear_started: bool = False) -> int: ...
    def due_timeouts(self, now: datetime, limit: int = 1000) -> list[tuple[str, str]]: ...
    def claim_timeout(self, enrollment_id: str, step_id: str, now: datetime) -> TargetState | None: ...
    def claim_stuck_completion(
        self, enrollment_id: str, step_id: str, now: datetime
    ) -> TargetState | None: ...
    def claim_repushes(self, cutoff: datetime, now: datetime, limit: int = 5000) -> list[str]: ...
    def put_delayed(self, state: DelayedState, expires: int | None) -> None: ...
    def due_delayed(self, now: datetime, limit: int = 1000) -> list[str]: ...
    def claim_delayed(self, step_id: str, now: datetime) -> DelayedState | None: ...
    def live_target_ids(self, step_id: str, ids: Sequence[str]) -> set[str]: ...
    def mark_sent(self, step_id: str, ids: Sequence[str], now: datetime) -> None: ...
    def mark_unsent(self, step_id: str, ids: Sequence[str]) -> None: ...
    def finish_delayed(self, step_id: str) -> None: ...
    def reschedule_delayed(
        self, step_id: str, pending: Sequence[str], send_at: int, attempts: int
    ) -> None: ...


class EngineError(Exception):
    """An engine operation failed; the message is what an API caller sees."""


class NoSuchWorkflowError(EngineError):
    def __init__(self, name: str) -> None:
        super().__init__(f"no such workflow: {name}")


class InvalidIDsError(EngineError):
    """No ids, or an empty id (GAP-21)."""


class AlreadyStartedError(EngineError):
    def __init__(self, busy: int, requested: int) -> None:
        super().__init__(f"workflow already started on {busy} (of {requested}) ids")
        self.busy = busy
        self.requested = requested


class StartError(EngineError):
    """The workflow could not be started on any id."""

    def __init__(
        self,
        message: str,
        *,
        failed_ids: Sequence[str] = (),
        client_error: bool = False,
    ) -> None:
        super().__init__(message)
        self.failed_ids = list(failed_ids)
        self.client_error = client_error
        """The workflow rejected its input (context, ids): the caller's to fix."""


class StepError(EngineError):
    """A step could not be converted or stored (nothing was sent)."""


@dataclass
class SweepReport:
    sent: int = 0
    """Ids a delayed step was sent to."""
    timed_out: int = 0
    repushed: int = 0
    redelivered: int = 0
    """Completed steps whose first delivery died with its process, delivered by the sweep."""
    failed: int = 0


@dataclass
class StartResult:
    instance_id: str
    started_ids: list[str]
    skipped_ids: list[str] = field(default_factory=list)
    """Ids skipped because the exclusive workflow already runs there (ST-3)."""
    failed_ids: list[str] = field(default_factory=list)
    """Ids whose start failed (the workflow raised); see ``errors``."""
    retrying_ids: list[str] = field(default_factory=list)
    """Started ids whose commands the MDM server did not accept yet: the engine retries the send
    with backoff (the sweep), so they count as started; see ``errors``."""
    errors: list[str] = field(default_factory=list)


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


_scope: ContextVar[_Scope | None] = ContextVar("nanocmd_scope", default=None)


def _delayed_state(
    step_id: str,
    workflow_name: str,
    step: StepEnqueueing,
    ids: list[str],
    pending: list[str],
    chunk_size: int,
    send_at: datetime,
    attempts: int,
) -> DelayedState:
    """A step's commands kept for a later send: at its NotUntil time, or a retry (attempts ≥ 1)."""
    return DelayedState(
        step_id=step_id,
        workflow=workflow_name,
        instance_id=step.instance_id,
        step_name=step.name,
        ids=ids,
        pending=pending,
        chunk_size=chunk_size,
        commands=[DelayedCommandData(c.command_uuid, c.request_type, c.to_plist()) for c in step.commands],
        send_at=int(send_at.timestamp()),
        attempts=attempts,
    )


def retry_command_uuid(command_uuid: str, chunk: int, attempt: int) -> str:
    """The UUID of the ``attempt``-th retry of a chunk's command (deterministic, like chunks)."""
    return str(uuid.uuid5(_CHUNK_NAMESPACE, f"{command_uuid}/{chunk}/retry-{attempt}"))


class Engine:
    def __init__(
        self,
        store: EngineStore,
        mdm: MDMServerClient,
        registry: WorkflowRegistry | None = None,
        *,
        step_timeout: int = 259_200,
        repush_interval: int = 86_400,
        scheduler: StepScheduler | None = None,
        subscriptions: CachedSubscriptions | None = None,
        telemetry: Telemetry | None = None,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.store = store
        self.mdm = mdm
        self.registry = registry or WorkflowRegistry()
        self.step_timeout = step_timeout
        self.repush_interval = repush_interval
        self.scheduler = scheduler
        self.subscriptions = subscriptions
        self.telemetry: Telemetry = telemetry or NoTelemetry()
        self.clock = clock

    def register(self, workflow: Workflow) -> None:
        self.registry.register(workflow)

    # --- start (§2.2) ----------------------------------------------------------------------

    def start_workflow(
        self,
        name: str,
        ids: Sequence[str],
        context: bytes = b"",
        event: Event | None = None,
        mdm_context: MDMContext | None = None,
    ) -> StartResult:
        workflow = self.registry.get(name)
        if workflow is None:
            raise NoSuchWorkflowError(name)  # ST-1
        requested = unique_ids(ids)  # GAP-15
        if not requested:
            raise InvalidIDsError("no IDs provided")
        if any(not i for i in requested):
            raise InvalidIDsError("empty enrollment id")
        config = self.registry.config_of(workflow)
        codec = workflow.context_codec("")
        try:
            start_context = decode_context(codec, context)
        except ContextDecodeError as exc:
            raise StartError(f"converting step start: unmarshal context: {exc}", client_error=True) from exc

        instance_id = str(uuid.uuid4())  # ST-7
        now = self.clock()
        ids = requested
        busy: list[str] = []
        if config.exclusive:  # ST-2..4 without the race of GAP-1: conditional lock puts
            busy = self.store.acquire_locks(name, instance_id, ids, now, now + LOCK_TTL)
            busy_ids = set(busy)
            ids = [i for i in ids if i not in busy_ids]
            if not ids:
                raise AlreadyStartedError(len(busy), len(requested))

        result = StartResult(instance_id=instance_id, started_ids=[], skipped_ids=busy)
        groups = [ids] if self.mdm.supports_multi_target else [[i] for i in ids]  # ST-8
        workflow_errors_only = True
        for group in groups:
            step = StepStart(
                instance_id=instance_id,
                context=start_context,
                mdm_context=MDMContext(dict(mdm_context.params)) if mdm_context else MDMContext(),
                ids=list(group),
                event=event,
            )
            started = list(group)
            with self._tracking_enqueues() as scope:
                try:
                    workflow.start(step)
                except Exception as exc:
                    workflow_errors_only = workflow_errors_only and isinstance(exc, WorkflowError)
                    logger.warning(
                        "workflow start failed",
                        extra={
                            "workflow": name,
                            "instance_id": instance_id,
                            "enrollment_ids": group,
                            "error": str(exc),
                        },
                    )
                    # ids the workflow did enqueue for before failing have live steps: they run
                    started = [i for i in group if (name, instance_id, i) in scope.enqueued]
                    result.failed_ids += [i for i in group if (name, instance_id, i) not in scope.enqueued]
                    result.errors.append(f"starting workflow: {exc}")
            if config.exclusive:
                for i in group:
                    if i not in started or (name, instance_id, i) not in scope.enqueued:
                        self.store.release_lock(name, i, instance_id)
            if started:
                self.store.record_started(name, started, now)  # ST-9.4, ST-11
                result.started_ids += started
            retrying = [i for i in started if i in scope.send_failures]
            if retrying:
                result.retrying_ids += retrying
                result.errors += list(dict.fromkeys(scope.send_failures[i] for i in retrying))
        if not result.started_ids and result.failed_ids:
            raise StartError(
                "; ".join(dict.fromkeys(result.errors)),
                failed_ids=result.failed_ids,
                client_error=workflow_errors_only,
            )
        self.telemetry.count("WorkflowStarts", len(result.started_ids))
        logger.info(
            "workflow started",
            extra={
                "workflow": name,
                "instance_id": instance_id,
                "started": len(result.started_ids),
                "skipped": len(busy),
                "failed": len(result.failed_ids),
                "retrying": len(result.retrying_ids),
            },
        )
        return result

    @contextmanager
    def _tracking_enqueues(self) -> Iterator[_Scope]:
        """Collect the steps enqueued inside a workflow call, to know whether the instance still
        runs for an id when the call returns (GAP-3), and which sends the MDM server refused."""
        scope = _Scope()
        token = _scope.set(scope)
        try:
            yield scope
        finally:
            _scope.reset(token)

    # --- enqueue (§2.3) --------------------------------------------------------------------

    def enqueue_step(self, workflow_name: str, step: StepEnqueueing) -> None:
        """Store the step for every id, then send each command to the MDM server. Ids the MDM
        server refused stay tracked and are sent again by the sweep, with backoff (GAP-7..10)."""
        if step is None:
            raise StepError("converting workflow step: missing step")
        if not workflow_name:
            raise StepError("converting workflow step: missing workflow name")
        if not step.instance_id:
            raise StepError("converting workflow step: missing instance id")
        ids = unique_ids(step.ids)
        if not ids or any(not i for i in ids):
            raise StepError(
                "converting workflow step: no IDs" if not ids else "converting workflow step: empty id"
            )
        if not step.commands:
            raise StepError("converting workflow step: no commands")
        seen: set[str] = set()
        for command in step.commands:
            if command is None:
                raise StepError("converting workflow step: invalid command (nil)")
            if not isinstance(command, Command | RawCommand):
                raise StepError("converting workflow step: invalid command type")
            if not command.command_uuid:
                raise StepError("converting workflow step: empty command uuid")
            if not getattr(command, "request_type", ""):
                raise StepError("converting workflow step: empty request type")
            if command.command_uuid in seen:
                raise StepError(f"converting workflow step: duplicate command uuid {command.command_uuid}")
            seen.add(command.command_uuid)

        workflow = self.registry.get(workflow_name)  # EQ-7: unregistered names are allowed
        try:
            context = encode_context(workflow.context_codec(step.name) if workflow else None, step.context)
        except Exception as exc:
            raise StepError(f"converting workflow step: context: {exc}") from exc

        now = self.clock()
        delayed = step.not_until is not None and step.not_until > now  # a past NotUntil sends now
        # GAP-20: a delayed step's default timeout counts from its NotUntil time
        timeout_at = self._timeout_for(workflow, step, step.not_until if delayed and step.not_until else now)
        step_id = uuid.uuid4().hex
        max_ids = max(1, self.mdm.max_ids_per_request)
        chunks = [ids[i : i + max_ids] for i in range(0, len(ids), max_ids)]
        targets = [
            NewTarget(
                enrollment_id=enrollment_id,
                step_id=step_id,
                workflow=workflow_name,
                instance_id=step.instance_id,
                step_name=step.name,
                context=context,
                commands=[
                    TargetCommand(chunk_command_uuid(c.command_uuid, k), c.command_uuid, c.request_type)
                    for c in step.commands
                ],
                created_at=int(now.timestamp()),
                timeout_at=int(timeout_at.timestamp()) if timeout_at else None,
                pushed_at=None if delayed else int(now.timestamp()),
            )
            for k, chunk in enumerate(chunks)
            for enrollment_id in chunk
        ]
        try:
            self.store.put_targets(targets)  # EQ-4: before sending, so no report arrives untracked
        except DuplicateCommandError as exc:
            raise StepError(f"storing step: {exc}") from exc

        log = {"workflow": workflow_name, "instance_id": step.instance_id, "step_name": step.name}
        if delayed and step.not_until is not None:  # EQ-6: stored unsent, sent at its time
            self._store_delayed(
                step_id, workflow_name, step, ids, max_ids, targets, timeout_at, step.not_until
            )
            failed: dict[str, str] = {}
        else:
            commands = [
                DelayedCommandData(c.command_uuid, c.request_type, c.to_plist()) for c in step.commands
            ]
            failed = self._send_chunks(chunks, commands, log)

        if failed:  # keep the step; the sweep sends it again (design.md §3.4)
            self._retry_later(step_id, workflow_name, step, ids, max_ids, failed, now)
        scope = _scope.get()
        if scope is not None:
            scope.enqueued.update((workflow_name, step.instance_id, i) for i in ids)
            scope.send_failures.update(failed)

    def _send_chunks(
        self,
        chunks: Sequence[Sequence[str]],
        commands: Sequence[DelayedCommandData],
        log: dict[str, Any],
        step_id: str = "",
        attempt: int = 0,
    ) -> dict[str, str]:
        """Send every command to every chunk of ids (chunk k under its chunk-k UUIDs); returns the
        ids the MDM server refused, with why. Each request carries its own body (GAP-10). A retry
        (``attempt`` > 0) sends under new alias UUIDs: NanoMDM refuses a UUID it already holds."""
        if attempt:
            self.store.add_aliases(
                step_id,
                [
                    (
                        i,
                        retry_command_uuid(c.logical, k, attempt),
                        chunk_command_uuid(c.logical, k),
                        c.request_type,
                    )
                    for k, chunk in enumerate(chunks)
                    for i in chunk
                    for c in commands
                ],
            )
        failed: dict[str, str] = {}
        for k, chunk in enumerate(chunks):
            if not chunk:
                continue
            for command in commands:
                sent_uuid = (
                    retry_command_uuid(command.logical, k, attempt)
                    if attempt
                    else chunk_command_uuid(command.logical, k)
                )
                plist = command.plist
                if sent_uuid != command.logical:
                    plist = RawCommand.from_plist(command.plist).with_uuid(sent_uuid).to_plist()
                reply = self.mdm.enqueue(list(chunk), plist)
                # "already exists" answers a retried request whose first try was queued but whose
                # reply was lost: this UUID is fresh for these ids, so the server holds our command.
                if reply.ok or getattr(reply, "already_exists", False):
                    continue
                refused = reply.failed_ids or list(chunk)
                self.telemetry.count("SendsFailed", len(refused))
                answer = f"HTTP {reply.status}: {reply.detail}" if reply.status else reply.detail
                for enrollment_id in refused:
                    failed.setdefault(
                        enrollment_id, f"command {sent_uuid} ({command.request_type}): {answer}"
                    )
                logger.error(
                    "MDM server refused command",
                    extra={
                        **log,
                        "command_uuid": sent_uuid,
                        "request_type": command.request_type,
                        "enrollment_ids": refused,
                        "status": reply.status,
                        "detail": reply.detail,
                    },
                )
        return failed

    def _store_delayed(
        self,
        step_id: str,
        workflow_name: str,
        step: StepEnqueueing,
        ids: list[str],
        chunk_size: int,
        targets: list[NewTarget],
        timeout_at: datetime | None,
        not_until: datetime,
    ) -> None:
        delayed = _delayed_state(step_id, workflow_name, step, ids, ids, chunk_size, not_until, attempts=0)
        expires = int((timeout_at or not_until).timestamp()) + 7 * 86_400
        try:
            self.store.put_delayed(delayed, expires)
        except Exception:
            for target in targets:
                self.store.delete_target(target.state())
            raise
        self._schedule(step_id, not_until, workflow_name, step.instance_id)

    def _retry_later(
        self,
        step_id: str,
        workflow_name: str,
        step: StepEnqueueing,
        ids: list[str],
        chunk_size: int,
        failed: dict[str, str],
        now: datetime,
    ) -> None:
        """Turn the refused part of a send into a delayed step due after a backoff: the same
        claim-and-send path (one-time schedule or sweep) retries it, and it is logged each time."""
        retry_at = now + timedelta(seconds=SEND_RETRY_DELAYS[0])
        self.store.mark_unsent(step_id, list(failed))
        self.store.put_delayed(
            _delayed_state(step_id, workflow_name, step, ids, list(failed), chunk_size, retry_at, attempts=1),
            int(retry_at.timestamp()) + 7 * 86_400,
        )
        logger.error(
            "MDM server did not accept the step; the engine retries the send",
            extra={
                "workflow": workflow_name,
                "instance_id": step.instance_id,
                "step_name": step.name,
                "enrollment_ids": list(failed),
                "retry_at": retry_at.isoformat(),
            },
        )
        self._schedule(step_id, retry_at, workflow_name, step.instance_id)

    def _schedule(self, step_id: str, at: datetime, workflow_name: str, instance_id: str) -> None:
        if self.scheduler is None:
            return  # the sweep sends it (WK-4)
        try:
            self.scheduler.schedule_step(step_id, at)
        except Exception as exc:  # the sweep's safety net still sends it, a sweep interval late
            logger.warning(
                "could not create the one-time schedule of a delayed step",
                extra={
                    "workflow": workflow_name,
                    "instance_id": instance_id,
                    "step_id": step_id,
                    "error": str(exc),
                },
            )

    def send_delayed_step(self, step_id: str, now: datetime | None = None) -> int:
        """Send a delayed step to its ids that are still waiting for it (a check-out may have
        cancelled some). Claimed first, so the schedule and a sweep never both send. Ids the MDM
        server refuses are retried with backoff; returns how many ids were sent to."""
        now = now or self.clock()
        state = self.store.claim_delayed(step_id, self.clock())  # leases run on the real clock
        if state is None:
            return 0
        log = {
            "workflow": state.workflow,
            "instance_id": state.instance_id,
            "step_name": state.step_name,
            "step_id": step_id,
        }
        pending = set(state.pending)
        live = self.store.live_target_ids(step_id, state.pending)
        size = max(1, state.chunk_size)
        chunks = [
            [i for i in state.ids[k : k + size] if i in pending and i in live]
            for k in range(0, len(state.ids), size)
        ]
        failed = self._send_chunks(chunks, state.commands, log, step_id, state.attempts)
        sent = [i for chunk in chunks for i in chunk if i not in failed]
        if sent:
            self.store.mark_sent(step_id, sent, now)
        if not failed:
            self.store.finish_delayed(step_id)
            logger.info("delayed step sent", extra={**log, "sent": len(sent)})
            return len(sent)
        attempts = state.attempts + 1
        if attempts > len(SEND_RETRY_DELAYS):
            logger.error(
                "giving up sending a step the MDM server keeps refusing; its ids will time out",
                extra={**log, "enrollment_ids": list(failed), "attempts": attempts},
            )
            self.store.finish_delayed(step_id)
        else:
            retry_at = now + timedelta(seconds=SEND_RETRY_DELAYS[attempts - 1])
            logger.error(
                "MDM server did not accept the step; the engine retries the send",
                extra={
                    **log,
                    "enrollment_ids": list(failed),
                    "attempts": attempts,
                    "retry_at": retry_at.isoformat(),
                },
            )
            self.store.reschedule_delayed(step_id, list(failed), int(retry_at.timestamp()), attempts)
            self._schedule(step_id, retry_at, state.workflow, state.instance_id)
        return len(sent)

    def _timeout_for(self, workflow: Workflow | None, step: StepEnqueueing, now: datetime) -> datetime | None:
        """EQ-1/2: the step's own timeout, else the workflow's, else the engine's (0 = never)."""
        if step.timeout is not None:
            return step.timeout
        config = self.registry.config_of(workflow) if workflow else None
        if config is not None and config.timeout and config.timeout > timedelta(0):
            return now + config.timeout
        if self.step_timeout > 0:
            return now + timedelta(seconds=self.step_timeout)
        return None

    # --- command reports (§2.4) ------------------------------------------------------------

    def reports_ahead(self, pairs: Iterable[tuple[str, str]]) -> AbstractContextManager[None]:
        """Around a batch of events: the (enrollment id, command UUID) of the reports in it,
        looked up together (one DynamoDB call for the batch instead of one per report)."""
        return self.store.prefetched_commands(pairs)

    def handle_command_report(
        self, enrollment_id: str, command_uuid: str, raw_report: bytes, mdm_context: MDMContext | None = None
    ) -> None:
        tracked = self.store.lookup_command(enrollment_id, command_uuid)
        if tracked is None:  # CR-2: not ours, or its step already ended
            self.telemetry.count("UntrackedReports")
            logger.debug(
                "untracked command report",
                extra={"enrollment_id": enrollment_id, "command_uuid": command_uuid},
            )
            return
        step_id, request_type, canonical = tracked
        response = parse_response(request_type, raw_report)  # CR-3
        self.telemetry.count("CommandReports", status=response.status)
        if response.command_uuid and response.command_uuid != command_uuid:  # GAP-24
            logger.warning(
                "report CommandUUID differs from the webhook's; using the webhook's",
                extra={
                    "enrollment_id": enrollment_id,
                    "command_uuid": command_uuid,
                    "report_command_uuid": response.command_uuid,
                },
            )

        self._dispatch_all_command_response(request_type, response, enrollment_id, mdm_context)  # CR-5

        state = self.store.record_report(
            enrollment_id, step_id, canonical, raw_report, response.completed, self.clock()
        )  # CR-4, CR-6, CR-7
        if state is None:
            return  # CR-8
        self._deliver_completion(state, canonical, response, mdm_context)

    def _deliver_completion(
        self, state: TargetState, command_uuid: str, current: CommandResponse, mdm_context: MDMContext | None
    ) -> None:
        log = {
            "workflow": state.workflow,
            "instance_id": state.instance_id,
            "step_name": state.step_name,
            "enrollment_id": state.enrollment_id,
            "command_uuid": command_uuid,
        }
        workflow = self.registry.get(state.workflow)
        if workflow is None:  # CR-9, but recoverable: the step stays tracked for a retry
            self.store.reopen(state.enrollment_id, state.step_id, command_uuid)
            raise EngineError(f"workflow not registered: {state.workflow}")
        try:
            result = self._step_result(workflow, state, {command_uuid: current}, mdm_context)
        except Exception as exc:
            # a stored report or context that does not decode will not decode on a retry either
            logger.error("cannot build step result; step dropped", extra={**log, "error": str(exc)})
            self._finish(workflow, state, set())
            return
        with self._tracking_enqueues() as scope:
            try:
                workflow.step_completed(result)  # CR-12
            except WorkflowError as exc:
                # the workflow looked at the result and rejected it: that is an outcome, not a
                # failure to deliver, so the step ends here (as in Go, minus the lost result)
                logger.error("workflow step completed with an error", extra={**log, "error": str(exc)})
            except Exception:
                # unexpected failure: keep the result so the queue's retry delivers it again (GAP-6)
                self.store.reopen(state.enrollment_id, state.step_id, command_uuid)
                raise
        self._finish(workflow, state, scope.enqueued)
        self.telemetry.count("StepsCompleted")
        logger.info("step completed", extra=log)

    def _finish(self, workflow: Workflow, state: TargetState, enqueued: set[tuple[str, str, str]]) -> None:
        self.store.delete_target(state)
        if (
            self.registry.config_of(workflow).exclusive
            and (state.workflow, state.instance_id, state.enrollment_id) not in enqueued
        ):
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

    def _dispatch_all_command_response(
        self, request_type: str, response: CommandResponse, enrollment_id: str, mdm_context: MDMContext | None
    ) -> None:
        event = Event(EventFlag.ALL_COMMAND_RESPONSE, response)
        for workflow in self.registry.all_response_workflows(request_type):
            self._call_event(workflow, event, enrollment_id, mdm_context)

    # --- the sweeper (§3) --------------------------------------------------------------------

    def sweep(self, now: datetime | None = None) -> SweepReport:
        """One pass of the worker: step timeouts (WK-6..9), and completions whose delivery died."""
        now = now or self.clock()
        report = SweepReport()
        for step_id in self.store.due_delayed(now):  # WK-2 phase 1: overdue delayed steps
            try:
                report.sent += self.send_delayed_step(step_id, now)
            except Exception:
                logger.exception("sending a delayed step failed", extra={"step_id": step_id})
                report.failed += 1
        for enrollment_id, step_id in self.store.due_timeouts(now):
            state = self.store.claim_timeout(enrollment_id, step_id, self.clock())
            if state is not None:
                outcome = self._deliver_timeout(state)
                report.timed_out += outcome
                report.failed += 1 - outcome
                continue
            state = self.store.claim_stuck_completion(enrollment_id, step_id, self.clock())
            if state is not None:
                try:
                    self._deliver_claimed_completion(state)
                    report.redelivered += 1
                except Exception:
                    logger.exception(
                        "redelivering a completed step failed",
                        extra={
                            "workflow": state.workflow,
                            "instance_id": state.instance_id,
                            "step_name": state.step_name,
                            "enrollment_id": enrollment_id,
                        },
                    )
                    report.failed += 1
        if self.repush_interval > 0:  # WK-2 phase 3; 0 disables (GAP-29)
            report.repushed = self.repush(now)
        if report.sent or report.timed_out or report.redelivered or report.failed or report.repushed:
            logger.info(
                "sweep",
                extra={
                    "sent": report.sent,
                    "repushed": report.repushed,
                    "timed_out": report.timed_out,
                    "redelivered": report.redelivered,
                    "failed": report.failed,
                },
            )
        return report

    def repush(self, now: datetime) -> int:
        """WK-10..13: one APNs push per id whose commands waited a re-push interval with neither a
        push nor a report. A push the MDM server refuses is logged; the clock still moved."""
        ids = self.store.claim_repushes(now - timedelta(seconds=self.repush_interval), now)
        if not ids:
            return 0
        self.telemetry.count("RePushes", len(ids))
        for reply in self.mdm.push(ids):
            if not reply.ok:
                logger.error(
                    "re-push refused by the MDM server",
                    extra={
                        "enrollment_ids": reply.failed_ids or reply.ids,
                        "status": reply.status,
                        "detail": reply.detail,
                    },
                )
        return len(ids)

    def _deliver_timeout(self, state: TargetState) -> int:
        """StepTimeout once for this (step, id), with the reports that did arrive (NotNow included,
        GAP-25). Returns 1 when delivered (or dropped for good), 0 when it will be retried."""
        log = {
            "workflow": state.workflow,
            "instance_id": state.instance_id,
            "step_name": state.step_name,
            "enrollment_id": state.enrollment_id,
        }
        workflow = self.registry.get(state.workflow)
        if workflow is None:  # WK-7: nobody to tell; drop it rather than retry forever
            logger.error("timed-out step of an unregistered workflow dropped", extra=log)
            self.store.delete_target(state)
            return 1
        try:
            result = self._step_result(workflow, state, {}, None)
        except Exception as exc:
            logger.error("cannot build timed-out step result; step dropped", extra={**log, "error": str(exc)})
            self._finish(workflow, state, set())
            return 1
        with self._tracking_enqueues() as scope:
            try:
                workflow.step_timeout(result)
            except WorkflowError as exc:  # WK-8 (TimeoutNotUsed included)
                logger.info(
                    "workflow step timeout handler returned an error", extra={**log, "error": str(exc)}
                )
            except Exception:
                logger.exception("workflow step timeout handler failed; a later sweep retries", extra=log)
                return 0
        self._finish(workflow, state, scope.enqueued)
        self.telemetry.count("StepsTimedOut")
        logger.info("step timed out", extra=log)
        return 1

    def _deliver_claimed_completion(self, state: TargetState) -> None:
        workflow = self.registry.get(state.workflow)
        if workflow is None:
            raise EngineError(f"workflow not registered: {state.workflow}")
        result = self._step_result(workflow, state, {}, None)
        with self._tracking_enqueues() as scope:
            try:
                workflow.step_completed(result)
            except WorkflowError as exc:
                logger.error(
                    "workflow step completed with an error",
                    extra={
                        "workflow": state.workflow,
                        "enrollment_id": state.enrollment_id,
                        "error": str(exc),
                    },
                )
        self._finish(workflow, state, scope.enqueued)

    # --- check-ins and idle (§2.5, §2.6) ---------------------------------------------------

    def handle_checkin(
        self, enrollment_id: str, message: CheckinMessage, mdm_context: MDMContext | None = None
    ) -> None:
        if isinstance(message, Authenticate | CheckOut):
            removed = self.store.cancel_all(enrollment_id)  # CI-1, GAP-4 fixed
            logger.info(
                "enrollment reset: steps cancelled",
                extra={
                    "enrollment_id": enrollment_id,
                    "message_type": type(message).__name__,
                    "items": removed,
                },
            )
            flags = [EventFlag.AUTHENTICATE if isinstance(message, Authenticate) else EventFlag.CHECK_OUT]
        elif isinstance(message, TokenUpdate):
            flags = [EventFlag.TOKEN_UPDATE] + ([EventFlag.ENROLLMENT] if message.enrolling else [])
        else:
            return
        for flag in flags:  # CI-3: one after the other
            self.dispatch_event(Event(flag, message), enrollment_id, mdm_context)

    def handle_idle(
        self, enrollment_id: str, mdm_context: MDMContext | None = None, event_at: datetime | None = None
    ) -> None:
        """ID-1..5: Idle to its subscribers, then IdleNotStartedSince subscriptions whose workflow
        was last started for this id more than ``event_context`` seconds before ``event_at``."""
        self.dispatch_event(Event(EventFlag.IDLE), enrollment_id, mdm_context)
        event_at = event_at or self.clock()
        for name, sub in self._user_subscriptions(EventFlag.IDLE_NOT_STARTED_SINCE).items():
            try:
                last = self.store.last_started(enrollment_id, sub.workflow)
            except Exception as exc:
                logger.warning(
                    "reading the last start failed", extra={"subscription": name, "error": str(exc)}
                )
                continue
            if last is not None and event_at <= last + timedelta(seconds=sub.idle_seconds):
                continue
            self._start_for_subscription(
                name, sub, Event(EventFlag.IDLE_NOT_STARTED_SINCE), enrollment_id, mdm_context
            )

    def dispatch_event(self, event: Event, enrollment_id: str, mdm_context: MDMContext | None) -> None:
        """EV-1 user subscriptions start their workflow; EV-2 workflows subscribed in their config
        get ``event``. Errors are logged only (CI-5)."""
        for name, sub in self._user_subscriptions(event.flag).items():
            self._start_for_subscription(name, sub, event, enrollment_id, mdm_context)
        for workflow in self.registry.event_workflows(event.flag):
            self._call_event(workflow, event, enrollment_id, mdm_context)

    def _user_subscriptions(self, flag: EventFlag) -> dict[str, EventSubscription]:
        if self.subscriptions is None:
            return {}
        try:
            return self.subscriptions.by_event(flag)
        except Exception as exc:  # EV-3: config subscribers still get the event
            logger.warning(
                "loading event subscriptions failed", extra={"event": flag.name, "error": str(exc)}
            )
            return {}

    def _start_for_subscription(
        self,
        name: str,
        sub: EventSubscription,
        event: Event,
        enrollment_id: str,
        mdm_context: MDMContext | None,
    ) -> None:
        log = {
            "subscription": name,
            "workflow": sub.workflow,
            "event": event.name,
            "enrollment_id": enrollment_id,
        }
        try:
            result = self.start_workflow(
                sub.workflow, [enrollment_id], sub.context.encode(), event, mdm_context
            )
        except AlreadyStartedError:
            logger.debug("subscription start skipped: workflow already running", extra=log)
            return
        except Exception as exc:
            logger.warning("subscription start failed", extra={**log, "error": str(exc)})
            return
        logger.info("workflow started by subscription", extra={**log, "instance_id": result.instance_id})

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
