"""Apple MDM commands: typed models that serialise to the command plist.

A command plist is ``{"CommandUUID": <uuid>, "Command": {"RequestType": <type>, ...payload}}``
(workflows.md §1.4). Python field names are snake_case; ``alias`` carries Apple's key. Optional
keys left unset (None) are omitted from the plist, never sent as false or empty; ``bytes``
values become plist ``<data>``.

``RawCommand`` wraps a command that only exists as plist bytes (delayed steps read back from
storage, custom commands from the API) so the engine can treat both kinds alike.

The typed built-in commands (``DeviceInformation`` ...) are defined in ``command_types``, imported
on first use (first access here, PEP 562, or ``command_type_for`` of a built-in request type), not
at every function's import (issue 14: cold starts). Import them from here.
"""

# Real annotations (no ``from __future__ import annotations``): pydantic would otherwise evaluate
# every annotation string when it creates a model class, at import (issue 14: cold starts).
import copy
import plistlib
import uuid
from typing import TYPE_CHECKING, Any, ClassVar, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from nanocmd_core.deferred import deferred_attributes, register_type, registered_type

if TYPE_CHECKING:
    from nanocmd_core.mdm.command_types import (
        CertificateList,
        DeviceConfigured,
        DeviceInformation,
        DeviceLock,
        FileVaultUnlock,
        InstallApplication,
        InstalledApplicationList,
        InstallProfile,
        ProfileList,
        RemoveProfile,
        RotateFileVaultKey,
        SecurityInfo,
    )

__all__ = [
    "BUILTIN_REQUEST_TYPES",
    "COMMAND_TYPES",
    "AnyCommand",
    "CertificateList",
    "Command",
    "DeviceConfigured",
    "DeviceInformation",
    "DeviceLock",
    "FileVaultUnlock",
    "InstallApplication",
    "InstallProfile",
    "InstalledApplicationList",
    "ProfileList",
    "RawCommand",
    "RemoveProfile",
    "RotateFileVaultKey",
    "SecurityInfo",
    "command_plist",
    "command_type_for",
    "new_command_uuid",
    "register_command",
]

BUILTIN_REQUEST_TYPES = (
    "CertificateList",
    "DeviceConfigured",
    "DeviceInformation",
    "DeviceLock",
    "InstallApplication",
    "InstallProfile",
    "InstalledApplicationList",
    "ProfileList",
    "RemoveProfile",
    "RotateFileVaultKey",
    "SecurityInfo",
)
"""Request types of the built-in commands, each defined (and registered on import) in ``command_types``
by a class of that name."""

_DEFERRED_MODULE = "nanocmd_core.mdm.command_types"
_DEFERRED = dict.fromkeys([*BUILTIN_REQUEST_TYPES, "FileVaultUnlock"], _DEFERRED_MODULE)
"""Models of this module defined in ``command_types``, imported on first access: name → module."""


__getattr__ = deferred_attributes(__name__, _DEFERRED)


def new_command_uuid() -> str:
    """A fresh command UUID: random (version 4), lower-case, hyphenated (workflows.md §1.4)."""
    return str(uuid.uuid4())


def command_plist(command_uuid: str, request_type: str, payload: dict[str, Any]) -> bytes:
    """Serialise one command to its XML plist, checking the two identifiers the engine keys on.

    EQ-3: a command without a UUID or request type cannot be tracked, so it must never be sent.
    """
    if not command_uuid:
        raise ValueError("empty command uuid")
    if not request_type:
        raise ValueError("empty request type")
    inner: dict[str, Any] = {"RequestType": request_type, **payload}
    return plistlib.dumps({"CommandUUID": command_uuid, "Command": inner}, fmt=plistlib.FMT_XML)


class Command(BaseModel):
    """Base of the typed commands; a subclass sets ``request_type`` and declares its payload fields.

    ``extra="forbid"`` so a misspelt field name fails at construction instead of silently
    dropping a key from the command sent to devices.
    """

    model_config = ConfigDict(populate_by_name=True, extra="forbid", defer_build=True)

    request_type: ClassVar[str] = ""

    command_uuid: str = Field(default_factory=new_command_uuid, alias="CommandUUID")

    def payload_dict(self) -> dict[str, Any]:
        """The Apple keys of the inner ``Command`` dict, without ``RequestType``; unset keys omitted.

        (Named ``payload_dict`` rather than ``payload`` because ``InstallProfile`` has a field
        called ``payload``, Apple's ``Payload`` key.)
        """
        return self.model_dump(by_alias=True, exclude_none=True, exclude={"command_uuid"})

    def to_plist(self) -> bytes:
        """The full command as an XML plist, ready to enqueue on the MDM server."""
        return command_plist(self.command_uuid, self.request_type, self.payload_dict())

    def with_uuid(self, command_uuid: str) -> Self:
        """A copy carrying another command UUID (the engine gives each chunk of IDs its own)."""
        return self.model_copy(update={"command_uuid": command_uuid})


