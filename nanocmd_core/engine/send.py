"""Sending steps: enqueue, chunks, delayed steps and the retries of refused sends."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from aws_lambda_powertools import Logger

from nanocmd_core.engine.core import EngineCore, _scope, chunk_command_uuid, retry_command_uuid
from nanocmd_core.engine.errors import StepError
from nanocmd_core.engine.fresh_uuids import claim_fresh
from nanocmd_core.mdm.commands import Command, RawCommand
from nanocmd_core.storage.engine_store import (
    DelayedCommandData,
    DelayedState,
    DuplicateCommandError,
    NewTarget,
    TargetCommand,
)
from nanocmd_core.workflow.context import encode_context
from nanocmd_core.workflow.step import StepEnqueueing, unique_ids
from nanocmd_core.workflow.workflow import Workflow

logger = Logger(service="nanocmd", child=True)


SEND_RETRY_DELAYS = (60, 120, 300, 600, 1800, 3600, 3600, 3600)
"""Seconds before each new attempt to send commands the MDM server refused; after the last one
the engine gives up (logged as an error) and the step ends at its timeout."""


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


class SendMixin(EngineCore):
    """Enqueue (§2.3): store a step's targets, then send it in chunks; delayed steps and retries."""

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
        scope = _scope.get()
        outcome_tracked = scope is not None and scope.outcome_tracked
        prior_error = scope.prior_error if scope is not None else ""
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
                not_until=int(step.not_until.timestamp()) if delayed and step.not_until else None,
                outcome_tracked=outcome_tracked,
                prior_error=prior_error,
            )
            for k, chunk in enumerate(chunks)
            for enrollment_id in chunk
        ]
        try:
            # EQ-4: before sending, so no report arrives untracked
            self.store.put_targets(targets, fresh=claim_fresh(step.commands))
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
                reply = (
                    self.mdm.enqueue(list(chunk), plist, push=False)  # type: ignore[call-arg]
                    if self.push_per_step
                    else self.mdm.enqueue(list(chunk), plist)
                )
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
        if self.push_per_step:
            self._push_once([i for chunk in chunks for i in chunk if i not in failed], log)
        return failed

    def _push_once(self, ids: list[str], log: dict[str, Any]) -> None:
        """Wake each id of the step once, its commands all queued (nanocmd #8: a push per command
        made a device check in once per command). A failed push leaves the commands queued: the
        device gets them at its next check-in, and the re-push sweep pushes it again."""
        if not ids:
            return
        failed: list[str] = []
        for result in self.mdm.push(ids):
            failed += result.failed_ids if not result.ok else result.push_failed_ids
        if failed:
            self.telemetry.count("PushesFailed", len(failed))
            logger.warning(
                "MDM server could not push; the commands stay queued",
                extra={**log, "enrollment_ids": failed[:20], "push_failed": len(failed), "pushed": len(ids)},
            )

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
        self.store.mark_unsent(step_id, failed, retry_at)
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
            self.store.mark_unsent(step_id, failed, None)
        else:
            retry_at = now + timedelta(seconds=SEND_RETRY_DELAYS[attempts - 1])
            self.store.mark_unsent(step_id, failed, retry_at)
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
