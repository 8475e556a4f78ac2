"""Create the resources of template.yaml in the local servers, so the two cannot drift.

Each AWS::DynamoDB::Table, AWS::SQS::Queue, AWS::S3::Bucket, AWS::SecretsManager::Secret,
AWS::SSM::Parameter and AWS::Scheduler::ScheduleGroup of the template is created from its own
properties (keys, GSIs, TTL, FIFO, redrive policy ...). Physical names carry a per-run prefix, so
tests can create isolated copies side by side; resources kept from an earlier run under the same
prefix (``make run``'s data directory) are taken over as they are. The functions' environment is
then computed from the template's own ``Environment.Variables`` (Globals and per function),
evaluated against those names, with the contract's defaults for anything the template does not say.

Secrets. Locally the user gives ``NANOCMD_API``, ``NANOCMD_ENQUEUE_API`` and
``NANOCMD_WEBHOOK_HMAC_KEY`` as plain variables, as with the Go NanoCMD. The stack stores each in its
Secrets Manager secret and hands the functions only the ``*_SECRET`` ARN, exactly as on AWS, so the
secret-reading path runs locally too; the plain value is not passed on. A variable left unset leaves
its ``*_SECRET`` out as well, which switches the feature off as in the Go original (no API key: no
management API; no HMAC key: webhook not signed).
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3

from infra.local.services import ACCOUNT_ID, REGION
from infra.local.template import (
    FUNCTION_TYPES,
    Resolver,
    Template,
    Unresolvable,
    as_str,
    closure,
    dependency_order,
    parse_json_if_str,
    resource_enabled,
)

log = logging.getLogger(__name__)

#: secret logical id -> (plain variable the user sets locally, variable carrying the ARN)
SECRET_VARS: dict[str, tuple[str, str]] = {
    "ApiKeySecret": ("NANOCMD_API", "NANOCMD_API_SECRET"),
    "EnqueueApiKeySecret": ("NANOCMD_ENQUEUE_API", "NANOCMD_ENQUEUE_API_SECRET"),
    "WebhookHmacKeySecret": ("NANOCMD_WEBHOOK_HMAC_KEY", "NANOCMD_WEBHOOK_HMAC_KEY_SECRET"),
}

#: variable -> (logical id, attribute or None for Ref): the contract's defaults
RESOURCE_VARS: dict[str, tuple[str, str | None]] = {
    "NANOCMD_TABLE": ("Table", None),
    "NANOCMD_QUEUE_URL": ("EventsQueue", None),
    "NANOCMD_BUCKET": ("BlobBucket", None),
    "NANOCMD_SCHEDULE_GROUP": ("ScheduleGroup", None),
    "NANOCMD_SCHEDULE_TARGET_ARN": ("EventsQueue", "Arn"),
}

#: variables the stack owns: a developer's shell value for them never overrides the stack's
STACK_OWNED = frozenset(
    {*RESOURCE_VARS, "NANOCMD_SCHEDULER_ROLE_ARN", *(arn_var for _, arn_var in SECRET_VARS.values())}
)

#: A minimal template with the contract's resources: used by the infra tests, and by the test
#: fixtures only while template.yaml does not exist yet.
CONTRACT_TEMPLATE = """\
AWSTemplateFormatVersion: '2010-09-09'
Transform: AWS::Serverless-2016-10-31
Parameters:
  StepTimeout:
    Type: Number
    Default: 259200
Globals:
  Function:
    Runtime: python3.11
    Timeout: 30
    MemorySize: 256
    Environment:
      Variables:
        NANOCMD_TABLE: !Ref Table
        NANOCMD_QUEUE_URL: !Ref EventsQueue
        NANOCMD_BUCKET: !Ref BlobBucket
        NANOCMD_STEP_TIMEOUT: !Ref StepTimeout
        NANOCMD_API_SECRET: !Ref ApiKeySecret
        NANOCMD_ENQUEUE_API_SECRET: !Ref EnqueueApiKeySecret
        NANOCMD_WEBHOOK_HMAC_KEY_SECRET: !Ref WebhookHmacKeySecret
        NANOCMD_SCHEDULE_GROUP: !Ref ScheduleGroup
        NANOCMD_SCHEDULE_TARGET_ARN: !GetAtt EventsQueue.Arn
        NANOCMD_SCHEDULER_ROLE_ARN: !GetAtt SchedulerRole.Arn
