"""Command models: the plists they produce, RawCommand, and the registry."""

from __future__ import annotations

import plistlib
import re
from typing import Any, ClassVar

import pytest
from pydantic import Field, ValidationError

from nanocmd_core.mdm import commands
from nanocmd_core.mdm.commands import (
    BUILTIN_REQUEST_TYPES,
    COMMAND_TYPES,
    CertificateList,
    Command,
    DeviceConfigured,
    DeviceInformation,
    DeviceLock,
    FileVaultUnlock,
    InstallApplication,
    InstalledApplicationList,
    InstallProfile,
    ProfileList,
    RawCommand,
    RemoveProfile,
    RotateFileVaultKey,
    SecurityInfo,
    command_type_for,
    new_command_uuid,
    register_command,
)

UUID4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")

PROFILE = b"""<?xml version="1.0" encoding="UTF-8"?>
<plist version="1.0"><dict><key>PayloadIdentifier</key><string>com.example.p</string></dict></plist>
"""


def decoded(cmd: Command | RawCommand) -> dict[str, Any]:
    result: dict[str, Any] = plistlib.loads(cmd.to_plist())
    return result


def test_new_command_uuid_is_random_lowercase_v4() -> None:
    a, b = new_command_uuid(), new_command_uuid()
    assert UUID4.fullmatch(a)
    assert UUID4.fullmatch(b)
    assert a != b


def test_each_command_gets_its_own_uuid_by_default() -> None:
    a, b = SecurityInfo(), SecurityInfo()
    assert UUID4.fullmatch(a.command_uuid)
    assert a.command_uuid != b.command_uuid


@pytest.mark.parametrize(
    ("cmd", "inner"),
    [
        (
            DeviceInformation(queries=["Model", "SerialNumber"]),
            {"RequestType": "DeviceInformation", "Queries": ["Model", "SerialNumber"]},
        ),
        (DeviceInformation(), {"RequestType": "DeviceInformation"}),
        (SecurityInfo(), {"RequestType": "SecurityInfo"}),
        (ProfileList(managed_only=True), {"RequestType": "ProfileList", "ManagedOnly": True}),
        (ProfileList(), {"RequestType": "ProfileList"}),
        # explicitly set to False is sent; only unset keys are omitted
        (ProfileList(managed_only=False), {"RequestType": "ProfileList", "ManagedOnly": False}),
        (InstallProfile(payload=PROFILE), {"RequestType": "InstallProfile", "Payload": PROFILE}),
        (
            RemoveProfile(identifier="com.example.p"),
            {"RequestType": "RemoveProfile", "Identifier": "com.example.p"},
        ),
        (
            InstallApplication(manifest_url="https://example.com/app.plist", management_flags=1),
            {
                "RequestType": "InstallApplication",
                "ManifestURL": "https://example.com/app.plist",
                "ManagementFlags": 1,
            },
        ),
        (DeviceConfigured(), {"RequestType": "DeviceConfigured"}),
        (CertificateList(managed_only=True), {"RequestType": "CertificateList", "ManagedOnly": True}),
        (CertificateList(), {"RequestType": "CertificateList"}),
        (DeviceLock(pin="012345"), {"RequestType": "DeviceLock", "PIN": "012345"}),
        (
            DeviceLock(pin="1", message="Lost", phone_number="+1 555"),
            {"RequestType": "DeviceLock", "PIN": "1", "Message": "Lost", "PhoneNumber": "+1 555"},
        ),
        (
            RotateFileVaultKey(
                key_type="personal",
                file_vault_unlock={"Password": "ABCD-EFGH"},
                reply_encryption_certificate=b"\x30\x82\x01\x00",
            ),
            {
                "RequestType": "RotateFileVaultKey",
                "KeyType": "personal",
                "FileVaultUnlock": {"Password": "ABCD-EFGH"},
                "ReplyEncryptionCertificate": b"\x30\x82\x01\x00",
            },
        ),
        (
            RotateFileVaultKey(key_type="personal", file_vault_unlock=FileVaultUnlock(password="pw")),
            {
                "RequestType": "RotateFileVaultKey",
                "KeyType": "personal",
                "FileVaultUnlock": {"Password": "pw"},
            },
        ),
        (
            InstalledApplicationList(identifiers=["com.example.a"], managed_apps_only=True),
            {
                "RequestType": "InstalledApplicationList",
                "Identifiers": ["com.example.a"],
                "ManagedAppsOnly": True,
            },
        ),
        (InstalledApplicationList(), {"RequestType": "InstalledApplicationList"}),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, Command) else None,
)
def test_command_plist_is_exact(cmd: Command, inner: dict[str, Any]) -> None:
    assert decoded(cmd) == {"CommandUUID": cmd.command_uuid, "Command": inner}


