"""Simulated devices behind a NanoMDM-shaped server, answering their commands through ``/webhook``.

What NanoMDM does with a real device, compressed: a push (an enqueue without ``?nopush``, or a
push request) makes the device connect; it checks in with ``Status: Idle`` (NanoMDM posts that
as an ``mdm.Connect`` webhook too), is handed its next queued command, answers it (one more
``mdm.Connect`` webhook, the report plist base64 in ``raw_payload``), is handed the next, and so
on until its queue is empty. One device's requests are strictly one after the other; different
devices run concurrently on a pool of ``senders`` threads, each with its own keep-alive connection
to the stack. A push that arrives while the device is connected makes it look again before it
leaves (so a command enqueued mid-session is never stranded).

DeviceInformation and SecurityInfo are answered with plausible Acknowledged payloads
(``tests/fakes/reports.py`` builds the plists); any other command with a bare Acknowledged.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from bench.nanomdm import WebhookSender
from tests.fakes.mdm_server import FakeMDMServer
from tests.fakes.reports import connect_webhook, device_information, idle_webhook, report, security_info

MODEL = "Mac14,2"


def device_id(i: int) -> str:
    """A UDID-shaped enrollment id, stable per index."""
    return f"B3A7C0DE-{i // 10**8:04X}-4{(i // 10**4) % 10**3:03d}-8{i % 10**3:03d}-{i:012X}"


def answer_plist(command: dict[str, Any], udid: str, index: int) -> bytes:
    """The device's Acknowledged report for ``command``."""
    cmd_uuid = str(command.get("CommandUUID", ""))
    request_type = (command.get("Command") or {}).get("RequestType")
    if request_type == "DeviceInformation":
        return device_information(
            cmd_uuid,
            udid,
            UDID=udid,
            Model=MODEL,
            ModelName="MacBook Air",
            ProductName=MODEL,
            SerialNumber=f"C02F{index:08d}",
            DeviceName=f"Bench Mac {index}",
            BuildVersion="23A344",
            OSVersion="14.0",
            EthernetMAC=f"f0:18:98:{(index >> 16) & 255:02x}:{(index >> 8) & 255:02x}:{index & 255:02x}",
            IsAppleSilicon=True,
            HasBattery=True,
            IsMultiUser=False,
            SupportsLOMDevice=False,
        )
    if request_type == "SecurityInfo":
        return security_info(
            cmd_uuid,
            udid,
            SystemIntegrityProtectionEnabled=True,
            AuthenticatedRootVolumeEnabled=True,
            FDE_Enabled=False,
            FDE_HasPersonalRecoveryKey=False,
            FDE_HasInstitutionalRecoveryKey=False,
            RemoteDesktopEnabled=False,
            IsRecoveryLockEnabled=False,
            FirewallSettings={"FirewallEnabled": True, "BlockAllIncoming": False, "StealthMode": False},
            SecureBoot={"SecureBootLevel": "full"},
            ManagementStatus={
                "EnrolledViaDEP": True,
                "IsUserEnrollment": False,
                "UserApprovedEnrollment": True,
            },
        )
    return report(cmd_uuid, udid)


@dataclass
class _Device:
    udid: str
    index: int
    answered: int = 0  # how many of its queued commands it has answered
    connected: bool = False
    pushed_again: bool = False
    answered_types: set[str] = field(default_factory=set)
    done_at: float | None = None  # perf_counter when its last expected command was answered


