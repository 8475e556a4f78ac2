"""Benchmark 1: DynamoDB calls and capacity units per event kind, at several fleet sizes.

The design promises (nanocmd_core/storage/engine_store.py) that no event's cost depends on the
number of enrolled devices or of steps in flight. This measures it against DynamoDB Local: a fleet
of N devices (a start record and an inventory record each; a tenth mid-step in the inventory
workflow, with their lock, step target and command records) is written with BatchWriteItem, then
each kind of event is driven through ``process_webhook_event`` / the engine, as the events and
sweeper functions do, with every DynamoDB call counted (bench/recorder.py). The small workflows
below do nothing of their own on completion, so what is counted is the engine's cost alone.

Instance tracking (issue 11): the engine built here tracks instances (``build_app`` gives it a
``DynamoInstanceStore``), so every kind is measured as it runs in production, and the status,
instance and history reads are kinds of their own. At each fleet size the kinds of ``EXTRAS`` run
a second time with ``engine.instances = None`` (set before each event's setup, so a step started
untracked is ended untracked): the difference is what status and history cost each kind. The
instance reads need an instance and a history that do not grow with the fleet: populate writes,
once, an instance of ``PROGRESS_IDS`` ids and a full page of history per history shard.
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
from bench.recorder import READ_OPS, WRITE_OPS, DynamoDBRecorder, Usage
from nanocmd_core.config import Settings
from nanocmd_core.engine.subscriptions import EventSubscription
from nanocmd_core.engine.webhook_events import process_webhook_event
from nanocmd_core.mdm.commands import CertificateList, Command, DeviceInformation, ProfileList
from nanocmd_core.mdm.webhook import parse_webhook
from nanocmd_core.storage.dynamo import batch_write
from nanocmd_core.storage.engine_store import TIMEOUT_PREFIX
from nanocmd_core.storage.instance_store import (
    HISTORY_SHARDS,
    OUTCOME_SHARDS,
    DynamoInstanceStore,
    StartRecord,
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
from nanocmd_core.storage.send_store import PUSH_INDEX_SHARDS, PUSH_PREFIX, TIMEOUT_INDEX_SHARDS
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


# the fixed instance the instance reads look at (populate writes it once, whatever the fleet)
PROGRESS_IDS = tuple(f"p{n:05d}" for n in range(1_000))
IDS_PAGE = 100  # the ids page asked for (the API's default)
HISTORY_PAGE = 50  # the history page asked for (the API's default)
HISTORY_FILL = HISTORY_PAGE + 10
"""Instances populate puts in each history shard, so every shard's Query returns a full page."""


def _outcome_shard(enrollment_id: str) -> int:
    """An id's outcome shard, as instance_store.py shards it."""
    return zlib.crc32(enrollment_id.encode()) % OUTCOME_SHARDS


def _page_queries(ids: Sequence[str], limit: int) -> int:
    """The outcome shards a first page of ``limit`` ids walks, one Query each (outcomes_page)."""
    per_shard = [0] * OUTCOME_SHARDS
    for i in ids:
        per_shard[_outcome_shard(i)] += 1
    left, queries = limit, 0
    for n in per_shard:
        queries += 1
        left -= min(n, left)
        if not left:
            break
    return queries


