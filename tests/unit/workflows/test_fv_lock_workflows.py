"""Decisions of the fvenable, fvrotate and lock workflows (workflows.md §7, §8, §9), against an
in-memory engine stand-in, profile store and inventory, with real CMS blobs."""

from __future__ import annotations

import base64
import plistlib
import re
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from nanocmd_core.mdm.commands import DeviceLock, InstallProfile, RotateFileVaultKey, SecurityInfo
from nanocmd_core.mdm.responses import CommandResponse, parse_response
from nanocmd_core.subsystems.filevault import (
    FileVault,
    InventoryPRKStore,
    KeyPair,
    MemoryKeyPairStore,
    generate_self_signed,
)
from nanocmd_core.subsystems.profile.store import ProfileNotFoundError
from nanocmd_core.workflow import (
    Event,
    EventFlag,
    EventsNotSupportedError,
    IncorrectCommandTypeError,
    IntContext,
    StepEnqueueing,
    StepResult,
    StepResultCommandLenMismatchError,
    StepStart,
    TimeoutNotUsedError,
    UnknownStepNameError,
    WorkflowError,
)
from nanocmd_core.workflows.fvenable import PROFILE_TEMPLATE, FileVaultEnableWorkflow, render_profile
from nanocmd_core.workflows.fvrotate import FileVaultRotateWorkflow
from nanocmd_core.workflows.lock import LockWorkflow, new_pin
from tests.fakes.reports import error_report, report, security_info
from tests.fakes.stores import MemoryInventory
from tests.unit.subsystems.filevault.cms_builder import envelope

NOW = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
ERROR_TEXT = "MDM error for status Error: The MDM command failed (MCMDMErrorDomain, 12021)"


def exact(text: str) -> str:
    """A ``match=`` pattern for exactly this error text."""
    return "^" + re.escape(text) + "$"


def starts(text: str) -> str:
    return "^" + re.escape(text)


class Enqueued:
    def __init__(self, inventory: MemoryInventory | None = None) -> None:
        self.steps: list[StepEnqueueing] = []
        self.inventory_at_enqueue: list[dict[str, Any]] = []
        self.inventory = inventory
        self.fail: Exception | None = None

    def enqueue_step(self, workflow_name: str, step: StepEnqueueing) -> None:
        if self.fail:
            raise self.fail
        if self.inventory is not None:
            self.inventory_at_enqueue.append({i: dict(self.inventory.records.get(i, {})) for i in step.ids})
        self.steps.append(step)


class Profiles:
    def __init__(self, stored: bytes | None = None, fail: Exception | None = None) -> None:
        self.stored = stored
        self.fail = fail
        self.asked: list[str] = []

    def retrieve_raw(self, name: str) -> bytes:
        self.asked.append(name)
        if self.fail:
            raise self.fail
        if self.stored is None:
            raise ProfileNotFoundError(name)
        return self.stored


@pytest.fixture(scope="module")
def pair() -> KeyPair:
    return generate_self_signed()


class Setup:
    def __init__(self, pair: KeyPair, profiles: Profiles | None = None) -> None:
        self.pair = pair
        self.inventory = MemoryInventory()
        self.enqueued = Enqueued(self.inventory)
        self.profiles = profiles or Profiles()
        self.filevault = FileVault(MemoryKeyPairStore(pair), InventoryPRKStore(self.inventory))
        self.fvenable = FileVaultEnableWorkflow(
            self.enqueued, self.profiles, self.filevault, clock=lambda: NOW
        )
        self.fvrotate = FileVaultRotateWorkflow(self.enqueued, self.filevault)
        self.lock = LockWorkflow(self.enqueued, self.inventory, clock=lambda: NOW)


@pytest.fixture
def s(pair: KeyPair) -> Setup:
    return Setup(pair)


def typed(request_type: str, raw: bytes) -> CommandResponse:
    return parse_response(request_type, raw)


def result(name: str, *responses: CommandResponse, context: Any = None, id: str = "A") -> StepResult:
    return StepResult(instance_id="i", id=id, name=name, context=context, command_results=list(responses))


def ack(request_type: str, **fields: Any) -> CommandResponse:
    return typed(request_type, report("U", "A", **fields))


def error(request_type: str) -> CommandResponse:
    return typed(request_type, error_report("U", "A"))


