"""OpenAI audio API (and OpenAI-compatible servers): /audio/transcriptions and /audio/speech.

Quirks honoured here (see shared/reference/API_NOTES.md sections 2 and 4):
- the upload needs a file name with an extension and a content type, or the format is unknown;
- uploads over 25 MB and clips under 0.1 s are refused by the service, so they are refused
  here before sending (the service would answer 413 / 400 `audio_too_short`);
- `instructions` is an error on tts-1 and tts-1-hd, so it is only sent to models that take it;
- `input` is at most 4096 characters: longer text becomes several requests, cut at sentence
  boundaries, whose bodies are streamed one after another as one body;
- `pcm` is headerless 24 kHz s16le mono; its chunks are labelled
  `audio/pcm;rate=24000;channels=1` because the body says nothing about itself, and network
  chunks may end in the middle of a sample (the decoder carries the odd byte);
- local servers often run without a key: an empty key sends no Authorization header.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import httpx

from assistant.providers.base import AudioChunk, ServiceError, SpeechInput
from assistant.providers.http import (
    is_page_type,
    make_client,
    media_type,
    raise_for_status,
    transcribe_wav,
    transport_error,
    unexpected_type,
)
from assistant.providers.openai_names import OPENAI_TTS1_VOICES, OPENAI_VOICES
from assistant.settings import HttpSettings, OpenAISettings

SERVICE = "openai"
MAX_UPLOAD_BYTES = 25 * 1024 * 1024
"""OpenAI's transcription upload limit (the 413 says 26214400)."""
MIN_AUDIO_S = 0.1
"""Shorter clips get 400 `audio_too_short`."""
MAX_INPUT_CHARS = 4096
"""Longest `input` of one /audio/speech request."""
PCM_CONTENT_TYPE = "audio/pcm;rate=24000;channels=1"
"""What `pcm` bodies are: OpenAI documents 24 kHz 16-bit little-endian, no header."""
FORMAT_CONTENT_TYPES = {
    "mp3": "audio/mpeg",
    "opus": "audio/opus",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": PCM_CONTENT_TYPE,
}
"""Each response_format's type, for bodies labelled `application/octet-stream` or not at all."""
_UNJOINABLE_FORMATS = frozenset({"wav", "flac"})
"""Formats whose bodies cannot simply follow each other: each starts with a header that says
how long it is (wav) or that a decoder accepts only once (flac)."""
_JSON_PREVIEW = 200

# A sentence ends at . ! ? … (with closing quotes or brackets) before whitespace, or at a CJK
# full stop; a clause at , ; : or a dash before whitespace. The match end is the cut.
_SENTENCE_END = re.compile(r"[.!?…]+[\"'”’)\]]*(?=\s)|[。！？]")
_CLAUSE_END = re.compile(r"[,;:—–]+[\"'”’)\]]*(?=\s)|[，；：、]")
_SPACE = re.compile(r"\s")


def is_tts1_model(model: str) -> bool:
    """tts-1, tts-1-hd and their dated snapshots: 9 voices, no instructions, no SSE."""
    return model.startswith("tts-1")


def openai_voices(settings: OpenAISettings) -> list[str]:
    """The documented built-in voices usable with the configured TTS model."""
    return list(OPENAI_TTS1_VOICES if is_tts1_model(settings.tts_model) else OPENAI_VOICES)


def split_input(text: str, limit: int = MAX_INPUT_CHARS) -> list[str]:
    """`text` as pieces of at most `limit` characters, cut at the last sentence end that fits,
    else the last clause mark, else the last space, else hard; blank text gives no piece."""
    pieces: list[str] = []
    rest = text.strip()
    while len(rest) > limit:
        # One character past the limit: the whitespace that makes a boundary may sit there.
        cut = _last_cut(rest[: limit + 1], limit)
        pieces.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    if rest:
        pieces.append(rest)
    return pieces


def _last_cut(window: str, limit: int) -> int:
    for pattern in (_SENTENCE_END, _CLAUSE_END):
        cuts = [m.end() for m in pattern.finditer(window) if 0 < m.end() <= limit]
        if cuts:
            return cuts[-1]
    spaces = [m.start() for m in _SPACE.finditer(window) if m.start() > 0]
    return spaces[-1] if spaces else limit


