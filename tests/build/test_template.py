"""template.yaml keeps the contract the rest of the system relies on, and cfn-lint finds nothing.

Logical ids, environment variable names, table keys and queue settings here are read by nanocmd_core,
functions/ and the local stack (infra/local), so a change in the template must show up as a failure here
before it shows up as a broken deploy.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "template.yaml"
CONSTRAINTS = REPO / "infra" / "build" / "layer-constraints.txt"

# LogicalId -> (folder under functions/, MemorySize, Timeout)
FUNCTIONS = {
    "WebhookFunction": ("webhook", 256, 10),
    "ApiFunction": ("api", 512, 30),
    "EventsFunction": ("events", 512, 30),
    "SweeperFunction": ("sweeper", 512, 300),
}

# ----------------------------------------------------------------------------------- YAML with CFN tags


class CfnLoader(yaml.SafeLoader):
    """SafeLoader that turns CloudFormation short forms (!Ref, !GetAtt, !Sub, ...) into long forms."""


def _cfn_tag(loader: CfnLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if tag_suffix == "Ref":
        return {"Ref": value}
    if tag_suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    if tag_suffix == "Condition":
        return {"Condition": value}
    return {f"Fn::{tag_suffix}": value}


CfnLoader.add_multi_constructor("!", _cfn_tag)


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    with path.open() as fh:
        return yaml.load(fh, Loader=CfnLoader)


@pytest.fixture(scope="module")
def tpl() -> dict[str, Any]:
    return load_template()


def resource(tpl: dict[str, Any], logical_id: str, type_: str | None = None) -> dict[str, Any]:
    res = tpl["Resources"].get(logical_id)
    assert res is not None, f"template.yaml has no resource {logical_id}"
    if type_:
        assert res["Type"] == type_, f"{logical_id} is {res['Type']}, expected {type_}"
    return res


def props(tpl: dict[str, Any], logical_id: str, type_: str | None = None) -> dict[str, Any]:
    return resource(tpl, logical_id, type_).get("Properties", {})


def fn_prop(tpl: dict[str, Any], logical_id: str, name: str) -> Any:
    """A function property as deployed: the function's own value, else Globals.Function's."""
    own = props(tpl, logical_id)
    if name in own:
        return own[name]
    return tpl.get("Globals", {}).get("Function", {}).get(name)


def refs(value: Any) -> set[str]:
    """Logical ids (and parameters) an intrinsic-function value refers to."""
    out: set[str] = set()
    if isinstance(value, dict):
        for key, inner in value.items():
            if key == "Ref" and isinstance(inner, str):
                out.add(inner)
            elif key == "Fn::GetAtt":
                parts = inner.split(".", 1) if isinstance(inner, str) else inner
                out.add(parts[0])
            elif key == "Fn::Sub":
                text = inner if isinstance(inner, str) else inner[0]
                out |= {m.split(".", 1)[0] for m in re.findall(r"\$\{([^}!]+)\}", text)}
                if not isinstance(inner, str):
                    out |= refs(inner[1])
            else:
                out |= refs(inner)
    elif isinstance(value, list):
        for inner in value:
            out |= refs(inner)
    return out


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def statements(tpl: dict[str, Any], logical_id: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for policy in props(tpl, logical_id).get("Policies", []):
        assert isinstance(policy, dict) and "Statement" in policy, (
            f"{logical_id}: only inline policy documents are allowed (no managed or SAM policy "
            f"templates, which grant more than the function needs): {policy!r}"
        )
        out.extend(policy["Statement"])
    return out


def grants(tpl: dict[str, Any], logical_id: str) -> set[tuple[str, str]]:
    """(action, logical id of the resource) pairs a function's Allow statements grant."""
    out: set[tuple[str, str]] = set()
    for st in statements(tpl, logical_id):
        if st.get("Effect") != "Allow":
            continue
        for action in as_list(st["Action"]):
            for res in as_list(st["Resource"]):
                for ref in refs(res) - {"AWS::Partition", "AWS::Region", "AWS::AccountId"}:
                    out.add((action, ref))
    return out


# -------------------------------------------------------------------------------------------- storage


