"""Status, instance, history and cancel routes (issue 11): what runs where, how an instance
stands, which instances ran, and stopping them. The engine builds the answers (the models of
``nanocmd_core.status.views``); these routes check the input and serialise.

Query parameters (API Gateway hands them over decoded; every one may repeat, the last value of a
single-valued one counts):

- ``GET /v1/status?id=...`` (1 to 100 distinct ids) → ``{id: DeviceStatus}``
- ``GET /v1/instance/<id>?ids=1&limit=100&next=...`` → ``InstanceStatus`` (``ids`` pages the ids'
  outcomes, ``limit`` 1-1000), 404 for an unknown or expired instance
- ``GET /v1/instances?workflow=...&limit=50&next=...`` → ``InstancePage`` (``limit`` 1-100)
- ``DELETE /v1/instance/<id>?id=...`` → ``CancelResult``: its steps on those ids, or on all of them
- ``POST /v1/workflow/<name>/cancel?id=...`` → ``CancelResult``: the workflow's steps on those ids
"""

from __future__ import annotations

import re
from typing import Protocol
from urllib.parse import unquote

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import Response

from nanocmd_core.api.kit import RouteKit, error_response, json_response
from nanocmd_core.engine.errors import InvalidIDsError, NoSuchWorkflowError
from nanocmd_core.status.errors import InvalidPageToken
from nanocmd_core.status.views import CancelResult, DeviceStatus, InstancePage, InstanceStatus

logger = Logger(service="nanocmd", child=True)

MAX_STATUS_IDS = 100
"""Distinct ids one status request may ask for: each costs reads, and a Lambda answer is bounded."""
INSTANCE_LIMIT = (100, 1000)
"""(default, most) ids' outcomes on one page of an instance."""
HISTORY_LIMIT = (50, 100)
"""(default, most) instances on one page of the history."""


class StatusEngine(Protocol):
    """The engine's status and cancel operations these routes call (``wiring.App.engine``)."""

    def device_status(self, ids: list[str]) -> dict[str, DeviceStatus]: ...

    def instance_status(
        self, instance_id: str, *, with_ids: bool = False, limit: int = 100, next_token: str | None = None
    ) -> InstanceStatus | None: ...

    def instance_history(
        self, workflow: str | None, *, limit: int = 50, next_token: str | None = None
    ) -> InstancePage: ...

    def cancel_instance(self, instance_id: str, ids: list[str] | None = None) -> CancelResult | None: ...

    def cancel_workflow(self, name: str, ids: list[str]) -> CancelResult: ...


class BadInput(ValueError):
    """A query parameter the route cannot use; the message is the 400's."""


