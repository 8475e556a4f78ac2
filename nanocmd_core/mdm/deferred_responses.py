"""The built-in response types no built-in workflow names: imported from
``nanocmd_core.mdm.responses`` on first use (issue 14: cold starts), when a report of one of
their request types is parsed or one of them is looked up there. Import them from there."""

# Real annotations (no ``from __future__ import annotations``): pydantic would otherwise evaluate
# every annotation string when it creates a model class, at import (issue 14: cold starts).
from typing import ClassVar

from pydantic import Field

from nanocmd_core.mdm.responses import CommandResponse, _AppleDict, register_builtin

# --- InstalledApplicationList ------------------------------------------------------------


class InstalledApplicationListItem(_AppleDict):
    """One installed application."""

    identifier: str | None = Field(default=None, alias="Identifier")
    name: str | None = Field(default=None, alias="Name")
    short_version: str | None = Field(default=None, alias="ShortVersion")
    version: str | None = Field(default=None, alias="Version")
    bundle_size: int | None = Field(default=None, alias="BundleSize")
    dynamic_size: int | None = Field(default=None, alias="DynamicSize")
    external_version_identifier: int | None = Field(default=None, alias="ExternalVersionIdentifier")
    is_validated: bool | None = Field(default=None, alias="IsValidated")
    installing: bool | None = Field(default=None, alias="Installing")
    has_update_available: bool | None = Field(default=None, alias="HasUpdateAvailable")


@register_builtin
class InstalledApplicationListResponse(CommandResponse):
    """Report of InstalledApplicationList."""

    request_type: ClassVar[str] = "InstalledApplicationList"

    installed_application_list: list[InstalledApplicationListItem] = Field(
        default=[], alias="InstalledApplicationList"
    )


# --- status-only and near status-only responses ------------------------------------------


@register_builtin
class RemoveProfileResponse(CommandResponse):
    """Report of RemoveProfile (status only)."""

    request_type: ClassVar[str] = "RemoveProfile"


@register_builtin
class DeviceConfiguredResponse(CommandResponse):
    """Report of DeviceConfigured (status only)."""

    request_type: ClassVar[str] = "DeviceConfigured"


@register_builtin
class InstallApplicationResponse(CommandResponse):
    """Report of InstallApplication: status, plus the app's identifier and install state."""

    request_type: ClassVar[str] = "InstallApplication"

    identifier: str | None = Field(default=None, alias="Identifier")
    state: str | None = Field(default=None, alias="State")
