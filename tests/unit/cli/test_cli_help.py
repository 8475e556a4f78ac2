"""Every command's --help works without a server or a config, and shows an example; and the CLI
stays out of the Lambda functions (click and rich are an optional extra the layer lacks)."""

from __future__ import annotations

import ast
from pathlib import Path

import click
import pytest

from nanocmd_core.cli.main import cli
from tests.unit.cli.fake_api import runner

REPO = Path(__file__).resolve().parents[3]


def command_paths(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    for name, command in group.commands.items():
        out.append((*prefix, name))
        if isinstance(command, click.Group):
            out.extend(command_paths(command, (*prefix, name)))
    return out


EXPECTED = {
    "version", "start", "status", "instance", "instances", "cancel", "inventory", "profiles",
    "profiles list", "profiles get", "profiles put", "profiles rm", "cmdplans", "cmdplans get",
    "cmdplans put", "events", "events list", "events get", "events put", "events rm", "fvenable-template",
}  # fmt: skip


def test_every_command_of_the_issue_is_there() -> None:
    assert {" ".join(p) for p in command_paths(cli)} == EXPECTED


@pytest.mark.parametrize("path", command_paths(cli), ids=" ".join)
def test_help_has_an_example(path: tuple[str, ...]) -> None:
    result = runner().invoke(cli, [*path, "--help"], env={"NANOCMDCTL_CONFIG": "/nonexistent/config.toml"})
    assert result.exit_code == 0, result.output
    assert "Example" in result.stdout and f"nanocmdctl {path[0]}" in result.stdout


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def cli_imports(path: Path) -> set[str]:
    """The modules of click, rich or nanocmd_core.cli that a file imports."""
    return {
        m
        for m in imported_modules(path)
        if m.split(".")[0] in {"click", "rich"} or m.startswith("nanocmd_core.cli")
    }


def test_no_lambda_code_imports_the_cli_click_or_rich() -> None:
    cli_dir = REPO / "nanocmd_core" / "cli"
    sources = [*REPO.glob("functions/*/app.py"), *(REPO / "nanocmd_core").rglob("*.py")]
    offenders = {
        str(path.relative_to(REPO)): sorted(cli_imports(path))
        for path in sources
        if not path.is_relative_to(cli_dir) and cli_imports(path)
    }
    assert len(sources) > 20 and offenders == {}
    assert cli_imports(cli_dir / "main.py")  # the scan does see imports