def test_bytes_become_plist_data_elements() -> None:
    xml = InstallProfile(payload=PROFILE).to_plist()
    assert xml.startswith(b"<?xml")
    assert b"<data>" in xml
    assert b"<key>Payload</key>" in xml
    # the profile text must not appear as a string: it is base64 inside <data>
    assert b"com.example.p" not in xml


def test_payload_dict_has_only_the_payload_keys() -> None:
    cmd = DeviceInformation(queries=["UDID"])
    assert cmd.payload_dict() == {"Queries": ["UDID"]}
    assert SecurityInfo().payload_dict() == {}


def test_fields_accept_apple_keys_too() -> None:
    cmd = DeviceInformation(Queries=["Model"], CommandUUID="fixed")  # type: ignore[call-arg]
    assert cmd.queries == ["Model"]
    assert cmd.command_uuid == "fixed"
    assert decoded(cmd)["CommandUUID"] == "fixed"


def test_misspelt_field_is_rejected() -> None:
    with pytest.raises(ValidationError):
        DeviceInformation(querys=["Model"])  # type: ignore[call-arg]


def test_required_fields_are_required() -> None:
    with pytest.raises(ValidationError):
        RemoveProfile()  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        InstallProfile()  # type: ignore[call-arg]


def test_with_uuid_copies() -> None:
    cmd = DeviceLock(pin="123456")
    other = cmd.with_uuid("aaaa-bbbb")
    assert isinstance(other, DeviceLock)
    assert other.command_uuid == "aaaa-bbbb"
    assert other.pin == "123456"
    assert cmd.command_uuid != "aaaa-bbbb"
    assert decoded(other) == {
        "CommandUUID": "aaaa-bbbb",
        "Command": {"RequestType": "DeviceLock", "PIN": "123456"},
    }


def test_empty_uuid_cannot_be_serialised() -> None:
    with pytest.raises(ValueError, match=r"^empty command uuid$"):
        SecurityInfo().with_uuid("").to_plist()


def test_command_without_request_type_cannot_be_serialised_or_registered() -> None:
    class Nameless(Command):
        pass

    with pytest.raises(ValueError, match=r"^empty request type$"):
        Nameless().to_plist()
    with pytest.raises(ValueError, match="empty request_type"):
        register_command(Nameless)


def test_registry_holds_every_builtin_command_under_its_class_name() -> None:
    builtins: list[type[Command]] = [
        DeviceInformation,
        SecurityInfo,
        ProfileList,
        InstallProfile,
        RemoveProfile,
        InstallApplication,
        DeviceConfigured,
        CertificateList,
        DeviceLock,
        RotateFileVaultKey,
        InstalledApplicationList,
    ]
    for cls in builtins:
        assert cls.request_type == cls.__name__
        assert COMMAND_TYPES[cls.__name__] is cls
        assert command_type_for(cls.__name__) is cls
    assert sorted(BUILTIN_REQUEST_TYPES) == sorted(cls.__name__ for cls in builtins)
    assert command_type_for("NoSuchCommand") is None


