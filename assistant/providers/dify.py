"""Dify service API: /audio-to-text, /completion-messages or /chat-messages, /text-to-audio.

Quirks honoured here (see shared/reference/API_NOTES.md):
- the upload's part Content-Type must be exactly `audio/wav` (`audio/x-wav` is refused);
- `/text-to-audio` answers raw audio, chunked, usually `audio/mpeg`, but `200 null` (JSON)
  when a `message_id` is unknown or another user's.

Reading answers (SSE events, in-stream speech, errors) is shared with the chat client in
`dify_stream`; the Chatbot/Agent/Chatflow client with conversation memory is in `dify_chat`.
Where the question goes in the request, and what the start-up check makes of the app's
/parameters and /info, is `dify_app`'s business.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import httpx

from assistant.providers.base import AudioChunk, Delta, ServiceError, SpeechInput
from assistant.providers.dify_app import form_fields, question_inputs, question_target
from assistant.providers.dify_chat import DifyChat
from assistant.providers.dify_stream import (
    SERVICE,
    AnswerIds,
    answer_body,
    blocking_answer,
    stop_task,
    streamed_answer,
)
from assistant.providers.http import (
    is_page_type,
    json_object,
    make_client,
    media_type,
    raise_for_status,
    transcribe_wav,
    transport_error,
    unexpected_type,
)
from assistant.settings import DifySettings, HttpSettings

log = logging.getLogger(__name__)

MAX_UPLOAD_BYTES = 30 * 1024 * 1024
"""Dify's /audio-to-text limit; larger uploads are refused before sending."""
FORM_READ_TIMEOUT_S = 2.0
"""A question asked before the app's form could be read (Dify was unreachable at start)
waits at most this long for it first."""
INFO_TIMEOUT_S = 5.0
_PATH = "completion-messages"


class DifyClient:
    """One kept-alive connection pool for every Dify call of one app."""

    def __init__(self, dify: DifySettings, http: HttpSettings, user: str) -> None:
        self.settings = dify
        self.user = user
        self.http = make_client(
            dify.base_url, http, {"Authorization": f"Bearer {dify.api_key.reveal()}"}, dify
        )
        self.app_parameters: dict[str, Any] | None = None
        """The app's /parameters, as the last warm-up read them (None before one succeeded)."""
        self.question = question_target(dify.question_variable, None, dify.inputs)
        """Where the transcript goes; from the app's input form once /parameters is read."""

    async def _get_object(self, path: str) -> dict[str, Any]:
        try:
            response = await self.http.get(path)
        except httpx.HTTPError as exc:
            raise transport_error(SERVICE, path, exc) from None
        await raise_for_status(SERVICE, path, response)
        return json_object(response.content, SERVICE, path)

    async def parameters(self) -> dict[str, Any]:
        """GET /parameters: checks the key and warms the connection at start."""
        return await self._get_object("parameters")

    async def warm(self) -> None:
        parameters = await self.parameters()
        self.app_parameters = parameters
        settings = self.settings
        fields = form_fields(parameters)
        self.question = question_target(settings.question_variable, fields, settings.inputs)

    async def app_info(self) -> dict[str, Any] | None:
        """GET /info (the app's name and mode); None when it cannot be read."""
        try:
            async with asyncio.timeout(INFO_TIMEOUT_S):
                return await self._get_object("info")
        except (ServiceError, TimeoutError) as exc:
            log.info("dify /info cannot be read (%s): the app's type is not checked", exc)
            return None

    async def answer_body(self, question: str, mode: str) -> dict[str, Any]:
        """The fields /completion-messages and /chat-messages share: the question in `query`
        (legacy apps read it) and in the app's question variable (newer apps read that)."""
        if self.app_parameters is None and self.settings.question_variable:
            try:
                async with asyncio.timeout(FORM_READ_TIMEOUT_S):
                    await self.warm()
            except (ServiceError, TimeoutError) as exc:
                log.debug("the app's input form is still unknown: %s", exc)
        inputs = question_inputs(self.question, question, self.settings.inputs)
        return answer_body(inputs, self.user, question, mode)

    async def aclose(self) -> None:
        await self.http.aclose()


