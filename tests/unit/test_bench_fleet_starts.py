"""The fleet-starts bench (bench/fleet_starts.py)
and the DynamoDB tally of the stack's processes (bench/ddb_tally.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import ddb_tally, fleet_starts
from bench.recorder import Call


def test_fleet_starts_floor_and_table_without_a_stack() -> None:
    """The floor is the design's (per id: lock put in a transaction, 5 items 25 a batch, no SC-3
    reads for commands that drew their own UUIDs) and a skipped size is listed with its reason."""
    floor = fleet_starts.floor_per_id(10_000)
    assert floor["calls"]["BatchWriteItem"] == pytest.approx(0.2)
    assert "BatchGetItem" not in floor["calls"] and floor["rcu"] == pytest.approx(50 / 10_000)
    assert floor["calls"]["GetItem"] == floor["calls"]["UpdateItem"] == pytest.approx(50 / 10_000)
    assert floor["calls"]["TransactWriteItems"] == pytest.approx(0.01)  # the locks, 100 a call
    assert floor["wcu"] == pytest.approx(9.0, abs=0.01)  # 2 a lock (transactional), 7 the rest
    result = fleet_starts.FleetStartsResult(sizes=[fleet_starts.skipped(100_000)])
    headers, rows, notes = fleet_starts.render(result)
    assert rows[0][0] == 100_000 and rows[0][-1] == "skipped" and len(rows[0]) == len(headers)
    assert any("100,000" in n for n in notes)
    assert json.loads(json.dumps(result.to_json()))["sizes"][0]["where"] == "skipped"


def test_ddb_tally_sums_processes_and_bills_reads_as_aws(tmp_path: Path) -> None:
    one, two = ddb_tally.Totals(), ddb_tally.Totals()
    one.add(Call("PutItem", 1.0, False, False))
    two.add(Call("BatchGetItem", 0.0, False, False))
    (tmp_path / "1.json").write_text(json.dumps(one.to_json()))
    (tmp_path / "2.json").write_text(json.dumps(two.to_json()))
    total = ddb_tally.read(tmp_path)
    assert total.calls == {"PutItem": 1, "BatchGetItem": 1} and total.wcu == 1.0
    assert (total - one).calls == {"BatchGetItem": 1}
    keys = {"RequestItems": {"t": {"Keys": [{}] * 100, "ConsistentRead": True}}}
    assert ddb_tally.aws_read_units("BatchGetItem", keys, 0.0) == 100.0  # Local reports 0 for misses
    assert ddb_tally.aws_read_units("GetItem", {}, 0.0) == 0.5


@pytest.mark.slow
def test_fleet_starts_runs_an_asynchronous_start_over_http() -> None:
    """On the stack: a 202 start of 450 ids (3 chunks, the last partial), every id's two commands
    at the MDM server once, counts.started 450, and the stack's own DynamoDB calls counted (the
    sitecustomize hook loaded in its processes) at the floor; a size past the quick limit is
    skipped."""
    result = fleet_starts.run(sizes=(450, 100_000), sync_start_max=100, warmup=101, timeout=180)
    small, big = result.sizes
    assert small.correct, fleet_starts._why(small)
    assert small.status == 202 and small.chunks == 3
    assert small.counts["started"] == 450 and small.counts["pending"] == 0
    assert small.done_ids == 450 and not small.duplicate_ids and not small.missing_ids
    assert 0 < small.accept_s < small.commands_s
    per, floor = small.per_id(), fleet_starts.floor_per_id(450)
    assert set(per["calls"]) == set(floor["calls"])
    for op, n in floor["calls"].items():
        assert per["calls"][op] == pytest.approx(n, abs=0.005), op
    # the instance's reads only: the commands drew their own UUIDs, so no SC-3 lookups
    assert per["wcu"] >= 5.0 and per["rcu_aws"] == pytest.approx(floor["rcu"], abs=0.005)
    assert big.where == "skipped"
    headers, rows, _ = fleet_starts.render(result)
    assert len(rows) == 2 and all(len(r) == len(headers) for r in rows)
    assert json.loads(json.dumps(result.to_json()))["sizes"][0]["correct"] is True
