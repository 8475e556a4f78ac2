"""Benchmark: the local SQS (moto's server vs fauxqs) and how DynamoDB Local is started.

SQS. For each server a fresh FIFO queue gets N messages sent one by one (MessageGroupId spread over
``GROUPS`` groups, as enrollment ids are), then they are received in batches of 10 and each batch
deleted. The cost per message is given over each decade separately (1-100, 101-1,000, 1,001-10,000),
so a cost that grows with the messages a queue has seen shows as a growing row. moto's server grows
(every SendMessage scans what the queue has seen), so it is measured to ``MOTO_MAX`` only.

DynamoDB Local. Started ``-inMemory`` or ``-dbPath <tmp>``, with the local stack's JVM flags
(services.DEFAULT_JVM_ARGS) or none: start-up time, then ``ROUNDS`` rounds of ``CALLS`` sequential
conditional PutItems and ``CALLS`` consistent GetItems, in ms per call.

Both run on the machine's cores beside whatever else runs there: figures taken while other work uses
the CPU are noisy (best round reported, with the median), good for orders of magnitude, not tuning.
"""

from __future__ import annotations

import itertools
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from infra.local import services

GROUPS = 50
DECADES = (100, 1_000, 10_000)
QUICK_DECADES = (100, 1_000)
MOTO_MAX = 1_000
QUICK_MOTO_MAX = 100
CALLS = 300
ROUNDS = 3

Progress = Callable[[str], None]


def _client(service: str, endpoint: str) -> Any:
    """A client for one local endpoint with dummy credentials: the process's environment is not used."""
    return boto3.client(  # type: ignore[call-overload]  # service is a plain str here
        service,
        endpoint_url=endpoint,
        region_name=services.REGION,
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
        config=Config(retries={"max_attempts": 2, "mode": "standard"}),
    )


@dataclass
class Decade:
    """Cost per message over messages ``first``..``last`` of one queue."""

    server: str
    first: int
    last: int
    send_ms: float
    receive_delete_ms: float


@dataclass
class DynamoDBRun:
    storage: str  # "-inMemory" or "-dbPath"
    jvm_flags: str
    started_in_s: float
    put_ms: list[float] = field(default_factory=list)  # per call, one figure per round
    get_ms: list[float] = field(default_factory=list)


@dataclass
class QueueReport:
    decades: list[Decade]
    dynamodb: list[DynamoDBRun]
    moto_max: int
    quick: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "sqs": [asdict(d) for d in self.decades],
            "dynamodb": [asdict(d) for d in self.dynamodb],
            "moto_max": self.moto_max,
            "quick": self.quick,
        }


# -- SQS -------------------------------------------------------------------------------------------


