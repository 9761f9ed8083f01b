"""Convai standalone TTS (`POST /tts/`) and its voice list (`GET /tts/get_available_voices`).

Quirks honoured here (see shared/reference/API_NOTES.md section 3):
- the key travels in a `CONVAI-API-KEY` header (the docs' table says CONVAI-API_KEY, every
  sample says CONVAI-API-KEY, and underscores in header names are dropped by many proxies);
- success is the raw audio body; its sample rate and bit depth are undocumented and differ
  per voice provider, so a WAV body is labelled `audio/wav` and the decoder reads its header;
- some refusals arrive as **200** with a JSON body (`{"result": "No voice found in the
  request"}`), so the first bytes are looked at before any audio is passed on;
- error bodies are `{"ERROR"}` (no key), `{"API_ERROR"}` (wrong key) or `{"result"}`.

Error codes raised, on top of the generic ones of `providers.http`:

| code                 | when                                                         |
| -------------------- | ------------------------------------------------------------ |
| `api_key_error`      | no usable key sent (403 `{"ERROR"}`; voice list 400)         |
| `invalid_api_key`    | the key is wrong (403 `{"API_ERROR"}`; voice list 401)       |
| `no_transcript`      | 200 `{"result": "No transcript found in the request"}`       |
| `no_voice`           | 200 `{"result": "No voice found in the request"}`            |
| `incorrect_encoding` | 400: unknown voice, or mp3 asked of a wav-only voice         |
| `tts_failed`         | 500 `{"result": "Error encountered while processing ..."}`   |
| `convai_error`       | any other `{"result"}` body, or JSON where audio was due     |
| `no_audio`           | a 200 answer with an empty body                              |
| `malformed_response` | a voice list that is not the documented JSON object          |
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx

from assistant.providers.base import AudioChunk, ServiceError
from assistant.providers.http import (
    error_from_body,
    is_page_type,
    json_object,
    make_client,
    media_type,
    retry_after_seconds,
    transport_error,
    unexpected_type,
)
from assistant.settings import ConvaiSettings, HttpSettings

log = logging.getLogger(__name__)

SERVICE = "convai"
KEY_HEADER = "CONVAI-API-KEY"
MAX_JSON_BODY_BYTES = 64 * 1024
"""Most of a JSON refusal read to report it; a runaway body is not read to its end."""

_GENERIC_CODE = "convai_error"
"""What `error_from_body` calls a `{"result": ...}` body."""
_RESULT_CODES = {
    "no transcript found in the request": "no_transcript",
    "no voice found in the request": "no_voice",
    "incorrect encoding for the mentioned voice": "incorrect_encoding",
    "error encountered while processing the tts request": "tts_failed",
}
"""The documented `result` messages, compared without case or a final period."""
_VOICE_LIST_CODES = {400: "api_key_error", 401: "invalid_api_key"}
"""The voice list documents these statuses but not their bodies."""


@dataclass(frozen=True, slots=True)
class ConvaiVoice:
    """One entry of the voice list; `voice_value` is what `ConvaiSettings.voice` takes."""

    section: str
    """Where the Convai Playground lists it, e.g. `GCP Voices`, `Elevenlabs Voices`."""
    name: str
    voice_value: str
    lang_codes: tuple[str, ...]
    gender: str
    """MALE or FEMALE, as the service writes it ("" when absent)."""
    sample_link: str = ""
    """URL of a sample recording ("" when absent)."""


class ConvaiClient:
    """One kept-alive connection pool for every Convai call."""

    def __init__(self, settings: ConvaiSettings, http: HttpSettings) -> None:
        self.settings = settings
        key = settings.api_key.reveal()
        # No key = no header: the service then answers its documented "api_key error."
        # rather than puzzling over an empty value.
        headers = {KEY_HEADER: key} if key else {}
        self.http = make_client(settings.base_url, http, headers, settings)

    async def warm(self) -> None:
        """GET the voice list (the only documented read) to open a connection early."""
        await convai_voices(self)

    async def aclose(self) -> None:
        await self.http.aclose()


def _refined(code: str, message: str) -> str:
    """A specific code for the documented `{"result"}` messages."""
    if code != _GENERIC_CODE:
        return code
    return _RESULT_CODES.get(message.strip().rstrip(".").lower(), _GENERIC_CODE)


async def _raise_for_status(stage: str, response: httpx.Response) -> None:
    if response.is_success:
        return
    body = await response.aread()
    status = response.status_code
    code, message = error_from_body(SERVICE, stage, status, body)
    if stage == "voices" and code == f"http_{status}":
        code = _VOICE_LIST_CODES.get(status, code)
    raise ServiceError(
        SERVICE,
        stage,
        _refined(code, message),
        message,
        status=status,
        retry_after=retry_after_seconds(response.headers.get("retry-after")),
    )


def _is_json_type(content_type: str) -> bool:
    mime = content_type.split(";")[0].strip().lower()
    return mime == "application/json" or mime.endswith("+json")


def _chunk_type(content_type: str, encoding: str) -> str:
    """The label for the audio: the server's own if it names an audio type, else the
    type of the encoding asked for (a bare or octet-stream answer says nothing)."""
    if content_type.split(";")[0].strip().lower().startswith("audio/"):
        return content_type.strip()
    return "audio/mpeg" if encoding.lower() == "mp3" else "audio/wav"


async def _head(chunks: AsyncIterator[bytes]) -> bytes:
    """The body up to its first non-whitespace byte (or all of it, if it ends first)."""
    head = b""
    async for data in chunks:
        head += data
        if head.lstrip():
            break
    return head


async def _json_refusal(head: bytes, chunks: AsyncIterator[bytes]) -> ServiceError:
    """The error carried by a 200 answer whose body is JSON instead of audio."""
    body = head
    async for data in chunks:
        body += data
        if len(body) > MAX_JSON_BODY_BYTES:
            break
    code, message = error_from_body(SERVICE, "tts", 200, body[:MAX_JSON_BODY_BYTES])
    code = _refined(code, message)
    if code == "http_200":
        # Valid HTTP, so an http_ code would mislead: the service said something odd.
        code = _GENERIC_CODE
    return ServiceError(SERVICE, "tts", code, message, status=200)


class ConvaiTextToSpeech:
    """`POST /tts/`: the sentence as one raw WAV or MP3 body, passed on as it arrives."""

    service = SERVICE

    def __init__(self, client: ConvaiClient) -> None:
        self._client = client

    def _body(self, text: str) -> dict[str, Any]:
        settings = self._client.settings
        body: dict[str, Any] = {
            "transcript": text,
            "voice": settings.voice,
            "encoding": settings.encoding,
        }
        if settings.filename:
            body["filename"] = settings.filename
        return body

    async def stream(self, text: str) -> AsyncIterator[AudioChunk]:
        encoding = self._client.settings.encoding
        try:
            async with self._client.http.stream("POST", "tts/", json=self._body(text)) as response:
                await _raise_for_status("tts", response)
                content_type = response.headers.get("content-type", "")
                chunks = response.aiter_bytes()
                # Nothing is yielded before the first bytes are seen: a 200 JSON refusal
                # must not reach a decoder (or a fallback chain) as audio.
                head = await _head(chunks)
                if _is_json_type(content_type) or head.lstrip().startswith(b"{"):
                    raise await _json_refusal(head, chunks)
                if not head:
                    raise ServiceError(SERVICE, "tts", "no_audio", "empty audio body", status=200)
                if is_page_type(media_type(response)):
                    raise await unexpected_type(SERVICE, "tts", response, "audio", head, chunks)
                label = _chunk_type(content_type, encoding)
                yield AudioChunk(head, label)
                async for data in chunks:
                    if data:
                        yield AudioChunk(data, label)
        except httpx.HTTPError as exc:
            raise transport_error(SERVICE, "tts", exc) from None


async def convai_voices(client: ConvaiClient) -> list[ConvaiVoice]:
    """Every voice the key may use (public and private), in the service's order."""
    try:
        response = await client.http.get("tts/get_available_voices")
    except httpx.HTTPError as exc:
        raise transport_error(SERVICE, "voices", exc) from None
    await _raise_for_status("voices", response)
    doc = json_object(response.content, SERVICE, "voices")
    return [voice for section, entries in doc.items() for voice in _section(str(section), entries)]


