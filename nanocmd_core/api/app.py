"""The management API (api.md), a drop-in for the Go NanoCMD's, on a Powertools REST resolver.

Deliberate changes (design.md §6): errors are JSON ``{"error": ...}`` with 4xx codes where the
client is at fault (unknown workflow 404, all ids busy 409, bad input 400), the MDM server
refusing a start's commands is 502, a partial start lists the skipped ids beside
``instance_id``, and inventory is served at ``/v1/inventory`` and ``/inventory``. Status, history
and cancel routes are additions (``status_routes``); the route kit they all use is ``kit``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError

from nanocmd_core.api.kit import (
    ALL_METHODS,
    RouteKit,
    RouteSpec,
    error_response,
    json_response,
    openapi_document,
)
from nanocmd_core.api.start_request import (
    MAX_START_BODY,
    MAX_START_IDS,
    StartBodyError,
    StartRequest,
    parse_start_body,
)
from nanocmd_core.api.status_routes import status_routes
from nanocmd_core.config import Settings
from nanocmd_core.engine.engine import (
    AlreadyStartedError,
    InvalidIDsError,
    NoSuchWorkflowError,
    StartError,
)
from nanocmd_core.engine.subscriptions import SubscriptionError, parse_subscription
from nanocmd_core.subsystems.cmdplan.http import cmdplan_routes
from nanocmd_core.subsystems.filevault.http import filevault_routes
from nanocmd_core.subsystems.profile.http import profile_routes

logger = Logger(service="nanocmd", child=True)

_IDS = {"type": "array", "items": {"type": "string"}}
START_ANSWER = {
    "type": "object",
    "properties": {
        "instance_id": {"type": "string"},
        "skipped_ids": {**_IDS, "description": "the exclusive workflow already ran (or runs) there"},
        "failed_ids": {**_IDS, "description": "the workflow's start raised for them; see errors"},
        "retrying_ids": {**_IDS, "description": "started; the MDM server did not take the commands yet"},
        "errors": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["instance_id"],
}
"""A start's 200 answer; the lists are present only when not empty."""


def engine_routes(kit: RouteKit) -> None:
    """Workflow starts and event subscriptions (api.md §5)."""

    @kit.route(
        "/v1/workflow/<name>/start",
        ["POST"],
        query={"id": False, "context": False},
        body="application/json",
        body_schema=StartRequest,
        body_required=False,
        summary="start a workflow on enrollment ids (?id=... or a JSON body of ids)",
        response=START_ANSWER,
        statuses={
            202: "more than NANOCMD_SYNC_START_MAX ids: accepted, started through the queue",
            409: "the workflow already runs on every id",
            413: f"more than {MAX_START_IDS} ids, or a body over {MAX_START_BODY} bytes",
            500: "the workflow failed to start",
            502: "the MDM server took none of the commands (the engine retries the send)",
        },
    )
    def start_workflow(name: str) -> Response[str]:
        name = unquote(name)
        ids = kit.query_values("id")
        contexts = kit.query_values("context")
        context = contexts[0].encode() if contexts else b""
        raw = kit.body()
        if raw.strip():  # the JSON body form (issue 12); the query form stays as Go's clients use it
            if ids or contexts:
                return error_response(400, "ids and context go in the query or in the body, not both")
            try:
                request = parse_start_body(raw)
            except StartBodyError as exc:
                logger.warning("start body refused", extra={"workflow": name, "error": str(exc)})
                return error_response(exc.status, str(exc))
            ids, context = request.ids, (request.context or "").encode()
        if not ids:
            return error_response(400, "no IDs provided")
        if len(set(ids)) > kit.settings.sync_start_max:
            return _start_async(name, ids, context)
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

    def _start_async(name: str, ids: list[str], context: bytes) -> Response[str]:
        """Past NANOCMD_SYNC_START_MAX ids: 202 at once, the ids go through the queue."""
        engine = kit.services().engine
        try:
            instance_id = engine.start_async(name, ids, context)
        except NoSuchWorkflowError as exc:
            return error_response(404, str(exc))
        except InvalidIDsError as exc:
            return error_response(400, str(exc))
        except StartError as exc:
            return error_response(400 if exc.client_error else 500, str(exc))
        body = {"instance_id": instance_id, "status_url": f"/v1/instance/{instance_id}"}
        return json_response(202, body, {"Location": body["status_url"]})

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
    """Every route of the API, in the order of the OpenAPI document's paths."""
    return [engine_routes, status_routes, inventory_routes, profile_routes, filevault_routes, cmdplan_routes]


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
