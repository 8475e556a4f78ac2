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


@pytest.mark.slow
def test_fleet_run_completes_a_tiny_fleet_over_http() -> None:
    """The fleet run end to end: a local stack subprocess, the fake NanoMDM, 5 devices answering."""
    from bench import fleet

    (result,) = fleet.run(sizes=(5,), senders=4, warmup=0, timeout=60)
    assert result.ok, result.errors
    assert result.complete == 5
    assert result.webhooks >= 10  # two answers per device, and the Idle check-ins before them
    assert result.statuses == {200: result.webhooks}
    assert result.p50_ms > 0 and result.dead_letters == 0
    assert fleet.render([result])[1]


@pytest.mark.slow
def test_burst_run_sends_every_kind_of_burst() -> None:
    """The burst run's code paths: closed loop (untracked and tracked reports) and open loop."""
    from bench import burst

    results = burst.run(20, senders=5, rates=(100.0,), warmup=0)
    assert [r.model for r in results] == ["closed", "closed", "open"]
    for r in results:
        assert r.statuses == {200: 20}, (r.name, r.statuses, r.failures)
        assert not r.lost, r
        assert r.p50_ms > 0 and r.throughput > 0
    assert results[1].tracked == results[1].verified == 10
    assert burst.render(results)[1]
