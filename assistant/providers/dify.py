"""Dify Completion App API: /audio-to-text, /completion-messages (SSE or blocking), /text-to-audio.

Quirks honoured here (see shared/reference/API_NOTES.md):
- the upload's part Content-Type must be exactly `audio/wav` (`audio/x-wav` is refused);
- an `error` event inside a 200 SSE stream is terminal;
- keep-alives are a bare `event: ping` with no data line;
- `/text-to-audio` answers raw audio, chunked, usually `audio/mpeg`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx

from assistant.audio.wav import encode_wav
from assistant.providers.base import AudioChunk, Delta, ServiceError, SpeechInput
from assistant.providers.http import make_client, raise_for_status, transport_error
from assistant.settings import DifySettings, HttpSettings
from assistant.text.sse import SSEParser

log = logging.getLogger(__name__)

SERVICE = "dify"
MAX_UPLOAD_BYTES = 30 * 1024 * 1024
"""Dify's /audio-to-text limit; larger uploads are refused before sending."""


class DifyClient:
    """One kept-alive connection pool for every Dify call of one app."""

    def __init__(self, dify: DifySettings, http: HttpSettings, user: str) -> None:
        self.settings = dify
        self.user = user
        self.http = make_client(
            dify.base_url, http, {"Authorization": f"Bearer {dify.api_key.reveal()}"}
        )

    async def parameters(self) -> dict[str, Any]:
        """GET /parameters: checks the key and warms the connection at start."""
        try:
            response = await self.http.get("parameters")
        except httpx.HTTPError as exc:
            raise transport_error(SERVICE, "parameters", exc) from None
        await raise_for_status(SERVICE, "parameters", response)
        return _json_object(response.content, "parameters")

    async def aclose(self) -> None:
        await self.http.aclose()


def _json_object(body: bytes, stage: str) -> dict[str, Any]:
    try:
        doc = json.loads(body)
    except ValueError:
        raise ServiceError(SERVICE, stage, "malformed_response", "answer is not JSON") from None
    if not isinstance(doc, dict):
        raise ServiceError(SERVICE, stage, "malformed_response", "answer is not a JSON object")
    return doc


class DifySpeechToText:
    service = SERVICE

    def __init__(self, client: DifyClient) -> None:
        self._client = client

    async def transcribe(self, speech: SpeechInput) -> str:
        wav = encode_wav(speech.samples, speech.sample_rate)
        if len(wav) > MAX_UPLOAD_BYTES:
            raise ServiceError(
                SERVICE, "stt", "audio_too_large", f"{len(wav)} bytes is over Dify's 30 MB limit"
            )
        files = {"file": ("utterance.wav", wav, "audio/wav")}
        try:
            response = await self._client.http.post(
                "audio-to-text", files=files, data={"user": self._client.user}
            )
        except httpx.HTTPError as exc:
            raise transport_error(SERVICE, "stt", exc) from None
        await raise_for_status(SERVICE, "stt", response)
        text = _json_object(response.content, "stt").get("text")
        if not isinstance(text, str):
            raise ServiceError(SERVICE, "stt", "malformed_response", "no `text` in the answer")
        return text.strip()


class DifyCompletion:
    """Streaming (or blocking) /completion-messages; remembers the task to stop it."""

    service = SERVICE

    def __init__(self, client: DifyClient) -> None:
        self._client = client
        self._task_id: str | None = None

    def _body(self, query: str, mode: str) -> dict[str, Any]:
        return {
            "inputs": dict(self._client.settings.inputs),
            "query": query,
            "response_mode": mode,
            "user": self._client.user,
        }

    async def stream(self, query: str) -> AsyncIterator[Delta]:
        self._task_id = None
        if self._client.settings.response_mode == "blocking":
            yield Delta(text=await self._blocking(query))
            return
        try:
            async with self._client.http.stream(
                "POST", "completion-messages", json=self._body(query, "streaming")
            ) as response:
                await raise_for_status(SERVICE, "completion", response)
                async for delta in self._events(response):
                    yield delta
        except httpx.HTTPError as exc:
            raise transport_error(SERVICE, "completion", exc) from None

    async def _events(self, response: httpx.Response) -> AsyncIterator[Delta]:
        parser = SSEParser()
        ended = False
        async for chunk in response.aiter_bytes():
            for sse in parser.feed(chunk):
                if not sse.data:
                    continue  # `event: ping`: a keep-alive, nothing to parse
                event = _json_object(sse.data.encode(), "completion")
                kind = event.get("event")
                self._task_id = event.get("task_id") or self._task_id
                if kind == "message":
                    yield Delta(text=str(event.get("answer") or ""))
                elif kind == "message_replace":
                    yield Delta(replace=str(event.get("answer") or ""))
                elif kind == "error":
                    raise ServiceError(
                        SERVICE,
                        "completion",
                        str(event.get("code") or "stream_error"),
                        str(event.get("message") or ""),
                        status=event.get("status")
                        if isinstance(event.get("status"), int)
                        else None,
                    )
                elif kind == "message_end":
                    ended = True
                # tts_message / message_file and future events: not for this provider
        parser.close()
        if not ended:
            raise ServiceError(
                SERVICE, "completion", "stream_cut", "the stream ended before message_end"
            )

    async def _blocking(self, query: str) -> str:
        try:
            response = await self._client.http.post(
                "completion-messages", json=self._body(query, "blocking")
            )
        except httpx.HTTPError as exc:
            raise transport_error(SERVICE, "completion", exc) from None
        await raise_for_status(SERVICE, "completion", response)
        doc = _json_object(response.content, "completion")
        self._task_id = doc.get("task_id")
        answer = doc.get("answer")
        if not isinstance(answer, str):
            raise ServiceError(SERVICE, "completion", "malformed_response", "no `answer`")
        return answer

    def reset_conversation(self) -> None:
        """A Text Generator app keeps no conversation."""

    async def stop(self) -> None:
        task_id, self._task_id = self._task_id, None
        if not task_id:
            return
        try:
            response = await self._client.http.post(
                f"completion-messages/{task_id}/stop",
                json={"user": self._client.user},
                timeout=2.0,
            )
            await raise_for_status(SERVICE, "stop", response)
        except (httpx.HTTPError, ServiceError) as exc:
            # Stopping is a courtesy to the service; the turn is already cancelled.
            log.warning("dify stop of task %s failed: %s", task_id, exc)


class DifyTextToSpeech:
    service = SERVICE

    def __init__(self, client: DifyClient) -> None:
        self._client = client

    async def stream(self, text: str) -> AsyncIterator[AudioChunk]:
        body: dict[str, Any] = {"text": text, "user": self._client.user}
        if self._client.settings.voice:
            body["voice"] = self._client.settings.voice
        try:
            async with self._client.http.stream("POST", "text-to-audio", json=body) as response:
                await raise_for_status(SERVICE, "tts", response)
                content_type = response.headers.get("content-type", "").split(";")[0].strip()
                if content_type == "application/json":
                    # Dify answers 200 `null` when it has nothing to say (unknown message_id).
                    detail = (await response.aread())[:200].decode(errors="replace")
                    raise ServiceError(
                        SERVICE, "tts", "no_audio", f"JSON instead of audio: {detail}"
                    )
                async for data in response.aiter_bytes():
                    if data:
                        yield AudioChunk(data, content_type or None)
        except httpx.HTTPError as exc:
            raise transport_error(SERVICE, "tts", exc) from None
