"""The composition root: builds the engine, stores and workflows from settings, once per
process (Lambda reuses it across warm invocations). Only the functions call this."""

from __future__ import annotations

from dataclasses import dataclass

from nanocmd_core.aws.blobs import S3BlobStore
from nanocmd_core.aws.queue import SQSEventQueue
from nanocmd_core.aws.scheduler import EventBridgeStepScheduler, StepScheduler
from nanocmd_core.config import Settings
from nanocmd_core.engine.engine import Engine
from nanocmd_core.engine.subscriptions import CachedSubscriptions, SubscriptionStore
from nanocmd_core.mdmserver.client import HTTPMDMServerClient, MDMServerClient
from nanocmd_core.observability import Telemetry
from nanocmd_core.plugins import WorkflowDeps, WorkflowSource, plugin_workflows
from nanocmd_core.storage.engine_store import DynamoEngineStore
from nanocmd_core.storage.instance_store import DynamoInstanceStore
from nanocmd_core.storage.models import bind_table
from nanocmd_core.storage.subscription_store import DynamoSubscriptionStore
from nanocmd_core.subsystems.cmdplan.storage import CommandPlanStore, DynamoCommandPlanStore
from nanocmd_core.subsystems.filevault import DynamoKeyPairStore, FileVault, InventoryPRKStore
from nanocmd_core.subsystems.inventory.storage import DynamoInventoryStore, InventoryStore
from nanocmd_core.subsystems.profile.storage import DynamoProfileStore
from nanocmd_core.subsystems.profile.store import ProfileStore
from nanocmd_core.workflow.workflow import Workflow
from nanocmd_core.workflows.certprof import CertProfWorkflow
from nanocmd_core.workflows.cmdplan import CommandPlanWorkflow
from nanocmd_core.workflows.devinfolog import DeviceInfoLogWorkflow
from nanocmd_core.workflows.fvenable import FileVaultEnableWorkflow
from nanocmd_core.workflows.fvrotate import FileVaultRotateWorkflow
from nanocmd_core.workflows.inventory import InventoryWorkflow
from nanocmd_core.workflows.lock import LockWorkflow
from nanocmd_core.workflows.profile import ProfileWorkflow


@dataclass
class App:
    """What a function works with: the engine and the subsystem stores, built once per process."""

    settings: Settings
    engine: Engine
    inventory: InventoryStore
    subscriptions: SubscriptionStore
    profiles: ProfileStore
    cmdplans: CommandPlanStore
    filevault: FileVault


def builtin_workflows(
    engine: Engine,
    inventory: InventoryStore,
    profiles: ProfileStore,
    cmdplans: CommandPlanStore,
    filevault: FileVault,
) -> list[Workflow]:
    """The built-in workflows in the Go server's registration order."""
    return [
        InventoryWorkflow(engine, inventory),
        ProfileWorkflow(engine, profiles),
        FileVaultEnableWorkflow(engine, profiles, filevault),
        FileVaultRotateWorkflow(engine, filevault),
        CommandPlanWorkflow(engine, cmdplans, profiles),
        LockWorkflow(engine, inventory),
        CertProfWorkflow(engine, profiles),
        DeviceInfoLogWorkflow(engine),
    ]


def step_scheduler(settings: Settings) -> StepScheduler | None:
    """One-time schedules for delayed steps when configured; without them the sweep sends them."""
    if settings.schedule_group and settings.scheduler_role_arn and settings.schedule_target_arn:
        return EventBridgeStepScheduler(
            settings.schedule_group, settings.scheduler_role_arn, settings.schedule_target_arn
        )
    return None


def build_app(
    settings: Settings,
    mdm: MDMServerClient | None = None,
    plugins: list[WorkflowSource] | None = None,
    telemetry: Telemetry | None = None,
) -> App:
    """Everything a function needs. ``plugins`` overrides the discovery of extra workflows
    (entry points and ``NANOCMD_WORKFLOWS``), for tests."""
    bind_table(settings.table_name)
    subscriptions = DynamoSubscriptionStore()
    engine = Engine(
        DynamoEngineStore(),
        mdm if mdm is not None else HTTPMDMServerClient.from_settings(settings),
        step_timeout=settings.step_timeout,
        repush_interval=settings.repush_interval,
        push_per_step=settings.push_per_step,
        scheduler=step_scheduler(settings),
        instances=DynamoInstanceStore(settings.history_days),
        start_queue=SQSEventQueue(settings.queue_url) if settings.queue_url else None,
        subscriptions=CachedSubscriptions(subscriptions),
        telemetry=telemetry,
    )
    inventory = DynamoInventoryStore()
    profiles = DynamoProfileStore(S3BlobStore(settings.bucket) if settings.bucket else None)
    cmdplans = DynamoCommandPlanStore()
    filevault = FileVault(DynamoKeyPairStore(), InventoryPRKStore(inventory))
    for workflow in builtin_workflows(engine, inventory, profiles, cmdplans, filevault):
        engine.register(workflow)
    stores = {"profiles": profiles, "cmdplans": cmdplans, "filevault": filevault}
    deps = WorkflowDeps(enqueuer=engine, settings=settings, inventory=inventory, stores=stores)
    for workflow in plugin_workflows(deps, plugins):
        engine.register(workflow)  # a clash with a built-in name raises here, at start-up
    return App(
        settings=settings,
        engine=engine,
        inventory=inventory,
        subscriptions=subscriptions,
        profiles=profiles,
        cmdplans=cmdplans,
        filevault=filevault,
    )
