"""Inventory subsystem storage: one flat record of JSON values per enrollment id
(subsystems.md §3). A store merges keys atomically in DynamoDB (no read-modify-write)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any, Protocol

from pynamodb.attributes import MapAttribute
from pynamodb.constants import NONE
from pynamodb.expressions.operand import Path

from nanocmd_core.storage.models import INVENTORY, InventoryItem

_SK = "INV"
_RAW_MAP: Any = MapAttribute()  # type: ignore[no-untyped-call]


class InventoryError(ValueError):
    pass


class InventoryStore(Protocol):
    def retrieve(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]: ...
    def store(self, enrollment_id: str, values: Mapping[str, Any]) -> None: ...
    def delete(self, enrollment_id: str) -> None: ...


def _plain(value: Any) -> Any:
    """DynamoDB numbers come back as Decimal; JSON wants int or float."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


_VALUE = "v:"
"""Each inventory key is a top-level attribute ``v:<key>``: a merge is then one UpdateItem that
creates the record or adds to it (a map attribute would need a second write for a new record)."""


def _attribute(key: str) -> str:
    # pynamodb reads "[" in a path segment as a list index: keep them (and "%") out of names
    return _VALUE + key.replace("%", "%25").replace("[", "%5B").replace("]", "%5D")


def _key(attribute: str) -> str:
    return attribute.removeprefix(_VALUE).replace("%5D", "]").replace("%5B", "[").replace("%25", "%")


class DynamoInventoryStore:
    def retrieve(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Records of the ids that have one; ids without a record are omitted."""
        wanted = [i for i in dict.fromkeys(ids)]
        if not wanted:
            raise InventoryError("no ids supplied")
        found: dict[str, dict[str, Any]] = {}
        for item in InventoryItem.batch_get([(INVENTORY + i, _SK) for i in wanted]):
            values = {a: v for a, v in item.undeclared.items() if a.startswith(_VALUE)}
            decoded = _RAW_MAP.deserialize(values)
            found[item.pk.removeprefix(INVENTORY)] = {_key(a): _plain(v) for a, v in decoded.items()}
        return {i: found[i] for i in wanted if i in found}

    def store(self, enrollment_id: str, values: Mapping[str, Any]) -> None:
        """Shallow merge: given keys overwrite, other keys stay. One UpdateItem, no read."""
        if not enrollment_id:
            raise InventoryError("no ids supplied")
        if not values:
            return
        merge = [Path([_attribute(key)]).set(value) for key, value in values.items()]
        InventoryItem._get_connection().update_item(
            INVENTORY + enrollment_id, _SK, actions=merge, return_values=NONE
        )

    def delete(self, enrollment_id: str) -> None:
        InventoryItem(INVENTORY + enrollment_id, _SK).delete()