def _section(section: str, entries: Any) -> list[ConvaiVoice]:
    """The voices of one section: `[{"<Voice Name>": {voice_value, lang_codes, ...}}, ...]`.

    An odd entry is skipped, not fatal: one voice the parser does not understand must not
    hide all the others from someone choosing a voice.
    """
    if not isinstance(entries, list):
        log.warning("convai voice list: section %r is not a list; skipped", section)
        return []
    voices: list[ConvaiVoice] = []
    for entry in entries:
        if not isinstance(entry, dict):
            log.warning("convai voice list: odd entry in %r skipped", section)
            continue
        for name, fields in entry.items():
            voice = _voice(section, str(name), fields)
            if voice is None:
                log.warning("convai voice list: %r in %r has no voice_value", name, section)
            else:
                voices.append(voice)
    return voices


def _voice(section: str, name: str, fields: Any) -> ConvaiVoice | None:
    if not isinstance(fields, dict) or not isinstance(fields.get("voice_value"), str):
        return None
    codes = fields.get("lang_codes")
    return ConvaiVoice(
        section=section,
        name=name,
        voice_value=fields["voice_value"],
        lang_codes=tuple(str(c) for c in codes) if isinstance(codes, list) else (),
        gender=str(fields.get("gender") or ""),
        sample_link=str(fields.get("sample_link") or ""),
    )
