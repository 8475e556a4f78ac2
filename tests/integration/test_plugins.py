"""Workflows from other packages (issue 6): entry points, NANOCMD_WORKFLOWS, clashes, and the
engine running with an MDM-server client of the author's own."""

from __future__ import annotations

import plistlib
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path

import pytest

from nanocmd_core.config import Settings
from nanocmd_core.engine.registry import WorkflowNameClashError
from nanocmd_core.mdmserver.client import ChunkResult
from nanocmd_core.plugins import ENTRY_POINT_GROUP, WorkflowLoadError, declared_workflows
from nanocmd_core.wiring import build_app
from tests.fakes.reports import device_information, security_info

WORKFLOW_MODULE = """
from nanocmd_core.mdm.commands import SecurityInfo
from nanocmd_core.workflow import StepResult, StepStart, Workflow


class PingWorkflow(Workflow):
    name = "{name}"
    completed: list[str] = []

    def start(self, step: StepStart) -> None:
        self.enqueue(step.new_step_enqueueing(SecurityInfo()))

    def step_completed(self, result: StepResult) -> None:
        PingWorkflow.completed.append(result.id)
"""


def install_fake_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, module: str, workflow_name: str
) -> None:
    """A pip-installed package, as far as importlib.metadata can tell: a module and a dist-info
    with an entry point in the ``nanocmd.workflows`` group."""
    (tmp_path / f"{module}.py").write_text(WORKFLOW_MODULE.format(name=workflow_name))
    dist = tmp_path / f"{module}-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        textwrap.dedent(f"""
        [{ENTRY_POINT_GROUP}]
        ping = {module}:PingWorkflow
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, module, raising=False)


class RecordingClient:
    """An MDM-server client of one's own (here: nothing leaves the process)."""

    max_ids_per_request = 10
    supports_multi_target = True

    def __init__(self) -> None:
        self.sent: list[tuple[list[str], bytes]] = []

    def enqueue(self, ids: Sequence[str], command_plist: bytes) -> ChunkResult:
        self.sent.append((list(ids), command_plist))
        return ChunkResult(ids=list(ids), ok=True, status=200, detail="", failed_ids=[])

    def push(self, ids: Sequence[str]) -> list[ChunkResult]:
        return [ChunkResult(ids=list(ids), ok=True, status=200, detail="", failed_ids=[])]


def test_an_installed_package_s_workflow_is_registered_and_runs(
    table_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_fake_package(tmp_path, monkeypatch, "nanocmd_fake_ping", "com.example.ping.v1")
    client = RecordingClient()
    app = build_app(Settings(table_name=table_name), mdm=client)
    assert "com.example.ping.v1" in app.engine.registry
    assert "io.micromdm.wf.inventory.v1" in app.engine.registry  # beside the built-in ones
    app.engine.start_workflow("com.example.ping.v1", ["DEV-1"])
    [(_, plist)] = client.sent

    uuid = plistlib.loads(plist)["CommandUUID"]
    app.engine.handle_command_report("DEV-1", uuid, security_info(uuid, "DEV-1"))
    assert sys.modules["nanocmd_fake_ping"].PingWorkflow.completed == ["DEV-1"]


def test_a_name_clash_with_a_built_in_is_an_error_at_start(
    table_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_fake_package(tmp_path, monkeypatch, "nanocmd_fake_clash", "io.micromdm.wf.inventory.v1")
    with pytest.raises(WorkflowNameClashError, match=r"io\.micromdm\.wf\.inventory\.v1"):
        build_app(Settings(table_name=table_name), mdm=RecordingClient())


def test_import_paths_from_the_setting(
    table_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "nanocmd_fake_setting.py").write_text(WORKFLOW_MODULE.format(name="com.example.setting.v1"))
    monkeypatch.syspath_prepend(str(tmp_path))
    settings = Settings(table_name=table_name, workflows="nanocmd_fake_setting:PingWorkflow")
    app = build_app(settings, mdm=RecordingClient())
    assert "com.example.setting.v1" in app.engine.registry
    with pytest.raises(WorkflowLoadError, match=r"not 'package\.module:attr'"):
        declared_workflows("no_colon_here")
    with pytest.raises(WorkflowLoadError, match="cannot load workflow"):
        declared_workflows("nanocmd_nonexistent_module:Thing")


def test_the_inventory_workflow_with_an_alternative_mdm_client(table_name: str) -> None:
    """The MDM-server client is an interface: the engine runs as well with another one."""
    client = RecordingClient()
    app = build_app(Settings(table_name=table_name), mdm=client, plugins=[])
    ids = [f"D{i}" for i in range(25)]
    app.engine.start_workflow("io.micromdm.wf.inventory.v1", ids)
    assert [len(i) for i, _ in client.sent] == [10, 10, 10, 10, 5, 5]  # its own chunk size
    di, si = (plistlib.loads(p)["CommandUUID"] for _, p in client.sent[4:6])
    app.engine.handle_command_report("D24", di, device_information(di, "D24", Model="Mac14,2"))
    app.engine.handle_command_report(
        "D24", si, security_info(si, "D24", SystemIntegrityProtectionEnabled=True)
    )
    assert app.inventory.retrieve(["D24"])["D24"]["model"] == "Mac14,2"
