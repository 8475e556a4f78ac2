"""Inventory subsystem storage: one flat record of JSON values per enrollment id
(subsystems.md §3). A store merges keys atomically in DynamoDB (no read-modify-write)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any, Protocol

from pynamodb.exceptions import UpdateError

from nanocmd_core.storage.models import INVENTORY, InventoryItem

_SK = "INV"


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


class DynamoInventoryStore:
    def retrieve(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Records of the ids that have one; ids without a record are omitted."""
        wanted = [i for i in dict.fromkeys(ids)]
        if not wanted:
            raise InventoryError("no ids supplied")
        found: dict[str, dict[str, Any]] = {}
        for item in InventoryItem.batch_get([(INVENTORY + i, _SK) for i in wanted]):
            found[item.pk.removeprefix(INVENTORY)] = _plain(item.values.as_dict() if item.values else {})  # type: ignore[no-untyped-call]
        return {i: found[i] for i in wanted if i in found}

    def store(self, enrollment_id: str, values: Mapping[str, Any]) -> None:
        """Shallow merge: given keys overwrite, other keys stay."""
        if not enrollment_id:
            raise InventoryError("no ids supplied")
        if not values:
            return
        item = InventoryItem(INVENTORY + enrollment_id, _SK)
        merge = [InventoryItem.values[key].set(value) for key, value in values.items()]
        for _ in range(3):
            try:
                item.update(actions=merge, condition=InventoryItem.values.exists())
                return
            except UpdateError as exc:
                if getattr(exc, "cause_response_code", None) != "ConditionalCheckFailedException":
                    raise
            try:  # first write for this id: create the record (unless someone just did)
                item.update(
                    actions=[InventoryItem.values.set(dict(values))],
                    condition=InventoryItem.values.does_not_exist(),
                )
                return
            except UpdateError as exc:
                if getattr(exc, "cause_response_code", None) != "ConditionalCheckFailedException":
                    raise
        raise InventoryError(f"set values: could not merge values for {enrollment_id}")

    def delete(self, enrollment_id: str) -> None:
        InventoryItem(INVENTORY + enrollment_id, _SK).delete()
