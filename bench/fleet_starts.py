"""Fleet starts (issue 12 item 4), measured on the ``make run`` stack over HTTP: one
``POST /v1/workflow/io.micromdm.wf.inventory.v1/start`` with a JSON body of N ids (1,000, 10,000,
100,000), which answers 202 at once; the ids then go through the events queue in chunks
(``nanocmd_core/engine/fleet_start.py``), started by the stack's events consumers.

For each size: seconds until the 202 (target < 1 s at 10,000), seconds until every id has its two
commands at the MDM server (target ≤ 60 s at 10,000) and ids/s, and the DynamoDB calls and units
per id of the whole start (the API's and every chunk's) beside a floor derived from the design.
The DynamoDB side is counted inside the stack's own processes (``bench/ddb_tally.py``: a
``sitecustomize`` hook on their ``PYTHONPATH`` running ``bench/recorder.py``'s counter), so the
figures are what the stack spent, not a re-run. The devices stay silent: the start path alone.

Checked, not just timed: the instance's ``counts.started`` equals N (nothing skipped, failed or
pending), and every id got exactly one DeviceInformation and one SecurityInfo at the MDM server.

The MDM server is ``tests/fakes/mdm_server.py``'s NanoMDM fake in this process, with a counter of
its own that notes when the last id got its commands (no polling of the stack while it works).
``python -m bench.fleet_starts --sizes 1000,10000``; 100,000 ids is listed as skipped unless
asked for (``--full``, or named in ``--sizes``): see :data:`FULL_SIZE_NOTE`.
"""

from __future__ import annotations

import argparse
import json
import plistlib
import secrets
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench import ddb_tally
from bench.ddb_tally import Totals
from bench.nanomdm import INVENTORY, Admin, KeepAlive, stack_settings
from infra.local.event_source import DEFAULT_CONCURRENCY
from infra.local.stack_process import StackProcess
from nanocmd_core.config import Settings
from nanocmd_core.engine.fleet_start import CHUNK_IDS
from nanocmd_core.storage.lock_store import LOCK_TRANSACTION_ITEMS
from tests.fakes.mdm_server import FakeMDMServer

SIZES = (1_000, 10_000, 100_000)
QUICK_SIZES = (1_000,)
QUICK_LIMIT = 10_000
"""Larger sizes run only when asked (``full``): see :data:`FULL_SIZE_NOTE`."""
TARGET_ACCEPT_S = {10_000: 1.0}
TARGET_COMMANDS_S = {10_000: 60.0}
COMMANDS = ("DeviceInformation", "SecurityInfo")  # the inventory workflow's one step
WARMUP_IDS = 4 * CHUNK_IDS  # a chunk for each of the stack's 4 events consumers
BATCH_ITEMS = 25  # BatchWriteItem
HANDED_BACK = "start chunk handed back"  # functions/events/app.py's log line
FULL_SIZE_NOTE = (
    "DynamoDB Local writes on one core and a started id is six items: 220-260 ids/s on a 2-core AMD"
    " EPYC (2026-12-02), so 100,000 ids take about 7.5 minutes; make bench runs it, and so do --full"
    " or naming the size in --sizes here."
)


# --- the MDM server ----------------------------------------------------------------------------


class CountingMDM(FakeMDMServer):
    """The NanoMDM fake, counting as commands arrive how many of the expected ids have all of
    theirs, and when the last one did."""

    def __init__(self) -> None:
        super().__init__()
        self._count_lock = threading.Lock()
        self._wanted: dict[str, set[str]] = {}
        self._left = 0
        self.all_in = threading.Event()
        self.all_in_at = 0.0  # perf_counter when the last expected id got its last command
        self.first_at = 0.0  # perf_counter of the first enqueue for an expected id
        self.done_at: list[float] = []  # perf_counter when each expected id had all its commands

    def expect(self, ids: Sequence[str], commands: Sequence[str] = COMMANDS) -> None:
        with self._count_lock:
            self._wanted = {i: set(commands) for i in ids}
            self._left = len(self._wanted)
            self.all_in.clear()
            self.all_in_at = self.first_at = 0.0
            self.done_at = []

    def _handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Any:
        answer = super()._handle(method, target, headers, body)
        if answer.queued_ids and self._left:
            try:
                request_type = str(plistlib.loads(body)["Command"]["RequestType"])
            except Exception:
                return answer
            now = time.perf_counter()
            with self._count_lock:
                for i in answer.queued_ids:
                    wanted = self._wanted.get(i)
                    if wanted is None:
                        continue
                    if not self.first_at:
                        self.first_at = now
                    if request_type in wanted:
                        wanted.discard(request_type)
                        if not wanted:
                            self.done_at.append(now)
                            self._left -= 1
                            if not self._left:
                                self.all_in_at = now
                                self.all_in.set()
        return answer


