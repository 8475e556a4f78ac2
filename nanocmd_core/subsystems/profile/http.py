"""Profile routes (api.md §7) with design.md §6's changes: JSON errors, 404 for unknown names,
400 for bodies that are not a profile. Paths, methods and the listing's JSON shape are the Go
original's, so existing scripts keep working."""

from __future__ import annotations

from typing import Any, cast
from urllib.parse import unquote

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import Response

from nanocmd_core.api.kit import RouteKit, error_response, json_response
from nanocmd_core.subsystems.profile.store import ProfileNotFoundError, ProfileStore

logger = Logger(service="nanocmd", child=True)

MOBILECONFIG_CONTENT_TYPE = "application/x-apple-aspen-config"


def profile_routes(kit: RouteKit) -> None:
    """Upload, download, delete and list profiles (kit.services().profiles is a ProfileStore)."""

    def profiles() -> ProfileStore:
        store: ProfileStore = kit.services().profiles
        return store

    @kit.route("/v1/profile/<name>", ["PUT"], body="application/x-apple-aspen-config")
    def put_profile(name: str) -> Response[str]:
        name = unquote(name)
        raw = kit.body()
        if not raw:
            return error_response(400, "empty body")
        try:
            info = profiles().store(name, raw)
        except ValueError as exc:  # not a profile (subsystems.md §4.4 texts)
            return error_response(400, str(exc))
        logger.info(
            "profile stored",
            extra={"profile": name, "identifier": info.identifier, "uuid": info.uuid, "size": len(raw)},
        )
        return Response(status_code=204, body="")

    @kit.route("/v1/profile/<name>", ["GET"])
    def get_profile(name: str) -> Response[str]:
        name = unquote(name)
        try:
            raw = profiles().retrieve_raw(name)
        except ProfileNotFoundError as exc:
            return error_response(404, str(exc))
        # bytes: Powertools base64-encodes them and sets isBase64Encoded, and API Gateway (binary
        # media types */*) decodes them, so the client gets the stored bytes unchanged
        response: Response[Any] = Response(status_code=200, content_type=MOBILECONFIG_CONTENT_TYPE, body=raw)
        return cast(Response[str], response)

    @kit.route("/v1/profile/<name>", ["DELETE"])
    def delete_profile(name: str) -> Response[str]:
        name = unquote(name)
        profiles().delete(name)
        logger.info("profile deleted", extra={"profile": name})
        return Response(status_code=204, body="")

    @kit.route("/v1/profiles", ["GET"], query={"name": False})
    def list_profiles() -> Response[str]:
        names = kit.query_values("name")
        store = profiles()
        if not names:
            infos = store.list_infos()
        else:
            infos = store.retrieve_infos(names)
            missing = [n for n in dict.fromkeys(names) if n not in infos]
            if missing:
                return error_response(404, str(ProfileNotFoundError(missing[0])))
        return json_response(
            200, {name: {"identifier": info.identifier, "uuid": info.uuid} for name, info in infos.items()}
        )
