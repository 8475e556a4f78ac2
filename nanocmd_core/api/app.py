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
from dataclasses import dataclass, field
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

logger = Logger(service="nanocmd", child=True)

API_USER = "nanocmd"
ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]

Handler = Callable[..., Response[str]]


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


@dataclass(frozen=True)
class RouteSpec:
    path: str
    methods: list[str]
    auth: bool
    query: dict[str, bool]
    body: str | None
    summary: str


def openapi_document(specs: list[RouteSpec], version: str) -> dict[str, Any]:
    """OpenAPI 3 from the registered routes: paths, methods, parameters, bodies, auth, errors."""
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/JSONError"}}}
    paths: dict[str, dict[str, Any]] = {}
    for spec in specs:
        path = re.sub(r"<([^>]+)>", r"{\1}", spec.path)
        parameters: list[dict[str, Any]] = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}
            for name in re.findall(r"<([^>]+)>", spec.path)
        ]
        parameters += [
            {
                "name": name,
                "in": "query",
                "required": required,
                "style": "form",
                "explode": True,
                "schema": {
                    "type": "array",
                    "items": {"type": "string"},
                    **({"minItems": 1} if required else {}),
                },
            }
            for name, required in spec.query.items()
        ]
        for method in spec.methods:
            operation: dict[str, Any] = {
                "summary": spec.summary or f"{method} {path}",
                "parameters": parameters,
                "responses": {
                    "200": {"description": "success"},
                    "204": {"description": "done, no content"},
                    "400": {"description": "bad input", "content": error},
                    "404": {"description": "not found", "content": error},
                },
            }
            if spec.auth:
                operation["security"] = [{"basicAuth": []}]
                operation["responses"]["401"] = {"description": "unauthorized", "content": error}
            if spec.body and method in {"PUT", "POST"}:
                schema = (
                    {"type": "object"}
                    if spec.body == "application/json"
                    else {"type": "string", "format": "binary"}
                )
                operation["requestBody"] = {"required": True, "content": {spec.body: {"schema": schema}}}
            paths.setdefault(path, {})[method.lower()] = operation
    return {
        "openapi": "3.0.3",
        "info": {"title": "NanoCMD (serverless)", "version": version},
        "paths": paths,
        "components": {
            "securitySchemes": {"basicAuth": {"type": "http", "scheme": "basic"}},
            "schemas": {
                "JSONError": {
                    "type": "object",
                    "properties": {"error": {"type": "string"}},
                    "required": ["error"],
                }
            },
        },
    }


@dataclass
class RouteKit:
    """What a module's routes need: the resolver, the services (``wiring.App``, built on first
    use), HTTP Basic protection and request helpers. Subsystems add routes with ``kit.route``."""

    api: APIGatewayRestResolver
    settings: Settings
    services: Callable[[], Any]
    allow: list[tuple[re.Pattern[str], list[str]]] = field(default_factory=list)
    """(path pattern, methods) of every route, for 405/OPTIONS with an Allow header (API-2)."""
    specs: list[RouteSpec] = field(default_factory=list)

    def protected(self, handler: Handler) -> Handler:
        def wrapper(*args: Any, **kwargs: Any) -> Response[str]:
            api_key = self.settings.api_key
            if not api_key:  # as in Go: no API key, no management API
                return error_response(404, "not found")
            headers = self.api.current_event.headers
            if not basic_auth_ok(headers.get("Authorization") or headers.get("authorization") or "", api_key):
                return error_response(401, "unauthorized", {"WWW-Authenticate": 'Basic realm="nanocmd"'})
            return handler(*args, **kwargs)

        wrapper.__name__ = handler.__name__
        return wrapper

    def route(
        self,
        path: str,
        methods: list[str],
        *,
        auth: bool = True,
        query: dict[str, bool] | None = None,
        body: str | None = None,
        summary: str = "",
    ) -> Callable[[Handler], Handler]:
        """Register ``handler`` for ``path`` (Powertools ``<param>`` syntax; params arrive still
        percent-encoded, decode them with ``unquote``); GET routes also answer HEAD. ``query``
        (name → required; every query parameter may repeat) and ``body`` (its media type) go into
        the OpenAPI document served at ``/openapi.json``."""
        if "GET" in methods and "HEAD" not in methods:
            methods = [*methods, "HEAD"]
        self.allow.append((re.compile("^" + re.sub(r"<[^>]+>", "[^/]+", path) + "$"), methods))
        self.specs.append(RouteSpec(path, methods, auth, dict(query or {}), body, summary))

        def register(handler: Handler) -> Handler:
            self.api.route(path, method=methods)(self.protected(handler) if auth else handler)
            return handler

        return register

    def query_values(self, name: str) -> list[str]:
        multi = self.api.current_event.multi_value_query_string_parameters or {}
        return list(multi.get(name) or [])

    def body(self) -> bytes:
        """The raw request body; API Gateway base64-encodes every body (BinaryMediaTypes */*)."""
        event = self.api.current_event
        raw = event.body or ""
        return base64.b64decode(raw) if event.is_base64_encoded else raw.encode()

    def json_body(self) -> Any:
        """The body as JSON; ValueError (with a message for a 400) when it is not."""
        try:
            return json.loads(self.body() or b"")
        except (ValueError, UnicodeDecodeError) as exc:
            raise ValueError(f"invalid JSON body: {exc}") from exc


