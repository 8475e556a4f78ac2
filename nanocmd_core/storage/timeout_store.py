"""The sweeper's side of step targets: the due timeouts and the claims that end a step once."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from nanocmd_core.storage.dynamo import _conditional, _epoch, _lease_free
from nanocmd_core.storage.models import STEP, StepTarget, enrollment_pk
from nanocmd_core.storage.send_store import DELIVERY_LEASE, TIMEOUT_INDEX_SHARDS
from nanocmd_core.storage.targets import TIMEOUT_PREFIX, TargetState, done_count, target_state


class TimeoutStoreMixin:
    """Timeouts and stuck deliveries (§2.7): found through the sparse ``gsi1`` index, claimed by
    a conditional update on the step target, which serialises them with its reports."""

    def due_timeouts(self, now: datetime, limit: int = 1000) -> list[tuple[str, str]]:
        """(enrollment id, step id) of live step targets whose timeout has passed: one Query per
        shard of the sparse ``gsi1`` index, so a sweep costs the same for 10 or 10 million ids."""
        due: list[tuple[str, str]] = []
        for shard in range(TIMEOUT_INDEX_SHARDS):
            for item in StepTarget.gsi1.query(
                f"{TIMEOUT_PREFIX}{shard}", StepTarget.gsi1sk <= _epoch(now), limit=limit - len(due)
            ):
                due.append((item.pk.removeprefix("ENR#"), item.sk.removeprefix(STEP)))
            if len(due) >= limit:
                break
        return due

    def claim_timeout(self, enrollment_id: str, step_id: str, now: datetime) -> TargetState | None:
        """Claim an unfinished step target for its timeout, or None when it completed, vanished or
        another sweep holds it. From here reports are ignored (a report and a timeout racing end
        in exactly one of the two: this update and the report's are serialised on one item)."""
        unfinished = StepTarget.done.does_not_exist() | (done_count() < StepTarget.n_commands)
        return self._claim_target(enrollment_id, step_id, StepTarget.timing_out, unfinished, now)

    def claim_stuck_completion(self, enrollment_id: str, step_id: str, now: datetime) -> TargetState | None:
        """A step whose final report was recorded but whose delivery never finished (the process
        died): claim it once the delivery lease is over, so the sweep delivers it."""
        complete = done_count() == StepTarget.n_commands
        return self._claim_target(enrollment_id, step_id, StepTarget.claimed_until, complete, now)

    @staticmethod
    def _claim_target(
        enrollment_id: str, step_id: str, lease: Any, state: Any, now: datetime
    ) -> TargetState | None:
        """Take ``lease`` on a live step target in ``state`` unless someone else holds it."""
        target = StepTarget(enrollment_pk(enrollment_id), STEP + step_id)
        with _conditional() as write:
            target.update(
                actions=[lease.set(_epoch(now) + DELIVERY_LEASE)],
                condition=StepTarget.pk.exists() & state & _lease_free(lease, now),
            )
        return None if write.failed else target_state(target)
