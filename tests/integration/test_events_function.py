"""The events function's batch handling: a failing event holds back only its own enrollment's
later events of the batch (FIFO order per device), never another device's; the reports of a
batch are looked up together, and what earlier events of the batch changed is still seen."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pynamodb.exceptions import GetError

from infra.local.lambda_runtime import LambdaContext, load_module
from infra.local.resources import Provisioned
from infra.local.stack import reset_settings_cache
from infra.local.worker import sqs_event
from nanocmd_core.aws.clients import aws_client
from nanocmd_core.mdm.commands import DeviceInformation
from nanocmd_core.storage.engine_store import DynamoEngineStore, NewTarget, TargetCommand
from nanocmd_core.storage.models import CommandRecord, bind_table
from nanocmd_core.workflow import Config, Event, MDMContext, StepEnqueueing, StepResult, StepStart, Workflow
from tests.fakes.intake import through_intake
from tests.fakes.mdm_server import FakeMDMServer
from tests.fakes.reports import checkin_webhook, connect_webhook, device_information, report

QUEUE_ARN = "arn:aws:sqs:us-east-1:123456789012:q.fifo"
CONTEXT = LambdaContext("EventsFunction")


def message(n: int, body: bytes, group: str) -> dict[str, Any]:
    return {
        "MessageId": f"m{n}",
        "ReceiptHandle": f"r{n}",
        "Body": body.decode(),
        "Attributes": {
            "MessageGroupId": group,
            "ApproximateReceiveCount": "1",
            "SentTimestamp": "1700000000000",
        },
    }


def queued(n: int, webhook: bytes) -> dict[str, Any]:
    """A message exactly as the webhook intake queues ``webhook`` (body, group, attributes)."""
    [(group, body, attributes)] = through_intake([webhook])
    return {
        **message(n, body.encode(), group),
        "MessageAttributes": {k: {"StringValue": v, "DataType": "String"} for k, v in attributes.items()},
    }


def test_a_poison_event_blocks_only_its_own_device(events_fn: Any) -> None:
    engine = events_fn._app().engine
    step = DeviceInformation(queries=["Model"])
    engine.enqueue_step(
        "io.micromdm.wf.devinfolog.v1", StepEnqueueing(instance_id="i", ids=["A", "B"], commands=[step])
    )
    uuid = step.command_uuid
    poison = plistlib_bytes(uuid, "A")
    batch = [
        message(1, connect_webhook("A", uuid, poison), "A"),
        message(2, connect_webhook("A", "other", report("other", "A")), "A"),
        message(3, connect_webhook("B", uuid, device_information(uuid, "B", Model="M")), "B"),
    ]
    reply = events_fn.handler(sqs_event(batch, QUEUE_ARN), CONTEXT)
    assert {f["itemIdentifier"] for f in reply["batchItemFailures"]} == {"m1", "m2"}
    assert engine.store.lookup_command("B", uuid) is None  # B's step completed
    assert engine.store.lookup_command("A", uuid) is not None  # A's is still there for the retry


def plistlib_bytes(uuid: str, udid: str) -> bytes:
    """A DeviceInformation report whose QueryResponses is not a dictionary: it cannot be typed."""
    import plistlib

    return plistlib.dumps(
        {"CommandUUID": uuid, "Status": "Acknowledged", "UDID": udid, "QueryResponses": "x"}
    )


class Recorder(Workflow):
    name = "com.example.test.recorder"
    config = Config(all_command_response_request_types=("DeviceInformation",))

    def __init__(self, enqueuer: Any) -> None:
        super().__init__(enqueuer)
        self.completed: list[tuple[str, str]] = []
        self.responses: list[str] = []
        """Enrollment ids of the tracked DeviceInformation answers seen (AllCommandResponse)."""

    def start(self, step: StepStart) -> None:
        pass

    def step_completed(self, result: StepResult) -> None:
        self.completed.append((result.id, result.command_results[0].command_uuid))

    def event(self, event: Event, enrollment_id: str, mdm_context: MDMContext | None) -> None:
        self.responses.append(enrollment_id)


@pytest.fixture
def events_fn(nanocmd_env: Provisioned, monkeypatch: pytest.MonkeyPatch, repo_root: Path) -> Iterator[Any]:
    with FakeMDMServer() as mdm:
        monkeypatch.setenv("NANOCMD_ENQUEUE_URL", mdm.enqueue_url)
        monkeypatch.setenv("NANOCMD_PUSH_URL", mdm.push_url)
        monkeypatch.setenv("NANOCMD_ENQUEUE_API", mdm.api_key)
        reset_settings_cache()
        module = load_module(repo_root / "functions/events/app.py", "nanocmd_fn_events_prefetch")
        yield module
        reset_settings_cache()


@pytest.fixture
def dynamodb_calls() -> Iterator[Counter[str]]:
    """Counts the DynamoDB calls made through the process's client during the test."""
    calls: Counter[str] = Counter()

    def count(model: Any, **_: Any) -> None:
        calls[model.name] += 1

    events = aws_client("dynamodb").meta.events
    events.register("before-call.dynamodb", count)
    yield calls
    events.unregister("before-call.dynamodb", count)