Resources:
  Table:
    Type: AWS::DynamoDB::Table
    Properties:
      BillingMode: PAY_PER_REQUEST
      AttributeDefinitions:
        - {AttributeName: pk, AttributeType: S}
        - {AttributeName: sk, AttributeType: S}
        - {AttributeName: gsi1pk, AttributeType: S}
        - {AttributeName: gsi1sk, AttributeType: N}
        - {AttributeName: gsi2pk, AttributeType: S}
        - {AttributeName: gsi2sk, AttributeType: N}
      KeySchema:
        - {AttributeName: pk, KeyType: HASH}
        - {AttributeName: sk, KeyType: RANGE}
      GlobalSecondaryIndexes:
        - IndexName: gsi1
          KeySchema:
            - {AttributeName: gsi1pk, KeyType: HASH}
            - {AttributeName: gsi1sk, KeyType: RANGE}
          Projection: {ProjectionType: KEYS_ONLY}
        - IndexName: gsi2
          KeySchema:
            - {AttributeName: gsi2pk, KeyType: HASH}
            - {AttributeName: gsi2sk, KeyType: RANGE}
          Projection: {ProjectionType: KEYS_ONLY}
      TimeToLiveSpecification: {AttributeName: ttl, Enabled: true}
  EventsQueue:
    Type: AWS::SQS::Queue
    Properties:
      FifoQueue: true
      ContentBasedDeduplication: true
      VisibilityTimeout: 180
      RedrivePolicy:
        deadLetterTargetArn: !GetAtt EventsDeadLetterQueue.Arn
        maxReceiveCount: 5
  EventsDeadLetterQueue:
    Type: AWS::SQS::Queue
    Properties:
      FifoQueue: true
      MessageRetentionPeriod: 1209600
  BlobBucket:
    Type: AWS::S3::Bucket
  ApiKeySecret:
    Type: AWS::SecretsManager::Secret
    Properties:
      GenerateSecretString: {PasswordLength: 32, ExcludePunctuation: true}
  EnqueueApiKeySecret:
    Type: AWS::SecretsManager::Secret
  WebhookHmacKeySecret:
    Type: AWS::SecretsManager::Secret
  ScheduleGroup:
    Type: AWS::Scheduler::ScheduleGroup
  SchedulerRole:
    Type: AWS::IAM::Role
    Properties:
      AssumeRolePolicyDocument:
        Statement:
          - Effect: Allow
            Principal: {Service: scheduler.amazonaws.com}
            Action: sts:AssumeRole
  WebhookFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/webhook/
      Handler: app.handler
      Events:
        Webhook: {Type: Api, Properties: {Path: /webhook, Method: POST}}
  ApiFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/api/
      Handler: app.handler
      Events:
        Version: {Type: Api, Properties: {Path: /version, Method: GET}}
        Inventory: {Type: Api, Properties: {Path: /inventory, Method: ANY}}
        V1: {Type: Api, Properties: {Path: '/v1/{proxy+}', Method: ANY}}
  EventsFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/events/
      Handler: app.handler
      Events:
        Queue:
          Type: SQS
          Properties:
            Queue: !GetAtt EventsQueue.Arn
            BatchSize: 10
            FunctionResponseTypes: [ReportBatchItemFailures]
  SweeperFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/sweeper/
      Handler: app.handler
"""


def write_contract_template(path: Path) -> Path:
    path.write_text(CONTRACT_TEMPLATE, encoding="utf-8")
    return path


def _name(prefix: str, logical_id: str, max_len: int, allowed: str = r"A-Za-z0-9_-") -> str:
    name = re.sub(rf"[^{allowed}]", "-", f"{prefix}-{logical_id}")
    return name[:max_len]


def bucket_name(prefix: str, logical_id: str) -> str:
    """S3 names: lower case, digits, dashes; 3-63 characters."""
    name = re.sub(r"[^a-z0-9-]", "-", f"{prefix}-{logical_id}".lower()).strip("-")
    return name[:63].rstrip("-")


def _arn(service: str, resource: str) -> str:
    return f"arn:aws:{service}:{REGION}:{ACCOUNT_ID}:{resource}"


@dataclass
class Provisioned:
    """One local instance of the template's resources."""

    prefix: str
    template: Template
    resolver: Resolver
    env: dict[str, str] = field(default_factory=dict)
    created: list[tuple[str, str]] = field(default_factory=list)  # (type, logical id), creation order
    secret_values: dict[str, str] = field(default_factory=dict, repr=False)  # logical id -> value

    def ref(self, logical_id: str) -> str:
        return str(self.resolver.refs[logical_id])

    def attr(self, logical_id: str, attribute: str) -> str:
        return str(self.resolver.attrs[(logical_id, attribute)])

    def delete(self) -> None:
        """Delete what was created, newest first; keeps going past individual failures."""
        for rtype, logical_id in reversed(self.created):
            deleter = _DELETERS.get(rtype)
            if deleter is None:
                continue
            try:
                deleter(self, logical_id)
            except Exception as exc:  # a cleanup path: report and go on
                log.warning("could not delete %s %s: %s", rtype, logical_id, exc)
        self.created.clear()


