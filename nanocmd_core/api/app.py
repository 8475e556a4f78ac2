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
from nanocmd_core.api.start_routes import start_routes
from nanocmd_core.api.status_routes import status_routes
from nanocmd_core.config import Settings
from nanocmd_core.engine.subscriptions import SubscriptionError, parse_subscription
from nanocmd_core.subsystems.cmdplan.http import cmdplan_routes
from nanocmd_core.subsystems.filevault.http import filevault_routes
from nanocmd_core.subsystems.profile.http import profile_routes

logger = Logger(service="nanocmd", child=True)


def engine_routes(kit: RouteKit) -> None:
    """Event subscriptions (api.md §5); starts are in start_routes.py."""

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
    return [
        start_routes,
        engine_routes,
        status_routes,
        inventory_routes,
        profile_routes,
        filevault_routes,
        cmdplan_routes,
    ]


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
