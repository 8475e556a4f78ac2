"""Benchmark 1: DynamoDB calls and capacity units per event kind, at several fleet sizes.

The design promises (nanocmd_core/storage/engine_store.py) that no event's cost depends on the
number of enrolled devices or of steps in flight. This measures it against DynamoDB Local: a fleet
of N devices (a start record and an inventory record each; a tenth mid-step in the inventory
workflow, with their lock, step target and command records) is written with BatchWriteItem, then
each kind of event is driven through ``process_webhook_event`` / the engine, as the events and
sweeper functions do, with every DynamoDB call counted (bench/recorder.py). The small workflows
below do nothing of their own on completion, so what is counted is the engine's cost alone.
"""

from __future__ import annotations

import functools
import time
import uuid
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pynamodb.attributes import UnicodeAttribute
from pynamodb.models import Model

from bench.fakes import InMemoryMDMClient
from bench.recorder import DynamoDBRecorder, Usage
from nanocmd_core.config import Settings
from nanocmd_core.engine.subscriptions import EventSubscription
from nanocmd_core.engine.webhook_events import process_webhook_event
from nanocmd_core.mdm.commands import CertificateList, Command, DeviceInformation, ProfileList
from nanocmd_core.mdm.webhook import parse_webhook
from nanocmd_core.storage.engine_store import (
    PUSH_INDEX_SHARDS,
    PUSH_PREFIX,
    TIMEOUT_INDEX_SHARDS,
    TIMEOUT_PREFIX,
)
from nanocmd_core.storage.models import (
    COMMAND,
    INVENTORY,
    LOCK,
    START,
    STEP,
    CommandRecord,
    InventoryItem,
    StepCommand,
    StepTarget,
    WorkflowLock,
    WorkflowStart,
    enrollment_pk,
)
from nanocmd_core.wiring import App, build_app
from nanocmd_core.workflow import StepResult, StepStart, Workflow
from nanocmd_core.workflow.events import EVENT_NAMES
from nanocmd_core.workflows.inventory import NAME as INVENTORY_WORKFLOW
from tests.fakes.reports import checkin_webhook, connect_webhook, idle_webhook, report

SIZES = (10, 1_000, 10_000)
QUICK_SIZES = (10,)
SWEEP_QUERIES = 3 * TIMEOUT_INDEX_SHARDS  # delayed sends, timeouts and re-pushes: 8 shards each


class _FleetInventory(InventoryItem):
    """An inventory record as the inventory store writes it (one attribute per key)."""

    serial_number = UnicodeAttribute(attr_name="v:serial_number")


@dataclass(frozen=True)
class Floor:
    """The fewest calls the design allows for a kind of event (engine_store.py's docstring)."""

    calls: dict[str, float]
    why: str

    @property
    def total(self) -> float:
        return sum(self.calls.values())