def test_is_a_sam_template(tpl: dict[str, Any]) -> None:
    assert tpl["Transform"] == "AWS::Serverless-2016-10-31"


def test_table_keys_indexes_ttl(tpl: dict[str, Any]) -> None:
    table = resource(tpl, "Table", "AWS::DynamoDB::Table")
    p = table["Properties"]
    attrs = {a["AttributeName"]: a["AttributeType"] for a in p["AttributeDefinitions"]}
    assert attrs == {"pk": "S", "sk": "S", "gsi1pk": "S", "gsi1sk": "N", "gsi2pk": "S", "gsi2sk": "N"}
    assert p["KeySchema"] == [
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ]
    gsis = {g["IndexName"]: g for g in p["GlobalSecondaryIndexes"]}
    assert set(gsis) == {"gsi1", "gsi2"}
    for name in ("gsi1", "gsi2"):
        assert gsis[name]["KeySchema"] == [
            {"AttributeName": f"{name}pk", "KeyType": "HASH"},
            {"AttributeName": f"{name}sk", "KeyType": "RANGE"},
        ]
        assert gsis[name]["Projection"] == {"ProjectionType": "KEYS_ONLY"}
    assert p["TimeToLiveSpecification"] == {"AttributeName": "ttl", "Enabled": True}
    assert p["BillingMode"] == "PAY_PER_REQUEST"
    assert p["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert p["SSESpecification"]["SSEEnabled"] is True
    assert table["DeletionPolicy"] == "Retain"
    assert table["UpdateReplacePolicy"] == "Retain"


def test_blob_bucket_private_and_encrypted(tpl: dict[str, Any]) -> None:
    p = props(tpl, "BlobBucket", "AWS::S3::Bucket")
    assert all(
        p["PublicAccessBlockConfiguration"][k] is True
        for k in ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets")
    )
    rules = p["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rules and rules[0]["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in {"AES256", "aws:kms"}
    assert "AccessControl" not in p  # no canned public ACL


def test_events_queue_fifo_with_dead_letter_queue(tpl: dict[str, Any]) -> None:
    q = props(tpl, "EventsQueue", "AWS::SQS::Queue")
    assert q["FifoQueue"] is True
    # Scheduler FIFO targets need content-based dedup; the intake still sets MessageDeduplicationId
    assert q["ContentBasedDeduplication"] is True
    assert q["SqsManagedSseEnabled"] is True
    events_timeout = fn_prop(tpl, "EventsFunction", "Timeout")
    assert q["VisibilityTimeout"] >= 6 * events_timeout
    redrive = q["RedrivePolicy"]
    assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": ["EventsDeadLetterQueue", "Arn"]}
    assert redrive["maxReceiveCount"] == 5
    dlq = props(tpl, "EventsDeadLetterQueue", "AWS::SQS::Queue")
    assert dlq["FifoQueue"] is True  # a FIFO queue's dead-letter queue must be FIFO too
    assert dlq["MessageRetentionPeriod"] == 14 * 24 * 3600
    assert dlq["SqsManagedSseEnabled"] is True


def test_secrets_are_generated_not_parameters(tpl: dict[str, Any]) -> None:
    for name in ("ApiKeySecret", "WebhookHmacKeySecret", "EnqueueApiKeySecret"):
        p = props(tpl, name, "AWS::SecretsManager::Secret")
        assert "GenerateSecretString" in p, f"{name} must be generated, never a template value"
        assert "SecretString" not in p
    assert "put-secret-value" in props(tpl, "EnqueueApiKeySecret")["Description"]
    for name, param in tpl["Parameters"].items():
        assert not param.get("NoEcho"), f"parameter {name} looks like a secret (NoEcho)"
        assert not re.search(r"secret|password|passwd|token|hmac|apikey|api_key", name, re.I), (
            f"parameter {name} looks like a secret: secrets live in Secrets Manager (design.md 4)"
        )
    # plain-value secret variables must not be set on AWS: only the *_SECRET ids
    plain = {"NANOCMD_API", "NANOCMD_ENQUEUE_API", "NANOCMD_WEBHOOK_HMAC_KEY"}
    env_sets = [tpl["Globals"]["Function"]["Environment"]["Variables"]]
    env_sets += [props(tpl, fn).get("Environment", {}).get("Variables", {}) for fn in FUNCTIONS]
    for env in env_sets:
        assert not plain & set(env), f"plain secret variables in the template: {plain & set(env)}"


# ---------------------------------------------------------------------------------------------- code


def _makefile_targets(code_uri: str) -> dict[str, str]:
    makefile = REPO / code_uri / "Makefile"
    assert makefile.is_file(), f"{makefile} (SAM's makefile build for CodeUri {code_uri}) is missing"
    targets: dict[str, str] = {}
    current = None
    for line in makefile.read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_-]+):", line)
        if m:
            current = m.group(1)
            targets[current] = ""
        elif current and line.startswith("\t"):
            targets[current] += line.strip() + "\n"
    return targets


