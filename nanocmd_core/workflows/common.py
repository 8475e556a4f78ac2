"""Small helpers shared by the built-in workflows."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import TYPE_CHECKING

from aws_lambda_powertools import Logger

from nanocmd_core.mdm.errors import MDMResponseError
from nanocmd_core.workflow import StepEnqueueing, StepResult, Workflow

if TYPE_CHECKING:
    from nanocmd_core.mdm.responses import CommandResponse

logger = Logger(service="nanocmd", child=True)


def local_timestamp(when: datetime) -> str:
    """RFC 3339 with fractional seconds, trailing zeros dropped, ``Z`` for UTC — the way Go
    prints ``time.Time`` into JSON (subsystems.md §3.1)."""
    text = when.isoformat()
    if "." in text:
        head, _, rest = text.partition(".")
        digits = rest[:6]
        offset = rest[6:]
        digits = digits.rstrip("0")
        text = f"{head}.{digits}{offset}" if digits else f"{head}{offset}"
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def enqueue_for_id(workflow: Workflow, enqueueing: StepEnqueueing, enrollment_id: str) -> None:
    """Send a step built for one id of a start (its commands depend on that id) to that id
    alone; a failure names the id, as the Go workflows do."""
    enqueueing.ids = [enrollment_id]
    try:
        workflow.enqueue(enqueueing)
    except Exception as exc:
        raise RuntimeError(f"enqueueing step for {enrollment_id}: {exc}") from exc


def log_install_results(workflow: str, result: StepResult) -> None:
    """Tally statuses and log invalid responses; the workflow ends either way (workflows.md
    §4.5): a failed install is the admin's to see, not something to retry."""
    counts: Counter[str] = Counter()
    for response in result.command_results:
        counts[response.status] += 1
        try:
            response.validate_status()
        except MDMResponseError as exc:
            logger.info(
                "command response invalid",
                extra={
                    "workflow": workflow,
                    "enrollment_id": result.id,
                    "command_uuid": response.command_uuid,
                    "request_type": _request_type(response),
                    "error": str(exc),
                },
            )
    logger.debug(
        "step results",
        extra={
            "workflow": workflow,
            "enrollment_id": result.id,
            **{f"count_{status.lower()}": n for status, n in counts.items()},
        },
    )


def _request_type(response: CommandResponse) -> str:
    return type(response).request_type or "unknown"
