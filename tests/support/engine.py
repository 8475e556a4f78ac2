"""An engine on DynamoDB Local wired to a fake MDM server, with small recording workflows."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from nanocmd_core.config import Settings
from nanocmd_core.engine.engine import Engine
from nanocmd_core.mdm.commands import Command, DeviceInformation, SecurityInfo, new_command_uuid
from nanocmd_core.mdmserver.client import HTTPMDMServerClient
from nanocmd_core.storage.engine_store import DynamoEngineStore
from nanocmd_core.storage.instance_store import DynamoInstanceStore
from nanocmd_core.storage.models import bind_table
from nanocmd_core.workflow import (
    Config,
    Event,
    EventFlag,
    Exclusivity,
    MDMContext,
    StepResult,
    StepStart,
    StringContext,
    Workflow,
    WorkflowError,
)
from tests.fakes.mdm_server import FakeMDMServer


@dataclass
class Recorder:
    started: list[StepStart] = field(default_factory=list)
    completed: list[StepResult] = field(default_factory=list)
    timed_out: list[StepResult] = field(default_factory=list)
    cancelled: list[StepResult] = field(default_factory=list)
    events: list[tuple[Event, str, MDMContext | None]] = field(default_factory=list)
    fail_next: list[BaseException] = field(default_factory=list)


class StepsWorkflow(Workflow):
    """Starts with the commands ``make_commands`` returns; on completion of step "" it enqueues a
    second step "two" when ``follow_up`` is set; records completions and timeouts."""

    name = "test.wf.steps"

    def __init__(
        self,
        enqueuer: Any,
        rec: Recorder,
        make_commands: Callable[[], list[Command]],
        follow_up: bool = False,
    ) -> None:
        super().__init__(enqueuer)
        self.rec = rec
        self.make_commands = make_commands
        self.follow_up = follow_up
        self.step_timeout_at: datetime | None = None
        self.not_until: datetime | None = None
        self.retry_on_timeout = False

    def context_codec(self, step_name: str) -> StringContext:
        return StringContext()

    def start(self, step: StepStart) -> None:
        self.rec.started.append(step)
        enqueueing = step.new_step_enqueueing(*self.make_commands(), context=f"ctx:{step.context}")
        enqueueing.timeout = self.step_timeout_at
        enqueueing.not_until = self.not_until
        self.enqueue(enqueueing)

    def step_completed(self, result: StepResult) -> None:
        if self.rec.fail_next:
            raise self.rec.fail_next.pop(0)
        self.rec.completed.append(result)
        if self.follow_up and result.name == "":
            self.enqueue(result.new_step_enqueueing(SecurityInfo(), name="two", context="second"))

    def step_timeout(self, result: StepResult) -> None:
        if self.rec.fail_next:
            raise self.rec.fail_next.pop(0)
        self.rec.timed_out.append(result)
        if self.retry_on_timeout and result.name == "":
            self.enqueue(result.new_step_enqueueing(SecurityInfo(), name="retry"))

    def step_cancelled(self, result: StepResult) -> None:
        self.rec.cancelled.append(result)


class MultiWorkflow(StepsWorkflow):
    name = "test.wf.multi"
    config = Config(exclusivity=Exclusivity.MULTIPLE_SIMULTANEOUS, timeout=timedelta(hours=1))


class AllResponses(Workflow):
    name = "test.wf.allresponses"
    config = Config(all_command_response_request_types=("SecurityInfo",), events=EventFlag.IDLE)

    def __init__(self, enqueuer: Any, rec: Recorder) -> None:
        super().__init__(enqueuer)
        self.rec = rec

    def start(self, step: StepStart) -> None:
        raise WorkflowError("not startable")

    def step_completed(self, result: StepResult) -> None:
        raise AssertionError("never sends anything")

    def event(self, event: Event, enrollment_id: str, mdm_context: MDMContext | None) -> None:
        self.rec.events.append((event, enrollment_id, mdm_context))


@dataclass
class Harness:
    engine: Engine
    mdm: FakeMDMServer
    rec: Recorder
    steps: StepsWorkflow
    multi: MultiWorkflow
    commands: list[Command] = field(default_factory=list)

    def sent(self, enrollment_id: str) -> list[dict[str, Any]]:
        return self.mdm.commands_for(enrollment_id)

    def uuids(self, enrollment_id: str) -> list[str]:
        return [c["CommandUUID"] for c in self.sent(enrollment_id)]


@contextmanager
def engine_harness(
    table_name: str,
    *,
    step_timeout: int | None = None,
    micromdm: bool = False,
    scheduler: Any = None,
    subscriptions: Any = None,
) -> Iterator[Harness]:
    bind_table(table_name)
    rec = Recorder()
    with FakeMDMServer(micromdm=micromdm) as mdm:
        client = HTTPMDMServerClient(
            mdm.enqueue_url, mdm.push_url, mdm.api_key, micromdm=micromdm, backoff=0.01
        )
        engine = Engine(
            DynamoEngineStore(),
            client,
            step_timeout=Settings().step_timeout if step_timeout is None else step_timeout,
            scheduler=scheduler,
            subscriptions=subscriptions,
            instances=DynamoInstanceStore(),
        )
        commands: list[Command] = [DeviceInformation(queries=["Model"])]

        def fresh() -> list[Command]:
            return [c if c.command_uuid == "dup" else c.with_uuid(new_command_uuid()) for c in h.commands]

        steps = StepsWorkflow(engine, rec, fresh, follow_up=True)
        multi = MultiWorkflow(engine, rec, fresh)
        h = Harness(engine=engine, mdm=mdm, rec=rec, steps=steps, multi=multi, commands=commands)
        for workflow in (steps, multi, AllResponses(engine, rec)):
            engine.register(workflow)
        yield h
