"""Apple MDM commands: typed models that serialise to the command plist.

A command plist is ``{"CommandUUID": <uuid>, "Command": {"RequestType": <type>, ...payload}}``
(workflows.md §1.4). Python field names are snake_case; ``alias`` carries Apple's key. Optional
keys left unset (None) are omitted from the plist, never sent as false or empty; ``bytes``
values become plist ``<data>``.

``RawCommand`` wraps a command that only exists as plist bytes (delayed steps read back from
storage, custom commands from the API) so the engine can treat both kinds alike.
"""

# Real annotations (no ``from __future__ import annotations``): pydantic would otherwise evaluate
# every annotation string when it creates a model class, at import (issue 14: cold starts).
import copy
import plistlib
import uuid
from typing import Any, ClassVar, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
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
    "new_command_uuid",
    "register_command",
]


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


def register_command(cls: type[C]) -> type[C]:
    """Class decorator: make a command type known by its request type (library users add theirs)."""
    if not cls.request_type:
        raise ValueError(f"{cls.__name__} has an empty request_type")
    COMMAND_TYPES[cls.request_type] = cls
    return cls


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


@register_command
class DeviceInformation(Command):
    """Ask the device for the listed query keys (Apple: DeviceInformation)."""

    request_type: ClassVar[str] = "DeviceInformation"

    queries: list[str] | None = Field(default=None, alias="Queries")


@register_command
class SecurityInfo(Command):
    """Ask for the security state (SIP, FileVault, ...); no payload keys."""

    request_type: ClassVar[str] = "SecurityInfo"


@register_command
class ProfileList(Command):
    """List installed configuration profiles."""

    request_type: ClassVar[str] = "ProfileList"

    managed_only: bool | None = Field(default=None, alias="ManagedOnly")


@register_command
class InstallProfile(Command):
    """Install a configuration profile; ``payload`` is the (possibly signed) .mobileconfig bytes."""

    request_type: ClassVar[str] = "InstallProfile"

    payload: bytes = Field(alias="Payload")


@register_command
class RemoveProfile(Command):
    """Remove the profile with this ``PayloadIdentifier``."""

    request_type: ClassVar[str] = "RemoveProfile"

    identifier: str = Field(alias="Identifier")


@register_command
class InstallApplication(Command):
    """Install an app, by manifest URL (enterprise apps) or by identifier / store ID."""

    request_type: ClassVar[str] = "InstallApplication"

    manifest_url: str | None = Field(default=None, alias="ManifestURL")
    management_flags: int | None = Field(default=None, alias="ManagementFlags")
    identifier: str | None = Field(default=None, alias="Identifier")
    itunes_store_id: int | None = Field(default=None, alias="iTunesStoreID")


@register_command
class DeviceConfigured(Command):
    """Let a device waiting in Setup Assistant (AwaitingConfiguration) continue; no payload keys."""

    request_type: ClassVar[str] = "DeviceConfigured"


@register_command
class CertificateList(Command):
    """List installed certificates."""

    request_type: ClassVar[str] = "CertificateList"

    managed_only: bool | None = Field(default=None, alias="ManagedOnly")


@register_command
class DeviceLock(Command):
    """Lock the device; on macOS ``pin`` is the 6-digit Find My PIN."""

    request_type: ClassVar[str] = "DeviceLock"

    pin: str | None = Field(default=None, alias="PIN")
    message: str | None = Field(default=None, alias="Message")
    phone_number: str | None = Field(default=None, alias="PhoneNumber")


class FileVaultUnlock(BaseModel):
    """The ``FileVaultUnlock`` dictionary of RotateFileVaultKey.

    ``Password`` is the current personal recovery key (or a user password). Extra keys are kept
    so a caller can send what a newer OS accepts.
    """

    model_config = ConfigDict(populate_by_name=True, extra="allow", defer_build=True)

    password: str | None = Field(default=None, alias="Password")
    private_key_export: bytes | None = Field(default=None, alias="PrivateKeyExport")
    private_key_export_password: str | None = Field(default=None, alias="PrivateKeyExportPassword")


@register_command
class RotateFileVaultKey(Command):
    """Rotate the FileVault recovery key; the new key comes back encrypted to the reply certificate."""

    request_type: ClassVar[str] = "RotateFileVaultKey"

    key_type: str = Field(alias="KeyType")
    file_vault_unlock: FileVaultUnlock = Field(alias="FileVaultUnlock")
    new_certificate: bytes | None = Field(default=None, alias="NewCertificate")
    reply_encryption_certificate: bytes | None = Field(default=None, alias="ReplyEncryptionCertificate")


@register_command
class InstalledApplicationList(Command):
    """List installed apps, optionally only the given bundle IDs or only managed apps."""

    request_type: ClassVar[str] = "InstalledApplicationList"

    identifiers: list[str] | None = Field(default=None, alias="Identifiers")
    managed_apps_only: bool | None = Field(default=None, alias="ManagedAppsOnly")