# --- fvenable: start ---------------------------------------------------------------------


def test_fvenable_template_is_the_spec_bytes() -> None:
    import hashlib

    assert len(PROFILE_TEMPLATE) == 1940
    assert hashlib.sha256(PROFILE_TEMPLATE).hexdigest() == (
        "a156661970782d026a21b50201b92c64ce878b6b1ef54810418cef7fc52428ef"
    )


def test_fvenable_start_one_install_step_per_id_with_the_certificate(s: Setup) -> None:
    s.fvenable.start(StepStart(instance_id="i", ids=["A", "B"]))
    assert s.profiles.asked == ["io.micromdm.wf.fvenable.v1"]
    assert [(st.ids, st.name, st.context, st.not_until) for st in s.enqueued.steps] == [
        (["A"], "install", None, None),
        (["B"], "install", None, None),
    ]
    commands = [st.commands[0] for st in s.enqueued.steps]
    assert all(isinstance(c, InstallProfile) for c in commands)
    assert commands[0].command_uuid != commands[1].command_uuid
    assert isinstance(commands[0], InstallProfile)
    profile = plistlib.loads(commands[0].payload)  # the placeholder became valid <data>
    assert profile["PayloadContent"][2]["PayloadContent"] == s.pair.certificate_der
    expected = PROFILE_TEMPLATE.replace(b"__CERTIFICATE__", base64.b64encode(s.pair.certificate_der))
    assert commands[0].payload == expected


@pytest.mark.parametrize("stored", [None, b""])
def test_fvenable_falls_back_to_the_builtin_template(pair: KeyPair, stored: bytes | None) -> None:
    s = Setup(pair, Profiles(stored=stored))
    s.fvenable.start(StepStart(instance_id="i", ids=["A"]))
    command = s.enqueued.steps[0].commands[0]
    assert isinstance(command, InstallProfile)
    assert command.payload == render_profile(PROFILE_TEMPLATE, pair.certificate_der)


def test_fvenable_uses_an_uploaded_template(pair: KeyPair) -> None:
    custom = b"<x>__CERTIFICATE__ and __CERTIFICATE__</x>"
    s = Setup(pair, Profiles(stored=custom))
    s.fvenable.start(StepStart(instance_id="i", ids=["A"]))
    command = s.enqueued.steps[0].commands[0]
    assert isinstance(command, InstallProfile)
    cert = base64.b64encode(pair.certificate_der)
    assert command.payload == b"<x>" + cert + b" and __CERTIFICATE__</x>"  # only the first
    assert render_profile(b"<no placeholder/>", pair.certificate_der) == b"<no placeholder/>"


def test_fvenable_start_errors(pair: KeyPair) -> None:
    s = Setup(pair, Profiles(fail=ConnectionError("down")))
    with pytest.raises(
        RuntimeError, match=exact("getting profile: retrieving profile io.micromdm.wf.fvenable.v1: down")
    ):
        s.fvenable.start(StepStart(instance_id="i", ids=["A"]))

    class NoCert:
        def retrieve_prk_cert_raw(self, enrollment_id: str) -> bytes:
            raise ConnectionError("no key")

    s = Setup(pair)
    s.fvenable.filevault = NoCert()  # type: ignore[assignment]
    with pytest.raises(
        RuntimeError, match=exact("creating install profile command for A: retrieving PRK cert raw: no key")
    ):
        s.fvenable.start(StepStart(instance_id="i", ids=["A"]))

    s = Setup(pair)
    s.enqueued.fail = ValueError("mdm down")
    with pytest.raises(RuntimeError, match=exact("enqueueing step for A: mdm down")):
        s.fvenable.start(StepStart(instance_id="i", ids=["A", "B"]))


# --- fvenable: steps ---------------------------------------------------------------------


def test_fvenable_install_acknowledged_starts_polling_in_two_minutes(s: Setup) -> None:
    s.fvenable.step_completed(result("install", ack("InstallProfile")))
    [step] = s.enqueued.steps
    assert step.ids == ["A"] and step.name == "poll" and step.context == 180
    assert step.not_until == NOW + timedelta(minutes=2)
    assert [type(c) for c in step.commands] == [SecurityInfo]
    assert isinstance(s.fvenable.context_codec("poll"), IntContext)
    assert s.fvenable.context_codec("install") is None and s.fvenable.context_codec("") is None


