"""Reading the MDM server's answer: HTTP status plus NanoMDM's JSON ``APIResult`` (GAP-9 fixed).

NanoMDM (``api/types.go``, ``api/api.go`` in micromdm/nanomdm) answers enqueue and push with::

    {"status": {"<id>": {"push_error": "...", "push_result": "<apns-id>", "command_error": "..."}},
     "no_push": true, "push_error": "...", "command_error": "...",
     "command_uuid": "...", "request_type": "..."}

every field optional (``omitempty``), errors rendered as plain JSON strings. Its HTTP status is 200 when
nothing failed, 207 when some ids failed, 500 when every id failed or a top-level error occurred, and
it counts *push* failures as failures too: enqueueing to ids whose APNs push fails answers 500 although
the command was stored. So the status alone cannot say whether a command was queued; the body can.

A top-level ``command_error`` means nothing was enqueued for any id (NanoMDM then skips the push).
Storing a CommandUUID it already holds is such an error; the text depends on NanoMDM's storage backend
("command already exists: <uuid>" for the file/KV stores, MySQL's "Duplicate entry ... for key", and
PostgreSQL's "duplicate key value violates unique constraint").

MicroMDM answers ``{"payload": {...}}`` (enqueue, 201) or ``{"status": "success", ...}`` (push, 200)
and ``{"error": "..."}`` with a non-2xx status on failure.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

DETAIL_LIMIT = 500

_ALREADY_EXISTS = r"already exists|duplicate entry|duplicate key"
"""Compiled on first use (``re`` keeps it), not at import: a cold start that never sees a send
error does not pay for it (issue 14)."""


def truncate(text: str, limit: int = DETAIL_LIMIT) -> str:
    """One line, at most ``limit`` characters: server answers can be whole HTML error pages."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def body_text(body: bytes) -> str:
    return truncate(body.decode("utf-8", errors="replace"))


def is_already_exists(text: str) -> bool:
    """True if a command error says the CommandUUID is already stored (any NanoMDM backend)."""
    return re.search(_ALREADY_EXISTS, text, re.IGNORECASE) is not None


@dataclass
class APIResult:
    """The parts of NanoMDM's ``APIResult`` the client acts on."""

    command_error: str = ""
    push_error: str = ""
    command_errors: dict[str, str] = field(default_factory=dict)  # per-id
    push_errors: dict[str, str] = field(default_factory=dict)  # per-id
    no_push: bool = False
    command_uuid: str = ""
    request_type: str = ""

    @property
    def has_command_error(self) -> bool:
        return bool(self.command_error or self.command_errors)

    @property
    def has_push_error(self) -> bool:
        return bool(self.push_error or self.push_errors)

    def summary(self) -> str:
        """A short text of the errors in the result, for ``ChunkResult.detail`` and logs."""
        parts: list[str] = []
        if self.command_error:
            parts.append(f"command_error: {self.command_error}")
        if self.push_error:
            parts.append(f"push_error: {self.push_error}")
        for label, errors in (("command_error", self.command_errors), ("push_error", self.push_errors)):
            for enrollment_id, message in errors.items():
                parts.append(f"{enrollment_id}: {label}: {message}")
        return truncate("; ".join(parts))


def _error_text(value: Any) -> str:
    """NanoMDM marshals errors as strings; anything else non-empty still counts as an error."""
    if value is None or value == "":
        return ""
    return value if isinstance(value, str) else json.dumps(value)


def parse_api_result(body: bytes) -> APIResult | None:
    """Decode a NanoMDM ``APIResult``; ``None`` if the body is not one (MicroMDM, a proxy page ...)."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(doc, Mapping):
        return None
    status = doc.get("status")
    nano_keys = {"command_error", "push_error", "no_push", "command_uuid", "request_type"}
    # MicroMDM's push answer has a *string* "status"; NanoMDM's is a per-id map.
    if not (isinstance(status, Mapping) or nano_keys & doc.keys()):
        return None
    result = APIResult(
        command_error=_error_text(doc.get("command_error")),
        push_error=_error_text(doc.get("push_error")),
        no_push=bool(doc.get("no_push", False)),
        command_uuid=str(doc.get("command_uuid") or ""),
        request_type=str(doc.get("request_type") or ""),
    )
    if isinstance(status, Mapping):
        for enrollment_id, per_id in status.items():
            if not isinstance(per_id, Mapping):
                continue
            if message := _error_text(per_id.get("command_error")):
                result.command_errors[str(enrollment_id)] = message
            if message := _error_text(per_id.get("push_error")):
                result.push_errors[str(enrollment_id)] = message
    return result


def micromdm_error(body: bytes) -> str:
    """The ``error`` text of a MicroMDM JSON answer, or ``""``."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return ""
    if isinstance(doc, Mapping) and doc.get("error"):
        return _error_text(doc["error"])
    return ""


def ids_with_errors(errors: Mapping[str, str], ids: Sequence[str]) -> list[str]:
    """The chunk's ids named in a per-id error map, in request order.

    If the map names an id that was not in the request (NanoMDM's KV store keys its per-id enqueue
    errors by command UUID), we cannot tell which ids failed, so all of them count as failed.
    """
    if not errors:
        return []
    if any(key not in ids for key in errors):
        return list(ids)
    return [enrollment_id for enrollment_id in ids if enrollment_id in errors]
