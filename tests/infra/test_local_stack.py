"""Tests of the local stack itself (infra/local): services, resources from the template, the local
API Gateway, the event-source worker, and ``python -m infra.local.run``'s start and stop.

Handlers here are small stand-ins written to a temporary folder, so these tests do not depend on the
real functions.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import boto3
import pytest

from infra.local.gateway import (
    LocalGateway,
    Route,
    Router,
    build_proxy_event,
    proxy_response,
    routes_from_template,
)
from infra.local.lambda_runtime import FunctionHost, function_specs
from infra.local.resources import CONTRACT_TEMPLATE, Provisioned, provision, write_contract_template
from infra.local.services import DynamoDBLocal, free_port, port_open
from infra.local.stack import LocalStack
from infra.local.template import Resolver, Template, load_template
from infra.local.worker import QueuePoller, ScheduleFirer, at_time, failed_message_ids, sqs_event

# -- stand-in handlers --------------------------------------------------------------------------

STANDIN_HANDLERS = {
    "webhook": '''
        import base64, json, os
        import boto3

        def handler(event, context):
            """Echoes the event; with ?enqueue=1 puts the body on the events queue (like the intake)."""
            if (event.get("queryStringParameters") or {}).get("enqueue"):
                body = base64.b64decode(event["body"]).decode() if event["isBase64Encoded"] else event["body"]
                boto3.client("sqs").send_message(
                    QueueUrl=os.environ["NANOCMD_QUEUE_URL"], MessageBody=body,
                    MessageGroupId="g1", MessageDeduplicationId=context.aws_request_id)
            return {"statusCode": 200, "headers": {"Content-Type": "application/json"},
                    "body": json.dumps({"fn": "webhook", "event": event,
                                        "context": [context.function_name, context.aws_request_id,
                                                    context.invoked_function_arn, context.memory_limit_in_mb,
                                                    context.get_remaining_time_in_millis()]})}
    ''',
    "api": """
        import base64, json, os
        import boto3

        def handler(event, context):
            path = event["path"]
            if path == "/v1/boom":
                raise RuntimeError("boom")
            if path == "/v1/bad":
                return {"statusCode": "two hundred"}
            if path == "/v1/bin":
                return {"statusCode": 201,
                        "headers": {"Content-Type": "application/octet-stream", "X-One": "h"},
                        "multiValueHeaders": {"Set-Cookie": ["a=1", "b=2"]},
                        "body": base64.b64encode(bytes(range(256))).decode(), "isBase64Encoded": True}
            if path == "/v1/secret":
                arn = os.environ.get("NANOCMD_API_SECRET", "")
                value = boto3.client("secretsmanager").get_secret_value(SecretId=arn)["SecretString"]
                return {"statusCode": 200, "body": json.dumps(
                    {"arn": arn, "value": value, "plain": os.environ.get("NANOCMD_API")})}
            status = 404 if event["resource"] in ("/{proxy+}", "/") else 200
            return {"statusCode": status, "body": json.dumps({"fn": "api", "event": event})}
    """,
    "events": '''
        import os
        import boto3

        def handler(event, context):
            """Stores each record's body in the table; bodies starting with "fail" are reported failed."""
            ddb = boto3.client("dynamodb")
            failures = []
            for rec in event["Records"]:
                if rec["body"].startswith("fail"):
                    failures.append({"itemIdentifier": rec["messageId"]})
                    continue
                ddb.put_item(TableName=os.environ["NANOCMD_TABLE"],
                             Item={"pk": {"S": "event"}, "sk": {"S": rec["body"]}})
            return {"batchItemFailures": failures}
    ''',
    "sweeper": """
        RUNS = []

        def handler(event, context):
            RUNS.append(event)
            return {"runs": len(RUNS)}
    """,
}


@pytest.fixture(scope="module")
def standin_functions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("functions")
    for name, code in STANDIN_HANDLERS.items():
        (root / name).mkdir()
        (root / name / "app.py").write_text(textwrap.dedent(code))
    return root


@pytest.fixture(scope="module")
def contract_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_contract_template(tmp_path_factory.mktemp("tpl") / "template.yaml")


def _prefix() -> str:
    return f"i{uuid.uuid4().hex[:10]}"


def _request(
    base: tuple[str, int],
    method: str,
    target: str,
    body: bytes | None = None,
    headers: list[tuple[str, str]] | None = None,
) -> tuple[int, list[tuple[str, str]], bytes]:
    conn = http.client.HTTPConnection(*base, timeout=10)
    try:
        conn.putrequest(method, target)
        for k, v in headers or []:
            conn.putheader(k, v)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        resp = conn.getresponse()
        return resp.status, resp.getheaders(), resp.read()
    finally:
        conn.close()


# -- services -----------------------------------------------------------------------------------


def test_dynamodb_local_starts_fast_answers_and_stops() -> None:
    t0 = time.monotonic()
    with DynamoDBLocal() as ddb:
        elapsed = time.monotonic() - t0
        print(f"DynamoDB Local answered after {elapsed:.2f}s (log {ddb.log_path})")
        assert elapsed < 15, "DynamoDB Local start should take a few seconds"
        client = boto3.client("dynamodb", endpoint_url=ddb.endpoint_url)
        assert "TableNames" in client.list_tables()
        proc = ddb.process
        assert proc is not None and proc.poll() is None
        port = ddb.port
    assert proc.poll() is not None, "the java process is gone after stop()"
    assert not port_open("127.0.0.1", port)


# -- the template -------------------------------------------------------------------------------


def test_loader_accepts_short_tags_and_resolver_evaluates_them(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(
        textwrap.dedent(
            """
            AWSTemplateFormatVersion: 2010-09-09
            Parameters:
              Minutes: {Type: Number, Default: 5}
              Debug: {Type: String, Default: "false"}
            Mappings:
              Interval:
                "5": {Seconds: 300}
            Conditions:
              IsDebug: !Equals [!Ref Debug, "true"]
            Resources:
              Q:
                Type: AWS::SQS::Queue
                Properties:
                  A: !Ref Q
                  B: !GetAtt Q.Arn
                  C: !Sub "${Q.Arn}/x/${AWS::Region}/${!Literal}"
                  D: !If [IsDebug, DEBUG, INFO]
                  E: !FindInMap [Interval, !Ref Minutes, Seconds]
                  F: !If [IsDebug, x, !Ref AWS::NoValue]
                  G: !Join ["-", [a, !Ref Debug]]
                  H: !Select [1, !Split [",", "a,b,c"]]
            """
        )
    )
    data = load_template(path)
    assert data["AWSTemplateFormatVersion"] == "2010-09-09"
    props = data["Resources"]["Q"]["Properties"]
    assert props["A"] == {"Ref": "Q"}
    assert props["B"] == {"Fn::GetAtt": ["Q", "Arn"]}
    tpl = Template(data)
    r = Resolver(tpl, parameters=tpl.parameter_defaults(), refs={"Q": "url"}, attrs={("Q", "Arn"): "arn:q"})
    assert r.resolve(props) == {
        "A": "url",
        "B": "arn:q",
        "C": "arn:q/x/us-east-1/${Literal}",
        "D": "INFO",
        "E": 300,
        "G": "a-false",
        "H": "b",
    }


TEMPLATES = ["contract"] + (["repo"] if (Path(__file__).parents[2] / "template.yaml").exists() else [])


@pytest.fixture(params=TEMPLATES)
def any_template(request: pytest.FixtureRequest, contract_template: Path, repo_root: Path) -> Path:
    return contract_template if request.param == "contract" else repo_root / "template.yaml"


def test_resources_match_their_template_definitions(aws_env: dict[str, str], any_template: Path) -> None:
    tpl = Template.load(any_template)
    p = provision(tpl, _prefix(), {"NANOCMD_API": "api-key-1", "NANOCMD_ENQUEUE_URL": "http://mdm/enqueue/"})
    try:
        ddb, sqs = boto3.client("dynamodb"), boto3.client("sqs")
        for lid, res in tpl.of_type("AWS::DynamoDB::Table"):
            want = res["Properties"]
            table = ddb.describe_table(TableName=p.ref(lid))["Table"]
            assert table["KeySchema"] == want["KeySchema"]
            assert {(a["AttributeName"], a["AttributeType"]) for a in table["AttributeDefinitions"]} == {
                (a["AttributeName"], a["AttributeType"]) for a in want["AttributeDefinitions"]
            }
            got_gsis = {g["IndexName"]: g for g in table.get("GlobalSecondaryIndexes", [])}
            assert set(got_gsis) == {g["IndexName"] for g in want.get("GlobalSecondaryIndexes", [])}
            for g in want.get("GlobalSecondaryIndexes", []):
                assert got_gsis[g["IndexName"]]["KeySchema"] == g["KeySchema"]
                assert (
                    got_gsis[g["IndexName"]]["Projection"]["ProjectionType"]
                    == g["Projection"]["ProjectionType"]
                )
            if "TimeToLiveSpecification" in want:
                ttl = ddb.describe_time_to_live(TableName=p.ref(lid))["TimeToLiveDescription"]
                assert ttl["TimeToLiveStatus"] == "ENABLED"
                assert ttl["AttributeName"] == want["TimeToLiveSpecification"]["AttributeName"]
        for lid, res in tpl.of_type("AWS::SQS::Queue"):
            want = res.get("Properties") or {}
            attrs = sqs.get_queue_attributes(QueueUrl=p.ref(lid), AttributeNames=["All"])["Attributes"]
            assert (attrs.get("FifoQueue") == "true") == bool(want.get("FifoQueue"))
            if "VisibilityTimeout" in want:
                assert attrs["VisibilityTimeout"] == str(want["VisibilityTimeout"])
            if "RedrivePolicy" in want:
                policy = json.loads(attrs["RedrivePolicy"])
                assert int(policy["maxReceiveCount"]) == int(want["RedrivePolicy"]["maxReceiveCount"])
                dlq = want["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
                assert policy["deadLetterTargetArn"] == p.attr(dlq, "Arn")
        for lid, _ in tpl.of_type("AWS::S3::Bucket"):
            boto3.client("s3").head_bucket(Bucket=p.ref(lid))
        for lid, _ in tpl.of_type("AWS::Scheduler::ScheduleGroup"):
            boto3.client("scheduler").get_schedule_group(Name=p.ref(lid))

        env = p.env
        assert env["NANOCMD_TABLE"] == p.ref("Table")
        assert env["NANOCMD_QUEUE_URL"] == p.ref("EventsQueue")
        assert env["NANOCMD_BUCKET"] == p.ref("BlobBucket")
        assert env["NANOCMD_SCHEDULE_GROUP"] == p.ref("ScheduleGroup")
        assert env["NANOCMD_SCHEDULE_TARGET_ARN"] == p.attr("EventsQueue", "Arn")
        assert env["NANOCMD_SCHEDULER_ROLE_ARN"].startswith("arn:aws:iam::")
        assert env["NANOCMD_ENQUEUE_URL"] == "http://mdm/enqueue/"
        # the API key went into Secrets Manager; the functions only get its ARN
        assert "NANOCMD_API" not in env
        secret = boto3.client("secretsmanager").get_secret_value(SecretId=env["NANOCMD_API_SECRET"])
        assert secret["SecretString"] == "api-key-1"
        # unset secrets stay off, as with the Go NanoCMD
        assert "NANOCMD_WEBHOOK_HMAC_KEY_SECRET" not in env
        assert "NANOCMD_ENQUEUE_API_SECRET" not in env
    finally:
        p.delete()
    assert p.ref("Table") not in boto3.client("dynamodb").list_tables()["TableNames"]
    with pytest.raises(sqs.exceptions.QueueDoesNotExist):
        sqs.get_queue_attributes(QueueUrl=p.ref("EventsQueue"), AttributeNames=["QueueArn"])


def test_table_fixture_uses_the_template(table_name: str, template_path: Path) -> None:
    assert os.environ["NANOCMD_TABLE"] == table_name
    table = boto3.client("dynamodb").describe_table(TableName=table_name)["Table"]
    want = Template.load(template_path).resources["Table"]["Properties"]
    assert table["KeySchema"] == want["KeySchema"]


def test_queue_fixture_is_fifo_with_dead_letter_queue(queue_url: str) -> None:
    attrs = boto3.client("sqs").get_queue_attributes(QueueUrl=queue_url, AttributeNames=["All"])["Attributes"]
    assert attrs["FifoQueue"] == "true"
    assert json.loads(attrs["RedrivePolicy"])["deadLetterTargetArn"].endswith(".fifo")


# -- the gateway --------------------------------------------------------------------------------


@pytest.fixture
def gateway(standin_functions: Path, contract_template: Path) -> Iterator[LocalGateway]:
    tpl = Template.load(contract_template)
    host = FunctionHost(function_specs(tpl, standin_functions, "gw"))
    gw = LocalGateway(host, port=0, routes=routes_from_template(tpl), stage="prod")
    gw.start()
    try:
        yield gw
    finally:
        gw.stop()


def test_gateway_builds_rest_proxy_events(gateway: LocalGateway) -> None:
    body = b"\x00\xff<plist/>"
    status, _, data = _request(
        gateway.address,
        "POST",
        "/webhook?a=1&a=2&b=&c=x%20y",
        body,
        [("X-Dup", "one"), ("X-Dup", "two"), ("Content-Type", "application/x-apple-aspen-mdm")],
    )
    assert status == 200
    reply = json.loads(data)
    assert reply["fn"] == "webhook"
    ev = reply["event"]
    assert ev["resource"] == "/webhook"
    assert ev["path"] == "/webhook"
    assert ev["httpMethod"] == "POST"
    assert ev["isBase64Encoded"] is True
    assert base64.b64decode(ev["body"]) == body
    assert ev["queryStringParameters"] == {"a": "2", "b": "", "c": "x y"}
    assert ev["multiValueQueryStringParameters"] == {"a": ["1", "2"], "b": [""], "c": ["x y"]}
    assert ev["headers"]["X-Dup"] == "two"
    assert ev["multiValueHeaders"]["X-Dup"] == ["one", "two"]
    assert ev["headers"]["Content-Type"] == "application/x-apple-aspen-mdm"
    assert ev["pathParameters"] is None
    assert ev["stageVariables"] is None
    ctx = ev["requestContext"]
    assert ctx["stage"] == "prod"
    assert ctx["httpMethod"] == "POST"
    assert ctx["path"] == "/prod/webhook"
    assert ctx["resourcePath"] == "/webhook"
    assert ctx["identity"]["sourceIp"] == "127.0.0.1"
    assert ctx["requestId"]
    name, request_id, arn, memory, remaining = reply["context"]
    assert name == "gw-WebhookFunction" and arn.endswith(":function:gw-WebhookFunction")
    assert request_id and memory > 0 and remaining > 0


def test_gateway_without_body_or_query(gateway: LocalGateway) -> None:
    status, _, data = _request(gateway.address, "GET", "/version")
    ev = json.loads(data)["event"]
    assert status == 200
    assert ev["resource"] == "/version"
    assert ev["body"] is None and ev["isBase64Encoded"] is False
    assert ev["queryStringParameters"] is None and ev["multiValueQueryStringParameters"] is None


def test_gateway_routes_proxy_paths_and_unknown_paths_to_the_api(gateway: LocalGateway) -> None:
    status, _, data = _request(gateway.address, "GET", "/v1/workflow/io.micromdm.wf.x.v1/start?id=A&id=B%2C")
    ev = json.loads(data)["event"]
    assert status == 200
    assert ev["resource"] == "/v1/{proxy+}"
    assert ev["pathParameters"] == {"proxy": "workflow/io.micromdm.wf.x.v1/start"}
    assert ev["multiValueQueryStringParameters"] == {"id": ["A", "B,"]}

    _, _, data = _request(gateway.address, "GET", "/v1/inventory/a%2Fb")
    ev = json.loads(data)["event"]
    assert ev["path"] == "/v1/inventory/a%2Fb"  # REST APIs keep the path as sent
    assert ev["pathParameters"] == {"proxy": "inventory/a/b"}

    status, _, data = _request(gateway.address, "DELETE", "/no/such/thing")
    ev = json.loads(data)["event"]
    assert status == 404
    assert ev["resource"] == "/{proxy+}"
    assert ev["pathParameters"] == {"proxy": "no/such/thing"}


def test_gateway_writes_replies_as_api_gateway_does(gateway: LocalGateway) -> None:
    status, headers, data = _request(gateway.address, "GET", "/v1/bin")
    assert status == 201
    assert data == bytes(range(256))
    assert [v for k, v in headers if k == "Set-Cookie"] == ["a=1", "b=2"]
    assert ("X-One", "h") in headers
    assert ("Content-Type", "application/octet-stream") in headers

    for path in ("/v1/boom", "/v1/bad"):
        status, _, data = _request(gateway.address, "GET", path)
        assert status == 502
        assert json.loads(data) == {"message": "Internal server error"}


def test_handlers_load_under_distinct_module_names(gateway: LocalGateway) -> None:
    gateway.functions.load_all()
    for name in ("webhook", "api", "events", "sweeper"):
        module = sys.modules[f"nanocmd_fn_{name}"]
        assert module.__file__ is not None and module.__file__.endswith(f"{name}/app.py")


def test_router_prefers_specific_resources_and_methods() -> None:
    router = Router(
        [
            Route("/v1/{proxy+}", "ANY", "Any"),
            Route("/v1/items/{id}", "ANY", "Item"),
            Route("/v1/items/special", "GET", "Special"),
        ]
    )
    assert router.match("/v1/items/special", "GET").function == "Special"
    assert router.match("/v1/items/special", "POST").function == "Item"
    m = router.match("/v1/items/a%20b", "GET")
    assert (m.function, m.path_parameters) == ("Item", {"id": "a b"})
    assert router.match("/v1/items/a/b", "GET").function == "Any"
    assert router.match("/", "GET").resource == "/"


def test_proxy_event_and_reply_helpers() -> None:
    ev = build_proxy_event(
        method="PUT",
        target="/x",
        headers=[("Host", "h")],
        body=b"",
        source_ip="::1",
        match=Router([]).match("/x", "PUT"),
        request_id="r1",
        now=0,
    )
    assert ev["requestContext"]["requestTimeEpoch"] == 0
    assert ev["requestContext"]["requestTime"] == "01/Jan/1970:00:00:00 +0000"
    assert proxy_response({"statusCode": 204}) == (204, [], b"")
    assert proxy_response({"statusCode": 200, "headers": {"A": "1"}, "multiValueHeaders": {"A": ["2", "3"]}})[
        1
    ] == [
        ("A", "2"),
        ("A", "3"),
    ]


# -- the worker ---------------------------------------------------------------------------------


@pytest.fixture
def events_queue(aws_env: dict[str, str], contract_template: Path) -> Iterator[Provisioned]:
    p = provision(contract_template, _prefix(), {}, only=["EventsQueue", "ScheduleGroup"])
    try:
        yield p
    finally:
        p.delete()


def _send(url: str, body: str, group: str = "g1") -> str:
    return boto3.client("sqs").send_message(
        QueueUrl=url,
        MessageBody=body,
        MessageGroupId=group,
        MessageDeduplicationId=uuid.uuid4().hex,
        MessageAttributes={"kind": {"DataType": "String", "StringValue": "test"}},
    )["MessageId"]


def _receive_all(url: str, wait: int = 1) -> list[Any]:
    resp = boto3.client("sqs").receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=wait, MessageSystemAttributeNames=["All"]
    )
    return list(resp.get("Messages", []))


class Recorder:
    """A stand-in events handler that fails the messages whose body starts with "fail"."""

    def __init__(self, raise_error: bool = False) -> None:
        self.events: list[dict[str, Any]] = []
        self.raise_error = raise_error

    def __call__(self, event: dict[str, Any], context: Any) -> Any:
        self.events.append(event)
        if self.raise_error:
            raise RuntimeError("handler crashed")
        return {
            "batchItemFailures": [
                {"itemIdentifier": r["messageId"]} for r in event["Records"] if r["body"].startswith("fail")
            ]
        }


def _poller(p: Provisioned, handler: Any, retry_visibility: int | None = 0) -> QueuePoller:
    host = FunctionHost()
    host.register("EventsFunction", handler)
    return QueuePoller(
        host, "EventsFunction", p.ref("EventsQueue"), wait_seconds=1, retry_visibility=retry_visibility
    )


def test_worker_builds_sqs_events_and_deletes_only_successes(events_queue: Provisioned) -> None:
    url = events_queue.ref("EventsQueue")
    ok1, bad, ok2 = _send(url, "ok-1", "g1"), _send(url, "fail-1", "g2"), _send(url, "ok-2", "g3")
    rec = Recorder()
    poller = _poller(events_queue, rec, retry_visibility=None)  # failures wait out the visibility timeout
    received = 0
    for _ in range(5):
        received += poller.poll_once()
        if received >= 3:
            break
    assert received == 3
    records = [r for ev in rec.events for r in ev["Records"]]
    assert {r["messageId"] for r in records} == {ok1, bad, ok2}
    r = next(r for r in records if r["messageId"] == ok1)
    assert r["body"] == "ok-1"
    assert r["eventSource"] == "aws:sqs"
    assert r["eventSourceARN"] == events_queue.attr("EventsQueue", "Arn")
    assert r["awsRegion"] == "us-east-1"
    assert r["receiptHandle"]
    assert r["attributes"]["MessageGroupId"] == "g1"
    assert r["attributes"]["MessageDeduplicationId"]
    assert r["attributes"]["ApproximateReceiveCount"] == "1"
    assert int(r["attributes"]["SentTimestamp"]) > 0
    assert r["messageAttributes"]["kind"]["stringValue"] == "test"
    assert r["messageAttributes"]["kind"]["dataType"] == "String"
    assert r["md5OfBody"]

    attrs = boto3.client("sqs").get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    # only the failed message is left, in flight until its visibility timeout (180 s) passes
    assert attrs["ApproximateNumberOfMessages"] == "0"
    assert attrs["ApproximateNumberOfMessagesNotVisible"] == "1"


def test_handler_exception_fails_the_whole_batch(events_queue: Provisioned) -> None:
    url = events_queue.ref("EventsQueue")
    _send(url, "ok-1", "g1")
    rec = Recorder(raise_error=True)
    poller = _poller(events_queue, rec)
    assert poller.poll_once() == 1
    again = _receive_all(url)
    assert [m["Body"] for m in again] == ["ok-1"]
    assert again[0]["Attributes"]["ApproximateReceiveCount"] == "2"


def test_batch_item_failure_rules() -> None:
    ids = ["a", "b"]
    assert failed_message_ids(None, ids) == set()
    assert failed_message_ids({}, ids) == set()
    assert failed_message_ids({"batchItemFailures": []}, ids) == set()
    assert failed_message_ids({"batchItemFailures": [{"itemIdentifier": "b"}]}, ids) == {"b"}
    assert failed_message_ids({"batchItemFailures": [{"itemIdentifier": "zzz"}]}, ids) == {"a", "b"}
    assert failed_message_ids({"batchItemFailures": [{"itemIdentifier": ""}]}, ids) == {"a", "b"}
    assert failed_message_ids("not json", ids) == {"a", "b"}


def test_poison_message_lands_in_the_dead_letter_queue_after_max_receive_count(
    events_queue: Provisioned,
) -> None:
    url = events_queue.ref("EventsQueue")
    dlq = events_queue.ref("EventsDeadLetterQueue")
    msg_id = _send(url, "fail-always")
    rec = Recorder()
    poller = _poller(events_queue, rec, retry_visibility=0)
    for _ in range(10):
        poller.poll_once(wait_seconds=0)
        time.sleep(0.05)
    assert len(rec.events) == 5, "maxReceiveCount is 5: five deliveries, then the dead-letter queue"
    moved = _receive_all(dlq)
    assert [m["MessageId"] for m in moved] == [msg_id]
    assert _receive_all(url, wait=0) == []


def test_sqs_event_shape_for_binary_attributes() -> None:
    ev = sqs_event(
        [
            {
                "MessageId": "m",
                "ReceiptHandle": "r",
                "Body": "b",
                "MD5OfBody": "x",
                "Attributes": {"ApproximateReceiveCount": "1"},
                "MessageAttributes": {"bin": {"DataType": "Binary", "BinaryValue": b"\x01"}},
            }
        ],
        "arn:aws:sqs:us-east-1:123456789012:q.fifo",
    )
    attr = ev["Records"][0]["messageAttributes"]["bin"]
    assert attr == {
        "binaryValue": "AQ==",
        "stringListValues": [],
        "binaryListValues": [],
        "dataType": "Binary",
    }


def test_due_one_time_schedules_are_delivered_to_the_queue_and_deleted(events_queue: Provisioned) -> None:
    scheduler = boto3.client("scheduler")
    group = events_queue.ref("ScheduleGroup")
    target_arn = events_queue.attr("EventsQueue", "Arn")
    past = (datetime.now(UTC) - timedelta(seconds=5)).strftime("%Y-%m-%dT%H:%M:%S")
    future = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S")
    common: dict[str, Any] = {"GroupName": group, "FlexibleTimeWindow": {"Mode": "OFF"}}
    cases: list[tuple[str, str, Literal["DELETE", "NONE"]]] = [
        ("due", past, "DELETE"),
        ("later", future, "DELETE"),
        ("keep", past, "NONE"),
    ]
    for name, when, action in cases:
        scheduler.create_schedule(
            Name=name,
            ScheduleExpression=f"at({when})",
            ScheduleExpressionTimezone="UTC",
            ActionAfterCompletion=action,
            Target={
                "Arn": target_arn,
                "RoleArn": "arn:aws:iam::123456789012:role/scheduler",
                "Input": json.dumps({"step": name}),
                "SqsParameters": {"MessageGroupId": f"grp-{name}"},
            },
            **common,
        )
    firer = ScheduleFirer(FunctionHost(), group)
    assert sorted(firer.fire_due()) == ["due", "keep"]
    assert firer.fire_due() == [], "each schedule fires once"
    names = {s["Name"] for s in scheduler.list_schedules(GroupName=group)["Schedules"]}
    assert names == {"later", "keep"}, "ActionAfterCompletion DELETE removes the schedule"
    got = _receive_all(events_queue.ref("EventsQueue"))
    got += _receive_all(events_queue.ref("EventsQueue"), wait=0)
    assert sorted((json.loads(m["Body"])["step"], m["Attributes"]["MessageGroupId"]) for m in got) == [
        ("due", "grp-due"),
        ("keep", "grp-keep"),
    ]


def test_schedules_targeting_a_function_invoke_it(events_queue: Provisioned) -> None:
    host = FunctionHost()
    calls: list[Any] = []
    host.register("SweeperFunction", lambda event, ctx: calls.append(event))
    group = events_queue.ref("ScheduleGroup")
    boto3.client("scheduler").create_schedule(
        Name="sweep-now",
        GroupName=group,
        ScheduleExpression="at(2001-01-01T00:00:00)",
        FlexibleTimeWindow={"Mode": "OFF"},
        ActionAfterCompletion="DELETE",
        Target={
            "Arn": host.specs["SweeperFunction"].arn,
            "RoleArn": "arn:aws:iam::123456789012:role/r",
            "Input": '{"a": 1}',
        },
    )
    assert ScheduleFirer(host, group).fire_due() == ["sweep-now"]
    assert calls == [{"a": 1}]


def test_at_expressions() -> None:
    assert at_time("at(2030-01-02T03:04:05)", None) == datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    berlin = at_time("at(2030-01-02T03:04:05)", "Europe/Berlin")
    assert berlin is not None and berlin.astimezone(UTC).hour == 2
    assert at_time("rate(5 minutes)", "UTC") is None


# -- the whole stack ----------------------------------------------------------------------------


def test_local_stack_runs_the_handlers_end_to_end(
    aws_env: dict[str, str], standin_functions: Path, contract_template: Path
) -> None:
    before = dict(os.environ)
    with LocalStack(
        template=contract_template,
        functions_dir=standin_functions,
        listen="127.0.0.1:0",
        aws_env=aws_env,
        inherit_env=False,
        extra_env={"NANOCMD_API": "the-api-key", "NANOCMD_WORKER_INTERVAL": "0"},
        retry_visibility=0,
    ) as stack:
        host, port = stack.gateway.address if stack.gateway else ("", 0)
        # the secret path: the handler reads the key from Secrets Manager; the plain value is not set
        status, _, data = _request((host, port), "GET", "/v1/secret")
        reply = json.loads(data)
        assert status == 200
        assert reply["value"] == "the-api-key"
        assert reply["plain"] is None
        assert reply["arn"] == stack.env["NANOCMD_API_SECRET"]

        # webhook -> queue -> worker -> events handler -> DynamoDB
        status, _, _ = _request((host, port), "POST", "/webhook?enqueue=1", b"hello-world")
        assert status == 200
        ddb = boto3.client("dynamodb")
        deadline = time.monotonic() + 10
        item = None
        while time.monotonic() < deadline and not item:
            item = ddb.get_item(
                TableName=stack.env["NANOCMD_TABLE"], Key={"pk": {"S": "event"}, "sk": {"S": "hello-world"}}
            ).get("Item")
            time.sleep(0.05)
        assert item, "the event went through the queue into the events handler"
        assert stack.wait_queue_empty(5)
        assert stack.sweep() == {"runs": 1}
        assert stack.base_url == f"http://{host}:{port}"
    assert dict(os.environ) == before, "the stack restores the environment it changed"
    assert not port_open(host, port)


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        out += [int(c) for c in (task / "children").read_text().split()]
    return out


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _start_run(
    standin_functions: Path, contract_template: Path, repo_root: Path
) -> tuple[subprocess.Popen[str], int, list[int]]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "NANOCMD_"))} | {
        "NANOCMD_API": "k",
        "PYTHONUNBUFFERED": "1",
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "infra.local.run",
            "--functions-dir",
            str(standin_functions),
            "--template",
            str(contract_template),
            "--listen",
            f"127.0.0.1:{port}",
            "--prefix",
            _prefix(),
            "--in-memory",
            "--events-concurrency",
            "2",
            "--gateway-processes",
            "2",
        ],
        cwd=repo_root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    try:
        lines = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "Ctrl-C stops it" in line:
                break
        output = "".join(lines)
        assert "Ctrl-C stops it" in output, output
        assert f"http://127.0.0.1:{port}/webhook" in output
        # DynamoDB Local, fauxqs, moto, two events consumers and two gateway workers, all up
        # before the summary
        children = _children(proc.pid)
        assert len(children) == 7, f"3 servers, 2 consumers and 2 gateway workers as children: {children}"
    except BaseException:
        proc.kill()  # no stack left running behind a failed test
        proc.wait()
        raise
    return proc, port, children


def test_run_stops_everything_on_ctrl_c(
    standin_functions: Path, contract_template: Path, repo_root: Path
) -> None:
    proc, port, children = _start_run(standin_functions, contract_template, repo_root)
    try:
        java = [
            c for c in children if "java" in Path(f"/proc/{c}/cmdline").read_bytes().decode(errors="replace")
        ]
        assert java, "a java child runs DynamoDB Local"
        ddb_port = int(Path(f"/proc/{java[0]}/cmdline").read_bytes().split(b"\0")[-2])
        assert port_open("127.0.0.1", ddb_port)
        status, _, _ = _request(("127.0.0.1", port), "GET", "/version")
        assert status == 200
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not port_open("127.0.0.1", port)
    assert not port_open("127.0.0.1", ddb_port)
    assert not any(_alive(c) for c in children), "no orphaned server, consumer or gateway process"


def test_children_die_with_a_killed_runner(
    standin_functions: Path, contract_template: Path, repo_root: Path
) -> None:
    proc, _, children = _start_run(standin_functions, contract_template, repo_root)
    proc.kill()  # SIGKILL: no cleanup code runs; the parent-death signal must still stop the children
    proc.wait()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(_alive(c) for c in children):
        time.sleep(0.1)
    assert not any(_alive(c) for c in children)


def test_contract_template_is_valid_yaml_for_the_loader(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(CONTRACT_TEMPLATE)
    tpl = Template.load(path)
    assert {lid for lid, _ in tpl.of_type("AWS::Serverless::Function")} == {
        "WebhookFunction",
        "ApiFunction",
        "EventsFunction",
        "SweeperFunction",
    }
