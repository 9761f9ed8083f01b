"""How an armed fault answers (the model and its checks are in `faults`).

`respond` and `malformed_sse` answer in place of the endpoint. The other modes let the
endpoint produce its real answer and tamper with it on the way out: the middleware puts a
`BodyTamper` on the request, and every body writer sends through `write_body`, which hands
each write to it. A JSON answer (a web.Response, written by aiohttp after the handler) is
replayed through the tamper by `with_fault` itself.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
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
from assistant.devserver.faults import CONVAI_ENDPOINTS, OPENAI_ENDPOINTS, Fault

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

MALFORMED_SSE = (
    b'data: {"event": "message", "answer": "Hel\n'
    b'lo"}\n'
    b"\n"
    b'{"event": "message_end", "metadata": {}}\n'
    b"\n"
)
"""The `malformed_sse` body: the first event's JSON runs over two lines (the second without
its `data:` field name, as a proxy that re-wraps long lines would send it), then a bare
JSON line where an event was due."""
_GARBAGE = bytes(range(1, 251))
"""Repeated for `corrupt_audio`: no 0xFF (so no MPEG or ADTS frame sync) and no magic of a
container format, so no decoder can take it for audio."""


NO_RESPONSE = 444
"""The status logged for a request whose connection was dropped before any answer."""


class BodyTampered(ConnectionResetError):
    """The fault ended the answer: writers stop as they do when the client hangs up."""


TAMPER_KEY: web.RequestKey[BodyTamper] = web.RequestKey("devserver_tamper")


def failure_body(endpoint: str, status: int) -> Any:
    """What `endpoint` itself answers to an unexpected failure, in its service's shape."""
    if endpoint in OPENAI_ENDPOINTS:
        return openai_error_body(OPENAI_SERVER_ERROR_MESSAGE, "server_error")
    if endpoint == "convai-tts":
        return CONVAI_TTS_FAILED_BODY
    if endpoint in CONVAI_ENDPOINTS:
        return CONVAI_SERVER_FAILURE_BODY
    return dify_error_body(status, "internal_server_error", INTERNAL_ERROR_MESSAGE)


def canned_response(fault: Fault) -> web.Response:
    """The answer of a `respond` or `malformed_sse` fault."""
    if fault.mode == "malformed_sse":
        body = fault.body if isinstance(fault.body, str | bytes) else MALFORMED_SSE
        return web.Response(
            status=200,
            body=body.encode() if isinstance(body, str) else body,
            content_type="text/event-stream",
            headers=fault.headers,
        )
    body = fault.body
    if body is None:
        body = failure_body(fault.endpoint, fault.status)
    if isinstance(body, str | bytes):
        return web.Response(
            status=fault.status,
            body=body.encode() if isinstance(body, str) else body,
            content_type=fault.content_type or "text/plain",
            headers=fault.headers,
        )
    return web.Response(
        status=fault.status,
        body=json.dumps(body).encode(),
        content_type=fault.content_type or "application/json",
        headers=fault.headers,
    )


def _drop(request: web.Request) -> None:
    """Hang up: what was written is still flushed, then the connection closes."""
    if request.transport is not None:
        request.transport.close()


def garbage(size: int, offset: int = 0) -> bytes:
    """`size` bytes of `_GARBAGE`, continuing from `offset` into the pattern."""
    start = offset % len(_GARBAGE)
    repeats = (start + size) // len(_GARBAGE) + 1
    return (_GARBAGE * repeats)[start : start + size]


