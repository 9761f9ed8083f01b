"""Scripted failures: the next N requests to an endpoint get a canned answer.

A test arms a fault (in-process through `state.faults` or with
`POST /_dev/faults`) to see how the client copes with a 500, a 429 or a body
that is not JSON, without a real service misbehaving on cue. A fault answers
after the auth check, in place of the endpoint, and is logged with fault=True.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from assistant.devserver.errors import INTERNAL_ERROR_MESSAGE

FAULT_ENDPOINTS: tuple[str, ...] = (
    "audio-to-text",
    "completion-messages",
    "completion-messages-stop",
    "chat-messages",
    "chat-messages-stop",
    "text-to-audio",
    "parameters",
    "convai-tts",
    "convai-voices",
    "convai-languages",
    "audio-transcriptions",
    "audio-speech",
    "chat-completions",
)
"""Route names a fault can target (`completion-messages-stop` is the stop call; `convai-*`
are the Convai routes `/tts/`, `/tts/get_available_voices`, `/tts/get_available_languages`)."""


@dataclass(frozen=True, slots=True)
class Fault:
    endpoint: str
    """One of FAULT_ENDPOINTS."""
    status: int = 500
    body: Any = None
    """A JSON value (sent as JSON), str or bytes (sent as they are) or None (Dify's 500
    envelope)."""
    content_type: str = ""
    """"" = application/json for JSON bodies, text/plain for strings."""
    count: int = 1
    """How many requests in a row get this answer."""

    def __post_init__(self) -> None:
        if self.endpoint not in FAULT_ENDPOINTS:
            raise ValueError(f"endpoint must be one of {', '.join(FAULT_ENDPOINTS)}")
        if not 100 <= self.status <= 599:
            raise ValueError("status must be an HTTP status code")
        if self.count < 1:
            raise ValueError("count must be at least 1")

    @classmethod
    def from_json(cls, data: Any) -> Fault:
        """Build from a `POST /_dev/faults` body; ValueError says what is wrong."""
        if not isinstance(data, dict):
            raise ValueError("the body must be a JSON object")
        unknown = set(data) - {"endpoint", "status", "body", "content_type", "count"}
        if unknown:
            raise ValueError(f"unknown fields: {', '.join(sorted(unknown))}")
        status, count = data.get("status", 500), data.get("count", 1)
        content_type = data.get("content_type", "")
        if not isinstance(status, int) or not isinstance(count, int):
            raise ValueError("status and count must be integers")
        if not isinstance(content_type, str):
            raise ValueError("content_type must be a string")
        return cls(str(data.get("endpoint", "")), status, data.get("body"), content_type, count)

    def response(self) -> web.Response:
        body = self.body
        if body is None:
            body = {
                "code": "internal_server_error",
                "message": INTERNAL_ERROR_MESSAGE,
                "status": self.status,
            }
        if isinstance(body, str | bytes):
            return web.Response(
                status=self.status,
                body=body.encode() if isinstance(body, str) else body,
                content_type=self.content_type or "text/plain",
            )
        return web.Response(
            status=self.status,
            body=json.dumps(body).encode(),
            content_type=self.content_type or "application/json",
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
