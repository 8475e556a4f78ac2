"""Command-plan storage (subsystems.md §6): a named bundle of profiles, app manifests and a
DeviceConfigured flag, stored as JSON under one DynamoDB key per plan name.

The plan JSON keeps Go's omission rules (empty lists and an absent ``device_configured`` are not
written; a stored ``false`` is kept), so what GET returns is what the Go server would return.
"""

# Real annotations (no ``from __future__ import annotations``): pydantic would otherwise evaluate
# every annotation string when it creates a model class, at import (issue 14: cold starts).
import json
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, model_validator
from pynamodb.attributes import UnicodeAttribute

from nanocmd_core.storage.models import TableItem, TableMeta

PK_PREFIX = "CMDPLAN#"
SK = "CMDPLAN"

# DynamoDB allows 2048 bytes of partition key and 400 KB per item; refuse early with a clear
# message instead of surfacing a ValidationException as a 500.
MAX_NAME_BYTES = 1024
MAX_PLAN_BYTES = 350_000


class GoJSONModel(BaseModel):
    """A model decoded the way Go's ``encoding/json`` decodes into a struct, so scripts written
    for the Go server keep working: keys match field names case-insensitively (later keys win),
    unknown keys are ignored, ``null`` resets a nullable field and leaves any other field alone,
    a top-level ``null`` is all defaults, and types are strict (no ``"true"`` for a bool)."""

    model_config = ConfigDict(strict=True, extra="ignore", defer_build=True)

    @model_validator(mode="before")
    @classmethod
    def _go_keys(cls, data: Any) -> Any:
        if data is None:
            return {}
        if not isinstance(data, dict):
            return data  # pydantic reports the type error
        fields = {name.casefold(): name for name in cls.model_fields}
        out: dict[str, Any] = {}
        for key, value in data.items():
            name = fields.get(str(key).casefold())
            if name is None:
                continue
            if value is None:
                if cls.model_fields[name].default is None:
                    out[name] = None  # a Go slice, map or pointer becomes nil
                continue  # a Go bool, string or number keeps its value
            out[name] = value
        return out


class CommandPlan(GoJSONModel):
    """What the cmdplan workflow sends (subsystems.md §6.1)."""

    profile_names: list[str] | None = None
    manifest_urls: list[str] | None = None
    device_configured: bool | None = None

    def to_json(self) -> dict[str, Any]:
        """The stored and served shape: empty lists and an unset flag are omitted."""
        doc: dict[str, Any] = {}
        if self.profile_names:
            doc["profile_names"] = list(self.profile_names)
        if self.manifest_urls:
            doc["manifest_urls"] = list(self.manifest_urls)
        if self.device_configured is not None:
            doc["device_configured"] = self.device_configured
        return doc


class CommandPlanNotFoundError(KeyError):
    """No plan stored under the name; the text is Go's (``key not found: <name>``)."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name

    def __str__(self) -> str:
        return f"key not found: {self.name}"


class CommandPlanInvalidError(ValueError):
    """The name or plan cannot be stored (too large for a DynamoDB item or key)."""


class CommandPlanStore(Protocol):
    def retrieve(self, name: str) -> CommandPlan:
        """The stored plan (CommandPlanNotFoundError)."""
        ...

    def store(self, name: str, plan: CommandPlan) -> None:
        """Create or replace (CommandPlanInvalidError when it cannot be stored)."""
        ...

    def delete(self, name: str) -> None:
        """Missing is not an error."""
        ...


def encode_plan(name: str, plan: CommandPlan) -> str:
    """The plan's JSON text, after checking it fits the table's limits."""
    if len(name.encode()) > MAX_NAME_BYTES:
        raise CommandPlanInvalidError(f"command plan name longer than {MAX_NAME_BYTES} bytes")
    text = json.dumps(plan.to_json(), separators=(",", ":"))
    if len(text.encode()) > MAX_PLAN_BYTES:
        raise CommandPlanInvalidError(f"command plan larger than {MAX_PLAN_BYTES} bytes")
    return text


class CommandPlanItem(TableItem):
    """``CMDPLAN#<name>`` / ``CMDPLAN``: one plan's JSON (a key lookup, never a scan)."""

    Meta = TableMeta
    plan = UnicodeAttribute()


class DynamoCommandPlanStore:
    """Plans in the shared table; reads are strongly consistent so a plan PUT just before a
    start (a common script pattern) is the one the workflow reads."""

    def retrieve(self, name: str) -> CommandPlan:
        try:
            item = CommandPlanItem.get(PK_PREFIX + name, SK, consistent_read=True)
        except CommandPlanItem.DoesNotExist:
            raise CommandPlanNotFoundError(name) from None
        return CommandPlan.model_validate_json(item.plan)

    def store(self, name: str, plan: CommandPlan) -> None:
        CommandPlanItem(PK_PREFIX + name, SK, plan=encode_plan(name, plan)).save()

    def delete(self, name: str) -> None:
        CommandPlanItem(PK_PREFIX + name, SK).delete()


class MemoryCommandPlanStore:
    """In-process plans (Go's ``inmem`` backend), for tests and local experiments."""

    def __init__(self) -> None:
        self._plans: dict[str, str] = {}

    def retrieve(self, name: str) -> CommandPlan:
        try:
            return CommandPlan.model_validate_json(self._plans[name])
        except KeyError:
            raise CommandPlanNotFoundError(name) from None

    def store(self, name: str, plan: CommandPlan) -> None:
        self._plans[name] = encode_plan(name, plan)

    def delete(self, name: str) -> None:
        self._plans.pop(name, None)
