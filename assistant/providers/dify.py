"""Dify service API: /audio-to-text, /completion-messages or /chat-messages, /text-to-audio.

Quirks honoured here (see shared/reference/API_NOTES.md):
- the upload's part Content-Type must be exactly `audio/wav` (`audio/x-wav` is refused);
- `/text-to-audio` answers raw audio, chunked, usually `audio/mpeg`, but `200 null` (JSON)
  when a `message_id` is unknown or another user's.

Reading answers (SSE events, in-stream speech, errors) is shared with the chat client in
`dify_stream`; the Chatbot/Agent/Chatflow client with conversation memory is in `dify_chat`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import httpx

from assistant.providers.base import AudioChunk, Delta, ServiceError, SpeechInput
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

MAX_UPLOAD_BYTES = 30 * 1024 * 1024
"""Dify's /audio-to-text limit; larger uploads are refused before sending."""
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

    async def parameters(self) -> dict[str, Any]:
        """GET /parameters: checks the key and warms the connection at start."""
        try:
            response = await self.http.get("parameters")
        except httpx.HTTPError as exc:
            raise transport_error(SERVICE, "parameters", exc) from None
        await raise_for_status(SERVICE, "parameters", response)
        return json_object(response.content, SERVICE, "parameters")

    async def warm(self) -> None:
        self.app_parameters = await self.parameters()

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

    The stream's own speech (`tts_message`, when the app auto-plays) arrives as audio
    Deltas after the text; the task is remembered so that `stop` can end it.
    """

    service = SERVICE

    def __init__(self, client: DifyClient) -> None:
        self._client = client
        self._ids = AnswerIds()

    def _body(self, query: str, mode: str) -> dict[str, Any]:
        return answer_body(self._client.settings.inputs, self._client.user, query, mode)

    async def stream(self, query: str) -> AsyncIterator[Delta]:
        self._ids.new_turn()
        http = self._client.http
        if self._client.settings.response_mode == "blocking":
            body = self._body(query, "blocking")
            yield await blocking_answer(http, _PATH, body, "completion", self._ids)
            return
        body = self._body(query, "streaming")
        async with aclosing(streamed_answer(http, _PATH, body, "completion", self._ids)) as deltas:
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


def make_dify_completion(client: DifyClient) -> DifyCompletion | DifyChat:
    """The Completion for the configured app type: `chat` → DifyChat, else DifyCompletion."""
    if client.settings.app == "chat":
        return DifyChat(client)
    return DifyCompletion(client)
