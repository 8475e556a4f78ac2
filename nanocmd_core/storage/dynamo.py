"""DynamoDB plumbing every store shares: conditional writes as answers, batched writes with
backoff, and the small thread pool that runs a request's independent writes together."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

from aws_lambda_powertools import Logger
from pynamodb.exceptions import DeleteError, PutError, UpdateError
from pynamodb.models import Model

logger = Logger(service="nanocmd", child=True)

# Enough parallel writes to fan a start out to hundreds of ids quickly, few enough for 2 cores.
_FANOUT_THREADS = 16
BATCH_WRITE_LIMIT = 25  # items in one BatchWriteItem (DynamoDB's limit)
TRANSACTION_ITEMS = 100  # items in one TransactWriteItems (DynamoDB's limit)
BATCH_WRITE_ATTEMPTS = 8
BATCH_BACKOFF = 0.05
"""Seconds before the first resend of unprocessed items; doubled each time, capped, jittered."""
BATCH_BACKOFF_CAP = 2.0


def _is_conditional_failure(exc: BaseException) -> bool:
    cause = getattr(exc, "cause_response_code", None)
    return cause in {"ConditionalCheckFailedException", "TransactionCanceledException"}


def transaction_cancelled(exc: BaseException) -> bool:
    """A raw client's TransactWriteItems was cancelled (nothing was written), for any reason."""
    response = getattr(exc, "response", None) or {}
    return bool(response.get("Error", {}).get("Code") == "TransactionCanceledException")


def condition_failed(exc: BaseException) -> bool:
    """A raw client's TransactWriteItems cancelled because a condition of it did not hold
    (nothing was written); any other cancellation (a conflict, throttling) is an error."""
    if not transaction_cancelled(exc):
        return False
    response = getattr(exc, "response", None) or {}
    return any(r.get("Code") == "ConditionalCheckFailed" for r in response.get("CancellationReasons", []))


class _conditional:
    """Run a conditional write; a failed condition is an answer (``write.failed``), not an error."""

    failed = False

    def __enter__(self) -> _conditional:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any) -> bool:
        if isinstance(exc, PutError | UpdateError | DeleteError) and _is_conditional_failure(exc):
            self.failed = True
            return True
        return False


def _lease_free(lease: Any, now: datetime) -> Any:
    """Condition: nobody holds ``lease`` (unset, or its end has passed)."""
    return lease.does_not_exist() | (lease < _epoch(now))


def _epoch(when: datetime) -> int:
    return int(when.timestamp())


_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def fan_out(fn: Callable[[Any], Any], args: Sequence[Any]) -> list[Any]:
    """``fn`` over ``args`` on the process's small thread pool (in order); one or two run inline.
    Why: the store's per-id conditional writes (locks, claims) each wait a round trip, so a
    start for 100 ids would wait 100 in series. ``fn`` must not fan out itself (no nesting)."""
    global _POOL
    if len(args) <= 2:
        return [fn(a) for a in args]
    if _POOL is None:
        with _POOL_LOCK:
            if _POOL is None:
                _POOL = ThreadPoolExecutor(max_workers=_FANOUT_THREADS, thread_name_prefix="nanocmd-ddb")
    return list(_POOL.map(fn, args))


class BatchWriteError(PutError):
    """Items DynamoDB left unprocessed through every retry of a BatchWriteItem."""


def batch_write(puts: Sequence[Model] = (), deletes: Sequence[Model] = ()) -> None:
    """Put and delete items of the table with BatchWriteItem: 25 a call, the calls run together
    on the fan-out pool, and UnprocessedItems (throttling) are sent again with backoff."""
    requests: dict[tuple[Any, Any], dict[str, Any]] = {}
    for item in deletes:
        requests[_key(item)] = {"DeleteRequest": {"Key": _key_map(item)}}
    for item in puts:  # a put and a delete of one key in one call is refused; the put wins
        requests[_key(item)] = {"PutRequest": {"Item": item.serialize()}}
    pending = list(requests.values())
    if pending:
        fan_out(
            _write_chunk,
            [pending[i : i + BATCH_WRITE_LIMIT] for i in range(0, len(pending), BATCH_WRITE_LIMIT)],
        )


def _write_chunk(chunk: list[dict[str, Any]]) -> None:
    from nanocmd_core.storage.models import StepTarget

    connection = StepTarget._get_connection()  # every model: one table, one client
    for attempt in range(BATCH_WRITE_ATTEMPTS):
        if attempt:
            time.sleep(min(BATCH_BACKOFF_CAP, BATCH_BACKOFF * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0))
        data = connection.batch_write_item(
            put_items=[r["PutRequest"]["Item"] for r in chunk if "PutRequest" in r],
            delete_items=[r["DeleteRequest"]["Key"] for r in chunk if "DeleteRequest" in r],
        )
        chunk = list((data or {}).get("UnprocessedItems", {}).get(connection.table_name, []))
        if not chunk:
            return
        logger.info("BatchWriteItem left items unprocessed; retrying", extra={"items": len(chunk)})
    raise BatchWriteError(f"{len(chunk)} items unprocessed after {BATCH_WRITE_ATTEMPTS} BatchWriteItem calls")


def _key(item: Model) -> tuple[Any, Any]:
    return (item.pk, item.sk)  # type: ignore[attr-defined]


def _key_map(item: Model) -> dict[str, Any]:
    return {"pk": {"S": item.pk}, "sk": {"S": item.sk}}  # type: ignore[attr-defined]
