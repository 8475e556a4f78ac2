"""A fake NanoMDM (or MicroMDM) enqueue/push API: a real HTTP server on 127.0.0.1 in a thread.

It answers the way the real servers do (sources: micromdm/nanomdm ``http/api/api.go``, ``api/api.go``,
``api/types.go``, ``storage/kv/queue.go``; micromdm/micromdm ``platform/command/new_command.go``,
``platform/apns/push.go``, ``pkg/httputil/httputil.go``), records every request, and can be told to
fail. Use it as a context manager::

    with FakeMDMServer() as mdm:
        client = HTTPMDMServerClient(mdm.enqueue_url, mdm.push_url, mdm.api_key)
        ...
        assert mdm.commands_for("DEVICE-1")[0]["Command"]["RequestType"] == "ProfileList"

NanoMDM mode (default):

- ``<any method> /v1/enqueue/<ids>``: the raw plist body is enqueued to every id. NanoMDM does not check
  the method; an empty body means "push only" (which is how the Go client's later chunks lost their
  command, GAP-10). ``?nopush=1`` disables the push. A CommandUUID the server already holds is
  refused with 500 ``{"command_error": "command already exists: <uuid>"}``, whatever the ids.
- ``<any method> /v1/push/<ids>``: a push result per id.
- The ids are the path after the prefix, **decoded, then split on ","**, as NanoMDM's ``PathIDGetter``
  does; so an escaped comma (``%2C``) still splits an id in two.
- Answers are NanoMDM's ``APIResult`` JSON; status 200 (no error), 207 (some ids failed), 500 (every
  id failed, or a top-level error). Push failures count, as in NanoMDM's ``code()``.
- Basic auth user ``nanomdm``; anything else: 401 ``Unauthorized``.

MicroMDM mode (``micromdm=True``):

- ``POST`` (or ``PUT``) ``/v1/commands/<udid>``: raw plist for one device; 201 ``{"payload": {...}}``.
  MicroMDM keeps no record of CommandUUIDs, so no already-exists check.
- ``GET /push/<udid>`` (and ``POST /v1/push/<udid>``): 200 ``{"status": "success", ...}``.
- Errors are 500 ``{"error": "..."}``; an id containing ``/`` (after decoding) matches no route: 404.
- Basic auth user ``micromdm``.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import plistlib
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar, cast
from urllib.parse import parse_qs, unquote, urlsplit

T = TypeVar("T")

NANOMDM_ENQUEUE_PREFIX = "/v1/enqueue/"
NANOMDM_PUSH_PREFIX = "/v1/push/"
MICROMDM_ENQUEUE_PREFIX = "/v1/commands/"
MICROMDM_PUSH_PREFIX = "/push/"
MICROMDM_PUSH_V1_PREFIX = "/v1/push/"


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the fake saw it, and what it answered."""

    method: str
    path: str  # raw path as sent (percent-escapes intact), without the query
    query: str
    kind: str  # "enqueue", "push" or "other" (unrouted)
    ids: list[str]  # decoded ids the way the real server derives them
    body: bytes
    headers: dict[str, str]  # header names lower-cased
    auth_ok: bool
    command: dict[str, Any] | None  # the decoded command plist, if the body was one
    command_uuid: str | None
    request_type: str | None
    status: int  # HTTP status answered (0: connection dropped without an answer)
    response: bytes
    queued_ids: list[str] = field(default_factory=list)  # ids that got the command queued
    pushed_ids: list[str] = field(default_factory=list)  # ids a push was sent to (successfully)

    @property
    def json(self) -> Any:
        """The JSON answer, decoded."""
        return json.loads(self.response) if self.response else None


@dataclass
class _Failure:
    status: int
    body: bytes
    kind: str | None  # only requests of this kind; None: any
    remaining: int | None  # None: until heal()


@dataclass
class _Answer:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    queued_ids: list[str] = field(default_factory=list)
    pushed_ids: list[str] = field(default_factory=list)
    drop: bool = False  # close the connection instead of answering


def _json(status: int, doc: dict[str, Any]) -> _Answer:
    # NanoMDM indents with tabs and ends with a newline (json.Encoder); harmless to mimic
    return _Answer(status, (json.dumps(doc, indent="\t") + "\n").encode())


