"""The whole local system as one object, :class:`LocalStack`: the servers behind the AWS APIs,
template.yaml's resources in them, the gateway, the event source mapping, the sweeper and the
one-time schedules. ``python -m infra.local.run`` (``make run``) runs one until Ctrl-C; the
end-to-end tests run one per test.

The handlers read ``os.environ``, which is process-wide: one LocalStack per process at a time.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import threading
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import boto3

from infra.local.durable import restore_schedules, save_schedules
from infra.local.event_source import DEFAULT_CONCURRENCY, EventSourceMapping, Mode
from infra.local.gateway import DEFAULT_STAGE, LocalGateway, routes_from_template
from infra.local.gateway_pool import GatewayPool
from infra.local.lambda_runtime import FunctionHost, function_specs
from infra.local.resources import SECRET_VARS, Provisioned, provision, write_contract_template
from infra.local.services import (
    DEFAULT_LOG_DIR,
    REPO_ROOT,
    DynamoDBLocal,
    Fauxqs,
    MotoServer,
    apply_env,
    aws_env,
    restore_env,
    start_services,
    stop_all,
)
from infra.local.template import FUNCTION_TYPES, Template, Unresolvable
from infra.local.worker import ScheduleFirer, Sweeper, Worker

log = logging.getLogger("infra.local")

DEFAULT_LISTEN = "127.0.0.1:9003"
DEFAULT_TEMPLATE = REPO_ROOT / "template.yaml"
DEFAULT_FUNCTIONS_DIR = REPO_ROOT / "functions"
DEFAULT_WORKER_INTERVAL = 300
DEFAULT_DATA_DIR = REPO_ROOT / ".local" / "data"
DEFAULT_GATEWAY_PROCESSES = 2  # make run: two cores, two interpreters answering HTTP


def parse_listen(listen: str) -> tuple[str, int]:
    """``host:port`` (or ``:port``) as NANOCMD_LISTEN gives it; port 0 picks a free one."""
    host, _, port = listen.rpartition(":")
    return (host.strip("[]") or "127.0.0.1"), int(port)


def reset_settings_cache() -> None:
    """nanocmd_core caches its settings per process; a new stack's environment must be re-read."""
    config = sys.modules.get("nanocmd_core.config")
    cached = getattr(config, "settings", None)
    if cached is not None and hasattr(cached, "cache_clear"):
        cached.cache_clear()


