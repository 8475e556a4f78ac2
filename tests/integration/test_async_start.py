"""Issue 12 item 2: a start past NANOCMD_SYNC_START_MAX goes through the queue in chunks, each id
started once however often SQS delivers a chunk, and a chunk that keeps failing is counted."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from nanocmd_core.aws.clients import aws_client
from nanocmd_core.aws.queue import SQSEventQueue
from nanocmd_core.engine.fleet_start import CHUNK_IDS, StartChunk, start_chunk_of
from tests.fakes.reports import report
from tests.support.engine import Harness, StepsWorkflow, engine_harness


@pytest.fixture
def harness(table_name: str, queue_url: str) -> Iterator[Harness]:
    with engine_harness(table_name) as h:
        h.engine.start_queue = SQSEventQueue(queue_url)
        h.steps.follow_up = False
        yield h


def queued_chunks(queue_url: str) -> list[StartChunk]:
    """Every message on the queue, received (and deleted) as the events function would."""
    sqs = aws_client("sqs")
    chunks: list[StartChunk] = []
    while True:
        reply = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
        messages = reply.get("Messages") or []
        if not messages:
            return chunks
        for message in messages:
            chunk = start_chunk_of(message["Body"])
            assert chunk is not None
            chunks.append(chunk)
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])


def sent_per_id(h: Harness) -> Counter[str]:
    return Counter(i for r in h.mdm.enqueued() for i in r.ids)


def test_an_asynchronous_start_runs_every_chunk_and_counts_each_id_once(
    harness: Harness, queue_url: str
) -> None:
    ids = [f"ASYNC-{n:04d}" for n in range(2 * CHUNK_IDS + 30)]
    busy = ids[5:8]
    harness.engine.start_workflow(StepsWorkflow.name, busy)
    instance_id = harness.engine.start_async(StepsWorkflow.name, ids + ids[:10], b"fleet")
    queued = harness.engine.instance_status(instance_id)
    assert queued is not None and not queued.done
    assert (queued.requested, queued.counts.pending, queued.counts.started) == (len(ids), len(ids), 0)
    assert sent_per_id(harness) == Counter(busy)  # nothing sent before the chunks run

    chunks = queued_chunks(queue_url)
    assert sorted(c.chunk for c in chunks) == [0, 1, 2]
    assert sorted(i for c in chunks for i in c.ids) == sorted(ids)
    for chunk in chunks:
        harness.engine.start_chunk(chunk)
    for chunk in chunks:  # SQS delivers at least once: the same chunks again change nothing
        harness.engine.start_chunk(chunk, attempt=2)

    status = harness.engine.instance_status(instance_id)
    assert status is not None
    assert (status.counts.pending, status.counts.started, status.counts.skipped) == (0, len(ids) - 3, 3)
    assert status.counts.in_flight == len(ids) - 3 and not status.done
    sent = sent_per_id(harness)
    assert all(sent[i] == 1 for i in ids if i not in busy)  # one command per id, never two
    for device in ids[:40]:
        if device not in busy:
            uuid = harness.uuids(device)[-1]
            harness.engine.handle_command_report(device, uuid, report(uuid, device))
    status = harness.engine.instance_status(instance_id)
    assert status is not None and status.counts.completed == 37


def test_a_chunk_whose_first_delivery_died_after_starting_starts_nothing_twice(
    harness: Harness, queue_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = [f"RETRY-{n:03d}" for n in range(40)]
    instance_id = harness.engine.start_async(StepsWorkflow.name, ids)
    [chunk] = queued_chunks(queue_url)
    instances: Any = harness.engine.instances
    real = instances.settle_chunk

    def die(*args: Any, **kwargs: Any) -> bool:
        raise ConnectionError("the Lambda died before counting the chunk")

    monkeypatch.setattr(instances, "settle_chunk", die)
    with pytest.raises(ConnectionError):
        harness.engine.start_chunk(chunk, attempt=1)
    monkeypatch.setattr(instances, "settle_chunk", real)
    harness.engine.start_chunk(chunk, attempt=2)
    status = harness.engine.instance_status(instance_id)
    assert status is not None and (status.counts.started, status.counts.pending) == (40, 0)
    assert all(n == 1 for n in sent_per_id(harness).values()) and len(sent_per_id(harness)) == 40


def test_a_chunk_failing_on_every_delivery_counts_its_ids_as_failed(harness: Harness, queue_url: str) -> None:
    ids = [f"FAIL-{n:03d}" for n in range(12)]
    instance_id = harness.engine.start_async(StepsWorkflow.name, ids)
    [chunk] = queued_chunks(queue_url)
    harness.engine.fail_chunk(chunk, "DynamoDB throttled every try")
    status = harness.engine.instance_status(instance_id)
    assert status is not None
    assert (status.counts.failed, status.counts.pending, status.counts.in_flight, status.done) == (
        12,
        0,
        0,
        True,
    )
    page = harness.engine.instance_status(instance_id, with_ids=True)
    assert page is not None and page.ids is not None
    assert {i.outcome for i in page.ids} == {"failed"} and all(
        "throttled" in (i.error or "") for i in page.ids
    )
    harness.engine.start_chunk(chunk, attempt=5)  # a late delivery after that changes nothing
    assert sent_per_id(harness) == Counter()


@pytest.fixture
def micromdm(table_name: str, queue_url: str) -> Iterator[Harness]:
    with engine_harness(table_name, micromdm=True) as h:
        h.engine.start_queue = SQSEventQueue(queue_url)
        h.steps.follow_up = False
        yield h


def test_micromdm_an_asynchronous_start_gives_each_id_its_own_start_and_commands(
    micromdm: Harness, queue_url: str
) -> None:
    """Issue 12 item 7 (nanocmd PR #128): one Start per id, one request per id and command."""
    ids = [f"MICRO-{n:04d}" for n in range(CHUNK_IDS + 20)]
    instance_id = micromdm.engine.start_async(StepsWorkflow.name, ids)
    for chunk in queued_chunks(queue_url):
        micromdm.engine.start_chunk(chunk)
    assert sorted(s.ids[0] for s in micromdm.rec.started) == sorted(ids)
    assert all(len(s.ids) == 1 and s.instance_id == instance_id for s in micromdm.rec.started)
    requests = micromdm.mdm.enqueued()
    assert all(len(r.ids) == 1 for r in requests) and sorted(r.ids[0] for r in requests) == sorted(ids)
    assert len({r.command_uuid for r in requests}) == len(ids)  # its own command UUID each
    device = ids[7]
    uuid = micromdm.uuids(device)[-1]
    micromdm.engine.handle_command_report(device, uuid, report(uuid, device))
    assert [r.id for r in micromdm.rec.completed] == [device]
    status = micromdm.engine.instance_status(instance_id)
    assert status is not None and (status.counts.started, status.counts.completed) == (len(ids), 1)
