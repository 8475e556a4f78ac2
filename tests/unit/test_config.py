"""NANOCMD_HISTORY_DAYS (issue 11) and NANOCMD_SYNC_START_MAX (issue 12)."""

from __future__ import annotations

import pytest

from nanocmd_core.config import ConfigError, Settings


def test_history_days_default_and_override() -> None:
    assert Settings.from_env({}).history_days == 30
    assert Settings.from_env({"NANOCMD_HISTORY_DAYS": " 7 "}).history_days == 7


@pytest.mark.parametrize("value", ["0", "-1", "a week", "1.5"])
def test_history_days_must_be_a_positive_whole_number(value: str) -> None:
    with pytest.raises(ConfigError, match="NANOCMD_HISTORY_DAYS"):
        Settings.from_env({"NANOCMD_HISTORY_DAYS": value})


def test_sync_start_max() -> None:
    assert Settings.from_env({}).sync_start_max == 200
    assert Settings.from_env({"NANOCMD_SYNC_START_MAX": "0"}).sync_start_max == 0  # every start queued
    assert Settings.from_env({"NANOCMD_MICROMDM": "true"}).sync_start_max == 50
    with pytest.raises(ConfigError, match="NANOCMD_SYNC_START_MAX must be a whole number of ids"):
        Settings.from_env({"NANOCMD_SYNC_START_MAX": "many"})
