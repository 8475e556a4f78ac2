"""Apple MDM command responses ("reports"), typed per request type.

A report is the plist a device sends back for a command (engine.md DM-8). Every shape has the
common fields of ``CommandResponse``; typed subclasses add their request type's fields.

Conventions, chosen because devices omit whatever they like:

* every field is optional; unknown keys are kept (``extra="allow"``, see ``model_extra``);
* scalars default to ``None`` so "the device did not send it" stays distinguishable from a
  false/empty value (``model_fields_set`` tells the same thing);
* nested dictionaries default to an empty model and arrays to an empty list, so workflows can
  read ``resp.query_responses.model`` without a None check (absence is still visible in the
  parent's ``model_fields_set``).

Unknown request types parse as the generic ``CommandResponse`` (a deliberate change from the Go
original, which errors): custom commands sent through the engine still get a result.

The typed responses of the built-in request types are defined in ``deferred_responses``, imported
on first use (a report of one of their request types, or first access here: PEP 562), not at every
function's import (issue 14: cold starts); only the common fields and the parsing are here. Import
them from here.
"""

# Real annotations (no ``from __future__ import annotations``): pydantic would otherwise evaluate
# every annotation string when it creates a model class, at import (issue 14: cold starts).
import plistlib
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from nanocmd_core.deferred import deferred_attributes, register_type, registered_type
from nanocmd_core.mdm.commands import BUILTIN_REQUEST_TYPES
from nanocmd_core.mdm.errors import MDMResponseError, ReportParseError, validation_summary

if TYPE_CHECKING:
    from nanocmd_core.mdm.deferred_responses import (
        CertificateListItem,
        CertificateListResponse,
        DeviceConfiguredResponse,
        DeviceInformationResponse,
        DeviceLockResponse,
        InstallApplicationResponse,
        InstalledApplicationListItem,
        InstalledApplicationListResponse,
        InstallProfileResponse,
        ProfileListItem,
        ProfileListResponse,
        QueryResponses,
        RemoveProfileResponse,
        RotateFileVaultKeyResponse,
        RotateResult,
        SecurityInfo,
        SecurityInfoResponse,
    )

__all__ = [
    "RESPONSE_TYPES",
    "VALID_STATUSES",
    "CertificateListItem",
    "CertificateListResponse",
    "CommandResponse",
    "DeviceConfiguredResponse",
    "DeviceInformationResponse",
    "DeviceLockResponse",
    "EnrollmentIdentity",
    "ErrorChainItem",
    "InstallApplicationResponse",
    "InstallProfileResponse",
    "InstalledApplicationListItem",
    "InstalledApplicationListResponse",
    "MDMResponseError",
    "ProfileListItem",
    "ProfileListResponse",
    "QueryResponses",
    "RemoveProfileResponse",
    "ReportParseError",
    "RotateFileVaultKeyResponse",
    "RotateResult",
    "SecurityInfo",
    "SecurityInfoResponse",
    "load_plist_dict",
    "parse_report",
    "parse_response",
    "register_response",
    "response_type_for",
]

VALID_STATUSES = frozenset({"Acknowledged", "Idle", "NotNow"})
"""Statuses that are not failures (workflows.md §1.6)."""

_DEFERRED_MODULE = "nanocmd_core.mdm.deferred_responses"
_DEFERRED = dict.fromkeys(
    [f"{t}Response" for t in BUILTIN_REQUEST_TYPES]  # one each, in ``deferred_responses``
    + [
        "CertificateListItem",
        "InstalledApplicationListItem",
        "ProfileListItem",
        "QueryResponses",
        "RotateResult",
        "SecurityInfo",
    ],
    _DEFERRED_MODULE,
)
"""Models of this module defined in ``deferred_responses``, imported on first access: name → module."""


__getattr__ = deferred_attributes(__name__, _DEFERRED)


class _AppleDict(BaseModel):
    """Base of the plist-backed models: Apple keys via aliases, unknown keys kept.

    ``protected_namespaces=()`` because Apple's ``ModelName`` maps to ``model_name``.
    """

    model_config = ConfigDict(populate_by_name=True, extra="allow", protected_namespaces=(), defer_build=True)


