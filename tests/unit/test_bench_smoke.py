"""The benchmark scripts still run (issue 5): each at its smallest size, structure not timings.

Figures are for ``make bench`` to print; a timing asserted here would be flaky on a shared machine.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bench import cold_start, ddb_cost, first_event, report, throughput
from bench.recorder import DynamoDBRecorder


@pytest.fixture
def recorder() -> Iterator[DynamoDBRecorder]:
    rec = DynamoDBRecorder().install()
    yield rec
    rec.uninstall()


def test_dynamodb_cost_counts_calls_for_every_kind(table_name: str, recorder: DynamoDBRecorder) -> None:
    cost = ddb_cost.run(table_name, recorder, sizes=(10,), reps=1)
    assert set(cost.results) == set(ddb_cost.KINDS)
    for kind, by_size in cost.results.items():
        result = by_size[10]
        assert sum(result.calls.values()) > 0, kind
        assert result.rcu + result.wcu > 0 or kind == "sweep, nothing due", kind
        assert cost.verdicts(kind)[1], f"{kind} above its floor: {result.calls}"
    headers, rows, _ = ddb_cost.render(cost)
    assert len(rows) == len(ddb_cost.KINDS)
    assert "|" not in report.table(headers, rows).splitlines()[0]


def test_first_event_runs_the_events_function_cold(table_name: str) -> None:
    result = first_event.run(table_name, runs=1)
    assert result.first_ms > 0 and result.next_ms > 0
    assert first_event.render(result)[1]


def test_cold_start_measures_the_webhook_handler_and_its_floor() -> None:
    (result,) = cold_start.run(["webhook"], runs=1)
    assert result.handler_ms > 0
    assert result.floor_ms > 0
    assert result.third_party_modules > 0
    assert result.heavy_imports == []  # the intake imports no engine, workflows or pynamodb


def test_throughput_drives_the_events_and_api_handlers(table_name: str, recorder: DynamoDBRecorder) -> None:
    tp = throughput.run(table_name, recorder, devices=10, api_starts=3)
    assert tp.inventory_written == 10
    assert tp.events.n == 20
    assert sum(tp.events.dynamodb_calls.values()) > 0
    assert tp.api.n == 3
    assert sum(tp.api.dynamodb_calls.values()) > 0
    assert abs(sum(tp.split.values()) - 1.0) < 1e-6
    assert throughput.render(tp)[1]
