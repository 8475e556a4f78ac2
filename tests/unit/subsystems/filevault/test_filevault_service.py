"""The FileVault subsystem's operations and the inventory PRK adapter (subsystems.md §5.3, §5.4),
with the Go error texts."""

from __future__ import annotations

import re
from typing import Any

import pytest

from nanocmd_core.subsystems.filevault import (
    FileVault,
    FileVaultError,
    InventoryPRKStore,
    KeyPair,
    MemoryKeyPairStore,
    PRKStoreError,
    generate_self_signed,
)
from tests.fakes.stores import MemoryInventory
from tests.unit.subsystems.filevault.cms_builder import envelope


def exact(text: str) -> str:
    """A ``match=`` pattern for exactly this error text."""
    return "^" + re.escape(text) + "$"


def starts(text: str) -> str:
    return "^" + re.escape(text)


class BrokenKeys:
    def keypair(self) -> KeyPair:
        raise ConnectionError("table unreachable")


@pytest.fixture(scope="module")
def pair() -> KeyPair:
    return generate_self_signed()


def test_invprk_store_then_retrieve() -> None:
    """The Go invprk_test."""
    prks = InventoryPRKStore(MemoryInventory())
    prks.store_prk("ID1", "PRK-321-ZYX")
    assert prks.retrieve_prk("ID1") == "PRK-321-ZYX"


def test_store_prk_merges_prk_source_and_modified() -> None:
    inventory = MemoryInventory()
    inventory.records["ID1"] = {"serial_number": "C02X", "last_source": "DeviceInformation"}
    InventoryPRKStore(inventory).store_prk("ID1", "PRK")
    record = inventory.records["ID1"]
    assert record["prk"] == "PRK" and record["last_source"] == "InvPRK" and record["serial_number"] == "C02X"
    assert record["modified"].startswith("20")


@pytest.mark.parametrize(
    ("records", "fail", "message"),
    [
        ({}, ConnectionError("boom"), "retrieve inventory: boom"),
        ({}, None, "id not in inventory: ID1"),
        ({"ID1": {"serial_number": "x"}}, None, "inventory does not contain PRK value: ID1"),
        ({"ID1": {"prk": None}}, None, "inventory does not contain PRK value: ID1"),
        ({"ID1": {"prk": 123}}, None, "PRK incorrect inventory type"),
    ],
)
def test_retrieve_prk_errors(records: dict[str, Any], fail: Exception | None, message: str) -> None:
    inventory = MemoryInventory()
    inventory.records.update(records)
    inventory.fail_reads = fail
    with pytest.raises(PRKStoreError) as err:
        InventoryPRKStore(inventory).retrieve_prk("ID1")
    assert str(err.value) == message


def test_memory_key_pair_is_made_once() -> None:
    keys = MemoryKeyPairStore()
    assert keys.keypair() is keys.keypair()


def test_certificate_is_the_same_for_every_id(pair: KeyPair) -> None:
    fv = FileVault(MemoryKeyPairStore(pair), InventoryPRKStore(MemoryInventory()))
    assert fv.retrieve_prk_cert_raw("A") == fv.retrieve_prk_cert_raw("B") == pair.certificate_der


def test_escrow_decrypts_and_stores_the_prk(pair: KeyPair) -> None:
    inventory = MemoryInventory()
    fv = FileVault(MemoryKeyPairStore(pair), InventoryPRKStore(inventory))
    assert fv.escrow_prk("A", envelope(b"ABCD-EFGH", pair.certificate)) == "ABCD-EFGH"
    assert inventory.records["A"]["prk"] == "ABCD-EFGH"
    assert fv.retrieve_prk("A") == "ABCD-EFGH"


def test_escrow_error_texts(pair: KeyPair) -> None:
    inventory = MemoryInventory()
    fv = FileVault(MemoryKeyPairStore(pair), InventoryPRKStore(inventory))
    with pytest.raises(FileVaultError, match=starts("parse PRK CMS: ")) as err:
        fv.escrow_prk("A", b"garbage")
    assert not err.value.transient
    with pytest.raises(FileVaultError, match=starts("decrypting PRK CMS: no enveloped recipient")) as err:
        fv.escrow_prk("A", envelope(b"X", pair.certificate, serial=7))
    assert not err.value.transient
    inventory.fail = ConnectionError("throttled")
    with pytest.raises(FileVaultError, match=exact("store PRK: throttled")) as err:
        fv.escrow_prk("A", envelope(b"X", pair.certificate))
    assert err.value.transient
    broken = FileVault(BrokenKeys(), InventoryPRKStore(MemoryInventory()))
    with pytest.raises(FileVaultError, match=exact("getting keypair: table unreachable")) as err:
        broken.escrow_prk("A", envelope(b"X", pair.certificate))
    assert err.value.transient
