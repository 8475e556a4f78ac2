"""The context models of ``io.micromdm.wf.certprof.v1``: imported from
``nanocmd_core.workflows.certprof`` on first use (issue 14: cold starts), when the workflow starts
or decodes a step context, or when one of them is looked up there (PEP 562). Import them from there."""

# Real annotations (no ``from __future__ import annotations``): pydantic would otherwise evaluate
# every annotation string when it creates a model class, at import (issue 14: cold starts).
from nanocmd_core.subsystems.cmdplan.storage import GoJSONModel
from nanocmd_core.workflow.errors import WorkflowError


class Filter(GoJSONModel):
    """Selects the certificate of interest among those the device reports."""

    cn_prefix: str = ""
    allow_non_identity: bool = False


class Criteria(GoJSONModel):
    """When a found certificate must be replaced."""

    always_replace: bool = False
    until_expiry_sec: int = 0


class CertProfContext(GoJSONModel):
    """The start context (workflows.md §6.2), carried as the first step's context too."""

    profile: str = ""
    filter: Filter | None = None
    criteria: Criteria | None = None
    no_managed_only: bool = False
    text_replacements: dict[str, str] | None = None

    def validate_context(self) -> None:
        if not self.profile:
            raise WorkflowError("validating context: empty profile name provided")
        if self.filter is None:
            raise WorkflowError("validating context: empty filter")
