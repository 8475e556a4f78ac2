"""Command responses: typed parsing per request type, status validation, parse errors.

The report plists are written by hand after Apple's DeviceManagement schema, as a device sends
them (XML, tab-indented).
"""

from __future__ import annotations

import base64
import plistlib
from typing import ClassVar

import pytest
from pydantic import Field

from nanocmd_core.mdm import responses
from nanocmd_core.mdm.commands import BUILTIN_REQUEST_TYPES, command_type_for
from nanocmd_core.mdm.errors import MDMParseError
from nanocmd_core.mdm.responses import (
    RESPONSE_TYPES,
    CertificateListResponse,
    CommandResponse,
    DeviceConfiguredResponse,
    DeviceInformationResponse,
    DeviceLockResponse,
    ErrorChainItem,
    InstallApplicationResponse,
    InstalledApplicationListResponse,
    InstallProfileResponse,
    MDMResponseError,
    ProfileListResponse,
    RemoveProfileResponse,
    ReportParseError,
    RotateFileVaultKeyResponse,
    SecurityInfoResponse,
    parse_report,
    parse_response,
    register_response,
    response_type_for,
)

HEADER = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">\n'
    '<plist version="1.0">\n<dict>\n'
)


def report(body: str, status: str = "Acknowledged", uuid: str = "cmd-0001", udid: str = "UDID-1") -> bytes:
    """A report plist: the common keys plus ``body`` (already-formatted key/value elements)."""
    common = (
        f"\t<key>CommandUUID</key>\n\t<string>{uuid}</string>\n"
        f"\t<key>Status</key>\n\t<string>{status}</string>\n"
        f"\t<key>UDID</key>\n\t<string>{udid}</string>\n"
    )
    return (HEADER + common + body + "</dict>\n</plist>\n").encode()


DEVINFO = report(
    """\t<key>QueryResponses</key>
\t<dict>
\t\t<key>AvailableDeviceCapacity</key>
\t\t<real>201.5</real>
\t\t<key>BuildVersion</key>
\t\t<string>23E224</string>
\t\t<key>DeviceName</key>
\t\t<string>Lab Mac</string>
\t\t<key>EthernetMAC</key>
\t\t<string>a0:ce:c8:00:00:01</string>
\t\t<key>HasBattery</key>
\t\t<false/>
\t\t<key>IsAppleSilicon</key>
\t\t<true/>
\t\t<key>IsMultiUser</key>
\t\t<false/>
\t\t<key>IsSupervised</key>
\t\t<true/>
\t\t<key>Model</key>
\t\t<string>Mac14,3</string>
\t\t<key>ModelName</key>
\t\t<string>Mac mini</string>
\t\t<key>OSVersion</key>
\t\t<string>14.4.1</string>
\t\t<key>ProductName</key>
\t\t<string>Mac14,3</string>
\t\t<key>SerialNumber</key>
\t\t<string>C02XL0AAJGH5</string>
\t\t<key>SupportsLOMDevice</key>
\t\t<false/>
\t\t<key>UDID</key>
\t\t<string>UDID-1</string>
\t\t<key>OSUpdateSettings</key>
\t\t<dict>
\t\t\t<key>AutoCheckEnabled</key>
\t\t\t<true/>
\t\t</dict>
\t</dict>
"""
)


