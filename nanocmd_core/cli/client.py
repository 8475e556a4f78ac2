"""The HTTP client of ``nanocmdctl``: urllib3 (a dependency already), HTTP Basic as the API
expects (user ``nanocmd``, the API key as password), JSON in and out, and errors that say in one
line what went wrong (the API's own ``{"error": ...}`` text, a refused connection, a timeout, a
wrong key) so the command line never shows a traceback for them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

import urllib3
from urllib3.exceptions import HTTPError, MaxRetryError, NewConnectionError, ProtocolError, TimeoutError

API_USER = "nanocmd"
Query = Sequence[tuple[str, str]]


class ClientError(Exception):
    """A request that did not succeed; ``str()`` is the one line to show."""


class TransportError(ClientError):
    """No HTTP answer: refused connection, unknown host, timeout, TLS failure."""


class ApiError(ClientError):
    """The API answered 4xx or 5xx; ``message`` is its ``error`` text (or the start of the body)."""

    def __init__(self, status: int, message: str, document: Any = None) -> None:
        super().__init__(f"{message} (HTTP {status})")
        self.status = status
        self.message = message
        self.document = document


class Unauthorized(ApiError):
    """401: the key is wrong, or none was given."""


@dataclass(frozen=True)
class Reply:
    """A successful answer: status, headers (lower-case names) and the raw body."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body as JSON (None for an empty body); ApiError when the server sent something else."""
        if not self.body.strip():
            return None
        try:
            return json.loads(self.body)
        except ValueError as exc:
            raise ApiError(self.status, "the server's answer is not JSON") from exc


def segment(value: str) -> str:
    """A path parameter, percent-encoded (the API decodes it); '/' too, so it stays one segment."""
    return quote(value, safe="")


def _error_text(body: bytes) -> tuple[str, Any]:
    """The API's error text and its document; for a non-JSON body (a proxy's page) its first line."""
    try:
        doc = json.loads(body)
    except ValueError:
        doc = None
    if isinstance(doc, dict) and isinstance(doc.get("error"), str):
        return doc["error"], doc
    text = body.decode(errors="replace").strip().splitlines()
    return (text[0][:200] if text else "no error text"), doc


@dataclass
class Client:
    """One server. A connection error is retried twice (nothing was sent); a read error never
    is, so a start is not sent twice."""

    url: str
    api_key: str
    timeout: float = 30.0
    _pool: urllib3.PoolManager = field(init=False, repr=False)

    def __post_init__(self) -> None:
        retries = urllib3.Retry(total=2, connect=2, read=0, status=0, other=0, redirect=0, backoff_factor=0.2)
        self._pool = urllib3.PoolManager(retries=retries, timeout=urllib3.Timeout(total=self.timeout))

    def request(
        self,
        method: str,
        path: str,
        query: Query = (),
        body: bytes | None = None,
        content_type: str | None = None,
        auth: bool = True,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        """Send one request; raise ApiError for a 4xx/5xx answer, TransportError for none."""
        target = self.url + path + (("?" + urlencode(list(query))) if query else "")
        sent: dict[str, str] = {"Accept": "application/json", **(headers or {})}
        if auth:
            sent.update(urllib3.make_headers(basic_auth=f"{API_USER}:{self.api_key}"))
        if content_type:
            sent["Content-Type"] = content_type
        try:
            answer = self._pool.request(method, target, body=body, headers=sent, redirect=False)
        except MaxRetryError as exc:
            raise TransportError(self._describe(exc.reason)) from None
        except (HTTPError, OSError) as exc:
            raise TransportError(self._describe(exc)) from None
        reply = Reply(answer.status, {k.lower(): v for k, v in answer.headers.items()}, answer.data)
        if reply.status == 401:
            text, doc = _error_text(reply.body)
            hint = "the API key is wrong" if self.api_key else "no API key given (--api-key or $NANOCMD_API)"
            raise Unauthorized(401, f"{text}: {hint} for {self.url}", doc)
        if reply.status >= 400:
            text, doc = _error_text(reply.body)
            raise ApiError(reply.status, text, doc)
        if 300 <= reply.status < 400:
            where = reply.headers.get("location", "?")
            raise ApiError(reply.status, f"redirected to {where}: is the URL right? ({self.url})")
        return reply

    def get(self, path: str, query: Query = ()) -> Any:
        """GET and decode the JSON answer."""
        return self.request("GET", path, query).json()

    def _describe(self, exc: BaseException | None) -> str:
        """One line for an exception of urllib3 or the socket layer."""
        if isinstance(exc, NewConnectionError):  # first: urllib3 2 makes it a ConnectTimeoutError too
            cause = str(exc).rpartition("] ")[2].rstrip(")") or "refused"
            if "resolve" in str(exc):
                return f"cannot connect to {self.url}: unknown host ({cause})"
            return f"cannot connect to {self.url}: {cause} (is the server running?)"
        if isinstance(exc, TimeoutError):
            return f"no answer from {self.url} within {self.timeout:g} s (timed out)"
        if isinstance(exc, ProtocolError):
            return f"connection to {self.url} broken: {exc.args[0] if exc.args else exc}"
        return f"request to {self.url} failed: {exc}"
