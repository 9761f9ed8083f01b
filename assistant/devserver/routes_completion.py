"""`POST /completion-messages` (blocking and SSE) and `POST /completion-messages/{task_id}/stop`."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from assistant.devserver import replies
from assistant.devserver.errors import invalid_param
from assistant.devserver.jsonio import json_body, required_user
from assistant.devserver.middleware import record_of
from assistant.devserver.pacing import paced
from assistant.devserver.rendering import json_response
from assistant.devserver.state import STATE_KEY, DevServerState, RunningTask, StoredMessage

_RESPONSE_MODES = ("blocking", "streaming")


@dataclass(slots=True)
class _Completion:
    """One answer being produced, and what is needed to describe it."""

    query: str
    user: str
    task_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    message_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    created_at: int = field(default_factory=lambda: int(time.time()))
    started: float = field(default_factory=time.monotonic)
    sent: list[str] = field(default_factory=list)

    @property
    def answer(self) -> str:
        return "".join(self.sent)

    def base(self, event: str) -> dict[str, Any]:
        return {
            "event": event,
            "task_id": self.task_id,
            "message_id": self.message_id,
            "created_at": self.created_at,
        }

    def metadata(self) -> dict[str, Any]:
        usage = replies.usage(
            replies.prompt_tokens(self.query), len(self.sent), time.monotonic() - self.started
        )
        return {"usage": usage, "retriever_resources": []}


def _validate(body: dict[str, Any]) -> tuple[str, str]:
    """(query, response_mode) from a CompletionRequest; ValueError texts like pydantic's."""
    problems = []
    if "inputs" not in body:
        problems.append("inputs\n  Field required [type=missing]")
    elif not isinstance(body["inputs"], dict):
        problems.append("inputs\n  Input should be a valid dictionary [type=dict_type]")
    query = body.get("query", "")
    if not isinstance(query, str):
        problems.append("query\n  Input should be a valid string [type=string_type]")
    mode = body.get("response_mode")
    if mode is not None and mode not in _RESPONSE_MODES:
        problems.append(
            "response_mode\n  Input should be 'blocking' or 'streaming' [type=literal_error]"
        )
    files = body.get("files")
    if files is not None and not isinstance(files, list):
        problems.append("files\n  Input should be a valid list [type=list_type]")
    if problems:
        count = len(problems)
        plural = "s" if count > 1 else ""
        raise invalid_param(
            f"{count} validation error{plural} for CompletionRequestPayload\n" + "\n".join(problems)
        )
    # Omitted response_mode means blocking (Dify's documented default).
    return query, mode or "blocking"


def _sse(payload: dict[str, Any]) -> bytes:
    # json.dumps with its default separators, as Dify's convert_to_event_stream does.
    return f"data: {json.dumps(payload)}\n\n".encode()


async def completion_messages(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    body = await json_body(request)
    user = required_user(body)
    query, mode = _validate(body)
    completion = _Completion(query, user)
    record = record_of(request)
    record.details.update(
        query=query,
        task_id=completion.task_id,
        message_id=completion.message_id,
        response_mode=mode,
    )
    task = RunningTask(user)
    state.tasks[completion.task_id] = task
    try:
        if mode == "streaming":
            return await _stream(request, state, completion, task)
        return await _blocking(state, completion, task)
    finally:
        del state.tasks[completion.task_id]
        state.messages[completion.message_id] = StoredMessage(user, completion.answer)
        record.details.update(answer=completion.answer, stopped=task.stop.is_set())


async def _blocking(
    state: DevServerState, completion: _Completion, task: RunningTask
) -> web.Response:
    tokens = replies.tokens(replies.reply_for(completion.query))
    async for item in paced(tokens, lambda: state.options, task.stop):
        if isinstance(item, str):
            completion.sent.append(item)
    return json_response(
        {
            "event": "message",
            "task_id": completion.task_id,
            "id": completion.message_id,
            "message_id": completion.message_id,
            "mode": "completion",
            "answer": completion.answer,
            "metadata": completion.metadata(),
            "created_at": completion.created_at,
        }
    )


async def _stream(
    request: web.Request, state: DevServerState, completion: _Completion, task: RunningTask
) -> web.StreamResponse:
    response = web.StreamResponse()
    response.content_type = "text/event-stream"
    response.charset = "utf-8"
    await response.prepare(request)
    tokens = replies.tokens(replies.reply_for(completion.query))
    try:
        async for token in paced(tokens, lambda: state.options, task.stop):
            if not isinstance(token, str):
                # Dify's keep-alive is an event line with no data line at all.
                await response.write(b"event: ping\n\n")
                continue
            completion.sent.append(token)
            message = completion.base("message")
            message.update(id=completion.message_id, answer=token, from_variable_selector=None)
            await response.write(_sse(message))
        # A stopped task ends like a finished one: Dify answers the stop with message_end.
        end = completion.base("message_end")
        end.update(id=completion.message_id, metadata=completion.metadata(), files=None)
        await response.write(_sse(end))
        await response.write_eof()
    except ConnectionResetError:
        record_of(request).details["disconnected"] = True
    return response


async def stop_completion(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    body = await json_body(request)
    user = required_user(body)
    task_id = request.match_info["task_id"]
    task = state.tasks.get(task_id)
    stopped = False
    if task is not None and task.user == user:
        task.stop.set()
        stopped = True
    # Another user's (or an unknown) task is silently left alone, as Dify does.
    record_of(request).details.update(task_id=task_id, user=user, stopped=stopped)
    return json_response({"result": "success"})