class ErrorChainItem(_AppleDict):
    """One entry of a report's ``ErrorChain``."""

    error_code: int = Field(default=0, alias="ErrorCode")
    error_domain: str = Field(default="", alias="ErrorDomain")
    localized_description: str = Field(default="", alias="LocalizedDescription")
    us_english_description: str = Field(default="", alias="USEnglishDescription")

    def describe(self) -> str:
        """``<desc> (<domain>, <code>)``, preferring the English text (workflows.md §1.6)."""
        desc = self.us_english_description or self.localized_description
        return f"{desc} ({self.error_domain}, {self.error_code})"


class EnrollmentIdentity(_AppleDict):
    """Who sent a report or a check-in: the enrollment identifiers every device message carries."""

    udid: str = Field(default="", alias="UDID")
    user_id: str = Field(default="", alias="UserID")
    user_short_name: str = Field(default="", alias="UserShortName")
    user_long_name: str = Field(default="", alias="UserLongName")
    enrollment_id: str = Field(default="", alias="EnrollmentID")
    enrollment_user_id: str = Field(default="", alias="EnrollmentUserID")


class CommandResponse(EnrollmentIdentity):
    """The fields every report carries; also the result type of unknown request types."""

    request_type: ClassVar[str] = ""

    command_uuid: str = Field(default="", alias="CommandUUID")
    status: str = Field(default="", alias="Status")
    not_on_console: bool = Field(default=False, alias="NotOnConsole")
    error_chain: list[ErrorChainItem] | None = Field(default=None, alias="ErrorChain")

    raw: bytes = Field(default=b"", exclude=True, repr=False)
    """The report bytes as received; set by ``parse_response``, never dumped."""

    def validate_status(self) -> None:
        """Raise ``MDMResponseError`` unless the report is a success (workflows.md §1.6).

        Valid iff there is no ``ErrorChain`` key and the status is Acknowledged, Idle or NotNow.
        The message reproduces the Go text, chain rendered last to first.
        """
        if self.error_chain is None and self.status in VALID_STATUSES:
            return
        if self.error_chain is None:
            chain = "<nil>"
        elif not self.error_chain:
            chain = "no items in error chain"
        else:
            chain = ": ".join(item.describe() for item in reversed(self.error_chain))
        raise MDMResponseError(f"MDM error for status {self.status}: {chain}", self.status)

    @property
    def completed(self) -> bool:
        """Whether this report finishes its command (engine.md CR-4): any status but empty/NotNow."""
        return bool(self.status) and self.status != "NotNow"


R = TypeVar("R", bound=CommandResponse)

RESPONSE_TYPES: dict[str, type[CommandResponse]] = {}


def register_response(cls: type[R]) -> type[R]:
    """Class decorator: parse reports of ``cls.request_type`` as ``cls``."""
    return register_type(RESPONSE_TYPES, cls)


def register_builtin(cls: type[R]) -> type[R]:
    """``register_response`` for the built-in types ``deferred_responses`` defines on first use: a
    type registered for the request type meanwhile stays."""
    return register_type(RESPONSE_TYPES, cls, builtin=True)


def response_type_for(request_type: str) -> type[CommandResponse]:
    """The registered response class, or the generic ``CommandResponse`` for unknown types."""
    cls = registered_type(RESPONSE_TYPES, request_type, BUILTIN_REQUEST_TYPES, _DEFERRED_MODULE)
    return cls or CommandResponse


def load_plist_dict(raw: bytes, what: str = "report") -> dict[str, Any]:
    """Decode device plist bytes (XML or binary) to the top-level dictionary.

    Device input is untrusted, and plistlib raises several unrelated exception types for
    garbage, so everything is funnelled into ``ReportParseError``; ``what`` names the input in
    the message.
    """
    if not raw:
        raise ReportParseError(f"empty {what}")
    try:
        data = plistlib.loads(raw)
    except Exception as exc:
        raise ReportParseError(f"{what} is not a valid plist: {exc}") from exc
    if not isinstance(data, dict):
        raise ReportParseError(f"{what} plist is a {type(data).__name__}, not a dictionary")
    return data


def parse_report(raw: bytes) -> dict[str, Any]:
    """Decode a report plist to its top-level dictionary (``ReportParseError`` if it is not one)."""
    return load_plist_dict(raw, "report")


def parse_response(request_type: str, raw: bytes) -> CommandResponse:
    """Parse a report as the response type of ``request_type``; ``.raw`` keeps the bytes."""
    cls = response_type_for(request_type)
    data = parse_report(raw)
    try:
        response = cls.model_validate(data)
    except ValidationError as exc:
        label = request_type or "command"
        raise ReportParseError(f"invalid {label} report: {validation_summary(exc)}") from exc
    response.raw = raw
    return response
