"""Instances, their ids' outcomes and the history, on the engine's table (models.py).

Why sharded: an instance of 100,000 ids would otherwise write every id's outcome and count into
one partition, past DynamoDB's ~1,000 writes/s per partition. An id's outcome item and its end
counter live in shard ``crc32(id) % OUTCOME_SHARDS`` of the instance; the counts are the sum of
the shards (one BatchGetItem), ``in_flight`` is derived (started minus ended), never written.

DynamoDB calls:
- start: one BatchWriteItem of the ids' ``in_flight`` outcomes before the workflow runs (a report
  can end a step before the start returns), and the instance item, failed and at-once-completed
  outcomes ride in the start records' BatchWriteItem.
- the end of an id (its last step completed, timed out or was cancelled): one TransactWriteItems
  of two updates: the outcome (only from ``in_flight``, so it is counted once) and the counter;
  at a step's end the lock's release rides in it (engine_store.py ``end_step``).
- instance: GetItem + BatchGetItem of the counter shards; ``?ids=1`` adds Queries of the outcome
  shards, one page at a time. History: one Query per history shard per page + BatchGetItem.
"""

from __future__ import annotations

import base64
import binascii
import json
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

from pynamodb.models import Model

from nanocmd_core.aws.clients import aws_client
from nanocmd_core.status.errors import InvalidPageToken
from nanocmd_core.storage.dynamo import batch_write, condition_failed
from nanocmd_core.storage.models import (
    COUNTERS,
    INSTANCE,
    OUTCOMES,
    InstanceItem,
    OutcomeCounter,
    OutcomeItem,
    TableMeta,
)

OUTCOME_SHARDS = 16
HISTORY_SHARDS = 4
HISTORY_PREFIX = "HIST#"
ALL_HISTORY_PREFIX = "HISTALL#"
_INSTANCE_SK = "INST"
_COUNTER_SK = "C"
END_OUTCOMES = ("completed", "timed_out", "cancelled", "errored")
MAX_CONTEXT = 4096
"""Characters of a start's context kept in the history."""


@dataclass
class StartRecord:
    """What one start did, for its instance item and its ids' outcomes."""

    instance_id: str
    workflow: str
    started_by: str
    context: bytes
    requested: int
    started: int
    skipped: int
    failed_ids: Sequence[str] = ()
    failed_error: str = ""
    completed_ids: Sequence[str] = ()
    """Started ids the workflow enqueued nothing for: the instance ended for them at once."""
    chunk: int | None = None
    """The chunk of an asynchronous start this record counts (None: a synchronous start)."""


@dataclass
class InstanceRecord:
    """An instance's history entry as the status routes show it."""

    instance_id: str
    workflow: str
    started_at: datetime
    started_by: str
    context: str | None
    requested: int
    counts: dict[str, int] = field(default_factory=dict)


class OutcomeRecord(NamedTuple):
    """Where one id of an instance stands (in flight, completed, failed, ...)."""

    enrollment_id: str
    outcome: str
    updated_at: datetime | None
    error: str | None


def _shard(enrollment_id: str) -> int:
    return zlib.crc32(enrollment_id.encode()) % OUTCOME_SHARDS


def outcome_pk(instance_id: str, shard: int) -> str:
    return f"{OUTCOMES}{instance_id}#{shard}"


def _counter_pk(instance_id: str, shard: int) -> str:
    return f"{COUNTERS}{instance_id}#{shard}"


def _from_epoch(value: Any) -> datetime | None:
    return datetime.fromtimestamp(int(value), tz=UTC) if value is not None else None


def _encode_token(data: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).decode().rstrip("=")


def _decode_token(token: str) -> Any:
    try:
        return json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise InvalidPageToken(f"invalid next token: {token[:40]}") from exc


