"""The local stand-ins for Lambda's event sources: the SQS event source mapping, the sweeper's rate
schedule and EventBridge Scheduler's one-time schedules.

- :class:`QueuePoller` long-polls the FIFO events queue (up to 10 messages), invokes the events
  function with the SQS event Lambda would build, and deletes exactly the messages that are not in
  ``batchItemFailures`` (ReportBatchItemFailures); an exception, or a reply naming an unknown message,
  fails the whole batch. Failed messages come back after the queue's visibility timeout, and after
  ``maxReceiveCount`` receives the queue's RedrivePolicy moves them to the dead-letter queue: fauxqs
  honours RedrivePolicy on receive as SQS does (checked by tests/infra/test_local_queue.py), so no
  move is emulated here. :mod:`infra.local.event_source` runs several of these at once.
- :class:`Sweeper` invokes the sweeper function every ``NANOCMD_WORKER_INTERVAL`` seconds (0: off).
- :class:`ScheduleFirer` fires the one-time ``at(...)`` schedules of the schedule group once due:
  it sends the target's Input to the target (an SQS queue, with SqsParameters.MessageGroupId, or one
  of the local functions) and deletes the schedule when its ActionAfterCompletion is DELETE. moto
  stores schedules but never runs them, hence this.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import boto3
from botocore.config import Config

from infra.local.lambda_runtime import FunctionHost
from infra.local.services import REGION

log = logging.getLogger(__name__)


def _lambda_message_attributes(attrs: dict[str, Any] | None) -> dict[str, Any]:
    """SQS ReceiveMessage attributes in the shape Lambda puts in an SQS event record."""
    out: dict[str, Any] = {}
    for name, value in (attrs or {}).items():
        item: dict[str, Any] = {
            "stringListValues": list(value.get("StringListValues", [])),
            "binaryListValues": [
                base64.b64encode(b).decode("ascii") for b in value.get("BinaryListValues", [])
            ],
            "dataType": value.get("DataType", "String"),
        }
        if "StringValue" in value:
            item["stringValue"] = value["StringValue"]
        if "BinaryValue" in value:
            item["binaryValue"] = base64.b64encode(value["BinaryValue"]).decode("ascii")
        out[name] = item
    return out


def sqs_event(messages: Sequence[dict[str, Any]], queue_arn: str, region: str = REGION) -> dict[str, Any]:
    """The event Lambda's SQS event source mapping passes for a batch of received messages."""
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m.get("Body", ""),
                "attributes": dict(m.get("Attributes", {})),
                "messageAttributes": _lambda_message_attributes(m.get("MessageAttributes")),
                "md5OfBody": m.get("MD5OfBody"),
                **(
                    {"md5OfMessageAttributes": m["MD5OfMessageAttributes"]}
                    if m.get("MD5OfMessageAttributes")
                    else {}
                ),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": region,
            }
            for m in messages
        ]
    }


def failed_message_ids(result: Any, message_ids: Sequence[str]) -> set[str]:
    """The messages Lambda would keep, reading a ReportBatchItemFailures reply.

    No reply, an empty one, or an empty/null ``batchItemFailures`` is full success; an item without
    a valid identifier, or naming a message not in the batch, fails the whole batch.
    """
    if not result:
        return set()
    if not isinstance(result, dict):
        return set(message_ids)
    failures = result.get("batchItemFailures")
    if not failures:
        return set()
    if not isinstance(failures, list):
        return set(message_ids)
    failed: set[str] = set()
    for item in failures:
        ident = item.get("itemIdentifier") if isinstance(item, dict) else None
        if not ident or ident not in message_ids:
            log.error("batchItemFailures names %r, not a message of the batch: whole batch fails", ident)
            return set(message_ids)
        failed.add(ident)
    return failed


POLLER_CONFIG = Config(user_agent="nanocmd-local-esm", parameter_validation=False)
"""The poller's SQS client: a fixed user agent (botocore otherwise rebuilds the string on every
request) and no client-side validation of its few fixed-shape calls (fauxqs checks them): what
Lambda's own poller costs is not the function's, so it should cost the local stack little too."""


