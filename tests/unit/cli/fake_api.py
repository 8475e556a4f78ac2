"""A small fake of the management API on loopback (canned answers per method and path, Basic auth
checked as the API checks it, every request recorded) and a runner for ``nanocmdctl`` in-process
with a clean environment, so the unit tests see what a user sees: stdout, stderr, exit status."""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from inspect import signature
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from click.testing import CliRunner

KEY = "unit-key"


@dataclass
class Seen:
    """One request the fake received."""

    method: str
    path: str
    query: list[tuple[str, str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def values(self, name: str) -> list[str]:
        return [v for k, v in self.query if k == name]


@dataclass
class Answer:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    delay: float = 0.0


@dataclass
class FakeAPI:
    """Answers are queued per (method, path): each request takes the next, the last one repeats."""

    url: str = ""
    routes: dict[tuple[str, str], list[Answer]] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)

    def on(
        self,
        method: str,
        path: str,
        doc: Any = None,
        status: int = 200,
        raw: bytes | None = None,
        content_type: str = "application/json",
        delay: float = 0.0,
    ) -> None:
        body = raw if raw is not None else (b"" if doc is None else json.dumps(doc).encode() + b"\n")
        self.routes.setdefault((method, path), []).append(Answer(status, body, content_type, delay))

    def requests(self, method: str, path: str) -> list[Seen]:
        return [s for s in self.seen if (s.method, s.path) == (method, path)]

    def answer(self, seen: Seen) -> Answer:
        self.seen.append(seen)
        expected = "Basic " + base64.b64encode(f"nanocmd:{KEY}".encode()).decode()
        if seen.path != "/version" and seen.headers.get("authorization") != expected:
            return Answer(401, b'{"error": "unauthorized"}\n')
        queue = self.routes.get((seen.method, seen.path))
        if not queue:
            return Answer(404, b'{"error": "not found"}\n')
        return queue.pop(0) if len(queue) > 1 else queue[0]


def handler(api: FakeAPI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _any(self) -> None:
            parts = urlsplit(self.path)
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            seen = Seen(
                self.command,
                unquote(parts.path),
                parse_qsl(parts.query, keep_blank_values=True),
                {k.lower(): v for k, v in self.headers.items()},
                body,
            )
            answer = api.answer(seen)
            time.sleep(answer.delay)
            self.send_response(answer.status)
            self.send_header("Content-Type", answer.content_type)
            self.send_header("Content-Length", str(len(answer.body)))
            self.end_headers()
            self.wfile.write(answer.body)

        do_GET = do_POST = do_PUT = do_DELETE = _any

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


def runner() -> CliRunner:
    """stderr apart from stdout (click 8.1 needs mix_stderr=False; 8.2 dropped it, always apart)."""
    apart: dict[str, Any] = {"mix_stderr": False} if "mix_stderr" in signature(CliRunner).parameters else {}
    return CliRunner(**apart)


def instance_doc(done: bool = False, **counts: int) -> dict[str, Any]:
    """An instance as GET /v1/instance/<id> answers it."""
    base = {"pending": 0, "started": 0, "skipped": 0, "failed": 0, "in_flight": 0, "completed": 0,
            "timed_out": 0, "cancelled": 0, "errored": 0}  # fmt: skip
    return {
        "instance_id": "inst-1",
        "workflow": "io.micromdm.wf.inventory.v1",
        "started_at": "2026-12-01T09:00:00Z",
        "started_by": "api",
        "context": None,
        "requested": 3,
        "counts": {**base, **counts},
        "done": done,
    }
