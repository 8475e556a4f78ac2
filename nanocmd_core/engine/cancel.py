"""Cancelling steps: an instance (all its ids or some), a workflow for some ids, and the reset of
an enrollment by Authenticate or CheckOut (with its user channels).

Every path claims a step the way a timeout does (a conditional update that only an unfinished,
unclaimed step passes), so a cancel and a final report racing for one step end it exactly once:
whichever update lands first wins, the other finds the step taken. The workflow is told
(``Workflow.step_cancelled``), the id's outcome becomes ``cancelled``, the step's items and the
exclusivity lock go, and a later report for its commands is untracked.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from aws_lambda_powertools import Logger

from nanocmd_core.engine.core import EngineCore
from nanocmd_core.engine.errors import NoSuchWorkflowError
from nanocmd_core.status.views import CancelResult
from nanocmd_core.storage.engine_store import TargetState
from nanocmd_core.storage.models import STEP
from nanocmd_core.storage.partition_store import PartitionView, lock_held
from nanocmd_core.workflow.step import unique_ids

logger = Logger(service="nanocmd", child=True)

Match = Callable[[str, str], bool]
"""(workflow, instance id) → whether a cancel takes that workflow instance's step or lock."""

_THREADS = 8
_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def per_id(fn: Callable[[str], object], ids: Sequence[str]) -> list[object]:
    """``fn`` over ids on the engine's own small pool: each id costs a few round trips in
    series, and the store's pool (which ``fn`` uses) must not be the one waiting on them."""
    global _POOL
    if len(ids) <= 1:
        return [fn(i) for i in ids]
    if _POOL is None:
        with _POOL_LOCK:
            if _POOL is None:
                _POOL = ThreadPoolExecutor(max_workers=_THREADS, thread_name_prefix="nanocmd-ids")
    return list(_POOL.map(fn, ids))


class CancelMixin(EngineCore):
    """Cancel (issue 11) and the resets of check-ins (CI-1), on one path."""

    def cancel_instance(self, instance_id: str, ids: Sequence[str] | None = None) -> CancelResult | None:
        """End the instance's steps for ``ids`` (every id still in flight when None); None when
        the instance is unknown (or past its history days)."""
        if self.instances is None:
            return None
        if self.instances.get_instance(instance_id, self.clock()) is None:
            return None
        targets = unique_ids(ids) if ids is not None else self.instances.in_flight_ids(instance_id)
        result = self._cancel_ids(targets, lambda _, instance: instance == instance_id, "instance cancelled")
        logger.info(
            "instance cancelled",
            extra={
                "instance_id": instance_id,
                "cancelled": len(result.cancelled_ids),
                "not_running": len(result.not_running_ids),
            },
        )
        return result

    def cancel_workflow(self, name: str, ids: Sequence[str]) -> CancelResult:
        """End ``name``'s steps for ``ids``, whatever instance they belong to."""
        if self.registry.get(name) is None:
            raise NoSuchWorkflowError(name)
        result = self._cancel_ids(unique_ids(ids), lambda workflow, _: workflow == name, "workflow cancelled")
        logger.info(
            "workflow cancelled",
            extra={
                "workflow": name,
                "cancelled": len(result.cancelled_ids),
                "not_running": len(result.not_running_ids),
            },
        )
        return result

    def reset_enrollment(self, enrollment_id: str, why: str) -> int:
        """Authenticate or CheckOut (CI-1, GAP-4 fixed): end every step of the id and of its user
        channels (found through the markers in its own partition), and forget its start records.
        Returns the steps, locks and records removed."""
        removed = 0
        view = self.store.read_partition(enrollment_id, consistent=True)
        removed += self._cancel_view(view, lambda _w, _i: True, why)[1]
        removed += self.store.remove_leftovers(view, clear_started=True, user_channels=True)
        for channel in view.user_channels:
            channel_view = self.store.read_partition(channel, consistent=True)
            removed += self._cancel_view(channel_view, lambda _w, _i: True, why)[1]
            removed += self.store.remove_leftovers(channel_view, clear_started=True, user_channels=False)
        return removed

    # --- the shared path -------------------------------------------------------------------------

    def _cancel_ids(self, ids: Sequence[str], match: Match, why: str) -> CancelResult:
        def one(enrollment_id: str) -> bool:
            view = self.store.read_partition(enrollment_id, consistent=True)
            return self._cancel_view(view, match, why)[0]

        ended = per_id(one, list(ids))
        return CancelResult(
            cancelled_ids=[i for i, e in zip(ids, ended, strict=True) if e],
            not_running_ids=[i for i, e in zip(ids, ended, strict=True) if not e],
        )

    def _cancel_view(self, view: PartitionView, match: Match, why: str) -> tuple[bool, int]:
        """End the matching steps and locks of one id's partition; (anything ended, items)."""
        enrollment_id = view.enrollment_id
        now = self.clock()
        taken: set[tuple[str, str]] = set()
        delivering: set[tuple[str, str]] = set()
        removed = 0
        for item in view.steps:
            key = (item.workflow, item.instance_id)
            if not match(*key):
                continue
            # the timeout's claim: only an unfinished step nobody else holds passes it
            state = self.store.claim_timeout(enrollment_id, item.sk.removeprefix(STEP), now)
            if state is None:  # completed (being delivered) or timing out: that end wins
                delivering.add(key)
                continue
            self._end_cancelled(state, why)
            taken.add(key)
            removed += 1
        for lock in view.locks:
            key = (view.lock_workflow(lock), lock.instance_id)
            if not match(*key) or key in delivering:
                continue
            self.store.release_lock(key[0], enrollment_id, lock.instance_id)
            removed += 1
            if not lock_held(lock, now):
                continue
            if key not in taken and self.instances is not None:  # a lock whose step was lost
                self.instances.end_outcome(lock.instance_id, enrollment_id, "cancelled", now, why)
            taken.add(key)
        return bool(taken), removed

    def _end_cancelled(self, state: TargetState, why: str) -> None:
        log = {
            "workflow": state.workflow,
            "instance_id": state.instance_id,
            "step_name": state.step_name,
            "enrollment_id": state.enrollment_id,
            "reason": why,
        }
        workflow = self.registry.get(state.workflow)
        if workflow is not None:  # GAP-32: the workflow hears of it, with the step's context
            try:
                workflow.step_cancelled(self._step_result(workflow, state, {}, None))
            except Exception as exc:
                logger.warning("workflow step cancel handler failed", extra={**log, "error": str(exc)})
        if state.outcome_tracked and self.instances is not None:
            self.instances.end_outcome(state.instance_id, state.enrollment_id, "cancelled", self.clock(), why)
        self.store.delete_target(state)
        self.telemetry.count("StepsCancelled")
        logger.info("step cancelled", extra=log)
