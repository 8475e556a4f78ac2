"""``io.micromdm.wf.certprof.v1``: install an identity (SCEP/ACME) profile only when the
device lacks a matching certificate or the one it has is due for replacement (workflows.md §6).

Asking the device first avoids re-enrolling certificates on every run, which costs CA load and
can revoke a working identity.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from aws_lambda_powertools import Logger

from nanocmd_core.deferred import deferred_attributes
from nanocmd_core.subsystems.profile.store import ProfileNotFoundError, ProfileStore
from nanocmd_core.workflow import (
    IncorrectContextTypeError,
    JSONContext,
    StepEnqueuer,
    StepResult,
    StepStart,
    UnknownStepNameError,
    Workflow,
    WorkflowError,
)

if TYPE_CHECKING:
    from nanocmd_core.mdm.responses import CertificateListItem
    from nanocmd_core.workflows.certprof_context import CertProfContext, Criteria, Filter

__all__ = [
    "NAME",
    "STEP_PROFILE",
    "CertProfContext",
    "CertProfWorkflow",
    "Criteria",
    "Filter",
    "checked_context",
    "filter_certificates",
    "replace_text",
    "should_replace",
]

NAME = "io.micromdm.wf.certprof.v1"
STEP_PROFILE = "profile"

logger = Logger(service="nanocmd", child=True)


_DEFERRED = dict.fromkeys(
    ("CertProfContext", "Criteria", "Filter"), "nanocmd_core.workflows.certprof_context"
)
"""The context models, defined in ``certprof_context`` and imported on first access: name → module."""


__getattr__ = deferred_attributes(__name__, _DEFERRED)


def checked_context(value: object) -> CertProfContext:
    """The step's context, validated as at start (the first completion re-checks it)."""
    from nanocmd_core.workflows.certprof_context import CertProfContext

    if value is None:
        raise WorkflowError("validating context: nil context")
    if not isinstance(value, CertProfContext):
        raise IncorrectContextTypeError()
    value.validate_context()
    return value


def filter_certificates(items: list[CertificateListItem], flt: Filter) -> list[CertificateListItem]:
    """Identities only unless non-identities are allowed; CommonName prefix (case-sensitive)."""
    return [
        item
        for item in items
        if (flt.allow_non_identity or item.is_identity)
        and (not flt.cn_prefix or (item.common_name or "").startswith(flt.cn_prefix))
    ]


def should_replace(item: CertificateListItem, criteria: Criteria | None, now: datetime) -> tuple[bool, str]:
    """Whether to replace a found certificate, and why (for the log)."""
    if criteria is None:
        return False, "no criteria"
    if criteria.always_replace:
        return True, "always replace"
    if criteria.until_expiry_sec > 0:
        from cryptography import x509  # here, not at import: no other cold start needs it

        try:
            cert = x509.load_der_x509_certificate(item.data or b"")
        except ValueError as exc:
            raise WorkflowError(f"checking criteria: parse certificate: {exc}") from exc
        remaining = cert.not_valid_after_utc - now
        if remaining < timedelta(seconds=criteria.until_expiry_sec):
            return True, "expires within until_expiry_sec"
        return False, "not expiring within until_expiry_sec"
    return False, "no replacement criteria met"


def replace_text(raw: bytes, replacements: Mapping[str, str] | None) -> bytes:
    """One left-to-right pass of literal replacements; values are never rescanned and, where
    keys overlap at a position, the longest wins (Go leaves that to map order). Empty keys
    are ignored."""
    pairs = {k.encode(): v.encode() for k, v in (replacements or {}).items() if k}
    if not raw or not pairs:
        return raw
    pattern = re.compile(b"|".join(re.escape(k) for k in sorted(pairs, key=len, reverse=True)))
    return pattern.sub(lambda m: pairs[m.group(0)], raw)


class CertProfWorkflow(Workflow):
    name = NAME

    def __init__(self, enqueuer: StepEnqueuer, profiles: ProfileStore) -> None:
        super().__init__(enqueuer)
        self.profiles = profiles

    def context_codec(self, step_name: str) -> JSONContext[CertProfContext]:
        from nanocmd_core.workflows.certprof_context import CertProfContext

        return JSONContext(CertProfContext)

    def start(self, step: StepStart) -> None:
        from nanocmd_core.mdm.commands import CertificateList

        ctx = checked_context(step.context)
        command = CertificateList(managed_only=None if ctx.no_managed_only else True)
        self.enqueue(step.new_step_enqueueing(command, context=ctx))

    def step_completed(self, result: StepResult) -> None:
        if result.name == "":
            self._certificate_list(result)
        elif result.name == STEP_PROFILE:
            self._installed(result)
        else:
            raise UnknownStepNameError(result.name)

    def _certificate_list(self, result: StepResult) -> None:
        from nanocmd_core.mdm.commands import InstallProfile
        from nanocmd_core.mdm.responses import CertificateListResponse
        from nanocmd_core.workflows.certprof_context import Filter

        response = result.single_response(CertificateListResponse, "validating certificate list response")
        ctx = checked_context(result.context)
        found = filter_certificates(response.certificate_list, ctx.filter or Filter())
        if len(found) > 1:
            raise WorkflowError(
                f"too many certs after filter: {len(found)}; before filter: {len(response.certificate_list)}"
            )
        if found:
            replace, reason = should_replace(found[0], ctx.criteria, datetime.now(UTC))
            log = {"workflow": self.name, "enrollment_id": result.id, "common_name": found[0].common_name}
            if not replace:
                logger.debug("certificate kept", extra={**log, "reason": reason})
                return
            logger.debug("certificate to be replaced", extra={**log, "reason": reason})
        try:
            raw = self.profiles.retrieve_raw(ctx.profile)
        except ProfileNotFoundError as exc:
            raise WorkflowError(f"retrieving raw profile: {ctx.profile}: {exc}") from exc
        payload = replace_text(raw, ctx.text_replacements)
        self.enqueue(result.new_step_enqueueing(InstallProfile(payload=payload), name=STEP_PROFILE))

    def _installed(self, result: StepResult) -> None:
        from nanocmd_core.mdm.responses import InstallProfileResponse

        result.single_response(InstallProfileResponse, "validating install profile response")