# -- creation per resource type ------------------------------------------------------------------


def _create_table(p: Provisioned, logical_id: str, props: dict[str, Any]) -> None:
    ddb = boto3.client("dynamodb")
    name = _name(p.prefix, logical_id, 255, r"A-Za-z0-9_.-")
    kwargs: dict[str, Any] = {
        "TableName": name,
        "AttributeDefinitions": props["AttributeDefinitions"],
        "KeySchema": props["KeySchema"],
    }
    pay_per_request = props.get("BillingMode") == "PAY_PER_REQUEST"
    if pay_per_request:
        kwargs["BillingMode"] = "PAY_PER_REQUEST"
    else:
        kwargs["ProvisionedThroughput"] = props.get(
            "ProvisionedThroughput", {"ReadCapacityUnits": 5, "WriteCapacityUnits": 5}
        )
    gsis = []
    for gsi in props.get("GlobalSecondaryIndexes") or []:
        g = {k: gsi[k] for k in ("IndexName", "KeySchema", "Projection") if k in gsi}
        if not pay_per_request:
            g["ProvisionedThroughput"] = gsi.get(
                "ProvisionedThroughput", {"ReadCapacityUnits": 5, "WriteCapacityUnits": 5}
            )
        gsis.append(g)
    if gsis:
        kwargs["GlobalSecondaryIndexes"] = gsis
    lsis = [
        {k: lsi[k] for k in ("IndexName", "KeySchema", "Projection") if k in lsi}
        for lsi in props.get("LocalSecondaryIndexes") or []
    ]
    if lsis:
        kwargs["LocalSecondaryIndexes"] = lsis
    stream = props.get("StreamSpecification")
    if stream and stream.get("StreamViewType"):
        kwargs["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": stream["StreamViewType"]}
    # DeletionProtectionEnabled, SSE, PITR, tags, contributor insights: no local meaning, left out
    desc: dict[str, Any]
    try:
        desc = dict(ddb.create_table(**kwargs)["TableDescription"])
    except ddb.exceptions.ResourceInUseException:
        desc = _adopt_table(ddb, kwargs)
    else:
        _enable_ttl(ddb, name, props)
    r = p.resolver
    r.refs[logical_id] = name
    r.attrs[(logical_id, "Arn")] = desc.get("TableArn") or _arn("dynamodb", f"table/{name}")
    if desc.get("LatestStreamArn"):
        r.attrs[(logical_id, "StreamArn")] = desc["LatestStreamArn"]


class SchemaDrift(RuntimeError):
    """A kept table no longer has the template's keys or indexes."""


def _adopt_table(ddb: Any, wanted: dict[str, Any]) -> dict[str, Any]:
    """A table kept from an earlier run (``make run`` keeps its data): reuse it when its keys and
    indexes are still the template's, else say how to start from a clean slate."""
    desc: dict[str, Any] = ddb.describe_table(TableName=wanted["TableName"])["Table"]

    def shape(d: dict[str, Any]) -> tuple[Any, ...]:
        gsis = sorted((g["IndexName"], str(g["KeySchema"])) for g in d.get("GlobalSecondaryIndexes") or [])
        return str(d["KeySchema"]), tuple(gsis)

    if shape(desc) != shape(wanted):
        raise SchemaDrift(
            f"the kept table {wanted['TableName']} has other keys or indexes than template.yaml;"
            " start from a clean slate (make run FRESH=1) to recreate it"
        )
    log.info("reusing the kept table %s (%s items)", wanted["TableName"], desc.get("ItemCount", "?"))
    return desc


