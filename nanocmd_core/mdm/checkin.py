"""Apple MDM check-in messages (Authenticate, TokenUpdate, CheckOut) — engine.md DM-3.

The message type is chosen by the caller (the webhook topic, WH-5), not read from the plist's
``MessageType``: that is what the Go original does, and it keeps a lying plist from changing
which handler runs.
"""

# Real annotations (no ``from __future__ import annotations``): pydantic would otherwise evaluate
# every annotation string when it creates a model class, at import (issue 14: cold starts).
from pydantic import Field, ValidationError

from nanocmd_core.mdm.errors import CheckinParseError, ReportParseError, validation_summary
from nanocmd_core.mdm.responses import EnrollmentIdentity, load_plist_dict

__all__ = [
    "CHECKIN_TYPES",
    "Authenticate",
    "CheckOut",
    "CheckinMessage",
    "CheckinParseError",
    "TokenUpdate",
    "parse_checkin",
]


class CheckinMessage(EnrollmentIdentity):
    """Fields common to every check-in message; unknown keys are kept (``model_extra``)."""

    message_type: str = Field(default="", alias="MessageType")
    topic: str = Field(default="", alias="Topic")

    raw: bytes = Field(default=b"", exclude=True, repr=False)
    """The message bytes as received; set by ``parse_checkin``, never dumped."""


class Authenticate(CheckinMessage):
    """First message of an enrollment; the engine cancels the ID's steps on it (CI-1)."""

    build_version: str = Field(default="", alias="BuildVersion")
    device_name: str = Field(default="", alias="DeviceName")
    imei: str = Field(default="", alias="IMEI")
    meid: str = Field(default="", alias="MEID")
    model: str = Field(default="", alias="Model")
    model_name: str = Field(default="", alias="ModelName")
    os_version: str = Field(default="", alias="OSVersion")
    product_name: str = Field(default="", alias="ProductName")
    serial_number: str = Field(default="", alias="SerialNumber")


class TokenUpdate(CheckinMessage):
    """Push token (re)registration; the first one of an enrollment also raises ``Enrollment``."""

    awaiting_configuration: bool = Field(default=False, alias="AwaitingConfiguration")
    not_on_console: bool = Field(default=False, alias="NotOnConsole")
    push_magic: str = Field(default="", alias="PushMagic")
    token: bytes = Field(default=b"", alias="Token")
    unlock_token: bytes | None = Field(default=None, alias="UnlockToken")

    enrolling: bool = False
    """Not an Apple key: set by the engine from the webhook tally (WH-10); parsing leaves it False."""


class CheckOut(CheckinMessage):
    """The MDM profile was removed; the engine cancels the ID's steps (CI-1)."""


CHECKIN_TYPES: dict[str, type[CheckinMessage]] = {
    "Authenticate": Authenticate,
    "TokenUpdate": TokenUpdate,
    "CheckOut": CheckOut,
}


def parse_checkin(message_type: str, raw: bytes) -> CheckinMessage:
    """Parse ``raw`` as the check-in ``message_type`` (from the webhook topic).

    Raises ``CheckinParseError`` for an unsupported type, an empty or non-plist body, or wrong
    value types.
    """
    cls = CHECKIN_TYPES.get(message_type)
    if cls is None:
        raise CheckinParseError(f"no checkin type for message type: {message_type}")
    try:
        data = load_plist_dict(raw, f"{message_type} message")
    except ReportParseError as exc:
        raise CheckinParseError(str(exc)) from exc
    try:
        message = cls.model_validate(data)
    except ValidationError as exc:
        raise CheckinParseError(f"invalid {message_type} message: {validation_summary(exc)}") from exc
    if isinstance(message, TokenUpdate):
        # Only the engine decides this (from the tally); a plist key must not pre-set it.
        message.enrolling = False
    message.raw = raw
    return message
