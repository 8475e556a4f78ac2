"""Property: every (step, enrollment id) ends exactly once — completed, timed out or cancelled —
whatever the order and repetition of reports, sweeps and check-outs (design.md §3.2).

Hypothesis generates interleavings of final and NotNow reports (duplicates included), sweeps at
different times and check-outs for several steps, runs them on DynamoDB Local, then drains what
is left (answers everything, sweeps far ahead) and checks the delivered/cancelled ledger. A second
property runs batches of the same operations concurrently from threads.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nanocmd_core.mdm.checkin import CheckOut
from nanocmd_core.mdm.commands import DeviceInformation, SecurityInfo
from nanocmd_core.workflow import Config, Exclusivity, StepEnqueueing, StepResult, StepStart, Workflow
from tests.fakes.reports import report
from tests.support.engine import Harness, engine_harness

T0 = datetime.now(UTC)
# (ids, number of commands, timeout in hours) of the steps every example starts with
STEPS = [(["A", "B"], 1, 1), (["C"], 2, 2), (["D", "E"], 1, 3)]
PAIRS = [(s, i) for s, (ids, _, _) in enumerate(STEPS) for i in ids]


class Ledger(Workflow):
    name = "test.wf.ledger"
    config = Config(exclusivity=Exclusivity.MULTIPLE_SIMULTANEOUS)

    def __init__(self, enqueuer: Any) -> None:
        super().__init__(enqueuer)
        self.ended: Counter[tuple[str, str]] = Counter()

    def start(self, step: StepStart) -> None:
        raise AssertionError("steps are enqueued directly")

    def step_completed(self, result: StepResult) -> None:
        self.ended[(result.instance_id, result.id)] += 1

    def step_timeout(self, result: StepResult) -> None:
        self.ended[(result.instance_id, result.id)] += 1


@dataclass
class Run:
    h: Harness
    ledger: Ledger
    prefix: str
    commands: list[list[str]] = field(default_factory=list)
    cancelled: set[tuple[str, str]] = field(default_factory=set)

    def device(self, name: str) -> str:
        return f"{self.prefix}-{name}"

    def instance(self, step: int) -> str:
        return f"{self.prefix}-step{step}"

    def apply(self, op: tuple[Any, ...], record_cancels: bool = True) -> None:
        kind = op[0]
        engine = self.h.engine
        if kind == "report":
            _, pair, command, status = op
            step, name = PAIRS[pair]
            uuids = self.commands[step]
            cmd = uuids[command % len(uuids)]
            device = self.device(name)
            engine.handle_command_report(device, cmd, report(cmd, device, status))
        elif kind == "sweep":
            engine.sweep(T0 + timedelta(hours=op[1], minutes=1))
        elif kind == "checkout":
            device = self.device(op[1])
            if record_cancels:
                for step, name in PAIRS:
                    key = (self.instance(step), device)
                    if name == op[1] and self.ledger.ended[key] == 0:
                        self.cancelled.add(key)
            engine.handle_checkin(device, CheckOut(MessageType="CheckOut", UDID=device))

    def drain(self) -> None:
        for step, name in PAIRS:
            device = self.device(name)
            for cmd in self.commands[step]:
                self.h.engine.handle_command_report(device, cmd, report(cmd, device))
        self.h.engine.sweep(T0 + timedelta(hours=10))

    def check(self, final: bool) -> None:
        for step, name in PAIRS:
            key = (self.instance(step), self.device(name))
            ended = self.ledger.ended[key]
            assert ended <= 1, f"{key} delivered {ended} times"
            if final:
                assert ended + (key in self.cancelled) == 1, (
                    f"{key}: delivered {ended}, cancelled {key in self.cancelled}"
                )


@pytest.fixture(scope="module")
def shared(request: pytest.FixtureRequest) -> Iterator[tuple[Harness, Ledger]]:
    """One table and engine for all examples; each example uses its own ids."""
    table_name = request.getfixturevalue("module_table_name")
    with engine_harness(table_name) as h:
        ledger = Ledger(h.engine)
        h.engine.register(ledger)
        h.engine.repush_interval = 0
        yield h, ledger


@pytest.fixture(scope="module")
def module_table_name(aws_env: dict[str, str], template_path: Any) -> Iterator[str]:
    from infra.local.resources import provision

    p = provision(template_path, f"x{uuid.uuid4().hex[:10]}", {}, only=["Table"])
    try:
        yield p.ref("Table")
    finally:
        p.delete()


def new_run(shared: tuple[Harness, Ledger]) -> Run:
    h, ledger = shared
    run = Run(h=h, ledger=ledger, prefix=uuid.uuid4().hex[:8])
    for step, (ids, n_commands, hours) in enumerate(STEPS):
        commands = [DeviceInformation(queries=["Model"]), SecurityInfo()][:n_commands]
        run.commands.append([c.command_uuid for c in commands])
        h.engine.enqueue_step(
            ledger.name,
            StepEnqueueing(
                instance_id=run.instance(step),
                ids=[run.device(i) for i in ids],
                commands=list(commands),
                timeout=T0 + timedelta(hours=hours),
            ),
        )
    return run


report_or_sweep = st.one_of(
    st.tuples(
        st.just("report"),
        st.integers(0, len(PAIRS) - 1),
        st.integers(0, 1),
        st.sampled_from(["Acknowledged", "Acknowledged", "Error", "NotNow"]),
    ),
    st.tuples(st.just("sweep"), st.integers(0, 4)),
)
operation = st.one_of(
    report_or_sweep,
    st.tuples(st.just("checkout"), st.sampled_from(sorted({name for _, name in PAIRS}))),
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(operation, min_size=1, max_size=14))
def test_each_step_and_id_ends_exactly_once(
    shared: tuple[Harness, Ledger], ops: list[tuple[Any, ...]]
) -> None:
    run = new_run(shared)
    for op in ops:
        run.apply(op)
        run.check(final=False)
    run.drain()
    run.check(final=True)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(report_or_sweep, min_size=2, max_size=12))
def test_concurrent_reports_and_sweeps_end_each_step_once(
    shared: tuple[Harness, Ledger], ops: list[tuple[Any, ...]]
) -> None:
    """The same operations at once from several threads, plus every one repeated (duplicates)."""
    run = new_run(shared)
    with ThreadPoolExecutor(max_workers=6) as pool:
        list(pool.map(run.apply, ops + ops))
    run.check(final=False)
    run.drain()
    run.check(final=True)
