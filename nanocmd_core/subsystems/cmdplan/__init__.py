"""Command-plan subsystem (subsystems.md §6): named plans the cmdplan workflow sends."""

from nanocmd_core.subsystems.cmdplan.storage import (
    CommandPlan,
    CommandPlanInvalidError,
    CommandPlanNotFoundError,
    CommandPlanStore,
    DynamoCommandPlanStore,
    MemoryCommandPlanStore,
)

__all__ = [
    "CommandPlan",
    "CommandPlanInvalidError",
    "CommandPlanNotFoundError",
    "CommandPlanStore",
    "DynamoCommandPlanStore",
    "MemoryCommandPlanStore",
]