def test_device_information_report() -> None:
    resp = parse_response("DeviceInformation", DEVINFO)
    assert isinstance(resp, DeviceInformationResponse)
    assert resp.request_type == "DeviceInformation"
    assert (resp.command_uuid, resp.status, resp.udid) == ("cmd-0001", "Acknowledged", "UDID-1")
    qr = resp.query_responses
    assert qr.serial_number == "C02XL0AAJGH5"
    assert qr.model == "Mac14,3"
    assert qr.model_name == "Mac mini"
    assert qr.product_name == "Mac14,3"
    assert qr.device_name == "Lab Mac"
    assert qr.build_version == "23E224"
    assert qr.os_version == "14.4.1"
    assert qr.ethernet_mac == "a0:ce:c8:00:00:01"
    assert qr.udid == "UDID-1"
    assert qr.available_device_capacity == 201.5
    assert qr.is_supervised is True
    assert qr.is_apple_silicon is True
    assert qr.has_battery is False
    assert qr.supports_lom_device is False
    assert qr.is_multi_user is False
    # keys we do not model are kept
    assert qr.model_extra == {"OSUpdateSettings": {"AutoCheckEnabled": True}}
    assert resp.raw == DEVINFO


def test_absent_query_keys_are_none_and_not_in_fields_set() -> None:
    resp = parse_response(
        "DeviceInformation",
        report(
            "\t<key>QueryResponses</key>\n\t<dict>\n\t\t<key>Model</key>\n\t\t<string>iPad8,1</string>\n\t</dict>\n"
        ),
    )
    assert isinstance(resp, DeviceInformationResponse)
    qr = resp.query_responses
    assert qr.model == "iPad8,1"
    assert qr.serial_number is None
    assert qr.is_supervised is None
    assert qr.model_fields_set == {"model"}


def test_false_is_distinguishable_from_absent() -> None:
    resp = parse_response(
        "DeviceInformation",
        report(
            "\t<key>QueryResponses</key>\n\t<dict>\n\t\t<key>IsSupervised</key>\n\t\t<false/>\n\t</dict>\n"
        ),
    )
    assert isinstance(resp, DeviceInformationResponse)
    assert resp.query_responses.is_supervised is False
    assert resp.query_responses.has_battery is None


def test_not_now_report_without_payload_dict() -> None:
    resp = parse_response("DeviceInformation", report("", status="NotNow"))
    assert isinstance(resp, DeviceInformationResponse)
    assert "query_responses" not in resp.model_fields_set
    assert resp.query_responses.model is None
    assert not resp.completed
    resp.validate_status()  # NotNow is not a failure


SECINFO = report(
    """\t<key>SecurityInfo</key>
\t<dict>
\t\t<key>AuthenticatedRootVolumeEnabled</key>
\t\t<true/>
\t\t<key>BootstrapTokenAllowedForAuthentication</key>
\t\t<string>allowed</string>
\t\t<key>FDE_Enabled</key>
\t\t<true/>
\t\t<key>FDE_HasInstitutionalRecoveryKey</key>
\t\t<false/>
\t\t<key>FDE_HasPersonalRecoveryKey</key>
\t\t<true/>
\t\t<key>FDE_PersonalRecoveryKeyCMS</key>
\t\t<data>
\t\tMIAGCSqGSIb3DQEHA6CAMIACAQA=
\t\t</data>
\t\t<key>FDE_PersonalRecoveryKeyDeviceKey</key>
\t\t<string>C02XL0AAJGH5</string>
\t\t<key>FirewallSettings</key>
\t\t<dict>
\t\t\t<key>FirewallEnabled</key>
\t\t\t<true/>
\t\t</dict>
\t\t<key>SecureBoot</key>
\t\t<dict>
\t\t\t<key>SecureBootLevel</key>
\t\t\t<string>full</string>
\t\t</dict>
\t\t<key>SystemIntegrityProtectionEnabled</key>
\t\t<true/>
\t</dict>
"""
)


def test_security_info_report() -> None:
    resp = parse_response("SecurityInfo", SECINFO)
    assert isinstance(resp, SecurityInfoResponse)
    si = resp.security_info
    assert si.system_integrity_protection_enabled is True
    assert si.authenticated_root_volume_enabled is True
    assert si.fde_enabled is True
    assert si.fde_has_personal_recovery_key is True
    assert si.fde_has_institutional_recovery_key is False
    assert si.fde_personal_recovery_key_cms == base64.b64decode("MIAGCSqGSIb3DQEHA6CAMIACAQA=")
    assert si.fde_personal_recovery_key_device_key == "C02XL0AAJGH5"
    assert si.bootstrap_token_allowed_for_authentication == "allowed"
    assert si.firewall_settings == {"FirewallEnabled": True}
    assert si.secure_boot == {"SecureBootLevel": "full"}
    assert si.remote_desktop_enabled is None


