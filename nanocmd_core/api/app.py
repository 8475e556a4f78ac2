"""The management API (api.md), a drop-in for the Go NanoCMD's, on a Powertools REST resolver.

Deliberate changes (design.md §6): errors are JSON ``{"error": ...}`` with 4xx codes where the
client is at fault (unknown workflow 404, all ids busy 409, bad input 400), the MDM server
refusing a start's commands is 502, a partial start lists the skipped ids beside
``instance_id``, and inventory is served at ``/v1/inventory`` and ``/inventory``.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError

from nanocmd_core.config import Settings
from nanocmd_core.engine.engine import (
    AlreadyStartedError,
    InvalidIDsError,
    NoSuchWorkflowError,
    StartError,
)
from nanocmd_core.engine.subscriptions import SubscriptionError, parse_subscription

logger = Logger(child=True)

API_USER = "nanocmd"
ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]

# (path pattern, methods) of every route, for 405/OPTIONS answers with an Allow header (API-2)
ROUTES: list[tuple[re.Pattern[str], list[str]]] = [
    (re.compile(r"^/v1/workflow/[^/]+/start$"), ["POST"]),
    (re.compile(r"^/v1/event/[^/]+$"), ["GET", "HEAD", "PUT", "DELETE"]),
    (re.compile(r"^/v1/events$"), ["GET", "HEAD"]),
    (re.compile(r"^/v1/inventory$"), ["GET", "HEAD"]),
    (re.compile(r"^/inventory$"), ["GET", "HEAD"]),
]


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> Response[str]:
    return Response(
        status_code=status,
        content_type=content_types.APPLICATION_JSON,
        body=json.dumps(body) + "\n",
        headers=headers,
    )


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response[str]:
    return json_response(status, {"error": message}, headers)


def basic_auth_ok(authorization: str, api_key: str) -> bool:
    """HTTP Basic with user ``nanocmd`` and the API key, compared in constant time (API-1)."""
    scheme, _, encoded = authorization.partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        user, sep, password = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return False
    user_ok = hmac.compare_digest(user.encode(), API_USER.encode())
    password_ok = hmac.compare_digest(password.encode(), api_key.encode())
    return bool(sep) and user_ok and password_ok


def create_api(settings: Settings, services: Callable[[], Any]) -> APIGatewayRestResolver:
    """``services()`` returns the wiring.App, built on first use so /version stays cheap."""
    api = APIGatewayRestResolver()

    def query_values(name: str) -> list[str]:
        multi = api.current_event.multi_value_query_string_parameters or {}
        return list(multi.get(name) or [])

    def protected(handler: Callable[..., Response[str]]) -> Callable[..., Response[str]]:
        def wrapper(*args: Any, **kwargs: Any) -> Response[str]:
            api_key = settings.api_key
            if not api_key:  # as in Go: no API key, no management API
                return error_response(404, "not found")
            if not basic_auth_ok(
                api.current_event.headers.get("Authorization")
                or api.current_event.headers.get("authorization")
                or "",
                api_key,
            ):
                return error_response(401, "unauthorized", {"WWW-Authenticate": 'Basic realm="nanocmd"'})
            return handler(*args, **kwargs)

        wrapper.__name__ = handler.__name__
        return wrapper

    @api.route("/version", method=ALL_METHODS)
    def version() -> Response[str]:
        return Response(
            status_code=200,
            content_type=content_types.APPLICATION_JSON,
            body=json.dumps({"version": settings.version}),
        )

    @api.post("/v1/workflow/<name>/start")
    @protected
    def start_workflow(name: str) -> Response[str]:
        ids = query_values("id")
        if not ids:
            return error_response(400, "no IDs provided")
        contexts = query_values("context")
        context = contexts[0].encode() if contexts else b""
        engine = services().engine
        log = {"workflow": name, "enrollment_ids": ids[:50], "id_count": len(ids)}
        try:
            result = engine.start_workflow(name, ids, context)
        except NoSuchWorkflowError as exc:
            return error_response(404, str(exc))
        except AlreadyStartedError as exc:
            return error_response(409, str(exc))
        except InvalidIDsError as exc:
            return error_response(400, str(exc))
        except StartError as exc:
            logger.warning("workflow start failed", extra={**log, "error": str(exc)})
            return error_response(400 if exc.client_error else 500, str(exc))
        body: dict[str, Any] = {"instance_id": result.instance_id}
        if result.skipped_ids:
            body["skipped_ids"] = result.skipped_ids
        if result.failed_ids:
            body["failed_ids"] = result.failed_ids
        if result.retrying_ids:
            body["retrying_ids"] = result.retrying_ids
        if result.errors:
            body["errors"] = result.errors
        if result.retrying_ids and set(result.retrying_ids) == set(result.started_ids):
            # started, but the MDM server took none of it yet: say so; the engine keeps retrying
            body["error"] = "MDM server did not accept the commands; the engine retries the send"
            return json_response(502, body)
        return json_response(200, body)

    @api.route("/v1/event/<name>", method=["GET", "HEAD"])
    @protected
    def get_subscription(name: str) -> Response[str]:
        name = unquote(name)
        sub = services().subscriptions.get(name)
        if sub is None:  # design.md §6: 404, not Go's 500 or null
            return error_response(404, f"event subscription not found: {name}")
        return json_response(200, sub.to_json())

    @api.put("/v1/event/<name>")
    @protected
    def put_subscription(name: str) -> Response[str]:
        name = unquote(name)
        try:
            doc = json.loads(api.current_event.decoded_body or "")
        except (ValueError, UnicodeDecodeError) as exc:
            return error_response(400, f"invalid JSON body: {exc}")
        app = services()
        try:
            sub = parse_subscription(doc, lambda workflow: workflow in app.engine.registry)
        except SubscriptionError as exc:
            return error_response(400, str(exc))
        app.subscriptions.put(name, sub)
        logger.info("event subscription stored", extra={"subscription": name, **sub.to_json()})
        return Response(status_code=204, body="")

    @api.delete("/v1/event/<name>")
    @protected
    def delete_subscription(name: str) -> Response[str]:
        name = unquote(name)
        if services().subscriptions.delete(name):
            logger.info("event subscription deleted", extra={"subscription": name})
        return Response(status_code=204, body="")

    @api.route("/v1/events", method=["GET", "HEAD"])
    @protected
    def list_subscriptions() -> Response[str]:
        return json_response(200, {n: sub.to_json() for n, sub in services().subscriptions.all().items()})

    def inventory() -> Response[str]:
        ids = query_values("id")
        if not ids:
            return error_response(400, "no IDs provided")
        return json_response(200, services().inventory.retrieve(ids))

    api.route("/v1/inventory", method=["GET", "HEAD"])(protected(inventory))
    api.route("/inventory", method=["GET", "HEAD"])(protected(inventory))

    @api.not_found
    def not_found(_: NotFoundError) -> Response[str]:
        path = api.current_event.path
        for pattern, methods in ROUTES:
            if pattern.match(path):
                allow = ", ".join([*methods, "OPTIONS"])
                if api.current_event.http_method == "OPTIONS":
                    return Response(status_code=204, body="", headers={"Allow": allow})
                return error_response(405, "method not allowed", {"Allow": allow})
        return error_response(404, "not found")

    @api.exception_handler(Exception)  # type: ignore[untyped-decorator]
    def unexpected(exc: Exception) -> Response[str]:
        logger.exception("API request failed", extra={"path": api.current_event.path})
        return error_response(500, f"internal error: {type(exc).__name__}")

    return api