def status_routes(kit: RouteKit) -> None:
    """Register the five routes (their answers' models go into /openapi.json)."""

    def engine() -> StatusEngine:
        found: StatusEngine = kit.services().engine
        return found

    def last(name: str) -> str | None:
        values = kit.query_values(name)
        return values[-1] if values else None

    def ids(required: bool) -> list[str] | None:
        """The ``id`` values without repeats; None when there are none and none are needed."""
        values = kit.query_values("id")
        if not values:
            if required:
                raise BadInput("no IDs provided")
            return None
        if not all(values):
            raise BadInput("empty enrollment id")
        return list(dict.fromkeys(values))

    def limit(default: int, most: int) -> int:
        raw = last("limit")
        if raw is None:
            return default
        if not re.fullmatch(r"[0-9]{1,9}", raw) or not 1 <= int(raw) <= most:
            raise BadInput(f"invalid limit: {raw!r} (an integer from 1 to {most})")
        return int(raw)

    def page_token() -> str | None:
        raw = last("next")
        if raw == "":  # a client passing on a null ``next`` must not start over from page one
            raise BadInput("invalid next: empty (the last page has a null next)")
        return raw

    def flag(name: str) -> bool:
        raw = last(name)
        if raw is None or raw.lower() in {"0", "false"}:
            return False
        if raw.lower() in {"1", "true"}:
            return True
        raise BadInput(f"invalid {name}: {raw!r} (1 or 0)")

    @kit.route(
        "/v1/status",
        ["GET"],
        query={"id": True},
        summary=f"the steps and running workflows of up to {MAX_STATUS_IDS} enrollment ids",
        response={"type": "object", "additionalProperties": DeviceStatus, "description": "by enrollment id"},
    )
    def device_status() -> Response[str]:
        try:
            wanted = ids(required=True) or []
            if len(wanted) > MAX_STATUS_IDS:
                raise BadInput(f"too many IDs: {len(wanted)} (at most {MAX_STATUS_IDS} a request)")
        except BadInput as exc:
            return error_response(400, str(exc))
        found = engine().device_status(wanted)
        return json_response(200, {i: status.model_dump(mode="json") for i, status in found.items()})

    @kit.route(
        "/v1/instance/<instance_id>",
        ["GET"],
        query={"ids": False, "limit": False, "next": False},
        summary="an instance's start record, counts and (with ids=1) a page of its ids' outcomes",
        response=InstanceStatus,
    )
    def instance_status(instance_id: str) -> Response[str]:
        instance_id = unquote(instance_id)
        try:
            with_ids, page, token = flag("ids"), limit(*INSTANCE_LIMIT), page_token()
            status = engine().instance_status(instance_id, with_ids=with_ids, limit=page, next_token=token)
        except (BadInput, InvalidPageToken) as exc:
            return error_response(400, str(exc) or "invalid next token")
        if status is None:
            return error_response(404, f"instance not found: {instance_id}")
        return json_response(200, status.model_dump(mode="json"))

    @kit.route(
        "/v1/instances",
        ["GET"],
        query={"workflow": False, "limit": False, "next": False},
        summary="the started instances of one workflow or of all, a page at a time",
        response=InstancePage,
    )
    def instance_history() -> Response[str]:
        try:
            workflow = last("workflow")
            if workflow == "":
                raise BadInput("empty workflow name")
            page, token = limit(*HISTORY_LIMIT), page_token()
            history = engine().instance_history(workflow, limit=page, next_token=token)
        except (BadInput, InvalidPageToken) as exc:
            return error_response(400, str(exc) or "invalid next token")
        return json_response(200, history.model_dump(mode="json"))

    @kit.route(
        "/v1/instance/<instance_id>",
        ["DELETE"],
        query={"id": False},
        summary="cancel an instance's steps on the given ids, or on all of its ids",
        response=CancelResult,
    )
    def cancel_instance(instance_id: str) -> Response[str]:
        instance_id = unquote(instance_id)
        try:
            only = ids(required=False)
        except BadInput as exc:
            return error_response(400, str(exc))
        result = engine().cancel_instance(instance_id, only)
        if result is None:
            return error_response(404, f"instance not found: {instance_id}")
        logger.info(
            "instance cancelled",
            extra={
                "instance_id": instance_id,
                "all_ids": only is None,
                "id_count": len(only) if only else len(result.cancelled_ids) + len(result.not_running_ids),
                "cancelled": len(result.cancelled_ids),
                "not_running": len(result.not_running_ids),
            },
        )
        return json_response(200, result.model_dump(mode="json"))

    @kit.route(
        "/v1/workflow/<name>/cancel",
        ["POST"],
        query={"id": True},
        summary="cancel a workflow's steps on enrollment ids",
        response=CancelResult,
    )
    def cancel_workflow(name: str) -> Response[str]:
        name = unquote(name)
        try:
            wanted = ids(required=True) or []
            result = engine().cancel_workflow(name, wanted)
        except (BadInput, InvalidIDsError) as exc:
            return error_response(400, str(exc))
        except NoSuchWorkflowError as exc:
            return error_response(404, str(exc))
        logger.info(
            "workflow cancelled",
            extra={
                "workflow": name,
                "id_count": len(wanted),
                "cancelled": len(result.cancelled_ids),
                "not_running": len(result.not_running_ids),
            },
        )
        return json_response(200, result.model_dump(mode="json"))
