"""Step context codecs: the engine stores a step's context as opaque bytes and asks the workflow
for a codec by step name to hand it back decoded (DM-4, DM-5, workflows.md §1.2)."""

from __future__ import annotations

import json
from typing import Any, Generic, Protocol, TypeVar

from pydantic import BaseModel, ValidationError

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)


class ContextDecodeError(ValueError):
    """Stored or supplied context bytes do not decode with the workflow's codec."""


class ContextCodec(Protocol[T]):
    def encode(self, value: T) -> bytes: ...

    def decode(self, raw: bytes) -> T: ...

    def empty(self) -> T:
        """The value a workflow gets when there are no context bytes."""
        ...


class StringContext:
    def encode(self, value: str) -> bytes:
        return value.encode()

    def decode(self, raw: bytes) -> str:
        try:
            return raw.decode()
        except UnicodeDecodeError as exc:
            raise ContextDecodeError(f"not UTF-8: {exc}") from exc

    def empty(self) -> str:
        return ""


class IntContext:
    def encode(self, value: int) -> bytes:
        return str(int(value)).encode()

    def decode(self, raw: bytes) -> int:
        text = raw.decode(errors="replace")
        try:
            return int(text, 10)
        except ValueError as exc:
            raise ContextDecodeError(f"invalid integer: {text!r}") from exc

    def empty(self) -> int:
        return 0


class CommaListContext:
    """Items joined with ',' — no trimming, empty items kept (``""`` is one empty item)."""

    def encode(self, value: list[str]) -> bytes:
        return ",".join(value).encode()

    def decode(self, raw: bytes) -> list[str]:
        return raw.decode(errors="replace").split(",")

    def empty(self) -> list[str]:
        return []


class JSONContext(Generic[M]):
    """A pydantic model as JSON; unknown keys are ignored, as in Go's decoder."""

    def __init__(self, model: type[M]) -> None:
        self.model = model

    def encode(self, value: M) -> bytes:
        return value.model_dump_json(by_alias=True, exclude_none=True).encode()

    def decode(self, raw: bytes) -> M:
        try:
            return self.model.model_validate(json.loads(raw or b"null") or {})
        except (ValueError, ValidationError) as exc:
            raise ContextDecodeError(str(exc).splitlines()[0]) from exc

    def empty(self) -> M:
        return self.model()


def encode_context(codec: ContextCodec[Any] | None, value: Any) -> bytes:
    """Bytes to store for a step's context value; raw bytes and strings pass without a codec."""
    if value is None:
        return b""
    if codec is not None and not isinstance(value, bytes):
        return codec.encode(value)
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    raise ContextDecodeError(f"no context codec for a {type(value).__name__} value")


def decode_context(codec: ContextCodec[Any] | None, raw: bytes) -> Any:
    """DM-4: no codec → None; no bytes → the codec's empty value; else decoded (errors raise)."""
    if codec is None:
        return None
    if not raw:
        return codec.empty()
    return codec.decode(raw)