IDS_PAGE_QUERIES = _page_queries(PROGRESS_IDS, IDS_PAGE)
_END = {"TransactWriteItems": 1.0}  # the id's outcome + its counter shard, once (end_outcome)
# at a step's end the lock's release rides in that transaction (end_step)
# conditional lock; instance + in_flight outcomes batched; target + record batched (no SC-3
# lookup: the command drew its own UUID, engine/fresh_uuids.py); start record batched
_START = {"PutItem": 1.0, "BatchWriteItem": 3.0}
FLOORS: dict[str, Floor] = {
    "untracked report": Floor({"GetItem": 1}, "GetItem of the command record finds nothing; that is all"),
    "NotNow report": Floor(
        {"GetItem": 1, "UpdateItem": 1},
        "tracked, not final: GetItem + UpdateItem target (NotNow count, report time ride in it)",
    ),
    "non-final report (1st of 3)": Floor(
        {"GetItem": 1, "UpdateItem": 1}, "tracked, step not complete: GetItem + UpdateItem target"
    ),
    "final report, 1-command step": Floor(
        {"GetItem": 1, "UpdateItem": 1, "BatchWriteItem": 1, **_END},
        "GetItem + UpdateItem, TransactWriteItems outcome + counter (the instance ended for the id)"
        " + lock release (no next step), BatchWriteItem deletes target+records",
    ),
    "final report, 3-command step": Floor(
        {"GetItem": 1, "UpdateItem": 1, "BatchWriteItem": 1, **_END},
        "as for one command: the deletes of all records go in one BatchWriteItem",
    ),
    "final reports, batch of 10 (per report)": Floor(
        {"BatchGetItem": 0.1, "UpdateItem": 1, "BatchWriteItem": 1, **_END},
        "the events function looks a batch's command records up in one BatchGetItem, then as above",
    ),
    "TokenUpdate, 2 subscriptions": Floor(
        {"PutItem": 2, "BatchWriteItem": 6},
        "subscriptions cached per process (0 calls warm), then two workflow starts of 1 command",
    ),
    "Idle, IdleNotStartedSince sub": Floor(
        {"GetItem": 1}, "cached subscriptions + one GetItem start record per IdleNotStartedSince sub"
    ),
    "workflow start, 1 id": Floor(
        _START,
        "PutItem lock (conditional), BatchWriteItem instance + in_flight outcome, BatchWriteItem"
        " target + records (no SC-3 lookup: fresh UUIDs), BatchWriteItem start record",
    ),
    "workflow start, 30 ids (per id)": Floor(
        {"TransactWriteItems": 1 / 30, "BatchWriteItem": 7 / 30},
        "the 30 conditional lock puts in 1 TransactWriteItems (2 WCU an item); instance + 30"
        " outcomes in 2 BatchWriteItems (25 a request); no SC-3 lookup (fresh UUIDs);"
        " 60 targets and records in 3 BatchWriteItems, 30 start records in 2",
    ),
    "sweep, nothing due": Floor(
        {"Query": SWEEP_QUERIES}, "one Query per shard of each sparse index (delayed, timeout, re-push)"
    ),
    "sweep, one due timeout": Floor(
        {"Query": SWEEP_QUERIES, "UpdateItem": 1, "BatchWriteItem": 1, **_END},
        "shard Queries + UpdateItem claim + TransactWriteItems outcome + counter + lock release,"
        " BatchWriteItem deletes",
    ),
    "sweep, one re-push": Floor(
        {"Query": SWEEP_QUERIES, "UpdateItem": 1}, "shard Queries + conditional UpdateItem of the push clock"
    ),
    "cancel, 1 id": Floor(
        {"Query": 1, "UpdateItem": 1, "BatchWriteItem": 1, "DeleteItem": 1, **_END},
        "Query of the id's partition, UpdateItem claim (as a timeout), TransactWriteItems outcome +"
        " counter, BatchWriteItem deletes target+records, DeleteItem lock",
    ),
    "status, 1 id": Floor({"Query": 1}, "one Query of the id's partition, whatever the fleet"),
    "status, 10 ids (per id)": Floor({"Query": 1}, "one Query per id (in parallel), nothing else"),
    "instance progress": Floor(
        {"GetItem": 1, "BatchGetItem": 1},
        f"GetItem instance + one BatchGetItem of its {OUTCOME_SHARDS} counter shards",
    ),
    "instance ids page": Floor(
        {"GetItem": 1, "BatchGetItem": 1, "Query": IDS_PAGE_QUERIES},
        f"as progress, + one Query per outcome shard the page spans ({IDS_PAGE_QUERIES} for the first"
        f" {IDS_PAGE} of this {len(PROGRESS_IDS):,}-id instance)",
    ),
    "history page": Floor(
        {"Query": HISTORY_SHARDS, "BatchGetItem": 1},
        f"one Query per history shard ({HISTORY_SHARDS}, keys only), merged; one BatchGetItem of the"
        " page's instances",
    ),
}
KINDS = tuple(FLOORS)
BATCH = 10  # the most records an SQS FIFO event source mapping passes at once
STATUS_IDS = 10
_PER = {
    "workflow start, 30 ids (per id)": 30,
    "final reports, batch of 10 (per report)": BATCH,
    "status, 10 ids (per id)": STATUS_IDS,
}
STATUS_KINDS = ("status, 1 id", "status, 10 ids (per id)")


@dataclass(frozen=True)
class Extra:
    """What instance tracking may add to a kind (issue 11's target), per event."""

    calls: dict[str, float]
    rule: str
    """``none``: nothing; ``step end``: at most one write call per step end, no read; ``start``:
    at most ``calls`` (the instance and its in_flight outcomes, 25 items a BatchWriteItem)."""

    def target(self) -> str:
        if self.rule == "none":
            return "no extra call"
        if self.rule == "step end":
            return "≤ 1 write per step end"
        return f"≤ {_ops(self.calls)} (start)"