def test_fvenable_install_errors(s: Setup) -> None:
    with pytest.raises(WorkflowError, match=exact(f"validating install response: {ERROR_TEXT}")):
        s.fvenable.step_completed(result("install", error("InstallProfile")))
    with pytest.raises(StepResultCommandLenMismatchError):
        s.fvenable.step_completed(result("install"))
    with pytest.raises(IncorrectCommandTypeError):
        s.fvenable.step_completed(result("install", ack("SecurityInfo")))
    with pytest.raises(UnknownStepNameError, match=exact("unknown step name: other")):
        s.fvenable.step_completed(result("other", ack("InstallProfile")))
    assert s.enqueued.steps == []


def test_fvenable_poll_escrows_the_prk_and_ends(s: Setup) -> None:
    cms = envelope(b"ABCD-EFGH-IJKL-MNOP-QRST-UVWX", s.pair.certificate)
    response = typed(
        "SecurityInfo", security_info("U", "A", FDE_Enabled=True, FDE_PersonalRecoveryKeyCMS=cms)
    )
    s.fvenable.step_completed(result("poll", response, context=12))
    assert s.enqueued.steps == []
    record = s.inventory.records["A"]
    assert record["prk"] == "ABCD-EFGH-IJKL-MNOP-QRST-UVWX" and record["last_source"] == "InvPRK"


@pytest.mark.parametrize(
    "response",
    [
        pytest.param(typed("SecurityInfo", error_report("U", "A")), id="invalid response"),
        pytest.param(typed("SecurityInfo", security_info("U", "A")), id="FDE_Enabled absent"),
        pytest.param(typed("SecurityInfo", security_info("U", "A", FDE_Enabled=False)), id="FDE off"),
        pytest.param(typed("SecurityInfo", security_info("U", "A", FDE_Enabled=True)), id="no PRK CMS"),
        pytest.param(
            typed(
                "SecurityInfo", security_info("U", "A", FDE_Enabled=True, FDE_PersonalRecoveryKeyCMS=b"junk")
            ),
            id="escrow fails",
        ),
    ],
)
def test_fvenable_poll_keeps_polling(s: Setup, response: CommandResponse) -> None:
    s.fvenable.step_completed(result("poll", response, context=0))
    [step] = s.enqueued.steps
    assert step.name == "poll" and step.context == -1 and step.ids == ["A"]
    assert step.not_until == NOW + timedelta(minutes=2)
    assert "prk" not in s.inventory.records.get("A", {})


def test_fvenable_poll_ends_when_the_counter_is_negative(s: Setup) -> None:
    cms = envelope(b"PRK", s.pair.certificate)
    good = typed("SecurityInfo", security_info("U", "A", FDE_Enabled=True, FDE_PersonalRecoveryKeyCMS=cms))
    with pytest.raises(WorkflowError, match=exact("maximum poll counter reached, ending workflow")):
        s.fvenable.step_completed(result("poll", good, context=-1))
    assert s.enqueued.steps == [] and "A" not in s.inventory.records  # response not examined


def test_fvenable_poll_errors(s: Setup) -> None:
    info = ack("SecurityInfo")
    with pytest.raises(WorkflowError, match=exact("invalid context value type")):
        s.fvenable.step_completed(result("poll", info, context="3"))
    with pytest.raises(StepResultCommandLenMismatchError):
        s.fvenable.step_completed(result("poll", info, info, context=3))
    with pytest.raises(IncorrectCommandTypeError):
        s.fvenable.step_completed(result("poll", ack("InstallProfile"), context=3))


def test_timeouts_and_events_are_not_used(s: Setup) -> None:
    for workflow in (s.fvenable, s.fvrotate, s.lock):
        with pytest.raises(TimeoutNotUsedError):
            workflow.step_timeout(result("poll"))
        with pytest.raises(EventsNotSupportedError):
            workflow.event(Event(EventFlag.IDLE), "A", None)
    assert s.fvrotate.context_codec("") is None and s.lock.context_codec("") is None


# --- fvrotate ----------------------------------------------------------------------------


