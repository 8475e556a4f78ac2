"""What ``make run`` keeps across a restart beyond what its servers keep themselves.

DynamoDB Local (``-dbPath``) and fauxqs (queue and blobs in SQLite and files) keep their own state
under the data directory. moto's server, which stands in for EventBridge Scheduler, keeps nothing:
the one-time schedules that send delayed steps would be lost with it, so the stack writes them to
``schedules.json`` when it stops and creates them again when it starts (the sweep would find an
overdue delayed step anyway, but only at its next run). Secrets and parameters come from the
environment at every start, so they need nothing here.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import boto3

log = logging.getLogger(__name__)

SCHEDULES_FILE = "schedules.json"

#: what create_schedule takes back from a get_schedule answer
_SCHEDULE_FIELDS = (
    "Name",
    "GroupName",
    "ScheduleExpression",
    "ScheduleExpressionTimezone",
    "FlexibleTimeWindow",
    "Target",
    "ActionAfterCompletion",
    "State",
    "Description",
    "StartDate",
    "EndDate",
)


def save_schedules(group: str, data_dir: Path) -> int:
    """Write the group's schedules to ``data_dir/schedules.json``; returns how many."""
    scheduler = boto3.client("scheduler")
    kept: list[dict[str, Any]] = []
    for page in scheduler.get_paginator("list_schedules").paginate(GroupName=group):
        for item in page.get("Schedules", []):
            with contextlib.suppress(scheduler.exceptions.ResourceNotFoundException):
                sched: dict[str, Any] = dict(scheduler.get_schedule(GroupName=group, Name=item["Name"]))
                kept.append({k: sched[k] for k in _SCHEDULE_FIELDS if k in sched})
    path = data_dir / SCHEDULES_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(kept, default=str, indent=1))
    tmp.replace(path)  # a stop cut short leaves the previous file, never half of one
    return len(kept)


def restore_schedules(group: str, data_dir: Path) -> int:
    """Create the schedules saved by :func:`save_schedules` again; returns how many."""
    path = data_dir / SCHEDULES_FILE
    if not path.exists():
        return 0
    scheduler = boto3.client("scheduler")
    restored = 0
    for sched in json.loads(path.read_text()):
        sched["GroupName"] = group
        try:
            scheduler.create_schedule(**sched)
        except scheduler.exceptions.ConflictException:
            continue  # already there (a server that kept it)
        except Exception as exc:  # one bad entry must not stop the stack; the sweep is the safety net
            log.warning("could not restore schedule %s: %s", sched.get("Name"), exc)
            continue
        restored += 1
    return restored


def wipe(data_dir: Path) -> None:
    """Start from a clean slate: everything the stack kept goes."""
    if data_dir.exists():
        shutil.rmtree(data_dir)