def test_security_info_ios_keys() -> None:
    body = (
        "\t<key>SecurityInfo</key>\n\t<dict>\n"
        "\t\t<key>HardwareEncryptionCaps</key>\n\t\t<integer>3</integer>\n"
        "\t\t<key>PasscodeCompliant</key>\n\t\t<true/>\n"
        "\t\t<key>PasscodeCompliantWithProfiles</key>\n\t\t<true/>\n"
        "\t\t<key>PasscodePresent</key>\n\t\t<false/>\n"
        "\t</dict>\n"
    )
    resp = parse_response("SecurityInfo", report(body))
    assert isinstance(resp, SecurityInfoResponse)
    si = resp.security_info
    assert (si.hardware_encryption_caps, si.passcode_present, si.passcode_compliant) == (3, False, True)
    assert si.passcode_compliant_with_profiles is True
    assert si.fde_enabled is None


def test_profile_list_report() -> None:
    body = """\t<key>ProfileList</key>
\t<array>
\t\t<dict>
\t\t\t<key>HasRemovalPasscode</key>
\t\t\t<false/>
\t\t\t<key>IsEncrypted</key>
\t\t\t<false/>
\t\t\t<key>IsManaged</key>
\t\t\t<true/>
\t\t\t<key>PayloadContent</key>
\t\t\t<array>
\t\t\t\t<dict>
\t\t\t\t\t<key>PayloadIdentifier</key>
\t\t\t\t\t<string>com.example.wifi.payload</string>
\t\t\t\t\t<key>PayloadType</key>
\t\t\t\t\t<string>com.apple.wifi.managed</string>
\t\t\t\t</dict>
\t\t\t</array>
\t\t\t<key>PayloadDisplayName</key>
\t\t\t<string>Wi-Fi</string>
\t\t\t<key>PayloadIdentifier</key>
\t\t\t<string>com.example.wifi</string>
\t\t\t<key>PayloadRemovalDisallowed</key>
\t\t\t<false/>
\t\t\t<key>PayloadUUID</key>
\t\t\t<string>5A1B2C3D-0000-4000-8000-000000000001</string>
\t\t\t<key>PayloadVersion</key>
\t\t\t<integer>1</integer>
\t\t\t<key>SignerCertificates</key>
\t\t\t<array>
\t\t\t\t<data>MIIB</data>
\t\t\t</array>
\t\t</dict>
\t\t<dict>
\t\t\t<key>PayloadIdentifier</key>
\t\t\t<string>com.example.mdm</string>
\t\t\t<key>PayloadUUID</key>
\t\t\t<string>5A1B2C3D-0000-4000-8000-000000000002</string>
\t\t</dict>
\t</array>
"""
    resp = parse_response("ProfileList", report(body))
    assert isinstance(resp, ProfileListResponse)
    assert [(p.payload_identifier, p.payload_uuid) for p in resp.profile_list] == [
        ("com.example.wifi", "5A1B2C3D-0000-4000-8000-000000000001"),
        ("com.example.mdm", "5A1B2C3D-0000-4000-8000-000000000002"),
    ]
    first = resp.profile_list[0]
    assert first.payload_display_name == "Wi-Fi"
    assert first.payload_version == 1
    assert first.is_managed is True
    assert first.signer_certificates == [b"0\x82\x01"]
    assert first.payload_content is not None
    assert first.payload_content[0]["PayloadType"] == "com.apple.wifi.managed"
    assert resp.profile_list[1].is_managed is None


