"""What an operator sees (issue 5 items 5-6): JSON log lines with the MDM keys, NANOCMD_DEBUG and
NANOCMD_DUMP_WEBHOOK, and CloudWatch embedded metrics counted by the engine."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from nanocmd_core.config import Settings
from nanocmd_core.observability import MetricsTelemetry, function_logger
from tests.fakes.reports import report
from tests.support.engine import Harness, MultiWorkflow, StepsWorkflow, engine_harness


@pytest.fixture
def harness(table_name: str) -> Iterator[tuple[Harness, MetricsTelemetry]]:
    telemetry = MetricsTelemetry()
    with engine_harness(table_name) as h:
        h.engine.telemetry = telemetry
        yield h, telemetry


def counts(telemetry: MetricsTelemetry) -> dict[str, int]:
    out: dict[str, int] = {}
    for (name, dims), value in telemetry.snapshot().items():
        key = name + "".join(f"[{k}={v}]" for k, v in dims)
        out[key] = value
    return out


def test_the_engine_counts_what_an_operator_watches(harness: tuple[Harness, MetricsTelemetry]) -> None:
    h, telemetry = harness
    h.engine.start_workflow(MultiWorkflow.name, ["A", "B"])
    uuid = h.uuids("A")[0]
    h.engine.handle_command_report("A", uuid, report(uuid, "A", "NotNow"))
    h.engine.handle_command_report("A", uuid, report(uuid, "A"))
    h.engine.handle_command_report("A", "not-ours", report("not-ours", "A"))
    h.mdm.fail_always(500)
    h.engine.start_workflow(StepsWorkflow.name, ["C"])
    assert counts(telemetry) == {
        "WorkflowStarts": 3,
        "CommandReports[status=NotNow]": 1,
        "CommandReports[status=Acknowledged]": 1,
        "StepsCompleted": 1,
        "UntrackedReports": 1,
        "SendsFailed": 1,
    }


def test_metrics_flush_as_embedded_metric_format(capsys: pytest.CaptureFixture[str]) -> None:
    telemetry = MetricsTelemetry()
    telemetry.count("StepsCompleted")
    telemetry.count("StepsCompleted")
    telemetry.count("EventsReceived", topic="mdm.Connect")
    telemetry.flush()
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    by_name: dict[str, Any] = {}
    for line in lines:
        [directive] = line["_aws"]["CloudWatchMetrics"]
        assert directive["Namespace"] == "NanoCMD"
        by_name[directive["Metrics"][0]["Name"]] = line
    assert by_name["StepsCompleted"]["StepsCompleted"] in (2.0, [2.0])
    assert by_name["EventsReceived"]["topic"] == "mdm.Connect"
    assert telemetry.snapshot() == {}  # flushed: the next invocation starts from zero


def test_debug_raises_the_log_level() -> None:
    assert function_logger(Settings(debug=False)).log_level != logging.DEBUG
    assert function_logger(Settings(debug=True)).log_level == logging.DEBUG


def test_log_lines_carry_the_mdm_keys(
    harness: tuple[Harness, MetricsTelemetry], caplog: pytest.LogCaptureFixture
) -> None:
    """Library modules log through child loggers of the ``nanocmd`` service logger, with the
    enrollment id, command UUID, workflow, instance id and step name as keys."""
    h, _ = harness
    h.engine.start_workflow(StepsWorkflow.name, ["A"])
    uuid = h.uuids("A")[0]
    with caplog.at_level(logging.INFO, logger="nanocmd"):
        h.engine.handle_command_report("A", uuid, report(uuid, "A"))
    [line] = [r for r in caplog.records if r.getMessage() == "step completed"]
    assert line.name.startswith("nanocmd.")
    assert (line.enrollment_id, line.command_uuid, line.workflow, line.step_name) == (  # type: ignore[attr-defined]
        "A",
        uuid,
        StepsWorkflow.name,
        "",
    )
    assert line.instance_id  # type: ignore[attr-defined]


def test_dump_webhook_logs_the_body(
    queue_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, repo_root: Any
) -> None:
    """NANOCMD_DUMP_WEBHOOK: the webhook function logs every body it receives."""
    import base64

    from infra.local.lambda_runtime import LambdaContext, load_module
    from infra.local.stack import reset_settings_cache
    from tests.fakes.reports import idle_webhook

    monkeypatch.setenv("NANOCMD_DUMP_WEBHOOK", "true")
    reset_settings_cache()
    module = load_module(repo_root / "functions/webhook/app.py", "nanocmd_fn_webhook_dump")
    body = idle_webhook("DUMPED-DEVICE")
    event = {"body": base64.b64encode(body).decode(), "isBase64Encoded": True, "headers": {}}
    with caplog.at_level(logging.INFO, logger="nanocmd"):
        reply = module.handler(event, LambdaContext("WebhookFunction"))
    assert reply["statusCode"] == 200
    [dumped] = [r for r in caplog.records if r.getMessage() == "webhook body"]
    assert "DUMPED-DEVICE" in dumped.body  # type: ignore[attr-defined]
    reset_settings_cache()