def _enable_ttl(ddb: Any, name: str, props: dict[str, Any]) -> None:
    ttl = props.get("TimeToLiveSpecification")
    if ttl and ttl.get("Enabled") in (True, "true", "True") and ttl.get("AttributeName"):
        ddb.update_time_to_live(
            TableName=name,
            TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": True},
        )


def _delete_table(p: Provisioned, logical_id: str) -> None:
    boto3.client("dynamodb").delete_table(TableName=p.ref(logical_id))


_SQS_ATTRIBUTES = (
    "ContentBasedDeduplication",
    "DeduplicationScope",
    "DelaySeconds",
    "FifoQueue",
    "FifoThroughputLimit",
    "MaximumMessageSize",
    "MessageRetentionPeriod",
    "ReceiveMessageWaitTimeSeconds",
    "VisibilityTimeout",
)


def _create_queue(p: Provisioned, logical_id: str, props: dict[str, Any]) -> None:
    sqs = boto3.client("sqs")
    attributes: dict[Any, str] = {k: as_str(props[k]) for k in _SQS_ATTRIBUTES if k in props}
    fifo = attributes.get("FifoQueue") == "true"
    for policy in ("RedrivePolicy", "RedriveAllowPolicy"):
        if policy in props:
            attributes[policy] = json.dumps(parse_json_if_str(props[policy]))
    name = _name(p.prefix, logical_id, 75 if fifo else 80) + (".fifo" if fifo else "")
    try:
        url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    except sqs.exceptions.QueueNameExists:
        # kept from an earlier run with other settings: take the template's (FifoQueue cannot change)
        url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
        changeable = {k: v for k, v in attributes.items() if k != "FifoQueue"}
        if changeable:
            sqs.set_queue_attributes(QueueUrl=url, Attributes=changeable)
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    r = p.resolver
    r.refs[logical_id] = url
    r.attrs[(logical_id, "Arn")] = arn
    r.attrs[(logical_id, "QueueUrl")] = url
    r.attrs[(logical_id, "QueueName")] = name


def _delete_queue(p: Provisioned, logical_id: str) -> None:
    boto3.client("sqs").delete_queue(QueueUrl=p.ref(logical_id))


def _create_bucket(p: Provisioned, logical_id: str, props: dict[str, Any]) -> None:
    name = bucket_name(p.prefix, logical_id)
    s3 = boto3.client("s3")
    with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
        s3.create_bucket(Bucket=name)
    r = p.resolver
    r.refs[logical_id] = name
    r.attrs[(logical_id, "Arn")] = f"arn:aws:s3:::{name}"
    r.attrs[(logical_id, "DomainName")] = f"{name}.s3.amazonaws.com"
    r.attrs[(logical_id, "RegionalDomainName")] = f"{name}.s3.{REGION}.amazonaws.com"


def _delete_bucket(p: Provisioned, logical_id: str) -> None:
    s3 = boto3.client("s3")
    name = p.ref(logical_id)
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=name):
        objects: list[Any] = [
            {"Key": o["Key"], "VersionId": o["VersionId"]}
            for o in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]
        ]
        if objects:
            s3.delete_objects(Bucket=name, Delete={"Objects": objects})
    s3.delete_bucket(Bucket=name)


def _create_secret(p: Provisioned, logical_id: str, props: dict[str, Any]) -> None:
    value = p.secret_values.get(logical_id)
    if value is None:
        literal = props.get("SecretString")
        # what CloudFormation would store: the literal, else a generated value
        value = literal if isinstance(literal, str) else secrets.token_urlsafe(24)
    name = _name(p.prefix, logical_id, 512, r"A-Za-z0-9/_+=.@-")
    sm = boto3.client("secretsmanager")
    try:
        arn = sm.create_secret(Name=name, SecretString=value)["ARN"]
    except sm.exceptions.ResourceExistsException:
        arn = sm.put_secret_value(SecretId=name, SecretString=value)["ARN"]
    p.resolver.refs[logical_id] = arn
    p.resolver.attrs[(logical_id, "Id")] = arn


def _delete_secret(p: Provisioned, logical_id: str) -> None:
    boto3.client("secretsmanager").delete_secret(SecretId=p.ref(logical_id), ForceDeleteWithoutRecovery=True)