def track_step(events_fn: Any, ids: list[str]) -> tuple[Recorder, str]:
    """A recording workflow on the function's engine, and one DeviceInformation step of it sent
    to ``ids``; returns the workflow and the command's UUID."""
    engine = events_fn._app().engine
    recorder = Recorder(engine)
    engine.register(recorder)
    command = DeviceInformation(queries=["Model"])
    engine.enqueue_step(recorder.name, StepEnqueueing(instance_id="i", ids=ids, commands=[command]))
    return recorder, command.command_uuid


def test_a_batch_looks_up_its_reports_in_one_call(events_fn: Any, dynamodb_calls: Counter[str]) -> None:
    ids = [f"DEV-{n}" for n in range(6)]
    recorder, uuid = track_step(events_fn, ids)
    batch = [
        queued(n, connect_webhook(i, uuid, device_information(uuid, i, Model="M"))) for n, i in enumerate(ids)
    ]
    dynamodb_calls.clear()
    reply = events_fn.handler(sqs_event(batch, QUEUE_ARN), CONTEXT)
    assert reply["batchItemFailures"] == []
    assert sorted(recorder.completed) == [(i, uuid) for i in ids]
    assert dynamodb_calls["BatchGetItem"] == 1 and dynamodb_calls["GetItem"] == 0


def test_what_earlier_events_of_a_batch_did_is_seen_by_later_ones(events_fn: Any) -> None:
    recorder, uuid = track_step(events_fn, ["A", "B"])
    answer_a = connect_webhook("A", uuid, device_information(uuid, "A", Model="M"))
    answer_b = connect_webhook("B", uuid, device_information(uuid, "B", Model="M"))
    batch = [
        queued(1, answer_a),  # completes A's step
        queued(2, answer_a.replace(b'"event_id": ""', b'"event_id": "again"')),  # a repeat of it
        queued(3, checkin_webhook("CheckOut", "B")),  # B leaves: its step is cancelled
        queued(4, answer_b),  # so this answer belongs to nothing any more
    ]
    reply = events_fn.handler(sqs_event(batch, QUEUE_ARN), CONTEXT)
    assert reply["batchItemFailures"] == []
    assert recorder.completed == [("A", uuid)]
    assert recorder.responses == ["A"]  # B's answer came after its step was cancelled: untracked
    assert events_fn._app().engine.store.lookup_command("A", uuid) is None
    assert events_fn._app().engine.store.lookup_command("B", uuid) is None


def test_records_written_inside_a_prefetched_batch_are_found(table_name: str) -> None:
    bind_table(table_name)
    store = DynamoEngineStore()
    first = NewTarget("E1", "s1", "wf", "i", "", b"", [TargetCommand("u1", "u1", "DeviceInformation")], 0)
    second = NewTarget("E1", "s2", "wf", "i", "", b"", [TargetCommand("u2", "u2", "SecurityInfo")], 0)
    store.put_targets([first])
    with store.prefetched_commands([("E1", "u1"), ("E1", "u2"), ("E2", "u3")]):
        store.put_targets([second])  # after the prefetch: E1's answers are looked up live again
        assert store.lookup_command("E1", "u2") == ("s2", "SecurityInfo", "u2")
        assert store.lookup_command("E1", "u1") == ("s1", "DeviceInformation", "u1")
        assert store.lookup_command("E2", "u3") is None


