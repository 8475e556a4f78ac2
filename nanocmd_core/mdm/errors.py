"""Exceptions shared by the MDM models.

Kept in their own module (standard library only; pydantic's ``ValidationError`` only as a type)
so the lean webhook intake Lambda can import them without pulling in pydantic or the command and
response models.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import ValidationError

__all__ = [
    "CheckinParseError",
    "MDMParseError",
    "MDMResponseError",
    "ReportParseError",
    "WebhookParseError",
    "error_summary",
    "validation_summary",
]


class MDMParseError(ValueError):
    """Base of every "this input from the MDM side does not decode" error.

    Callers that only need to tell "bad input" from "bug" catch this one class.
    """


class ReportParseError(MDMParseError):
    """A command report (or other device plist) is empty, not a plist dict, or has wrong types."""


class CheckinParseError(ReportParseError):
    """A check-in message does not decode as its message type.

    A subclass of ReportParseError because a check-in is a device plist too: code that
    catches ReportParseError around both kinds of parsing keeps working.
    """


class WebhookParseError(MDMParseError):
    """The webhook body is not valid JSON for the MicroMDM/NanoMDM schema (the API answers 400)."""


class MDMResponseError(Exception):
    """A command response reports a failure (workflows.md §1.6).

    Not a parse error: the report decoded fine, the device just said no.
    """

    def __init__(self, message: str, status: str = "") -> None:
        super().__init__(message)
        self.status = status


def validation_summary(exc: ValidationError, limit: int = 5) -> str:
    """Render a pydantic error as one short line ("loc: message; ...").

    The default pydantic text is multi-line and links to its docs; callers put this text
    into logs and HTTP 400 bodies, so it must stay short.
    """
    errors = [
        (".".join(str(p) for p in err["loc"]), err["msg"].removeprefix("Value error, "))  # our ValueErrors
        for err in exc.errors(include_url=False, include_input=False)
    ]
    return error_summary(errors, limit)


def error_summary(errors: Sequence[tuple[str, str]], limit: int = 5) -> str:
    """(location, message) pairs as one short line: ``loc: message; ...; and N more``."""
    parts = [f"{loc or '(root)'}: {msg}" for loc, msg in errors[:limit]]
    if len(errors) > limit:
        parts.append(f"and {len(errors) - limit} more")
    return "; ".join(parts)