class Fleet:
    """``n`` devices (indexes ``first_index`` ..) behind ``mdm``, which must be started; use as a
    context manager (attaches to the server's pushes, starts the sender threads).

    ``expect``: the request types after whose answers a device counts as done (``done_at``);
    ``idle``: post the session's Idle check-in webhook, as NanoMDM does (on by default).
    """

    def __init__(
        self,
        mdm: FakeMDMServer,
        n: int,
        *,
        first_index: int = 0,
        senders: int = 48,
        expect: tuple[str, ...] = ("DeviceInformation", "SecurityInfo"),
        idle: bool = True,
    ) -> None:
        devices = (_Device(device_id(i), i) for i in range(first_index, first_index + n))
        self.devices = {d.udid: d for d in devices}
        self.ids = list(self.devices)
        self.sender: WebhookSender | None = None
        self.senders = senders
        self.expect = set(expect)
        self.idle = idle
        self.mdm = mdm
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self.errors: list[str] = []
        self.sessions = 0
        self.stray_pushes = 0  # pushes for ids that are not this fleet's
        self._all_done = threading.Event()
        self._done = 0

    # -- lifecycle
    def __enter__(self) -> Fleet:
        self._pool = ThreadPoolExecutor(max_workers=self.senders, thread_name_prefix="device")
        self.mdm.on_push = self._pushed
        return self

    def __exit__(self, *exc: object) -> None:
        self.mdm.on_push = None
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def connect(self, sender: WebhookSender) -> None:
        """Attach the webhook sender and open one keep-alive connection per sender thread (before
        any timing: the stack's listen backlog is small)."""
        self.sender = sender
        assert self._pool is not None
        barrier = threading.Barrier(self.senders)

        def warm() -> None:
            sender.http.connect()
            barrier.wait(timeout=60)  # holding each thread until all have one: one connection each

        for f in [self._pool.submit(warm) for _ in range(self.senders)]:
            f.result()

    # -- progress
    @property
    def done(self) -> int:
        with self._lock:
            return self._done

    def done_ids(self) -> list[str]:
        with self._lock:
            return [d.udid for d in self.devices.values() if d.done_at is not None]

    def wait_all_answered(self, timeout: float) -> bool:
        return self._all_done.wait(timeout)

    # -- the MDM server's push callback (its server thread)
    def _pushed(self, ids: list[str]) -> None:
        start: list[_Device] = []
        with self._lock:
            for udid in ids:
                device = self.devices.get(udid)
                if device is None:
                    self.stray_pushes += 1
                elif device.connected:
                    device.pushed_again = True
                else:
                    device.connected = True
                    start.append(device)
        pool = self._pool
        if pool is None:
            return
        for device in start:
            pool.submit(self._session, device)

    # -- one device's connection: Idle, then each queued command, one after the other
    def _session(self, device: _Device) -> None:
        try:
            self._run_session(device)
        except Exception as exc:  # a broken device must not hang the benchmark silently
            with self._lock:
                self.errors.append(f"{device.udid}: {exc!r}")
                device.connected = False

    def _run_session(self, device: _Device) -> None:
        sender = self.sender
        assert sender is not None, "Fleet.connect(sender) first"
        while True:
            with self._lock:
                self.sessions += 1
            if self.idle:
                self._post(sender, idle_webhook(device.udid), device)
            while True:
                commands = self.mdm.commands_for(device.udid)
                if device.answered >= len(commands):
                    break
                command = commands[device.answered]
                raw = answer_plist(command, device.udid, device.index)
                self._post(
                    sender, connect_webhook(device.udid, str(command.get("CommandUUID", "")), raw), device
                )
                device.answered += 1
                request_type = (command.get("Command") or {}).get("RequestType")
                if isinstance(request_type, str):
                    self._answered(device, request_type)
            with self._lock:
                if device.pushed_again:
                    device.pushed_again = False
                    continue
                device.connected = False
                return

    def _post(self, sender: WebhookSender, body: bytes, device: _Device) -> None:
        status, _ = sender.post(body)
        if status != 200:
            with self._lock:
                self.errors.append(f"{device.udid}: /webhook answered {status}")

    def _answered(self, device: _Device, request_type: str) -> None:
        with self._lock:
            device.answered_types.add(request_type)
            if device.done_at is None and self.expect <= device.answered_types:
                device.done_at = time.perf_counter()
                self._done += 1
                if self._done == len(self.devices):
                    self._all_done.set()
