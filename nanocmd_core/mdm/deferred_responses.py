"""The built-in typed response types: imported from ``nanocmd_core.mdm.responses`` on first use
(issue 14: cold starts), when a report of one of their request types is parsed or one of them is
looked up there. Import them from there."""

# Real annotations (no ``from __future__ import annotations``): pydantic would otherwise evaluate
# every annotation string when it creates a model class, at import (issue 14: cold starts).
from typing import Any, ClassVar

from pydantic import Field

from nanocmd_core.mdm.responses import CommandResponse, _AppleDict, register_builtin

# --- DeviceInformation -------------------------------------------------------------------


class QueryResponses(_AppleDict):
    """``QueryResponses`` of DeviceInformation; None = the device did not return that key."""

    udid: str | None = Field(default=None, alias="UDID")
    serial_number: str | None = Field(default=None, alias="SerialNumber")
    model: str | None = Field(default=None, alias="Model")
    model_name: str | None = Field(default=None, alias="ModelName")
    model_number: str | None = Field(default=None, alias="ModelNumber")
    product_name: str | None = Field(default=None, alias="ProductName")
    device_name: str | None = Field(default=None, alias="DeviceName")
    build_version: str | None = Field(default=None, alias="BuildVersion")
    os_version: str | None = Field(default=None, alias="OSVersion")
    supplemental_build_version: str | None = Field(default=None, alias="SupplementalBuildVersion")
    ethernet_mac: str | None = Field(default=None, alias="EthernetMAC")
    wifi_mac: str | None = Field(default=None, alias="WiFiMAC")
    bluetooth_mac: str | None = Field(default=None, alias="BluetoothMAC")
    imei: str | None = Field(default=None, alias="IMEI")
    meid: str | None = Field(default=None, alias="MEID")
    host_name: str | None = Field(default=None, alias="HostName")
    local_host_name: str | None = Field(default=None, alias="LocalHostName")
    device_capacity: float | None = Field(default=None, alias="DeviceCapacity")
    available_device_capacity: float | None = Field(default=None, alias="AvailableDeviceCapacity")
    battery_level: float | None = Field(default=None, alias="BatteryLevel")
    is_supervised: bool | None = Field(default=None, alias="IsSupervised")
    is_apple_silicon: bool | None = Field(default=None, alias="IsAppleSilicon")
    has_battery: bool | None = Field(default=None, alias="HasBattery")
    supports_lom_device: bool | None = Field(default=None, alias="SupportsLOMDevice")
    is_multi_user: bool | None = Field(default=None, alias="IsMultiUser")
    is_activation_lock_enabled: bool | None = Field(default=None, alias="IsActivationLockEnabled")


@register_builtin
class DeviceInformationResponse(CommandResponse):
    """Report of DeviceInformation."""

    request_type: ClassVar[str] = "DeviceInformation"

    query_responses: QueryResponses = Field(default_factory=lambda: QueryResponses(), alias="QueryResponses")


# --- SecurityInfo ------------------------------------------------------------------------


class SecurityInfo(_AppleDict):
    """The ``SecurityInfo`` dictionary (macOS and iOS keys); None = not reported."""

    system_integrity_protection_enabled: bool | None = Field(
        default=None, alias="SystemIntegrityProtectionEnabled"
    )
    authenticated_root_volume_enabled: bool | None = Field(
        default=None, alias="AuthenticatedRootVolumeEnabled"
    )
    fde_enabled: bool | None = Field(default=None, alias="FDE_Enabled")
    fde_has_personal_recovery_key: bool | None = Field(default=None, alias="FDE_HasPersonalRecoveryKey")
    fde_has_institutional_recovery_key: bool | None = Field(
        default=None, alias="FDE_HasInstitutionalRecoveryKey"
    )
    fde_personal_recovery_key_cms: bytes | None = Field(default=None, alias="FDE_PersonalRecoveryKeyCMS")
    fde_personal_recovery_key_device_key: str | None = Field(
        default=None, alias="FDE_PersonalRecoveryKeyDeviceKey"
    )
    remote_desktop_enabled: bool | None = Field(default=None, alias="RemoteDesktopEnabled")
    is_recovery_lock_enabled: bool | None = Field(default=None, alias="IsRecoveryLockEnabled")
    bootstrap_token_allowed_for_authentication: str | None = Field(
        default=None, alias="BootstrapTokenAllowedForAuthentication"
    )
    bootstrap_token_required_for_kernel_extension_approval: bool | None = Field(
        default=None, alias="BootstrapTokenRequiredForKernelExtensionApproval"
    )
    bootstrap_token_required_for_software_update: bool | None = Field(
        default=None, alias="BootstrapTokenRequiredForSoftwareUpdate"
    )
    firewall_settings: dict[str, Any] | None = Field(default=None, alias="FirewallSettings")
    firmware_password_status: dict[str, Any] | None = Field(default=None, alias="FirmwarePasswordStatus")
    management_status: dict[str, Any] | None = Field(default=None, alias="ManagementStatus")
    secure_boot: dict[str, Any] | None = Field(default=None, alias="SecureBoot")
    hardware_encryption_caps: int | None = Field(default=None, alias="HardwareEncryptionCaps")
    passcode_present: bool | None = Field(default=None, alias="PasscodePresent")
    passcode_compliant: bool | None = Field(default=None, alias="PasscodeCompliant")
    passcode_compliant_with_profiles: bool | None = Field(default=None, alias="PasscodeCompliantWithProfiles")


