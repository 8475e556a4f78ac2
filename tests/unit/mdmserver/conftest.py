"""Fixtures for the MDM-server client tests: a fake NanoMDM/MicroMDM on loopback per test."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# ``tests.fakes`` must be importable when pytest is started as ``.venv/bin/pytest`` (which does not put
# the repository root on sys.path). Harmless if a top-level conftest or ``pythonpath`` already does.
_ROOT = str(Path(__file__).resolve().parents[3])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from tests.fakes.mdm_server import FakeMDMServer  # noqa: E402


@pytest.fixture
def nanomdm() -> Iterator[FakeMDMServer]:
    with FakeMDMServer(api_key="mdm-secret") as server:
        yield server


@pytest.fixture
def micromdm() -> Iterator[FakeMDMServer]:
    with FakeMDMServer(api_key="mdm-secret", micromdm=True) as server:
        yield server