def test_profile_list_absent_is_empty() -> None:
    resp = parse_response("ProfileList", report("", status="Error"))
    assert isinstance(resp, ProfileListResponse)
    assert resp.profile_list == []


def test_certificate_list_report() -> None:
    body = """\t<key>CertificateList</key>
\t<array>
\t\t<dict>
\t\t\t<key>CommonName</key>
\t\t\t<string>device.example.com</string>
\t\t\t<key>Data</key>
\t\t\t<data>MIIDHTCC</data>
\t\t\t<key>IsIdentity</key>
\t\t\t<true/>
\t\t</dict>
\t\t<dict>
\t\t\t<key>CommonName</key>
\t\t\t<string>Example Root CA</string>
\t\t\t<key>Data</key>
\t\t\t<data>MIIB</data>
\t\t\t<key>IsIdentity</key>
\t\t\t<false/>
\t\t</dict>
\t</array>
"""
    resp = parse_response("CertificateList", report(body))
    assert isinstance(resp, CertificateListResponse)
    assert [(c.common_name, c.is_identity, c.data) for c in resp.certificate_list] == [
        ("device.example.com", True, bytes.fromhex("3082031d3082")),
        ("Example Root CA", False, bytes.fromhex("308201")),
    ]


def test_device_lock_report() -> None:
    resp = parse_response(
        "DeviceLock", report("\t<key>MessageResult</key>\n\t<string>Message sent</string>\n")
    )
    assert isinstance(resp, DeviceLockResponse)
    assert resp.message_result == "Message sent"
    bare = parse_response("DeviceLock", report(""))
    assert isinstance(bare, DeviceLockResponse)
    assert bare.message_result is None


def test_rotate_filevault_key_report() -> None:
    body = (
        "\t<key>RotateResult</key>\n\t<dict>\n"
        "\t\t<key>EncryptedNewRecoveryKey</key>\n\t\t<data>MIAGCSqG</data>\n"
        "\t</dict>\n"
    )
    resp = parse_response("RotateFileVaultKey", report(body))
    assert isinstance(resp, RotateFileVaultKeyResponse)
    assert resp.rotate_result.encrypted_new_recovery_key == bytes.fromhex("308006092a86")
    missing = parse_response("RotateFileVaultKey", report(""))
    assert isinstance(missing, RotateFileVaultKeyResponse)
    assert missing.rotate_result.encrypted_new_recovery_key is None
    assert "rotate_result" not in missing.model_fields_set


def test_installed_application_list_report() -> None:
    body = """\t<key>InstalledApplicationList</key>
\t<array>
\t\t<dict>
\t\t\t<key>BundleSize</key>
\t\t\t<integer>52428800</integer>
\t\t\t<key>DynamicSize</key>
\t\t\t<integer>0</integer>
\t\t\t<key>Identifier</key>
\t\t\t<string>com.example.app</string>
\t\t\t<key>Installing</key>
\t\t\t<false/>
\t\t\t<key>Name</key>
\t\t\t<string>Example</string>
\t\t\t<key>ShortVersion</key>
\t\t\t<string>2.1</string>
\t\t\t<key>Version</key>
\t\t\t<string>210</string>
\t\t</dict>
\t</array>
"""
    resp = parse_response("InstalledApplicationList", report(body))
    assert isinstance(resp, InstalledApplicationListResponse)
    (app,) = resp.installed_application_list
    assert (app.identifier, app.name, app.short_version, app.version) == (
        "com.example.app",
        "Example",
        "2.1",
        "210",
    )
    assert (app.bundle_size, app.dynamic_size, app.installing) == (52428800, 0, False)


def test_install_application_report() -> None:
    body = (
        "\t<key>Identifier</key>\n\t<string>com.example.app</string>\n"
        "\t<key>State</key>\n\t<string>Queued</string>\n"
    )
    resp = parse_response("InstallApplication", report(body))
    assert isinstance(resp, InstallApplicationResponse)
    assert (resp.identifier, resp.state) == ("com.example.app", "Queued")