def engine_routes(kit: RouteKit) -> None:
    """Workflow starts and event subscriptions (api.md §5)."""

    @kit.route("/v1/workflow/<name>/start", ["POST"], query={"id": True, "context": False})
    def start_workflow(name: str) -> Response[str]:
        name = unquote(name)
        ids = kit.query_values("id")
        if not ids:
            return error_response(400, "no IDs provided")
        contexts = kit.query_values("context")
        context = contexts[0].encode() if contexts else b""
        engine = kit.services().engine
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

    @kit.route("/v1/event/<name>", ["GET"])
    def get_subscription(name: str) -> Response[str]:
        name = unquote(name)
        sub = kit.services().subscriptions.get(name)
        if sub is None:  # design.md §6: 404, not Go's 500 or null
            return error_response(404, f"event subscription not found: {name}")
        return json_response(200, sub.to_json())

    @kit.route("/v1/event/<name>", ["PUT"], body="application/json")
    def put_subscription(name: str) -> Response[str]:
        name = unquote(name)
        try:
            doc = kit.json_body()
        except ValueError as exc:
            return error_response(400, str(exc))
        app = kit.services()
        try:
            sub = parse_subscription(doc, lambda workflow: workflow in app.engine.registry)
        except SubscriptionError as exc:
            return error_response(400, str(exc))
        app.subscriptions.put(name, sub)
        logger.info("event subscription stored", extra={"subscription": name, **sub.to_json()})
        return Response(status_code=204, body="")

    @kit.route("/v1/event/<name>", ["DELETE"])
    def delete_subscription(name: str) -> Response[str]:
        name = unquote(name)
        if kit.services().subscriptions.delete(name):
            logger.info("event subscription deleted", extra={"subscription": name})
        return Response(status_code=204, body="")

    @kit.route("/v1/events", ["GET"])
    def list_subscriptions() -> Response[str]:
        return json_response(200, {n: sub.to_json() for n, sub in kit.services().subscriptions.all().items()})


def inventory_routes(kit: RouteKit) -> None:
    """Inventory at the documented ``/v1/inventory`` and at ``/inventory`` (where Go serves it)."""

    def inventory() -> Response[str]:
        ids = kit.query_values("id")
        if not ids:
            return error_response(400, "no IDs provided")
        return json_response(200, kit.services().inventory.retrieve(ids))

    kit.route("/v1/inventory", ["GET"], query={"id": True})(inventory)
    kit.route("/inventory", ["GET"], query={"id": True})(inventory)


RouteModule = Callable[[RouteKit], None]


def default_route_modules() -> list[RouteModule]:
    """Every route of the API; the subsystems' modules import this one, hence the late import."""
    from nanocmd_core.subsystems.cmdplan.http import cmdplan_routes
    from nanocmd_core.subsystems.filevault.http import filevault_routes
    from nanocmd_core.subsystems.profile.http import profile_routes

    return [engine_routes, inventory_routes, profile_routes, filevault_routes, cmdplan_routes]


def create_api(
    settings: Settings, services: Callable[[], Any], modules: list[RouteModule] | None = None
) -> APIGatewayRestResolver:
    """``services()`` returns the wiring.App, built on first use so /version stays cheap."""
    api = APIGatewayRestResolver()
    kit = RouteKit(api=api, settings=settings, services=services)

    kit.specs.append(RouteSpec("/version", ["GET"], False, {}, None, "server version"))
    kit.specs.append(RouteSpec("/webhook", ["POST"], False, {}, "application/json", "MDM server webhook"))

    @api.route("/version", method=ALL_METHODS)
    def version() -> Response[str]:
        return Response(
            status_code=200,
            content_type=content_types.APPLICATION_JSON,
            body=json.dumps({"version": settings.version}),
        )

    for module in default_route_modules() if modules is None else modules:
        module(kit)

    @kit.route("/openapi.json", ["GET"], auth=False, summary="this document")
    def openapi() -> Response[str]:
        return json_response(200, openapi_document(kit.specs, settings.version))

    @api.not_found
    def not_found(_: NotFoundError) -> Response[str]:
        path = api.current_event.path
        methods = [m for pattern, allowed in kit.allow if pattern.match(path) for m in allowed]
        if methods:
            allow = ", ".join([*dict.fromkeys(methods), "OPTIONS"])
            if api.current_event.http_method == "OPTIONS":
                return Response(status_code=204, body="", headers={"Allow": allow})
            return error_response(405, "method not allowed", {"Allow": allow})
        return error_response(404, "not found")

    @api.exception_handler(Exception)  # type: ignore[untyped-decorator]
    def unexpected(exc: Exception) -> Response[str]:
        logger.exception("API request failed", extra={"path": api.current_event.path})
        return error_response(500, f"internal error: {type(exc).__name__}")

    return api
