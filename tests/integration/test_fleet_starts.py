"""Starts for many ids at once, against DynamoDB Local: the unconditional writes of a start go in
BatchWriteItem calls of 25, the exclusivity locks stay conditional puts (so overlapping starts
still give each id one instance), and items a BatchWriteItem leaves unprocessed are sent again.

DynamoDB calls are counted, and a BatchWriteItem's answer rewritten, with botocore event hooks on
the client every model shares; DynamoDB itself is DynamoDB Local, never a mock.
"""

from __future__ import annotations

import math
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from nanocmd_core.engine.engine import AlreadyStartedError, StartResult
from nanocmd_core.storage import dynamo
from nanocmd_core.storage.engine_store import BatchWriteError, DynamoEngineStore
from nanocmd_core.storage.models import StepTarget
from tests.support.engine import Harness, StepsWorkflow, engine_harness


@pytest.fixture
def harness(table_name: str) -> Iterator[Harness]:
    with engine_harness(table_name) as h:
        yield h


def _client() -> Any:
    """The botocore client behind every model (models.py: one per process)."""
    return StepTarget._get_connection().connection.client


@contextmanager
def _hook(event: str, handler: Callable[..., Any]) -> Iterator[None]:
    events = _client().meta.events
    unique_id = f"test-fleet-{uuid.uuid4()}"
    events.register(event, handler, unique_id=unique_id)
    try:
        yield
    finally:
        events.unregister(event, unique_id=unique_id)


@contextmanager
def _counting_calls() -> Iterator[Counter[str]]:
    calls: Counter[str] = Counter()
    lock = threading.Lock()

    def count(model: Any, **_: Any) -> None:
        with lock:
            calls[model.name] += 1

    with _hook("before-call.dynamodb", count):
        yield calls


def test_a_250_id_start_batches_every_unconditional_write(harness: Harness) -> None:
    """Per id: a conditional lock put, 100 to a TransactWriteItems; the step target, its command
    record and the start record go 25 to a BatchWriteItem (plus the SC-3 lookup of the records,
    100 to a BatchGetItem);
    before the workflow runs, the instance and its ids' ``in_flight`` outcomes, batched too."""
    ids = [f"FLEET-{n:03d}" for n in range(250)]
    with _counting_calls() as calls:
        result = harness.engine.start_workflow(StepsWorkflow.name, ids)
    assert sorted(result.started_ids) == ids
    items = len(ids) * (1 + 1 + 1)  # target, command record, start record
    opened = 1 + len(ids)  # the instance item, an outcome per id
    assert calls["TransactWriteItems"] == math.ceil(len(ids) / 100)  # the locks, and nothing else
    assert calls["BatchWriteItem"] <= math.ceil(items / 25) + math.ceil(opened / 25)
    assert calls["BatchGetItem"] == math.ceil(len(ids) / 100)
    assert set(calls) == {"TransactWriteItems", "BatchWriteItem", "BatchGetItem"}
    # everything is there: locks held, commands tracked, start records written
    now = datetime.now(UTC)
    store = harness.engine.store
    assert store.outstanding(StepsWorkflow.name, ids, now) == ids
    for i in ids[::50]:
        (sent,) = harness.uuids(i)
        assert store.lookup_command(i, sent) is not None
        assert store.last_started(i, StepsWorkflow.name) is not None


def _lock_holders(ids: list[str]) -> dict[str, str]:
    """Who holds StepsWorkflow's lock of each id, read back from the table."""
    keys = [{"pk": {"S": f"ENR#{i}"}, "sk": {"S": f"LOCK#{StepsWorkflow.name}"}} for i in ids]
    held: dict[str, str] = {}
    for k in range(0, len(keys), 100):
        reply = _client().batch_get_item(
            RequestItems={StepTarget.Meta.table_name: {"Keys": keys[k : k + 100], "ConsistentRead": True}}
        )
        for item in reply["Responses"][StepTarget.Meta.table_name]:
            held[item["pk"]["S"].removeprefix("ENR#")] = item["instance_id"]["S"]
    return held


