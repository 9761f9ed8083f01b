"""Scripted failures: what the next N requests to an endpoint get instead of a good answer.

A test arms a fault (in-process through `state.faults` or with `POST /_dev/faults`) to see
how the client copes with a 500, a 429 with its Retry-After header, a body that is not
JSON, a server that stalls or hangs up half-way, a broken event stream or garbage audio,
without a real service misbehaving on cue. A fault strikes after the auth check and is
logged with fault=True and its fault_mode. This module is the model (what is armed, and
checking it); `fault_responses` is how each mode answers.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

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
OPENAI_ENDPOINTS: tuple[str, ...] = (
    "audio-transcriptions",
    "audio-speech",
    "chat-completions",
    "models",
)
"""Route names of the OpenAI-compatible endpoints (request log and fault names)."""
FAULT_ENDPOINTS: tuple[str, ...] = DIFY_ENDPOINTS + CONVAI_ENDPOINTS + OPENAI_ENDPOINTS
"""Route names a fault can target (`completion-messages-stop` is the stop call)."""
_FAULT_FIELDS = frozenset(
    {"endpoint", "status", "body", "content_type", "count", "headers", "mode", "after", "stall_s"}
)
FAULT_MODES: tuple[str, ...] = (
    "respond",
    "stall",
    "cut",
    "malformed_sse",
    "sse_error",
    "corrupt_audio",
    "empty_audio",
)
"""What a fault does; see `Fault.mode`."""
SSE_ENDPOINTS: tuple[str, ...] = ("completion-messages", "chat-messages")
"""Dify's answer streams: where `malformed_sse` and `sse_error` apply."""
AUDIO_ENDPOINTS: tuple[str, ...] = ("text-to-audio", "audio-speech", "convai-tts")
"""Speech bodies: where `corrupt_audio` and `empty_audio` apply."""
_MODE_ENDPOINTS = {
    "malformed_sse": SSE_ENDPOINTS,
    "sse_error": SSE_ENDPOINTS,
    "corrupt_audio": AUDIO_ENDPOINTS,
    "empty_audio": AUDIO_ENDPOINTS,
}
MAX_STALL_S = 600.0


def _string_map(value: Any) -> bool:
    return isinstance(value, dict) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    )


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass(frozen=True, slots=True)
class Fault:
    endpoint: str
    """One of FAULT_ENDPOINTS."""
    status: int = 500
    """respond: the HTTP status. sse_error: the `status` of the error event (the stream
    itself is a 200). The other modes answer with the endpoint's own status, or none."""
    body: Any = None
    """respond: a JSON value (sent as JSON), str or bytes (sent as they are) or None (the
    endpoint's own answer to an unexpected failure, see `fault_responses.failure_body`).
    malformed_sse: str or bytes to send instead of the built-in broken stream.
    sse_error: a JSON object whose `code`, `message` and `status` go into the error event
    (None = Dify's internal_server_error)."""
    content_type: str = ""
    """respond: "" = application/json for JSON bodies, text/plain for strings."""
    count: int = 1
    """How many requests in a row get this fault."""
    headers: dict[str, str] = field(default_factory=dict)
    """respond, malformed_sse: response headers to send too, e.g. `{"Retry-After": "1"}`
    (not Content-Type)."""
    mode: str = "respond"
    """What goes wrong:
    - `respond`: `status`, `headers` and `body` in place of the endpoint's answer;
    - `stall`: nothing at all for `stall_s` (after `after` writes of the real answer),
      then the connection is dropped;
    - `cut`: the real answer's first `after` writes, half of the next one, then the
      connection is dropped (no final chunk: the client sees a body cut short);
    - `malformed_sse`: a 200 event stream with broken lines (an event's JSON split over
      two lines, a JSON line without its `data:` field name);
    - `sse_error`: the real stream's first `after` events, then Dify's in-stream
      `{"event": "error", "status", "code", "message"}`, and the end of the stream;
    - `corrupt_audio`: the real answer's status and headers (the right audio type), every
      byte of its body replaced by garbage that no audio format starts with;
    - `empty_audio`: the real answer's status and headers, and an empty body."""
    after: int | None = None
    """stall, cut, sse_error: how many writes of the real answer go out before the fault
    strikes (a write is one SSE event or keep-alive, one audio chunk of `tts_chunk_bytes`,
    or a whole JSON answer). None = before the status line, so not even headers are sent
    (stall, cut; sse_error reads it as 0)."""
    stall_s: float = 30.0
    """stall: how long nothing is sent."""

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
        self._check_mode()

    def _check_mode(self) -> None:
        if self.mode not in FAULT_MODES:
            raise ValueError(f"mode must be one of {', '.join(FAULT_MODES)}")
        endpoints = _MODE_ENDPOINTS.get(self.mode)
        if endpoints is not None and self.endpoint not in endpoints:
            raise ValueError(f"mode {self.mode} applies to {', '.join(endpoints)} only")
        if self.after is not None and self.after < 0:
            raise ValueError("after must be None or at least 0")
        if not 0 < self.stall_s <= MAX_STALL_S:
            raise ValueError(f"stall_s must be above 0 and at most {MAX_STALL_S:g}")
        if self.mode == "sse_error" and not (self.body is None or isinstance(self.body, dict)):
            raise ValueError("an sse_error body must be a JSON object (code, message, status)")

    @classmethod
    def from_json(cls, data: Any) -> Fault:
        """Build from a `POST /_dev/faults` body; ValueError says what is wrong."""
        if not isinstance(data, dict):
            raise ValueError("the body must be a JSON object")
        unknown = set(data) - _FAULT_FIELDS
        if unknown:
            raise ValueError(f"unknown fields: {', '.join(sorted(unknown))}")
        status, count = data.get("status", 500), data.get("count", 1)
        content_type, mode = data.get("content_type", ""), data.get("mode", "respond")
        after, stall_s = data.get("after"), data.get("stall_s", 30.0)
        if not isinstance(status, int) or not isinstance(count, int):
            raise ValueError("status and count must be integers")
        if not isinstance(content_type, str) or not isinstance(mode, str):
            raise ValueError("content_type and mode must be strings")
        if after is not None and (not isinstance(after, int) or isinstance(after, bool)):
            raise ValueError("after must be an integer or null")
        if not _number(stall_s):
            raise ValueError("stall_s must be a number")
        headers = data.get("headers", {})
        if not _string_map(headers):
            raise ValueError("headers must be an object of strings")
        endpoint = str(data.get("endpoint", ""))
        body = data.get("body")
        return cls(
            endpoint, status, body, content_type, count, dict(headers), mode, after, float(stall_s)
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
            {
                "endpoint": endpoint,
                "mode": armed.fault.mode,
                "status": armed.fault.status,
                "remaining": armed.remaining,
            }
            for endpoint, queue in self._queues.items()
            for armed in queue
        ]

    def clear(self) -> None:
        self._queues.clear()