# conditional lock; SC-3 lookup of the command record; target + record batched; start record batched
_START = {"PutItem": 1.0, "BatchGetItem": 1.0, "BatchWriteItem": 2.0}
FLOORS: dict[str, Floor] = {
    "untracked report": Floor({"GetItem": 1}, "GetItem of the command record finds nothing; that is all"),
    "NotNow report": Floor(
        {"GetItem": 1, "UpdateItem": 1}, "tracked, not final: GetItem + UpdateItem target"
    ),
    "non-final report (1st of 3)": Floor(
        {"GetItem": 1, "UpdateItem": 1}, "tracked, step not complete: GetItem + UpdateItem target"
    ),
    "final report, 1-command step": Floor(
        {"GetItem": 1, "UpdateItem": 1, "BatchWriteItem": 1, "DeleteItem": 1},
        "GetItem + UpdateItem, BatchWriteItem deletes target+records, DeleteItem lock (no next step)",
    ),
    "final report, 3-command step": Floor(
        {"GetItem": 1, "UpdateItem": 1, "BatchWriteItem": 1, "DeleteItem": 1},
        "as for one command: the deletes of all records go in one BatchWriteItem",
    ),
    "final reports, batch of 10 (per report)": Floor(
        {"BatchGetItem": 0.1, "UpdateItem": 1, "BatchWriteItem": 1, "DeleteItem": 1},
        "the events function looks a batch's command records up in one BatchGetItem, then as above",
    ),
    "TokenUpdate, 2 subscriptions": Floor(
        {"PutItem": 2, "BatchGetItem": 2, "BatchWriteItem": 4},
        "subscriptions cached per process (0 calls warm), then two workflow starts of 1 command",
    ),
    "Idle, IdleNotStartedSince sub": Floor(
        {"GetItem": 1}, "cached subscriptions + one GetItem start record per IdleNotStartedSince sub"
    ),
    "workflow start, 1 id": Floor(
        _START,
        "PutItem lock (conditional), BatchGetItem command records (SC-3), BatchWriteItem target +"
        " records, BatchWriteItem start record",
    ),
    "workflow start, 30 ids (per id)": Floor(
        {"PutItem": 1, "BatchGetItem": 1 / 30, "BatchWriteItem": 5 / 30},
        "a lock put per id; 30 records looked up in 1 BatchGetItem; 60 targets and records in 3"
        " BatchWriteItems, 30 start records in 2 (25 a request)",
    ),
    "sweep, nothing due": Floor(
        {"Query": SWEEP_QUERIES}, "one Query per shard of each sparse index (delayed, timeout, re-push)"
    ),
    "sweep, one due timeout": Floor(
        {"Query": SWEEP_QUERIES, "UpdateItem": 1, "BatchWriteItem": 1, "DeleteItem": 1},
        "shard Queries + UpdateItem claim + BatchWriteItem deletes + DeleteItem lock",
    ),
    "sweep, one re-push": Floor(
        {"Query": SWEEP_QUERIES, "UpdateItem": 1}, "shard Queries + conditional UpdateItem of the push clock"
    ),
}
KINDS = tuple(FLOORS)
BATCH = 10  # the most records an SQS FIFO event source mapping passes at once
_PER = {"workflow start, 30 ids (per id)": 30, "final reports, batch of 10 (per report)": BATCH}


class _BenchWorkflow(Workflow):
    """Sends ``commands`` in one step and does nothing with the result: only the engine costs."""

    name = "bench.wf.base"
    n_commands = 1
    timeout_at: datetime | None = None

    def start(self, step: StepStart) -> None:
        commands: list[Command] = [DeviceInformation(queries=["Model"]), ProfileList(), CertificateList()]
        enqueueing = step.new_step_enqueueing(*commands[: self.n_commands])
        enqueueing.timeout = type(self).timeout_at
        self.enqueue(enqueueing)

    def step_completed(self, result: StepResult) -> None:
        pass

    def step_timeout(self, result: StepResult) -> None:
        pass


def _workflow(name: str, n_commands: int) -> type[_BenchWorkflow]:
    return type(name.replace(".", "_"), (_BenchWorkflow,), {"name": name, "n_commands": n_commands})


ONE = _workflow("bench.wf.one", 1)
THREE = _workflow("bench.wf.three", 3)
SUB_A = _workflow("bench.wf.sub_a", 1)
SUB_B = _workflow("bench.wf.sub_b", 1)
IDLE = _workflow("bench.wf.idle", 1)


@dataclass
class KindResult:
    """Per-event averages of one kind at one fleet size."""

    calls: dict[str, float]
    rcu: float
    wcu: float
    estimated: float

    @classmethod
    def average(cls, usages: Sequence[Usage], per: int = 1) -> KindResult:
        n = len(usages) * per
        ops = sorted({op for u in usages for op in u.calls})
        return cls(
            calls={op: sum(u.calls[op] for u in usages) / n for op in ops},
            rcu=sum(u.rcu for u in usages) / n,
            wcu=sum(u.wcu for u in usages) / n,
            estimated=sum(u.estimated for u in usages) / n,
        )


