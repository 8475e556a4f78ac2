"""The API, events and sweeper functions are traced with the Powertools Tracer: on Lambda (active
tracing) each invocation sends X-Ray subsegments, the handler's and one per AWS SDK call, to the
X-Ray daemon. The webhook intake is traced by Lambda alone (issue 14: no X-Ray SDK in its cold
start); its trace header travels with the SQS message (tests/unit/webhook/test_trace_header.py).

Each function runs in a fresh interpreter set up as Lambda sets up one (task root, trace header,
daemon address), with a UDP socket standing in for the daemon; the test reads what arrives.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from infra.local.events import basic_auth, proxy_event
from infra.local.lambda_runtime import run_fresh
from infra.local.resources import Provisioned

_INVOKE = r"""
import json, sys
from pathlib import Path
from infra.local.lambda_runtime import LambdaContext, load_module

path, event = sys.argv[1], json.loads(sys.argv[2])
module = load_module(Path(path), "app")
try:
    module.handler(event, LambdaContext("fn"))
except Exception as exc:  # traced all the same; the test looks at the subsegments
    print("handler raised", repr(exc), file=sys.stderr)
print(json.dumps({"xray_sdk_imported": "aws_xray_sdk" in sys.modules}))
"""

TRACE_ID = "1-5759e988-bd862e3fe1be46a994272793"
EVENTS: dict[str, dict[str, Any]] = {
    "webhook": proxy_event("POST", "/webhook", None, {}) | {"body": "not json"},
    "api": proxy_event("GET", "/v1/event", None, basic_auth("nanocmd", "k")),
    "events": {"Records": []},
    "sweeper": {},
}


def _subsegments(sock: socket.socket) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    sock.settimeout(0.5)
    while True:
        try:
            datagram = sock.recv(65536).decode()
        except TimeoutError:
            return found
        header, _, body = datagram.partition("\n")
        assert json.loads(header)["format"] == "json"
        found.append(json.loads(body))


@dataclass
class Invocation:
    subsegments: list[dict[str, Any]]
    xray_sdk_imported: bool
    stderr: str

    @property
    def names(self) -> list[str]:
        return [s.get("name", "") for s in self.subsegments]


def invoke_on_lambda(function: str, repo_root: Path, tmp_path: Path, **env: str) -> Invocation:
    """Run functions/<function>/app.py's handler once in a fresh interpreter set up as Lambda
    sets one up with active tracing, a UDP socket as the X-Ray daemon."""
    daemon = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    daemon.bind(("127.0.0.1", 0))
    lambda_env = {
        **os.environ,
        "NANOCMD_API": "k",
        "NANOCMD_ENQUEUE_URL": "http://127.0.0.1:9/v1/enqueue/",  # never called: nothing is due
        "NANOCMD_PUSH_URL": "http://127.0.0.1:9/v1/push/",
        "NANOCMD_ENQUEUE_API": "k",
        "PYTHONPATH": str(repo_root),
        "LAMBDA_TASK_ROOT": str(tmp_path),
        "AWS_LAMBDA_FUNCTION_NAME": f"nanocmd-{function}",
        "AWS_XRAY_DAEMON_ADDRESS": f"127.0.0.1:{daemon.getsockname()[1]}",
        "_X_AMZN_TRACE_ID": f"Root={TRACE_ID};Parent=53995c3f42cd8ad8;Sampled=1",
        "POWERTOOLS_TRACE_DISABLED": "false",
        **env,
    }
    handler = str(repo_root / "functions" / function / "app.py")
    try:
        doc, stderr = run_fresh(_INVOKE, [handler, json.dumps(EVENTS[function])], lambda_env, tmp_path, 120)
        subsegments = _subsegments(daemon)
    finally:
        daemon.close()
    return Invocation(subsegments, doc["xray_sdk_imported"], stderr[-3000:])


@pytest.mark.parametrize("function", ["api", "events", "sweeper"])
def test_each_function_sends_xray_subsegments(
    function: str, nanocmd_env: Provisioned, repo_root: Path, tmp_path: Path
) -> None:
    run = invoke_on_lambda(function, repo_root, tmp_path)
    assert "## handler" in run.names, f"{function}: {run.names}\n{run.stderr}"
    handler = next(s for s in run.subsegments if s.get("name") == "## handler")
    assert handler["trace_id"] == TRACE_ID
    if function == "sweeper":  # botocore is patched: its DynamoDB calls are subsegments too
        operations = {
            s.get("aws", {}).get("operation") for s in run.subsegments if s.get("name") == "dynamodb"
        }
        assert "Query" in operations, (run.names, run.stderr)


def test_the_webhook_intake_runs_without_the_xray_sdk(
    nanocmd_env: Provisioned, repo_root: Path, tmp_path: Path
) -> None:
    """Tracing on, as deployed: Lambda records the intake's invocation; the function itself loads
    no X-Ray SDK and sends nothing to the daemon."""
    run = invoke_on_lambda("webhook", repo_root, tmp_path)
    assert run.subsegments == [] and not run.xray_sdk_imported, (run.names, run.stderr)


def test_trace_disabled_skips_the_xray_sdk(nanocmd_env: Provisioned, repo_root: Path, tmp_path: Path) -> None:
    """POWERTOOLS_TRACE_DISABLED=true: no subsegments, and the X-Ray SDK is not even imported."""
    run = invoke_on_lambda("sweeper", repo_root, tmp_path, POWERTOOLS_TRACE_DISABLED="true")
    assert run.subsegments == [] and not run.xray_sdk_imported