def test_dependencies_layer(tpl: dict[str, Any]) -> None:
    layer = resource(tpl, "DependenciesLayer", "AWS::Serverless::LayerVersion")
    p = layer["Properties"]
    assert p["CompatibleRuntimes"] == ["python3.12"]
    assert p["CompatibleArchitectures"] == ["arm64"]
    assert layer["Metadata"]["BuildMethod"] == "makefile"
    assert "build-DependenciesLayer" in _makefile_targets(p["ContentUri"])


@pytest.mark.parametrize("logical_id", sorted(FUNCTIONS))
def test_function_runtime_and_build(tpl: dict[str, Any], logical_id: str) -> None:
    folder, memory, timeout = FUNCTIONS[logical_id]
    res = resource(tpl, logical_id, "AWS::Serverless::Function")
    assert fn_prop(tpl, logical_id, "Runtime") == "python3.12"
    assert fn_prop(tpl, logical_id, "Architectures") == ["arm64"]
    assert fn_prop(tpl, logical_id, "Handler") == "app.handler"
    assert fn_prop(tpl, logical_id, "Tracing") == "Active"
    assert {"Ref": "DependenciesLayer"} in fn_prop(tpl, logical_id, "Layers")
    assert fn_prop(tpl, logical_id, "MemorySize") == memory
    assert fn_prop(tpl, logical_id, "Timeout") == timeout
    assert res["Metadata"]["BuildMethod"] == "makefile"
    assert (REPO / "functions" / folder).is_dir()
    recipe = _makefile_targets(props(tpl, logical_id)["CodeUri"]).get(f"build-{logical_id}")
    assert recipe is not None, f"no build-{logical_id} target in the Makefile"
    assert f"function {folder} " in recipe, f"build-{logical_id} must build functions/{folder}: {recipe}"


def test_snapstart_where_it_pays(tpl: dict[str, Any]) -> None:
    """Issue 14 (README, "Cold starts"): the API, whose cold requests a person waits for, resumes
    from a snapshot of its published version, invoked through its alias; the webhook intake, the
    queue consumer and the scheduled sweep start on demand (a restore costs more than their init)."""
    api = props(tpl, "ApiFunction")
    assert api["SnapStart"] == {"ApplyOn": "PublishedVersions"}
    assert api["AutoPublishAlias"] == "live"
    for logical_id in ("WebhookFunction", "EventsFunction", "SweeperFunction"):
        assert fn_prop(tpl, logical_id, "SnapStart") is None


def _events(tpl: dict[str, Any], logical_id: str) -> dict[str, dict[str, Any]]:
    return props(tpl, logical_id)["Events"]


def _api_routes(tpl: dict[str, Any], logical_id: str) -> set[tuple[str, str]]:
    out = set()
    for ev in _events(tpl, logical_id).values():
        if ev["Type"] == "Api":
            assert ev["Properties"]["RestApiId"] == {"Ref": "RestApi"}
            out.add((ev["Properties"]["Path"], ev["Properties"]["Method"].upper()))
    return out


def test_api_routes(tpl: dict[str, Any]) -> None:
    assert _api_routes(tpl, "WebhookFunction") == {("/webhook", "ANY")}
    assert _api_routes(tpl, "ApiFunction") == {
        ("/version", "ANY"),
        ("/v1/{proxy+}", "ANY"),
        ("/inventory", "ANY"),
    }
    assert _api_routes(tpl, "EventsFunction") == set()
    assert _api_routes(tpl, "SweeperFunction") == set()


