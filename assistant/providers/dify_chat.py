"""Dify Chatbot / Agent / Chatflow apps: /chat-messages with conversation memory.

The conversation is Dify's: it keeps the history, the client keeps only its id,
taken from the answer's events and sent with the next question. A conversation the
service no longer knows (deleted, expired, another Dify) answers 404 `not_found`
"Conversation Not Exists."; the question is then asked once more in a new one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import TYPE_CHECKING, Any

from assistant.providers.base import Delta, ServiceError
from assistant.providers.dify_stream import (
    SERVICE,
    AnswerIds,
    blocking_answer,
    stop_task,
    streamed_answer,
)

if TYPE_CHECKING:
    from assistant.providers.dify import DifyClient

log = logging.getLogger(__name__)

_PATH = "chat-messages"


def _conversation_lost(error: ServiceError) -> bool:
    return error.status == 404 and error.code == "not_found"


class DifyChat:
    """Streaming (or blocking) /chat-messages that carries the conversation across turns.

    Agent apps' `agent_message` chunks are read like `message`; agent thoughts and
    Chatflow's workflow/node events are skipped. With `speech`, the stream's own speech
    arrives as audio Deltas, as with DifyCompletion.
    """

    service = SERVICE

    def __init__(self, client: DifyClient, speech: bool = True) -> None:
        self._client = client
        self._speech = speech
        self._ids = AnswerIds()
        self._last_turn: float | None = None

    @property
    def conversation_id(self) -> str | None:
        """The conversation the next question continues; None = a new one."""
        return self._ids.conversation_id

    def reset_conversation(self) -> None:
        """Start the next question in a new conversation."""
        self._ids.conversation_id = None

    async def _body(self, query: str, mode: str) -> dict[str, Any]:
        return {
            **await self._client.answer_body(query, mode),
            "conversation_id": self._ids.conversation_id or "",
            # Naming costs the app an extra model call per new conversation; a voice
            # appliance never shows the conversation list.
            "auto_generate_name": False,
        }

    def _forget_if_idle(self) -> None:
        idle_limit = self._client.settings.conversation_idle_s
        if self._last_turn is not None and time.monotonic() - self._last_turn > idle_limit:
            if self._ids.conversation_id:
                log.info("dify conversation idle for over %.0f s: starting anew", idle_limit)
            self.reset_conversation()

    async def stream(self, query: str) -> AsyncIterator[Delta]:
        self._forget_if_idle()
        try:
            async with aclosing(self._ask(query, retry_lost=True)) as deltas:
                async for delta in deltas:
                    yield delta
        finally:
            # Idle time counts from the end of a turn, so a long answer is not "idle".
            self._last_turn = time.monotonic()

    async def _ask(self, query: str, retry_lost: bool) -> AsyncIterator[Delta]:
        self._ids.new_turn()
        continued = self._ids.conversation_id
        mode = "blocking" if self._client.settings.response_mode == "blocking" else "streaming"
        body = await self._body(query, mode)
        http = self._client.http
        yielded = False
        try:
            if mode == "blocking":
                yield await blocking_answer(http, _PATH, body, "completion", self._ids)
                return
            streamed = streamed_answer(http, _PATH, body, "completion", self._ids, self._speech)
            async with aclosing(streamed) as deltas:
                async for delta in deltas:
                    yielded = True
                    yield delta
            return
        except ServiceError as exc:
            # Only a refusal before any answer can be asked again without repeating words.
            if yielded or not (retry_lost and continued and _conversation_lost(exc)):
                raise
            log.warning(
                "dify conversation %s is gone (%s); asking again in a new one",
                continued,
                exc.message,
            )
        self.reset_conversation()
        async with aclosing(self._ask(query, retry_lost=False)) as deltas:
            async for delta in deltas:
                yield delta

    async def stop(self) -> None:
        task_id, self._ids.task_id = self._ids.task_id, None
        await stop_task(self._client.http, _PATH, task_id, self._client.user)
