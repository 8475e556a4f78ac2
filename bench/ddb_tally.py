"""DynamoDB calls and units of the ``make run`` stack's own processes (its gateway workers and
events consumers are interpreters of their own, which an in-process recorder cannot see).

:func:`stack_env` gives the settings that make every Python process of the stack load
``bench/stack_hook/sitecustomize.py`` (through ``PYTHONPATH``, which the stack hands on to its
children): each installs :class:`Tally`, ``bench/recorder.py``'s wrapper of botocore's
``_make_api_call`` with the same units rules, and writes its running totals to
``<dir>/<pid>.json`` a moment after each change. :func:`read` sums the files; the difference of two
readings is what the stack spent in between. The hook only counts: it asks for
``ReturnConsumedCapacity`` on the calls that do not already (as the recorder does in-process).
"""

from __future__ import annotations

import atexit
import json
import os
import threading
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.client import BaseClient

from bench.recorder import DATA_OPS, READ_OPS, Call, DynamoDBRecorder, Usage

ENV = "BENCH_DDB_TALLY_DIR"
HOOK_DIR = Path(__file__).resolve().parent / "stack_hook"
FLUSH_INTERVAL = 0.2  # seconds between a call and its totals on disk, at most


@dataclass
class Totals(Usage):
    """Cumulative DynamoDB data calls (by operation) and units, of one process or summed."""

    rcu_aws: float = 0.0
    """Reads as AWS bills them (see :func:`aws_read_units`): DynamoDB Local reports 0 for a key
    it did not find, AWS charges the read all the same."""

    def __add__(self, other: Totals) -> Totals:
        return Totals(
            self.calls + other.calls,
            self.rcu + other.rcu,
            self.wcu + other.wcu,
            self.estimated + other.estimated,
            self.failed + other.failed,
            self.rcu_aws + other.rcu_aws,
        )

    def __sub__(self, other: Totals) -> Totals:
        calls = Counter({op: n - other.calls.get(op, 0) for op, n in self.calls.items()})
        return Totals(
            +calls,
            self.rcu - other.rcu,
            self.wcu - other.wcu,
            self.estimated - other.estimated,
            self.failed - other.failed,
            self.rcu_aws - other.rcu_aws,
        )

    @property
    def total_calls(self) -> int:
        return sum(self.calls.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "calls": dict(sorted(self.calls.items())),
            "rcu": round(self.rcu, 3),
            "wcu": round(self.wcu, 3),
            "estimated": self.estimated,
            "failed": self.failed,
            "rcu_aws": round(self.rcu_aws, 3),
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Totals:
        return cls(
            Counter({str(k): int(v) for k, v in dict(doc.get("calls") or {}).items()}),
            float(doc.get("rcu", 0.0)),
            float(doc.get("wcu", 0.0)),
            int(doc.get("estimated", 0)),
            int(doc.get("failed", 0)),
            float(doc.get("rcu_aws", 0.0)),
        )


def aws_read_units(operation: str, params: Mapping[str, Any], reported: float) -> float:
    """The read units AWS would bill for a call DynamoDB Local reported ``reported`` for: every key
    of a GetItem or BatchGetItem is read, found or not, at 1 RCU strongly consistent and 0.5
    eventually (items under 4 KB, as the engine's are), or what Local reports when that is more.
    Queries and scans stay as reported."""
    if operation == "GetItem":
        return max(reported, 1.0 if params.get("ConsistentRead") else 0.5)
    if operation == "BatchGetItem":
        keys = 0.0
        for request in dict(params.get("RequestItems") or {}).values():
            keys += len(request.get("Keys") or ()) * (1.0 if request.get("ConsistentRead") else 0.5)
        return max(reported, keys)
    return reported


class Tally(DynamoDBRecorder):
    """The recorder, always recording into running totals that a thread writes to ``path``."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self.totals = Totals()
        self._params = threading.local()  # the read in progress on this thread
        self._changed = threading.Event()
        self._writer: threading.Thread | None = None

    def install(self) -> Tally:
        """The recorder's wrapper, and around it one that notes each read's keys for ``rcu_aws``."""
        super().install()
        counted = BaseClient._make_api_call  # type: ignore[attr-defined]  # the recorder's
        tally = self

        def with_keys(client: BaseClient, operation_name: str, api_params: dict[str, Any]) -> Any:
            if operation_name in READ_OPS and client.meta.service_model.service_name == "dynamodb":
                tally._params.params = api_params
            return counted(client, operation_name, api_params)

        BaseClient._make_api_call = with_keys  # type: ignore[attr-defined]
        return self

    def _add(self, call: Call) -> None:
        if call.operation not in DATA_OPS:
            return  # control plane (CreateTable, DescribeTable ...): no units
        params = getattr(self._params, "params", None) if call.operation in READ_OPS else None
        self._params.params = None
        with self._lock:
            self.totals.add(call)
            if call.operation in READ_OPS:
                self.totals.rcu_aws += aws_read_units(call.operation, params or {}, call.units)
            if self._writer is None:  # on the first call: processes that never call stay threadless
                self._writer = threading.Thread(target=self._write_loop, name="ddb-tally", daemon=True)
                self._writer.start()
        self._changed.set()

    def _write_loop(self) -> None:
        while True:
            self._changed.wait()
            self._changed.clear()
            self.flush()
            threading.Event().wait(FLUSH_INTERVAL)

    def flush(self) -> None:
        with self._lock:
            doc = self.totals.to_json()
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc))
        os.replace(tmp, self.path)


def install_from_env() -> Tally | None:
    """In a stack process (the hook calls this): count its calls when ``ENV`` names a directory."""
    where = os.environ.get(ENV, "")
    if not where:
        return None
    tally = Tally(Path(where) / f"{os.getpid()}.json")
    tally.install()
    atexit.register(tally.flush)
    return tally


def stack_env(directory: Path) -> dict[str, str]:
    """Settings for :class:`~infra.local.stack_process.StackProcess`: its processes tally."""
    path = os.environ.get("PYTHONPATH", "")
    return {ENV: str(directory), "PYTHONPATH": os.pathsep.join(p for p in (str(HOOK_DIR), path) if p)}


def read(directory: Path) -> Totals:
    """The sum of every process's totals as last written."""
    total = Totals()
    for file in sorted(directory.glob("*.json")):
        try:
            total = total + Totals.from_json(json.loads(file.read_text()))
        except (OSError, ValueError):
            continue  # being replaced: os.replace makes that rare; the next reading has it
    return total


def settled(directory: Path, quiet: float = 3 * FLUSH_INTERVAL, timeout: float = 10.0) -> Totals:
    """Read until two readings ``quiet`` seconds apart agree (every process has written)."""
    deadline = threading.Event()
    last = read(directory)
    waited = 0.0
    while waited < timeout:
        deadline.wait(quiet)
        waited += quiet
        now = read(directory)
        if now.to_json() == last.to_json():
            return now
        last = now
    return last
