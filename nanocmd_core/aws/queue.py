"""The events queue (SQS FIFO): the webhook intake's only dependency besides the blob store."""

from __future__ import annotations

from typing import Any, Protocol


class EventQueue(Protocol):
    def send(self, body: str, group_id: str, dedup_id: str, attributes: dict[str, str]) -> None: ...


class SQSEventQueue:
    """FIFO: the message group is the enrollment id, so one device's events are processed in
    order while devices run in parallel; the dedup id collapses duplicate webhook deliveries."""

    def __init__(self, queue_url: str, client: Any = None) -> None:
        if client is None:
            from nanocmd_core.aws.clients import aws_client

            client = aws_client("sqs")
        self.queue_url = queue_url
        self.client = client

    def send(self, body: str, group_id: str, dedup_id: str, attributes: dict[str, str]) -> None:
        self.client.send_message(
            QueueUrl=self.queue_url,
            MessageBody=body,
            MessageGroupId=group_id[:128],
            MessageDeduplicationId=dedup_id[:128],
            MessageAttributes={k: {"DataType": "String", "StringValue": v} for k, v in attributes.items()},
        )