def measure_queue(server: str, endpoint: str, decades: tuple[int, ...]) -> list[Decade]:
    """Send up to each decade's bound, one message at a time; then drain, timing each decade again."""
    sqs = _client("sqs", endpoint)
    url = sqs.create_queue(
        QueueName=f"bench-{uuid.uuid4().hex[:8]}.fifo",
        Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "true", "VisibilityTimeout": "180"},
    )["QueueUrl"]
    # warm-up: connection, and the server's lazy imports and code paths, off the clock
    sqs.send_message(
        QueueUrl=url, MessageBody="warm-up", MessageGroupId="warm-up", MessageDeduplicationId="w"
    )
    for m in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
        sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    bounds = [0, *decades]
    send_ms: list[float] = []
    for lo, hi in itertools.pairwise(bounds):
        t0 = time.perf_counter()
        for i in range(lo, hi):
            sqs.send_message(
                QueueUrl=url,
                MessageBody=f'{{"n": {i}, "pad": "{"x" * 200}"}}',
                MessageGroupId=f"enr-{i % GROUPS:03d}",
                MessageDeduplicationId=f"m{i}",
            )
        send_ms.append((time.perf_counter() - t0) * 1000 / (hi - lo))
    recv_ms: list[float] = []
    received = 0
    for lo, hi in itertools.pairwise(bounds):
        t0 = time.perf_counter()
        empty = 0
        while received < hi and empty < 5:
            batch = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get(
                "Messages", []
            )
            if not batch:
                empty += 1
                continue
            sqs.delete_message_batch(
                QueueUrl=url,
                Entries=[{"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(batch)],
            )
            received += len(batch)
        recv_ms.append((time.perf_counter() - t0) * 1000 / max(1, hi - lo))
    sqs.delete_queue(QueueUrl=url)
    return [
        Decade(server, lo + 1, hi, s, r)
        for (lo, hi), s, r in zip(itertools.pairwise(bounds), send_ms, recv_ms, strict=True)
    ]


@contextmanager
def _log_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="bench-queue-") as tmp:
        yield Path(tmp)


def run_sqs(decades: tuple[int, ...], moto_max: int, progress: Progress) -> list[Decade]:
    out: list[Decade] = []
    with _log_dir() as tmp:
        moto_decades = tuple(d for d in decades if d <= moto_max)
        progress(f"SQS on moto's server, to {moto_decades[-1]:,} messages")
        with services.MotoServer(log_path=tmp / "moto.log") as moto:
            out += measure_queue("moto", moto.endpoint_url, moto_decades)
        progress(f"SQS on fauxqs in memory, to {decades[-1]:,} messages")
        with services.Fauxqs(log_path=tmp / "fauxqs.log") as fq:
            out += measure_queue("fauxqs (in memory)", fq.endpoint_url, decades)
        progress(f"SQS on fauxqs with a data dir (SQLite), to {decades[-1]:,} messages")
        with services.Fauxqs(data_dir=tmp / "queue", log_path=tmp / "fauxqs-durable.log") as fq:
            out += measure_queue("fauxqs (dataDir, SQLite)", fq.endpoint_url, decades)
    return out


# -- DynamoDB Local ---------------------------------------------------------------------------------


@contextmanager
def _fsync(on: bool) -> Iterator[None]:
    """NANOCMD_LOCAL_FSYNC=true while a server starts (it reads it then)."""
    before = os.environ.get("NANOCMD_LOCAL_FSYNC")
    if on:
        os.environ["NANOCMD_LOCAL_FSYNC"] = "true"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("NANOCMD_LOCAL_FSYNC", None)
        else:
            os.environ["NANOCMD_LOCAL_FSYNC"] = before


def measure_dynamodb(storage: str, jvm_args: tuple[str, ...], rounds: int, calls: int) -> DynamoDBRun:
    with _log_dir() as tmp, _fsync(storage == FSYNC):
        db_path = tmp / "db" if storage.startswith("-dbPath") else None
        ddb = services.DynamoDBLocal(log_path=tmp / "ddb.log", jvm_args=jvm_args, db_path=db_path)
        with ddb:
            result = DynamoDBRun(storage, " ".join(jvm_args) or "(none)", ddb.started_in or 0.0)
            client = _client("dynamodb", ddb.endpoint_url)
            client.create_table(
                TableName="bench",
                KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                BillingMode="PAY_PER_REQUEST",
            )
            for r in range(rounds + 1):  # round 0 warms the JVM and the client, not reported
                keys = [f"r{r}-{i}" for i in range(calls)]
                t0 = time.perf_counter()
                for k in keys:
                    client.put_item(
                        TableName="bench",
                        Item={"pk": {"S": k}, "v": {"S": "x" * 100}},
                        ConditionExpression="attribute_not_exists(pk)",
                    )
                t1 = time.perf_counter()
                for k in keys:
                    client.get_item(TableName="bench", Key={"pk": {"S": k}}, ConsistentRead=True)
                t2 = time.perf_counter()
                if r:
                    result.put_ms.append((t1 - t0) * 1000 / calls)
                    result.get_ms.append((t2 - t1) * 1000 / calls)
    return result


def run_dynamodb(rounds: int, calls: int, progress: Progress) -> list[DynamoDBRun]:
    out = []
    for storage in ("-inMemory", "-dbPath", FSYNC):
        for jvm in (services.DEFAULT_JVM_ARGS, ()):
            progress(f"DynamoDB Local {storage}, JVM flags {' '.join(jvm) or '(none)'}")
            out.append(measure_dynamodb(storage, jvm, rounds, calls))
    return out


#: ``-dbPath`` with the database's own fsync calls (``NANOCMD_LOCAL_FSYNC=true``); plain ``-dbPath``
#: rows run as ``make run`` does, with fsync skipped where libeatmydata is installed
FSYNC = "-dbPath, fsync"


# -- both ------------------------------------------------------------------------------------------


def run(*, quick: bool = False, progress: Progress = lambda _: None) -> QueueReport:
    decades = QUICK_DECADES if quick else DECADES
    moto_max = QUICK_MOTO_MAX if quick else MOTO_MAX
    sqs = run_sqs(decades, moto_max, progress)
    ddb = run_dynamodb(2 if quick else ROUNDS, CALLS, progress)
    return QueueReport(sqs, ddb, moto_max, quick)


def render(r: QueueReport) -> tuple[list[str], list[list[Any]], list[str]]:
    headers = ["server", "messages", "send ms/msg", "receive+delete ms/msg"]
    rows: list[list[Any]] = [
        [d.server, f"{d.first:,}-{d.last:,}", round(d.send_ms, 3), round(d.receive_delete_ms, 3)]
        for d in r.decades
    ]
    notes = [
        f"One fresh FIFO queue per server; messages sent one by one over {GROUPS} message groups, then"
        " received 10 at a time and each batch deleted; each row is the cost over that range only.",
        f"moto's server measured to {r.moto_max:,} messages only: its cost per message grows with the"
        " messages the queue has seen, so more would take minutes.",
        "fauxqs hands out one message per FIFO group per receive (SQS: up to 10); with 50 busy groups"
        " every receive is still a full batch.",
        "Client and servers share the machine's cores with whatever else runs: noisy, orders of magnitude.",
    ]
    return headers, rows, notes


def render_dynamodb(r: QueueReport) -> tuple[list[str], list[list[Any]], list[str]]:
    headers = ["storage", "JVM flags", "start s", "PutItem ms (best / median)", "GetItem ms (best / median)"]

    def fig(xs: list[float]) -> str:
        return f"{min(xs):.2f} / {statistics.median(xs):.2f}" if xs else "-"

    rows: list[list[Any]] = [
        [d.storage, d.jvm_flags, round(d.started_in_s, 2), fig(d.put_ms), fig(d.get_ms)] for d in r.dynamodb
    ]
    rounds = len(r.dynamodb[0].put_ms) if r.dynamodb else 0
    notes = [
        f"{CALLS} sequential conditional PutItems (attribute_not_exists) then {CALLS} consistent GetItems"
        f" per round, {rounds} rounds after a warm-up round; best and median round, ms per call"
        " (boto3's own cost included, about the same in every row).",
        "-dbPath runs as make run does: fsync skipped through libeatmydata"
        + ("" if services.no_fsync_env() else " (not installed here: these rows fsync too)")
        + "; '-dbPath, fsync' keeps DynamoDB Local's own flushes (NANOCMD_LOCAL_FSYNC=true).",
        "Noisy when other work uses the CPU: compare rows of one run, not runs.",
    ]
    return headers, rows, notes


def main() -> int:
    """``python -m bench.queue [--quick]``: both tables."""
    from bench import report

    quick = "--quick" in sys.argv[1:]
    result = run(quick=quick, progress=lambda m: print(f"  … {m}", file=sys.stderr, flush=True))
    info = report.machine()
    print(f"{info['cpu']}, {info['cores']} cores; load average {' '.join(map(str, info['load_average']))}")
    for title, rendered in (
        ("SQS: moto's server vs fauxqs", render(result)),
        ("DynamoDB Local: storage and JVM flags", render_dynamodb(result)),
    ):
        headers, rows, notes = rendered
        print(f"\n## {title}\n")
        print(report.table(headers, rows))
        for note in notes:
            print(note)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
