"""``GET /v1/fvenable/profiletemplate`` (api.md §8.1): the built-in fvenable profile template, so an
operator can edit it and upload it as the profile ``io.micromdm.wf.fvenable.v1``. A stored
override is never served here."""

from __future__ import annotations

from aws_lambda_powertools.event_handler import Response

from nanocmd_core.api.kit import RouteKit
from nanocmd_core.workflows.fvenable import PROFILE_TEMPLATE

MOBILECONFIG = "application/x-apple-aspen-config"


def filevault_routes(kit: RouteKit) -> None:
    @kit.route("/v1/fvenable/profiletemplate", ["GET"])
    def profile_template() -> Response[str]:
        # Powertools passes bytes bodies through (base64 for API Gateway); typed as str there
        return Response(status_code=200, content_type=MOBILECONFIG, body=PROFILE_TEMPLATE)  # type: ignore[arg-type]