def test_events_function_reads_the_queue(tpl: dict[str, Any]) -> None:
    (ev,) = _events(tpl, "EventsFunction").values()
    assert ev["Type"] == "SQS"
    assert ev["Properties"]["Queue"] == {"Fn::GetAtt": ["EventsQueue", "Arn"]}
    assert ev["Properties"]["BatchSize"] == 10
    assert ev["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]


def test_mdm_server_load_is_bounded(tpl: dict[str, Any]) -> None:
    """Issue 12 item 6: the deployer bounds the engine's concurrent MDM-server requests. The bound
    is the SQS event source's MaximumConcurrency (past it Lambda reads no more messages: a fleet
    start waits in the queue); reserving concurrency is optional and then exactly that number,
    never less (reserved below the maximum throttles batches toward the dead-letter queue)."""
    p = tpl["Parameters"]
    assert p["MaxEventsConcurrency"] == {
        **p["MaxEventsConcurrency"],
        "Type": "Number",
        "Default": 10,
        "MinValue": 2,  # the event source's MaximumConcurrency range
        "MaxValue": 1000,
    }
    assert p["ReserveEventsConcurrency"]["Default"] == "false"  # needs the account's spare concurrency
    assert set(p["ReserveEventsConcurrency"]["AllowedValues"]) == {"true", "false"}
    assert p["ApiReservedConcurrency"] == {
        **p["ApiReservedConcurrency"],
        "Type": "Number",
        "Default": 0,
        "MinValue": 0,
    }

    (ev,) = _events(tpl, "EventsFunction").values()
    assert ev["Properties"]["ScalingConfig"] == {"MaximumConcurrency": {"Ref": "MaxEventsConcurrency"}}
    assert ev["Properties"]["BatchSize"] == 10  # one batch per invocation, its messages in series

    conditions = tpl["Conditions"]
    assert conditions["ReservesEventsConcurrency"] == {
        "Fn::Equals": [{"Ref": "ReserveEventsConcurrency"}, "true"]
    }
    assert fn_prop(tpl, "EventsFunction", "ReservedConcurrentExecutions") == {
        "Fn::If": ["ReservesEventsConcurrency", {"Ref": "MaxEventsConcurrency"}, {"Ref": "AWS::NoValue"}]
    }
    assert conditions["HasApiReservedConcurrency"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "ApiReservedConcurrency"}, "0"]}]
    }
    assert fn_prop(tpl, "ApiFunction", "ReservedConcurrentExecutions") == {
        "Fn::If": ["HasApiReservedConcurrency", {"Ref": "ApiReservedConcurrency"}, {"Ref": "AWS::NoValue"}]
    }
    # the intake and the sweeper are not bounded by these: NanoMDM's webhooks are always taken in
    for logical_id in ("WebhookFunction", "SweeperFunction"):
        assert fn_prop(tpl, logical_id, "ReservedConcurrentExecutions") is None
    assert "ReservedConcurrentExecutions" not in tpl["Globals"]["Function"]

    groups = tpl["Metadata"]["AWS::CloudFormation::Interface"]["ParameterGroups"]
    grouped = {name for g in groups for name in g["Parameters"]}
    assert {"MaxEventsConcurrency", "ReserveEventsConcurrency", "ApiReservedConcurrency"} <= grouped


def test_sweeper_schedule(tpl: dict[str, Any]) -> None:
    (ev,) = _events(tpl, "SweeperFunction").values()
    assert ev["Type"] == "ScheduleV2"
    expr = ev["Properties"]["ScheduleExpression"]
    assert expr == {"Fn::FindInMap": ["WorkerInterval", {"Ref": "WorkerIntervalMinutes"}, "Rate"]}
    param = tpl["Parameters"]["WorkerIntervalMinutes"]
    assert param["Type"] == "Number" and param["Default"] == 5
    mapping = tpl["Mappings"]["WorkerInterval"]
    assert {str(v) for v in param["AllowedValues"]} == set(mapping)
    for minutes, row in mapping.items():
        n = int(minutes)
        assert row["Rate"] == (f"rate({n} minute)" if n == 1 else f"rate({n} minutes)")
        assert row["Seconds"] == n * 60
    env = tpl["Globals"]["Function"]["Environment"]["Variables"]
    assert env["NANOCMD_WORKER_INTERVAL"] == {
        "Fn::FindInMap": ["WorkerInterval", {"Ref": "WorkerIntervalMinutes"}, "Seconds"]
    }


