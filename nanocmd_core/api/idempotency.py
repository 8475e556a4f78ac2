"""``Idempotency-Key`` on starts (issue 12): a start repeated with the same key within 24 h gets
the first start's answer and starts nothing again. Powertools' idempotency utility keeps the
records in the engine's table (``IDEMPOTENCY#start`` / the key's hash, TTL ``ttl``).

Only answers of 2xx are kept: a refused or failed start may be retried under the same key. The
same key with another request (workflow, ids or context) is a 422; a repeat while the first is
still running is a 409.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from functools import cache
from typing import Any

from nanocmd_core.aws.clients import aws_client

KEY_TTL = 86_400
MAX_KEY = 256


class NotKept(Exception):
    """An answer that is not kept for the key (not 2xx): raised through the utility, unwrapped."""

    def __init__(self, answer: tuple[int, dict[str, Any]]) -> None:
        super().__init__(answer[0])
        self.answer = answer


class IdempotencyConflict(Exception):
    """409 (in progress) or 422 (the key names another request); ``status`` and the message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@cache
def _guarded(table_name: str) -> tuple[Callable[..., Any], Any]:
    from aws_lambda_powertools.utilities.idempotency import (
        DynamoDBPersistenceLayer,
        IdempotencyConfig,
        idempotent_function,
    )

    store = DynamoDBPersistenceLayer(
        table_name=table_name,
        key_attr="pk",
        sort_key_attr="sk",
        static_pk_value="IDEMPOTENCY#start",
        expiry_attr="ttl",
        boto3_client=aws_client("dynamodb"),
    )
    config = IdempotencyConfig(
        event_key_jmespath="key", payload_validation_jmespath="fingerprint", expires_after_seconds=KEY_TTL
    )

    @idempotent_function(data_keyword_argument="request", persistence_store=store, config=config)  # type: ignore[untyped-decorator]
    def run(request: dict[str, Any], start: Callable[[], tuple[int, dict[str, Any]]]) -> dict[str, Any]:
        status, body = start()
        if not 200 <= status < 300:
            raise NotKept((status, body))
        return {"status": status, "body": body}

    guarded: Callable[..., Any] = run
    return guarded, config


def idempotent_start(
    table_name: str,
    key: str,
    workflow: str,
    ids: list[str],
    context: bytes,
    start: Callable[[], tuple[int, dict[str, Any]]],
    lambda_context: Any = None,
) -> tuple[int, dict[str, Any]]:
    """``start()`` once per key; the first 2xx answer for any later call with the key. With the
    invocation's ``lambda_context``, a start that died mid-way frees its key when the
    invocation's time is up (else one that never answered would hold it for 24 h)."""
    from aws_lambda_powertools.utilities.idempotency.exceptions import (
        IdempotencyAlreadyInProgressError,
        IdempotencyValidationError,
    )

    if len(key) > MAX_KEY:
        raise IdempotencyConflict(400, f"Idempotency-Key longer than {MAX_KEY} characters")
    digest = hashlib.sha256(
        json.dumps([workflow, ids, context.decode(errors="replace")]).encode()
    ).hexdigest()
    request = {"key": key, "fingerprint": digest}
    guarded, config = _guarded(table_name)
    if lambda_context is not None:
        config.register_lambda_context(lambda_context)
    try:
        kept = guarded(request=request, start=start)
    except NotKept as exc:
        return exc.answer
    except IdempotencyAlreadyInProgressError as exc:
        raise IdempotencyConflict(409, "a start with this Idempotency-Key is still running") from exc
    except IdempotencyValidationError as exc:
        raise IdempotencyConflict(422, "Idempotency-Key already used for another start") from exc
    return int(kept["status"]), dict(kept["body"])