def test_a_type_registered_first_stays_when_the_deferred_builtin_registers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A built-in command defined on first use (command_types) must not replace a user's type
    registered meanwhile: registered at import, the built-in one would have been replaced."""
    monkeypatch.setattr(commands, "COMMAND_TYPES", {})

    @register_command
    class MyDeviceLock(Command):
        request_type: ClassVar[str] = "DeviceLock"

    assert commands.register_builtin_command(DeviceLock) is DeviceLock
    assert command_type_for("DeviceLock") is MyDeviceLock
    assert commands.register_builtin_command(SecurityInfo) is SecurityInfo
    assert command_type_for("SecurityInfo") is SecurityInfo


def test_register_custom_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(commands, "COMMAND_TYPES", dict(COMMAND_TYPES))

    @register_command
    class Settings(Command):
        request_type: ClassVar[str] = "Settings"

        settings: list[dict[str, Any]] = Field(alias="Settings")

    assert commands.COMMAND_TYPES["Settings"] is Settings
    cmd = Settings(settings=[{"Item": "DeviceName", "DeviceName": "Lab 1"}])
    assert decoded(cmd)["Command"] == {
        "RequestType": "Settings",
        "Settings": [{"Item": "DeviceName", "DeviceName": "Lab 1"}],
    }


# --- RawCommand ---------------------------------------------------------------------------

RAW = b"""<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
\t<key>Command</key>
\t<dict>
\t\t<key>RequestType</key>
\t\t<string>Settings</string>
\t\t<key>Settings</key>
\t\t<array>
\t\t\t<dict>
\t\t\t\t<key>Item</key>
\t\t\t\t<string>DeviceName</string>
\t\t\t\t<key>DeviceName</key>
\t\t\t\t<string>Lab 1</string>
\t\t\t</dict>
\t\t</array>
\t</dict>
\t<key>CommandUUID</key>
\t<string>0001-custom</string>
</dict>
</plist>
"""


def test_raw_command_reads_identifiers_and_keeps_bytes() -> None:
    raw = RawCommand.from_plist(RAW)
    assert raw.command_uuid == "0001-custom"
    assert raw.request_type == "Settings"
    assert raw.to_plist() == RAW
    assert raw.payload_dict() == {"Settings": [{"Item": "DeviceName", "DeviceName": "Lab 1"}]}


def test_raw_command_with_uuid_rewrites_only_the_uuid() -> None:
    raw = RawCommand.from_plist(RAW)
    other = raw.with_uuid("0002-chunk")
    assert other.command_uuid == "0002-chunk"
    assert raw.command_uuid == "0001-custom"
    before, after = plistlib.loads(RAW), plistlib.loads(other.to_plist())
    assert after.pop("CommandUUID") == "0002-chunk"
    before.pop("CommandUUID")
    assert after == before


def test_raw_command_round_trips_a_typed_command() -> None:
    cmd = InstallProfile(payload=PROFILE)
    raw = RawCommand.from_plist(cmd.to_plist())
    assert raw.command_uuid == cmd.command_uuid
    assert raw.request_type == "InstallProfile"
    assert raw.to_plist() == cmd.to_plist()
    assert raw.payload_dict() == {"Payload": PROFILE}


def test_raw_command_from_binary_plist_is_sent_as_xml() -> None:
    binary = plistlib.dumps(plistlib.loads(RAW), fmt=plistlib.FMT_BINARY)
    raw = RawCommand.from_plist(binary)
    assert raw.to_plist().startswith(b"<?xml")
    assert plistlib.loads(raw.to_plist()) == plistlib.loads(RAW)


def test_raw_commands_compare_by_content() -> None:
    assert RawCommand.from_plist(RAW) == RawCommand.from_plist(RAW)
    assert RawCommand.from_plist(RAW) != RawCommand.from_plist(RAW).with_uuid("x")


def _plist(obj: Any) -> bytes:
    return plistlib.dumps(obj)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (_plist({"CommandUUID": "", "Command": {"RequestType": "SecurityInfo"}}), "^empty command uuid$"),
        (_plist({"Command": {"RequestType": "SecurityInfo"}}), "^empty command uuid$"),
        (_plist({"CommandUUID": 5, "Command": {"RequestType": "SecurityInfo"}}), "^empty command uuid$"),
        (_plist({"CommandUUID": "u", "Command": {"RequestType": ""}}), "^empty request type$"),
        (_plist({"CommandUUID": "u", "Command": {}}), "^empty request type$"),
        (_plist({"CommandUUID": "u"}), "missing Command dictionary"),
        (_plist({"CommandUUID": "u", "Command": "SecurityInfo"}), "missing Command dictionary"),
        (_plist(["not", "a", "dict"]), "not a dictionary"),
        (b"", "empty command plist"),
        (b"this is not a plist", "invalid command plist"),
        (b"<?xml version='1.0'?><plist><dict><key>x</key>", "invalid command plist"),
    ],
)
def test_raw_command_rejects_bad_plists(raw: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RawCommand.from_plist(raw)


def test_raw_command_with_empty_uuid_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"^empty command uuid$"):
        RawCommand.from_plist(RAW).with_uuid("")