class DifySpeechToText:
    """/audio-to-text with the utterance as a 16-bit WAV upload."""

    service = SERVICE

    def __init__(self, client: DifyClient) -> None:
        self._client = client

    async def transcribe(self, speech: SpeechInput) -> str:
        client = self._client
        form = {"user": client.user}
        return await transcribe_wav(
            client.http, SERVICE, "audio-to-text", speech, form, MAX_UPLOAD_BYTES, "Dify's 30 MB"
        )


class DifyCompletion:
    """Streaming (or blocking) /completion-messages of a Text Generator app.

    With `speech`, the stream's own speech (`tts_message`, when the app auto-plays) arrives
    as audio Deltas, and the answer lasts until it is complete; without, the answer ends
    at `message_end`. The task is remembered so that `stop` can end it.
    """

    service = SERVICE

    def __init__(self, client: DifyClient, speech: bool = True) -> None:
        self._client = client
        self._speech = speech
        self._ids = AnswerIds()

    async def stream(self, query: str) -> AsyncIterator[Delta]:
        self._ids.new_turn()
        http = self._client.http
        if self._client.settings.response_mode == "blocking":
            body = await self._client.answer_body(query, "blocking")
            yield await blocking_answer(http, _PATH, body, "completion", self._ids)
            return
        body = await self._client.answer_body(query, "streaming")
        streamed = streamed_answer(http, _PATH, body, "completion", self._ids, self._speech)
        async with aclosing(streamed) as deltas:
            async for delta in deltas:
                yield delta

    def reset_conversation(self) -> None:
        """A Text Generator app keeps no conversation."""

    async def stop(self) -> None:
        task_id, self._ids.task_id = self._ids.task_id, None
        await stop_task(self._client.http, _PATH, task_id, self._client.user)


class DifyTextToSpeech:
    """/text-to-audio: the text's speech, or with a `message_id` the stored answer's."""

    service = SERVICE

    def __init__(self, client: DifyClient) -> None:
        self._client = client

    def _body(self, text: str, message_id: str | None) -> dict[str, Any]:
        body: dict[str, Any] = {"user": self._client.user}
        if message_id:
            # Dify speaks the stored answer and ignores `text`; the same `user` must ask.
            body["message_id"] = message_id
        if text or not message_id:
            body["text"] = text
        if self._client.settings.voice:
            body["voice"] = self._client.settings.voice
        return body

    async def stream(self, text: str, message_id: str | None = None) -> AsyncIterator[AudioChunk]:
        body = self._body(text, message_id)
        try:
            async with self._client.http.stream("POST", "text-to-audio", json=body) as response:
                await raise_for_status(SERVICE, "tts", response)
                content_type = media_type(response)
                if content_type == "application/json":
                    # Dify answers 200 `null` when it has nothing to say (unknown message_id).
                    detail = (await response.aread())[:200].decode(errors="replace")
                    raise ServiceError(
                        SERVICE, "tts", "no_audio", f"JSON instead of audio: {detail}", status=200
                    )
                if is_page_type(content_type):
                    # Refused before any of it is passed on, so a fallback voice can speak.
                    raise await unexpected_type(SERVICE, "tts", response, "audio")
                received = False
                async for data in response.aiter_bytes():
                    if data:
                        received = True
                        yield AudioChunk(data, content_type or None)
                if not received:
                    raise ServiceError(SERVICE, "tts", "no_audio", "empty audio body", status=200)
        except httpx.HTTPError as exc:
            raise transport_error(SERVICE, "tts", exc) from None


def make_dify_completion(client: DifyClient, speech: bool = True) -> DifyCompletion | DifyChat:
    """The Completion for the configured app type: `chat` → DifyChat, else DifyCompletion.
    `speech`: the answer stream's own speech is wanted (tts = "dify-stream")."""
    if client.settings.app == "chat":
        return DifyChat(client, speech)
    return DifyCompletion(client, speech)
