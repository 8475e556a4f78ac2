"""What engine operations raise; the messages are what API callers see."""

from __future__ import annotations

from collections.abc import Sequence


class EngineError(Exception):
    """An engine operation failed; the message is what an API caller sees."""


class NoSuchWorkflowError(EngineError):
    def __init__(self, name: str) -> None:
        super().__init__(f"no such workflow: {name}")


class InvalidIDsError(EngineError):
    """No ids, or an empty id (GAP-21)."""


class AlreadyStartedError(EngineError):
    def __init__(self, busy: int, requested: int) -> None:
        super().__init__(f"workflow already started on {busy} (of {requested}) ids")
        self.busy = busy
        self.requested = requested


class StartError(EngineError):
    """The workflow could not be started on any id."""

    def __init__(
        self,
        message: str,
        *,
        failed_ids: Sequence[str] = (),
        client_error: bool = False,
    ) -> None:
        super().__init__(message)
        self.failed_ids = list(failed_ids)
        self.client_error = client_error
        """The workflow rejected its input (context, ids): the caller's to fix."""


class StepError(EngineError):
    """A step could not be converted or stored (nothing was sent)."""
