"""The Go NanoCMD's own test payloads, read from the sibling ``../shared`` folder when it exists.

Skipped cleanly when the folder is absent (e.g. in a fresh clone or CI without it).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from nanocmd_core.mdm.checkin import TokenUpdate, parse_checkin
from nanocmd_core.mdm.commands import InstallProfile, RawCommand
from nanocmd_core.mdm.responses import (
    CertificateListResponse,
    DeviceInformationResponse,
    InstallProfileResponse,
    MDMResponseError,
    SecurityInfoResponse,
    parse_response,
)
from nanocmd_core.mdm.webhook import parse_webhook

TESTDATA = Path(__file__).resolve().parents[3] / ".." / "shared" / "testdata" / "nanocmd"

pytestmark = pytest.mark.skipif(not TESTDATA.is_dir(), reason=f"shared testdata not present at {TESTDATA}")


def read(relative: str) -> bytes:
    path = TESTDATA / relative
    if not path.is_file():
        pytest.skip(f"{relative} not present")
    return path.read_bytes()


def test_ct15_engine_devinfo() -> None:
    raw = read("engine/testdata/devinfo.plist")
    resp = parse_response("DeviceInformation", raw)
    assert isinstance(resp, DeviceInformationResponse)
    assert resp.command_uuid == "DevInfo001"
    assert resp.udid == "UDID001"
    assert resp.status == "Acknowledged"
    assert resp.completed
    resp.validate_status()
    qr = resp.query_responses
    assert (qr.serial_number, qr.model, qr.model_name) == ("BNPTFLNZHG7K", "MN9H2LL", "iPhone")
    assert (qr.device_name, qr.build_version, qr.os_version) == ("My iPhone", "19H12", "15.7")
    assert resp.raw == raw


def test_inventory_devinfo() -> None:
    resp = parse_response("DeviceInformation", read("workflow/inventory/testdata/devinfo.plist"))
    assert isinstance(resp, DeviceInformationResponse)
    assert resp.command_uuid == "53115671-3f45-49f5-b7cb-22ede8b8afdb"
    assert resp.udid == "AAABBBCCC111222333"
    qr = resp.query_responses
    assert qr.model == "MacBookPro11,3"
    assert qr.product_name == "MacBookPro11,3"
    assert qr.udid == "AAABBBCCC111222333"
    # the inventory workflow stores only what the device returned
    assert qr.model_fields_set == {"model", "product_name", "udid"}
    assert qr.serial_number is None


def test_inventory_secinfo() -> None:
    resp = parse_response("SecurityInfo", read("workflow/inventory/testdata/secinfo.plist"))
    assert isinstance(resp, SecurityInfoResponse)
    assert resp.command_uuid == "53115671-3f45-49f5-b7cb-22ede8b8afdc"
    resp.validate_status()
    si = resp.security_info
    assert si.system_integrity_protection_enabled is True
    assert si.fde_enabled is False
    assert si.fde_personal_recovery_key_cms is None
    assert si.authenticated_root_volume_enabled is True
    assert si.bootstrap_token_allowed_for_authentication == "not supported"
    assert si.firewall_settings is not None and si.firewall_settings["LoggingOption"] == "throttled"
    assert si.firmware_password_status == {}
    assert si.management_status is not None and si.management_status["UserApprovedEnrollment"] is True


def test_certprof_certlist() -> None:
    resp = parse_response("CertificateList", read("workflow/certprof/testdata/certlist.plist"))
    assert isinstance(resp, CertificateListResponse)
    assert resp.command_uuid == "CERT-LIST-01"
    assert resp.udid == "6362F867-FFF2-4EA6-905C-3C796DF4EF68"
    (cert,) = resp.certificate_list
    assert cert.common_name == "?Error_-26276?"
    assert cert.is_identity is True
    assert cert.data is not None
    assert cert.data[:2] == b"\x30\x82"  # DER SEQUENCE
    assert len(cert.data) == int.from_bytes(cert.data[2:4], "big") + 4


def test_certprof_ack_and_error() -> None:
    ack = parse_response("InstallProfile", read("workflow/certprof/testdata/resp-ack.plist"))
    assert isinstance(ack, InstallProfileResponse)
    assert ack.command_uuid == "D053EE3A-EE0E-4E82-87D2-BB3624186694"
    ack.validate_status()

    err = parse_response("InstallProfile", read("workflow/certprof/testdata/resp-error.plist"))
    assert err.completed
    with pytest.raises(MDMResponseError) as info:
        err.validate_status()
    # LocalizedDescription starts with a space in the fixture, hence the double space
    assert (
        str(info.value)
        == "MDM error for status Error:  <NSOSStatusErrorDomain:-909> (NSOSStatusErrorDomain, -909)"
    )


def test_profiles_survive_install_profile_plist() -> None:
    for relative in (
        "workflow/certprof/testdata/scep.mobileconfig",
        "utils/mobileconfig/testdata/test.mobileconfig",
    ):
        profile = read(relative)
        cmd = InstallProfile(payload=profile)
        assert RawCommand.from_plist(cmd.to_plist()).payload_dict() == {"Payload": profile}


def test_ct19_tokenupdate_webhook() -> None:
    ev = parse_webhook(read("mdm/foss/testdata/tokenupdate.json"))
    assert ev.topic == "mdm.TokenUpdate"
    assert ev.checkin_type == "TokenUpdate"
    assert not ev.is_command_report
    assert ev.checkin_event is not None
    assert ev.checkin_event.token_update_tally == 1
    assert ev.checkin_event.enrolling
    assert ev.url_params is None  # present but empty
    assert ev.enrollment_id == "FF269FDC-7A93-5F12-A4B7-09923F0D1F7F"

    msg = parse_checkin("TokenUpdate", ev.raw_payload)
    assert isinstance(msg, TokenUpdate)
    assert msg.udid == ev.enrollment_id
    assert msg.message_type == "TokenUpdate"
    assert msg.push_magic == "04EAC351-56EA-4FFF-89A7-C76B1306F36A"
    assert msg.topic == "com.apple.mgmt.External.e1bd1eac-1217-4c8e-8a67-dd17d3dd35d9"
    assert len(msg.token) == 32
    assert msg.awaiting_configuration is False
    assert msg.unlock_token is None
