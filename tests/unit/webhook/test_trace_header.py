"""The intake runs without the X-Ray SDK (issue 14); its trace still reaches the events function:
botocore sends Lambda's trace header with SendMessage, and SQS keeps it as the message's
AWSTraceHeader, which Lambda's SQS event source links to the consumer's trace."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from nanocmd_core.aws.queue import SQSEventQueue

REPO = Path(__file__).resolve().parents[3]
TRACE = "Root=1-67891233-abcdef012345678912345678;Parent=53995c3f42cd8ad8;Sampled=1"


class Sent(Exception):
    """Raised from before-send: the request is captured, nothing leaves the process."""


def test_send_message_carries_the_lambda_trace_header(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "nanocmd-WebhookFunction")
    monkeypatch.setenv("_X_AMZN_TRACE_ID", TRACE)  # what the runtime sets for each invocation
    client = boto3.client(
        "sqs",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        endpoint_url="http://127.0.0.1:9",
        config=Config(retries={"max_attempts": 1}),
    )
    headers: dict[str, Any] = {}

    def capture(request: Any, **_: Any) -> None:
        headers.update(request.headers)
        raise Sent

    client.meta.events.register("before-send.sqs.SendMessage", capture)
    with pytest.raises(Sent):
        SQSEventQueue("http://127.0.0.1:9/123456789012/events.fifo", client=client).send(
            "{}", group_id="G", dedup_id="D", attributes={}
        )
    assert headers["X-Amzn-Trace-Id"] == TRACE.encode()


def test_the_intake_imports_no_tracing_sdk_and_no_pydantic() -> None:
    code = (
        "import importlib.util, sys\n"
        "spec = importlib.util.spec_from_file_location('app', 'functions/webhook/app.py')\n"
        "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)\n"
        "watched = {'aws_xray_sdk', 'pydantic', 'pynamodb'}\n"
        "print(','.join(sorted({m.split('.')[0] for m in sys.modules} & watched)))\n"
    )
    env = {"PATH": "/usr/bin:/bin", "AWS_DEFAULT_REGION": "us-east-1", "LAMBDA_TASK_ROOT": "/var/task"}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == ""
