"""The MicroMDM/NanoMDM webhook body (engine.md §5, api.md §4), decoded and validated by hand.

Decoding follows Go's ``encoding/json`` as the Go NanoCMD used it (WH-2), so the same bodies
are accepted and refused:

* object keys match field names case-insensitively (a later duplicate wins), unknown keys are
  ignored — except inside ``url_params``, whose keys are data and stay exact;
* JSON ``null`` leaves a field at its default (Go ignores null for non-pointers);
* wrong JSON types are invalid: strings must be strings, ``token_update_tally`` an integer
  (no bool, float or string), ``raw_payload`` standard padded base64, ``created_at`` RFC 3339.

NanoMDM also sends ``ids`` (``id``, ``parent_id``, ``type``); ``ids.id`` wins over ``udid`` and
``enrollment_id`` when choosing the enrollment ID (design.md §6), so user channels work.

Imports only the standard library and ``errors``: this is the webhook intake's parser, whose cold
start a fleet checking in waits for. Five flat shapes of strings need no pydantic (no validator to
import or to build on the first webhook); errors read as pydantic's did (``loc: message; ...``).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, ClassVar

from nanocmd_core.mdm.errors import WebhookParseError, error_summary

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
_NOT_A_STRING = "Input should be a valid string"
_Names = tuple[str, ...]


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


# ------------------------------------------------------------------------------------ the shapes


class _Record:
    """Typed attribute holders built by keyword (defaults as in the Go structs), compared and
    printed by field."""

    __slots__ = ()
    _fields: ClassVar[_Names] = ()

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return all(getattr(self, f) == getattr(other, f) for f in self._fields)

    __hash__ = None  # type: ignore[assignment]  # mutable, like the pydantic models were

    def __repr__(self) -> str:
        fields = ", ".join(f"{f}={getattr(self, f)!r}" for f in self._fields)
        return f"{type(self).__name__}({fields})"


class EnrollmentIDs(_Record):
    """NanoMDM's resolved enrollment identifiers (``ids``)."""

    __slots__ = ("id", "parent_id", "type")
    _fields: ClassVar[_Names] = ("id", "parent_id", "type")

    def __init__(self, id: str | None = None, parent_id: str | None = None, type: str | None = None) -> None:
        self.id = id
        self.parent_id = parent_id
        self.type = type


class _SubEvent(_Record):
    """Fields shared by ``acknowledge_event`` and ``checkin_event``."""

    __slots__ = ("enrollment_id", "ids", "raw_payload", "udid", "url_params")
    _fields: ClassVar[_Names] = ("udid", "enrollment_id", "ids", "url_params", "raw_payload")

    def __init__(
        self,
        udid: str = "",
        enrollment_id: str = "",
        ids: EnrollmentIDs | None = None,
        url_params: dict[str, str] | None = None,
        raw_payload: bytes = b"",
    ) -> None:
        self.udid = udid
        self.enrollment_id = enrollment_id
        self.ids = ids
        self.url_params = url_params
        self.raw_payload = raw_payload

    @property
    def resolved_id(self) -> str:
        """The enrollment ID: ``ids.id`` if non-empty, else ``udid``, else ``enrollment_id``."""
        if self.ids is not None and self.ids.id:
            return self.ids.id
        return self.udid or self.enrollment_id


class AcknowledgeEvent(_SubEvent):
    """A command report (topic ``mdm.Connect``); ``raw_payload`` is the report plist."""

    __slots__ = ("command_uuid", "status")
    _fields: ClassVar[_Names] = (*_SubEvent._fields, "status", "command_uuid")

    def __init__(self, status: str = "", command_uuid: str = "", **common: Any) -> None:
        super().__init__(**common)
        self.status = status
        self.command_uuid = command_uuid


class CheckinEvent(_SubEvent):
    """A check-in (topic ``mdm.<MessageType>``); ``raw_payload`` is the check-in plist."""

    __slots__ = ("token_update_tally",)
    _fields: ClassVar[_Names] = (*_SubEvent._fields, "token_update_tally")

    def __init__(self, token_update_tally: int | None = None, **common: Any) -> None:
        super().__init__(**common)
        self.token_update_tally = token_update_tally

    @property
    def enrolling(self) -> bool:
        """Whether a TokenUpdate with this tally is the enrollment's first (WH-10)."""
        return enrolling_from_tally(self.token_update_tally)


class WebhookEvent(_Record):
    """One webhook call from the MDM server."""

    __slots__ = ("acknowledge_event", "checkin_event", "created_at", "event_id", "topic")
    _fields: ClassVar[_Names] = ("topic", "event_id", "created_at", "acknowledge_event", "checkin_event")

    def __init__(
        self,
        topic: str,
        event_id: str = "",
        created_at: datetime | None = None,
        acknowledge_event: AcknowledgeEvent | None = None,
        checkin_event: CheckinEvent | None = None,
    ) -> None:
        self.topic = topic
        self.event_id = event_id
        self.created_at = created_at
        self.acknowledge_event = acknowledge_event
        self.checkin_event = checkin_event

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


# ----------------------------------------------------------------------------------- the decoder


