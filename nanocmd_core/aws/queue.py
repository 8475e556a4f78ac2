"""The events queue (SQS FIFO): the webhook intake's only dependency besides the blob store."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol

from nanocmd_core.aws.clients import LazyClient


class EventQueue(Protocol):
    def send(self, body: str, group_id: str, dedup_id: str, attributes: dict[str, str]) -> None: ...


class QueuedMessage(NamedTuple):
    body: str
    group_id: str
    dedup_id: str


class MessageQueue(Protocol):
    """What an asynchronous start needs: messages out, ten to a request."""

    def send_batch(self, messages: Sequence[QueuedMessage]) -> None: ...


class SQSEventQueue:
    """FIFO: the message group is the enrollment id, so one device's events are processed in
    order while devices run in parallel; the dedup id collapses duplicate webhook deliveries."""

    client = LazyClient("sqs")

    def __init__(self, queue_url: str, client: Any = None) -> None:
        self.queue_url = queue_url
        self._client = client

    def send(self, body: str, group_id: str, dedup_id: str, attributes: dict[str, str]) -> None:
        self.client.send_message(
            QueueUrl=self.queue_url,
            MessageBody=body,
            MessageGroupId=group_id[:128],
            MessageDeduplicationId=dedup_id[:128],
            MessageAttributes={k: {"DataType": "String", "StringValue": v} for k, v in attributes.items()},
        )

    def visible_now(self, receipt_handle: str) -> None:
        """A received message due again at once, not after the queue's visibility timeout."""
        self.client.change_message_visibility(
            QueueUrl=self.queue_url, ReceiptHandle=receipt_handle, VisibilityTimeout=0
        )

    def send_batch(self, messages: Sequence[QueuedMessage]) -> None:
        """SendMessageBatch, 10 a request; entries SQS did not take are sent again (a few times),
        then the send fails: the caller has answered nothing yet, so nothing is lost silently."""
        for start in range(0, len(messages), 10):
            entries = [
                {
                    "Id": str(n),
                    "MessageBody": m.body,
                    "MessageGroupId": m.group_id[:128],
                    "MessageDeduplicationId": m.dedup_id[:128],
                }
                for n, m in enumerate(messages[start : start + 10])
            ]
            for _ in range(5):
                reply = self.client.send_message_batch(QueueUrl=self.queue_url, Entries=entries)
                failed = {f["Id"] for f in reply.get("Failed") or []}
                entries = [e for e in entries if e["Id"] in failed]
                if not entries:
                    break
            if entries:
                raise RuntimeError(f"SQS refused {len(entries)} messages of a batch")