# --- results -----------------------------------------------------------------------------------


def floor_per_id(ids: int, chunk: int = CHUNK_IDS, commands: int = len(COMMANDS)) -> dict[str, Any]:
    """The fewest DynamoDB calls and units per id the design allows for an asynchronous start.

    Per id: the conditional lock Put, 100 to a TransactWriteItems (2 WCU an item, the
    transaction's price; storage/lock_store.py); 25 to a BatchWriteItem, the ``in_flight``
    outcome, the step target, one record per command and the start record (1 WCU each, all under
    1 KB), plus the step target's two KEYS_ONLY index entries (timeout ``gsi1``, re-push ``gsi2``:
    1 WCU each). No SC-3 lookup of the command records: the inventory workflow's commands draw
    their own UUIDs, which no step can hold yet (engine/fresh_uuids.py). Per chunk: the GetItem
    of the instance (consistent, 1 RCU) and the UpdateItem of its counts (1 WCU). Per start: the
    instance's PutItem (1 WCU and its two index entries)."""
    chunks = -(-ids // chunk)
    items = 1 + 1 + commands + 1
    calls = {
        "TransactWriteItems": sum(
            -(-min(chunk, ids - k) // LOCK_TRANSACTION_ITEMS) for k in range(0, ids, chunk)
        )
        / ids,
        "PutItem": 1 / ids,
        "BatchWriteItem": items / BATCH_ITEMS,
        "GetItem": chunks / ids,
        "UpdateItem": chunks / ids,
    }
    return {
        "calls": calls,
        "total_calls": sum(calls.values()),
        "rcu": chunks / ids,
        "wcu": 2 + items + 2 + chunks / ids + 3 / ids,
    }


@dataclass
class SizeResult:
    ids: int
    where: str = "stack"  # "stack", or "skipped" (see ``note``)
    note: str = ""
    status: int = 0  # the start's HTTP status (202 expected)
    accept_s: float = 0.0  # POST sent -> 202 read
    commands_s: float = 0.0  # POST sent -> the last id's last command at the MDM server
    first_command_s: float = 0.0  # POST sent -> the first command at the MDM server
    median_id_s: float = 0.0  # POST sent -> half the ids had their commands
    by_target: int = 0  # ids with their commands within TARGET_COMMANDS_S (or 60 s) of the POST
    settled_s: float = 0.0  # POST sent -> the events queue empty (every chunk counted)
    chunks: int = 0
    handed_back: int = 0  # chunk deliveries handed back for too little time left (stack log)
    counts: dict[str, int] = field(default_factory=dict)
    done_ids: int = 0  # ids with exactly one of each command
    missing_ids: int = 0  # ids without all of their commands
    duplicate_ids: int = 0  # ids with a command more than once (or one not asked for)
    dead_letters: int = 0
    dynamodb: Totals = field(default_factory=Totals)
    errors: list[str] = field(default_factory=list)

    @property
    def ids_per_second(self) -> float:
        return self.ids / self.commands_s if self.commands_s else 0.0

    @property
    def correct(self) -> bool:
        c = self.counts
        return (
            self.status == 202
            and c.get("started") == self.ids
            and not c.get("skipped")
            and not c.get("failed")
            and not c.get("pending")
            and self.done_ids == self.ids
            and not self.missing_ids
            and not self.duplicate_ids
            and not self.dead_letters
            and not self.errors
        )

    @property
    def within_targets(self) -> bool | None:
        accept, commands = TARGET_ACCEPT_S.get(self.ids), TARGET_COMMANDS_S.get(self.ids)
        if accept is None and commands is None:
            return None
        in_time = commands is None or (self.done_ids == self.ids and self.commands_s <= commands)
        return (accept is None or self.accept_s < accept) and in_time

    def per_id(self) -> dict[str, Any]:
        d, n = self.dynamodb, self.ids
        return {
            "calls": {op: k / n for op, k in sorted(d.calls.items())},
            "total_calls": d.total_calls / n,
            "rcu": d.rcu / n,
            "rcu_aws": d.rcu_aws / n,
            "wcu": d.wcu / n,
        }

    def to_json(self) -> dict[str, Any]:
        if self.where == "skipped":
            return {"ids": self.ids, "where": self.where, "note": self.note}
        doc = asdict(self)
        doc["dynamodb"] = self.dynamodb.to_json()
        per, floor = self.per_id(), floor_per_id(self.ids)
        doc.update(
            ids_per_second=round(self.ids_per_second, 1),
            correct=self.correct,
            within_targets=self.within_targets,
            targets={
                "accept_s": TARGET_ACCEPT_S.get(self.ids),
                "commands_s": TARGET_COMMANDS_S.get(self.ids),
            },
            dynamodb_per_id=_rounded(per),
            floor_per_id=_rounded(floor),
        )
        doc["errors"] = self.errors[:20]
        return doc


def _rounded(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: _rounded(v) if isinstance(v, dict) else round(v, 4) for k, v in doc.items()}


@dataclass
class FleetStartsResult:
    sizes: list[SizeResult] = field(default_factory=list)
    consumers: int = DEFAULT_CONCURRENCY
    chunk_ids: int = CHUNK_IDS

    def to_json(self) -> dict[str, Any]:
        return {
            "consumers": self.consumers,
            "chunk_ids": self.chunk_ids,
            "sizes": [s.to_json() for s in self.sizes],
        }


# --- the run -----------------------------------------------------------------------------------


def run(
    sizes: Sequence[int] = SIZES,
    *,
    full: bool = False,
    consumers: int | None = None,
    sync_start_max: int | None = None,
    warmup: int | None = None,
    timeout: float | None = None,
    progress: Callable[[str], None] | None = None,
) -> FleetStartsResult:
    """One stack for every size (fresh ids each), after an unreported warm-up start.

    Sizes over :data:`QUICK_LIMIT` are skipped (listed, with why) unless ``full``. ``consumers``:
    the stack's events consumers (``--events-concurrency``; default make run's 4);
    ``sync_start_max`` sets its ``NANOCMD_SYNC_START_MAX`` (a smoke test's small sizes must still
    go through the queue); ``warmup``: ids of the unreported first start (default a chunk per
    consumer; always more than ``sync_start_max``); ``timeout`` bounds each size (default 120 s +
    50 ms an id, enough for chunks handed back to come round after the queue's 180 s visibility
    timeout)."""
    say = progress or (lambda _m: None)
    api_key = secrets.token_hex(16)
    result = FleetStartsResult(consumers=consumers or DEFAULT_CONCURRENCY)
    wanted = [n for n in sizes if full or n <= QUICK_LIMIT]
    if not wanted:
        result.sizes = [skipped(n) for n in sizes]
        return result
    mdm = CountingMDM()
    with (
        tempfile.TemporaryDirectory(prefix="nanocmd-bench-") as data,
        tempfile.TemporaryDirectory(prefix="nanocmd-ddb-tally-") as tally_dir,
        mdm,
    ):
        tally = Path(tally_dir)
        settings = {**stack_settings(mdm, api_key, secrets.token_hex(16)), **ddb_tally.stack_env(tally)}
        if sync_start_max is not None:
            settings["NANOCMD_SYNC_START_MAX"] = str(sync_start_max)
        args = ["--events-concurrency", str(consumers)] if consumers else []
        with StackProcess(settings, data_dir=Path(data), args=args) as stack:
            say(f"fleet starts: stack {stack.prefix} on {stack.base_url} (log {stack.log_path})")
            admin = Admin(stack.base_url, api_key)
            sync_max = sync_start_max if sync_start_max is not None else Settings.from_env({}).sync_start_max
            warm = max(warmup if warmup is not None else WARMUP_IDS, sync_max + 1)
            _warm_up(stack, mdm, admin, warm, say)
            if not any(tally.glob("*.json")):
                raise RuntimeError("the stack's processes counted no DynamoDB call: the hook is not loaded")
            for n in sizes:
                if n not in wanted:
                    result.sizes.append(skipped(n))
                    continue
                say(f"fleet starts: {n:,} ids")
                r = one(stack, mdm, admin, tally, n, timeout if timeout is not None else 120.0 + 0.05 * n)
                say(
                    f"fleet starts: {n:,} ids: 202 in {r.accept_s:.2f}s, commands in {r.commands_s:.1f}s"
                    f" ({r.ids_per_second:.0f} ids/s)" + ("" if r.correct else f"; NOT correct: {_why(r)}")
                )
                result.sizes.append(r)
    return result


def skipped(n: int, note: str = "") -> SizeResult:
    return SizeResult(ids=n, where="skipped", note=note or f"{n:,} ids: skipped. {FULL_SIZE_NOTE}")


def _warm_up(stack: StackProcess, mdm: CountingMDM, admin: Admin, n: int, say: Callable[[str], None]) -> None:
    """A first asynchronous start: the consumers' and gateway workers' clients, caches, first calls."""
    say(f"fleet starts: warm-up, {n} ids")
    # both gateway workers: a connection each from a few threads (the API handler's first call)
    threads = [threading.Thread(target=_probe, args=(stack.base_url, admin.headers)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ids = [f"WARM-{i:05d}" for i in range(n)]
    mdm.expect(ids)
    status, body = _post_start(admin, ids)
    if status != 202:
        raise RuntimeError(f"warm-up start answered {status}: {body!r}"[:500])
    if not mdm.all_in.wait(300):
        raise RuntimeError("warm-up start: the commands did not all reach the MDM server in 300 s")
    stack.wait_drained(timeout=60)


def _probe(base_url: str, headers: dict[str, str]) -> None:
    http = KeepAlive(base_url)
    http.request("GET", "/v1/instance/warm-up", None, headers)
    http.close()


def _post_start(admin: Admin, ids: Sequence[str]) -> tuple[int, bytes]:
    body = json.dumps({"ids": list(ids)}, separators=(",", ":")).encode()
    headers = {**admin.headers, "Content-Type": "application/json"}
    return admin.http.request("POST", f"/v1/workflow/{INVENTORY}/start", body, headers)


def one(stack: StackProcess, mdm: CountingMDM, admin: Admin, tally: Path, n: int, limit: float) -> SizeResult:
    """One start of ``n`` fresh ids: timed from the POST, then counted and checked."""
    r = SizeResult(ids=n, chunks=-(-n // CHUNK_IDS))
    ids = [f"FS{n}-{i:06d}" for i in range(n)]
    before = ddb_tally.settled(tally)
    handed_back = stack.output().count(HANDED_BACK)
    mdm.expect(ids)
    body = json.dumps({"ids": ids}, separators=(",", ":")).encode()  # outside the clock
    headers = {**admin.headers, "Content-Type": "application/json"}
    t0 = time.perf_counter()
    r.status, data = admin.http.request("POST", f"/v1/workflow/{INVENTORY}/start", body, headers)
    r.accept_s = time.perf_counter() - t0
    answer: Any = _json(data)
    if r.status != 202 or not isinstance(answer, dict) or "instance_id" not in answer:
        r.errors.append(f"start answered {r.status}: {str(answer)[:300]}")
        return r
    if mdm.all_in.wait(max(0.0, t0 + limit - time.perf_counter())):
        r.commands_s = mdm.all_in_at - t0
    else:
        r.errors.append(f"not every id had its commands within {limit:.0f} s")
        r.commands_s = time.perf_counter() - t0
    done = sorted(t - t0 for t in mdm.done_at)
    r.first_command_s = (mdm.first_at - t0) if mdm.first_at else 0.0
    r.median_id_s = done[len(done) // 2] if len(done) * 2 >= n else 0.0
    r.by_target = sum(1 for t in done if t <= TARGET_COMMANDS_S.get(n, 60.0))
    drained, _ = stack.wait_drained(timeout=max(30.0, t0 + limit - time.perf_counter()), interval=0.05)
    r.settled_s = time.perf_counter() - t0
    if not drained:
        r.errors.append("the events queue was not empty at the time limit")
    r.dead_letters = stack.queue_depths()[1]
    r.dynamodb = ddb_tally.settled(tally) - before  # before the status read below, which costs too
    r.handed_back = stack.output().count(HANDED_BACK) - handed_back
    status, doc = admin.http.request("GET", str(answer.get("status_url")), None, admin.headers)
    inst = _json(doc)
    if status == 200 and isinstance(inst, dict):
        r.counts = {k: int(v) for k, v in dict(inst.get("counts") or {}).items()}
    else:
        r.errors.append(f"GET {answer.get('status_url')} answered {status}")
    _check_commands(mdm, ids, r)
    return r


def _check_commands(mdm: FakeMDMServer, ids: Sequence[str], r: SizeResult) -> None:
    """Exactly one DeviceInformation and one SecurityInfo per id, from the fake's own queues."""
    want = Counter(COMMANDS)
    for i in ids:
        got = Counter(str(c.get("Command", {}).get("RequestType")) for c in mdm.commands_for(i))
        if got == want:
            r.done_ids += 1
        elif any(got[k] > 1 for k in got) or set(got) - set(want):
            r.duplicate_ids += 1
        else:
            r.missing_ids += 1


def _json(data: bytes) -> Any:
    try:
        return json.loads(data) if data else None
    except ValueError:
        return data[:300].decode(errors="replace")


def _why(r: SizeResult) -> str:
    problems = list(r.errors)
    if r.counts.get("started") != r.ids:
        problems.append(f"counts {r.counts}")
    if r.missing_ids or r.duplicate_ids:
        problems.append(f"{r.missing_ids} ids missing commands, {r.duplicate_ids} with duplicates")
    if r.dead_letters:
        problems.append(f"{r.dead_letters} dead-lettered")
    return "; ".join(problems) or "?"


# --- the table ---------------------------------------------------------------------------------


def render(result: FleetStartsResult) -> tuple[list[str], list[list[Any]], list[str]]:
    headers = [
        "ids",
        "202 (s)",
        "target",
        "all commands at MDM (s)",
        "target",
        "ids in 60 s",
        "ids/s",
        "hand-backs",
        "DynamoDB calls/id",
        "floor",
        "RCU/id Local",
        "RCU/id AWS",
        "floor",
        "WCU/id",
        "floor",
        "correct",
    ]
    rows: list[list[Any]] = []
    notes: list[str] = []
    for r in result.sizes:
        if r.where == "skipped":
            rows.append([r.ids, *[None] * (len(headers) - 2), "skipped"])
            notes.append(r.note)
            continue
        per, floor = r.per_id(), floor_per_id(r.ids)
        accept, commands = TARGET_ACCEPT_S.get(r.ids), TARGET_COMMANDS_S.get(r.ids)
        star = "*" if r.dynamodb.estimated else ""
        rows.append(
            [
                r.ids,
                round(r.accept_s, 3),
                f"< {accept:g}" if accept else None,
                round(r.commands_s, 1) if r.done_ids == r.ids else f"> {r.commands_s:.0f}",
                f"≤ {commands:g}" if commands else None,
                r.by_target,
                round(r.ids_per_second, 1),
                r.handed_back,
                round(per["total_calls"], 3),
                round(floor["total_calls"], 3),
                round(per["rcu"], 3),
                round(per["rcu_aws"], 3),
                round(floor["rcu"], 3),
                f"{per['wcu']:.3f}{star}",
                round(floor["wcu"], 3),
                "yes" if r.correct else "NO",
            ]
        )
    measured = [r for r in result.sizes if r.where != "skipped"]
    if measured:
        big = max(measured, key=lambda r: r.ids)
        per, floor = big.per_id(), floor_per_id(big.ids)
        ops = sorted(set(per["calls"]) | set(floor["calls"]))
        by_op = (f"{op} {per['calls'].get(op, 0.0):.3f} ({floor['calls'].get(op, 0.0):.3f})" for op in ops)
        notes.append(f"Calls per id by operation at {big.ids:,} ids (floor): " + ", ".join(by_op))
    for r in measured:
        verdict = r.within_targets
        line = (
            f"{r.ids:,} ids: first command at the MDM server after {r.first_command_s:.2f} s, half the ids"
            f" by {r.median_id_s:.1f} s; every chunk counted (queue empty) after {r.settled_s:.1f} s;"
            f" counts.started {r.counts.get('started')}"
        )
        if verdict is not None:
            line += f"; targets {'met' if verdict else 'NOT met'}"
        notes.append(line + ".")
        if not r.correct:
            notes.append(f"{r.ids:,} ids NOT correct: {_why(r)}")
    if any(r.handed_back for r in measured):
        notes.append(
            "hand-backs: a consumer takes up to 10 chunks a batch and hands back those it has no time"
            " left for (functions/events/app.py: under CHUNK_TIME_MS of the 30 s), visible again at once"
            " for the next consumer."
        )
    notes += [
        f"The make run stack (durable data directory, {result.consumers} events consumers) over HTTP: one"
        f" POST of a JSON body of ids, answered 202; chunks of {result.chunk_ids} ids through the events"
        " queue; devices silent. ids/s = ids / (POST -> the last id's last command at the MDM server).",
        "DynamoDB: every call of every stack process from the POST to the empty queue (bench/ddb_tally.py),"
        " units as DynamoDB Local reports them (* a failed conditional write, estimated at 1 WCU); Local"
        " reports no RCU for a key it does not find, which AWS bills all the same: RCU/id AWS counts every"
        " key of a GetItem/BatchGetItem (1 strongly consistent, 0.5 not). Floor: the lock Puts, 100"
        " a TransactWriteItems (2 WCU each); 5 items"
        " (outcome, step target, 2 command records, start record) 25 a BatchWriteItem, + the step target's"
        " 2 index entries (no SC-3 lookup: the commands drew their own UUIDs); per chunk a GetItem and an"
        " UpdateItem of the instance (floor_per_id).",
        "correct = 202, counts.started = ids (none skipped, failed or pending), and every id got exactly"
        " one DeviceInformation and one SecurityInfo at the MDM server.",
    ]
    return headers, rows, notes


def main(argv: Sequence[str] | None = None) -> int:
    from bench import report

    parser = argparse.ArgumentParser(prog="python -m bench.fleet_starts", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="comma-separated id counts")
    parser.add_argument("--full", action="store_true", help=f"sizes over {QUICK_LIMIT:,} too (minutes)")
    parser.add_argument("--consumers", type=int, help=f"events consumers (default {DEFAULT_CONCURRENCY})")
    parser.add_argument("--timeout", type=float, help="seconds a size may take (default 120 + 0.05 an id)")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    args = parser.parse_args(argv)
    sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]
    # sizes named on the command line run, however large; the default list skips the largest
    full = args.full or args.sizes != parser.get_default("sizes")
    info = report.machine()
    print(f"machine: {info['cpu']}, {info['cores']} cores, Python {info['python']}; {info['date']}")
    result = run(
        sizes,
        full=full,
        consumers=args.consumers,
        timeout=args.timeout,
        progress=lambda m: print(f"  … {m}", flush=True),
    )
    headers, rows, notes = render(result)
    print(report.table(headers, rows))
    for note in notes:
        print(note)
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": info, **result.to_json()}, indent=2, default=str))
    return 0 if all(r.correct for r in result.sizes if r.where != "skipped") else 1


if __name__ == "__main__":
    raise SystemExit(main())