class FakeMDMServer:
    """NanoMDM-compatible (or MicroMDM-compatible) enqueue/push API on a random loopback port."""

    def __init__(self, *, api_key: str = "mdm-secret", micromdm: bool = False) -> None:
        self.api_key = api_key
        self.micromdm = micromdm
        self.user = "micromdm" if micromdm else "nanomdm"
        self.delay = 0.0  # seconds to wait before answering each request (client timeout tests)
        self.on_push: Callable[[list[str]], None] | None = None
        """Called (from a server thread, so quickly) with the ids each request pushed: simulated
        devices "connect" when their push arrives."""
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._queues: dict[str, list[dict[str, Any]]] = {}
        self._command_uuids: set[str] = set()
        self._failures: list[_Failure] = []
        self._drop_next = 0
        self._fail_command: dict[str, str] = {}
        self._fail_push: dict[str, str] = {}
        self._slow_ids: dict[str, float] = {}
        self._healed = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> FakeMDMServer:
        if self._server is not None:
            return self
        server = _Server(("127.0.0.1", 0), _Handler)
        server.fake = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-mdm", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None:
            return
        self._server = self._thread = None
        server.shutdown()
        server.close_connections()  # keep-alive connections would otherwise keep being served
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> FakeMDMServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- addresses ----------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("FakeMDMServer is not started")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def enqueue_url(self) -> str:
        return self.base_url + (MICROMDM_ENQUEUE_PREFIX if self.micromdm else NANOMDM_ENQUEUE_PREFIX)

    @property
    def push_url(self) -> str:
        return self.base_url + (MICROMDM_PUSH_PREFIX if self.micromdm else NANOMDM_PUSH_PREFIX)

    # --- what happened ------------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of every request received, in arrival order."""
        with self._lock:
            return list(self._requests)

    def enqueued(self) -> list[RecordedRequest]:
        """Every request to the enqueue endpoint (accepted or not)."""
        return [r for r in self.requests if r.kind == "enqueue"]

    def pushes(self) -> list[RecordedRequest]:
        """Every request to the push endpoint (accepted or not)."""
        return [r for r in self.requests if r.kind == "push"]

    def pushed_ids(self) -> list[str]:
        """Ids pushed successfully by the push endpoint, in order (repeats kept)."""
        return [i for r in self.pushes() for i in r.pushed_ids]

    def commands_for(self, enrollment_id: str) -> list[dict[str, Any]]:
        """Decoded command plists queued for that id, in order."""
        with self._lock:
            return [dict(c) for c in self._queues.get(enrollment_id, [])]

    def command_uuids_for(self, enrollment_id: str) -> list[str]:
        return [str(c.get("CommandUUID")) for c in self.commands_for(enrollment_id)]

    @property
    def command_uuids(self) -> set[str]:
        """CommandUUIDs the server holds (NanoMDM refuses to enqueue them again)."""
        with self._lock:
            return set(self._command_uuids)

    def wait_for(self, predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.02) -> T:
        """Poll ``predicate`` until it returns something truthy, and return that (e2e tests)."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() >= deadline:
                raise AssertionError(f"condition not met within {timeout}s; requests: {self._summary()}")
            time.sleep(interval)

    def reset(self) -> None:
        """Forget requests, queues, held UUIDs and failure settings."""
        with self._lock:
            self._requests.clear()
            self._queues.clear()
            self._command_uuids.clear()
        self.heal()

    # --- making it fail -----------------------------------------------------------------------

    def fail_next(
        self, n: int = 1, status: int = 500, body: bytes = b"injected failure\n", *, kind: str | None = None
    ) -> None:
        """The next ``n`` authenticated requests (of ``kind``, if given) get ``status`` and ``body``;
        nothing is stored."""
        with self._lock:
            self._failures.append(_Failure(status, body, kind, n))

    def fail_always(
        self, status: int = 500, body: bytes = b"injected failure\n", *, kind: str | None = None
    ) -> None:
        """Every authenticated request (of ``kind``, if given) fails until :meth:`heal`."""
        with self._lock:
            self._failures.append(_Failure(status, body, kind, None))

    def drop_response_next(self, n: int = 1) -> None:
        """Process the next ``n`` requests normally (commands are stored), then close the connection
        without answering: the sender cannot know whether its command arrived."""
        with self._lock:
            self._drop_next += n

    def fail_command_for(self, *ids: str, message: str = "injected enqueue error") -> None:
        """Enqueueing to these ids fails per id (NanoMDM ``status.<id>.command_error``)."""
        with self._lock:
            self._fail_command.update(dict.fromkeys(ids, message))

    def fail_push_for(self, *ids: str, message: str = "injected push error") -> None:
        """Pushing to these ids fails per id (NanoMDM ``status.<id>.push_error``)."""
        with self._lock:
            self._fail_push.update(dict.fromkeys(ids, message))

    def slow_for(self, *ids: str, seconds: float) -> None:
        """Requests naming any of these ids are answered ``seconds`` late (a slow or stuck device's
        server round-trip), or at :meth:`heal`; the others at once."""
        with self._lock:
            self._healed.clear()
            self._slow_ids.update(dict.fromkeys(ids, seconds))

    def heal(self) -> None:
        """Drop every failure setting."""
        with self._lock:
            self._failures.clear()
            self._drop_next = 0
            self._fail_command.clear()
            self._fail_push.clear()
            self._slow_ids.clear()
            self._healed.set()

    # --- request handling (called from server threads) -----------------------------------------

    def _summary(self) -> str:
        return ", ".join(f"{r.method} {r.path} -> {r.status}" for r in self.requests) or "none"

    def _handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> _Answer:
        if self.delay:
            time.sleep(self.delay)
        parts = urlsplit(target)
        path, query = parts.path, parts.query
        kind, ids, route_error = self._route(method, path)
        with self._lock:
            slow = max((self._slow_ids.get(i, 0.0) for i in ids), default=0.0)
        if slow:
            self._healed.wait(slow)
        auth_ok = self._auth_ok(headers.get("authorization", ""))
        command = _decode_plist(body)
        with self._lock:
            answer = self._answer(method, kind, ids, route_error, auth_ok, query, body, command)
            if answer.status and not answer.drop and self._drop_next and kind != "other" and auth_ok:
                self._drop_next -= 1
                answer.drop = True
            cmd = command if isinstance(command, dict) else None
            self._requests.append(
                RecordedRequest(
                    method=method,
                    path=path,
                    query=query,
                    kind=kind,
                    ids=ids,
                    body=body,
                    headers=headers,
                    auth_ok=auth_ok,
                    command=cmd,
                    command_uuid=_str_or_none(cmd.get("CommandUUID")) if cmd else None,
                    request_type=_request_type(cmd),
                    status=0 if answer.drop else answer.status,
                    response=b"" if answer.drop else answer.body,
                    queued_ids=answer.queued_ids,
                    pushed_ids=answer.pushed_ids,
                )
            )
        if answer.pushed_ids and not answer.drop and self.on_push is not None:
            self.on_push(list(answer.pushed_ids))
        return answer

    def _route(self, method: str, path: str) -> tuple[str, list[str], _Answer | None]:
        """(kind, ids, an answer if the route itself fails)."""
        not_found = _Answer(404, b"404 page not found\n", "text/plain; charset=utf-8")
        if not self.micromdm:
            for prefix, kind in ((NANOMDM_ENQUEUE_PREFIX, "enqueue"), (NANOMDM_PUSH_PREFIX, "push")):
                if path.startswith(prefix):
                    decoded = unquote(path[len(prefix) :])
                    return kind, (decoded.split(",") if decoded else []), None
            return "other", [], not_found
        routes = (
            (MICROMDM_ENQUEUE_PREFIX, "enqueue", {"POST", "PUT"}),
            (MICROMDM_PUSH_PREFIX, "push", {"GET"}),
            (MICROMDM_PUSH_V1_PREFIX, "push", {"POST"}),
        )
        for prefix, kind, methods in routes:
            if path.startswith(prefix):
                udid = unquote(path[len(prefix) :])
                if not udid or "/" in udid:
                    return "other", [], not_found
                if method not in methods:
                    return kind, [udid], _Answer(405, b"", "text/plain; charset=utf-8")
                return kind, [udid], None
        return "other", [], not_found

    def _auth_ok(self, header: str) -> bool:
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return user == self.user and password == self.api_key

    def _answer(
        self,
        method: str,
        kind: str,
        ids: list[str],
        route_error: _Answer | None,
        auth_ok: bool,
        query: str,
        body: bytes,
        command: Any,
    ) -> _Answer:
        """Decide the answer; caller holds the lock."""
        if route_error is not None:
            return route_error
        if not auth_ok:
            if self.micromdm:
                return _Answer(401, b"Authorization Required\n", "text/plain; charset=utf-8")
            return _Answer(
                401,
                b"Unauthorized\n",
                "text/plain; charset=utf-8",
                {"WWW-Authenticate": 'Basic realm="nanomdm"'},
            )
        for failure in self._failures:
            if failure.kind is None or failure.kind == kind:
                if failure.remaining is not None:
                    failure.remaining -= 1
                    if failure.remaining <= 0:
                        self._failures.remove(failure)
                return _Answer(failure.status, failure.body, "text/plain; charset=utf-8")
        if self.micromdm:
            return self._micromdm(kind, ids[0], body, command)
        nopush = parse_qs(query).get("nopush", [""])[0] != ""
        return self._nanomdm(kind, ids, body, command, nopush)

    def _nanomdm(self, kind: str, ids: list[str], body: bytes, command: Any, nopush: bool) -> _Answer:
        result: dict[str, Any] = {}
        per_id: dict[str, dict[str, str]] = {}
        queued: list[str] = []
        pushed: list[str] = []
        error_key = "command_error" if kind == "enqueue" else "push_error"
        if not ids:
            result[error_key] = "getting enrollment ids: empty path"
            return _json(500, result)
        decoded: dict[str, Any] | None = None
        if kind == "enqueue":
            if nopush:
                result["no_push"] = True
            if body:
                if not isinstance(command, dict):
                    result["command_error"] = "decoding command: plist: error parsing XML property list"
                    return _json(500, result)
                decoded = command
                uuid_value, request_type = _str_or_none(command.get("CommandUUID")), _request_type(command)
                if not uuid_value or not request_type:
                    result["command_error"] = "decoding command: invalid command"
                    return _json(500, result)
                result["command_uuid"], result["request_type"] = uuid_value, request_type
                if uuid_value in self._command_uuids:
                    result["command_error"] = f"command already exists: {uuid_value}"
                    return _json(500, result)
                self._command_uuids.add(uuid_value)
                for enrollment_id in ids:
                    if message := self._fail_command.get(enrollment_id):
                        per_id.setdefault(enrollment_id, {})["command_error"] = message
                    else:
                        self._queues.setdefault(enrollment_id, []).append(decoded)
                        queued.append(enrollment_id)
            elif nopush:
                result["command_error"] = "must enqueue or push"
                return _json(500, result)
        if not (kind == "enqueue" and nopush):
            for enrollment_id in ids:  # NanoMDM pushes to every id, even ones whose enqueue failed
                entry = per_id.setdefault(enrollment_id, {})
                if enrollment_id in self._fail_push:
                    entry["push_error"] = self._fail_push[enrollment_id]
                else:
                    entry["push_result"] = str(uuid.uuid4()).upper()
                    pushed.append(enrollment_id)
        if per_id:
            result["status"] = per_id
        errors = sum(1 for e in per_id.values() if "command_error" in e or "push_error" in e)
        status = 200 if errors == 0 else (207 if errors < len(ids) else 500)
        answer = _json(status, result)
        answer.queued_ids, answer.pushed_ids = queued, pushed
        return answer

    def _micromdm(self, kind: str, udid: str, body: bytes, command: Any) -> _Answer:
        if kind == "push":
            if udid in self._fail_push:
                return _json(500, {"error": self._fail_push[udid]})
            doc = {"status": "success", "push_notification_id": str(uuid.uuid4())}
            return _Answer(200, (json.dumps(doc) + "\n").encode(), "application/json", pushed_ids=[udid])
        if not isinstance(command, dict):
            return _json(500, {"error": "plist: error parsing XML property list"})
        uuid_value, request_type = _str_or_none(command.get("CommandUUID")), _request_type(command)
        if not uuid_value or not request_type:
            return _json(500, {"error": "request must contain UDID of the device"})  # MicroMDM's text
        if udid in self._fail_command:
            return _json(500, {"error": self._fail_command[udid]})
        self._command_uuids.add(uuid_value)
        self._queues.setdefault(udid, []).append(command)
        payload = {"udid": udid, "command_uuid": uuid_value, "command": {"request_type": request_type}}
        answer = _json(201, {"payload": payload})
        answer.queued_ids = [udid]
        return answer


def _decode_plist(body: bytes) -> Any:
    if not body:
        return None
    try:
        return plistlib.loads(body)
    except Exception:  # any undecodable body: the fake answers like the server does
        return None


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _request_type(command: dict[str, Any] | None) -> str | None:
    if not command:
        return None
    inner = command.get("Command")
    return _str_or_none(inner.get("RequestType")) if isinstance(inner, dict) else None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # the engine's concurrent enqueues connect at once
    fake: FakeMDMServer

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(address, handler)
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def track(self, conn: socket.socket, active: bool) -> None:
        with self._connections_lock:
            if active:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):  # already closed by the client
                conn.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the real servers: exercises the client's pool
    disable_nagle_algorithm = True  # small header and body writes would otherwise wait for delayed ACKs
    wbufsize = -1  # buffer the answer; handle_one_request flushes it in one go

    def setup(self) -> None:
        super().setup()
        self._srv().track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self._srv().track(self.connection, False)

    def _srv(self) -> _Server:
        return cast(_Server, self.server)

    def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
        pass

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _dispatch(self) -> None:
        body = self._read_body()
        headers = {k.lower(): v for k, v in self.headers.items()}
        answer = self._srv().fake._handle(self.command, self.path, headers, body)
        if answer.drop:
            self.close_connection = True
            return
        self.send_response(answer.status)
        self.send_header("Content-Type", answer.content_type)
        self.send_header("Content-Length", str(len(answer.body)))
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(answer.body)

    do_GET = do_PUT = do_POST = do_DELETE = do_PATCH = do_HEAD = _dispatch


def closed_port_url(path: str = "/v1/enqueue/") -> str:
    """A loopback URL nothing listens on: for transport-error tests."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}{path}"


def ids_of(requests: Iterable[RecordedRequest]) -> list[list[str]]:
    """The id list of each request: handy for asserting chunking."""
    return [r.ids for r in requests]
