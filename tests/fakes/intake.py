"""The webhook intake as a function of webhook bodies: what it would put on the events queue."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from nanocmd_core.webhook.intake import accept_webhook


class _CapturingQueue:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str, dict[str, str]]] = []

    def send(self, body: str, group_id: str, dedup_id: str, attributes: dict[str, str]) -> None:
        self.sent.append((group_id, body, attributes))


def through_intake(webhooks: Iterable[bytes]) -> list[tuple[str, str, dict[str, str]]]:
    """(message group id, body, message attributes) of each webhook as the webhook intake puts
    it on the events queue."""
    queue = _CapturingQueue()
    for body in webhooks:
        reply = accept_webhook(body, {}, queue=queue, hmac_key="", blobs=None, received_at=datetime.now(UTC))
        if reply.status != 200:
            raise AssertionError(f"the intake refused a webhook: {reply.status} {reply.error}")
    return queue.sent
