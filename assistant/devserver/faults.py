"""Scripted failures: the next N requests to an endpoint get a canned answer.

A test arms a fault (in-process through `state.faults` or with `POST /_dev/faults`) to see
how the client copes with a 500, a 429 with its Retry-After header or a body that is not
JSON, without a real service misbehaving on cue. A fault answers after the auth check, in
place of the endpoint, and is logged with fault=True.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from assistant.devserver.errors import (
    CONVAI_SERVER_FAILURE_BODY,
    CONVAI_TTS_FAILED_BODY,
    INTERNAL_ERROR_MESSAGE,
    OPENAI_SERVER_ERROR_MESSAGE,
    dify_error_body,
    openai_error_body,
)

DIFY_ENDPOINTS: tuple[str, ...] = (
    "audio-to-text",
    "completion-messages",
    "completion-messages-stop",
    "chat-messages",
    "chat-messages-stop",
    "text-to-audio",
    "parameters",
)
CONVAI_ENDPOINTS: tuple[str, ...] = ("convai-tts", "convai-voices", "convai-languages")
"""The Convai routes `/tts/`, `/tts/get_available_voices`, `/tts/get_available_languages`."""
OPENAI_ENDPOINTS: tuple[str, ...] = ("audio-transcriptions", "audio-speech", "chat-completions")
"""Route names of the OpenAI-compatible endpoints (request log and fault names)."""
FAULT_ENDPOINTS: tuple[str, ...] = DIFY_ENDPOINTS + CONVAI_ENDPOINTS + OPENAI_ENDPOINTS
"""Route names a fault can target (`completion-messages-stop` is the stop call)."""
_FAULT_FIELDS = frozenset({"endpoint", "status", "body", "content_type", "count", "headers"})


def failure_body(endpoint: str, status: int) -> Any:
    """What `endpoint` itself answers to an unexpected failure, in its service's shape."""
    if endpoint in OPENAI_ENDPOINTS:
        return openai_error_body(OPENAI_SERVER_ERROR_MESSAGE, "server_error")
    if endpoint == "convai-tts":
        return CONVAI_TTS_FAILED_BODY
    if endpoint in CONVAI_ENDPOINTS:
        return CONVAI_SERVER_FAILURE_BODY
    return dify_error_body(status, "internal_server_error", INTERNAL_ERROR_MESSAGE)


def _string_map(value: Any) -> bool:
    return isinstance(value, dict) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    )


@dataclass(frozen=True, slots=True)
class Fault:
    endpoint: str
    """One of FAULT_ENDPOINTS."""
    status: int = 500
    body: Any = None
    """A JSON value (sent as JSON), str or bytes (sent as they are) or None (the endpoint's
    own answer to an unexpected failure, see `failure_body`)."""
    content_type: str = ""
    """"" = application/json for JSON bodies, text/plain for strings."""
    count: int = 1
    """How many requests in a row get this answer."""
    headers: dict[str, str] = field(default_factory=dict)
    """Response headers to send too, e.g. `{"Retry-After": "1"}` (not Content-Type)."""

    def __post_init__(self) -> None:
        if self.endpoint not in FAULT_ENDPOINTS:
            raise ValueError(f"endpoint must be one of {', '.join(FAULT_ENDPOINTS)}")
        if not 100 <= self.status <= 599:
            raise ValueError("status must be an HTTP status code")
        if self.count < 1:
            raise ValueError("count must be at least 1")
        if not _string_map(self.headers):
            raise ValueError("headers must map header names to strings")
        if any(name.lower() == "content-type" for name in self.headers):
            raise ValueError("set the Content-Type with content_type, not headers")

    @classmethod
    def from_json(cls, data: Any) -> Fault:
        """Build from a `POST /_dev/faults` body; ValueError says what is wrong."""
        if not isinstance(data, dict):
            raise ValueError("the body must be a JSON object")
        unknown = set(data) - _FAULT_FIELDS
        if unknown:
            raise ValueError(f"unknown fields: {', '.join(sorted(unknown))}")
        status, count = data.get("status", 500), data.get("count", 1)
        content_type = data.get("content_type", "")
        if not isinstance(status, int) or not isinstance(count, int):
            raise ValueError("status and count must be integers")
        if not isinstance(content_type, str):
            raise ValueError("content_type must be a string")
        headers = data.get("headers", {})
        if not _string_map(headers):
            raise ValueError("headers must be an object of strings")
        endpoint = str(data.get("endpoint", ""))
        return cls(endpoint, status, data.get("body"), content_type, count, dict(headers))

    def response(self) -> web.Response:
        body = self.body
        if body is None:
            body = failure_body(self.endpoint, self.status)
        if isinstance(body, str | bytes):
            return web.Response(
                status=self.status,
                body=body.encode() if isinstance(body, str) else body,
                content_type=self.content_type or "text/plain",
                headers=self.headers,
            )
        return web.Response(
            status=self.status,
            body=json.dumps(body).encode(),
            content_type=self.content_type or "application/json",
            headers=self.headers,
        )


@dataclass(slots=True)
class _Armed:
    fault: Fault
    remaining: int = field(default=0)


class FaultBook:
    """Armed faults, served first-in first-out per endpoint."""

    def __init__(self) -> None:
        self._queues: dict[str, deque[_Armed]] = {}

    def add(self, fault: Fault) -> None:
        self._queues.setdefault(fault.endpoint, deque()).append(_Armed(fault, fault.count))

    def take(self, endpoint: str) -> Fault | None:
        """The fault for this request to `endpoint`, using up one of its count."""
        queue = self._queues.get(endpoint)
        if not queue:
            return None
        armed = queue[0]
        armed.remaining -= 1
        if armed.remaining <= 0:
            queue.popleft()
        return armed.fault

    def pending(self) -> list[dict[str, Any]]:
        """What is still armed, for `GET /_dev/faults`."""
        return [
            {"endpoint": endpoint, "status": armed.fault.status, "remaining": armed.remaining}
            for endpoint, queue in self._queues.items()
            for armed in queue
        ]

    def clear(self) -> None:
        self._queues.clear()
