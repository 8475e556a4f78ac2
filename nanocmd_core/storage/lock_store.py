"""Exclusivity locks and start records (GAP-1, SC-4, SC-6, SC-7).

A start takes each id's lock with a conditional write. For a few ids that is a conditional PutItem
each; for more, up to 100 conditional Puts go in one TransactWriteItems. Why: a 200-id chunk of a
fleet start otherwise waits 200 round trips (and on the local stack pays 200 requests' overhead on
both sides, a quarter of the chunk's CPU); with transactions it is two requests. The price is
DynamoDB's: a transactional write costs 2 WCU an item instead of 1, about $0.06 more per 100,000
ids on demand. A transaction either takes every lock of its group or none: a cancelled one says
which conditions failed (those ids are busy) and is sent again without them; a cancellation for
another reason (a concurrent write to one of the same locks) leaves the rest of the group to the
single-item puts, whose answer is the same.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError
from pynamodb.exceptions import PutError

from nanocmd_core.aws.clients import aws_client
from nanocmd_core.storage.dynamo import TRANSACTION_ITEMS, _conditional, _epoch, batch_write, fan_out
from nanocmd_core.storage.models import LOCK, START, TableMeta, WorkflowLock, WorkflowStart, enrollment_pk

logger = Logger(service="nanocmd", child=True)

LOCK_TRANSACTION_ITEMS = TRANSACTION_ITEMS
"""Conditional Puts in one TransactWriteItems."""
LOCK_TRANSACTION_MIN = 8
"""Fewer ids than this take their locks one PutItem each (1 WCU, no transaction to cancel)."""
_TRANSACTION_ROUNDS = 4
"""Sends of one group's transaction, each without the ids found busy by the one before."""
_CONFLICT_RETRY_S = 0.05


class LockStoreMixin:
    """``acquire_locks``, ``release_lock``, ``outstanding`` and the start records."""

    def acquire_locks(
        self, workflow: str, instance_id: str, ids: Sequence[str], now: datetime, expires: datetime
    ) -> list[str]:
        """Take the running lock of ``workflow`` for each id with a conditional write; returns the
        ids that were busy (GAP-1: concurrent starts cannot both pass). A lock this instance holds
        already counts as taken: a retried chunk of an asynchronous start takes its own again."""
        ids = list(dict.fromkeys(ids))
        left: list[str] = ids
        busy: set[str] = set()
        if len(ids) >= LOCK_TRANSACTION_MIN:
            groups = [ids[i : i + LOCK_TRANSACTION_ITEMS] for i in range(0, len(ids), LOCK_TRANSACTION_ITEMS)]
            left = []
            for group_busy, group_left in fan_out(
                lambda group: _lock_group(workflow, instance_id, group, now, expires), groups
            ):
                busy.update(group_busy)
                left += group_left
        taken = fan_out(lambda i: _take_lock(workflow, instance_id, i, now, expires), left)
        busy.update(i for i, ok in zip(left, taken, strict=True) if not ok)
        return [i for i in ids if i in busy]

    def release_lock(self, workflow: str, enrollment_id: str, instance_id: str) -> None:
        lock = WorkflowLock(enrollment_pk(enrollment_id), LOCK + workflow)
        with _conditional():
            lock.delete(condition=WorkflowLock.instance_id == instance_id)

    def outstanding(self, workflow: str, ids: Sequence[str], now: datetime) -> list[str]:
        """SC-4: ids for which ``workflow`` still runs (its lock is held)."""
        keys = [(enrollment_pk(i), LOCK + workflow) for i in dict.fromkeys(ids)]
        busy = {
            lock.pk.removeprefix("ENR#")
            for lock in WorkflowLock.batch_get(keys, consistent_read=True)
            if lock.ttl is None or lock.ttl > now
        }
        return [i for i in dict.fromkeys(ids) if i in busy]

    def record_started(self, workflow: str, ids: Sequence[str], when: datetime) -> None:
        """SC-7: upsert the last start time (whole seconds) for each id (batched)."""
        batch_write(
            puts=[WorkflowStart(enrollment_pk(i), START + workflow, started_at=_epoch(when)) for i in ids]
        )

    def last_started(self, enrollment_id: str, workflow: str) -> datetime | None:
        """SC-6: None when never started."""
        try:
            rec = WorkflowStart.get(enrollment_pk(enrollment_id), START + workflow)
        except WorkflowStart.DoesNotExist:
            return None
        return datetime.fromtimestamp(int(rec.started_at), tz=UTC)


