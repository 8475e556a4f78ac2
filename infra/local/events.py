"""API Gateway REST proxy events for calling the API handlers directly (tests, benchmarks),
in the shape the local gateway and API Gateway (binary media types ``*/*``) produce."""

from __future__ import annotations

import base64
from typing import Any


def basic_auth(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def proxy_event(
    method: str,
    path: str,
    query: dict[str, list[str]] | None = None,
    auth: str | None = None,
    body: bytes | None = None,
) -> dict[str, Any]:
    headers = {"Host": "api.example"}
    if auth is not None:
        headers["Authorization"] = auth
    return {
        "resource": "/{proxy+}",
        "path": path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": {k: v[-1] for k, v in query.items()} if query else None,
        "multiValueQueryStringParameters": query or None,
        "pathParameters": {"proxy": path.lstrip("/")},
        "stageVariables": None,
        "requestContext": {
            "requestId": "r",
            "stage": "prod",
            "httpMethod": method,
            "path": path,
            "resourcePath": "/{proxy+}",
            "identity": {"sourceIp": "127.0.0.1"},
        },
        "body": base64.b64encode(body).decode() if body is not None else None,
        "isBase64Encoded": body is not None,
    }


def reply_headers(reply: dict[str, Any]) -> dict[str, str]:
    """A proxy reply's headers by lower-case name, multi-value ones joined as HTTP would."""
    headers = {k.lower(): v for k, v in (reply.get("headers") or {}).items()}
    for k, v in (reply.get("multiValueHeaders") or {}).items():
        headers[k.lower()] = ", ".join(v)
    return headers
