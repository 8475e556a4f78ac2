"""The MicroMDM/NanoMDM webhook body (engine.md §5, api.md §4), validated with pydantic.

Decoding follows Go's ``encoding/json`` as the Go NanoCMD used it (WH-2), so the same bodies
are accepted and refused:

* object keys match field names case-insensitively (a later duplicate wins), unknown keys are
  ignored — except inside ``url_params``, whose keys are data and stay exact;
* JSON ``null`` leaves a field at its default (Go ignores null for non-pointers);
* wrong JSON types are invalid: strings must be strings, ``token_update_tally`` an integer
  (no bool, float or string), ``raw_payload`` standard padded base64, ``created_at`` RFC 3339.

NanoMDM also sends ``ids`` (``id``, ``parent_id``, ``type``); ``ids.id`` wins over ``udid`` and
``enrollment_id`` when choosing the enrollment ID (design.md §6), so user channels work.

Imports only the standard library, pydantic and ``errors``: this module is loaded by the webhook
intake Lambda, whose cold start must stay short.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, Strict, ValidationError, model_validator

from nanocmd_core.mdm.errors import WebhookParseError, validation_summary

__all__ = [
    "CHECKIN_MESSAGE_TYPES",
    "AcknowledgeEvent",
    "CheckinEvent",
    "EnrollmentIDs",
    "WebhookEvent",
    "WebhookParseError",
    "enrolling_from_tally",
    "parse_webhook",
]

CONNECT_TOPIC = "mdm.Connect"
CHECKIN_MESSAGE_TYPES = frozenset({"Authenticate", "TokenUpdate", "CheckOut"})
"""The check-in message types the engine acts on (WH-4); other ``mdm.*`` topics are not routed."""

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1


class _JSONObject(dict[str, Any]):
    """A decoded JSON object that remembers its key/value pairs in document order.

    ``json`` keeps only the last of two *identical* keys; to fold keys case-insensitively with
    Go's "last one wins" we need the original sequence (``{"topic":..,"Topic":..,"topic":..}``).
    """

    __slots__ = ("pairs",)

    def __init__(self, pairs: list[tuple[str, Any]]) -> None:
        super().__init__(pairs)
        self.pairs = pairs


def _reject_constant(name: str) -> Any:
    """``json`` accepts NaN/Infinity; JSON (and Go) do not."""
    raise ValueError(f"invalid JSON constant {name}")


def _null_to_empty(value: Any) -> Any:
    """Go stores a JSON null map value as the zero string."""
    return "" if value is None else value


def _decode_base64(value: Any) -> Any:
    """Decode Go's ``[]byte`` JSON form: standard alphabet, padded; CR/LF ignored as Go does."""
    if isinstance(value, bytes):  # already decoded, e.g. built in Python
        return value
    if not isinstance(value, str):
        raise ValueError("must be a base64 string")
    try:
        return base64.b64decode(value.replace("\r", "").replace("\n", ""), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"invalid base64: {exc}") from exc


_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:([Zz])|([+-])(\d{2}):(\d{2}))",
    re.ASCII,
)


def _parse_rfc3339(value: Any) -> Any:
    """Parse an RFC 3339 timestamp (what Go's ``time.Time`` accepts in JSON); anything else fails."""
    if value is None or isinstance(value, datetime):
        return value
    if not isinstance(value, str):
        raise ValueError("must be an RFC 3339 timestamp string")
    m = _RFC3339.fullmatch(value)
    if m is None:
        raise ValueError("not an RFC 3339 timestamp")
    year, month, day, hour, minute, second, frac, zulu, sign, off_h, off_m = m.groups()
    if zulu:
        tz = UTC
    else:
        if int(off_h) > 23 or int(off_m) > 59:
            raise ValueError("RFC 3339 time zone offset out of range")
        offset = timedelta(hours=int(off_h), minutes=int(off_m))
        tz = timezone(-offset if sign == "-" else offset)
    micro = int((frac or "").ljust(6, "0")[:6])
    try:
        return datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), micro, tzinfo=tz
        )
    except ValueError as exc:
        raise ValueError(f"RFC 3339 timestamp out of range: {exc}") from exc


def _ids_type(value: Any) -> Any:
    """Accept ``ids.type`` as a string, or as an integer turned into one.

    Not used for routing; a numeric enum value from some NanoMDM build must not cost us the
    whole event (a 400 is never retried by NanoMDM).
    """
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


_Str = Annotated[str, Strict()]
_ParamValue = Annotated[str, BeforeValidator(_null_to_empty), Strict()]
_Base64Bytes = Annotated[bytes, BeforeValidator(_decode_base64)]
_Tally = Annotated[int, Strict(), Field(ge=_INT64_MIN, le=_INT64_MAX)]
_Timestamp = Annotated[datetime | None, BeforeValidator(_parse_rfc3339)]


