"""Exceptions shared by the MDM models.

Kept in their own module (standard library + pydantic only) so the lean webhook intake
Lambda can import them without pulling in the command and response models.
"""

from __future__ import annotations

from pydantic import ValidationError

__all__ = [
    "CheckinParseError",
    "MDMParseError",
    "MDMResponseError",
    "ReportParseError",
    "WebhookParseError",
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
    parts: list[str] = []
    errors = exc.errors(include_url=False, include_input=False)
    for err in errors[:limit]:
        loc = ".".join(str(p) for p in err["loc"]) or "(root)"
        msg = err["msg"].removeprefix("Value error, ")  # noise added to our own ValueErrors
        parts.append(f"{loc}: {msg}")
    if len(errors) > limit:
        parts.append(f"and {len(errors) - limit} more")
    return "; ".join(parts)