C = TypeVar("C", bound=Command)

COMMAND_TYPES: dict[str, type[Command]] = {}
"""Command types by request type: those registered so far (the built-in ones once ``command_types``
is imported, on first use); ``command_type_for`` looks one up, importing the built-in ones if need be."""


def register_command(cls: type[C]) -> type[C]:
    """Class decorator: make a command type known by its request type (library users add theirs)."""
    return register_type(COMMAND_TYPES, cls)


def register_builtin_command(cls: type[C]) -> type[C]:
    """``register_command`` for the built-in types ``command_types`` defines on first use: a type
    registered for the request type meanwhile stays."""
    return register_type(COMMAND_TYPES, cls, builtin=True)


def command_type_for(request_type: str) -> type[Command] | None:
    """The command type registered for ``request_type`` (a built-in one imported on first use), or
    None for an unknown request type."""
    return registered_type(COMMAND_TYPES, request_type, BUILTIN_REQUEST_TYPES, _DEFERRED_MODULE)


class RawCommand:
    """A command known only as plist bytes (delayed steps, custom commands).

    The bytes are kept as given when they are already XML so what was stored is what is sent;
    only ``with_uuid`` (or a binary plist) makes us re-serialise.
    """

    __slots__ = ("_command", "_raw")

    def __init__(self, command: dict[str, Any], raw: bytes | None = None) -> None:
        uuid_value = command.get("CommandUUID")
        if not isinstance(uuid_value, str) or not uuid_value:
            raise ValueError("empty command uuid")
        inner = command.get("Command")
        if not isinstance(inner, dict):
            raise ValueError("invalid command: missing Command dictionary")
        request_type = inner.get("RequestType")
        if not isinstance(request_type, str) or not request_type:
            raise ValueError("empty request type")
        self._command = command
        self._raw = raw if raw is not None else plistlib.dumps(command, fmt=plistlib.FMT_XML)

    @classmethod
    def from_plist(cls, raw: bytes) -> "RawCommand":
        """Parse and check command plist bytes (XML or binary)."""
        if not raw:
            raise ValueError("empty command plist")
        try:
            command = plistlib.loads(raw)
        except Exception as exc:  # plistlib raises several unrelated types for bad input
            raise ValueError(f"invalid command plist: {exc}") from exc
        if not isinstance(command, dict):
            raise ValueError("invalid command plist: top level is not a dictionary")
        keep = raw if not raw.lstrip().startswith(b"bplist") else None
        return cls(command, keep)

    @property
    def command_uuid(self) -> str:
        """The ``CommandUUID`` of the plist."""
        value: str = self._command["CommandUUID"]
        return value

    @property
    def request_type(self) -> str:
        """The ``Command.RequestType`` of the plist."""
        value: str = self._command["Command"]["RequestType"]
        return value

    def payload_dict(self) -> dict[str, Any]:
        """The inner ``Command`` keys except ``RequestType`` (a copy), like ``Command.payload_dict``."""
        inner: dict[str, Any] = self._command["Command"]
        return {k: copy.deepcopy(v) for k, v in inner.items() if k != "RequestType"}

    def to_plist(self) -> bytes:
        """The command plist bytes (XML)."""
        return self._raw

    def with_uuid(self, command_uuid: str) -> "RawCommand":
        """A copy whose ``CommandUUID`` is replaced; the plist is re-serialised."""
        command = copy.deepcopy(self._command)
        command["CommandUUID"] = command_uuid
        return RawCommand(command)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RawCommand):
            return NotImplemented
        return self._command == other._command

    __hash__ = None  # type: ignore[assignment]  # mutable-content value object

    def __repr__(self) -> str:
        return f"RawCommand(command_uuid={self.command_uuid!r}, request_type={self.request_type!r})"


AnyCommand = Command | RawCommand
"""What the engine accepts in a step: a typed command or raw plist bytes wrapped as RawCommand."""
