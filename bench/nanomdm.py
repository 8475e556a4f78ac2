"""What the fleet and burst benchmarks need around the stack (which runs as ``make run`` does, see
:mod:`infra.local.stack_process`): the NanoMDM-shaped enqueue/push server in this process
(``tests/fakes/mdm_server.py``'s :class:`FakeMDMServer`, whose ``on_push`` lets simulated devices
"connect" when their push arrives), and a NanoMDM-shaped webhook sender with keep-alive connections.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import math
import os
import socket
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from infra.local.stack_process import StackProcess
from tests.fakes.mdm_server import FakeMDMServer

API_USER = "nanocmd"
INVENTORY = "io.micromdm.wf.inventory.v1"


# --- HTTP with keep-alive ---------------------------------------------------------------------


class KeepAlive:
    """One keep-alive HTTP/1.1 connection per thread to one base URL (``http.client``: no pool
    to wait on, no per-request connection set-up, like NanoMDM's Go client)."""

    def __init__(self, base_url: str, timeout: float = 60.0) -> None:
        parts = urlsplit(base_url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.timeout = timeout
        self._local = threading.local()

    def _conn(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            conn.connect()
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._local.conn = conn
        return conn

    _opening = threading.Lock()

    def connect(self, probe: str = "/version") -> None:
        """Open this thread's connection now, before timing starts, and prove it with a GET of
        ``probe``. One thread at a time: the local gateway listens with Python's default backlog
        of 5, and a burst of connects overflows it (dropped SYNs retried after 1 s, resets)."""
        with KeepAlive._opening:
            self.request("GET", probe)

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: Mapping[str, str] | None = None
    ) -> tuple[int, bytes]:
        for attempt in (1, 2):
            conn = self._conn()
            try:
                conn.request(method, path, body=body, headers=dict(headers or {}))
                reply = conn.getresponse()
                data = reply.read()
                if reply.will_close:
                    self.close()
                return reply.status, data
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                # the server closed an idle keep-alive connection: one more try on a new one
                self.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


def basic_auth(user: str, key: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{key}".encode()).decode()


class WebhookSender:
    """POSTs webhook bodies to ``/webhook`` as NanoMDM does (JSON, ``X-Hmac-Signature`` when a key
    is set), timing each one; thread-safe, one keep-alive connection per calling thread."""

    def __init__(self, base_url: str, hmac_key: str = "") -> None:
        self.http = KeepAlive(base_url)
        self.hmac_key = hmac_key.encode()
        self._lock = threading.Lock()
        self.latencies: list[float] = []  # seconds, in completion order
        self.statuses: dict[int, int] = {}  # 0: no answer (see ``failures``)
        self.failures: dict[str, int] = {}  # why there was no answer

    def post(self, body: bytes) -> tuple[int, float]:
        headers = {"Content-Type": "application/json"}
        if self.hmac_key:
            digest = hmac.new(self.hmac_key, body, hashlib.sha256).digest()
            headers["X-Hmac-Signature"] = base64.b64encode(digest).decode()
        t0 = time.perf_counter()
        failure = ""
        try:
            status, _ = self.http.request("POST", "/webhook", body, headers)
        except (OSError, http.client.HTTPException) as exc:
            status, failure = 0, f"{type(exc).__name__}: {exc}"  # no answer at all
            self.http.close()
        elapsed = time.perf_counter() - t0
        with self._lock:
            self.latencies.append(elapsed)
            self.statuses[status] = self.statuses.get(status, 0) + 1
            if failure:
                self.failures[failure] = self.failures.get(failure, 0) + 1
        return status, elapsed


# --- the stack ---------------------------------------------------------------------------------


def stack_settings(mdm: FakeMDMServer, api_key: str, hmac_key: str) -> dict[str, str]:
    """The stack's settings for a benchmark; the local stack's own knobs (``NANOCMD_LOCAL_*``:
    consumers, gateway processes, JVM flags...) pass through from this process's environment, so
    variants can be compared without editing code (StackProcess drops every other NANOCMD_*)."""
    local = {k: v for k, v in os.environ.items() if k.startswith("NANOCMD_LOCAL_")}
    return {
        **local,
        "NANOCMD_API": api_key,
        "NANOCMD_ENQUEUE_URL": mdm.enqueue_url,
        "NANOCMD_PUSH_URL": mdm.push_url,
        "NANOCMD_ENQUEUE_API": mdm.api_key,
        "NANOCMD_WEBHOOK_HMAC_KEY": hmac_key,
        "NANOCMD_WORKER_INTERVAL": "0",  # no sweeper: no re-pushes or timeouts during the run
    }


@contextmanager
def bench_stack(api_key: str, hmac_key: str) -> Iterator[tuple[FakeMDMServer, StackProcess]]:
    """The fake NanoMDM and, pointed at it, the stack as ``make run`` runs it (a process of its
    own, durable in a private data directory removed afterwards)."""
    with (
        tempfile.TemporaryDirectory(prefix="nanocmd-bench-") as data,
        FakeMDMServer() as mdm,
        StackProcess(stack_settings(mdm, api_key, hmac_key), data_dir=Path(data)) as stack,
    ):
        yield mdm, stack


# --- the admin side ---------------------------------------------------------------------------


class Admin:
    """The API calls the benchmarks make (basic auth user ``nanocmd``)."""

    def __init__(self, base_url: str, api_key: str) -> None:
        self.http = KeepAlive(base_url)
        self.headers = {"Authorization": basic_auth(API_USER, api_key)}

    def start(self, workflow: str, ids: Sequence[str]) -> tuple[int, Any]:
        query = "&".join(f"id={quote(i, safe='')}" for i in ids)
        status, data = self.http.request("POST", f"/v1/workflow/{workflow}/start?{query}", b"", self.headers)
        return status, _json(data)

    def inventory(self, ids: Sequence[str]) -> dict[str, Any]:
        query = "&".join(f"id={quote(i, safe='')}" for i in ids)
        status, data = self.http.request("GET", f"/v1/inventory?{query}", None, self.headers)
        if status != 200:
            raise RuntimeError(f"GET /v1/inventory answered {status}: {data[:200]!r}")
        return dict(_json(data) or {})


def _json(data: bytes) -> Any:
    try:
        return json.loads(data) if data else None
    except ValueError:
        return data.decode(errors="replace")


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), nearest rank; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(q / 100 * len(ordered))))
    return ordered[rank - 1]
