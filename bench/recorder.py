"""Counts every DynamoDB call the process makes, with the capacity units DynamoDB reports for it.

Why here: every call of every pynamodb model class, and every call the stores make on the shared
botocore client directly (``aws_client("dynamodb")``: the instance store's TransactWriteItems and
history Queries), ends in one method, ``botocore.client.BaseClient._make_api_call``; wrapping
that one method (for DynamoDB clients only) sees them all, on every thread, failed conditional
writes included, with the response's capacity in hand (a botocore event hook would see the call
but not the parsed response of a failed one). pynamodb asks for ``ReturnConsumedCapacity=TOTAL``
on every data call itself; a direct call that does not is given it here, so its units are seen
too (it changes what DynamoDB reports, nothing of what it does).

DynamoDB Local does return ``ConsumedCapacity`` (checked: PutItem, GetItem, Query, BatchWriteItem,
UpdateItem, TransactWriteItems), except on a failed conditional write, which AWS still bills; for
those we estimate 1 WCU (every item the engine writes is under 1 KB) and mark the figure estimated.
For TransactWriteItems Local reports 2 units whatever the number of items (checked: 1 to 4
updates); AWS bills 2 WCU per item (per KB), so a transaction counts 2 WCU per item here, or what
Local reports when that is more (the engine's transaction items are under 1 KB, in no index).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from botocore.client import BaseClient
from botocore.exceptions import ClientError

READ_OPS = frozenset({"GetItem", "BatchGetItem", "Query", "Scan", "TransactGetItems"})
WRITE_OPS = frozenset({"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"})
DATA_OPS = READ_OPS | WRITE_OPS


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

    def add(self, call: Call) -> None:
        self.calls[call.operation] += 1
        if call.operation in READ_OPS:
            self.rcu += call.units
        elif call.operation in WRITE_OPS:
            self.wcu += call.units
        self.estimated += call.estimated
        self.failed += call.failed

    @classmethod
    def of(cls, calls: list[Call]) -> Usage:
        usage = cls()
        for call in calls:
            usage.add(call)
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
        original = BaseClient._make_api_call  # type: ignore[attr-defined]  # botocore: untyped
        self._original = original
        recorder = self

        def recording_call(client: BaseClient, operation_name: str, api_params: dict[str, Any]) -> Any:
            if client.meta.service_model.service_name != "dynamodb":
                return original(client, operation_name, api_params)
            if operation_name in DATA_OPS and "ReturnConsumedCapacity" not in api_params:
                api_params = {**api_params, "ReturnConsumedCapacity": "TOTAL"}
            try:
                data = original(client, operation_name, api_params)
            except ClientError:
                # AWS bills a failed conditional write (at least 1 WCU); Local reports nothing
                recorder._add(Call(operation_name, 1.0 if operation_name in WRITE_OPS else 0.0, True, True))
                raise
            units = _reported_units(data)
            if operation_name == "TransactWriteItems" and units is not None:
                units = max(units, 2.0 * len(api_params.get("TransactItems", ())))
            recorder._add(
                Call(operation_name, units or 0.0, units is None and operation_name in WRITE_OPS, False)
            )
            return data

        BaseClient._make_api_call = recording_call  # type: ignore[attr-defined]
        return self

    def uninstall(self) -> None:
        if self._original is not None:
            BaseClient._make_api_call = self._original  # type: ignore[attr-defined]
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