def test_when_the_batch_lookup_fails_each_report_looks_itself_up(
    events_fn: Any, dynamodb_calls: Counter[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder, uuid = track_step(events_fn, ["A", "B"])

    def throttled(*args: Any, **kwargs: Any) -> Any:  # as after botocore's retries gave up
        raise GetError("Failed to batch get items: ProvisionedThroughputExceededException")

    monkeypatch.setattr(CommandRecord, "batch_get", throttled)
    batch = [
        queued(n, connect_webhook(i, uuid, device_information(uuid, i, Model="M")))
        for n, i in enumerate("AB")
    ]
    dynamodb_calls.clear()
    reply = events_fn.handler(sqs_event(batch, QUEUE_ARN), CONTEXT)
    assert reply["batchItemFailures"] == []
    assert sorted(recorder.completed) == [("A", uuid), ("B", uuid)]
    assert dynamodb_calls["GetItem"] == 2


def test_start_chunks_run_and_one_without_time_left_goes_back_to_the_queue(events_fn: Any) -> None:
    """A batch of start chunks (issue 12): each is started; with too little of the invocation
    left, a chunk is handed back (a batch item failure) rather than cut off by a timeout."""
    from nanocmd_core.engine.fleet_start import StartChunk

    engine = events_fn._app().engine
    devinfolog = "io.micromdm.wf.devinfolog.v1"
    engine.start_queue = None  # the chunks are built here, not queued
    instances = engine.instances
    from nanocmd_core.storage.instance_store import StartRecord

    instances.open_async(StartRecord("inst-1", devinfolog, "api", b"", 4, 0, 0), 2, engine.clock())
    chunks = [
        StartChunk("inst-1", devinfolog, 0, ["S1", "S2"]),
        StartChunk("inst-1", devinfolog, 1, ["S3", "S4"]),
    ]
    batch = [message(n, c.to_message().body.encode(), c.to_message().group_id) for n, c in enumerate(chunks)]
    reply = events_fn.handler(sqs_event(batch, QUEUE_ARN), LambdaContext("EventsFunction"))
    assert reply["batchItemFailures"] == []
    status = engine.instance_status("inst-1")
    assert status is not None and (status.counts.started, status.counts.pending) == (4, 0)

    instances.open_async(StartRecord("inst-2", devinfolog, "api", b"", 1, 0, 0), 1, engine.clock())
    late = StartChunk("inst-2", devinfolog, 0, ["S5"])
    short = LambdaContext("EventsFunction", timeout=5)  # 5 s left: less than a chunk may take
    batch = [
        message(9, late.to_message().body.encode(), "g"),
        message(10, connect_webhook("Z", "not-ours", report("not-ours", "Z")), "Z"),  # runs meanwhile
    ]
    reply = events_fn.handler(sqs_event(batch, QUEUE_ARN), short)
    assert [f["itemIdentifier"] for f in reply["batchItemFailures"]] == ["m9"]
    status = engine.instance_status("inst-2")
    assert status is not None and status.counts.pending == 1  # nothing started, nothing lost


class _Sent:
    """A start queue that keeps what it is given (the test delivers it itself)."""

    def __init__(self) -> None:
        self.messages: list[Any] = []

    def send_batch(self, messages: list[Any]) -> None:
        self.messages += messages


def _on_receive(n: int, chunk: Any, receives: int) -> dict[str, Any]:
    """The chunk's message as its ``receives``-th delivery brings it."""
    queued_chunk = chunk.to_message()
    received = message(n, queued_chunk.body.encode(), queued_chunk.group_id)
    received["Attributes"]["ApproximateReceiveCount"] = str(receives)
    return received


def test_a_chunk_short_of_time_on_its_last_receive_is_queued_again_not_cut_off(events_fn: Any) -> None:
    """Handed back until its 5th receive, a chunk that again has too little time is not run into a
    timeout (which would dead-letter it uncounted): it is queued again as a new message, which
    then starts the chunk once (an id busy in another instance skipped) and counts it."""
    from nanocmd_core.engine.fleet_start import CHUNK_RESENDS, StartChunk, start_chunk_of
    from nanocmd_core.storage.instance_store import StartRecord

    engine = events_fn._app().engine
    devinfolog = "io.micromdm.wf.devinfolog.v1"
    sent = _Sent()
    engine.start_queue = sent
    engine.instances.open_async(StartRecord("inst-r", devinfolog, "api", b"", 3, 0, 0), 1, engine.clock())
    chunk = StartChunk("inst-r", devinfolog, 0, ["R1", "R2", "R3"])
    engine.start_workflow(devinfolog, ["R1"])  # R1 busy in another instance: skipped
    last = _on_receive(1, chunk, receives=5)
    reply = events_fn.handler(sqs_event([last], QUEUE_ARN), LambdaContext("EventsFunction", timeout=5))
    assert reply["batchItemFailures"] == []  # this message is done with
    [again] = sent.messages
    resent = start_chunk_of(again.body)
    assert resent is not None and resent.resent == 1 and again.dedup_id != chunk.to_message().dedup_id
    status = engine.instance_status("inst-r")
    assert status is not None and status.counts.pending == 3  # nothing started yet, nothing lost

    fresh = LambdaContext("EventsFunction")  # a whole invocation's time (CONTEXT's runs from import)
    reply = events_fn.handler(sqs_event([message(2, again.body.encode(), "start")], QUEUE_ARN), fresh)
    assert reply["batchItemFailures"] == []
    status = engine.instance_status("inst-r")
    assert status is not None
    assert (status.counts.started, status.counts.skipped, status.counts.pending) == (2, 1, 0)

    # resent CHUNK_RESENDS times already: the last receive runs it, short of time or not
    sent.messages.clear()
    engine.instances.open_async(StartRecord("inst-s", devinfolog, "api", b"", 1, 0, 0), 1, engine.clock())
    worn = StartChunk("inst-s", devinfolog, 0, ["S9"], resent=CHUNK_RESENDS)
    last = _on_receive(3, worn, receives=5)
    reply = events_fn.handler(sqs_event([last], QUEUE_ARN), LambdaContext("EventsFunction", timeout=5))
    assert reply["batchItemFailures"] == [] and sent.messages == []
    status = engine.instance_status("inst-s")
    assert status is not None and status.counts.started == 1
