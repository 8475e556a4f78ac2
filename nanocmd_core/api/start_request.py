"""The JSON body form of a start (issue 12): ``{"ids": [...], "context": "..."}``.

Why a body: ids in the query string stop at API Gateway's URL limit (8,192 characters edge, 10,240
regional: 200-250 UUIDs). A body takes up to ``MAX_START_IDS`` ids; API Gateway's payload limit
(10 MB) is the outer bound, enforced here too so the local gateway answers the same 413.
"""

# Real annotations (no ``from __future__ import annotations``): pydantic would otherwise evaluate
# every annotation string when it creates a model class, at import (issue 14: cold starts).
from pydantic import BaseModel, ConfigDict, Field, ValidationError

MAX_START_BODY = 10 * 1024 * 1024
"""Bytes of a request body API Gateway passes on (larger is refused with 413)."""
MAX_START_IDS = 100_000


class StartRequest(BaseModel):
    """Enrollment ids to start the workflow on, and the start's context (as ``?context=``)."""

    model_config = ConfigDict(extra="forbid", strict=True, defer_build=True)

    ids: list[str] = Field(min_length=1)
    context: str | None = None


class StartBodyError(ValueError):
    """A body the start cannot use; ``status`` is the answer's (400, or 413 when too large)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def parse_start_body(raw: bytes) -> StartRequest:
    if len(raw) > MAX_START_BODY:
        raise StartBodyError(f"request body over {MAX_START_BODY} bytes", 413)
    try:
        request = StartRequest.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "body"
        raise StartBodyError(f"invalid start body: {where}: {first.get('msg', 'invalid')}") from exc
    if len(request.ids) > MAX_START_IDS:
        raise StartBodyError(f"too many ids: {len(request.ids)} (at most {MAX_START_IDS} a start)", 413)
    return request
