"""`POST /chat-messages` (blocking and SSE) and `POST /chat-messages/{task_id}/stop`.

A Chatbot, Agent or Chatflow app (`app_mode`): the same answer machinery as
/completion-messages, plus conversations. An empty or absent `conversation_id` starts one
(a uuid4 sent in every event and answer); an unknown one, or another user's, is 404
`not_found` "Conversation Not Exists.", as Dify answers for a deleted conversation. The
app's form checks `inputs` only when a conversation starts: Dify then keeps the
conversation's inputs and ignores those of later turns.
"""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import web

from assistant.devserver.answers import (
    Answer,
    answer_request,
    form_inputs,
    refuse_problems,
    request_problems,
    response_mode,
    stop_task,
)
from assistant.devserver.conversations import Conversation, chat_reply
from assistant.devserver.errors import DifyError, invalid_param, not_chat_app
from assistant.devserver.jsonio import json_body, required_user
from assistant.devserver.middleware import API_PREFIX, record_of
from assistant.devserver.state import STATE_KEY, DevServerState

CONVERSATION_NOT_FOUND = "Conversation Not Exists."
AGENT_BLOCKING_MESSAGE = "Agent Chat App does not support blocking mode"
"""The ValueError an Agent app's generator raises for `response_mode: blocking`."""


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _validate(body: dict[str, Any]) -> tuple[str, str]:
    """(query, conversation_id) from a ChatRequestPayload; "" = a new conversation."""
    problems = request_problems(body)
    if "query" not in body:
        problems.append("query\n  Field required [type=missing]")
    conversation_id = body.get("conversation_id")
    if conversation_id is not None and not isinstance(conversation_id, str):
        problems.append("conversation_id\n  Input should be a valid string [type=string_type]")
    elif conversation_id and not _is_uuid(conversation_id):
        problems.append(
            f"conversation_id\n  Value error, {conversation_id} is not a valid uuid. "
            "[type=value_error]"
        )
    auto_name = body.get("auto_generate_name")
    if auto_name is not None and not isinstance(auto_name, bool):
        problems.append("auto_generate_name\n  Input should be a valid boolean [type=bool_type]")
    refuse_problems(problems, "ChatRequestPayload")
    query = body["query"]
    if not query:
        # The chat generator's own check, after the payload's.
        raise invalid_param("query is required")
    return query, conversation_id or ""


def _conversation(state: DevServerState, conversation_id: str, user: str) -> Conversation:
    """The conversation to continue, or a new one; 404 when it does not exist for `user`."""
    if not conversation_id:
        conversation = Conversation(user)
        state.conversations[conversation.id] = conversation
        return conversation
    conversation = state.conversations.get(conversation_id)
    if conversation is None or conversation.user != user:
        raise DifyError(404, "not_found", CONVERSATION_NOT_FOUND)
    return conversation


async def chat_messages(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    body = await json_body(request)
    user = required_user(body)
    app_mode = state.options.app_mode or "chat"
    if app_mode == "completion":
        raise not_chat_app()  # Dify's check of the app's mode, before the payload's
    query, requested = _validate(body)
    mode = response_mode(body)
    if app_mode == "agent-chat" and mode == "blocking":
        raise invalid_param(AGENT_BLOCKING_MESSAGE)
    # Logged before the lookup, so a 404 shows which conversation was asked for.
    record = record_of(request)
    record.details.update(requested_conversation_id=requested, query=query)
    if not requested:
        form_inputs(request, body)
    conversation = _conversation(state, requested, user)
    conversation.turns += 1
    record.details.update(conversation_id=conversation.id, turn=conversation.turns)
    answer = Answer(
        query,
        user,
        chat_reply(query, conversation.turns, state.options.reply_sentences),
        mode=app_mode,
        conversation_id=conversation.id,
    )
    return await answer_request(request, answer, mode)


async def stop_chat(request: web.Request) -> web.Response:
    return await stop_task(request)


def add_chat_routes(router: web.UrlDispatcher) -> None:
    """Register `chat-messages` and `chat-messages-stop` (the names faults target)."""
    router.add_post(f"{API_PREFIX}/chat-messages", chat_messages, name="chat-messages")
    router.add_post(
        f"{API_PREFIX}/chat-messages/{{task_id}}/stop", stop_chat, name="chat-messages-stop"
    )
