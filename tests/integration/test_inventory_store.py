"""The inventory store on DynamoDB Local (subsystems.md §3): a shallow merge per id, values kept
as JSON gives them, any key name, many ids per read, and merges that race on a new record."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from nanocmd_core.storage.models import bind_table
from nanocmd_core.subsystems.inventory.storage import DynamoInventoryStore, InventoryError


@pytest.fixture
def store(table_name: str) -> DynamoInventoryStore:
    bind_table(table_name)
    return DynamoInventoryStore()


def test_a_merge_overwrites_the_given_keys_and_keeps_the_others(store: DynamoInventoryStore) -> None:
    store.store("MAC-1", {"serial_number": "C02X", "model": "MacBookPro11,3"})
    store.store("MAC-1", {"model": "Mac14,2", "sip_enabled": True})
    assert store.retrieve(["MAC-1"]) == {
        "MAC-1": {"serial_number": "C02X", "model": "Mac14,2", "sip_enabled": True}
    }


def test_values_come_back_as_they_went_in(store: DynamoInventoryStore) -> None:
    values: dict[str, Any] = {
        "text": "x",
        "count": 3,
        "ratio": 0.25,
        "big": 2**53,
        "flag": False,
        "nested": {"a": [1, "b", {"c": True}]},
        "empty_list": [],
    }
    store.store("MAC-2", values)
    got = store.retrieve(["MAC-2"])["MAC-2"]
    assert got == values
    assert isinstance(got["count"], int) and isinstance(got["ratio"], float)


@pytest.mark.parametrize("key", ["os.version", "a[0]", "100%", "v:x", "with space", "ünï"])
def test_any_key_name_round_trips(store: DynamoInventoryStore, key: str) -> None:
    store.store("MAC-3", {key: "value", "other": 1})
    assert store.retrieve(["MAC-3"])["MAC-3"] == {key: "value", "other": 1}


def test_retrieve_many_ids_omits_those_without_a_record(store: DynamoInventoryStore) -> None:
    ids = [f"DEV-{n:03d}" for n in range(150)]  # more than one BatchGetItem holds
    for enrollment_id in ids[::2]:
        store.store(enrollment_id, {"serial_number": enrollment_id.lower()})
    found = store.retrieve([*ids, ids[0]])
    assert list(found) == ids[::2]
    assert all(found[i] == {"serial_number": i.lower()} for i in ids[::2])


def test_concurrent_merges_into_a_new_record_all_survive(store: DynamoInventoryStore) -> None:
    keys = [f"key{n}" for n in range(12)]
    with ThreadPoolExecutor(max_workers=6) as pool:
        list(pool.map(lambda k: store.store("NEW-1", {k: k.upper()}), keys))
    assert store.retrieve(["NEW-1"])["NEW-1"] == {k: k.upper() for k in keys}


def test_delete_and_empty_inputs(store: DynamoInventoryStore) -> None:
    store.store("MAC-4", {"model": "x"})
    store.store("MAC-4", {})  # nothing to merge: the record is untouched
    assert store.retrieve(["MAC-4"]) == {"MAC-4": {"model": "x"}}
    store.delete("MAC-4")
    assert store.retrieve(["MAC-4"]) == {}
    with pytest.raises(InventoryError):
        store.retrieve([])
    with pytest.raises(InventoryError):
        store.store("", {"model": "x"})
