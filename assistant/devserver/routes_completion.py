"""`POST /completion-messages` (blocking and SSE) and `POST /completion-messages/{task_id}/stop`."""

from __future__ import annotations

from aiohttp import web

from assistant.devserver import replies
from assistant.devserver.answers import (
    Answer,
    answer_request,
    refuse_problems,
    request_problems,
    response_mode,
    stop_task,
)
from assistant.devserver.jsonio import json_body, required_user
from assistant.devserver.state import STATE_KEY


async def completion_messages(request: web.Request) -> web.StreamResponse:
    body = await json_body(request)
    user = required_user(body)
    refuse_problems(request_problems(body), "CompletionRequestPayload")
    # `query` is a legacy, optional field of a Text Generator app.
    query = body.get("query", "")
    sentences = request.app[STATE_KEY].options.reply_sentences
    answer = Answer(query, user, replies.reply_for(query, sentences), mode="completion")
    return await answer_request(request, answer, response_mode(body))


async def stop_completion(request: web.Request) -> web.Response:
    return await stop_task(request)
