"""Integration tests run against DynamoDB Local and moto (started once per session by tests/conftest.py).

Every test here gets the services; ask for ``table_name``, ``queue_url`` or ``nanocmd_env`` for fresh
resources made from template.yaml.
"""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _aws_services(aws_env: dict[str, str]) -> None:
    """Start the session's DynamoDB Local and moto before any test here, whatever it asks for."""