def test_rest_api(tpl: dict[str, Any]) -> None:
    p = props(tpl, "RestApi", "AWS::Serverless::Api")
    assert p["StageName"] == {"Ref": "StageName"}
    assert tpl["Parameters"]["StageName"]["Default"] == "prod"
    assert "*~1*" in p["BinaryMediaTypes"]  # "*/*": signed DER profiles and raw webhook bodies intact
    assert p["TracingEnabled"] is True
    (settings,) = p["MethodSettings"]
    assert settings["ResourcePath"] == "/*" and settings["HttpMethod"] == "*"
    assert "ThrottlingRateLimit" in settings and "ThrottlingBurstLimit" in settings


def test_schedule_group_and_scheduler_role(tpl: dict[str, Any]) -> None:
    resource(tpl, "ScheduleGroup", "AWS::Scheduler::ScheduleGroup")
    role = props(tpl, "SchedulerRole", "AWS::IAM::Role")
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "scheduler.amazonaws.com"}
    granted = set()
    for policy in role["Policies"]:
        for st in policy["PolicyDocument"]["Statement"]:
            for action in as_list(st["Action"]):
                for res in as_list(st["Resource"]):
                    granted |= {(action, r) for r in refs(res)}
    assert granted == {("sqs:SendMessage", "EventsQueue")}


def test_log_groups(tpl: dict[str, Any]) -> None:
    assert tpl["Parameters"]["LogRetentionDays"]["Default"] == 30
    for fn in FUNCTIONS:
        p = props(tpl, f"{fn}LogGroup", "AWS::Logs::LogGroup")
        assert p["LogGroupName"] == {"Fn::Sub": f"/aws/lambda/${{{fn}}}"}
        assert p["RetentionInDays"] == {"Ref": "LogRetentionDays"}


# ------------------------------------------------------------------------------------------------ IAM

DDB_RW = {
    "dynamodb:GetItem",
    "dynamodb:Query",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:ConditionCheckItem",
}
SCHEDULER = {"scheduler:CreateSchedule", "scheduler:DeleteSchedule", "scheduler:GetSchedule"}


@pytest.mark.parametrize("logical_id", sorted(FUNCTIONS))
def test_policies_are_scoped(tpl: dict[str, Any], logical_id: str) -> None:
    for st in statements(tpl, logical_id):
        if st["Effect"] == "Deny":
            continue  # a Deny only narrows what SAM's managed policies allow
        assert "NotResource" not in st and "NotAction" not in st, f"{logical_id}: Allow with Not*: {st}"
        for res in as_list(st["Resource"]):
            assert res != "*", f"{logical_id}: wildcard resource in {st}"
            assert refs(res) - {"AWS::Partition", "AWS::Region", "AWS::AccountId"}, (
                f"{logical_id}: resource not tied to a resource of this stack: {res!r}"
            )
        for action in as_list(st["Action"]):
            assert "*" not in action, f"{logical_id}: wildcard action {action}"
            assert action != "dynamodb:Scan", f"{logical_id}: no Scan (design.md section 2)"


def test_events_function_reads_only_the_events_queue(tpl: dict[str, Any]) -> None:
    """SAM adds AWSLambdaSQSQueueExecutionRole (any queue) for the SQS event; a Deny narrows it."""
    denies = [st for st in statements(tpl, "EventsFunction") if st["Effect"] == "Deny"]
    assert any(
        "sqs:ReceiveMessage" in as_list(st["Action"])
        and "sqs:DeleteMessage" in as_list(st["Action"])
        and st.get("NotResource") == {"Fn::GetAtt": ["EventsQueue", "Arn"]}
        for st in denies
    ), denies