@dataclass
class CostReport:
    sizes: list[int]
    results: dict[str, dict[int, KindResult]] = field(default_factory=dict)
    populate_seconds: dict[int, float] = field(default_factory=dict)

    def verdicts(self, kind: str) -> tuple[bool, bool]:
        """(flat across fleet sizes, within the floor)."""
        per_size = list(self.results[kind].values())
        first = per_size[0]
        flat = all(
            r.calls == first.calls and abs(r.rcu - first.rcu) < 1e-6 and abs(r.wcu - first.wcu) < 1e-6
            for r in per_size
        )
        floor = FLOORS[kind].calls
        within = all(
            r.calls.get(op, 0.0) <= floor.get(op, 0.0) + 1e-9 for r in per_size for op in {*r.calls, *floor}
        )
        return flat, within

    def to_json(self) -> dict[str, Any]:
        return {
            "sizes": self.sizes,
            "populate_seconds": self.populate_seconds,
            "kinds": {
                kind: {
                    "floor": FLOORS[kind].calls,
                    "floor_why": FLOORS[kind].why,
                    "flat": self.verdicts(kind)[0],
                    "within_floor": self.verdicts(kind)[1],
                    "by_size": {
                        str(size): {
                            "calls": r.calls,
                            "rcu": r.rcu,
                            "wcu": r.wcu,
                            "estimated_calls": r.estimated,
                        }
                        for size, r in by_size.items()
                    },
                }
                for kind, by_size in self.results.items()
            },
        }


def _ops(calls: dict[str, float]) -> str:
    return ", ".join(f"{op} {_num(n)}" for op, n in sorted(calls.items())) or "none"


def _num(x: float) -> str:
    return str(int(x)) if abs(x - round(x)) < 1e-9 else f"{x:.2f}"


def render(report: CostReport) -> tuple[list[str], list[list[Any]], list[str]]:
    """Headers, rows and notes for bench/run.py's table."""
    sizes = report.sizes
    headers = ["event kind", "calls per event", "RCU", "WCU", "floor (calls)", "flat", "≤ floor"]
    rows: list[list[Any]] = []
    for kind in KINDS:
        by_size = report.results.get(kind)
        if not by_size:
            continue
        flat, within = report.verdicts(kind)
        biggest = by_size[sizes[-1]]
        same_calls = all(by_size[s].calls == biggest.calls for s in sizes)
        calls = (
            _ops(biggest.calls) if same_calls else " | ".join(f"{s}: {_ops(by_size[s].calls)}" for s in sizes)
        )
        rcu = " / ".join(_num(by_size[s].rcu) for s in sizes)
        wcu = " / ".join(_num(by_size[s].wcu) + ("*" if by_size[s].estimated else "") for s in sizes)
        rows.append(
            [
                kind,
                calls,
                rcu,
                wcu,
                _ops(FLOORS[kind].calls),
                "yes" if flat else "NO",
                "yes" if within else "NO",
            ]
        )
    notes = [
        f"RCU / WCU per event at {' / '.join(map(str, sizes))} enrolled devices (a tenth mid-step),"
        " as DynamoDB Local reports them; * includes failed conditional writes, estimated at 1 WCU.",
        "Floors:",
        *(f"  {kind}: {FLOORS[kind].why}" for kind in KINDS),
    ]
    return headers, rows, notes