class _GoJSONModel(BaseModel):
    """Base that maps incoming keys onto field names the way Go's JSON decoder does."""

    model_config = ConfigDict(extra="ignore", defer_build=True)

    @model_validator(mode="before")
    @classmethod
    def _fold_keys(cls, data: Any) -> Any:
        """Rename keys to field names case-insensitively; casefold also matches Go's Kelvin/long-s folds."""
        if not isinstance(data, dict):
            return data  # let pydantic report the wrong type
        names = {name.casefold(): name for name in cls.model_fields}
        pairs = data.pairs if isinstance(data, _JSONObject) else list(data.items())
        folded: dict[str, Any] = {}
        for key, value in pairs:
            name = names.get(key.casefold()) if isinstance(key, str) else None
            if name is None or value is None:
                continue  # unknown key, or null: Go leaves the field alone
            folded[name] = value
        return folded


class EnrollmentIDs(_GoJSONModel):
    """NanoMDM's resolved enrollment identifiers (``ids``)."""

    id: _Str | None = None
    parent_id: _Str | None = None
    type: Annotated[_Str | None, BeforeValidator(_ids_type)] = None


class _SubEvent(_GoJSONModel):
    """Fields shared by ``acknowledge_event`` and ``checkin_event``."""

    udid: _Str = ""
    enrollment_id: _Str = ""
    ids: EnrollmentIDs | None = None
    url_params: dict[_Str, _ParamValue] | None = None
    raw_payload: _Base64Bytes = b""

    @property
    def resolved_id(self) -> str:
        """The enrollment ID: ``ids.id`` if non-empty, else ``udid``, else ``enrollment_id``."""
        if self.ids is not None and self.ids.id:
            return self.ids.id
        return self.udid or self.enrollment_id


class AcknowledgeEvent(_SubEvent):
    """A command report (topic ``mdm.Connect``); ``raw_payload`` is the report plist."""

    status: _Str = ""
    command_uuid: _Str = ""


class CheckinEvent(_SubEvent):
    """A check-in (topic ``mdm.<MessageType>``); ``raw_payload`` is the check-in plist."""

    token_update_tally: _Tally | None = None

    @property
    def enrolling(self) -> bool:
        """Whether a TokenUpdate with this tally is the enrollment's first (WH-10)."""
        return enrolling_from_tally(self.token_update_tally)


class WebhookEvent(_GoJSONModel):
    """One webhook call from the MDM server."""

    topic: _Str
    event_id: _Str = ""
    created_at: _Timestamp = None
    acknowledge_event: AcknowledgeEvent | None = None
    checkin_event: CheckinEvent | None = None

    @property
    def is_command_report(self) -> bool:
        """Topic ``mdm.Connect``: a command report or Idle (WH-3)."""
        return self.topic == CONNECT_TOPIC

    @property
    def is_idle(self) -> bool:
        """A command report whose JSON status is ``Idle`` (WH-8)."""
        return (
            self.is_command_report
            and self.acknowledge_event is not None
            and self.acknowledge_event.status == "Idle"
        )

    @property
    def checkin_type(self) -> str | None:
        """``Authenticate`` / ``TokenUpdate`` / ``CheckOut`` from ``mdm.<type>``; None otherwise."""
        prefix, dot, message_type = self.topic.partition(".")
        if prefix == "mdm" and dot and message_type in CHECKIN_MESSAGE_TYPES:
            return message_type
        return None

    @property
    def sub_event(self) -> AcknowledgeEvent | CheckinEvent | None:
        """The sub-object the topic calls for, falling back to whichever one is present."""
        if self.is_command_report:
            return self.acknowledge_event or self.checkin_event
        return self.checkin_event or self.acknowledge_event

    @property
    def enrollment_id(self) -> str:
        """The enrollment ID (design.md §6); empty when there is no sub-event or no ID."""
        event = self.sub_event
        return event.resolved_id if event is not None else ""

    @property
    def url_params(self) -> dict[str, str] | None:
        """The device's URL query parameters, or None when absent or empty (WH-7)."""
        event = self.sub_event
        if event is None or not event.url_params:
            return None
        return dict(event.url_params)

    @property
    def raw_payload(self) -> bytes:
        """The decoded plist of the relevant sub-event (empty when there is none)."""
        event = self.sub_event
        return event.raw_payload if event is not None else b""


def enrolling_from_tally(tally: int | None) -> bool:
    """Without a tally (MicroMDM) every TokenUpdate counts as enrolling; else only the first (WH-10)."""
    return tally is None or tally == 1


def parse_webhook(body: bytes | str) -> WebhookEvent:
    """Decode and validate a webhook body; ``WebhookParseError`` (answer 400) when it is not valid."""
    text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body
    try:
        data = json.loads(text, object_pairs_hook=_JSONObject, parse_constant=_reject_constant)
    except RecursionError as exc:
        raise WebhookParseError("invalid JSON: nested too deeply") from exc
    except ValueError as exc:  # includes json.JSONDecodeError
        raise WebhookParseError(f"invalid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise WebhookParseError("invalid webhook: body is not a JSON object")
    try:
        return WebhookEvent.model_validate(data)
    except ValidationError as exc:
        raise WebhookParseError(f"invalid webhook: {validation_summary(exc)}") from exc