class _Decoder:
    """Walks the decoded JSON, collecting every problem with its location (as pydantic did)."""

    def __init__(self) -> None:
        self.errors: list[tuple[str, str]] = []

    def fail(self, loc: str, message: str) -> None:
        self.errors.append((loc, message))

    def fold(self, data: Any, names: tuple[str, ...], loc: str, shape: str) -> dict[str, Any] | None:
        """Keys renamed to field names case-insensitively (casefold also matches Go's Kelvin and
        long-s folds); unknown keys and nulls dropped (Go leaves the field alone)."""
        if not isinstance(data, dict):
            self.fail(loc, f"Input should be a valid dictionary or instance of {shape}")
            return None
        by_fold = {name.casefold(): name for name in names}
        pairs = data.pairs if isinstance(data, _JSONObject) else list(data.items())
        folded: dict[str, Any] = {}
        for key, value in pairs:
            name = by_fold.get(key.casefold()) if isinstance(key, str) else None
            if name is not None and value is not None:
                folded[name] = value
        return folded

    def strings(self, fields: dict[str, Any], names: tuple[str, ...], loc: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in names:
            if name in fields:
                value = fields[name]
                if isinstance(value, str):
                    out[name] = value
                else:
                    self.fail(f"{loc}{name}", _NOT_A_STRING)
        return out

    def ids(self, data: Any, loc: str) -> EnrollmentIDs | None:
        fields = self.fold(data, EnrollmentIDs._fields, loc, "EnrollmentIDs")
        if fields is None:
            return None
        kind = fields.get("type")
        if isinstance(kind, int) and not isinstance(kind, bool):
            fields["type"] = str(kind)  # a numeric enum of some NanoMDM build: not worth a 400
        return EnrollmentIDs(**self.strings(fields, EnrollmentIDs._fields, f"{loc}."))

    def sub_event(self, data: Any, loc: str, cls: type[_SubEvent], own: tuple[str, ...]) -> Any:
        fields = self.fold(data, cls._fields, loc, cls.__name__)
        if fields is None:
            return None
        out = self.strings(fields, ("udid", "enrollment_id", *own), f"{loc}.")
        if "ids" in fields:
            out["ids"] = self.ids(fields["ids"], f"{loc}.ids")
        if "url_params" in fields:
            out["url_params"] = self.url_params(fields["url_params"], f"{loc}.url_params")
        if "raw_payload" in fields:
            out["raw_payload"] = self.base64(fields["raw_payload"], f"{loc}.raw_payload")
        if "token_update_tally" in fields:
            out["token_update_tally"] = self.tally(fields["token_update_tally"], f"{loc}.token_update_tally")
        return cls(**out)

    def url_params(self, data: Any, loc: str) -> dict[str, str] | None:
        if not isinstance(data, dict):
            self.fail(loc, "Input should be a valid dictionary")
            return None
        out: dict[str, str] = {}
        for key, value in data.items():  # keys are data: exact, not folded
            if value is None:
                value = ""  # Go stores a JSON null map value as the zero string
            if isinstance(value, str):
                out[key] = value
            else:
                self.fail(f"{loc}.{key}", _NOT_A_STRING)
        return out

    def base64(self, value: Any, loc: str) -> bytes:
        """Go's ``[]byte`` JSON form: standard alphabet, padded; CR/LF ignored as Go does."""
        if not isinstance(value, str):
            self.fail(loc, "must be a base64 string")
            return b""
        try:
            return base64.b64decode(value.replace("\r", "").replace("\n", ""), validate=True)
        except (binascii.Error, ValueError) as exc:
            self.fail(loc, f"invalid base64: {exc}")
            return b""

    def tally(self, value: Any, loc: str) -> int | None:
        if not isinstance(value, int) or isinstance(value, bool):
            self.fail(loc, "Input should be a valid integer")
        elif value < _INT64_MIN:
            self.fail(loc, f"Input should be greater than or equal to {_INT64_MIN}")
        elif value > _INT64_MAX:
            self.fail(loc, f"Input should be less than or equal to {_INT64_MAX}")
        else:
            return value
        return None

    def timestamp(self, value: Any, loc: str) -> datetime | None:
        if not isinstance(value, str):
            self.fail(loc, "must be an RFC 3339 timestamp string")
            return None
        try:
            return _parse_rfc3339(value)
        except ValueError as exc:
            self.fail(loc, str(exc))
            return None

    def event(self, data: Any) -> WebhookEvent | None:
        fields = self.fold(data, WebhookEvent._fields, "", "WebhookEvent")
        if fields is None:
            return None
        if "topic" not in fields:
            self.fail("topic", "Field required")
        out = self.strings(fields, ("topic", "event_id"), "")
        if "created_at" in fields:
            out["created_at"] = self.timestamp(fields["created_at"], "created_at")
        if "acknowledge_event" in fields:
            out["acknowledge_event"] = self.sub_event(
                fields["acknowledge_event"], "acknowledge_event", AcknowledgeEvent, ("status", "command_uuid")
            )
        if "checkin_event" in fields:
            out["checkin_event"] = self.sub_event(fields["checkin_event"], "checkin_event", CheckinEvent, ())
        return None if self.errors else WebhookEvent(**out)


_RFC3339 = r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:([Zz])|([+-])(\d{2}):(\d{2}))"
"""Compiled on first use (``re`` keeps it), not at import: most of a millisecond the webhook's and
the events function's imports need not pay (issue 14)."""


def _parse_rfc3339(value: str) -> datetime:
    """Parse an RFC 3339 timestamp (what Go's ``time.Time`` accepts in JSON); anything else fails."""
    m = re.fullmatch(_RFC3339, value, re.ASCII)
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
    decoder = _Decoder()
    event = decoder.event(data)
    if event is None:
        raise WebhookParseError(f"invalid webhook: {error_summary(decoder.errors)}")
    return event
