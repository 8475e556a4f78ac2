"""One AWS client per service and endpoint per process, all from boto3's default session.

Why: a botocore session loads each service model and the endpoint rules once; pynamodb on its own
builds a session and a client per model class (about 100 ms of CPU each, paid on the first event a
cold Lambda handles, for every model the event touches). All the table's models share the
DynamoDB client made here instead (``storage/models.py``).

The fixed user agent is for speed too: without one, botocore rebuilds the user-agent string on
every request (about a tenth of a DynamoDB call's CPU).

boto3 is imported with this module, not on the first call: every function's first invocation makes
a client, so the import belongs to the init phase (in the snapshot under SnapStart), not to the
first request's latency.
"""

from __future__ import annotations

import os
import platform
import threading
from typing import Any

import boto3
import botocore
from botocore.config import Config

from nanocmd_core import __version__

_LOCK = threading.Lock()
_CLIENTS: dict[tuple[str, ...], Any] = {}

# DynamoDB: retries as pynamodb's default (1 + 3 attempts, standard mode); our timeouts; a pool big
# enough for the store's fan-out threads, since every model shares this one client.
_DYNAMODB = {
    "connect_timeout": 5,
    "read_timeout": 10,
    "retries": {"total_max_attempts": 4, "mode": "standard"},
    "max_pool_connections": 32,
    # pynamodb builds its requests itself; DynamoDB validates them again anyway
    "parameter_validation": False,
}
_PER_SERVICE: dict[str, dict[str, Any]] = {"dynamodb": _DYNAMODB}


def user_agent() -> str:
    python = platform.python_version()
    return f"nanocmd-serverless/{__version__} botocore/{botocore.__version__} Python/{python}"


def _key(service: str) -> tuple[str, ...]:
    # the endpoint and region come from the environment when the client is made: a process that
    # changes them (tests, the local stack) gets a new client, never one pointing elsewhere
    env = os.environ
    endpoint = env.get(f"AWS_ENDPOINT_URL_{service.upper()}") or env.get("AWS_ENDPOINT_URL") or ""
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or ""
    return (service, endpoint, region)


def aws_client(service: str) -> Any:
    """The process's client for ``service`` (thread-safe; botocore clients are)."""
    key = _key(service)
    client = _CLIENTS.get(key)
    if client is None:
        with _LOCK:  # boto3's default session is not safe to build clients from concurrently
            client = _CLIENTS.get(key)
            if client is None:
                config = Config(user_agent=user_agent(), **_PER_SERVICE.get(service, {}))
                client = boto3.client(service, config=config)  # type: ignore[call-overload]
                _CLIENTS[key] = client
    return client


def fresh_connections() -> None:
    """Close every cached client's pooled HTTP connections; each opens new ones on its next call.
    After a SnapStart restore a connection made before the snapshot would be stale (its peer
    long gone); the clients themselves, their models and credentials providers, stay valid."""
    with _LOCK:
        clients = list(_CLIENTS.values())
    for client in clients:
        session = getattr(getattr(client, "_endpoint", None), "http_session", None)
        if session is not None:
            session.close()


class LazyClient:
    """A ``client`` attribute made on first use from the process's cached clients (unless one was
    given): a cold invocation pays only for the clients it calls. The instance keeps it in
    ``_client``."""

    def __init__(self, service: str) -> None:
        self.service = service

    def __get__(self, owner: Any, owner_type: type | None = None) -> Any:
        if owner is None:
            return self
        if owner._client is None:
            owner._client = aws_client(self.service)
        return owner._client