_NONE = Extra({}, "none")
_STEP_END = Extra(_END, "step end")
EXTRAS: dict[str, Extra] = {
    "untracked report": _NONE,
    "NotNow report": _NONE,
    "non-final report (1st of 3)": _NONE,
    "final report, 1-command step": _STEP_END,
    "final report, 3-command step": _STEP_END,
    "final reports, batch of 10 (per report)": _STEP_END,
    "TokenUpdate, 2 subscriptions": Extra({"BatchWriteItem": 2}, "start"),
    "Idle, IdleNotStartedSince sub": _NONE,
    "workflow start, 1 id": Extra({"BatchWriteItem": 1}, "start"),
    "workflow start, 30 ids (per id)": Extra({"BatchWriteItem": 2 / 30}, "start"),
    "sweep, nothing due": _NONE,
    "sweep, one due timeout": _STEP_END,
    "sweep, one re-push": _NONE,
    "cancel, 1 id": _STEP_END,
    "status, 1 id": _NONE,
    "status, 10 ids (per id)": _NONE,
}
"""The kinds measured a second time without instance tracking (the others need it to exist)."""


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

    @property
    def total_calls(self) -> float:
        return sum(self.calls.values())

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
class ExtraResult:
    """What instance tracking added to one kind at one fleet size (with minus without)."""

    without: KindResult
    with_: KindResult

    @property
    def calls(self) -> dict[str, float]:
        ops = {*self.with_.calls, *self.without.calls}
        diff = {op: self.with_.calls.get(op, 0.0) - self.without.calls.get(op, 0.0) for op in ops}
        return {op: n for op, n in sorted(diff.items()) if abs(n) > 1e-9}

    @property
    def wcu(self) -> float:
        return self.with_.wcu - self.without.wcu

    @property
    def rcu(self) -> float:
        return self.with_.rcu - self.without.rcu


def _same(a: dict[str, float], b: dict[str, float]) -> bool:
    return a.keys() == b.keys() and all(abs(a[k] - b[k]) < 1e-9 for k in a)


@dataclass
class CostReport:
    sizes: list[int]
    results: dict[str, dict[int, KindResult]] = field(default_factory=dict)
    untracked: dict[str, dict[int, KindResult]] = field(default_factory=dict)
    """The kinds of ``EXTRAS`` measured with ``engine.instances = None``."""
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

    def extra(self, kind: str) -> dict[int, ExtraResult]:
        """What instance tracking added to ``kind``, per fleet size."""
        without = self.untracked.get(kind, {})
        tracked = self.results[kind]
        return {size: ExtraResult(without[size], tracked[size]) for size in tracked if size in without}

    def extra_verdict(self, kind: str) -> tuple[bool, str]:
        """Whether what instance tracking adds to ``kind`` meets its target at every size."""
        by_size = self.extra(kind)
        if not by_size or len(by_size) != len(self.results[kind]):
            return False, "NO: not measured without tracking"
        extras = [e.calls for e in by_size.values()]
        if not all(_same(e, extras[0]) for e in extras):
            return False, "NO: differs across fleet sizes"
        added = {op: n for op, n in extras[0].items() if n > 0}
        rule = EXTRAS[kind]
        if rule.rule == "none":
            return (not added), ("yes: none" if not added else f"NO: {_ops(added)}")
        if rule.rule == "step end":
            writes = sum(n for op, n in added.items() if op in WRITE_OPS)
            reads = sum(n for op, n in added.items() if op in READ_OPS)
            ok = writes <= 1 + 1e-9 and not reads
            return ok, (f"yes: {_num(writes)} write per step end" if ok else f"NO: {_ops(added)}")
        ok = all(n <= rule.calls.get(op, 0.0) + 1e-9 for op, n in added.items())
        return ok, ("yes" if ok else f"NO: {_ops(added)}")

    def status_verdict(self) -> tuple[bool, str]:
        """A status call costs one Query per id, and nothing else, at every fleet size."""
        ok = all(
            kind in self.results
            and all(r.calls == {"Query": 1.0} for r in self.results[kind].values())
            and len(self.results[kind]) == len(self.sizes)
            for kind in STATUS_KINDS
        )
        sizes = " / ".join(f"{s:,}" for s in self.sizes)
        return ok, (
            f"status: {'yes' if ok else 'NO'}, one Query per id at {sizes} devices"
            f" (for 1 id and for {STATUS_IDS} ids)"
        )

    def to_json(self) -> dict[str, Any]:
        status_ok, status_text = self.status_verdict()
        return {
            "sizes": self.sizes,
            "populate_seconds": self.populate_seconds,
            "kinds": {
                kind: {
                    "floor": FLOORS[kind].calls,
                    "floor_why": FLOORS[kind].why,
                    "flat": self.verdicts(kind)[0],
                    "within_floor": self.verdicts(kind)[1],
                    "by_size": {str(size): _result_json(r) for size, r in by_size.items()},
                }
                for kind, by_size in self.results.items()
            },
            "instance_tracking_extra": {
                kind: {
                    "target": EXTRAS[kind].target(),
                    "allowed_calls": EXTRAS[kind].calls,
                    "meets_target": self.extra_verdict(kind)[0],
                    "verdict": self.extra_verdict(kind)[1],
                    "by_size": {
                        str(size): {
                            "without": _result_json(e.without),
                            "with": _result_json(e.with_),
                            "extra_calls": e.calls,
                            "extra_wcu": e.wcu,
                            "extra_rcu": e.rcu,
                        }
                        for size, e in self.extra(kind).items()
                    },
                }
                for kind in EXTRAS
                if kind in self.results and kind in self.untracked
            },
            "status_one_query_per_id": status_ok,
            "status_verdict": status_text,
        }


