"""The interface workflows use to read profiles (subsystems.md §4.2); DynamoDB implements it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, Protocol


class ProfileNotFoundError(KeyError):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name

    def __str__(self) -> str:
        return f"profile not found: {self.name}"


class ProfileInfo(NamedTuple):
    """What the profile workflow compares with a device's ProfileList."""

    identifier: str
    uuid: str


class ProfileStore(Protocol):
    def store(self, name: str, raw: bytes) -> ProfileInfo:
        """Store (or replace) a profile; its identifier and UUID are read from it (ValueError if
        it is not a profile)."""
        ...

    def retrieve_raw(self, name: str) -> bytes:
        """The profile bytes exactly as uploaded (ProfileNotFoundError)."""
        ...

    def retrieve_infos(self, names: Sequence[str]) -> dict[str, ProfileInfo]:
        """Identifier and UUID of the named profiles; unknown names are omitted."""
        ...

    def list_infos(self) -> dict[str, ProfileInfo]:
        """Every stored profile."""
        ...

    def delete(self, name: str) -> None:
        """Missing is not an error."""
        ...
