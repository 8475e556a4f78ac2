"""``/v1/cmdplan/<name>`` (api.md §8.2-8.3) with the deliberate changes of design.md §6: an
unknown plan is 404 and an undecodable or wrongly typed body is 400, both as ``{"error": ...}``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import Response
from pydantic import ValidationError

from nanocmd_core.api.kit import RouteKit, error_response, json_response
from nanocmd_core.subsystems.cmdplan.storage import (
    CommandPlan,
    CommandPlanInvalidError,
    CommandPlanNotFoundError,
)

logger = Logger(service="nanocmd", child=True)

ROUTE = "/v1/cmdplan/<name>"


def validation_message(exc: ValidationError) -> str:
    """One line naming the first offending key, e.g. ``device_configured: Input should be a
    valid boolean``."""
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    return f"{where}: {first['msg']}" if where else str(first["msg"])


def parse_plan(doc: Any) -> CommandPlan:
    """A decoded JSON body as a plan (ValueError with a client-facing message)."""
    try:
        return CommandPlan.model_validate(doc)
    except ValidationError as exc:
        raise ValueError(f"invalid command plan: {validation_message(exc)}") from exc


def cmdplan_routes(kit: RouteKit) -> None:
    """Register GET and PUT; there is no DELETE route, as in the Go server."""

    @kit.route(ROUTE, ["GET"])
    def get_cmdplan(name: str) -> Response[str]:
        name = unquote(name)
        try:
            plan = kit.services().cmdplans.retrieve(name)
        except CommandPlanNotFoundError as exc:
            return error_response(404, str(exc))
        return json_response(200, plan.to_json())

    @kit.route(ROUTE, ["PUT"], body="application/json")
    def put_cmdplan(name: str) -> Response[str]:
        name = unquote(name)
        try:
            plan = parse_plan(kit.json_body())
            kit.services().cmdplans.store(name, plan)
        except (ValueError, CommandPlanInvalidError) as exc:
            return error_response(400, str(exc))
        logger.info("command plan stored", extra={"cmdplan": name, **plan.to_json()})
        return Response(status_code=204, body="")
