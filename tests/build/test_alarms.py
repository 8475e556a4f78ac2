"""template.yaml makes NanoCMD operable (issue 5 item 7): alarms on what an admin must hear about,
all notifying one topic, and a retention on every log group."""

from __future__ import annotations

from typing import Any

from tests.build.test_template import load_template, refs

FUNCTIONS = ("WebhookFunction", "EventsFunction", "ApiFunction", "SweeperFunction")


def alarms(tpl: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: r["Properties"] for k, r in tpl["Resources"].items() if r["Type"] == "AWS::CloudWatch::Alarm"}


def watched(tpl: dict[str, Any], namespace: str, metric: str) -> list[set[str]]:
    """The resources referenced by the dimensions of alarms on ``namespace``/``metric``."""
    return [
        refs(p.get("Dimensions"))
        for p in alarms(tpl).values()
        if p["Namespace"] == namespace and p["MetricName"] == metric
    ]


def test_every_function_has_error_and_throttle_alarms() -> None:
    tpl = load_template()
    for metric in ("Errors", "Throttles"):
        covered = set().union(*watched(tpl, "AWS/Lambda", metric))
        assert covered >= set(FUNCTIONS), metric


def test_dead_letters_api_5xx_and_dynamodb_throttles_alarm() -> None:
    tpl = load_template()
    assert {"EventsDeadLetterQueue"} in watched(tpl, "AWS/SQS", "ApproximateNumberOfMessagesVisible")
    assert watched(tpl, "AWS/ApiGateway", "5XXError")
    for metric in ("ReadThrottleEvents", "WriteThrottleEvents"):
        assert {"Table"} in watched(tpl, "AWS/DynamoDB", metric)


def test_every_alarm_notifies_the_alarm_topic_and_every_log_group_has_a_retention() -> None:
    tpl = load_template()
    for name, p in alarms(tpl).items():
        assert refs(p.get("AlarmActions")) == {"AlarmTopic"}, name
    groups = {k: r["Properties"] for k, r in tpl["Resources"].items() if r["Type"] == "AWS::Logs::LogGroup"}
    assert groups and all("RetentionInDays" in p for p in groups.values())
    named = [refs(p.get("LogGroupName")) & set(FUNCTIONS) for p in groups.values()]
    log_groups_of_functions = {next(iter(r)) for r in named if r}
    assert log_groups_of_functions == set(FUNCTIONS)