def _take_lock(workflow: str, instance_id: str, enrollment_id: str, now: datetime, expires: datetime) -> bool:
    """One id's lock by a conditional PutItem; a conflict with a concurrent transaction on the same
    lock is sent once more before it counts as an error."""
    lock = WorkflowLock(
        enrollment_pk(enrollment_id),
        LOCK + workflow,
        instance_id=instance_id,
        acquired_at=_epoch(now),
        ttl=expires,
    )
    free = WorkflowLock.pk.does_not_exist() | (WorkflowLock.ttl < now)
    for attempt in range(2):
        try:
            with _conditional() as write:
                lock.save(condition=free | (WorkflowLock.instance_id == instance_id))
            return not write.failed
        except PutError as exc:
            if attempt or getattr(exc, "cause_response_code", None) != "TransactionConflictException":
                raise
            time.sleep(_CONFLICT_RETRY_S)
    raise AssertionError("unreachable")


def lock_release_write(workflow: str, enrollment_id: str, instance_id: str) -> dict[str, Any]:
    """``release_lock`` as a TransactWriteItems Delete: only while the instance holds the lock."""
    return {
        "Delete": {
            "TableName": TableMeta.table_name,
            "Key": {"pk": {"S": enrollment_pk(enrollment_id)}, "sk": {"S": LOCK + workflow}},
            "ConditionExpression": "instance_id = :me",
            "ExpressionAttributeValues": {":me": {"S": instance_id}},
        }
    }


def _lock_put(workflow: str, instance_id: str, enrollment_id: str, now: datetime, expires: datetime) -> Any:
    return {
        "Put": {
            "TableName": TableMeta.table_name,
            "Item": {
                "pk": {"S": enrollment_pk(enrollment_id)},
                "sk": {"S": LOCK + workflow},
                "instance_id": {"S": instance_id},
                "acquired_at": {"N": str(_epoch(now))},
                "ttl": {"N": str(_epoch(expires))},
            },
            # the condition of _take_lock: free, expired, or this instance's own
            "ConditionExpression": "attribute_not_exists(pk) OR #ttl < :now OR instance_id = :me",
            "ExpressionAttributeNames": {"#ttl": "ttl"},
            "ExpressionAttributeValues": {":now": {"N": str(_epoch(now))}, ":me": {"S": instance_id}},
        }
    }


def _lock_group(
    workflow: str, instance_id: str, ids: list[str], now: datetime, expires: datetime
) -> tuple[list[str], list[str]]:
    """Up to 100 locks in one transaction: (the ids found busy, the ids left to single puts)."""
    busy: list[str] = []
    pending = ids
    for _ in range(_TRANSACTION_ROUNDS):
        if len(pending) < LOCK_TRANSACTION_MIN:
            return busy, pending
        try:
            aws_client("dynamodb").transact_write_items(
                TransactItems=[_lock_put(workflow, instance_id, i, now, expires) for i in pending]
            )
            return busy, []
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "TransactionCanceledException":
                raise
            reasons = [r.get("Code") or "None" for r in exc.response.get("CancellationReasons", [])]
        if len(reasons) != len(pending):
            return busy, pending  # no reason per item: let the single puts answer
        failed = {i for i, code in zip(pending, reasons, strict=True) if code == "ConditionalCheckFailed"}
        busy += [i for i in pending if i in failed]
        pending = [i for i in pending if i not in failed]
        if not failed or any(code not in ("None", "ConditionalCheckFailed") for code in reasons):
            logger.info(
                "lock transaction cancelled; single puts take the rest",
                extra={"workflow": workflow, "instance_id": instance_id, "reasons": sorted(set(reasons))},
            )
            return busy, pending
    return busy, pending