@pytest.mark.parametrize(
    ("request_type", "cls"),
    [
        ("InstallProfile", InstallProfileResponse),
        ("RemoveProfile", RemoveProfileResponse),
        ("DeviceConfigured", DeviceConfiguredResponse),
        ("InstallApplication", InstallApplicationResponse),
    ],
)
def test_status_only_reports(request_type: str, cls: type[CommandResponse]) -> None:
    resp = parse_response(request_type, report("", uuid="u-42"))
    assert type(resp) is cls
    assert resp.request_type == request_type
    assert (resp.command_uuid, resp.status) == ("u-42", "Acknowledged")


def test_every_builtin_command_has_a_response_type() -> None:
    for request_type in BUILTIN_REQUEST_TYPES:
        assert command_type_for(request_type) is not None, request_type
        cls = response_type_for(request_type)
        assert cls is not CommandResponse, request_type
        assert cls.request_type == request_type
        assert RESPONSE_TYPES[request_type] is cls


def test_common_fields() -> None:
    body = (
        "\t<key>EnrollmentID</key>\n\t<string>ENR-1</string>\n"
        "\t<key>EnrollmentUserID</key>\n\t<string>ENRU-1</string>\n"
        "\t<key>NotOnConsole</key>\n\t<true/>\n"
        "\t<key>UserID</key>\n\t<string>USER-1</string>\n"
        "\t<key>UserLongName</key>\n\t<string>Jane Appleseed</string>\n"
        "\t<key>UserShortName</key>\n\t<string>jane</string>\n"
    )
    resp = parse_response("SecurityInfo", report(body))
    assert resp.enrollment_id == "ENR-1"
    assert resp.enrollment_user_id == "ENRU-1"
    assert resp.not_on_console is True
    assert (resp.user_id, resp.user_long_name, resp.user_short_name) == ("USER-1", "Jane Appleseed", "jane")
    minimal = parse_response("SecurityInfo", report(""))
    assert (minimal.not_on_console, minimal.user_id, minimal.error_chain) == (False, "", None)


def test_unknown_request_type_gets_generic_response_with_extras() -> None:
    body = (
        "\t<key>Settings</key>\n\t<array>\n\t\t<dict>\n"
        "\t\t\t<key>Status</key>\n\t\t\t<string>Acknowledged</string>\n"
        "\t\t</dict>\n\t</array>\n"
    )
    resp = parse_response("Settings", report(body))
    assert type(resp) is CommandResponse
    assert resp.status == "Acknowledged"
    assert resp.model_extra == {"Settings": [{"Status": "Acknowledged"}]}
    assert response_type_for("") is CommandResponse
    assert response_type_for("NoSuchCommand") is CommandResponse


def test_binary_plist_report() -> None:
    raw = plistlib.dumps(
        {"CommandUUID": "b-1", "Status": "Acknowledged", "MessageResult": "ok"}, fmt=plistlib.FMT_BINARY
    )
    resp = parse_response("DeviceLock", raw)
    assert isinstance(resp, DeviceLockResponse)
    assert (resp.command_uuid, resp.message_result, resp.raw) == ("b-1", "ok", raw)


def test_raw_is_not_dumped() -> None:
    resp = parse_response("DeviceLock", report(""))
    assert resp.raw
    dumped = resp.model_dump(by_alias=True)
    assert "raw" not in dumped
    assert dumped["CommandUUID"] == "cmd-0001"