class CostBench:
    """One table, an engine with an in-memory MDM client, the fleet grown size by size."""

    def __init__(self, table_name: str, recorder: DynamoDBRecorder, reps: int = 3) -> None:
        self.recorder = recorder
        self.reps = reps
        self.client = InMemoryMDMClient()
        self.app: App = build_app(Settings(table_name=table_name), mdm=self.client, plugins=[])
        self.engine = self.app.engine
        for wf in (ONE, THREE, SUB_A, SUB_B, IDLE):
            self.engine.register(wf(self.engine))
        self.app.subscriptions.put("bench-a", EventSubscription("TokenUpdate", SUB_A.name))
        self.app.subscriptions.put("bench-b", EventSubscription("TokenUpdate", SUB_B.name))
        self.app.subscriptions.put(
            "bench-idle", EventSubscription("IdleNotStartedSince", IDLE.name, event_context="86400")
        )
        self.populated = 0
        self._seq = 0

    # --- the fleet ------------------------------------------------------------------------------

    def populate(self, size: int) -> None:
        """Grow the fleet to ``size`` devices with BatchWriteItem (25 items a call, 4 threads)."""
        if size <= self.populated:
            return
        now = datetime.now(UTC)
        epoch = int(now.timestamp())
        instance = str(uuid.uuid4())
        items: list[Model] = []
        for n in range(self.populated, size):
            dev = f"d{n:06d}"
            pk = enrollment_pk(dev)
            items.append(WorkflowStart(pk, START + IDLE.name, started_at=epoch))
            items.append(_FleetInventory(INVENTORY + dev, "INV", serial_number=f"S{n:09d}"))
            if n % 10 == 0:
                items += self._mid_step(dev, instance, epoch)
        chunks = [items[i : i + 500] for i in range(0, len(items), 500)]
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(_batch_save, chunks))
        self.populated = size

    @staticmethod
    def _mid_step(dev: str, instance: str, epoch: int) -> list[Model]:
        """What the engine stores for a device mid-way through an inventory step (as put_targets)."""
        pk = enrollment_pk(dev)
        step_id = uuid.uuid4().hex
        uuids = [(str(uuid.uuid4()), "DeviceInformation"), (str(uuid.uuid4()), "SecurityInfo")]
        target = StepTarget(
            pk,
            STEP + step_id,
            workflow=INVENTORY_WORKFLOW,
            instance_id=instance,
            step_name="",
            commands=[StepCommand(uuid=u, logical=u, request_type=rt) for u, rt in uuids],  # type: ignore[no-untyped-call]
            results={},
            n_commands=2,
            created_at=epoch,
            timeout_at=epoch + 259_200,
            last_push=epoch,
            gsi1pk=f"{TIMEOUT_PREFIX}{zlib.crc32(pk.encode()) % TIMEOUT_INDEX_SHARDS}",
            gsi1sk=epoch + 259_200,
            gsi2pk=f"{PUSH_PREFIX}{zlib.crc32(pk.encode()) % PUSH_INDEX_SHARDS}",
            gsi2sk=epoch,
        )
        records: list[Model] = [
            CommandRecord(pk, COMMAND + u, step_id=step_id, request_type=rt) for u, rt in uuids
        ]
        lock = WorkflowLock(pk, LOCK + INVENTORY_WORKFLOW, instance_id=instance, acquired_at=epoch)
        return [target, *records, lock]

    # --- helpers --------------------------------------------------------------------------------

    def _device(self) -> str:
        self._seq += 1
        return f"m{self._seq:07d}"

    def _webhook(self, body: bytes) -> None:
        process_webhook_event(self.engine, parse_webhook(body), datetime.now(UTC))

    def _report(self, dev: str, command_uuid: str, status: str = "Acknowledged") -> None:
        self._webhook(connect_webhook(dev, command_uuid, report(command_uuid, dev, status)))

    def _started(
        self, workflow: type[_BenchWorkflow], dev: str, ago: timedelta = timedelta(minutes=1)
    ) -> list[str]:
        """Start ``workflow`` for ``dev`` (not measured); the command UUIDs it sent."""
        self.client.take_commands()
        # started a minute ago: a report then moves the re-push clock (gsi2sk), as it does when
        # a device answers; within the same second it would not, and the index write be missed
        self.engine.clock = lambda: datetime.now(UTC) - ago
        try:
            self.engine.start_workflow(workflow.name, [dev])
        finally:
            self.engine.clock = lambda: datetime.now(UTC)
        return [u for u, _ in self.client.take_commands()[dev]]

    def _warm_subscriptions(self) -> None:
        """The subscription cache is per process with a 30 s TTL: warm, as under steady load."""
        subscriptions = self.engine.subscriptions
        assert subscriptions is not None
        subscriptions._cache.clear()
        for flag in EVENT_NAMES:
            subscriptions.by_event(flag)

    def _measure(self, setup: Callable[[], Callable[[], object]]) -> Usage:
        work = setup()
        self._warm_subscriptions()
        return self.recorder.measure(work)

    # --- the kinds --------------------------------------------------------------------------------

    def run_kind(self, kind: str, size: int) -> KindResult:
        usages = [self._measure(functools.partial(self._setup, kind, size, rep)) for rep in range(self.reps)]
        return KindResult.average(usages, per=_PER.get(kind, 1))

    def _setup(self, kind: str, size: int, rep: int) -> Callable[[], object]:
        """Prepare one event of ``kind`` (unmeasured) and return the work to measure."""
        dev = self._device()
        if kind == "untracked report":
            return lambda: self._report(dev, str(uuid.uuid4()))
        if kind == "NotNow report":
            (u,) = self._started(ONE, dev)
            return lambda: self._report(dev, u, "NotNow")
        if kind == "non-final report (1st of 3)":
            u1, _, _ = self._started(THREE, dev)
            return lambda: self._report(dev, u1)
        if kind == "final report, 1-command step":
            (u,) = self._started(ONE, dev)
            return lambda: self._report(dev, u)
        if kind == "final report, 3-command step":
            u1, u2, u3 = self._started(THREE, dev)
            # the earlier answers came a while ago, so the measured one moves the re-push clock
            self.engine.clock = lambda: datetime.now(UTC) - timedelta(seconds=30)
            try:
                self._report(dev, u1)
                self._report(dev, u2)
            finally:
                self.engine.clock = lambda: datetime.now(UTC)
            return lambda: self._report(dev, u3)
        if kind == "final reports, batch of 10 (per report)":
            devices = [dev] + [self._device() for _ in range(BATCH - 1)]
            sent = [(d, self._started(ONE, d)[0]) for d in devices]

            def batch() -> None:
                with self.engine.reports_ahead(sent):  # as functions/events/app.py does
                    for d, u in sent:
                        self._report(d, u)

            return batch
        if kind == "TokenUpdate, 2 subscriptions":
            body = checkin_webhook("TokenUpdate", dev)
            return lambda: self._webhook(body)
        if kind == "Idle, IdleNotStartedSince sub":
            fleet_dev = f"d{size - 1 - rep % 9:06d}"  # started recently (populate), not mid-step
            return lambda: self._webhook(idle_webhook(fleet_dev))
        if kind == "workflow start, 1 id":
            return lambda: self.engine.start_workflow(ONE.name, [dev])
        if kind == "workflow start, 30 ids (per id)":
            ids = [dev] + [self._device() for _ in range(29)]
            return lambda: self.engine.start_workflow(ONE.name, ids)
        if kind == "sweep, nothing due":
            return lambda: self._sweep(expect_timeouts=0, expect_repushes=0)
        if kind == "sweep, one due timeout":
            ONE.timeout_at = datetime.now(UTC) - timedelta(seconds=1)
            try:
                self._started(ONE, dev)
            finally:
                ONE.timeout_at = None
            return lambda: self._sweep(expect_timeouts=1, expect_repushes=0)
        if kind == "sweep, one re-push":
            self._started(ONE, dev, ago=timedelta(days=2))  # no push nor report for 2 days
            return lambda: self._sweep(expect_timeouts=0, expect_repushes=1)
        raise ValueError(f"unknown event kind: {kind}")

    def _sweep(self, expect_timeouts: int, expect_repushes: int) -> None:
        result = self.engine.sweep()
        if (result.timed_out, result.repushed) != (expect_timeouts, expect_repushes):
            raise AssertionError(
                f"sweep did {result}; expected {expect_timeouts} timeouts, {expect_repushes} re-pushes"
            )


def _batch_save(items: Sequence[Model]) -> None:
    with StepTarget.batch_write() as batch:
        for item in items:
            batch.save(item)


def run(
    table_name: str,
    recorder: DynamoDBRecorder,
    sizes: Sequence[int] = SIZES,
    reps: int = 3,
    kinds: Sequence[str] = KINDS,
    progress: Callable[[str], None] | None = None,
) -> CostReport:
    """Measure ``kinds`` at each fleet size in ``sizes`` (ascending, one table grown in place)."""
    bench = CostBench(table_name, recorder, reps)
    report = CostReport(sizes=list(sizes))
    for size in sorted(sizes):
        t0 = time.perf_counter()
        bench.populate(size)
        report.populate_seconds[size] = round(time.perf_counter() - t0, 2)
        if progress:
            progress(f"ddb cost: {size} devices populated in {report.populate_seconds[size]:.1f}s")
        for kind in kinds:
            report.results.setdefault(kind, {})[size] = bench.run_kind(kind, size)
    return report