def test_webhook_permissions(tpl: dict[str, Any]) -> None:
    g = grants(tpl, "WebhookFunction")
    assert ("sqs:SendMessage", "EventsQueue") in g
    assert ("secretsmanager:GetSecretValue", "WebhookHmacKeySecret") in g
    assert ("s3:PutObject", "BlobBucket") in g
    assert not {a for a, _ in g if a.startswith("dynamodb:")}, "the intake does not touch the table"
    assert {r for a, r in g if a == "secretsmanager:GetSecretValue"} == {"WebhookHmacKeySecret"}


@pytest.mark.parametrize("logical_id", ["ApiFunction", "EventsFunction", "SweeperFunction"])
def test_engine_permissions(tpl: dict[str, Any], logical_id: str) -> None:
    g = grants(tpl, logical_id)
    assert {(a, "Table") for a in DDB_RW} <= g
    index_res = [
        res
        for st in statements(tpl, logical_id)
        for res in as_list(st.get("Resource", []))
        if res == {"Fn::Sub": "${Table.Arn}/index/*"}
    ]
    assert index_res, f"{logical_id} needs Query on the table's indexes"
    assert {(a, "ScheduleGroup") for a in SCHEDULER} <= g
    assert ("iam:PassRole", "SchedulerRole") in g
    assert ("s3:GetObject", "BlobBucket") in g and ("s3:PutObject", "BlobBucket") in g
    secrets = {r for a, r in g if a == "secretsmanager:GetSecretValue"}
    expected = {"EnqueueApiKeySecret"} | ({"ApiKeySecret"} if logical_id == "ApiFunction" else set())
    assert secrets == expected


# ------------------------------------------------------------------------------ configuration, outputs

EXPECTED_ENV = {
    "NANOCMD_TABLE": {"Ref": "Table"},
    "NANOCMD_QUEUE_URL": {"Ref": "EventsQueue"},
    "NANOCMD_BUCKET": {"Ref": "BlobBucket"},
    "NANOCMD_ENQUEUE_URL": {"Ref": "EnqueueURL"},
    "NANOCMD_PUSH_URL": {"Ref": "PushURL"},
    "NANOCMD_MICROMDM": {"Ref": "MicroMDM"},
    "NANOCMD_STEP_TIMEOUT": {"Ref": "StepTimeout"},
    "NANOCMD_REPUSH_INTERVAL": {"Ref": "RepushInterval"},
    "NANOCMD_HISTORY_DAYS": {"Ref": "HistoryDays"},
    "NANOCMD_DEBUG": {"Ref": "Debug"},
    "NANOCMD_DUMP_WEBHOOK": {"Ref": "DumpWebhook"},
    "NANOCMD_API_SECRET": {"Ref": "ApiKeySecret"},
    "NANOCMD_ENQUEUE_API_SECRET": {"Ref": "EnqueueApiKeySecret"},
    "NANOCMD_WEBHOOK_HMAC_KEY_SECRET": {
        "Fn::If": ["RequireSignedWebhooks", {"Ref": "WebhookHmacKeySecret"}, ""]
    },
    "NANOCMD_SCHEDULE_GROUP": {"Ref": "ScheduleGroup"},
    "NANOCMD_SCHEDULER_ROLE_ARN": {"Fn::GetAtt": ["SchedulerRole", "Arn"]},
    "NANOCMD_SCHEDULE_TARGET_ARN": {"Fn::GetAtt": ["EventsQueue", "Arn"]},
    "NANOCMD_VERSION": {"Ref": "AppVersion"},
    "POWERTOOLS_SERVICE_NAME": "nanocmd",
    "POWERTOOLS_METRICS_NAMESPACE": "NanoCMD",
    "POWERTOOLS_LOG_LEVEL": {"Fn::If": ["IsDebug", "DEBUG", "INFO"]},
}


def test_function_environment(tpl: dict[str, Any]) -> None:
    env = tpl["Globals"]["Function"]["Environment"]["Variables"]
    for name, value in EXPECTED_ENV.items():
        assert env.get(name) == value, f"{name}: {env.get(name)!r} != {value!r}"
    assert "NANOCMD_WORKER_INTERVAL" in env