class OpenAIClient:
    """One kept-alive connection pool for every OpenAI (or compatible server) call."""

    def __init__(self, settings: OpenAISettings, http: HttpSettings) -> None:
        self.settings = settings
        key = settings.api_key.reveal()
        # Local servers (speaches, LocalAI, the dev server) may run without a key.
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.http = make_client(settings.base_url, http, headers, settings)

    async def warm(self) -> None:
        """GET /models: the cheapest authenticated call, to open a connection early."""
        try:
            response = await self.http.get("models")
        except httpx.HTTPError as exc:
            raise transport_error(SERVICE, "warm_up", exc) from None
        await raise_for_status(SERVICE, "warm_up", response)

    async def aclose(self) -> None:
        await self.http.aclose()


class OpenAISpeechToText:
    """Speech to text with POST /audio/transcriptions, the utterance uploaded as WAV."""

    service = SERVICE

    def __init__(self, client: OpenAIClient) -> None:
        self._client = client

    def _form(self) -> dict[str, str]:
        settings = self._client.settings
        # json: the one response_format every transcription model accepts.
        form = {"model": settings.stt_model, "response_format": "json"}
        if settings.language:
            form["language"] = settings.language
        if settings.prompt:
            form["prompt"] = settings.prompt
        if settings.temperature:
            form["temperature"] = repr(settings.temperature)
        return form

    async def transcribe(self, speech: SpeechInput) -> str:
        duration = len(speech.samples) / speech.sample_rate
        if duration < MIN_AUDIO_S:
            raise ServiceError(
                SERVICE,
                "stt",
                "audio_too_short",
                f"{duration:.3f} s of audio is under OpenAI's {MIN_AUDIO_S} s minimum",
            )
        return await transcribe_wav(
            self._client.http,
            SERVICE,
            "audio/transcriptions",
            speech,
            self._form(),
            MAX_UPLOAD_BYTES,
            "OpenAI's 25 MB",
        )


class OpenAITextToSpeech:
    """Text to speech with POST /audio/speech, the body passed on chunk by chunk."""

    service = SERVICE

    def __init__(self, client: OpenAIClient) -> None:
        self._client = client

    def _body(self, text: str, response_format: str) -> dict[str, Any]:
        settings = self._client.settings
        body: dict[str, Any] = {
            "model": settings.tts_model,
            "input": text,
            "voice": {"id": settings.voice_id} if settings.voice_id else settings.voice,
            "response_format": response_format,
            "speed": settings.speed,
        }
        if settings.instructions and not is_tts1_model(settings.tts_model):
            body["instructions"] = settings.instructions
        return body

    async def stream(self, text: str) -> AsyncIterator[AudioChunk]:
        """Speech for `text` as it arrives; text over 4096 characters is several requests
        whose bodies follow each other as one."""
        pieces = split_input(text)
        if not pieces:
            raise ServiceError(SERVICE, "tts", "empty_input", "there is no text to speak")
        response_format = self._client.settings.response_format
        if len(pieces) > 1 and response_format in _UNJOINABLE_FORMATS:
            # The caller decodes all pieces as one body. wav and flac hold exactly the
            # 24 kHz samples pcm does, and pcm bodies join seamlessly.
            response_format = "pcm"
        for piece in pieces:
            async for chunk in self._speak(piece, response_format):
                yield chunk

    async def _speak(self, text: str, response_format: str) -> AsyncIterator[AudioChunk]:
        body = self._body(text, response_format)
        try:
            async with self._client.http.stream("POST", "audio/speech", json=body) as response:
                await raise_for_status(SERVICE, "tts", response)
                label = await _chunk_type(response, response_format)
                received = 0
                async for data in response.aiter_bytes():
                    if data:
                        received += len(data)
                        yield AudioChunk(data, label)
                if not received:
                    raise ServiceError(SERVICE, "tts", "no_audio", "the answer had no audio")
        except httpx.HTTPError as exc:
            raise transport_error(SERVICE, "tts", exc) from None


async def _chunk_type(response: httpx.Response, response_format: str) -> str:
    """The content type to label every chunk with; raises for a JSON answer or a page."""
    header = response.headers.get("content-type", "")
    mime = media_type(response)
    if mime == "application/json":
        detail = (await response.aread())[:_JSON_PREVIEW].decode(errors="replace")
        raise ServiceError(SERVICE, "tts", "no_audio", f"JSON instead of audio: {detail}")
    if is_page_type(mime):
        # Checked before the pcm label below: any bytes pass for headerless samples.
        raise await unexpected_type(SERVICE, "tts", response, "audio")
    # A pcm body has no header to sniff, and servers label it variously (audio/pcm,
    # application/octet-stream): the decoder must be told what it is.
    if response_format == "pcm" or mime in ("", "application/octet-stream"):
        return FORMAT_CONTENT_TYPES[response_format]
    return header.strip()