def test_fvrotate_start_sends_the_escrowed_prk_and_our_certificate(s: Setup) -> None:
    s.inventory.records = {"A": {"prk": "OLD-A"}, "B": {"prk": "OLD-B"}}
    s.fvrotate.start(StepStart(instance_id="i", ids=["A", "B"]))
    assert [(st.ids, st.name, st.context) for st in s.enqueued.steps] == [
        (["A"], "", None),
        (["B"], "", None),
    ]
    command = s.enqueued.steps[0].commands[0]
    assert isinstance(command, RotateFileVaultKey)
    inner = plistlib.loads(command.to_plist())["Command"]
    assert inner == {
        "RequestType": "RotateFileVaultKey",
        "KeyType": "personal",
        "FileVaultUnlock": {"Password": "OLD-A"},
        "ReplyEncryptionCertificate": s.pair.certificate_der,
    }


@pytest.mark.parametrize(
    ("records", "message"),
    [
        ({}, "retrieving PRK for A: id not in inventory: A"),
        ({"A": {"model": "x"}}, "retrieving PRK for A: inventory does not contain PRK value: A"),
        ({"A": {"prk": 5}}, "retrieving PRK for A: PRK incorrect inventory type"),
    ],
)
def test_fvrotate_start_without_an_escrowed_prk(s: Setup, records: dict[str, Any], message: str) -> None:
    s.inventory.records = records
    with pytest.raises(WorkflowError) as err:
        s.fvrotate.start(StepStart(instance_id="i", ids=["A"]))
    assert str(err.value) == message
    assert s.enqueued.steps == []


