"""HTTP client for the MDM server's enqueue and push APIs (engine.md §6 MC-1..5; GAP-9, -10, -21 fixed).

What changes from the Go NanoCMD's ``foss`` client, and why:

- the HTTP status and NanoMDM's JSON result are read (GAP-9): the engine learns which ids did not get
  the command instead of waiting for a step timeout;
- ``enqueue`` sends exactly one request, so the engine owns chunking and can give every chunk its
  own CommandUUID (NanoMDM stores a UUID once, design.md §6); every request carries the full body
  (GAP-10);
- ids are percent-escaped and a query string on the base URL (e.g. ``?nopush=1``) survives (GAP-21);
- transport errors and 5xx answers are retried with exponential backoff, except where the server's
  answer is definitive (already-exists, per-id errors).

Request body: the raw XML command plist with ``Content-Type: application/xml``. Neither NanoMDM
(``RawCommandEnqueueHandler`` reads the body whatever its type) nor MicroMDM (``/v1/commands/{udid}``
decodes the body as a plist) looks at the Content-Type; the Go client sends none. ``application/xml``
is the honest type of an XML plist and keeps proxies and gateways from treating the body as binary.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import NamedTuple, Protocol, runtime_checkable

import urllib3
from aws_lambda_powertools import Logger

from nanocmd_core.config import ConfigError, Settings
from nanocmd_core.mdmserver.result import (
    APIResult,
    body_text,
    ids_with_errors,
    is_already_exists,
    micromdm_error,
    parse_api_result,
    truncate,
)
from nanocmd_core.mdmserver.urls import (
    chunked,
    dedupe,
    normalise_base_url,
    request_url,
    validate_ids,
    with_query,
)

logger = Logger(service="nanocmd", child=True)

CONTENT_TYPE = "application/xml"
NANOMDM_MAX_IDS = 30  # the Go client's conservative limit on ids in one URL path


class ServerMode(NamedTuple):
    """API conventions of one MDM server family (MC-2)."""

    name: str
    user: str  # HTTP Basic user; the password is the API key
    enqueue_method: str
    push_method: str
    max_ids: int
    comma_splits: bool  # the server splits the id path segment on "," (after decoding it)


NANOMDM = ServerMode("nanomdm", "nanomdm", "PUT", "GET", NANOMDM_MAX_IDS, comma_splits=True)
# MicroMDM: POST (or PUT) /v1/commands/{udid} takes a raw plist for one device; GET /push/{udid}.
MICROMDM = ServerMode("micromdm", "micromdm", "POST", "GET", 1, comma_splits=False)


def _preview(ids: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(ids[:limit])
    return f"[{shown}, … +{len(ids) - limit} more]" if len(ids) > limit else f"[{shown}]"


class MDMServerError(Exception):
    """A send or push the MDM server did not accept (or that never reached it)."""

    def __init__(self, ids: Sequence[str], status: int | None, detail: str) -> None:
        self.ids = list(ids)
        self.status = status
        self.detail = detail
        answer = f"HTTP {status}" if status is not None else "no HTTP answer"
        super().__init__(
            f"MDM server did not accept request for {len(self.ids)} id(s) {_preview(self.ids)}: "
            f"{answer}: {truncate(detail, 300) or '(empty answer)'}"
        )


@dataclass(frozen=True)
class ChunkResult:
    """Outcome of one request to the MDM server.

    ``ok`` for an enqueue means the command is queued for every id of the request. A push failure
    reported alongside a successful enqueue does not clear ``ok`` (the command is queued; the device
    will pick it up at its next check-in or re-push); those ids are in ``push_failed_ids``.

    ``already_exists``: NanoMDM already holds this CommandUUID, so it stored nothing this time. If the
    engine generated that UUID for exactly this request, an earlier attempt of the same send reached
    the server and the command is queued; otherwise it is a UUID reuse.
    """

    ids: list[str]
    ok: bool
    status: int | None  # HTTP status of the last attempt; None when no answer was received
    detail: str  # error text or "" when ok
    failed_ids: list[str]  # ids the command (or push) did not reach; all ids when the request failed
    already_exists: bool = False
    push_failed_ids: list[str] = field(default_factory=list)
    attempts: int = 1

    def raise_for_error(self) -> None:
        """Raise :class:`MDMServerError` unless ``ok``: for callers that treat any failure as fatal."""
        if not self.ok:
            raise MDMServerError(self.ids, self.status, self.detail)


@runtime_checkable
class MDMServerClient(Protocol):
    """What the engine needs from an MDM server; tests may provide their own implementation."""

    max_ids_per_request: int  # 30 NanoMDM, 1 MicroMDM
    supports_multi_target: bool  # one CommandUUID may be queued to several ids in one request

    def enqueue(self, ids: Sequence[str], command_plist: bytes) -> ChunkResult:
        """Queue the command on the ids with ONE request, pushing them; ``len(ids) <=
        max_ids_per_request``. A client whose ``pushes_separately`` is True also takes
        ``push=False`` (queue only): the engine then pushes each id of a step once itself.

        Raises ValueError for invalid input; never for HTTP or transport failures (``ok=False``)."""
        ...

    def push(self, ids: Sequence[str]) -> list[ChunkResult]:
        """Ask the server to send APNs pushes to the ids, one result per chunk of ids."""
        ...


class _Outcome(NamedTuple):
    """One attempt's result, and whether another attempt may change it."""

    result: ChunkResult
    retryable: bool


