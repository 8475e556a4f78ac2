"""Profiles in the shared DynamoDB table, large ones in S3 (subsystems.md §4, design.md §2).

| pk           | sk   | item                                                                  |
|--------------|------|-----------------------------------------------------------------------|
| PROF#<name>  | PROF | ProfileItem: identifier, UUID, size, and the raw bytes or their S3 key |

Every profile is also in the sparse KEYS_ONLY index ``gsi2`` under ``PROFILES`` (sort key: last
upload, epoch seconds), so "all profiles" is a Query, never a table scan.

A DynamoDB item holds at most 400 KB. Profiles above ``INLINE_LIMIT`` bytes (signed profiles with
embedded certificates or packages easily are) go to S3 under a fresh key per upload; the item keeps
the key. Writes are conditional on the S3 key the writer saw, so a replaced or deleted profile's
object is always the one removed and concurrent uploads cannot orphan or lose an object. Readers
that lose a race with a replacement (object just deleted) re-read the item.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pynamodb.attributes import BinaryAttribute, NumberAttribute, UnicodeAttribute
from pynamodb.exceptions import DeleteError, PutError
from pynamodb.expressions.condition import Condition
from pynamodb.indexes import GlobalSecondaryIndex, KeysOnlyProjection

from nanocmd_core.aws.blobs import BlobStore
from nanocmd_core.deferred import deferred_attributes
from nanocmd_core.storage.models import TableItem, TableMeta
from nanocmd_core.subsystems.profile.store import ProfileInfo, ProfileNotFoundError

if TYPE_CHECKING:
    from nanocmd_core.subsystems.profile.mobileconfig import Mobileconfig


PROFILE = "PROF#"
_SK = "PROF"
_INDEX_PK = "PROFILES"
S3_PREFIX = "profiles/"
INLINE_LIMIT = 350_000
"""Raw bytes kept in the item up to this size; the rest of the 400 KB is keys and attributes."""
_ATTEMPTS = 12
"""Optimistic rounds before giving up: each round of racing writers lets one of them through, so
this many concurrent uploads of one name always all land (with the jittered pause between)."""


def _parse(raw: bytes) -> Mobileconfig:
    """The profile's top-level keys; the parser (and asn1crypto's CMS) loads on the first upload,
    not in every function that only reads profiles."""
    from nanocmd_core.subsystems.profile.mobileconfig import parse

    return parse(raw)


_DEFERRED = {"parse": "nanocmd_core.subsystems.profile.mobileconfig"}
"""For ``snapstart.load_deferred``: a restored API has the parser loaded already."""
__getattr__ = deferred_attributes(__name__, _DEFERRED)


class ProfileStorageError(RuntimeError):
    """The store could not complete a write (a 500, not the client's fault)."""


class ProfileNameIndex(GlobalSecondaryIndex["ProfileItem"]):  # type: ignore[no-untyped-call]
    """``gsi2`` seen from profiles: every profile under ``PROFILES``, by upload time."""

    class Meta:
        index_name = "gsi2"
        projection = KeysOnlyProjection()

    gsi2pk = UnicodeAttribute(hash_key=True)
    gsi2sk = NumberAttribute(range_key=True)


class ProfileItem(TableItem):
    """One stored profile (``PROF#<name>`` / ``PROF``)."""

    Meta = TableMeta
    identifier = UnicodeAttribute()
    uuid = UnicodeAttribute()
    size = NumberAttribute()
    raw = BinaryAttribute(null=True, legacy_encoding=False)
    """The bytes as uploaded, when they fit in the item."""
    s3_key = UnicodeAttribute(null=True)
    """Where the bytes are otherwise."""
    updated_at = NumberAttribute()
    gsi2pk = UnicodeAttribute(null=True)
    gsi2sk = NumberAttribute(null=True)
    gsi2 = ProfileNameIndex()


_INFO_ATTRIBUTES = ["pk", "sk", "identifier", "uuid"]


def _pk(name: str) -> str:
    return PROFILE + name


def _unchanged(s3_key: str | None, exists: bool) -> Condition:
    """The item is still as read: absent, or present with the same S3 key (or none)."""
    if not exists:
        return ProfileItem.pk.does_not_exist()
    if s3_key is None:
        no_key: Condition = ProfileItem.pk.exists() & ProfileItem.s3_key.does_not_exist()
        return no_key
    same_key: Condition = ProfileItem.s3_key == s3_key
    return same_key


def _conditional_failed(exc: Exception) -> bool:
    return getattr(exc, "cause_response_code", None) == "ConditionalCheckFailedException"


def _missing_object(exc: Exception) -> bool:
    response: Any = getattr(exc, "response", None)
    code = (response or {}).get("Error", {}).get("Code") if isinstance(response, dict) else None
    return code in {"NoSuchKey", "404", "NotFound"}


class DynamoProfileStore:
    """The ProfileStore on the shared table; ``blobs`` is needed only for profiles > INLINE_LIMIT."""

    def __init__(self, blobs: BlobStore | None = None, inline_limit: int = INLINE_LIMIT) -> None:
        self.blobs = blobs
        self.inline_limit = inline_limit

    def _current_key(self, name: str) -> tuple[bool, str | None]:
        """(exists, S3 key) of the stored item, read consistently."""
        try:
            item = ProfileItem.get(_pk(name), _SK, consistent_read=True, attributes_to_get=["pk", "s3_key"])
        except ProfileItem.DoesNotExist:
            return False, None
        return True, item.s3_key

    def store(self, name: str, raw: bytes) -> ProfileInfo:
        """Parse (ValueError when not a profile), then insert or replace the profile."""
        if not name:
            raise ValueError("empty name")
        parsed = _parse(raw)
        info = ProfileInfo(identifier=parsed.identifier, uuid=parsed.uuid)
        new_key: str | None = None
        if len(raw) > self.inline_limit:
            if self.blobs is None:
                raise ProfileStorageError(
                    f"profile of {len(raw)} bytes needs the blob bucket (NANOCMD_BUCKET), none configured"
                )
            new_key = f"{S3_PREFIX}{uuid.uuid4()}"
            self.blobs.put(new_key, raw)
        now = int(time.time())
        item = ProfileItem(
            _pk(name),
            _SK,
            identifier=info.identifier,
            uuid=info.uuid,
            size=len(raw),
            raw=None if new_key else raw,
            s3_key=new_key,
            updated_at=now,
            gsi2pk=_INDEX_PK,
            gsi2sk=now,
        )
        for attempt in range(_ATTEMPTS):
            if attempt:  # lost a race: step out of lock-step with the other writers
                time.sleep(random.uniform(0.005, 0.02) * min(attempt, 5))
            exists, old_key = self._current_key(name)
            try:
                item.save(condition=_unchanged(old_key, exists))
            except PutError as exc:
                if _conditional_failed(exc):
                    continue  # replaced or deleted meanwhile: look again
                self._drop(new_key)
                raise
            if old_key and old_key != new_key:
                self._drop(old_key)
            return info
        self._drop(new_key)
        raise ProfileStorageError(f"storing profile {name}: too many concurrent writes")

    def _drop(self, key: str | None) -> None:
        if key and self.blobs is not None:
            self.blobs.delete(key)

    def retrieve_raw(self, name: str) -> bytes:
        for _ in range(_ATTEMPTS):
            try:
                item = ProfileItem.get(_pk(name), _SK, consistent_read=True)
            except ProfileItem.DoesNotExist:
                raise ProfileNotFoundError(name) from None
            if item.s3_key is None:
                return bytes(item.raw or b"")
            if self.blobs is None:
                raise ProfileStorageError(f"profile {name} is in S3 but no blob bucket is configured")
            try:
                return self.blobs.get(item.s3_key)
            except Exception as exc:
                if not _missing_object(exc):
                    raise
                # replaced between our read and the object fetch: read the item again
        raise ProfileStorageError(f"reading profile {name}: it keeps changing")

    def retrieve_infos(self, names: Sequence[str]) -> dict[str, ProfileInfo]:
        """Infos of the names that exist, in the order asked; unknown names are omitted."""
        wanted = list(dict.fromkeys(names))
        if not wanted:
            return {}
        found: dict[str, ProfileInfo] = {}
        keys = [(_pk(n), _SK) for n in wanted]
        for item in ProfileItem.batch_get(keys, consistent_read=True, attributes_to_get=_INFO_ATTRIBUTES):
            found[item.pk.removeprefix(PROFILE)] = ProfileInfo(identifier=item.identifier, uuid=item.uuid)
        return {n: found[n] for n in wanted if n in found}

    def list_infos(self) -> dict[str, ProfileInfo]:
        """Every profile, by name: one Query on ``gsi2``, then batched key reads."""
        names = [key.pk.removeprefix(PROFILE) for key in ProfileItem.gsi2.query(_INDEX_PK)]
        return dict(sorted(self.retrieve_infos(names).items()))

    def delete(self, name: str) -> None:
        """Missing is not an error; the S3 object (if any) goes too."""
        for attempt in range(_ATTEMPTS):
            if attempt:  # lost a race: step out of lock-step with the other writers
                time.sleep(random.uniform(0.005, 0.02) * min(attempt, 5))
            exists, old_key = self._current_key(name)
            if not exists:
                return
            try:
                ProfileItem(_pk(name), _SK).delete(condition=_unchanged(old_key, True))
            except DeleteError as exc:
                if _conditional_failed(exc):
                    continue
                raise
            self._drop(old_key)
            return
        raise ProfileStorageError(f"deleting profile {name}: too many concurrent writes")


class MemoryProfileStore:
    """A ProfileStore in a dict, for tests and local experiments."""

    def __init__(self) -> None:
        self.profiles: dict[str, tuple[ProfileInfo, bytes]] = {}

    def store(self, name: str, raw: bytes) -> ProfileInfo:
        if not name:
            raise ValueError("empty name")
        parsed = _parse(raw)
        info = ProfileInfo(identifier=parsed.identifier, uuid=parsed.uuid)
        self.profiles[name] = (info, bytes(raw))
        return info

    def retrieve_raw(self, name: str) -> bytes:
        try:
            return self.profiles[name][1]
        except KeyError:
            raise ProfileNotFoundError(name) from None

    def retrieve_infos(self, names: Sequence[str]) -> dict[str, ProfileInfo]:
        return {n: self.profiles[n][0] for n in dict.fromkeys(names) if n in self.profiles}

    def list_infos(self) -> dict[str, ProfileInfo]:
        return {n: self.profiles[n][0] for n in sorted(self.profiles)}

    def delete(self, name: str) -> None:
        self.profiles.pop(name, None)