def test_locks_in_transactions_skip_exactly_the_busy_ids(harness: Harness) -> None:
    """230 ids, 3 groups: a transaction cancelled by some held locks is sent again without them;
    an expired lock is free; a lock the same instance holds is its own (a retried chunk)."""
    store = harness.engine.store
    now = datetime.now(UTC)
    ids = [f"TXL-{n:03d}" for n in range(230)]
    held_by_other = ids[5:200:17]
    store.acquire_locks(StepsWorkflow.name, "OTHER", held_by_other, now, now + timedelta(hours=1))
    expired = ids[7:200:23]
    store.acquire_locks(StepsWorkflow.name, "OLD", expired, now - timedelta(days=2), now - timedelta(days=1))
    mine = ids[220:]
    store.acquire_locks(StepsWorkflow.name, "MINE", mine, now, now + timedelta(hours=1))
    with _counting_calls() as calls:
        busy = store.acquire_locks(StepsWorkflow.name, "MINE", ids, now, now + timedelta(hours=1))
    assert busy == held_by_other
    holders = _lock_holders(ids)
    assert {i for i, who in holders.items() if who == "OTHER"} == set(held_by_other)
    assert {i for i, who in holders.items() if who == "MINE"} == set(ids) - set(held_by_other)
    # every group with a busy id was cancelled once and sent again; no single puts were needed
    assert calls["TransactWriteItems"] == 3 + 2 and calls["PutItem"] == 0


def test_a_few_ids_take_their_locks_one_put_each(harness: Harness) -> None:
    """Under LOCK_TRANSACTION_MIN ids: single conditional puts (1 WCU each, not a transaction's 2)."""
    now = datetime.now(UTC)
    ids = [f"FEW-{n}" for n in range(3)]
    with _counting_calls() as calls:
        assert (
            harness.engine.store.acquire_locks(StepsWorkflow.name, "I", ids, now, now + timedelta(hours=1))
            == []
        )
    assert calls == Counter({"PutItem": 3})
    assert harness.engine.store.acquire_locks(StepsWorkflow.name, "J", ids, now, now) == ids


def test_racing_lock_transactions_give_each_id_one_holder(harness: Harness) -> None:
    """Six instances take overlapping locks at once (transactions conflicting on shared items):
    each id ends with one holder, and each instance was told busy for exactly the ids it lost."""
    now = datetime.now(UTC)
    ids = [f"RACE-{n:03d}" for n in range(300)]
    requests = {f"I{k}": ids[k * 30 : k * 30 + 150] for k in range(6)}
    barrier = threading.Barrier(len(requests))

    def take(instance: str) -> list[str]:
        barrier.wait()
        return harness.engine.store.acquire_locks(
            StepsWorkflow.name, instance, requests[instance], now, now + timedelta(hours=1)
        )

    with ThreadPoolExecutor(max_workers=len(requests)) as pool:
        busy = dict(zip(requests, pool.map(take, requests), strict=True))
    holders = _lock_holders(ids)
    assert set(holders) == {i for r in requests.values() for i in r}
    for instance, asked in requests.items():
        won = {i for i in asked if holders[i] == instance}
        assert set(busy[instance]) == set(asked) - won


def test_overlapping_concurrent_starts_give_each_id_exactly_one_instance(harness: Harness) -> None:
    """Four racing starts of 100 ids each, overlapping: every id runs in one instance, is sent its
    step once, and is started in one request and skipped (busy) in the others."""
    harness.steps.follow_up = False
    requests = [
        [f"OVL-{n:03d}" for n in range(0, 100)],
        [f"OVL-{n:03d}" for n in range(50, 150)],
        [f"OVL-{n:03d}" for n in range(100, 200)],
        [f"OVL-{n:03d}" for n in range(0, 200, 2)],
    ]
    barrier = threading.Barrier(len(requests))

    def start(ids: list[str]) -> StartResult | None:
        barrier.wait()
        try:
            return harness.engine.start_workflow(StepsWorkflow.name, ids)
        except AlreadyStartedError:
            return None

    with ThreadPoolExecutor(max_workers=len(requests)) as pool:
        results = list(pool.map(start, requests))
    everyone = {i for r in requests for i in r}
    started = Counter(i for r in results if r for i in r.started_ids)
    assert set(started) == everyone and set(started.values()) == {1}
    for ids, r in zip(requests, results, strict=True):
        if r is not None:
            assert sorted(r.started_ids + r.skipped_ids) == sorted(ids)
    instances: dict[str, set[str]] = {}
    for step in harness.rec.started:
        for i in step.ids:
            instances.setdefault(i, set()).add(step.instance_id)
    assert set(instances) == everyone
    assert all(len(v) == 1 for v in instances.values())
    assert all(len(harness.sent(i)) == 1 for i in everyone)