class LocalStack:
    """Everything ``make run`` runs, startable and stoppable in-process (threads + child processes).

    The handlers read ``os.environ``, which is process-wide: run one LocalStack per process at a time.
    :meth:`stop` puts the environment back as it found it.
    """

    def __init__(
        self,
        *,
        template: Path | str | None = None,
        functions_dir: Path | str | None = None,
        listen: str | None = None,
        extra_env: Mapping[str, str] | None = None,
        prefix: str | None = None,
        aws_env: Mapping[str, str] | None = None,
        log_dir: Path | None = None,
        retry_visibility: int | None = None,
        poll_wait_seconds: int = 1,
        schedule_poll_interval: float = 1.0,
        inherit_env: bool = True,
        data_dir: Path | None = None,
        events_concurrency: int | None = None,
        events_mode: Mode = "process",
        gateway_processes: int = 0,
    ) -> None:
        """``aws_env``: endpoints of the local servers already running (else the stack starts its
        own); ``extra_env``: NANOCMD_* settings over the process's own (``inherit_env=False``: instead
        of them); ``retry_visibility``: see :class:`~infra.local.worker.QueuePoller`; ``data_dir``:
        where the stack's own servers keep their state across restarts (None: in memory);
        ``events_concurrency``/``events_mode``: see :class:`~infra.local.event_source.EventSourceMapping`;
        ``gateway_processes``: serve HTTP from that many worker processes (0: a thread of this one)."""
        self.template_path = Path(template) if template else DEFAULT_TEMPLATE
        self.functions_dir = Path(functions_dir) if functions_dir else DEFAULT_FUNCTIONS_DIR
        self.extra_env = dict(extra_env or {})
        self.listen = (
            listen
            or self.extra_env.get("NANOCMD_LISTEN")
            or os.environ.get("NANOCMD_LISTEN")
            or DEFAULT_LISTEN
        )
        self.prefix = prefix or f"nanocmd-{uuid.uuid4().hex[:8]}"
        self._external_aws = dict(aws_env) if aws_env is not None else None
        self.log_dir = log_dir
        self.retry_visibility = retry_visibility
        self.poll_wait_seconds = poll_wait_seconds
        self.schedule_poll_interval = schedule_poll_interval
        self.inherit_env = inherit_env
        self.data_dir = data_dir
        self.events_concurrency = events_concurrency
        self.events_mode: Mode = events_mode
        self.gateway_processes = gateway_processes
        self.gateway_pool: GatewayPool | None = None

        self.dynamodb: DynamoDBLocal | None = None
        self.moto: MotoServer | None = None
        self.fauxqs: Fauxqs | None = None
        self.aws: dict[str, str] = {}
        self.provisioned: Provisioned | None = None
        self.functions: FunctionHost | None = None
        self.gateway: LocalGateway | None = None
        self.worker: Worker | None = None
        self.events: EventSourceMapping | None = None
        self.sweeper: Sweeper | None = None
        self.firer: ScheduleFirer | None = None
        self._saved_env: dict[str, str | None] = {}
        self._lock = threading.Lock()
        self._started = False

    # -- public
    @property
    def base_url(self) -> str:
        if self.gateway_pool is not None:
            return self.gateway_pool.base_url
        assert self.gateway is not None, "LocalStack not started"
        return self.gateway.base_url

    @property
    def env(self) -> dict[str, str]:
        """The NANOCMD_* environment the handlers run with."""
        return dict(self.provisioned.env) if self.provisioned else {}

    def start(self) -> Self:
        with self._lock:
            if self._started:
                return self
            try:
                self._start()
            except BaseException:
                self._stop()
                raise
            self._started = True
            return self

    def stop(self) -> None:
        with self._lock:
            self._stop()
            self._started = False

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def sweep(self) -> Any:
        """Run the sweeper once now (what its rate schedule does), returning its result."""
        assert self.functions is not None, "LocalStack not started"
        if self.sweeper is not None:
            return self.sweeper.run_once()
        return self.functions.invoke("SweeperFunction", {})

    def fire_schedules(self) -> list[str]:
        """Deliver the due one-time schedules now instead of at the next poll."""
        return self.firer.fire_due() if self.firer else []

    def queue_depth(self) -> int:
        """Messages in the events queue, visible or being processed."""
        url = self.env.get("NANOCMD_QUEUE_URL")
        if not url:
            return 0
        attrs = boto3.client("sqs").get_queue_attributes(
            QueueUrl=url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attrs.get("ApproximateNumberOfMessages", 0)) + int(
            attrs.get("ApproximateNumberOfMessagesNotVisible", 0)
        )

    def wait_queue_empty(self, timeout: float = 10.0) -> bool:
        """Wait until the worker has processed (or given up on) everything queued so far."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.queue_depth() == 0:
                return True
            time.sleep(0.05)
        return False

    def summary(self) -> str:
        env = self.env
        lines = [
            f"nanocmd local stack '{self.prefix}'",
            f"  listening      {self.base_url}"
            + (f"  ({self.gateway_pool.workers} worker processes)" if self.gateway_pool else ""),
            f"  webhook        {self.base_url}/webhook",
            f"  API            {self.base_url}/v1/...  (user nanocmd, key NANOCMD_API"
            f"{'' if env.get('NANOCMD_API_SECRET') else ': not set, API disabled'})",
            f"  table          {env.get('NANOCMD_TABLE', '-')}",
            f"  queue          {env.get('NANOCMD_QUEUE_URL', '-')}",
            f"  bucket         {env.get('NANOCMD_BUCKET', '-')}",
            f"  schedule group {env.get('NANOCMD_SCHEDULE_GROUP', '-')}",
            f"  MDM enqueue    {env.get('NANOCMD_ENQUEUE_URL') or '(NANOCMD_ENQUEUE_URL not set)'}",
            f"  sweeper        every {self.sweeper.interval:g}s"
            if self.sweeper and self.sweeper.interval
            else "  sweeper        off",
            f"  DynamoDB       {self.aws.get('AWS_ENDPOINT_URL_DYNAMODB', '-')}"
            + (f"  (log {self.dynamodb.log_path})" if self.dynamodb else ""),
            f"  queue, blobs   {self.aws.get('AWS_ENDPOINT_URL_SQS', '-')}"
            + (f"  (fauxqs, log {self.fauxqs.log_path})" if self.fauxqs else ""),
            f"  scheduler      {self.aws.get('AWS_ENDPOINT_URL_SCHEDULER', '-')}"
            + (f"  (moto, log {self.moto.log_path})" if self.moto else ""),
            f"  events         {self.events.concurrency} batches at once ({self.events.mode}es)"
            if self.events
            else "  events         off",
            f"  data           {self.data_dir}  (kept across restarts; make run FRESH=1 wipes it)"
            if self.data_dir
            else "  data           in memory (gone at Ctrl-C)",
        ]
        return "\n".join(lines)

    # -- internals
    def _start(self) -> None:
        if self._external_aws is None:
            self.dynamodb, self.moto, self.fauxqs = start_services(
                log_dir=self.log_dir, data_dir=self.data_dir
            )
            self.aws = aws_env(self.dynamodb.endpoint_url, self.moto.endpoint_url, self.fauxqs.endpoint_url)
        else:
            self.aws = dict(self._external_aws)
        self._saved_env = apply_env(self.aws)

        template_path = self.template_path
        if not template_path.exists():
            log.warning("%s does not exist: using the contract's minimal template", self.template_path)
            template_path = DEFAULT_LOG_DIR.parent / "contract-template.yaml"
            template_path.parent.mkdir(parents=True, exist_ok=True)
            write_contract_template(template_path)
        template = Template.load(template_path)

        settings = {k: v for k, v in os.environ.items() if k.startswith("NANOCMD_") and self.inherit_env}
        settings.update(self.extra_env)
        self.provisioned = provision(template, self.prefix, settings)

        # the handlers' environment: the stack's, never the plain secrets (they are in Secrets Manager)
        plain_secrets = [plain for plain, _ in SECRET_VARS.values()]
        for key, value in apply_env(self.provisioned.env, unset=plain_secrets).items():
            self._saved_env.setdefault(key, value)
        reset_settings_cache()

        group = self.provisioned.env.get("NANOCMD_SCHEDULE_GROUP")
        if self.data_dir is not None and group:
            restored = restore_schedules(group, self.data_dir)
            if restored:
                log.info("restored %d one-time schedules (delayed steps) from %s", restored, self.data_dir)

        self.functions = FunctionHost(function_specs(template, self.functions_dir, self.prefix))
        self.functions.load_all()

        host, port = parse_listen(self.listen)
        if self.gateway_processes > 0:
            self.gateway_pool = GatewayPool(
                self.gateway_processes,
                template=template_path,
                functions_dir=self.functions_dir,
                prefix=self.prefix,
                host=host,
                port=port,
                stage=self._stage(template),
            )
            self.gateway_pool.start()
        else:
            self.gateway = LocalGateway(
                self.functions,
                host=host,
                port=port,
                routes=routes_from_template(template),
                stage=self._stage(template),
            )
            self.gateway.start()

        self.events = self._event_source(template)
        self.sweeper = self._sweeper(template)
        self.firer = (
            ScheduleFirer(self.functions, group, poll_interval=self.schedule_poll_interval) if group else None
        )
        if self.events is not None:
            self.events.start()
        self.worker = Worker(self.events, self.sweeper, self.firer)
        self.worker.start()

    def _stage(self, template: Template) -> str:
        """The REST API's stage name (requestContext.stage), as the template sets it."""
        assert self.provisioned is not None
        for _, res in template.of_type("AWS::Serverless::Api"):
            with contextlib.suppress(Unresolvable):
                stage = self.provisioned.resolver.resolve((res.get("Properties") or {}).get("StageName"))
                if isinstance(stage, str) and stage:
                    return stage
        return DEFAULT_STAGE

    def _concurrency(self) -> int:
        if self.events_concurrency is not None:
            return self.events_concurrency
        raw = (self.provisioned.env if self.provisioned else {}).get("NANOCMD_LOCAL_EVENTS_CONCURRENCY", "")
        return int(raw) if raw.strip().isdigit() and int(raw) > 0 else DEFAULT_CONCURRENCY

    def _event_source(self, template: Template) -> EventSourceMapping | None:
        """The template's SQS event source (function, queue, batch size), else the contract's; none
        with ``events_concurrency=0`` (events then wait on the queue, e.g. across a restart)."""
        if self._concurrency() == 0:
            return None
        assert self.functions is not None and self.provisioned is not None
        p = self.provisioned
        for logical_id, res in template.of_type(*FUNCTION_TYPES):
            for ev in ((res.get("Properties") or {}).get("Events") or {}).values():
                if not isinstance(ev, dict) or ev.get("Type") != "SQS":
                    continue
                props = ev.get("Properties") or {}
                try:
                    queue_arn = p.resolver.resolve(props.get("Queue"))
                except Unresolvable:
                    continue
                url = next(
                    (
                        p.resolver.refs[q]
                        for (q, a), v in p.resolver.attrs.items()
                        if a == "Arn" and v == queue_arn
                    ),
                    None,
                )
                if url:
                    return self._mapping(logical_id, url, int(props.get("BatchSize", 10)))
        url = p.env.get("NANOCMD_QUEUE_URL")
        if url and self.functions.has("EventsFunction"):
            return self._mapping("EventsFunction", url, 10)
        return None

    def _mapping(self, function: str, queue_url: str, batch_size: int) -> EventSourceMapping:
        assert self.functions is not None
        return EventSourceMapping(
            self.functions,
            function,
            queue_url,
            batch_size=batch_size,
            wait_seconds=self.poll_wait_seconds,
            retry_visibility=self.retry_visibility,
            concurrency=self._concurrency(),
            mode=self.events_mode,
        )

    def _sweeper(self, template: Template) -> Sweeper | None:
        assert self.functions is not None and self.provisioned is not None
        if not self.functions.has("SweeperFunction"):
            return None
        raw = self.provisioned.env.get("NANOCMD_WORKER_INTERVAL", "").strip()
        interval = int(raw) if raw.isdigit() else DEFAULT_WORKER_INTERVAL
        event: Any = {}
        res = template.resources.get("SweeperFunction") or {}
        for ev in ((res.get("Properties") or {}).get("Events") or {}).values():
            if isinstance(ev, dict) and ev.get("Type") in ("Schedule", "ScheduleV2"):
                raw_input = (ev.get("Properties") or {}).get("Input")
                if isinstance(raw_input, str):
                    with contextlib.suppress(json.JSONDecodeError):
                        event = json.loads(raw_input)
        return Sweeper(self.functions, "SweeperFunction", interval, event)

    def _stop(self) -> None:
        if self.gateway_pool is not None:
            self.gateway_pool.stop()
            self.gateway_pool = None
        if self.gateway is not None:
            self.gateway.stop()
            self.gateway = None
        if self.worker is not None:
            self.worker.stop()
            self.worker = None
        group = self.env.get("NANOCMD_SCHEDULE_GROUP")
        if self.data_dir is not None and group and self.moto is not None and self.moto.running:
            try:
                log.info(
                    "kept %d one-time schedules in %s", save_schedules(group, self.data_dir), self.data_dir
                )
            except Exception:
                log.exception("could not keep the one-time schedules; the sweep will send overdue steps")
        if self.provisioned is not None and self._external_aws is not None:
            # shared servers outlive us: leave them clean; our own servers simply go away
            self.provisioned.delete()
        restore_env(self._saved_env)
        self._saved_env = {}
        reset_settings_cache()
        stop_all(self.fauxqs, self.moto, self.dynamodb)
        self.fauxqs = self.moto = self.dynamodb = None
