"""One DynamoDB client per process: every table model uses it (a client per model class would cost
a cold Lambda about 100 ms of CPU for each model its first event touches)."""

from __future__ import annotations

from typing import Any

from pynamodb.models import Model

from nanocmd_core.aws.clients import aws_client, user_agent
from nanocmd_core.storage import models
from nanocmd_core.subsystems.cmdplan.storage import CommandPlanItem
from nanocmd_core.subsystems.filevault.storage import FileVaultKeyItem
from nanocmd_core.subsystems.profile.storage import ProfileItem


def test_every_table_model_uses_the_process_dynamodb_client(table_name: str) -> None:
    models.bind_table(table_name)
    classes: list[type[Model]] = [
        *models.ALL_MODELS,
        models.PartitionEntry,
        models.EventSubscriptionItem,
        CommandPlanItem,
        FileVaultKeyItem,
        ProfileItem,
    ]
    shared = aws_client("dynamodb")
    for cls in classes:
        assert cls._get_connection().connection.client is shared, cls.__name__
    # and it works for all of them: a write and a read through two different models
    models.WorkflowStart(models.enrollment_pk("X"), models.START + "wf", started_at=1).save()
    assert [i.sk for i in models.PartitionEntry.query(models.enrollment_pk("X"))] == [models.START + "wf"]


def test_clients_send_the_products_user_agent(table_name: str) -> None:
    seen: list[str] = []

    def capture(request: Any, **_: Any) -> None:
        agent = request.headers["User-Agent"]
        seen.append(agent.decode() if isinstance(agent, bytes) else agent)

    client = aws_client("dynamodb")
    client.meta.events.register("before-send.dynamodb", capture)
    try:
        client.describe_table(TableName=table_name)
    finally:
        client.meta.events.unregister("before-send.dynamodb", capture)
    assert seen and seen[0].startswith(user_agent())