class QueuePoller:
    """Lambda's SQS event source mapping for one queue and one function."""

    def __init__(
        self,
        functions: FunctionHost,
        function: str,
        queue_url: str,
        *,
        batch_size: int = 10,
        wait_seconds: int = 1,
        retry_visibility: int | None = None,
    ) -> None:
        """``retry_visibility``: make failed messages visible again after this many seconds instead of
        the queue's own VisibilityTimeout (tests use it to reach the DLQ quickly); None keeps AWS's."""
        self.functions = functions
        self.function = function
        self.queue_url = queue_url
        self.batch_size = max(1, min(batch_size, 10))
        self.wait_seconds = wait_seconds
        self.retry_visibility = retry_visibility
        self.sqs = boto3.client("sqs", config=POLLER_CONFIG)
        self._busy = threading.Lock()  # held while a batch is being processed
        self.queue_arn = self.sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]

    def poll_once(self, wait_seconds: int | None = None, stop: threading.Event | None = None) -> int:
        """Receive one batch and process it; returns how many messages were received.

        A batch received after ``stop`` was set is handed back to the queue unprocessed, so stopping
        never waits for a long poll and no handler runs once the stack is stopping.
        """
        resp = self.sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=self.batch_size,
            WaitTimeSeconds=self.wait_seconds if wait_seconds is None else wait_seconds,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        messages: list[Any] = list(resp.get("Messages", []))
        if not messages:
            return 0
        with self._busy:
            if stop is not None and stop.is_set():
                self._release(messages)
                return 0
            self.process(messages)
        return len(messages)

    def _release(self, messages: list[Any]) -> None:
        with contextlib.suppress(Exception):
            self.sqs.change_message_visibility_batch(
                QueueUrl=self.queue_url,
                Entries=[
                    {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
                    for n, m in enumerate(messages)
                ],
            )

    def quiesce(self, timeout: float) -> None:
        """Wait for the batch in progress (if any) to finish."""
        if self._busy.acquire(timeout=timeout):
            self._busy.release()

    def process(self, messages: list[dict[str, Any]]) -> set[str]:
        """Invoke the function on a batch, delete the successes; returns the failed message ids."""
        ids = [m["MessageId"] for m in messages]
        try:
            result = self.functions.invoke(self.function, sqs_event(messages, self.queue_arn))
        except Exception:
            log.exception("%s failed on a batch of %d: nothing deleted", self.function, len(messages))
            failed = set(ids)
        else:
            failed = failed_message_ids(result, ids)
        done = [m for m in messages if m["MessageId"] not in failed]
        for i in range(0, len(done), 10):
            chunk = done[i : i + 10]
            resp = self.sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(chunk)],
            )
            for err in resp.get("Failed", []):
                log.warning("could not delete a processed message: %s", err)
        if failed and self.retry_visibility is not None:
            again = [m for m in messages if m["MessageId"] in failed]
            self.sqs.change_message_visibility_batch(
                QueueUrl=self.queue_url,
                Entries=[
                    {
                        "Id": str(n),
                        "ReceiptHandle": m["ReceiptHandle"],
                        "VisibilityTimeout": self.retry_visibility,
                    }
                    for n, m in enumerate(again)
                ],
            )
        if failed:
            log.info("%s: %d of %d messages failed, left on the queue", self.function, len(failed), len(ids))
        return failed

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.poll_once(stop=stop)
            except Exception:
                if stop.is_set():
                    return  # the queue may be gone already
                log.exception("polling %s failed", self.queue_url)
                stop.wait(1)


class Sweeper:
    """The sweeper's rate schedule: one invocation every ``interval`` seconds (0 disables it)."""

    def __init__(self, functions: FunctionHost, function: str, interval: float, event: Any = None) -> None:
        self.functions = functions
        self.function = function
        self.interval = interval
        self.event = {} if event is None else event
        self._busy = threading.Lock()

    def run_once(self) -> Any:
        with self._busy:
            return self.functions.invoke(self.function, self.event)

    def quiesce(self, timeout: float) -> None:
        if self._busy.acquire(timeout=timeout):
            self._busy.release()

    def run(self, stop: threading.Event) -> None:
        if self.interval <= 0:
            return
        while not stop.wait(self.interval):
            try:
                self.run_once()
            except Exception:
                log.exception("%s failed", self.function)


def at_time(expression: str, timezone: str | None) -> datetime | None:
    """The moment of a one-time ``at(yyyy-mm-ddThh:mm:ss)`` expression; None for rate()/cron()."""
    expression = expression.strip()
    if not (expression.startswith("at(") and expression.endswith(")")):
        return None
    naive = datetime.strptime(expression[3:-1], "%Y-%m-%dT%H:%M:%S")
    try:
        tz = ZoneInfo(timezone or "UTC")
    except ZoneInfoNotFoundError:
        log.warning("unknown schedule timezone %r, taking UTC", timezone)
        tz = ZoneInfo("UTC")
    return naive.replace(tzinfo=tz)