def _losing_first_item(times: int) -> tuple[Callable[..., None], Callable[..., None], list[Any]]:
    """Hooks that make the first ``times`` BatchWriteItem calls answer one of their puts as
    unprocessed, as DynamoDB does when it throttles: the put is taken out of the request (unless
    it is the only one, which is then written and still reported unprocessed)."""
    held: list[Any] = []
    lock = threading.Lock()
    pending = threading.local()

    def before(params: dict[str, Any], **_: Any) -> None:
        with lock:
            if len(held) >= times:
                return
            ((table, requests),) = params["RequestItems"].items()
            request = requests.pop() if len(requests) > 1 else requests[-1]
            held.append(request)
        pending.value = (table, request)

    def after(parsed: dict[str, Any], **_: Any) -> None:
        table, request = getattr(pending, "value", None) or (None, None)
        if table is None:
            return
        pending.value = None
        parsed.setdefault("UnprocessedItems", {}).setdefault(table, []).append(request)

    return before, after, held


def test_unprocessed_items_of_a_batch_write_are_sent_again(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dynamo, "BATCH_BACKOFF", 0.001)
    store = DynamoEngineStore()
    ids = [f"UNPROC-{n:02d}" for n in range(30)]  # two BatchWriteItems of 25 and 5
    before, after, held = _losing_first_item(times=1)
    with (
        _counting_calls() as calls,
        _hook("before-parameter-build.dynamodb.BatchWriteItem", before),
        _hook("after-call.dynamodb.BatchWriteItem", after),
    ):
        store.record_started("test.wf.fleet", ids, datetime.now(UTC))
    assert len(held) == 1  # one item really was left out of the first call
    assert calls["BatchWriteItem"] == 3  # two chunks, and the resend of the unprocessed item
    assert all(store.last_started(i, "test.wf.fleet") is not None for i in ids)


def test_a_start_survives_an_unprocessed_step_target(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the engine: a step target DynamoDB did not process at first is still stored before
    the MDM server is asked to enqueue, so the device's report is tracked."""
    monkeypatch.setattr(dynamo, "BATCH_BACKOFF", 0.001)
    before, after, held = _losing_first_item(times=1)
    with (
        _hook("before-parameter-build.dynamodb.BatchWriteItem", before),
        _hook("after-call.dynamodb.BatchWriteItem", after),
    ):
        result = harness.engine.start_workflow(StepsWorkflow.name, ["UNPROC-A", "UNPROC-B"])
    assert len(held) == 1 and sorted(result.started_ids) == ["UNPROC-A", "UNPROC-B"]
    for i in ("UNPROC-A", "UNPROC-B"):
        (sent,) = harness.uuids(i)
        assert harness.engine.store.lookup_command(i, sent) is not None


def test_items_left_unprocessed_on_every_attempt_fail_loudly(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dynamo, "BATCH_BACKOFF", 0.0)
    before, after, _ = _losing_first_item(times=1_000)
    with (
        _counting_calls() as calls,
        _hook("before-parameter-build.dynamodb.BatchWriteItem", before),
        _hook("after-call.dynamodb.BatchWriteItem", after),
        pytest.raises(BatchWriteError, match="unprocessed"),
    ):
        DynamoEngineStore().record_started("test.wf.fleet", ["NEVER-1"], datetime.now(UTC))
    assert calls["BatchWriteItem"] == dynamo.BATCH_WRITE_ATTEMPTS


def test_a_step_of_commands_that_drew_their_own_uuids_stores_without_the_sc3_lookup(harness: Harness) -> None:
    """engine/fresh_uuids.py: no step can hold a UUID a typed command drew itself, so its records
    go to the table unlooked-up; a UUID the author gave is looked up (100 records a call)."""
    from nanocmd_core.mdm.commands import SecurityInfo
    from nanocmd_core.workflow import StepEnqueueing

    ids = [f"FRESH-{n:03d}" for n in range(250)]
    drawn, given = SecurityInfo(), SecurityInfo(command_uuid=str(uuid.uuid4()))
    for command, lookups in ((drawn, 0), (given, math.ceil(len(ids) / 100))):
        with _counting_calls() as calls:
            harness.engine.enqueue_step("wf", StepEnqueueing(instance_id="i", ids=ids, commands=[command]))
        assert calls["BatchGetItem"] == lookups
        assert all(harness.engine.store.lookup_command(i, command.command_uuid) is not None for i in ids[:30])
