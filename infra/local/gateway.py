"""A local API Gateway (REST API, Lambda proxy integration) in front of the in-process handlers.

Each HTTP request becomes the event API Gateway would send with BinaryMediaTypes ``*/*``, i.e.
payload format 1.0 with:

- ``body`` base64 and ``isBase64Encoded: true`` whenever there is a body (``null``/false without);
- ``headers`` (last value wins) beside ``multiValueHeaders`` (every value), names as the client sent;
- ``queryStringParameters`` / ``multiValueQueryStringParameters``, decoded, ``null`` when absent;
- ``path`` as received (REST APIs keep it percent-encoded), ``resource`` the matched route,
  ``pathParameters`` decoded (``null`` when the route has none);
- ``requestContext`` with requestId, stage, httpMethod, path (with the stage), resourcePath,
  identity.sourceIp and the timing fields.

Routes come from the template's ``Api`` events (falling back to the contract's ``/webhook``,
``/version``, ``/inventory``, ``/v1/{proxy+}``); any other path goes to the API function as
``/{proxy+}``, which answers 404, so unknown paths look the same locally and on AWS behind that
function. The reply is shaped back as API Gateway does: ``multiValueHeaders`` win over ``headers``
for the same name, a base64 body is decoded, and a malformed reply or a handler exception gives
502 ``{"message": "Internal server error"}``.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from infra.local.lambda_runtime import FunctionHost
from infra.local.services import ACCOUNT_ID
from infra.local.template import Template, api_events

log = logging.getLogger(__name__)

MAX_PAYLOAD = 10 * 1024 * 1024  # API Gateway's request payload limit
SLOW_REQUEST_MS = 1000  # requests slower than this are logged at INFO
DEFAULT_STAGE = "Prod"  # SAM's implicit API stage
API_ID = "local"
INTERNAL_ERROR = (502, [("Content-Type", "application/json")], b'{"message": "Internal server error"}')
_HOP_BY_HOP = frozenset({"content-length", "connection", "transfer-encoding", "keep-alive"})


@dataclass(frozen=True)
class Route:
    """One API Gateway resource + method bound to a function."""

    resource: str
    method: str  # GET, POST ... or ANY
    function: str  # logical id
    pattern: re.Pattern[str] = field(init=False, compare=False, repr=False)
    specificity: tuple[int, int, int] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        parts, greedy, params = [], 0, 0
        for seg in self.resource.strip("/").split("/") if self.resource != "/" else []:
            m = re.fullmatch(r"\{([A-Za-z0-9_]+)(\+?)\}", seg)
            if m and m.group(2):
                parts.append(f"(?P<{m.group(1)}>.+)")
                greedy += 1
            elif m:
                parts.append(f"(?P<{m.group(1)}>[^/]+)")
                params += 1
            else:
                parts.append(re.escape(seg))
        object.__setattr__(self, "pattern", re.compile("/" + "/".join(parts)))
        # literal beats {param} beats {proxy+}; then the longer resource; then a concrete method
        object.__setattr__(self, "specificity", (greedy, params, -len(self.resource.split("/"))))


DEFAULT_ROUTES: tuple[Route, ...] = (
    Route("/webhook", "ANY", "WebhookFunction"),
    Route("/version", "ANY", "ApiFunction"),
    Route("/inventory", "ANY", "ApiFunction"),
    Route("/v1/{proxy+}", "ANY", "ApiFunction"),
)
FALLBACK_FUNCTION = "ApiFunction"


def routes_from_template(template: Template | None) -> list[Route]:
    """The template's Api events as routes; the contract's routes when it declares none."""
    routes = [Route(path, method, fn) for path, method, fn in api_events(template)] if template else []
    return routes or list(DEFAULT_ROUTES)


@dataclass(frozen=True)
class Match:
    resource: str
    function: str
    path_parameters: dict[str, str] | None


class Router:
    """Picks the route API Gateway would: most specific resource first, a concrete method over ANY."""

    def __init__(self, routes: Iterable[Route], fallback_function: str = FALLBACK_FUNCTION) -> None:
        self.routes = sorted(routes, key=lambda r: (r.specificity, r.method == "ANY"))
        self.fallback_function = fallback_function

    def match(self, raw_path: str, method: str) -> Match:
        for route in self.routes:
            if route.method not in ("ANY", method):
                continue
            m = route.pattern.fullmatch(raw_path)
            if m:
                params = {k: unquote(v) for k, v in m.groupdict().items()}
                return Match(route.resource, route.function, params or None)
        if raw_path in ("", "/"):
            return Match("/", self.fallback_function, None)
        return Match("/{proxy+}", self.fallback_function, {"proxy": unquote(raw_path.lstrip("/"))})


def _group(pairs: Iterable[tuple[str, str]], fold_case: bool) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Single-value (last wins) and multi-value maps, keyed by the first spelling of each name."""
    spelling: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    for name, value in pairs:
        key = spelling.setdefault(name.lower() if fold_case else name, name)
        multi.setdefault(key, []).append(value)
    single = {k: v[-1] for k, v in multi.items()}
    return single, multi


