"""MDM command reports and webhook bodies built per Apple's schema, for tests."""

from __future__ import annotations

import base64
import json
import plistlib
from typing import Any


def report(command_uuid: str, udid: str, status: str = "Acknowledged", **fields: Any) -> bytes:
    """A command report plist as a device sends it."""
    doc: dict[str, Any] = {"CommandUUID": command_uuid, "Status": status, "UDID": udid, **fields}
    return plistlib.dumps(doc)


def error_report(
    command_uuid: str,
    udid: str,
    code: int = 12021,
    domain: str = "MCMDMErrorDomain",
    description: str = "The MDM command failed",
) -> bytes:
    chain = [
        {
            "ErrorCode": code,
            "ErrorDomain": domain,
            "LocalizedDescription": description,
            "USEnglishDescription": description,
        }
    ]
    return report(command_uuid, udid, "Error", ErrorChain=chain)


def device_information(command_uuid: str, udid: str, **query_responses: Any) -> bytes:
    return report(command_uuid, udid, QueryResponses=query_responses)


def security_info(command_uuid: str, udid: str, **security: Any) -> bytes:
    return report(command_uuid, udid, SecurityInfo=security)


def connect_webhook(
    enrollment_id: str,
    command_uuid: str,
    raw: bytes,
    status: str | None = None,
    url_params: dict[str, str] | None = None,
) -> bytes:
    """An ``mdm.Connect`` webhook body as NanoMDM posts it."""
    if status is None:
        status = plistlib.loads(raw).get("Status", "") if raw else "Idle"
    return json.dumps(
        {
            "topic": "mdm.Connect",
            "event_id": "",
            "created_at": "2026-11-26T10:00:00Z",
            "acknowledge_event": {
                "udid": enrollment_id,
                "status": status,
                "command_uuid": command_uuid,
                "url_params": url_params or {},
                "raw_payload": base64.b64encode(raw).decode(),
            },
        }
    ).encode()


def idle_webhook(enrollment_id: str) -> bytes:
    raw = plistlib.dumps({"Status": "Idle", "UDID": enrollment_id})
    return connect_webhook(enrollment_id, "", raw, status="Idle")


def checkin_message(message_type: str, udid: str, **fields: Any) -> bytes:
    doc: dict[str, Any] = {"MessageType": message_type, "UDID": udid, "Topic": "com.apple.mgmt.External.test"}
    if message_type == "TokenUpdate":
        doc.update(PushMagic="PUSH-MAGIC", Token=b"\x01\x02\x03", AwaitingConfiguration=False)
    if message_type == "Authenticate":
        doc.update(
            BuildVersion="22E261", OSVersion="13.3.1", SerialNumber="ZRMXJQTTFX", Model="VirtualMac2,1"
        )
    doc.update(fields)
    return plistlib.dumps(doc)


def checkin_webhook(
    message_type: str,
    udid: str,
    tally: int | None = None,
    url_params: dict[str, str] | None = None,
    **fields: Any,
) -> bytes:
    event: dict[str, Any] = {
        "udid": udid,
        "url_params": url_params or {},
        "raw_payload": base64.b64encode(checkin_message(message_type, udid, **fields)).decode(),
    }
    if tally is not None:
        event["token_update_tally"] = tally
    return json.dumps(
        {
            "topic": f"mdm.{message_type}",
            "event_id": "",
            "created_at": "2026-11-26T10:00:00Z",
            "checkin_event": event,
        }
    ).encode()