class DynamoInstanceStore:
    """Instances and outcomes; ``history_days`` is how long they are kept (TTL)."""

    def __init__(self, history_days: int = 30) -> None:
        self.history_days = history_days

    def _expires(self, now: datetime) -> datetime:
        return datetime.fromtimestamp(int(now.timestamp()) + self.history_days * 86_400, tz=UTC)

    # --- writes ---------------------------------------------------------------------------------

    def open_instance(
        self, record: StartRecord, in_flight: Sequence[str], skipped: Sequence[str], now: datetime
    ) -> None:
        """Before the workflow's Start runs: the instance, its ids ``in_flight`` (a report may
        end a step before the start returns) and the skipped ones, in one batched write."""
        items = self.start_items(record, now)
        items += self.outcome_items(record.instance_id, in_flight, "in_flight", now)
        items += self.outcome_items(record.instance_id, skipped, "skipped", now)
        batch_write(puts=items)

    def settle_start(self, record: StartRecord, now: datetime) -> None:
        """After the Start: the ids it failed for, and those it enqueued nothing for, with the
        instance's counts (a second batched write, only when there are such ids)."""
        batch_write(puts=self.start_items(record, now, settled=True))

    def outcome_items(
        self, instance_id: str, ids: Iterable[str], outcome: str, now: datetime, error: str = ""
    ) -> list[Model]:
        expires = self._expires(now)
        return [
            OutcomeItem(
                outcome_pk(instance_id, _shard(i)),
                i,
                outcome=outcome,
                updated_at=int(now.timestamp()),
                error=error or None,
                ttl=expires,
            )
            for i in ids
        ]

    def start_items(self, record: StartRecord, now: datetime, *, settled: bool = False) -> list[Model]:
        """The instance item, and with ``settled`` the failed and at-once completed outcomes."""
        started_ms = int(now.timestamp() * 1000)
        history_shard = zlib.crc32(record.instance_id.encode()) % HISTORY_SHARDS
        context = record.context.decode(errors="replace")[:MAX_CONTEXT] if record.context else None
        instance = InstanceItem(
            INSTANCE + record.instance_id,
            _INSTANCE_SK,
            workflow=record.workflow,
            started_at=started_ms,
            started_by=record.started_by,
            context=context,
            requested=record.requested,
            c_started=record.started,
            c_skipped=record.skipped,
            c_failed=len(record.failed_ids),
            c_completed=len(record.completed_ids),
            gsi1pk=f"{HISTORY_PREFIX}{record.workflow}#{history_shard}",
            gsi1sk=started_ms,
            gsi2pk=f"{ALL_HISTORY_PREFIX}{history_shard}",
            gsi2sk=started_ms,
            ttl=self._expires(now),
        )
        items: list[Model] = [instance]
        if settled:
            failed = record.failed_ids
            items += self.outcome_items(record.instance_id, failed, "failed", now, record.failed_error)
            items += self.outcome_items(record.instance_id, record.completed_ids, "completed", now)
        return items

    # --- asynchronous starts: the instance first, then its chunks as the queue delivers them ---

    def open_async(self, record: StartRecord, chunks: int, now: datetime) -> None:
        """The instance of an asynchronous start, counts at zero, before any chunk is queued."""
        [instance] = self.start_items(record, now)
        assert isinstance(instance, InstanceItem)
        instance.chunks = chunks
        instance.save()

    def chunk_counted(self, instance_id: str, chunk: int) -> bool:
        try:
            item = InstanceItem.get(INSTANCE + instance_id, _INSTANCE_SK, consistent_read=True)
        except InstanceItem.DoesNotExist:
            return False
        return chunk in (item.chunks_done or set())

    def open_chunk(
        self, instance_id: str, in_flight: Sequence[str], skipped: Sequence[str], now: datetime
    ) -> None:
        items = self.outcome_items(instance_id, in_flight, "in_flight", now)
        items += self.outcome_items(instance_id, skipped, "skipped", now)
        batch_write(puts=items)

    def settle_chunk(self, instance_id: str, chunk: int, record: StartRecord, now: datetime) -> bool:
        """Add a chunk's counts to its instance, once (False when a retry had counted it), then
        the outcomes of its failed and at-once completed ids."""
        item = InstanceItem(INSTANCE + instance_id, _INSTANCE_SK)
        try:
            item.update(
                actions=[
                    InstanceItem.c_started.add(record.started),
                    InstanceItem.c_skipped.add(record.skipped),
                    InstanceItem.c_failed.add(len(record.failed_ids)),
                    InstanceItem.c_completed.add(len(record.completed_ids)),
                    InstanceItem.chunks_done.add({chunk}),
                ],
                condition=InstanceItem.pk.exists() & ~InstanceItem.chunks_done.contains(chunk),
            )
        except Exception as exc:
            if getattr(exc, "cause_response_code", None) == "ConditionalCheckFailedException":
                return False
            raise
        failed = record.failed_ids
        items = self.outcome_items(instance_id, failed, "failed", now, record.failed_error)
        items += self.outcome_items(instance_id, record.completed_ids, "completed", now)
        batch_write(puts=items)
        return True

    def outcome_end_writes(
        self, instance_id: str, enrollment_id: str, outcome: str, now: datetime, error: str = ""
    ) -> list[dict[str, Any]]:
        """The two TransactWriteItems updates that end an id's outcome: the outcome (only from
        ``in_flight``, so it is counted once) and its counter shard. The engine writes them in
        the same transaction as the step's own deletes (``end_step``), one call for the lot."""
        if outcome not in END_OUTCOMES:
            raise ValueError(f"not an end outcome: {outcome}")
        shard = _shard(enrollment_id)
        table = TableMeta.table_name
        ttl = {"N": str(int(self._expires(now).timestamp()))}
        set_error = ", #e = :e" if error else " REMOVE #e"
        values: dict[str, Any] = {
            ":o": {"S": outcome},
            ":f": {"S": "in_flight"},
            ":u": {"N": str(int(now.timestamp()))},
            ":t": ttl,
        }
        if error:
            values[":e"] = {"S": error[:2000]}
        return [
            {
                "Update": {
                    "TableName": table,
                    "Key": {"pk": {"S": outcome_pk(instance_id, shard)}, "sk": {"S": enrollment_id}},
                    "UpdateExpression": "SET #o = :o, #u = :u, #t = :t" + set_error,
                    "ConditionExpression": "#o = :f",
                    "ExpressionAttributeNames": {
                        "#o": "outcome",
                        "#u": "updated_at",
                        "#t": "ttl",
                        "#e": "error",
                    },
                    "ExpressionAttributeValues": values,
                }
            },
            {
                "Update": {
                    "TableName": table,
                    "Key": {"pk": {"S": _counter_pk(instance_id, shard)}, "sk": {"S": _COUNTER_SK}},
                    "UpdateExpression": "ADD #c :one SET #t = :t",
                    "ExpressionAttributeNames": {"#c": outcome, "#t": "ttl"},
                    "ExpressionAttributeValues": {":one": {"N": "1"}, ":t": ttl},
                }
            },
        ]

    def end_outcome(
        self, instance_id: str, enrollment_id: str, outcome: str, now: datetime, error: str = ""
    ) -> bool:
        """The instance ended for this id: its outcome leaves ``in_flight`` and is counted, both
        in one transaction and only once (False when it had already ended, or was never open)."""
        writes = self.outcome_end_writes(instance_id, enrollment_id, outcome, now, error)
        try:
            aws_client("dynamodb").transact_write_items(TransactItems=writes)
        except Exception as exc:
            if condition_failed(exc):
                return False
            raise
        return True

    # --- reads ----------------------------------------------------------------------------------

    def get_instance(self, instance_id: str, now: datetime) -> InstanceRecord | None:
        """The instance and its counts, or None when unknown or past its history days."""
        try:
            item = InstanceItem.get(INSTANCE + instance_id, _INSTANCE_SK)
        except InstanceItem.DoesNotExist:
            return None
        if item.ttl is not None and item.ttl < now:
            return None  # expired: DynamoDB deletes it within days, it is gone already for us
        counts = {
            "started": int(item.c_started or 0),
            "skipped": int(item.c_skipped or 0),
            "failed": int(item.c_failed or 0),
            "completed": int(item.c_completed or 0),
            "timed_out": 0,
            "cancelled": 0,
            "errored": 0,
        }
        keys = [(_counter_pk(instance_id, s), _COUNTER_SK) for s in range(OUTCOME_SHARDS)]
        for counter in OutcomeCounter.batch_get(keys):
            for name in END_OUTCOMES:
                counts[name] += int(getattr(counter, name) or 0)
        ended = sum(counts[name] for name in END_OUTCOMES)
        counts["in_flight"] = max(0, counts["started"] - ended)
        counts["pending"] = max(
            0, int(item.requested or 0) - counts["started"] - counts["skipped"] - counts["failed"]
        )
        return InstanceRecord(
            instance_id=instance_id,
            workflow=item.workflow,
            started_at=datetime.fromtimestamp(int(item.started_at) / 1000, tz=UTC),
            started_by=item.started_by,
            context=item.context,
            requested=int(item.requested or 0),
            counts=counts,
        )

    def outcomes_page(
        self, instance_id: str, limit: int, token: str | None
    ) -> tuple[list[OutcomeRecord], str | None]:
        """One page of the ids' outcomes, shard after shard (``next`` names where to go on)."""
        shard, after = 0, None
        if token:
            data = _decode_token(token)
            if not (isinstance(data, list) and len(data) == 2 and isinstance(data[0], int)):
                raise InvalidPageToken("invalid next token")
            shard, after = data
            if not 0 <= shard < OUTCOME_SHARDS or not (after is None or isinstance(after, str)):
                raise InvalidPageToken("invalid next token")
        page: list[OutcomeRecord] = []
        while shard < OUTCOME_SHARDS:
            pk = outcome_pk(instance_id, shard)
            start = {"pk": {"S": pk}, "sk": {"S": after}} if after else None
            query = OutcomeItem.query(pk, limit=limit - len(page), last_evaluated_key=start)
            for item in query:
                page.append(OutcomeRecord(item.sk, item.outcome, _from_epoch(item.updated_at), item.error))
            if len(page) >= limit:
                last = query.last_evaluated_key
                if last:
                    return page, _encode_token([shard, last["sk"]["S"]])
                return page, (_encode_token([shard + 1, None]) if shard + 1 < OUTCOME_SHARDS else None)
            shard, after = shard + 1, None
        return page, None

    def in_flight_ids(self, instance_id: str) -> list[str]:
        """Every id of the instance still in flight (for a cancel of the whole instance)."""
        ids: list[str] = []
        for shard in range(OUTCOME_SHARDS):
            for item in OutcomeItem.query(
                outcome_pk(instance_id, shard),
                filter_condition=OutcomeItem.outcome == "in_flight",
                attributes_to_get=["sk"],
            ):
                ids.append(item.sk)
        return ids

    def outcomes_of(self, instance_id: str, ids: Sequence[str]) -> dict[str, str]:
        keys = [(outcome_pk(instance_id, _shard(i)), i) for i in dict.fromkeys(ids)]
        return {item.sk: item.outcome for item in OutcomeItem.batch_get(keys)}

    def history(
        self, workflow: str | None, limit: int, token: str | None, now: datetime
    ) -> tuple[list[InstanceRecord], str | None]:
        """Instances newest first: the history shards' Queries (descending) merged."""
        index = "gsi1" if workflow else "gsi2"
        prefixes = [
            f"{HISTORY_PREFIX}{workflow}#{s}" if workflow else f"{ALL_HISTORY_PREFIX}{s}"
            for s in range(HISTORY_SHARDS)
        ]
        cursors: list[Any] = [None] * HISTORY_SHARDS  # None: from the top; "x": exhausted; else a key
        if token:
            data = _decode_token(token)
            if not (isinstance(data, dict) and data.get("w") == (workflow or "")):
                raise InvalidPageToken("invalid next token (or one for another workflow)")
            given = data.get("c")
            if not (isinstance(given, list) and len(given) == HISTORY_SHARDS):
                raise InvalidPageToken("invalid next token")
            cursors = given
        client = aws_client("dynamodb")
        found: list[tuple[int, int, dict[str, Any]]] = []  # (started ms, shard, key)
        more: dict[int, bool] = {}
        sk_name, pk_name = f"{index}sk", f"{index}pk"
        for shard, prefix in enumerate(prefixes):
            cursor = cursors[shard]
            if cursor == "x":
                continue
            request: dict[str, Any] = {
                "TableName": TableMeta.table_name,
                "IndexName": index,
                "KeyConditionExpression": "#p = :p",
                "ExpressionAttributeNames": {"#p": pk_name},
                "ExpressionAttributeValues": {":p": {"S": prefix}},
                "ScanIndexForward": False,
                "Limit": limit,
            }
            if cursor is not None:
                if not isinstance(cursor, dict) or not {"pk", "sk", "t"} <= cursor.keys():
                    raise InvalidPageToken("invalid next token")
                request["ExclusiveStartKey"] = {
                    "pk": {"S": str(cursor["pk"])},
                    "sk": {"S": str(cursor["sk"])},
                    pk_name: {"S": prefix},
                    sk_name: {"N": str(int(cursor["t"]))},
                }
            reply = client.query(**request)
            more[shard] = "LastEvaluatedKey" in reply
            for raw in reply.get("Items", []):
                found.append((int(raw[sk_name]["N"]), shard, raw))
        found.sort(key=lambda f: (-f[0], f[1]))
        taken = found[:limit]
        new_cursors = list(cursors)
        for shard in more:
            mine = [f for f in taken if f[1] == shard]
            left = [f for f in found[limit:] if f[1] == shard]
            if mine:
                raw = mine[-1][2]
                new_cursors[shard] = {"pk": raw["pk"]["S"], "sk": raw["sk"]["S"], "t": mine[-1][0]}
            if not left and not more[shard]:
                new_cursors[shard] = "x"
        items = {
            item.pk: item for item in InstanceItem.batch_get([(f[2]["pk"]["S"], _INSTANCE_SK) for f in taken])
        }
        records = []
        for _, _, raw in taken:
            item = items.get(raw["pk"]["S"])
            if item is None or (item.ttl is not None and item.ttl < now):
                continue
            records.append(
                InstanceRecord(
                    instance_id=item.pk.removeprefix(INSTANCE),
                    workflow=item.workflow,
                    started_at=datetime.fromtimestamp(int(item.started_at) / 1000, tz=UTC),
                    started_by=item.started_by,
                    context=item.context,
                    requested=int(item.requested or 0),
                    counts={
                        "started": int(item.c_started or 0),
                        "skipped": int(item.c_skipped or 0),
                        "failed": int(item.c_failed or 0),
                    },
                )
            )
        done = all(c == "x" for c in new_cursors)
        return records, None if done else _encode_token({"w": workflow or "", "c": new_cursors})
