"""Counts every DynamoDB call pynamodb makes, with the capacity units DynamoDB reports for it.

Why here: pynamodb already asks for ``ReturnConsumedCapacity=TOTAL`` on every data call
(``Connection.dispatch``), and every call of every model class ends in one method,
``Connection._make_api_call``; wrapping that one method sees them all, on every thread, failed
conditional writes included, with the response's capacity in hand (a botocore event hook would
see the call but not the parsed response of a failed one).

DynamoDB Local does return ``ConsumedCapacity`` (checked: PutItem, GetItem, Query, BatchWriteItem,
UpdateItem, TransactWriteItems), except on a failed conditional write, which AWS still bills; for
those we estimate 1 WCU (every item the engine writes is under 1 KB) and mark the figure estimated.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError
from pynamodb.connection.base import Connection

READ_OPS = frozenset({"GetItem", "BatchGetItem", "Query", "Scan", "TransactGetItems"})
WRITE_OPS = frozenset({"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"})


@dataclass(frozen=True)
class Call:
    operation: str
    units: float
    estimated: bool
    failed: bool


@dataclass
class Usage:
    """What one measured piece of work cost."""

    calls: Counter[str] = field(default_factory=Counter)
    rcu: float = 0.0
    wcu: float = 0.0
    estimated: int = 0
    """Calls whose units DynamoDB did not report (failed conditional writes), estimated."""
    failed: int = 0

    @classmethod
    def of(cls, calls: list[Call]) -> Usage:
        usage = cls()
        for call in calls:
            usage.calls[call.operation] += 1
            if call.operation in READ_OPS:
                usage.rcu += call.units
            elif call.operation in WRITE_OPS:
                usage.wcu += call.units
            usage.estimated += call.estimated
            usage.failed += call.failed
        return usage

    @property
    def total_calls(self) -> int:
        return sum(self.calls.values())


def _reported_units(data: Any) -> float | None:
    capacity = data.get("ConsumedCapacity") if isinstance(data, dict) else None
    if capacity is None:
        return None
    entries = capacity if isinstance(capacity, list) else [capacity]
    return float(sum(e.get("CapacityUnits", 0.0) for e in entries if isinstance(e, dict)))


class DynamoDBRecorder:
    """Install once; ``with recorder.recording() as calls:`` collects the calls made inside."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: list[Call] | None = None
        self._original: Callable[..., Any] | None = None

    def install(self) -> DynamoDBRecorder:
        if self._original is not None:
            return self
        original = Connection._make_api_call
        self._original = original
        recorder = self

        def recording_call(conn: Connection, operation_name: str, operation_kwargs: dict[str, Any]) -> Any:
            try:
                data = original(conn, operation_name, operation_kwargs)
            except ClientError:
                # AWS bills a failed conditional write (at least 1 WCU); Local reports nothing
                recorder._add(Call(operation_name, 1.0 if operation_name in WRITE_OPS else 0.0, True, True))
                raise
            units = _reported_units(data)
            recorder._add(
                Call(operation_name, units or 0.0, units is None and operation_name in WRITE_OPS, False)
            )
            return data

        Connection._make_api_call = recording_call  # type: ignore[method-assign,assignment]
        return self

    def uninstall(self) -> None:
        if self._original is not None:
            Connection._make_api_call = self._original  # type: ignore[method-assign]
            self._original = None

    def _add(self, call: Call) -> None:
        with self._lock:
            if self._calls is not None:
                self._calls.append(call)

    @contextmanager
    def recording(self) -> Iterator[list[Call]]:
        calls: list[Call] = []
        with self._lock:
            self._calls = calls
        try:
            yield calls
        finally:
            with self._lock:
                self._calls = None

    def measure(self, work: Callable[[], object]) -> Usage:
        with self.recording() as calls:
            work()
        return Usage.of(list(calls))