@register_builtin
class SecurityInfoResponse(CommandResponse):
    """Report of SecurityInfo (a NotNow report carries no ``SecurityInfo`` dict)."""

    request_type: ClassVar[str] = "SecurityInfo"

    security_info: SecurityInfo = Field(default_factory=lambda: SecurityInfo(), alias="SecurityInfo")


# --- ProfileList -------------------------------------------------------------------------


class ProfileListItem(_AppleDict):
    """One installed profile."""

    payload_identifier: str | None = Field(default=None, alias="PayloadIdentifier")
    payload_uuid: str | None = Field(default=None, alias="PayloadUUID")
    payload_display_name: str | None = Field(default=None, alias="PayloadDisplayName")
    payload_description: str | None = Field(default=None, alias="PayloadDescription")
    payload_organization: str | None = Field(default=None, alias="PayloadOrganization")
    payload_version: int | None = Field(default=None, alias="PayloadVersion")
    payload_removal_disallowed: bool | None = Field(default=None, alias="PayloadRemovalDisallowed")
    has_removal_passcode: bool | None = Field(default=None, alias="HasRemovalPasscode")
    is_encrypted: bool | None = Field(default=None, alias="IsEncrypted")
    is_managed: bool | None = Field(default=None, alias="IsManaged")
    payload_content: list[dict[str, Any]] | None = Field(default=None, alias="PayloadContent")
    signer_certificates: list[bytes] | None = Field(default=None, alias="SignerCertificates")


@register_builtin
class ProfileListResponse(CommandResponse):
    """Report of ProfileList."""

    request_type: ClassVar[str] = "ProfileList"

    profile_list: list[ProfileListItem] = Field(default=[], alias="ProfileList")


# --- CertificateList ---------------------------------------------------------------------


class CertificateListItem(_AppleDict):
    """One installed certificate; ``data`` is the DER certificate."""

    common_name: str | None = Field(default=None, alias="CommonName")
    data: bytes | None = Field(default=None, alias="Data")
    is_identity: bool | None = Field(default=None, alias="IsIdentity")


@register_builtin
class CertificateListResponse(CommandResponse):
    """Report of CertificateList."""

    request_type: ClassVar[str] = "CertificateList"

    certificate_list: list[CertificateListItem] = Field(default=[], alias="CertificateList")


# --- DeviceLock --------------------------------------------------------------------------


@register_builtin
class DeviceLockResponse(CommandResponse):
    """Report of DeviceLock."""

    request_type: ClassVar[str] = "DeviceLock"

    message_result: str | None = Field(default=None, alias="MessageResult")


# --- RotateFileVaultKey ------------------------------------------------------------------


class RotateResult(_AppleDict):
    """``RotateResult``: the new recovery key, CMS-encrypted to the reply certificate."""

    encrypted_new_recovery_key: bytes | None = Field(default=None, alias="EncryptedNewRecoveryKey")


@register_builtin
class RotateFileVaultKeyResponse(CommandResponse):
    """Report of RotateFileVaultKey."""

    request_type: ClassVar[str] = "RotateFileVaultKey"

    rotate_result: RotateResult = Field(default_factory=lambda: RotateResult(), alias="RotateResult")


# --- InstallProfile ----------------------------------------------------------------------


@register_builtin
class InstallProfileResponse(CommandResponse):
    """Report of InstallProfile (status only)."""

    request_type: ClassVar[str] = "InstallProfile"


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