def test_register_custom_response(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(responses, "RESPONSE_TYPES", dict(RESPONSE_TYPES))

    @register_response
    class UserListResponse(CommandResponse):
        request_type: ClassVar[str] = "UserList"

        users: list[dict[str, object]] = Field(default_factory=list, alias="Users")

    body = (
        "\t<key>Users</key>\n\t<array>\n\t\t<dict>\n"
        "\t\t\t<key>UserName</key>\n\t\t\t<string>jane</string>\n"
        "\t\t</dict>\n\t</array>\n"
    )
    resp = parse_response("UserList", report(body))
    assert isinstance(resp, UserListResponse)
    assert resp.users == [{"UserName": "jane"}]


def test_register_response_needs_request_type() -> None:
    class Nameless(CommandResponse):
        pass

    with pytest.raises(ValueError, match="empty request_type"):
        register_response(Nameless)


def test_a_type_registered_first_stays_when_the_deferred_builtin_registers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A built-in type defined on first use (deferred_responses) must not replace a user's type
    registered meanwhile: registered at import, the built-in one would have been replaced."""
    monkeypatch.setattr(responses, "RESPONSE_TYPES", {})

    @register_response
    class MyRemoveProfile(CommandResponse):
        request_type: ClassVar[str] = "RemoveProfile"

    assert responses.register_builtin(RemoveProfileResponse) is RemoveProfileResponse
    assert response_type_for("RemoveProfile") is MyRemoveProfile


# --- validate_status / completed ----------------------------------------------------------


def chain_item(code: int, domain: str, localized: str = "", english: str = "") -> str:
    parts = [f"\t\t\t<key>ErrorCode</key>\n\t\t\t<integer>{code}</integer>\n"]
    parts.append(f"\t\t\t<key>ErrorDomain</key>\n\t\t\t<string>{domain}</string>\n")
    if localized:
        parts.append(f"\t\t\t<key>LocalizedDescription</key>\n\t\t\t<string>{localized}</string>\n")
    if english:
        parts.append(f"\t\t\t<key>USEnglishDescription</key>\n\t\t\t<string>{english}</string>\n")
    return "\t\t<dict>\n" + "".join(parts) + "\t\t</dict>\n"


def error_report(status: str, *items: str, chain: bool = True) -> bytes:
    body = "\t<key>ErrorChain</key>\n\t<array>\n" + "".join(items) + "\t</array>\n" if chain else ""
    return report(body, status=status)


@pytest.mark.parametrize("status", ["Acknowledged", "Idle", "NotNow"])
def test_valid_statuses_pass(status: str) -> None:
    parse_response("InstallProfile", report("", status=status)).validate_status()


def test_error_chain_rendered_last_to_first() -> None:
    raw = error_report(
        "Error",
        chain_item(
            4001, "MCProfileErrorDomain", localized="Profil ungültig", english="The profile is invalid."
        ),
        chain_item(-909, "NSOSStatusErrorDomain", localized="Keychain error"),
    )
    resp = parse_response("InstallProfile", raw)
    assert resp.error_chain is not None
    assert resp.error_chain[0] == ErrorChainItem(
        ErrorCode=4001,
        ErrorDomain="MCProfileErrorDomain",
        LocalizedDescription="Profil ungültig",
        USEnglishDescription="The profile is invalid.",
    )
    with pytest.raises(MDMResponseError) as info:
        resp.validate_status()
    assert str(info.value) == (
        "MDM error for status Error: Keychain error (NSOSStatusErrorDomain, -909): "
        "The profile is invalid. (MCProfileErrorDomain, 4001)"
    )
    assert info.value.status == "Error"


def test_error_chain_fails_even_with_acknowledged_status() -> None:
    resp = parse_response("InstallProfile", error_report("Acknowledged", chain_item(12, "D", english="E")))
    with pytest.raises(MDMResponseError, match=r"^MDM error for status Acknowledged: E \(D, 12\)$"):
        resp.validate_status()


@pytest.mark.parametrize("status", ["Error", "CommandFormatError", ""])
def test_failed_status_without_chain_is_nil(status: str) -> None:
    resp = parse_response("InstallProfile", report("", status=status))
    with pytest.raises(MDMResponseError) as info:
        resp.validate_status()
    assert str(info.value) == f"MDM error for status {status}: <nil>"


def test_empty_error_chain() -> None:
    resp = parse_response("InstallProfile", error_report("Acknowledged"))
    assert resp.error_chain == []
    with pytest.raises(MDMResponseError) as info:
        resp.validate_status()
    assert str(info.value) == "MDM error for status Acknowledged: no items in error chain"


def test_chain_item_without_descriptions() -> None:
    resp = parse_response("InstallProfile", error_report("Error", chain_item(7, "X")))
    with pytest.raises(MDMResponseError, match=r"^MDM error for status Error:  \(X, 7\)$"):
        resp.validate_status()


@pytest.mark.parametrize(
    ("status", "completed"),
    [
        ("Acknowledged", True),
        ("Error", True),
        ("CommandFormatError", True),
        ("Idle", True),
        ("NotNow", False),
        ("", False),
    ],
)
def test_completed(status: str, completed: bool) -> None:
    assert parse_response("SecurityInfo", report("", status=status)).completed is completed


def test_missing_status_is_not_completed() -> None:
    raw = plistlib.dumps({"CommandUUID": "x"})
    resp = parse_response("SecurityInfo", raw)
    assert resp.status == ""
    assert not resp.completed


# --- parse errors -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "^empty report$"),
        (b"not a plist at all", "^report is not a valid plist"),
        (
            b"<?xml version='1.0'?><plist version='1.0'><dict><key>Status</key>",
            "^report is not a valid plist",
        ),
        (plistlib.dumps(["Acknowledged"]), "^report plist is a list, not a dictionary$"),
        (plistlib.dumps("Acknowledged"), "^report plist is a str, not a dictionary$"),
    ],
)
def test_parse_report_errors(raw: bytes, message: str) -> None:
    with pytest.raises(ReportParseError, match=message):
        parse_report(raw)
    with pytest.raises(ReportParseError, match=message):
        parse_response("SecurityInfo", raw)


def test_parse_report_returns_dict() -> None:
    assert parse_report(report("")) == {"CommandUUID": "cmd-0001", "Status": "Acknowledged", "UDID": "UDID-1"}


def test_entity_declarations_are_refused() -> None:
    raw = (
        b'<?xml version="1.0"?><!DOCTYPE plist [<!ENTITY a "aaaaaaaa">]>'
        b"<plist><dict><key>Status</key><string>&a;</string></dict></plist>"
    )
    with pytest.raises(ReportParseError):
        parse_report(raw)


@pytest.mark.parametrize(
    ("request_type", "body", "field"),
    [
        ("SecurityInfo", "", "Status"),  # Status as an integer, see below
        ("DeviceInformation", "\t<key>QueryResponses</key>\n\t<string>oops</string>\n", "QueryResponses"),
        (
            "DeviceInformation",
            "\t<key>QueryResponses</key>\n\t<dict>\n\t\t<key>IsSupervised</key>\n\t\t<dict/>\n\t</dict>\n",
            "QueryResponses.IsSupervised",
        ),
        ("ProfileList", "\t<key>ProfileList</key>\n\t<dict/>\n", "ProfileList"),
        ("InstallProfile", "\t<key>ErrorChain</key>\n\t<string>boom</string>\n", "ErrorChain"),
    ],
)
def test_wrong_value_types_are_parse_errors(request_type: str, body: str, field: str) -> None:
    raw = report(body)
    if field == "Status":
        raw = plistlib.dumps({"CommandUUID": "x", "Status": 3})
    with pytest.raises(ReportParseError, match=f"^invalid {request_type} report: {field}"):
        parse_response(request_type, raw)


def test_parse_errors_are_value_errors() -> None:
    with pytest.raises(ValueError):
        parse_response("SecurityInfo", b"")
    with pytest.raises(MDMParseError):
        parse_response("SecurityInfo", b"")
