"""Logs and metrics of the functions (Powertools Logger and CloudWatch embedded metrics).

The engine counts what an operator watches through the small ``Telemetry`` interface, so the
domain code knows nothing of CloudWatch; the functions hand it the Powertools-backed
``MetricsTelemetry``, which adds the counts up during one invocation and writes them as EMF lines
when the invocation ends (one line per metric and dimension set, not one per event).
"""

from __future__ import annotations

import functools
import os
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from aws_lambda_powertools import Logger, Tracer

from nanocmd_core.config import Settings, env_flag

NAMESPACE = "NanoCMD"
SERVICE = "nanocmd"

F = TypeVar("F", bound=Callable[..., Any])


class Telemetry(Protocol):
    def count(self, name: str, value: int = 1, **dimensions: str) -> None: ...


class NoTelemetry:
    def count(self, name: str, value: int = 1, **dimensions: str) -> None:
        return None


class MetricsTelemetry:
    """Counts added up per invocation and flushed as CloudWatch embedded metric format lines."""

    def __init__(self, namespace: str = NAMESPACE, service: str = SERVICE) -> None:
        self.namespace = namespace
        self.service = service
        self._counts: Counter[tuple[str, tuple[tuple[str, str], ...]]] = Counter()
        self._lock = threading.Lock()

    def count(self, name: str, value: int = 1, **dimensions: str) -> None:
        if value:
            with self._lock:
                self._counts[(name, tuple(sorted(dimensions.items())))] += value

    def snapshot(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], int]:
        with self._lock:
            return dict(self._counts)

    def flush(self) -> None:
        from aws_lambda_powertools.metrics import MetricUnit, single_metric

        with self._lock:
            counts, self._counts = self._counts, Counter()
        for (name, dimensions), value in sorted(counts.items()):
            with single_metric(
                name=name, unit=MetricUnit.Count, value=value, namespace=self.namespace
            ) as metric:
                metric.add_dimension(name="service", value=self.service)
                for key, dim in dimensions:
                    metric.add_dimension(name=key, value=dim or "none")


def function_logger(settings: Settings) -> Logger:
    """The function's logger: JSON lines, service ``nanocmd``, DEBUG when ``NANOCMD_DEBUG``.
    Library modules log through ``Logger(service="nanocmd", child=True)`` and so inherit it."""
    logger = Logger(service=SERVICE)
    if settings.debug:  # set on the shared "nanocmd" logger, whoever configured it first
        logger.setLevel("DEBUG")
    return logger


def function_tracer() -> Tracer | None:
    """X-Ray tracing of the handler and of every AWS SDK call (botocore) it makes. Powertools
    turns it off outside Lambda, so local runs and tests need no X-Ray daemon. The webhook intake
    does without (Lambda's active tracing records it; README, "Cold starts").

    ``POWERTOOLS_TRACE_DISABLED=true`` on a function goes further: no tracer at all, so the X-Ray
    SDK is never imported (a few hundred ms of cold start; Lambda's active tracing still records
    each invocation, without the SDK calls as subsegments)."""
    if env_flag(os.environ.get("POWERTOOLS_TRACE_DISABLED")):
        return None
    return Tracer(service=SERVICE, patch_modules=["botocore"])


def instrumented(
    logger: Logger, telemetry: MetricsTelemetry, tracer: Tracer | None = None
) -> Callable[[F], F]:
    """Wrap a Lambda handler: traced, Lambda context in every log line, metrics flushed at the end."""

    def decorate(handler: F) -> F:
        traced = tracer.capture_lambda_handler(handler) if tracer is not None else handler
        logged = logger.inject_lambda_context(clear_state=True)(traced)

        @functools.wraps(handler)
        def wrapper(event: Any, context: Any) -> Any:
            try:
                return logged(event, context)
            finally:
                telemetry.flush()

        return wrapper  # type: ignore[return-value]

    return decorate
