"""In-process stand-ins for what is not measured: the MDM server, Lambda's context and event shapes."""

from __future__ import annotations

import hashlib
import plistlib
import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any

from nanocmd_core.mdmserver.client import ChunkResult


class InMemoryMDMClient:
    """An ``MDMServerClient`` that keeps what it is sent (NanoMDM-like: 30 ids a request): the
    benchmarks measure the engine and DynamoDB, not an HTTP round trip to NanoMDM."""

    max_ids_per_request = 30
    supports_multi_target = True

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.sent: list[tuple[list[str], bytes]] = []
        self.pushed: list[str] = []

    def enqueue(self, ids: Sequence[str], command_plist: bytes) -> ChunkResult:
        with self._lock:
            self.sent.append((list(ids), command_plist))
        return ChunkResult(ids=list(ids), ok=True, status=200, detail="", failed_ids=[])

    def push(self, ids: Sequence[str]) -> list[ChunkResult]:
        with self._lock:
            self.pushed += ids
        return [ChunkResult(ids=list(ids), ok=True, status=200, detail="", failed_ids=[])]

    def take_commands(self) -> dict[str, list[tuple[str, str]]]:
        """Id → [(sent command UUID, request type)] of everything sent since the last call."""
        with self._lock:
            sent, self.sent = self.sent, []
        by_id: dict[str, list[tuple[str, str]]] = {}
        for ids, body in sent:
            doc = plistlib.loads(body)
            entry = (str(doc["CommandUUID"]), str(doc["Command"]["RequestType"]))
            for i in ids:
                by_id.setdefault(i, []).append(entry)
        return by_id


def sqs_event(messages: Sequence[tuple[str, str, dict[str, str]]]) -> dict[str, Any]:
    """An SQS FIFO event as Lambda passes it, for (message group id, body, attributes) triples."""
    millis = str(int(time.time() * 1000))
    records = []
    for group, body, attributes in messages:
        records.append(
            {
                "messageId": str(uuid.uuid4()),
                "receiptHandle": "bench",
                "body": body,
                "attributes": {
                    "ApproximateReceiveCount": "1",
                    "SentTimestamp": millis,
                    "SenderId": "bench",
                    "ApproximateFirstReceiveTimestamp": millis,
                    "MessageGroupId": group,
                    "MessageDeduplicationId": hashlib.sha256(body.encode()).hexdigest(),
                    "SequenceNumber": "1",
                },
                "messageAttributes": {
                    name: {
                        "stringValue": value,
                        "stringListValues": [],
                        "binaryListValues": [],
                        "dataType": "String",
                    }
                    for name, value in attributes.items()
                },
                "md5OfBody": hashlib.md5(body.encode()).hexdigest(),
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:bench-events.fifo",
                "awsRegion": "us-east-1",
            }
        )
    return {"Records": records}
