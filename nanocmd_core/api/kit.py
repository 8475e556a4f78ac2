"""The route kit every API module builds on: JSON responses, HTTP Basic, route registration and the
OpenAPI document made from the registered routes.

It lives apart from ``app`` (which lists the route modules) so the subsystems' ``http`` modules can
import it at their top without an import cycle.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from nanocmd_core.config import Settings

API_USER = "nanocmd"
ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
SCHEMA_REF = "#/components/schemas/{model}"

Handler = Callable[..., Response[str]]
ResponseSchema = type[BaseModel] | dict[str, Any]
"""A 200 answer's JSON: a model, or a raw JSON schema in which a model class stands for a ``$ref``
to that model's schema (e.g. ``{"type": "object", "additionalProperties": DeviceStatus}``)."""


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> Response[str]:
    return Response(
        status_code=status,
        content_type=content_types.APPLICATION_JSON,
        body=json.dumps(body) + "\n",
        headers=headers,
    )


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response[str]:
    return json_response(status, {"error": message}, headers)


def basic_auth_ok(authorization: str, api_key: str) -> bool:
    """HTTP Basic with user ``nanocmd`` and the API key, compared in constant time (API-1)."""
    scheme, _, encoded = authorization.partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        user, sep, password = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return False
    user_ok = hmac.compare_digest(user.encode(), API_USER.encode())
    password_ok = hmac.compare_digest(password.encode(), api_key.encode())
    return bool(sep) and user_ok and password_ok


@dataclass(frozen=True)
class RouteSpec:
    """One registered route as the OpenAPI document describes it."""

    path: str
    methods: list[str]
    auth: bool
    query: dict[str, bool]
    body: str | None
    summary: str
    response: ResponseSchema | None = None
    """The 200 answer's JSON; None: the route's 200/204 carry no documented body."""
    statuses: dict[int, str] = field(default_factory=dict)
    """Further statuses the route answers (status → description), beside 200, 400, 401 and 404."""
    body_schema: ResponseSchema | None = None
    """The JSON body's schema (for ``body="application/json"``); None: any object."""
    body_required: bool = True


def _is_model(value: Any) -> bool:
    return isinstance(value, type) and issubclass(value, BaseModel)


def _models_in(schema: Any) -> Iterator[type[BaseModel]]:
    if _is_model(schema):
        yield schema
    elif isinstance(schema, dict):
        for value in schema.values():
            yield from _models_in(value)
    elif isinstance(schema, list):
        for value in schema:
            yield from _models_in(value)


def _with_refs(schema: Any, refs: dict[type[BaseModel], dict[str, Any]]) -> Any:
    if _is_model(schema):
        return refs[schema]
    if isinstance(schema, dict):
        return {key: _with_refs(value, refs) for key, value in schema.items()}
    if isinstance(schema, list):
        return [_with_refs(value, refs) for value in schema]
    return schema


NULL = {"type": "null"}


