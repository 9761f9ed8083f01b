"""`POST /completion-messages` (blocking and SSE) and `POST /completion-messages/{task_id}/stop`."""

from __future__ import annotations

from aiohttp import web

from assistant.devserver import replies
from assistant.devserver.answers import (
    Answer,
    answer_request,
    form_inputs,
    refuse_problems,
    request_problems,
    response_mode,
    stop_task,
)
from assistant.devserver.errors import app_unavailable
from assistant.devserver.inputs import asked_question
from assistant.devserver.jsonio import json_body, required_user
from assistant.devserver.state import STATE_KEY


async def completion_messages(request: web.Request) -> web.StreamResponse:
    options = request.app[STATE_KEY].options
    body = await json_body(request)
    user = required_user(body)
    if options.app_mode not in ("", "completion"):
        raise app_unavailable()  # Dify's check of the app's mode, before the payload's
    refuse_problems(request_problems(body), "CompletionRequestPayload")
    inputs = form_inputs(request, body)
    # `query` is a legacy, optional field: an app whose prompt has a `query` variable
    # answers that instead.
    query = asked_question(options.user_input_form, inputs, body.get("query", ""))
    answer = Answer(query, user, replies.reply_for(query, options.reply_sentences))
    return await answer_request(request, answer, response_mode(body))


async def stop_completion(request: web.Request) -> web.Response:
    return await stop_task(request)
