"""`POST /v1/chat/completions`: the dev server's answer as an OpenAI chat completion.

The answer is `reply_for(last user message)` (cut to the `reply_sentences` option), paced
like `/completion-messages` (the same `first_token_ms` and `tokens_per_second`), so other
voice frameworks can be benchmarked against the same server. `stream: true` gives
`chat.completion.chunk` events ending with a `finish_reason: "stop"` chunk (and a usage
chunk when `stream_options.include_usage`), then `data: [DONE]`. Parameters this server has
no use for (temperature, tools, ...) are accepted and ignored, as a model would ignore what
does not apply.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from assistant.devserver import replies
from assistant.devserver.fault_responses import write_body
from assistant.devserver.middleware import record_of
from assistant.devserver.openai_api import (
    invalid_request,
    json_object,
    missing_parameter,
    openai_errors,
    sse_event,
    start_sse,
)
from assistant.devserver.pacing import paced
from assistant.devserver.rendering import json_response
from assistant.devserver.state import STATE_KEY, DevServerState

ROLES = ("system", "developer", "user", "assistant", "tool", "function")
DONE = b"data: [DONE]\n\n"


@dataclass(slots=True)
class _Chat:
    model: str
    query: str
    stream: bool
    include_usage: bool
    id: str = field(default_factory=lambda: f"chatcmpl-{uuid.uuid4().hex}")
    created: int = field(default_factory=lambda: int(time.time()))
    sent: list[str] = field(default_factory=list)

    def usage(self) -> dict[str, int]:
        prompt = replies.prompt_tokens(self.query)
        return {
            "prompt_tokens": prompt,
            "completion_tokens": len(self.sent),
            "total_tokens": prompt + len(self.sent),
        }

    def chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return self._envelope("chat.completion.chunk", [choice])

    def usage_chunk(self) -> dict[str, Any]:
        """The last chunk of `include_usage` streams: no choices, the request's usage."""
        body = self._envelope("chat.completion.chunk", [])
        body["usage"] = self.usage()
        return body

    def _envelope(self, kind: str, choices: list[dict[str, Any]]) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id,
            "object": kind,
            "created": self.created,
            "model": self.model,
            "system_fingerprint": None,
            "choices": choices,
        }
        if self.include_usage:
            body["usage"] = None  # every chunk says null; the last one carries the numbers
        return body

    def completion(self) -> dict[str, Any]:
        message = {"role": "assistant", "content": "".join(self.sent), "refusal": None}
        choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": "stop"}
        body = self._envelope("chat.completion", [choice])
        body["usage"] = self.usage()
        return body


def _text_of(content: Any) -> str:
    """A message's text: a string, or the text parts of a content array."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part["text"]
            for part in content
            if isinstance(part, dict)
            and part.get("type") == "text"
            and isinstance(part.get("text"), str)
        )
    return ""


def _validate(body: dict[str, Any]) -> _Chat:
    for name in ("model", "messages"):
        if name not in body:
            raise missing_parameter(name)
    model, messages = body["model"], body["messages"]
    if not isinstance(model, str) or not model:
        raise invalid_request(
            "Invalid 'model': expected a non-empty string.", "model", "invalid_type"
        )
    if not isinstance(messages, list) or not messages:
        raise invalid_request(
            "Invalid 'messages': expected a non-empty array.", "messages", "invalid_type"
        )
    query = ""
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise invalid_request(
                f"Invalid 'messages[{index}]': expected an object with a valid 'role'.",
                f"messages[{index}]",
                "invalid_value",
            )
        if message["role"] == "user":
            query = _text_of(message.get("content"))
    stream = body.get("stream") is True
    options = body.get("stream_options")
    include_usage = stream and isinstance(options, dict) and options.get("include_usage") is True
    return _Chat(model, query, stream, include_usage)


@openai_errors
async def chat_completions(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    chat = _validate(await json_object(request))
    record = record_of(request)
    record.details.update(model=chat.model, query=chat.query, stream=chat.stream, id=chat.id)
    try:
        if chat.stream:
            return await _stream(request, state, chat)
        async for _token in _answer(state, chat):
            pass
        return json_response(chat.completion())
    finally:
        record.details["answer"] = "".join(chat.sent)


async def _answer(state: DevServerState, chat: _Chat) -> AsyncIterator[str]:
    """The answer's tokens on schedule, each also kept in `chat.sent`."""
    tokens = replies.tokens(replies.reply_for(chat.query, state.options.reply_sentences))
    # Nothing stops a chat completion but the client hanging up, which cancels this task.
    async for token in paced(tokens, lambda: state.options, asyncio.Event()):
        if isinstance(token, str):  # OpenAI sends no keep-alives: pings are skipped
            chat.sent.append(token)
            yield token


async def _stream(request: web.Request, state: DevServerState, chat: _Chat) -> web.StreamResponse:
    response = await start_sse(request)
    try:
        first = sse_event(chat.chunk({"role": "assistant", "content": ""}))
        await write_body(request, response, first)
        async for token in _answer(state, chat):
            await write_body(request, response, sse_event(chat.chunk({"content": token})))
        await write_body(request, response, sse_event(chat.chunk({}, "stop")))
        if chat.include_usage:
            await write_body(request, response, sse_event(chat.usage_chunk()))
        await write_body(request, response, DONE)
        await response.write_eof()
    except ConnectionResetError:
        record_of(request).details["disconnected"] = True
    return response