def _result_json(r: KindResult) -> dict[str, Any]:
    return {"calls": r.calls, "rcu": r.rcu, "wcu": r.wcu, "estimated_calls": r.estimated}


def _ops(calls: dict[str, float]) -> str:
    return ", ".join(f"{op} {_num(n)}" for op, n in sorted(calls.items())) or "none"


def _signed(calls: dict[str, float]) -> str:
    return ", ".join(f"{op} {'+' if n > 0 else ''}{_num(n)}" for op, n in sorted(calls.items())) or "none"


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
        " as DynamoDB Local reports them (TransactWriteItems: 2 WCU an item, AWS's rule); * includes"
        " failed conditional writes, estimated at 1 WCU.",
        report.status_verdict()[1] + ".",
        "Floors:",
        *(f"  {kind}: {FLOORS[kind].why}" for kind in KINDS),
    ]
    return headers, rows, notes


def render_extra(report: CostReport) -> tuple[list[str], list[list[Any]], list[str]]:
    """What status and history (instance tracking) add to each kind: bench/run.py's second table."""
    sizes = report.sizes
    size = sizes[-1]
    headers = [
        "event kind",
        "calls without",
        "calls with",
        "extra calls",
        "extra WCU",
        "extra RCU",
        "target",
        "meets target",
    ]
    rows: list[list[Any]] = []
    for kind, rule in EXTRAS.items():
        by_size = report.extra(kind)
        if size not in by_size:
            continue
        e = by_size[size]
        rows.append(
            [
                kind,
                _num(e.without.total_calls),
                _num(e.with_.total_calls),
                _signed(e.calls),
                _num(e.wcu) + ("*" if e.with_.estimated or e.without.estimated else ""),
                _num(e.rcu),
                rule.target(),
                report.extra_verdict(kind)[1],
            ]
        )
    notes = [
        f"Per event at {size:,} devices: each kind run with instance tracking and again with"
        " engine.instances = None (set before the event's setup, so a step started untracked ends"
        f" untracked). Verdicts hold at every size ({' / '.join(f'{s:,}' for s in sizes)}).",
        "A step end's TransactWriteItems (outcome + counter shard) is 4 WCU: 2 an item in a"
        " transaction (DynamoDB Local reports 2 a call; counted here by AWS's rule). A start writes"
        " the instance (1 WCU + 2 for its two history index entries) and 1 in_flight outcome per id,"
        " 25 items a BatchWriteItem.",
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
        instances = self.engine.instances
        assert isinstance(instances, DynamoInstanceStore), "the bench measures instance tracking"
        self.instances = instances
        self.progress_instance = ""
        self.populated = 0
        self._seq = 0

    # --- the fleet ------------------------------------------------------------------------------

    def populate(self, size: int) -> None:
        """Grow the fleet to ``size`` devices with BatchWriteItem (25 items a call, 4 threads)."""
        if size <= self.populated:
            return
        if not self.populated:
            self._instance_fixtures()
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

    def _instance_fixtures(self) -> None:
        """What the instance reads look at, the same at every fleet size: an instance of
        ``PROGRESS_IDS`` ids (one ended in each shard, so every counter shard exists), and
        ``HISTORY_FILL`` instances in each history shard (a full page from each shard's Query)."""
        now = datetime.now(UTC)
        store = self.instances
        self.progress_instance = str(uuid.uuid4())
        record = StartRecord(
            instance_id=self.progress_instance,
            workflow=ONE.name,
            started_by="api",
            context=b"",
            requested=len(PROGRESS_IDS),
            started=len(PROGRESS_IDS),
            skipped=0,
        )
        store.open_instance(record, PROGRESS_IDS, [], now - timedelta(days=1))
        first_of_shard = {_outcome_shard(i): i for i in reversed(PROGRESS_IDS)}
        for enrollment_id in first_of_shard.values():
            store.end_outcome(self.progress_instance, enrollment_id, "completed", now)
        wanted = dict.fromkeys(range(HISTORY_SHARDS), HISTORY_FILL)
        items: list[Model] = []
        n = 0
        while any(wanted.values()):
            n += 1
            instance_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"bench-history-{self.progress_instance}-{n}"))
            shard = zlib.crc32(instance_id.encode()) % HISTORY_SHARDS  # as instance_store.py
            if not wanted[shard]:
                continue
            wanted[shard] -= 1
            old = StartRecord(instance_id, ONE.name, "api", b"", 1, 1, 0)
            items += store.start_items(old, now - timedelta(hours=2, seconds=n))
        batch_write(puts=items)

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

    def _started_many(self, workflow: type[_BenchWorkflow], devices: Sequence[str]) -> str:
        """Start ``workflow`` for ``devices`` in one instance (not measured); its id."""
        self.engine.clock = lambda: datetime.now(UTC) - timedelta(minutes=1)
        try:
            instance_id = self.engine.start_workflow(workflow.name, list(devices)).instance_id
        finally:
            self.engine.clock = lambda: datetime.now(UTC)
        self.client.take_commands()
        return instance_id

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

    def run_kind(self, kind: str, size: int, *, tracked: bool = True) -> KindResult:
        """``reps`` events of ``kind``; with ``tracked`` False the engine has no instance store
        from each event's setup to its end (what the engine cost before issue 11)."""
        usages = []
        for rep in range(self.reps):
            self.engine.instances = self.instances if tracked else None
            try:
                usages.append(self._measure(functools.partial(self._setup, kind, size, rep)))
            finally:
                self.engine.instances = self.instances
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
        if kind == "cancel, 1 id":
            self._started(ONE, dev)
            return lambda: self._cancel(dev)
        if kind == "status, 1 id":
            self._started(ONE, dev)
            return lambda: self._status([dev])
        if kind == "status, 10 ids (per id)":
            devices = [dev] + [self._device() for _ in range(STATUS_IDS - 1)]
            self._started_many(ONE, devices)
            return lambda: self._status(devices)
        if kind == "instance progress":
            return lambda: self._progress(with_ids=False)
        if kind == "instance ids page":
            return lambda: self._progress(with_ids=True)
        if kind == "history page":
            return self._history
        raise ValueError(f"unknown event kind: {kind}")

    def _cancel(self, dev: str) -> None:
        result = self.engine.cancel_workflow(ONE.name, [dev])
        if result.cancelled_ids != [dev]:
            raise AssertionError(f"cancel of {dev} did {result}")

    def _status(self, devices: Sequence[str]) -> None:
        statuses = self.engine.device_status(devices)
        if sorted(statuses) != sorted(devices) or any(len(s.steps) != 1 for s in statuses.values()):
            raise AssertionError(f"status of {devices}: {statuses}")

    def _progress(self, with_ids: bool) -> None:
        status = self.engine.instance_status(self.progress_instance, with_ids=with_ids, limit=IDS_PAGE)
        if status is None or status.counts.started != len(PROGRESS_IDS):
            raise AssertionError(f"instance {self.progress_instance}: {status}")
        counts = status.counts
        if counts.completed != OUTCOME_SHARDS or counts.in_flight != len(PROGRESS_IDS) - OUTCOME_SHARDS:
            raise AssertionError(f"instance counts: {status.counts}")
        if with_ids and (len(status.ids or []) != IDS_PAGE or not status.next):
            raise AssertionError(f"ids page of {len(status.ids or [])} ids, next {status.next}")

    def _history(self) -> None:
        page = self.engine.instance_history(None, limit=HISTORY_PAGE)
        if len(page.instances) != HISTORY_PAGE or not page.next:
            raise AssertionError(f"history page of {len(page.instances)} instances, next {page.next}")

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
    """Measure ``kinds`` at each fleet size in ``sizes`` (ascending, one table grown in place),
    those of ``EXTRAS`` a second time without instance tracking."""
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
        for kind in kinds:
            if kind in EXTRAS:
                report.untracked.setdefault(kind, {})[size] = bench.run_kind(kind, size, tracked=False)
    return report