def test_fvrotate_start_inventory_unreadable_is_a_server_error(s: Setup) -> None:
    def broken(ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        raise ConnectionError("throttled")

    s.inventory.retrieve = broken  # type: ignore[method-assign]
    with pytest.raises(
        RuntimeError, match=exact("retrieving PRK for A: retrieve inventory: throttled")
    ) as err:
        s.fvrotate.start(StepStart(instance_id="i", ids=["A"]))
    assert not isinstance(err.value, WorkflowError)


def test_fvrotate_start_enqueue_error(s: Setup) -> None:
    s.inventory.records = {"A": {"prk": "OLD"}}
    s.enqueued.fail = ValueError("mdm down")
    with pytest.raises(RuntimeError, match=exact("enqueueing step for A: mdm down")):
        s.fvrotate.start(StepStart(instance_id="i", ids=["A"]))


def rotate_report(**rotate_result: Any) -> CommandResponse:
    fields: dict[str, Any] = {"RotateResult": rotate_result} if rotate_result else {}
    return typed("RotateFileVaultKey", report("U", "A", **fields))


def test_fvrotate_escrows_the_new_key(s: Setup) -> None:
    s.inventory.records = {"A": {"prk": "OLD"}}
    cms = envelope(b"NEW-KEY", s.pair.certificate, content="1.2.840.113549.3.7")
    s.fvrotate.step_completed(result("", rotate_report(EncryptedNewRecoveryKey=cms)))
    assert s.inventory.records["A"]["prk"] == "NEW-KEY" and s.enqueued.steps == []


def test_fvrotate_step_errors(s: Setup) -> None:
    with pytest.raises(WorkflowError, match=exact(f"validating rotate response: {ERROR_TEXT}")):
        s.fvrotate.step_completed(result("", error("RotateFileVaultKey")))
    with pytest.raises(WorkflowError, match=exact("rotate result has missing (nil) fields")):
        s.fvrotate.step_completed(result("", rotate_report()))
    with pytest.raises(WorkflowError, match=exact("rotate result has missing (nil) fields")):
        s.fvrotate.step_completed(result("", rotate_report(Other=True)))
    with pytest.raises(WorkflowError, match=starts("escrow PRK for A: parse PRK CMS: ")):
        s.fvrotate.step_completed(result("", rotate_report(EncryptedNewRecoveryKey=b"junk")))
    with pytest.raises(StepResultCommandLenMismatchError):
        s.fvrotate.step_completed(result(""))
    with pytest.raises(IncorrectCommandTypeError):
        s.fvrotate.step_completed(result("", ack("DeviceLock")))


def test_fvrotate_storage_failure_is_retried_not_ended(s: Setup) -> None:
    """A WorkflowError would end the step; storage trouble must be redelivered instead."""
    s.inventory.fail = ConnectionError("throttled")
    cms = envelope(b"NEW", s.pair.certificate)
    with pytest.raises(RuntimeError, match=exact("escrow PRK for A: store PRK: throttled")) as err:
        s.fvrotate.step_completed(result("", rotate_report(EncryptedNewRecoveryKey=cms)))
    assert not isinstance(err.value, WorkflowError)


# --- lock --------------------------------------------------------------------------------


def test_lock_escrows_a_pin_before_sending_it(s: Setup) -> None:
    s.inventory.records = {"A": {"modified": "earlier"}}
    s.lock.start(StepStart(instance_id="i", ids=["A", "B"]))
    assert [(st.ids, st.name) for st in s.enqueued.steps] == [(["A"], ""), (["B"], "")]
    for step, seen in zip(s.enqueued.steps, s.enqueued.inventory_at_enqueue, strict=True):
        [enrollment_id] = step.ids
        [command] = step.commands
        assert isinstance(command, DeviceLock)
        pin = command.pin
        assert pin is not None and len(pin) == 6 and pin.isdigit()
        assert plistlib.loads(command.to_plist())["Command"] == {"RequestType": "DeviceLock", "PIN": pin}
        stored = seen[enrollment_id]  # already in inventory when the step was enqueued
        assert stored["io.micromdm.wf.lock.v1.pin"] == pin
        assert stored["io.micromdm.wf.lock.v1.sent"] == "2026-11-26T10:00:00Z"
        assert stored["last_source"] == "io.micromdm.wf.lock.v1"
    assert s.inventory.records["A"]["modified"] == "earlier"  # not refreshed (workflows.md §12.4)
    assert "modified" not in s.inventory.records["B"]
    first, second = (st.commands[0] for st in s.enqueued.steps)
    assert first.command_uuid != second.command_uuid


def test_lock_start_errors(s: Setup) -> None:
    s.inventory.fail = ConnectionError("down")
    with pytest.raises(RuntimeError, match=exact("store inventory values for A: down")):
        s.lock.start(StepStart(instance_id="i", ids=["A"]))
    assert s.enqueued.steps == []  # never sent a PIN that is not escrowed
    s.inventory.fail = None
    s.enqueued.fail = ValueError("mdm down")
    with pytest.raises(RuntimeError, match=exact("enqueueing step for A: mdm down")):
        s.lock.start(StepStart(instance_id="i", ids=["A"]))


def test_lock_pin_uses_a_csprng(monkeypatch: pytest.MonkeyPatch) -> None:
    digits = iter([0, 0, 7, 9, 1, 2])
    monkeypatch.setattr(secrets, "randbelow", lambda n: next(digits))
    assert new_pin() == "007912"  # leading zeros kept


def test_lock_response_recorded(s: Setup) -> None:
    s.lock.step_completed(result("", ack("DeviceLock", MessageResult="locked")))
    assert s.inventory.records["A"] == {
        "io.micromdm.wf.lock.v1.received": "2026-11-26T10:00:00Z",
        "last_source": "io.micromdm.wf.lock.v1",
        "io.micromdm.wf.lock.v1.message_result": "locked",
    }
    s.lock.step_completed(result("", ack("DeviceLock", MessageResult=""), id="B"))
    assert "io.micromdm.wf.lock.v1.message_result" not in s.inventory.records["B"]
    s.lock.step_completed(result("", ack("DeviceLock"), id="C"))
    assert set(s.inventory.records["C"]) == {"io.micromdm.wf.lock.v1.received", "last_source"}


def test_lock_step_errors(s: Setup) -> None:
    with pytest.raises(WorkflowError, match=exact(f"validating lock response: {ERROR_TEXT}")):
        s.lock.step_completed(result("", error("DeviceLock")))
    assert s.inventory.records == {}
    with pytest.raises(StepResultCommandLenMismatchError):
        s.lock.step_completed(result(""))
    with pytest.raises(IncorrectCommandTypeError):
        s.lock.step_completed(result("", ack("SecurityInfo")))
    s.inventory.fail = ConnectionError("throttled")
    with pytest.raises(RuntimeError, match=exact("update inventory values for A: throttled")) as err:
        s.lock.step_completed(result("", ack("DeviceLock")))
    assert not isinstance(err.value, WorkflowError)
