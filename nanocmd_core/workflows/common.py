"""Small helpers shared by the built-in workflows."""

from __future__ import annotations

from datetime import datetime


def local_timestamp(when: datetime) -> str:
    """RFC 3339 with fractional seconds, trailing zeros dropped, ``Z`` for UTC — the way Go
    prints ``time.Time`` into JSON (subsystems.md §3.1)."""
    text = when.isoformat()
    if "." in text:
        head, _, rest = text.partition(".")
        digits = rest[:6]
        offset = rest[6:]
        digits = digits.rstrip("0")
        text = f"{head}.{digits}{offset}" if digits else f"{head}{offset}"
    return text[:-6] + "Z" if text.endswith("+00:00") else text