class ScheduleFirer:
    """Runs the due one-time schedules of one EventBridge Scheduler group."""

    def __init__(
        self,
        functions: FunctionHost,
        group: str,
        *,
        poll_interval: float = 1.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.functions = functions
        self.group = group
        self.poll_interval = poll_interval
        self.clock = clock
        self.scheduler = boto3.client("scheduler")
        self.sqs = boto3.client("sqs")
        self._done: set[tuple[str, str]] = set()  # fired schedules kept (ActionAfterCompletion NONE)
        self._retry_at: dict[str, float] = {}
        self._failures: dict[str, int] = {}
        self._busy = threading.Lock()

    def quiesce(self, timeout: float) -> None:
        if self._busy.acquire(timeout=timeout):
            self._busy.release()

    def _schedule_names(self) -> list[str]:
        names: list[str] = []
        kwargs: dict[str, Any] = {"GroupName": self.group, "State": "ENABLED"}
        while True:
            page = self.scheduler.list_schedules(**kwargs)
            names += [s["Name"] for s in page.get("Schedules", [])]
            if not page.get("NextToken"):
                return names
            kwargs["NextToken"] = page["NextToken"]

    def fire_due(self) -> list[str]:
        """Deliver every due schedule once; returns the names delivered."""
        with self._busy:
            return self._fire_due()

    def _fire_due(self) -> list[str]:
        now = self.clock()
        fired: list[str] = []
        for name in self._schedule_names():
            if self._retry_at.get(name, 0) > time.monotonic():
                continue
            try:
                sched = self.scheduler.get_schedule(GroupName=self.group, Name=name)
            except self.scheduler.exceptions.ResourceNotFoundException:
                continue  # deleted meanwhile (e.g. the engine cancelled the step)
            when = at_time(sched.get("ScheduleExpression", ""), sched.get("ScheduleExpressionTimezone"))
            version = str(sched.get("LastModificationDate", ""))
            if when is None or when > now or (name, version) in self._done:
                continue
            try:
                self._deliver(sched["Target"])
            except Exception as exc:
                n = self._failures[name] = self._failures.get(name, 0) + 1
                self._retry_at[name] = time.monotonic() + min(60, 2**n)
                log.warning("schedule %s: delivery failed (attempt %d), will retry: %s", name, n, exc)
                continue
            self._failures.pop(name, None)
            self._retry_at.pop(name, None)
            fired.append(name)
            if sched.get("ActionAfterCompletion") == "DELETE":
                with contextlib.suppress(self.scheduler.exceptions.ResourceNotFoundException):
                    self.scheduler.delete_schedule(GroupName=self.group, Name=name)
            else:
                self._done.add((name, version))
        return fired

    def _deliver(self, target: Mapping[str, Any]) -> None:
        arn = str(target.get("Arn", ""))
        payload = target.get("Input")
        service = arn.split(":")[2] if arn.count(":") >= 5 else ""
        if service == "sqs":
            _, _, _, _region, account, queue_name = arn.split(":", 5)
            url = self.sqs.get_queue_url(QueueName=queue_name, QueueOwnerAWSAccountId=account)["QueueUrl"]
            kwargs: dict[str, Any] = {
                "QueueUrl": url,
                "MessageBody": payload if payload is not None else "{}",
            }
            group_id = (target.get("SqsParameters") or {}).get("MessageGroupId")
            if group_id:
                kwargs["MessageGroupId"] = group_id
            # a FIFO target needs ContentBasedDeduplication on the queue, as with the real Scheduler
            self.sqs.send_message(**kwargs)
            return
        if service == "lambda":
            function_name = arn.split(":")[6] if arn.count(":") >= 6 else ""
            for logical_id, spec in self.functions.specs.items():
                if function_name in (spec.function_name, spec.arn):
                    event: Any = {}
                    if payload is not None:
                        try:
                            event = json.loads(payload)
                        except json.JSONDecodeError:
                            event = payload
                    self.functions.invoke(logical_id, event)
                    return
        raise ValueError(f"schedule target {arn!r} is not a local queue or function")

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(self.poll_interval):
            try:
                self.fire_due()
            except Exception:
                if stop.is_set():
                    return
                log.exception("firing schedules of %s failed", self.group)


class Loop(Protocol):
    """What the worker runs: a loop until ``stop`` is set, and a wait for the work in hand."""

    def run(self, stop: threading.Event) -> None: ...
    def quiesce(self, timeout: float) -> None: ...


class Worker:
    """Runs the event source mapping, the sweeper and the schedule firer on daemon threads until
    :meth:`stop`."""

    def __init__(self, *loops: Loop | None) -> None:
        self.loops = [lp for lp in loops if lp is not None]
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        self._stop.clear()
        for lp in self.loops:
            t = threading.Thread(
                target=lp.run, args=(self._stop,), name=f"local-{type(lp).__name__}", daemon=True
            )
            t.start()
            self._threads.append(t)

    def stop(self, timeout: float = 30.0) -> None:
        """Signal the loops and wait for any handler they are running; a long poll in flight is not
        waited for (its thread ends by itself, handing back what it receives)."""
        self._stop.set()
        for lp in self.loops:
            lp.quiesce(timeout)
        for t in self._threads:
            t.join(0.05)
        self._threads.clear()
