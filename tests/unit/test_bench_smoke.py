"""The benchmark scripts still run (issue 5): each at its smallest size, structure not timings.

Figures are for ``make bench`` to print; a timing asserted here would be flaky on a shared machine.
"""

from __future__ import annotations

import json
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

    # issue 11: the reads of status, instance progress and history, whatever the fleet
    calls = {kind: by_size[10].calls for kind, by_size in cost.results.items()}
    assert calls["status, 1 id"] == {"Query": 1.0}
    assert calls["status, 10 ids (per id)"] == {"Query": 1.0}
    assert cost.status_verdict()[0], cost.status_verdict()[1]
    assert calls["instance progress"] == {"GetItem": 1.0, "BatchGetItem": 1.0}
    assert calls["instance ids page"] == {
        "GetItem": 1.0,
        "BatchGetItem": 1.0,
        "Query": float(ddb_cost.IDS_PAGE_QUERIES),
    }
    assert calls["history page"] == {"Query": 4.0, "BatchGetItem": 1.0}
    assert calls["cancel, 1 id"]["TransactWriteItems"] == 1.0

    # what instance tracking adds: one write per step end, none per NotNow or untracked report
    assert set(cost.untracked) == set(ddb_cost.EXTRAS)
    for kind in ddb_cost.EXTRAS:
        ok, verdict = cost.extra_verdict(kind)
        assert ok, f"{kind}: {verdict}, {cost.extra(kind)[10].calls}"
    extra = {kind: cost.extra(kind)[10] for kind in ddb_cost.EXTRAS}
    for kind in ("untracked report", "NotNow report", "non-final report (1st of 3)", "status, 1 id"):
        assert extra[kind].calls == {}, kind
        assert extra[kind].wcu == extra[kind].rcu == 0.0, kind
    # at a step's end the lock's release moves into the outcome's transaction (a DeleteItem fewer)
    lock_in_transaction = {"DeleteItem": -1.0, "TransactWriteItems": 1.0}
    for kind in ("final report, 1-command step", "sweep, one due timeout"):
        assert extra[kind].calls == lock_in_transaction, kind
        assert extra[kind].wcu == 5.0, kind  # three items at 2 WCU in a transaction, less the DeleteItem
        assert extra[kind].rcu == 0.0, kind
    assert extra["cancel, 1 id"].calls == {"TransactWriteItems": 1.0}
    assert extra["cancel, 1 id"].wcu == 4.0  # two items, 2 WCU each in a transaction
    assert extra["final reports, batch of 10 (per report)"].calls == lock_in_transaction
    assert extra["workflow start, 1 id"].calls == {"BatchWriteItem": 1.0}
    assert extra["TokenUpdate, 2 subscriptions"].calls == {"BatchWriteItem": 2.0}
    headers, rows, _ = ddb_cost.render_extra(cost)
    assert [row[0] for row in rows] == list(ddb_cost.EXTRAS)
    assert all(row[-1].startswith("yes") for row in rows)
    data = json.loads(json.dumps(cost.to_json()))
    assert set(data["instance_tracking_extra"]) == set(ddb_cost.EXTRAS)
    assert data["instance_tracking_extra"]["NotNow report"]["by_size"]["10"]["extra_calls"] == {}
    assert data["status_one_query_per_id"] is True
    assert set(data["kinds"]) == set(ddb_cost.KINDS)


def test_dynamodb_cost_extra_verdicts_flag_what_tracking_must_not_add() -> None:
    """The verdicts of the extra table are not vacuous: an extra call fails them."""

    def result(calls: dict[str, float]) -> ddb_cost.KindResult:
        return ddb_cost.KindResult(calls=calls, rcu=1.0, wcu=1.0, estimated=0.0)

    cost = ddb_cost.CostReport(sizes=[10, 1_000])
    base = {"GetItem": 1.0, "UpdateItem": 1.0}
    cost.untracked["NotNow report"] = {10: result(base), 1_000: result(base)}
    cost.results["NotNow report"] = {10: result(base), 1_000: result({**base, "TransactWriteItems": 1.0})}
    assert cost.extra_verdict("NotNow report") == (False, "NO: differs across fleet sizes")
    cost.results["NotNow report"][10] = result({**base, "TransactWriteItems": 1.0})
    assert not cost.extra_verdict("NotNow report")[0]
    end = "final report, 1-command step"
    cost.untracked[end] = {10: result(base), 1_000: result(base)}
    two = {**base, "TransactWriteItems": 1.0, "PutItem": 1.0}
    cost.results[end] = {10: result(two), 1_000: result(two)}
    assert not cost.extra_verdict(end)[0]  # two extra writes for one step end
    one = {**base, "TransactWriteItems": 1.0}
    cost.results[end] = {10: result(one), 1_000: result(one)}
    assert cost.extra_verdict(end) == (True, "yes: 1 write per step end")
    cost.results["status, 1 id"] = {10: result({"Query": 1.0}), 1_000: result({"Query": 2.0})}
    cost.results["status, 10 ids (per id)"] = {10: result({"Query": 1.0}), 1_000: result({"Query": 1.0})}
    assert not cost.status_verdict()[0]


def test_first_event_runs_the_events_function_cold(table_name: str) -> None:
    result = first_event.run(table_name, runs=1)
    assert result.first_ms > 0 and result.next_ms > 0
    assert first_event.render(result)[1]


def test_cold_start_measures_the_webhook_handler_and_its_floor() -> None:
    (result,) = cold_start.run(["webhook"], runs=1)
    assert result.handler_ms > 0
    assert result.floor_ms > 0
    assert result.plain_floor_ms > 0 and result.plain_ratio > 0
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
