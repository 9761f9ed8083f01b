"""What /completion-messages and /chat-messages share: one answer, blocking or streamed.

An `Answer` knows its ids and its text; `answer_request` registers its task (for
`/{task_id}/stop`), sends it in the requested mode, and stores the finished message
(for `/text-to-audio` with `message_id`). A stream is paced like a model, pinged like
Dify, framed by the events of its app type (`app_streams`: Agent thoughts, Chatflow
workflow and node events), and, with the `stream_tts` option, carries the answer's own
speech as `tts_message` events (`stream_speech`).
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from assistant.devserver import replies
from assistant.devserver.app_streams import events_for
from assistant.devserver.errors import invalid_param
from assistant.devserver.fault_responses import write_body
from assistant.devserver.inputs import checked_inputs
from assistant.devserver.jsonio import json_body, required_user
from assistant.devserver.middleware import record_of
from assistant.devserver.pacing import paced
from assistant.devserver.rendering import json_response
from assistant.devserver.state import STATE_KEY, DevServerState, RunningTask, StoredMessage
from assistant.devserver.stream_speech import StreamSpeech

RESPONSE_MODES = ("blocking", "streaming")


@dataclass(slots=True)
class Answer:
    """One answer being produced, and what is needed to describe it."""

    query: str
    user: str
    reply: str
    """The whole text the "model" will write."""
    mode: str = "completion"
    """The app mode, as a blocking answer says it: `completion`, `chat`, `agent-chat` or
    `advanced-chat` (which also shapes the stream, see `app_streams`)."""
    conversation_id: str | None = None
    """Chat only: sent in every event and answer."""
    task_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    message_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    created_at: int = field(default_factory=lambda: int(time.time()))
    started: float = field(default_factory=time.monotonic)
    sent: list[str] = field(default_factory=list)

    @property
    def answer(self) -> str:
        """What has been written so far (all of `reply` unless stopped)."""
        return "".join(self.sent)

    def base(self, event: str) -> dict[str, Any]:
        """The fields every stream event of this answer carries."""
        fields: dict[str, Any] = {"event": event}
        if self.conversation_id is not None:
            fields["conversation_id"] = self.conversation_id
        fields.update(task_id=self.task_id, message_id=self.message_id, created_at=self.created_at)
        return fields

    def metadata(self) -> dict[str, Any]:
        usage = replies.usage(
            replies.prompt_tokens(self.query), len(self.sent), time.monotonic() - self.started
        )
        return {"usage": usage, "retriever_resources": []}

    def blocking_body(self) -> dict[str, Any]:
        body = self.base("message")
        body.update(
            id=self.message_id,
            mode=self.mode,
            answer=self.answer,
            metadata=self.metadata(),
        )
        return body


def request_problems(body: dict[str, Any]) -> list[str]:
    """Pydantic-style problems with the fields both request payloads share."""
    problems = []
    if "inputs" not in body:
        problems.append("inputs\n  Field required [type=missing]")
    elif not isinstance(body["inputs"], dict):
        problems.append("inputs\n  Input should be a valid dictionary [type=dict_type]")
    if not isinstance(body.get("query", ""), str):
        problems.append("query\n  Input should be a valid string [type=string_type]")
    mode = body.get("response_mode")
    if mode is not None and mode not in RESPONSE_MODES:
        problems.append(
            "response_mode\n  Input should be 'blocking' or 'streaming' [type=literal_error]"
        )
    files = body.get("files")
    if files is not None and not isinstance(files, list):
        problems.append("files\n  Input should be a valid list [type=list_type]")
    return problems


def form_inputs(request: web.Request, body: dict[str, Any]) -> dict[str, Any]:
    """The request's `inputs` as the app keeps them, checked against its form (400
    `invalid_param` as Dify words it); what was sent is logged either way."""
    sent = body["inputs"]
    record_of(request).details["inputs"] = dict(sent)
    return checked_inputs(request.app[STATE_KEY].options.user_input_form, sent)


def refuse_problems(problems: list[str], payload: str) -> None:
    """400 invalid_param listing `problems`, worded like pydantic's ValidationError."""
    if problems:
        count = len(problems)
        plural = "s" if count > 1 else ""
        raise invalid_param(
            f"{count} validation error{plural} for {payload}\n" + "\n".join(problems)
        )


def response_mode(body: dict[str, Any]) -> str:
    # An omitted response_mode means blocking (Dify's documented default).
    return body.get("response_mode") or "blocking"


def _sse(payload: dict[str, Any]) -> bytes:
    # json.dumps with its default separators, as Dify's convert_to_event_stream does.
    return f"data: {json.dumps(payload)}\n\n".encode()


async def answer_request(request: web.Request, answer: Answer, mode: str) -> web.StreamResponse:
    """Send `answer` in `mode`, stoppable while it runs, and keep it as a message after."""
    state = request.app[STATE_KEY]
    record = record_of(request)
    record.details.update(
        query=answer.query,
        task_id=answer.task_id,
        message_id=answer.message_id,
        response_mode=mode,
    )
    task = RunningTask(answer.user)
    state.tasks[answer.task_id] = task
    try:
        if mode == "streaming":
            return await _stream(request, state, answer, task)
        return await _blocking(state, answer, task)
    finally:
        del state.tasks[answer.task_id]
        state.messages[answer.message_id] = StoredMessage(answer.user, answer.answer)
        record.details.update(answer=answer.answer, stopped=task.stop.is_set())


async def _blocking(state: DevServerState, answer: Answer, task: RunningTask) -> web.Response:
    async for item in paced(replies.tokens(answer.reply), lambda: state.options, task.stop):
        if isinstance(item, str):
            answer.sent.append(item)
    # Dify makes no auto-play speech for blocking answers.
    return json_response(answer.blocking_body())


async def _stream(
    request: web.Request, state: DevServerState, answer: Answer, task: RunningTask
) -> web.StreamResponse:
    response = web.StreamResponse()
    response.content_type = "text/event-stream"
    response.charset = "utf-8"
    await response.prepare(request)

    async def send(event: dict[str, Any]) -> None:
        await write_body(request, response, _sse(event))

    app = events_for(answer, request.host)
    options = state.options
    # Dify's auto-play: only with text-to-speech on and autoPlay "enabled".
    speech = (
        StreamSpeech(answer, lambda: state.options, send)
        if options.stream_tts and options.text_to_speech
        else None
    )
    try:
        for event in app.opening():
            await send(event)
        async for token in paced(replies.tokens(answer.reply), lambda: state.options, task.stop):
            if not isinstance(token, str):
                # Dify's keep-alive is an event line with no data line at all.
                await write_body(request, response, b"event: ping\n\n")
                continue
            answer.sent.append(token)
            await send(app.chunk(token))
            if speech is not None:
                await speech.during_text()
        for event in app.text_done():
            await send(event)
        # A stopped task ends like a finished one: Dify answers the stop with message_end.
        end = answer.base("message_end")
        end.update(id=answer.message_id, metadata=answer.metadata(), files=None)
        await send(end)
        for event in app.closing(task.stop.is_set()):
            await send(event)
        if speech is not None and answer.answer and not task.stop.is_set():
            record_of(request).details.update(await speech.after_text(task.stop))
        await response.write_eof()
    except ConnectionResetError:
        record_of(request).details["disconnected"] = True
    finally:
        if speech is not None:
            await speech.aclose()
    return response


async def stop_task(request: web.Request) -> web.Response:
    """`POST /{completion,chat}-messages/{task_id}/stop`: only the task's own user stops it."""
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