def build_proxy_event(
    *,
    method: str,
    target: str,
    headers: Sequence[tuple[str, str]],
    body: bytes,
    source_ip: str,
    match: Match,
    stage: str = DEFAULT_STAGE,
    request_id: str | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """The API Gateway REST proxy event (payload 1.0, binary media types ``*/*``) for one request."""
    now = time.time() if now is None else now
    request_id = request_id or str(uuid.uuid4())
    parts = urlsplit(target)
    raw_path = parts.path or "/"
    query_pairs = parse_qsl(parts.query, keep_blank_values=True)
    single_q, multi_q = _group(query_pairs, fold_case=False)
    single_h, multi_h = _group(headers, fold_case=True)
    user_agent = next((v for k, v in headers if k.lower() == "user-agent"), None)
    host = next((v for k, v in headers if k.lower() == "host"), "localhost")
    return {
        "resource": match.resource,
        "path": raw_path,
        "httpMethod": method,
        "headers": single_h or None,
        "multiValueHeaders": multi_h or None,
        "queryStringParameters": single_q or None,
        "multiValueQueryStringParameters": multi_q or None,
        "pathParameters": match.path_parameters,
        "stageVariables": None,
        "requestContext": {
            "resourceId": "local",
            "resourcePath": match.resource,
            "httpMethod": method,
            "extendedRequestId": request_id,
            "requestTime": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "path": f"/{stage}{raw_path}",
            "accountId": ACCOUNT_ID,
            "protocol": "HTTP/1.1",
            "stage": stage,
            "domainPrefix": host.split(".", 1)[0],
            "requestTimeEpoch": int(now * 1000),
            "requestId": request_id,
            "identity": {
                "cognitoIdentityPoolId": None,
                "accountId": None,
                "cognitoIdentityId": None,
                "caller": None,
                "sourceIp": source_ip,
                "principalOrgId": None,
                "accessKey": None,
                "cognitoAuthenticationType": None,
                "cognitoAuthenticationProvider": None,
                "userArn": None,
                "userAgent": user_agent,
                "user": None,
            },
            "domainName": host,
            "apiId": API_ID,
        },
        "body": base64.b64encode(body).decode("ascii") if body else None,
        "isBase64Encoded": bool(body),
    }


class BadLambdaResponse(ValueError):
    """The handler's return value is not a valid proxy integration response."""


def proxy_response(result: Any) -> tuple[int, list[tuple[str, str]], bytes]:
    """Status, headers and body bytes from a handler's proxy response, as API Gateway reads it."""
    if not isinstance(result, dict):
        raise BadLambdaResponse(f"response is {type(result).__name__}, not an object")
    try:
        status = int(result.get("statusCode", 200))
    except (TypeError, ValueError) as exc:
        raise BadLambdaResponse(f"statusCode {result.get('statusCode')!r}") from exc
    headers = result.get("headers") or {}
    multi = result.get("multiValueHeaders") or {}
    if not isinstance(headers, dict) or not isinstance(multi, dict):
        raise BadLambdaResponse("headers / multiValueHeaders must be objects")
    merged: dict[str, list[str]] = {str(k): [str(v)] for k, v in headers.items()}
    for k, values in multi.items():
        if not isinstance(values, list):
            raise BadLambdaResponse(f"multiValueHeaders[{k!r}] must be a list")
        merged[str(k)] = [str(v) for v in values]  # multiValueHeaders win for the same name
    body = result.get("body")
    if body is None:
        data = b""
    elif not isinstance(body, str):
        raise BadLambdaResponse(f"body is {type(body).__name__}, not a string")
    elif result.get("isBase64Encoded"):
        try:
            data = base64.b64decode(body, validate=True)
        except binascii.Error as exc:
            raise BadLambdaResponse("isBase64Encoded body is not base64") from exc
    else:
        data = body.encode("utf-8")
    pairs = [(k, v) for k, vs in merged.items() if k.lower() not in _HOP_BY_HOP for v in vs]
    return status, pairs, data


class LocalGateway:
    """The HTTP server; :meth:`handle` is the request-to-reply logic, usable without a socket."""

    def __init__(
        self,
        functions: FunctionHost,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        routes: Iterable[Route] = DEFAULT_ROUTES,
        fallback_function: str = FALLBACK_FUNCTION,
        stage: str = DEFAULT_STAGE,
        reuse_port: bool = False,
    ) -> None:
        """``reuse_port``: several gateways (processes) share the port, the kernel spreading the
        connections over them (see :mod:`infra.local.gateway_pool`)."""
        self.functions = functions
        self.router = Router(routes, fallback_function)
        self.stage = stage
        self.reuse_port = reuse_port
        self._bind = (host, port)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        if self._server is None:
            return self._bind
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    @property
    def base_url(self) -> str:
        host, port = self.address
        return f"http://{host}:{port}"

    def handle(
        self, method: str, target: str, headers: Sequence[tuple[str, str]], body: bytes, source_ip: str
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        path = urlsplit(target).path or "/"
        match = self.router.match(path, method)
        request_id = str(uuid.uuid4())
        event = build_proxy_event(
            method=method,
            target=target,
            headers=headers,
            body=body,
            source_ip=source_ip,
            match=match,
            stage=self.stage,
            request_id=request_id,
        )
        try:
            result = self.functions.invoke(match.function, event)
            status, out_headers, data = proxy_response(result)
        except BadLambdaResponse as exc:
            log.error("%s %s: malformed Lambda proxy response: %s", method, path, exc)
            status, out_headers, data = INTERNAL_ERROR
        except Exception:
            log.exception("%s %s: %s raised", method, path, match.function)
            status, out_headers, data = INTERNAL_ERROR
        out_headers = [*out_headers, ("x-amzn-RequestId", request_id)]
        return status, out_headers, data

    def start(self) -> None:
        """Serve on a daemon thread; returns once the socket is bound."""
        if self._server is not None:
            return
        gateway = self

        class Handler(_RequestHandler):
            pass

        Handler.gateway = gateway
        self._server = (_SharedPortServer if self.reuse_port else _Server)(self._bind, Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="local-gateway",
            daemon=True,
        )
        self._thread.start()
        log.info("gateway listening on %s", self.base_url)

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # a fleet connects at once: Python's default backlog of 5 resets the sixth concurrent connect
    request_queue_size = 1024


class _SharedPortServer(_Server):
    allow_reuse_port = True


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "nanocmd-local-gateway"
    gateway: LocalGateway

    def _read_body(self) -> bytes | None:
        """The request body (Content-Length or chunked); None when it is over API Gateway's limit."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks, total = [], 0
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                total += size
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            data = b"".join(chunks)
            return None if total > MAX_PAYLOAD else data
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_PAYLOAD:
            return None
        return self.rfile.read(length) if length else b""

    def _dispatch(self) -> None:
        t0 = time.monotonic()
        body = self._read_body()
        if body is None:
            status, headers, data = (
                413,
                [("Content-Type", "application/json")],
                b'{"message":"Request Too Long"}',
            )
            self.close_connection = True
        else:
            status, headers, data = self.gateway.handle(
                self.command, self.path, list(self.headers.items()), body, self.client_address[0]
            )
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD" and data:
            self.wfile.write(data)
        # a line per request only on demand (LOG_LEVEL=DEBUG) or when slow: a fleet's webhooks
        # would otherwise serialize the gateway's threads on the log handler's lock
        elapsed = (time.monotonic() - t0) * 1000
        level = logging.INFO if elapsed >= SLOW_REQUEST_MS else logging.DEBUG
        log.log(level, "%s %s -> %d (%.0f ms)", self.command, self.path, status, elapsed)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _dispatch

    def send_response(self, code: int, message: str | None = None) -> None:
        # the default adds Server and Date; keep Date only, like API Gateway
        self.log_request(code)
        self.send_response_only(code, message)
        self.send_header("Date", formatdate(usegmt=True))

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s - " + format, self.client_address[0], *args)
