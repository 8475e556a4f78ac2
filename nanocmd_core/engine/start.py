"""Starting workflow instances: synchronously (the API's answer waits), and one chunk of ids of
an asynchronous start at a time (fleet_start.py queues them). Both take the same path: the
exclusivity locks, the ids' outcomes, the workflow's Start per id group, the start records."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from aws_lambda_powertools import Logger

from nanocmd_core.engine.core import LOCK_TTL, EngineCore
from nanocmd_core.engine.errors import AlreadyStartedError, InvalidIDsError, NoSuchWorkflowError, StartError
from nanocmd_core.engine.types import StartResult
from nanocmd_core.storage.instance_store import StartRecord
from nanocmd_core.workflow.context import ContextDecodeError, decode_context
from nanocmd_core.workflow.errors import WorkflowError
from nanocmd_core.workflow.events import Event
from nanocmd_core.workflow.step import MDMContext, StepStart, unique_ids
from nanocmd_core.workflow.workflow import Workflow

logger = Logger(service="nanocmd", child=True)


class StartMixin(EngineCore):
    """Start (§2.2): exclusivity locks, the workflow's Start per id group, start records."""

    def start_workflow(
        self,
        name: str,
        ids: Sequence[str],
        context: bytes = b"",
        event: Event | None = None,
        mdm_context: MDMContext | None = None,
        started_by: str = "api",
    ) -> StartResult:
        """Start an instance for ``ids``; ``started_by`` (``api`` or an event subscription's
        name) goes into the instance's history with the ids' outcomes."""
        workflow, requested, start_context = self._check_start(name, ids, context)
        instance_id = str(uuid.uuid4())  # ST-7
        record = StartRecord(instance_id, name, started_by, context, len(requested), 0, 0)
        instances = self.instances
        result = self._start_ids(
            workflow,
            record,
            requested,
            start_context,
            event,
            mdm_context,
            open_outcomes=(
                (lambda ids, busy, now: instances.open_instance(record, ids, busy, now))
                if instances
                else None
            ),
            settle=(lambda now: instances.settle_start(record, now)) if instances else None,
        )
        if not result.started_ids and result.failed_ids:
            raise StartError(
                "; ".join(dict.fromkeys(result.errors)),
                failed_ids=result.failed_ids,
                client_error=result.workflow_errors_only,
            )
        return result

    def _check_start(self, name: str, ids: Sequence[str], context: bytes) -> tuple[Workflow, list[str], Any]:
        workflow = self.registry.get(name)
        if workflow is None:
            raise NoSuchWorkflowError(name)  # ST-1
        requested = unique_ids(ids)  # GAP-15
        if not requested:
            raise InvalidIDsError("no IDs provided")
        if any(not i for i in requested):
            raise InvalidIDsError("empty enrollment id")
        try:
            start_context = decode_context(workflow.context_codec(""), context)
        except ContextDecodeError as exc:
            raise StartError(f"converting step start: unmarshal context: {exc}", client_error=True) from exc
        return workflow, requested, start_context

    def _start_ids(
        self,
        workflow: Workflow,
        record: StartRecord,
        requested: list[str],
        start_context: Any,
        event: Event | None,
        mdm_context: MDMContext | None,
        *,
        open_outcomes: Callable[[list[str], list[str], datetime], None] | None,
        settle: Callable[[datetime], None] | None,
        raise_when_busy: bool = True,
    ) -> StartResult:
        """Lock, open the ids' outcomes, run the workflow's Start, record the starts; ``record``
        gets the counts (``settle`` writes them with the failed and at-once completed ids)."""
        name, instance_id = workflow.name, record.instance_id
        config = self.registry.config_of(workflow)
        now = self.clock()
        ids = requested
        busy: list[str] = []
        if config.exclusive:  # ST-2..4 without the race of GAP-1: conditional lock puts
            busy = self.store.acquire_locks(name, instance_id, ids, now, now + LOCK_TTL)
            busy_ids = set(busy)
            ids = [i for i in ids if i not in busy_ids]
            if not ids and raise_when_busy:
                raise AlreadyStartedError(len(busy), len(requested))
        record.started, record.skipped = len(ids), len(busy)
        result = StartResult(instance_id=instance_id, started_ids=[], skipped_ids=busy)
        if open_outcomes is not None:
            try:
                open_outcomes(ids, busy, now)
            except Exception:  # nothing started: give the ids back at once, not after the lock TTL
                if config.exclusive:
                    for i in ids:
                        self.store.release_lock(name, i, instance_id)
                raise
        completed_at_once: list[str] = []
        groups = ([ids] if self.mdm.supports_multi_target else [[i] for i in ids]) if ids else []  # ST-8
        try:
            for group in groups:
                completed_at_once += self._start_group(
                    workflow, instance_id, group, start_context, event, mdm_context, result
                )
        finally:
            if result.started_ids:  # ST-9.4, ST-11; one batched write for every group
                self.store.record_started(name, result.started_ids, now)
            record.started = len(result.started_ids)
            record.failed_ids = result.failed_ids
            record.failed_error = "; ".join(dict.fromkeys(result.errors))
            record.completed_ids = completed_at_once
            if settle is not None and (result.failed_ids or completed_at_once or record.chunk is not None):
                settle(now)
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

    def _start_group(
        self,
        workflow: Workflow,
        instance_id: str,
        group: list[str],
        start_context: Any,
        event: Event | None,
        mdm_context: MDMContext | None,
        result: StartResult,
    ) -> list[str]:
        """The workflow's Start for one group of ids; returns those it enqueued nothing for."""
        name = workflow.name
        step = StepStart(
            instance_id=instance_id,
            context=start_context,
            mdm_context=MDMContext(dict(mdm_context.params)) if mdm_context else MDMContext(),
            ids=list(group),
            event=event,
        )
        started = list(group)
        with self._tracking_enqueues(outcome_tracked=self.instances is not None) as scope:
            try:
                workflow.start(step)
            except Exception as exc:
                result.workflow_errors_only = result.workflow_errors_only and isinstance(exc, WorkflowError)
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
                result.failed_ids += [i for i in group if i not in started]
                result.errors.append(f"starting workflow: {exc}")
        nothing_enqueued = [i for i in started if (name, instance_id, i) not in scope.enqueued]
        if self.registry.config_of(workflow).exclusive:
            for i in group:
                if i not in started or i in nothing_enqueued:
                    self.store.release_lock(name, i, instance_id)
        result.started_ids += started
        retrying = [i for i in started if i in scope.send_failures]
        if retrying:
            result.retrying_ids += retrying
            result.errors += list(dict.fromkeys(scope.send_failures[i] for i in retrying))
        return nothing_enqueued