def test_parameters(tpl: dict[str, Any]) -> None:
    p = tpl["Parameters"]
    assert p["MicroMDM"]["Default"] == "false" and set(p["MicroMDM"]["AllowedValues"]) == {"true", "false"}
    assert p["StepTimeout"] == {**p["StepTimeout"], "Type": "Number", "Default": 259200}
    assert p["RepushInterval"] == {**p["RepushInterval"], "Type": "Number", "Default": 86400}
    assert p["HistoryDays"] == {**p["HistoryDays"], "Type": "Number", "Default": 30, "MinValue": 1}
    for name in ("Debug", "DumpWebhook"):
        assert set(p[name]["AllowedValues"]) == {"true", "false"} and p[name]["Default"] == "false"
    # the webhook signature is on unless turned off on purpose (MicroMDM cannot sign)
    assert p["SignedWebhooks"]["Default"] == "true"
    assert tpl["Conditions"]["RequireSignedWebhooks"] == {"Fn::Equals": [{"Ref": "SignedWebhooks"}, "true"]}
    for name in ("EnqueueURL", "PushURL"):  # the MDM client needs both: no default, asked at deploy
        assert p[name]["Type"] == "String" and "Default" not in p[name]
    for name in ("StageName", "LogRetentionDays"):
        assert name in p
    with (REPO / "pyproject.toml").open("rb") as fh:
        version = tomllib.load(fh)["project"]["version"]
    assert str(p["AppVersion"]["Default"]) == version, "AppVersion default should follow pyproject"


def test_outputs(tpl: dict[str, Any]) -> None:
    out = tpl["Outputs"]
    base = "https://${RestApi}.execute-api.${AWS::Region}.amazonaws.com/${StageName}"
    assert out["ApiUrl"]["Value"] == {"Fn::Sub": base}
    assert out["WebhookUrl"]["Value"] == {"Fn::Sub": base + "/webhook"}
    expected = {
        "TableName": "Table",
        "EventsQueueUrl": "EventsQueue",
        "DeadLetterQueueUrl": "EventsDeadLetterQueue",
        "ApiKeySecretArn": "ApiKeySecret",
        "WebhookHmacKeySecretArn": "WebhookHmacKeySecret",
        "EnqueueApiKeySecretArn": "EnqueueApiKeySecret",
        "BlobBucketName": "BlobBucket",
    }
    for name, ref in expected.items():
        assert out[name]["Value"] == {"Ref": ref}, name


# ------------------------------------------------------------------------------------ layer pins, lint


def _pins() -> dict[str, str]:
    from packaging.utils import canonicalize_name

    pins: dict[str, str] = {}
    for line in CONSTRAINTS.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep, f"layer-constraints.txt: pin exact versions with ==: {line!r}"
            pins[canonicalize_name(name)] = version.strip()
    return pins


def test_every_dependency_is_pinned_for_the_layer() -> None:
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    with (REPO / "pyproject.toml").open("rb") as fh:
        deps = tomllib.load(fh)["project"]["dependencies"]
    pins = _pins()
    for dep in deps:
        req = Requirement(dep)
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is a dependency but not pinned in {CONSTRAINTS.name}"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"{CONSTRAINTS.name} pins {req.name}=={pins[name]}, outside pyproject's {req.specifier}"
        )


def _cfn_lint() -> str:
    beside = Path(sys.executable).with_name("cfn-lint")
    found = str(beside) if beside.exists() else shutil.which("cfn-lint")
    assert found, "cfn-lint is a dev dependency (pip install -e .[dev])"
    return found


def test_cfn_lint_is_clean() -> None:
    proc = subprocess.run([_cfn_lint(), "--", str(TEMPLATE)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"cfn-lint found problems:\n{proc.stdout}\n{proc.stderr}"
    assert proc.stdout.strip() == ""


def test_no_dangling_refs(tpl: dict[str, Any]) -> None:
    known = (
        set(tpl["Resources"])
        | set(tpl["Parameters"])
        | {
            "AWS::Region",
            "AWS::AccountId",
            "AWS::Partition",
            "AWS::StackName",
            "AWS::NoValue",
            "AWS::URLSuffix",
        }
    )

    def walk(value: Any) -> Iterator[str]:
        yield from refs(value)

    for section in ("Resources", "Outputs", "Globals"):
        missing = set(walk(tpl[section])) - known
        assert not missing, f"{section} refers to unknown ids: {missing}"
