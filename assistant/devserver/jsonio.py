"""Reading JSON request bodies the way Flask does for Dify, with the same refusals."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from assistant.devserver.errors import USER_REQUIRED_MESSAGE, DifyError, bad_request, invalid_param

_NOT_JSON_MESSAGE = (
    "Did not attempt to load JSON data because the request Content-Type was not 'application/json'."
)


def _is_json(content_type: str) -> bool:
    # Flask's `request.is_json`: application/json or any application/*+json.
    return content_type == "application/json" or (
        content_type.startswith("application/") and content_type.endswith("+json")
    )


async def json_body(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object; 415 for another content type, 400 for bad JSON."""
    if not _is_json(request.content_type.lower()):
        raise DifyError(415, "unsupported_media_type", _NOT_JSON_MESSAGE)
    raw = await request.read()
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad_request(f"Failed to decode JSON object: {exc}") from None
    if not isinstance(body, dict):
        raise bad_request("Failed to decode JSON object: the body must be a JSON object")
    return body


def required_user(body: dict[str, Any]) -> str:
    """`user` from the body; Dify checks it before anything else in the request."""
    user = body.get("user")
    if not user or not isinstance(user, str):
        raise invalid_param(USER_REQUIRED_MESSAGE)
    return user