def _create_parameter(p: Provisioned, logical_id: str, props: dict[str, Any]) -> None:
    name = "/" + _name(p.prefix, logical_id, 1000, r"A-Za-z0-9_.-").replace("-", "/", 1)
    boto3.client("ssm").put_parameter(
        Name=name, Value=str(props.get("Value", "")), Type=str(props.get("Type", "String")), Overwrite=True
    )
    p.resolver.refs[logical_id] = name
    p.resolver.attrs[(logical_id, "Type")] = str(props.get("Type", "String"))
    p.resolver.attrs[(logical_id, "Value")] = str(props.get("Value", ""))


def _delete_parameter(p: Provisioned, logical_id: str) -> None:
    boto3.client("ssm").delete_parameter(Name=p.ref(logical_id))


def _create_schedule_group(p: Provisioned, logical_id: str, props: dict[str, Any]) -> None:
    name = _name(p.prefix, logical_id, 64, r"A-Za-z0-9_.-")
    scheduler = boto3.client("scheduler")
    try:
        arn = scheduler.create_schedule_group(Name=name)["ScheduleGroupArn"]
    except scheduler.exceptions.ConflictException:
        arn = scheduler.get_schedule_group(Name=name)["Arn"]
    p.resolver.refs[logical_id] = name
    p.resolver.attrs[(logical_id, "Arn")] = arn


def _delete_schedule_group(p: Provisioned, logical_id: str) -> None:
    boto3.client("scheduler").delete_schedule_group(Name=p.ref(logical_id))


_CREATORS: dict[str, Callable[[Provisioned, str, dict[str, Any]], None]] = {
    "AWS::DynamoDB::Table": _create_table,
    "AWS::SQS::Queue": _create_queue,
    "AWS::S3::Bucket": _create_bucket,
    "AWS::SecretsManager::Secret": _create_secret,
    "AWS::SSM::Parameter": _create_parameter,
    "AWS::Scheduler::ScheduleGroup": _create_schedule_group,
}
_DELETERS: dict[str, Callable[[Provisioned, str], None]] = {
    "AWS::DynamoDB::Table": _delete_table,
    "AWS::SQS::Queue": _delete_queue,
    "AWS::S3::Bucket": _delete_bucket,
    "AWS::SecretsManager::Secret": _delete_secret,
    "AWS::SSM::Parameter": _delete_parameter,
    "AWS::Scheduler::ScheduleGroup": _delete_schedule_group,
}

#: resource types the local stack creates
CREATED_TYPES = frozenset(_CREATORS)


def _placeholder_refs(p: Provisioned) -> None:
    """What Ref/GetAtt give for resources that are not created locally (roles, functions, APIs)."""
    r = p.resolver
    for logical_id, res in p.template.resources.items():
        rtype = res.get("Type", "")
        if rtype in CREATED_TYPES:
            continue
        if rtype == "AWS::IAM::Role":
            name = _name(p.prefix, logical_id, 64, r"A-Za-z0-9+=,.@_-")
            r.refs[logical_id] = name
            r.attrs[(logical_id, "Arn")] = f"arn:aws:iam::{ACCOUNT_ID}:role/{name}"
        elif rtype in FUNCTION_TYPES:
            name = _name(p.prefix, logical_id, 64)
            r.refs[logical_id] = name
            r.attrs[(logical_id, "Arn")] = _arn("lambda", f"function:{name}")
        elif rtype in ("AWS::Serverless::Api", "AWS::ApiGateway::RestApi"):
            r.refs[logical_id] = "local"
            r.attrs[(logical_id, "RootResourceId")] = "local"
        else:
            r.refs[logical_id] = _name(p.prefix, logical_id, 128)


def _scheduler_role_arn(p: Provisioned) -> str:
    """The role a template lets EventBridge Scheduler assume, else a dummy (moto does not check it)."""
    for logical_id, res in p.template.of_type("AWS::IAM::Role"):
        doc = json.dumps((res.get("Properties") or {}).get("AssumeRolePolicyDocument") or {})
        if "scheduler.amazonaws.com" in doc:
            return p.attr(logical_id, "Arn")
    return f"arn:aws:iam::{ACCOUNT_ID}:role/{p.prefix}-scheduler"