def openapi30_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A JSON Schema 2020-12 schema (as pydantic v2 writes them) as OpenAPI 3.0 knows it: a null
    branch of ``anyOf`` or of a ``type`` list becomes ``nullable``, a ``$ref`` with siblings is
    wrapped in ``allOf`` (3.0 ignores a ``$ref``'s siblings), ``const`` becomes a one-value ``enum``,
    numeric ``exclusiveMinimum``/``Maximum`` the 3.0 boolean form, ``examples`` one ``example``;
    ``title`` (pydantic's field-name noise) is dropped. Only schema positions are rewritten, so a
    property called ``title`` stays."""
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "title":
            continue
        if key in ("items", "not") or (key == "additionalProperties" and isinstance(value, dict)):
            out[key] = openapi30_schema(value)
        elif key in ("allOf", "anyOf", "oneOf"):
            out[key] = [openapi30_schema(branch) for branch in value]
        elif key == "properties":
            out[key] = {name: openapi30_schema(prop) for name, prop in value.items()}
        elif key == "const":
            out["enum"] = [value]
        elif key == "examples":
            if value:
                out["example"] = value[0] if isinstance(value, list) else value
        elif key in ("exclusiveMinimum", "exclusiveMaximum") and not isinstance(value, bool):
            out["minimum" if key == "exclusiveMinimum" else "maximum"] = value
            out[key] = True
        elif key == "type" and isinstance(value, list):
            types = [t for t in value if t != "null"]
            if len(types) < len(value):
                out["nullable"] = True
            if len(types) == 1:
                out["type"] = types[0]
            elif types:
                out.setdefault("anyOf", []).extend({"type": t} for t in types)
        else:
            out[key] = value
    branches = out.get("anyOf")
    if branches is not None and NULL in branches:
        others = [branch for branch in branches if branch != NULL]
        del out["anyOf"]
        out["nullable"] = True
        if len(others) == 1 and "$ref" in others[0]:
            out["allOf"] = [*others, *out.get("allOf", [])]
        elif len(others) == 1:
            out = {**others[0], **out}
        elif others:
            out["anyOf"] = others
    if "$ref" in out and len(out) > 1:
        out["allOf"] = [{"$ref": out.pop("$ref")}, *out.get("allOf", [])]
    return out


def _schemas(
    specs: list[RouteSpec],
) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any] | None], list[dict[str, Any] | None]]:
    """(components/schemas of every model the routes answer with or take, each spec's 200 schema
    or None, each spec's body schema or None), generated in one go so that equal model names
    from different modules are told apart."""
    models = list(
        dict.fromkeys(
            m for spec in specs for schema in (spec.response, spec.body_schema) for m in _models_in(schema)
        )
    )
    refs_by_mode, top = models_json_schema(
        [(model, "serialization") for model in models], ref_template=SCHEMA_REF
    )
    refs = {model: dict(refs_by_mode[(model, "serialization")]) for model in models}
    bodies = [
        None if spec.body_schema is None else openapi30_schema(_with_refs(spec.body_schema, refs))
        for spec in specs
    ]
    components = {name: openapi30_schema(schema) for name, schema in top.get("$defs", {}).items()}
    answers = [
        None if spec.response is None else openapi30_schema(_with_refs(spec.response, refs)) for spec in specs
    ]
    return components, answers, bodies


def openapi_document(specs: list[RouteSpec], version: str) -> dict[str, Any]:
    """OpenAPI 3.0.3 from the registered routes: paths, methods, parameters, bodies, auth, errors
    and the JSON schemas of the routes' answers (under ``components/schemas``)."""
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/JSONError"}}}
    components, answers, bodies = _schemas(specs)
    paths: dict[str, dict[str, Any]] = {}
    for spec, answer, body_schema in zip(specs, answers, bodies, strict=True):
        path = re.sub(r"<([^>]+)>", r"{\1}", spec.path)
        parameters: list[dict[str, Any]] = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}
            for name in re.findall(r"<([^>]+)>", spec.path)
        ]
        parameters += [
            {
                "name": name,
                "in": "query",
                "required": required,
                "style": "form",
                "explode": True,
                "schema": {
                    "type": "array",
                    "items": {"type": "string"},
                    **({"minItems": 1} if required else {}),
                },
            }
            for name, required in spec.query.items()
        ]
        for method in spec.methods:
            responses: dict[str, Any] = {"200": {"description": "success"}}
            if answer is None:
                responses["204"] = {"description": "done, no content"}
            elif method != "HEAD":
                responses["200"]["content"] = {"application/json": {"schema": answer}}
            responses["400"] = {"description": "bad input", "content": error}
            responses["404"] = {"description": "not found", "content": error}
            operation: dict[str, Any] = {
                "summary": spec.summary or f"{method} {path}",
                "parameters": parameters,
                "responses": responses,
            }
            if spec.auth:
                operation["security"] = [{"basicAuth": []}]
                responses["401"] = {"description": "unauthorized", "content": error}
            for status, description in spec.statuses.items():
                responses[str(status)] = {"description": description}
                if status >= 400 and method != "HEAD":
                    responses[str(status)]["content"] = error
            if spec.body and method in {"PUT", "POST"}:
                schema = body_schema or (
                    {"type": "object"}
                    if spec.body == "application/json"
                    else {"type": "string", "format": "binary"}
                )
                operation["requestBody"] = {
                    "required": spec.body_required,
                    "content": {spec.body: {"schema": schema}},
                }
            paths.setdefault(path, {})[method.lower()] = operation
    return {
        "openapi": "3.0.3",
        "info": {"title": "NanoCMD (serverless)", "version": version},
        "paths": paths,
        "components": {
            "securitySchemes": {"basicAuth": {"type": "http", "scheme": "basic"}},
            "schemas": {
                "JSONError": {
                    "type": "object",
                    "properties": {"error": {"type": "string"}},
                    "required": ["error"],
                },
                **components,
            },
        },
    }


@dataclass
class RouteKit:
    """What a module's routes need: the resolver, the services (``wiring.App``, built on first
    use), HTTP Basic protection and request helpers. Subsystems add routes with ``kit.route``."""

    api: APIGatewayRestResolver
    settings: Settings
    services: Callable[[], Any]
    allow: list[tuple[re.Pattern[str], list[str]]] = field(default_factory=list)
    """(path pattern, methods) of every route, for 405/OPTIONS with an Allow header (API-2)."""
    specs: list[RouteSpec] = field(default_factory=list)

    def protected(self, handler: Handler) -> Handler:
        def wrapper(*args: Any, **kwargs: Any) -> Response[str]:
            api_key = self.settings.api_key
            if not api_key:  # as in Go: no API key, no management API
                return error_response(404, "not found")
            headers = self.api.current_event.headers
            if not basic_auth_ok(headers.get("Authorization") or headers.get("authorization") or "", api_key):
                return error_response(401, "unauthorized", {"WWW-Authenticate": 'Basic realm="nanocmd"'})
            return handler(*args, **kwargs)

        wrapper.__name__ = handler.__name__
        return wrapper

    def route(
        self,
        path: str,
        methods: list[str],
        *,
        auth: bool = True,
        query: dict[str, bool] | None = None,
        body: str | None = None,
        summary: str = "",
        response: ResponseSchema | None = None,
        statuses: dict[int, str] | None = None,
        body_schema: ResponseSchema | None = None,
        body_required: bool = True,
    ) -> Callable[[Handler], Handler]:
        """Register ``handler`` for ``path`` (Powertools ``<param>`` syntax; params arrive still
        percent-encoded, decode them with ``unquote``); GET routes also answer HEAD. ``query``
        (name → required; every query parameter may repeat), ``body`` (its media type),
        ``response`` (the 200 answer's JSON) and ``statuses`` (further statuses → description) go
        into the OpenAPI document served at ``/openapi.json``."""
        if "GET" in methods and "HEAD" not in methods:
            methods = [*methods, "HEAD"]
        self.allow.append((re.compile("^" + re.sub(r"<[^>]+>", "[^/]+", path) + "$"), methods))
        self.specs.append(
            RouteSpec(
                path,
                methods,
                auth,
                dict(query or {}),
                body,
                summary,
                response,
                dict(statuses or {}),
                body_schema,
                body_required,
            )
        )

        def register(handler: Handler) -> Handler:
            self.api.route(path, method=methods)(self.protected(handler) if auth else handler)
            return handler

        return register

    def query_values(self, name: str) -> list[str]:
        multi = self.api.current_event.multi_value_query_string_parameters or {}
        return list(multi.get(name) or [])

    def body(self) -> bytes:
        """The raw request body; API Gateway base64-encodes every body (BinaryMediaTypes */*)."""
        event = self.api.current_event
        raw = event.body or ""
        return base64.b64decode(raw) if event.is_base64_encoded else raw.encode()

    def json_body(self) -> Any:
        """The body as JSON; ValueError (with a message for a 400) when it is not."""
        try:
            return json.loads(self.body() or b"")
        except (ValueError, UnicodeDecodeError) as exc:
            raise ValueError(f"invalid JSON body: {exc}") from exc
