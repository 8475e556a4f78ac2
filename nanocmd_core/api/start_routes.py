"""``POST /v1/workflow/<name>/start``: the query form of the Go clients, the JSON body form for
fleets (issue 12), 202 past ``NANOCMD_SYNC_START_MAX`` ids, ``Idempotency-Key``."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import Response

from nanocmd_core.api.idempotency import IdempotencyConflict, idempotent_start
from nanocmd_core.api.kit import RouteKit, error_response, json_response
from nanocmd_core.api.start_request import (
    MAX_START_BODY,
    MAX_START_IDS,
    StartBodyError,
    StartRequest,
    parse_start_body,
)
from nanocmd_core.engine.errors import AlreadyStartedError, InvalidIDsError, NoSuchWorkflowError, StartError

logger = Logger(service="nanocmd", child=True)

_IDS = {"type": "array", "items": {"type": "string"}}
START_ANSWER = {
    "type": "object",
    "properties": {
        "instance_id": {"type": "string"},
        "status_url": {"type": "string", "description": "202: where the instance's progress is"},
        "skipped_ids": {**_IDS, "description": "the exclusive workflow already ran (or runs) there"},
        "failed_ids": {**_IDS, "description": "the workflow's start raised for them; see errors"},
        "retrying_ids": {**_IDS, "description": "started; the MDM server did not take the commands yet"},
        "errors": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["instance_id"],
}
"""A start's 200 (and 202) answer; the lists are present only when not empty."""

Answer = tuple[int, dict[str, Any]]


def start_routes(kit: RouteKit) -> None:
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
            409: "the workflow already runs on every id, or a start with this Idempotency-Key runs",
            413: f"more than {MAX_START_IDS} ids, or a body over {MAX_START_BODY} bytes",
            422: "the Idempotency-Key was used for another start",
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
        if raw.strip():  # the JSON body form; the query form stays as Go's clients use it
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
        headers = kit.api.current_event.headers or {}
        key = next((v for k, v in headers.items() if k.lower() == "idempotency-key"), "")
        if key:
            try:
                status, body = idempotent_start(
                    kit.settings.table_name,
                    key,
                    name,
                    ids,
                    context,
                    lambda: _start(name, ids, context),
                    kit.api.lambda_context,
                )
            except IdempotencyConflict as exc:
                return error_response(exc.status, str(exc))
        else:
            status, body = _start(name, ids, context)
        location = {"Location": body["status_url"]} if status == 202 else None
        return json_response(status, body, location)

    def _start(name: str, ids: list[str], context: bytes) -> Answer:
        log = {"workflow": name, "enrollment_ids": ids[:50], "id_count": len(ids)}
        try:
            if len(set(ids)) > kit.settings.sync_start_max:  # 202 at once, the ids through the queue
                instance_id = kit.services().engine.start_async(name, ids, context)
                return 202, {"instance_id": instance_id, "status_url": f"/v1/instance/{instance_id}"}
            result = kit.services().engine.start_workflow(name, ids, context)
        except NoSuchWorkflowError as exc:
            return 404, {"error": str(exc)}
        except AlreadyStartedError as exc:
            return 409, {"error": str(exc)}
        except InvalidIDsError as exc:
            return 400, {"error": str(exc)}
        except StartError as exc:
            logger.warning("workflow start failed", extra={**log, "error": str(exc)})
            return (400 if exc.client_error else 500), {"error": str(exc)}
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
            return 502, body
        return 200, body