def _function_env(p: Provisioned, unresolved: dict[str, str]) -> dict[str, str]:
    """The union of every function's template environment, evaluated locally.

    The local gateway runs all handlers in one process, so they share one environment; a variable
    given different values by two functions keeps the last one (logged). Variables that cannot be
    evaluated (a parameter without default, say) are collected in ``unresolved``.
    """
    env: dict[str, str] = {}
    for logical_id, _ in p.template.of_type(*FUNCTION_TYPES):
        for key, raw in p.template.function_environment(logical_id).items():
            try:
                value = p.resolver.resolve(raw)
            except (Unresolvable, KeyError, IndexError, TypeError, ValueError) as exc:
                unresolved[key] = str(exc)
                continue
            if value is None:
                continue
            text = as_str(value)
            if key in env and env[key] != text:
                log.info("%s: %s=%r overrides %r from another function", logical_id, key, text, env[key])
            env[key] = text
    return env


def provision(
    template: Template | Path | str,
    prefix: str,
    env_values: Mapping[str, str] | None = None,
    *,
    parameter_overrides: Mapping[str, Any] | None = None,
    only: Iterable[str] | None = None,
) -> Provisioned:
    """Create the template's resources under ``prefix`` and compute the functions' NANOCMD_* env.

    ``env_values`` are the developer's NANOCMD_* settings (usually os.environ); ``only`` limits the
    creation to some logical ids (and what they refer to), e.g. just ``Table`` for a storage test.
    boto3 finds the local servers through the AWS_ENDPOINT_URL_* variables already set.
    """
    tpl = template if isinstance(template, Template) else Template.load(template)
    values = dict(env_values or {})
    params = {**tpl.parameter_defaults(), **dict(parameter_overrides or {})}
    resolver = Resolver(tpl, parameters=params, stack_name=prefix)
    p = Provisioned(prefix=prefix, template=tpl, resolver=resolver)
    p.secret_values = {
        logical_id: values[plain] for logical_id, (plain, _) in SECRET_VARS.items() if values.get(plain)
    }
    _placeholder_refs(p)

    to_create = [lid for lid, res in tpl.resources.items() if res.get("Type") in CREATED_TYPES]
    if only is not None:
        needed = closure(tpl, only)
        to_create = [lid for lid in to_create if lid in needed]
    try:
        for logical_id in dependency_order(tpl, to_create):
            if not resource_enabled(tpl, resolver, logical_id):
                continue
            res = tpl.resources[logical_id]
            props = resolver.resolve(res.get("Properties") or {})
            _CREATORS[res["Type"]](p, logical_id, props)
            p.created.append((res["Type"], logical_id))
    except BaseException:
        p.delete()
        raise

    p.env = _build_env(p, values, partial=only is not None)
    return p


def _build_env(p: Provisioned, values: Mapping[str, str], partial: bool) -> dict[str, str]:
    created = {lid for _, lid in p.created}
    env: dict[str, str] = {}
    # 1. the contract's defaults, for what the template's environment does not say
    for var, (logical_id, attribute) in RESOURCE_VARS.items():
        if logical_id in created:
            env[var] = p.ref(logical_id) if attribute is None else p.attr(logical_id, attribute)
    env["NANOCMD_SCHEDULER_ROLE_ARN"] = _scheduler_role_arn(p)
    # 2. the template's own function environment
    unresolved: dict[str, str] = {}
    env.update(_function_env(p, unresolved))
    # references to resources this instance did not create (``only``) mean nothing here
    for var, (logical_id, _) in RESOURCE_VARS.items():
        if logical_id in p.template.resources and logical_id not in created:
            env.pop(var, None)
    # 3. secrets: the ARN when the developer gave a value, else the feature stays off
    for logical_id, (plain, arn_var) in SECRET_VARS.items():
        env.pop(plain, None)
        if logical_id in created and values.get(plain):
            env[arn_var] = p.ref(logical_id)
        else:
            env.pop(arn_var, None)
    # 4. the developer's other NANOCMD_* settings (MDM URLs, intervals, debug ...) win
    plain_secrets = {plain for plain, _ in SECRET_VARS.values()}
    for key, value in values.items():
        if key.startswith("NANOCMD_") and key not in STACK_OWNED and key not in plain_secrets:
            env[key] = value
    for key, reason in sorted(unresolved.items()):
        # a partial instance (``only``) lacks most resources by design: no warning then
        if key not in env and key not in STACK_OWNED and not partial:
            log.warning(
                "%s is not set for the functions: the template says %s; set it in the environment",
                key,
                reason,
            )
    return dict(sorted(env.items()))


def create_resources(
    template_path: Path | str, prefix: str, env_values: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Create the template's resources under ``prefix``; returns the NANOCMD_* env for the functions."""
    return provision(template_path, prefix, env_values).env
