"""The built-in typed commands: imported from ``nanocmd_core.mdm.commands`` on first use (issue 14:
cold starts), when one of them is looked up there (PEP 562) or a command type is looked up by a
built-in request type (``command_type_for``). Import them from there."""

# Real annotations (no ``from __future__ import annotations``): pydantic would otherwise evaluate
# every annotation string when it creates a model class, at import (issue 14: cold starts).
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from nanocmd_core.mdm.commands import Command, register_builtin_command


@register_builtin_command
class DeviceInformation(Command):
    """Ask the device for the listed query keys (Apple: DeviceInformation)."""

    request_type: ClassVar[str] = "DeviceInformation"

    queries: list[str] | None = Field(default=None, alias="Queries")


@register_builtin_command
class SecurityInfo(Command):
    """Ask for the security state (SIP, FileVault, ...); no payload keys."""

    request_type: ClassVar[str] = "SecurityInfo"


@register_builtin_command
class ProfileList(Command):
    """List installed configuration profiles."""

    request_type: ClassVar[str] = "ProfileList"

    managed_only: bool | None = Field(default=None, alias="ManagedOnly")


@register_builtin_command
class InstallProfile(Command):
    """Install a configuration profile; ``payload`` is the (possibly signed) .mobileconfig bytes."""

    request_type: ClassVar[str] = "InstallProfile"

    payload: bytes = Field(alias="Payload")


@register_builtin_command
class RemoveProfile(Command):
    """Remove the profile with this ``PayloadIdentifier``."""

    request_type: ClassVar[str] = "RemoveProfile"

    identifier: str = Field(alias="Identifier")


@register_builtin_command
class InstallApplication(Command):
    """Install an app, by manifest URL (enterprise apps) or by identifier / store ID."""

    request_type: ClassVar[str] = "InstallApplication"

    manifest_url: str | None = Field(default=None, alias="ManifestURL")
    management_flags: int | None = Field(default=None, alias="ManagementFlags")
    identifier: str | None = Field(default=None, alias="Identifier")
    itunes_store_id: int | None = Field(default=None, alias="iTunesStoreID")


@register_builtin_command
class DeviceConfigured(Command):
    """Let a device waiting in Setup Assistant (AwaitingConfiguration) continue; no payload keys."""

    request_type: ClassVar[str] = "DeviceConfigured"


@register_builtin_command
class CertificateList(Command):
    """List installed certificates."""

    request_type: ClassVar[str] = "CertificateList"

    managed_only: bool | None = Field(default=None, alias="ManagedOnly")


@register_builtin_command
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


@register_builtin_command
class RotateFileVaultKey(Command):
    """Rotate the FileVault recovery key; the new key comes back encrypted to the reply certificate."""

    request_type: ClassVar[str] = "RotateFileVaultKey"

    key_type: str = Field(alias="KeyType")
    file_vault_unlock: FileVaultUnlock = Field(alias="FileVaultUnlock")
    new_certificate: bytes | None = Field(default=None, alias="NewCertificate")
    reply_encryption_certificate: bytes | None = Field(default=None, alias="ReplyEncryptionCertificate")


@register_builtin_command
class InstalledApplicationList(Command):
    """List installed apps, optionally only the given bundle IDs or only managed apps."""

    request_type: ClassVar[str] = "InstalledApplicationList"

    identifiers: list[str] | None = Field(default=None, alias="Identifiers")
    managed_apps_only: bool | None = Field(default=None, alias="ManagedAppsOnly")
