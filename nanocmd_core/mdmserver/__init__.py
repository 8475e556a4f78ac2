"""NanoMDM / MicroMDM enqueue and push client (engine.md §6).

The engine depends on :class:`MDMServerClient` (a Protocol); :class:`HTTPMDMServerClient` is the real
implementation. ``enqueue`` sends one request per call, so the engine decides how ids are chunked
and gives each chunk its own CommandUUID (design.md §6); ``push`` chunks by itself.
"""

from nanocmd_core.mdmserver.client import (
    MICROMDM,
    NANOMDM,
    NANOMDM_MAX_IDS,
    ChunkResult,
    HTTPMDMServerClient,
    MDMServerClient,
    MDMServerError,
    ServerMode,
)
from nanocmd_core.mdmserver.urls import chunked, dedupe, validate_ids

__all__ = [
    "MICROMDM",
    "NANOMDM",
    "NANOMDM_MAX_IDS",
    "ChunkResult",
    "HTTPMDMServerClient",
    "MDMServerClient",
    "MDMServerError",
    "ServerMode",
    "chunked",
    "dedupe",
    "validate_ids",
]
