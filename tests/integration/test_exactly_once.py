"""Property: every (step, enrollment id) ends exactly once — completed, timed out or cancelled —
whatever the order and repetition of reports, sweeps, check-outs and cancels (design.md §3.2;
issue 11: a cancel racing a final report ends the step once).

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
from nanocmd_core.storage.instance_store import StartRecord
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
        self.cancelled: Counter[tuple[str, str]] = Counter()

    def start(self, step: StepStart) -> None:
        raise AssertionError("steps are enqueued directly")

    def step_completed(self, result: StepResult) -> None:
        self.ended[(result.instance_id, result.id)] += 1

    def step_timeout(self, result: StepResult) -> None:
        self.ended[(result.instance_id, result.id)] += 1

    def step_cancelled(self, result: StepResult) -> None:
        self.cancelled[(result.instance_id, result.id)] += 1


@dataclass
class Run:
    h: Harness
    ledger: Ledger
    prefix: str
    commands: list[list[str]] = field(default_factory=list)

    def device(self, name: str) -> str:
        return f"{self.prefix}-{name}"

    def instance(self, step: int) -> str:
        return f"{self.prefix}-step{step}"

    def apply(self, op: tuple[Any, ...]) -> None:
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
            engine.handle_checkin(device, CheckOut(MessageType="CheckOut", UDID=device))
        elif kind == "cancel":  # the cancel routes' two paths
            device = self.device(op[1])
            if op[2] is None:
                engine.cancel_workflow(self.ledger.name, [device])
            else:
                engine.cancel_instance(self.instance(op[2]), [device])

    def drain(self) -> None:
        for step, name in PAIRS:
            device = self.device(name)
            for cmd in self.commands[step]:
                self.h.engine.handle_command_report(device, cmd, report(cmd, device))
        self.h.engine.sweep(T0 + timedelta(hours=10))

    def check(self, final: bool) -> None:
        for step, name in PAIRS:
            key = (self.instance(step), self.device(name))
            ended, cancelled = self.ledger.ended[key], self.ledger.cancelled[key]
            assert ended + cancelled <= 1, f"{key}: delivered {ended}, cancelled {cancelled} times"
            if final:
                assert ended + cancelled == 1, f"{key}: delivered {ended}, cancelled {cancelled}"
        if final:  # and each id's end was counted once, as what it was
            for step, (ids, _, _) in enumerate(STEPS):
                status = self.h.engine.instance_status(self.instance(step))
                assert status is not None
                keys = [(self.instance(step), self.device(i)) for i in ids]
                counts = status.counts
                assert counts.in_flight == 0 and status.done
                assert counts.cancelled == sum(self.ledger.cancelled[k] for k in keys)
                delivered = counts.completed + counts.errored + counts.timed_out
                assert delivered == sum(self.ledger.ended[k] for k in keys)


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
    assert h.engine.instances is not None
    for step, (ids, n_commands, hours) in enumerate(STEPS):
        commands = [DeviceInformation(queries=["Model"]), SecurityInfo()][:n_commands]
        run.commands.append([c.command_uuid for c in commands])
        devices = [run.device(i) for i in ids]
        started = StartRecord(run.instance(step), ledger.name, "api", b"", len(ids), len(ids), 0)
        h.engine.instances.open_instance(started, devices, [], T0)  # as a start does
        with h.engine._tracking_enqueues(outcome_tracked=True):
            h.engine.enqueue_step(
                ledger.name,
                StepEnqueueing(
                    instance_id=run.instance(step),
                    ids=devices,
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
NAMES = sorted({name for _, name in PAIRS})
cancel = st.tuples(
    st.just("cancel"), st.sampled_from(NAMES), st.one_of(st.none(), st.integers(0, len(STEPS) - 1))
)
operation = st.one_of(report_or_sweep, cancel, st.tuples(st.just("checkout"), st.sampled_from(NAMES)))


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
@given(ops=st.lists(st.one_of(report_or_sweep, cancel), min_size=2, max_size=12))
def test_concurrent_reports_sweeps_and_cancels_end_each_step_once(
    shared: tuple[Harness, Ledger], ops: list[tuple[Any, ...]]
) -> None:
    """The same operations at once from several threads, plus every one repeated (duplicates):
    final reports, timeouts and cancels racing for the same steps."""
    run = new_run(shared)
    with ThreadPoolExecutor(max_workers=6) as pool:
        list(pool.map(run.apply, ops + ops))
    run.check(final=False)
    run.drain()
    run.check(final=True)