class BodyTamper:
    """Applies a stall, cut, sse_error, corrupt_audio or empty_audio fault to one answer.

    `details` (the request's log record) gets `fault_struck` once the answer is changed: a
    fault whose `after` is beyond the end of the real answer never strikes.
    """

    def __init__(self, fault: Fault, details: dict[str, Any]) -> None:
        self.fault = fault
        self._details = details
        self.response: web.StreamResponse | None = None
        """The response written to (what the handler returns, even when it was cut)."""
        self._writes = 0
        self._sent = 0
        self._ids: dict[str, str] = {}

    async def write(self, request: web.Request, response: web.StreamResponse, data: bytes) -> None:
        self.response = response
        mode = self.fault.mode
        if mode in ("empty_audio", "corrupt_audio"):
            self._details["fault_struck"] = True
        if mode == "empty_audio":
            return
        if mode == "corrupt_audio":
            await response.write(garbage(len(data), self._sent))
            self._sent += len(data)
            return
        if self._writes < (self.fault.after or 0):
            self._writes += 1
            if mode == "sse_error":
                self._note_ids(data)
            await response.write(data)
            return
        # The fault strikes at this write.
        self._details["fault_struck"] = True
        if mode == "sse_error":
            await response.write(self._error_event())
            await response.write_eof()
            raise BodyTampered("the stream ended with an error event")
        if mode == "cut":
            await response.write(data[: len(data) // 2])
        else:
            await asyncio.sleep(self.fault.stall_s)
        _drop(request)
        raise BodyTampered(f"{mode}: the connection was dropped")

    def _note_ids(self, data: bytes) -> None:
        """Remember the stream's ids, for an error event that belongs to it."""
        if not data.startswith(b"data: "):
            return
        try:
            event = json.loads(data[len(b"data: ") :])
        except ValueError:
            return
        if isinstance(event, dict):
            for name in ("task_id", "message_id", "conversation_id"):
                if isinstance(event.get(name), str):
                    self._ids[name] = event[name]

    def _error_event(self) -> bytes:
        # Dify's ErrorStreamResponse: the stream's ids, then status, code and message.
        body = self.fault.body if isinstance(self.fault.body, dict) else {}
        event: dict[str, Any] = {"event": "error"}
        if "conversation_id" in self._ids:
            event["conversation_id"] = self._ids["conversation_id"]
        event["task_id"] = self._ids.get("task_id") or str(uuid.uuid4())
        event["message_id"] = self._ids.get("message_id") or str(uuid.uuid4())
        event["status"] = body.get("status", self.fault.status)
        event["code"] = body.get("code", "internal_server_error")
        event["message"] = body.get("message", INTERNAL_ERROR_MESSAGE)
        return f"data: {json.dumps(event)}\n\n".encode()

    async def replay(self, request: web.Request, answer: web.Response) -> web.StreamResponse:
        """Send a ready-made answer (a JSON body) through the tamper, as one write."""
        body = answer.body if isinstance(answer.body, bytes) else b""
        stream = web.StreamResponse(status=answer.status, reason=answer.reason)
        stream.headers.update(answer.headers)
        stream.content_length = len(body)
        await stream.prepare(request)
        try:
            await self.write(request, stream, body)
            await stream.write_eof()
        except BodyTampered:
            pass
        return stream


async def write_body(request: web.Request, response: web.StreamResponse, data: bytes) -> None:
    """`response.write(data)`, through the request's armed fault if it has one.

    Raises BodyTampered (a ConnectionResetError) when the fault ends the answer.
    """
    tamper = request.get(TAMPER_KEY)
    if tamper is None:
        await response.write(data)
    else:
        await tamper.write(request, response, data)


def with_fault(fault: Fault, handler: Handler, details: dict[str, Any]) -> Handler:
    """`handler` with `fault` applied to the answer; `details` is the request's log record's
    (see `BodyTamper`)."""

    async def faulty(request: web.Request) -> web.StreamResponse:
        if fault.mode in ("respond", "malformed_sse"):
            details["fault_struck"] = True
            return canned_response(fault)
        if fault.after is None and fault.mode in ("stall", "cut"):
            details["fault_struck"] = True
            if fault.mode == "stall":
                await asyncio.sleep(fault.stall_s)
            _drop(request)
            # Never sent (aiohttp finds the transport closed and lets it be); the log shows
            # nginx's 444 "connection closed without response".
            return web.Response(status=NO_RESPONSE)
        tamper = BodyTamper(fault, details)
        request[TAMPER_KEY] = tamper
        try:
            answer = await handler(request)
        except BodyTampered:
            # A writer that does not stop at ConnectionResetError itself.
            assert tamper.response is not None
            return tamper.response
        # A ready-made JSON answer is only cut or stalled: a JSON refusal of an audio or
        # stream request is not audio to corrupt, nor a stream to end with an error.
        ready = isinstance(answer, web.Response) and not answer.prepared
        if ready and fault.mode in ("stall", "cut"):
            return await tamper.replay(request, answer)
        return answer

    return faulty