@cache
def default_pool() -> urllib3.PoolManager:
    """One pool per process: a warm Lambda reuses its TLS connections to the MDM server."""
    return urllib3.PoolManager(num_pools=4, maxsize=8)


class HTTPMDMServerClient:
    """:class:`MDMServerClient` over HTTP for NanoMDM (default) or MicroMDM (``micromdm=True``)."""

    def __init__(
        self,
        enqueue_url: str,
        push_url: str,
        api_key: str,
        *,
        micromdm: bool = False,
        timeout: float = 10.0,
        retries: int = 2,
        backoff: float = 0.2,
        pool: urllib3.PoolManager | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not enqueue_url or not push_url or not api_key:
            raise ValueError("enqueue URL, push URL, and API required")
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        if retries < 0 or backoff < 0:
            raise ValueError("retries and backoff must not be negative")
        self.mode = MICROMDM if micromdm else NANOMDM
        self.enqueue_url = normalise_base_url(enqueue_url)
        self.push_url = normalise_base_url(push_url)
        self.max_ids_per_request = self.mode.max_ids
        self.supports_multi_target = self.mode.max_ids > 1
        # NanoMDM queues without pushing on ?nopush=1; MicroMDM always pushes on enqueue
        self.pushes_separately = self.mode is NANOMDM
        self._headers = urllib3.make_headers(basic_auth=f"{self.mode.user}:{api_key}")
        self._timeout = urllib3.Timeout(connect=timeout, read=timeout)
        self._retries = retries
        self._backoff = backoff
        self._pool = pool if pool is not None else default_pool()
        self._sleep = sleep

    @classmethod
    def from_settings(cls, settings: Settings) -> HTTPMDMServerClient:
        """Build the client from NANOCMD_* settings; all three of URL, push URL and key are required."""
        # URLs first: reading the key may fetch a secret
        if not settings.enqueue_url or not settings.push_url or not (api_key := settings.enqueue_api):
            raise ConfigError("enqueue URL, push URL, and API required")
        try:
            return cls(settings.enqueue_url, settings.push_url, api_key, micromdm=settings.micromdm)
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc

    def __repr__(self) -> str:  # never shows the key
        return f"HTTPMDMServerClient({self.mode.name}, enqueue={self.enqueue_url!r}, push={self.push_url!r})"

    # --- public API ---------------------------------------------------------------------------

    def enqueue(self, ids: Sequence[str], command_plist: bytes, push: bool = True) -> ChunkResult:
        """``push=False`` (NanoMDM only): queue without pushing, for one push per id per step."""
        validate_ids(ids, comma_splits=self.mode.comma_splits)
        ids = list(ids)
        if not ids:
            raise ValueError("no enrollment ids to enqueue to")
        if len(ids) > self.max_ids_per_request:
            if self.mode is MICROMDM:
                raise ValueError(f"multiple ids not supported in MicroMDM mode (got {len(ids)})")
            raise ValueError(f"at most {self.max_ids_per_request} ids per request, got {len(ids)}")
        if len(set(ids)) != len(ids):
            raise ValueError("duplicate enrollment ids in one enqueue request")
        if not isinstance(command_plist, bytes | bytearray) or not command_plist:
            # NanoMDM treats an empty enqueue body as "push only": the ids would get no command.
            raise ValueError("command plist must be non-empty bytes")
        if not push and not self.pushes_separately:
            raise ValueError("MicroMDM pushes on every enqueue: push=False is not supported")
        base = self.enqueue_url if push else with_query(self.enqueue_url, "nopush", "1")
        return self._send("enqueue", self.mode.enqueue_method, base, ids, bytes(command_plist))

    def push(self, ids: Sequence[str]) -> list[ChunkResult]:
        validate_ids(ids, comma_splits=self.mode.comma_splits)
        return [
            self._send("push", self.mode.push_method, self.push_url, chunk, None)
            for chunk in chunked(dedupe(ids), self.max_ids_per_request)
        ]

    # --- one request, with retries ------------------------------------------------------------

    def _send(self, kind: str, method: str, base_url: str, ids: list[str], body: bytes | None) -> ChunkResult:
        url = request_url(base_url, ids)
        headers = dict(self._headers)
        if body is not None:
            headers["Content-Type"] = CONTENT_TYPE
        attempt = 0
        while True:
            attempt += 1
            outcome = self._attempt(kind, method, url, ids, body, headers)
            result = outcome.result
            log: dict[str, object] = {
                "request": kind,
                "method": method,
                "url": url,  # carries no credentials: they travel in the Authorization header
                "id_count": len(ids),
                "ids": ids if len(ids) <= 5 else [*ids[:5], f"+{len(ids) - 5} more"],
                "http_status": result.status,
                "attempt": attempt,
            }
            if result.ok:
                if result.push_failed_ids:
                    logger.warning(
                        "MDM server queued the command but could not push",
                        extra={**log, "push_failed_ids": result.push_failed_ids},
                    )
                else:
                    logger.debug("MDM server accepted request", extra=log)
                return _with_attempts(result, attempt)
            if not outcome.retryable or attempt > self._retries:
                logger.error(
                    "MDM server did not accept request",
                    extra={
                        **log,
                        "detail": result.detail,
                        "already_exists": result.already_exists,
                        "failed_ids": result.failed_ids,
                    },
                )
                return _with_attempts(result, attempt)
            delay = self._backoff * 2 ** (attempt - 1)
            logger.warning(
                "MDM server request failed, retrying", extra={**log, "detail": result.detail, "delay": delay}
            )
            self._sleep(delay)

    def _attempt(
        self, kind: str, method: str, url: str, ids: list[str], body: bytes | None, headers: dict[str, str]
    ) -> _Outcome:
        try:
            response = self._pool.request(
                method,
                url,
                body=body,  # bytes are immutable: every attempt sends the whole command (GAP-10)
                headers=headers,
                timeout=self._timeout,
                retries=False,  # retries are ours, with backoff and knowledge of the answer
                redirect=False,  # a redirect would turn PUT into GET or re-send to another host
                preload_content=True,
            )
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            detail = f"{type(exc).__name__}: {exc}"
            return _Outcome(ChunkResult(ids, False, None, truncate(detail), list(ids)), retryable=True)
        status = response.status
        data = response.data or b""
        if self.mode is MICROMDM:
            return _interpret_micromdm(ids, status, data)
        if kind == "enqueue":
            return _interpret_nanomdm_enqueue(ids, status, data, response.headers.get("Location"))
        return _interpret_nanomdm_push(ids, status, data, response.headers.get("Location"))


def _with_attempts(result: ChunkResult, attempts: int) -> ChunkResult:
    return ChunkResult(
        ids=result.ids,
        ok=result.ok,
        status=result.status,
        detail=result.detail,
        failed_ids=result.failed_ids,
        already_exists=result.already_exists,
        push_failed_ids=result.push_failed_ids,
        attempts=attempts,
    )


def _is_2xx(status: int) -> bool:
    return 200 <= status < 300


def _retryable_status(status: int) -> bool:
    """5xx may be transient; 429 asks us to come back. Other 4xx will not change by repeating."""
    return status >= 500 or status == 429


def _http_failure(ids: list[str], status: int, data: bytes, location: str | None, text: str = "") -> _Outcome:
    """A non-2xx answer that does not explain itself per id: the whole request failed."""
    detail = text or body_text(data)
    if status == 401:
        detail = f"unauthorized (check the MDM server API key and the enqueue mode): {detail}"
    elif 300 <= status < 400:
        detail = f"redirect to {location or '?'} not followed (check the base URL): {detail}"
    return _Outcome(ChunkResult(ids, False, status, detail, list(ids)), retryable=_retryable_status(status))


def _interpret_micromdm(ids: list[str], status: int, data: bytes) -> _Outcome:
    if _is_2xx(status):
        return _Outcome(ChunkResult(ids, True, status, "", []), retryable=False)
    return _http_failure(ids, status, data, None, micromdm_error(data))


def _interpret_nanomdm_enqueue(ids: list[str], status: int, data: bytes, location: str | None) -> _Outcome:
    api = parse_api_result(data)
    if api is None:
        if _is_2xx(status):
            return _Outcome(ChunkResult(ids, True, status, "", []), retryable=False)
        return _http_failure(ids, status, data, location)
    push_failed = _push_failed(api, ids)
    if api.command_error:
        # nothing was stored for any id; repeating cannot help if the UUID is already held
        already = is_already_exists(api.command_error)
        result = ChunkResult(ids, False, status, api.summary(), list(ids), already, push_failed)
        return _Outcome(result, retryable=_retryable_status(status) and not already)
    if api.command_errors:
        # per-id answers are definitive: the other ids have the command, so no blind repeat
        failed = ids_with_errors(api.command_errors, ids)
        return _Outcome(ChunkResult(ids, False, status, api.summary(), failed, False, push_failed), False)
    if _is_2xx(status) or api.has_push_error:
        # NanoMDM answers 500 when every push failed, but the command was stored
        return _Outcome(ChunkResult(ids, True, status, "", [], False, push_failed), retryable=False)
    return _http_failure(ids, status, data, location)


def _interpret_nanomdm_push(ids: list[str], status: int, data: bytes, location: str | None) -> _Outcome:
    api = parse_api_result(data)
    if api is None:
        if _is_2xx(status):
            return _Outcome(ChunkResult(ids, True, status, "", []), retryable=False)
        return _http_failure(ids, status, data, location)
    if api.has_push_error:
        failed = _push_failed(api, ids)
        return _Outcome(
            ChunkResult(ids, False, status, api.summary(), failed, False, failed),
            # a top-level error (no push cert, APNs unreachable) may pass; per-id answers are APNs's verdict
            retryable=_retryable_status(status) and bool(api.push_error),
        )
    if _is_2xx(status):
        return _Outcome(ChunkResult(ids, True, status, "", []), retryable=False)
    return _http_failure(ids, status, data, location)


def _push_failed(api: APIResult, ids: list[str]) -> list[str]:
    return list(ids) if api.push_error else ids_with_errors(api.push_errors, ids)
