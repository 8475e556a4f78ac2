"""Sending a step's commands later: delayed steps (NotUntil), the retries of refused sends, the
sent/unsent marks the status route shows, and the re-push clock. A mixin of ``DynamoEngineStore``.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

from nanocmd_core.storage.dynamo import _conditional, _epoch, _lease_free, fan_out
from nanocmd_core.storage.models import (
    DELAYED,
    STEP,
    DelayedCommand,
    DelayedStep,
    StepTarget,
    enrollment_pk,
)

TIMEOUT_INDEX_SHARDS = 8
PUSH_INDEX_SHARDS = 8
PUSH_PREFIX = "PUSH#"
SEND_PREFIX = "SEND#"
_DELAYED_SK = "DELAY"
DELIVERY_LEASE = 900
"""Seconds a claim on a step (completion, timeout or send) is held before another worker may take
it over: the longest a Lambda invocation can run, so a live claimant is never overtaken. Claims
compare leases with the real clock (the caller's), not with the time a sweep looks due at."""


class DelayedCommandData(NamedTuple):
    """One command of a step as stored to send later: the author's UUID, its type, the plist."""

    logical: str
    request_type: str
    plist: bytes


@dataclass
class DelayedState:
    """A step stored unsent until its NotUntil time (SC-9)."""

    step_id: str
    workflow: str
    instance_id: str
    step_name: str
    ids: list[str]
    pending: list[str]
    chunk_size: int
    commands: list[DelayedCommandData]
    send_at: int
    attempts: int = 0


class SendStoreMixin:
    """Delayed sends, send retries and re-pushes."""

    # --- delayed steps ------------------------------------------------------------------------

    def put_delayed(self, state: DelayedState, expires: int | None) -> None:
        item = DelayedStep(
            DELAYED + state.step_id,
            _DELAYED_SK,
            workflow=state.workflow,
            instance_id=state.instance_id,
            step_name=state.step_name,
            ids=state.ids,
            pending=state.pending,
            chunk_size=state.chunk_size,
            commands=[
                DelayedCommand(logical=c.logical, request_type=c.request_type, plist=c.plist)  # type: ignore[no-untyped-call]
                for c in state.commands
            ],
            send_at=state.send_at,
            attempts=state.attempts,
            gsi1pk=f"{SEND_PREFIX}{zlib.crc32(state.step_id.encode()) % TIMEOUT_INDEX_SHARDS}",
            gsi1sk=state.send_at,
        )
        if expires is not None:
            item.ttl = datetime.fromtimestamp(expires, tz=UTC)
        item.save()

    def due_delayed(self, now: datetime, limit: int = 1000) -> list[str]:
        """SC-9: step ids of delayed steps whose send time has passed (the sweep's safety net)."""
        due: list[str] = []
        for shard in range(TIMEOUT_INDEX_SHARDS):
            for item in DelayedStep.gsi1.query(
                f"{SEND_PREFIX}{shard}", DelayedStep.gsi1sk <= _epoch(now), limit=limit - len(due)
            ):
                due.append(item.pk.removeprefix(DELAYED))
            if len(due) >= limit:
                break
        return due

    def claim_delayed(self, step_id: str, now: datetime) -> DelayedState | None:
        """Claim a delayed step for sending (once: the schedule and a sweep may both try)."""
        item = DelayedStep(DELAYED + step_id, _DELAYED_SK)
        condition = DelayedStep.pk.exists() & _lease_free(DelayedStep.sending_until, now)
        with _conditional() as write:
            item.update(
                actions=[DelayedStep.sending_until.set(_epoch(now) + DELIVERY_LEASE)], condition=condition
            )
        if write.failed:
            return None
        return DelayedState(
            step_id=step_id,
            workflow=item.workflow,
            instance_id=item.instance_id,
            step_name=item.step_name or "",
            ids=list(item.ids or []),
            pending=list(item.pending or []),
            chunk_size=int(item.chunk_size),
            commands=[
                DelayedCommandData(c.logical, c.request_type, bytes(c.plist)) for c in item.commands or []
            ],
            send_at=int(item.send_at),
            attempts=int(item.attempts or 0),
        )

    def live_target_ids(self, step_id: str, ids: Sequence[str]) -> set[str]:
        """Which of ``ids`` still have this step (a check-out may have cancelled some)."""
        keys = [(enrollment_pk(i), STEP + step_id) for i in dict.fromkeys(ids)]
        return {
            t.pk.removeprefix("ENR#")
            for t in StepTarget.batch_get(keys, consistent_read=True, attributes_to_get=["pk", "sk"])
        }

    def mark_sent(self, step_id: str, ids: Sequence[str], now: datetime) -> None:
        """Put the targets a delayed send reached on the re-push clock."""

        def mark(enrollment_id: str) -> None:
            pk = enrollment_pk(enrollment_id)
            target = StepTarget(pk, STEP + step_id)
            with _conditional():
                target.update(
                    actions=[
                        StepTarget.last_push.set(_epoch(now)),
                        StepTarget.sent_at.set(_epoch(now)),
                        StepTarget.send_error.remove(),
                        StepTarget.retry_at.remove(),
                        StepTarget.gsi2pk.set(f"{PUSH_PREFIX}{zlib.crc32(pk.encode()) % PUSH_INDEX_SHARDS}"),
                        StepTarget.gsi2sk.set(_epoch(now)),
                    ],
                    condition=StepTarget.pk.exists(),
                )

        fan_out(mark, list(ids))

    def mark_unsent(self, step_id: str, failures: Mapping[str, str], retry_at: datetime | None) -> None:
        """Take targets whose send failed off the re-push clock until they are sent, and keep
        why (the MDM server's answer) and when the engine tries again, for the status route."""

        def unmark(entry: tuple[str, str]) -> None:
            enrollment_id, error = entry
            target = StepTarget(enrollment_pk(enrollment_id), STEP + step_id)
            retry = StepTarget.retry_at.set(_epoch(retry_at)) if retry_at else StepTarget.retry_at.remove()
            actions: list[Any] = [
                StepTarget.last_push.remove(),
                StepTarget.sent_at.remove(),
                StepTarget.gsi2pk.remove(),
                StepTarget.gsi2sk.remove(),
                StepTarget.send_error.set(error[:2000] or "refused"),
                retry,
            ]
            with _conditional():
                target.update(actions=actions, condition=StepTarget.pk.exists())

        fan_out(unmark, list(failures.items()))

    def finish_delayed(self, step_id: str) -> None:
        DelayedStep(DELAYED + step_id, _DELAYED_SK).delete()

    def reschedule_delayed(self, step_id: str, pending: Sequence[str], send_at: int, attempts: int) -> None:
        """Keep the ids the MDM server refused for a later attempt, and release the claim."""
        item = DelayedStep(DELAYED + step_id, _DELAYED_SK)
        item.update(
            actions=[
                DelayedStep.pending.set(list(pending)),
                DelayedStep.send_at.set(send_at),
                DelayedStep.gsi1sk.set(send_at),
                DelayedStep.attempts.set(attempts),
                DelayedStep.sending_until.remove(),
            ]
        )

    # --- re-push ------------------------------------------------------------------------------

    def claim_repushes(self, cutoff: datetime, now: datetime, limit: int = 5000) -> list[str]:
        """SC-11: enrollment ids with a sent step target that had no push or report since
        ``cutoff``; each such target's clock is set to ``now`` with a conditional update, so
        concurrent sweeps push an id once. Ids are returned once each (GAP-26)."""
        ids: dict[str, None] = {}
        claimed = 0
        for shard in range(PUSH_INDEX_SHARDS):
            for item in StepTarget.gsi2.query(f"{PUSH_PREFIX}{shard}", StepTarget.gsi2sk <= _epoch(cutoff)):
                target = StepTarget(item.pk, item.sk)
                with _conditional() as write:
                    target.update(
                        actions=[StepTarget.gsi2sk.set(_epoch(now)), StepTarget.last_push.set(_epoch(now))],
                        condition=StepTarget.pk.exists() & (StepTarget.gsi2sk <= _epoch(cutoff)),
                    )
                if write.failed:
                    continue
                ids[item.pk.removeprefix("ENR#")] = None
                claimed += 1
                if claimed >= limit:
                    return list(ids)
        return list(ids)
