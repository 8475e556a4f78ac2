"""In-memory stand-ins for what a workflow is given (enqueuer, inventory, profiles), for tests
of a workflow's own decisions; storage itself is tested on DynamoDB Local."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from nanocmd_core.subsystems.profile.store import ProfileInfo, ProfileNotFoundError
from nanocmd_core.workflow import StepEnqueueing


class Enqueued:
    """The engine as a workflow sees it: records every step enqueued, with its workflow."""

    def __init__(self) -> None:
        self.steps: list[tuple[str, StepEnqueueing]] = []

    def enqueue_step(self, workflow_name: str, step: StepEnqueueing) -> None:
        self.steps.append((workflow_name, step))


class MemoryInventory:
    """The inventory store over a dict; ``fail`` makes writes raise, ``fail_reads`` reads."""

    def __init__(self) -> None:
        self.records: dict[str, dict[str, Any]] = {}
        self.fail: Exception | None = None
        self.fail_reads: Exception | None = None

    def retrieve(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        if self.fail_reads:
            raise self.fail_reads
        return {i: self.records[i] for i in ids if i in self.records}

    def store(self, enrollment_id: str, values: Mapping[str, Any]) -> None:
        if self.fail:
            raise self.fail
        self.records.setdefault(enrollment_id, {}).update(values)

    def delete(self, enrollment_id: str) -> None:
        self.records.pop(enrollment_id, None)


class MemoryProfiles:
    """The profile store over a dict of raw profiles by name (identifier and UUID are the name:
    not parsed here); ``reads`` lists the names read."""

    def __init__(self, **profiles: bytes) -> None:
        self.raw = dict(profiles)
        self.reads: list[str] = []

    def store(self, name: str, raw: bytes) -> ProfileInfo:
        self.raw[name] = raw
        return ProfileInfo(identifier=name, uuid=name)

    def retrieve_raw(self, name: str) -> bytes:
        self.reads.append(name)
        try:
            return self.raw[name]
        except KeyError:
            raise ProfileNotFoundError(name) from None

    def retrieve_infos(self, names: Sequence[str]) -> dict[str, ProfileInfo]:
        return {n: ProfileInfo(identifier=n, uuid=n) for n in names if n in self.raw}

    def list_infos(self) -> dict[str, ProfileInfo]:
        return self.retrieve_infos(list(self.raw))

    def delete(self, name: str) -> None:
        self.raw.pop(name, None)
