"""Convai-compatible endpoints: no /v1 prefix, a `CONVAI-API-KEY` header, Convai's bodies.

POST /tts/                         speech for {"transcript", "voice", "encoding", "filename"}
GET  /tts/get_available_voices     CATALOGUE in the documented nested shape
GET  /tts/get_available_languages  [{"en-US": {"lang_code", "lang_name"}}, ...]

The Dify middleware only handles /v1 paths, so these routes bring their own log record,
key check, fault injection and error bodies (`_endpoint`), in the same order. The bodies
and statuses of the TTS refusals are those of Convai's legacy docs, including the **200**
JSON refusals. Not documented, and chosen here: the voice list's error bodies (400 and
401 reuse the TTS key bodies, 500 a `result`), the languages list needing no key, and the
audio format, which is 16-bit mono WAV at a rate that depends on the voice's section, as
it does for the providers behind Convai, so clients must read the WAV header. Like the
legacy docs say, every voice speaks WAV and only GCP voices also speak MP3.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from assistant.audio.espeak import Speech
from assistant.audio.resample import resample_once
from assistant.audio.wav import encode_wav
from assistant.devserver.audio_body import send_paced_audio, wait_first_byte
from assistant.devserver.errors import CONVAI_SERVER_FAILURE_BODY, CONVAI_TTS_FAILED_BODY
from assistant.devserver.fault_responses import with_fault
from assistant.devserver.middleware import record_of, start_record
from assistant.devserver.rendering import json_response
from assistant.devserver.state import STATE_KEY, DevServerState
from assistant.devserver.synth import encode_mp3, speech_for_async

KEY_HEADER = "CONVAI-API-KEY"
NO_KEY_BODY = {"ERROR": "api_key error."}
WRONG_KEY_BODY = {"API_ERROR": "Invalid API key provided."}
NO_TRANSCRIPT_BODY = {"result": "No transcript found in the request"}
NO_VOICE_BODY = {"result": "No voice found in the request"}
INCORRECT_ENCODING_BODY = {"result": "Incorrect encoding for the mentioned voice."}
TTS_FAILED_BODY = CONVAI_TTS_FAILED_BODY
SERVER_FAILURE_BODY = CONVAI_SERVER_FAILURE_BODY

_AUDIO_TYPES = {"wav": "audio/wav", "mp3": "audio/mpeg"}

_log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class CatalogueVoice:
    name: str
    """The name the Playground shows (the key of its entry in the voice list)."""
    value: str
    """`voice_value`: what a TTS request names."""
    gender: str
    lang_codes: tuple[str, ...] = ("en-US",)


@dataclass(frozen=True, slots=True)
class CatalogueSection:
    name: str
    sample_rate: int
    """Rate of this section's WAV and MP3 bodies."""
    encodings: frozenset[str]
    voices: tuple[CatalogueVoice, ...]


_WAV_ONLY = frozenset({"wav"})
_OPENAI_LANGS = ("en-US", "de-DE", "fr-FR", "es-ES", "fi-FI")
_EN_FI = ("en-US", "fi-FI")
DEFAULT_VOICE = "fable_OpenAi_c4d30a32-bcaf-4048-b7b0-0f2bb293205a"
"""`ConvaiSettings.voice`'s default, so an unconfigured client is served."""

CATALOGUE: tuple[CatalogueSection, ...] = (
    CatalogueSection(
        "Convai Voices",
        22_050,
        _WAV_ONLY,
        (
            CatalogueVoice("High quality US Feminine Voice", "FEMALE", "FEMALE"),
            CatalogueVoice("High quality US Masculine Voice", "MALE", "MALE"),
        ),
    ),
    CatalogueSection(
        "GCP Voices",
        16_000,
        frozenset({"wav", "mp3"}),
        (
            CatalogueVoice("Young US Feminine Voice", "WUFemale 3", "FEMALE"),
            CatalogueVoice("Robotic US Masculine Voice", "WUMale 1", "MALE"),
        ),
    ),
    CatalogueSection(
        "Open AI voices",
        24_000,
        _WAV_ONLY,
        (
            CatalogueVoice("Fable (Young Feminine voice)", DEFAULT_VOICE, "FEMALE", _OPENAI_LANGS),
            CatalogueVoice(
                "Alloy (Heavy Feminine voice)",
                "alloy_OpenAi_341dadca-3911-4880-911d-8b851dde55f0",
                "FEMALE",
                _OPENAI_LANGS,
            ),
        ),
    ),
    CatalogueSection(
        "Elevenlabs Voices",
        44_100,
        _WAV_ONLY,
        (
            CatalogueVoice("Adam (Middle-aged US Masculine Voice)", "Adam-en-US", "MALE", _EN_FI),
            CatalogueVoice("Bella (Young US Feminine Voice)", "Bella-en-US", "FEMALE", _EN_FI),
        ),
    ),
)
"""The dev server's voices: a few per section, one sample rate per section."""

LANGUAGE_NAMES = {
    "en-US": "English (US)",
    "de-DE": "German",
    "fr-FR": "French",
    "es-ES": "Spanish",
    "fi-FI": "Finnish",
}


def find_voice(value: str) -> tuple[CatalogueSection, CatalogueVoice] | None:
    """The catalogue entry for a `voice_value`, with its section (None when unknown)."""
    for section in CATALOGUE:
        for voice in section.voices:
            if voice.value == value:
                return section, voice
    return None


# ------------------------------------------------------------------ what every route shares


def _key_refusal(
    header: str | None, api_key: str | None, statuses: tuple[int, int]
) -> web.Response | None:
    """The answer to a missing or (when the server has a key) wrong key; None lets it in."""
    missing_status, wrong_status = statuses
    key = (header or "").strip()
    if not key:
        return json_response(NO_KEY_BODY, status=missing_status)
    if api_key is not None and key != api_key:
        return json_response(WRONG_KEY_BODY, status=wrong_status)
    return None


def _endpoint(
    name: str, handler: Handler, failure: dict[str, str], key_statuses: tuple[int, int] | None
) -> Handler:
    """`handler` with what the Dify middleware gives /v1 routes: a log record, the key
    check (`key_statuses` = (missing, wrong); None = no key needed), faults, and
    `failure` as the 500 body of an unexpected error."""

    async def endpoint(request: web.Request) -> web.StreamResponse:
        state = request.app[STATE_KEY]
        record = start_record(request, name)
        started = time.monotonic()
        response: web.StreamResponse | None = None
        try:
            response = await _answer(request, handler, state, failure, key_statuses)
            return response
        finally:
            record.status = response.status if response is not None else 500
            record.duration_s = time.monotonic() - started
            state.record(record)

    return endpoint


async def _answer(
    request: web.Request,
    handler: Handler,
    state: DevServerState,
    failure: dict[str, str],
    key_statuses: tuple[int, int] | None,
) -> web.StreamResponse:
    if key_statuses is not None:
        refusal = _key_refusal(request.headers.get(KEY_HEADER), state.options.api_key, key_statuses)
        if refusal is not None:
            return refusal
    record = record_of(request)
    fault = state.faults.take(record.endpoint)
    if fault is not None:
        record.details.update(fault=True, fault_mode=fault.mode)
        handler = with_fault(fault, handler, record.details)
    try:
        return await handler(request)
    except ConnectionResetError:
        raise  # the client is gone: there is no one to send an error to
    except Exception:
        _log.exception("dev server: %s %s failed", request.method, request.path)
        return json_response(failure, status=500)


# ------------------------------------------------------------------------------- routes


async def _lenient_json(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object; anything else reads as an empty request, which Convai
    answers with its "No transcript found" refusal rather than a parse error."""
    try:
        body = json.loads(await request.read())
    except (ValueError, UnicodeDecodeError):
        return {}
    return body if isinstance(body, dict) else {}


def _encode(speech: Speech, sample_rate: int, encoding: str) -> bytes:
    """`speech` at the section's rate as a WAV file or bare MP3 frames (blocking)."""
    samples = resample_once(speech.samples, speech.sample_rate, sample_rate)
    if encoding == "mp3":
        return encode_mp3(Speech(samples, sample_rate))
    return encode_wav(samples, sample_rate)


async def text_to_speech(request: web.Request) -> web.StreamResponse:
    """POST /tts/: refusals in the documented order, then paced, chunked audio."""
    state = request.app[STATE_KEY]
    loop = asyncio.get_running_loop()
    arrived = loop.time()
    body = await _lenient_json(request)
    transcript, voice_value = body.get("transcript"), body.get("voice")
    encoding = body.get("encoding") or "wav"
    record = record_of(request)
    record.details.update(
        transcript=transcript, voice=voice_value, encoding=encoding, filename=body.get("filename")
    )
    if not isinstance(transcript, str) or not transcript.strip():
        return json_response(NO_TRANSCRIPT_BODY)
    if not isinstance(voice_value, str) or not voice_value.strip():
        return json_response(NO_VOICE_BODY)
    found = find_voice(voice_value)
    encoding = encoding.lower() if isinstance(encoding, str) else ""
    if found is None or encoding not in found[0].encodings:
        # Convai gives an unknown voice the same answer as a wrong encoding.
        return json_response(INCORRECT_ENCODING_BODY, status=400)
    section = found[0]
    speech = await speech_for_async(transcript.strip(), state.options.voice)
    data = await loop.run_in_executor(None, _encode, speech, section.sample_rate, encoding)
    content_type = _AUDIO_TYPES[encoding]
    record.details.update(
        sample_rate=section.sample_rate,
        audio_bytes=len(data),
        audio_duration_s=round(speech.duration, 3),
        content_type=content_type,
    )
    await wait_first_byte(state, arrived)
    return await send_paced_audio(request, state, data, speech.duration, content_type)


def voice_list() -> dict[str, list[dict[str, Any]]]:
    """CATALOGUE as `GET /tts/get_available_voices` sends it."""
    return {
        section.name: [
            {
                voice.name: {
                    "voice_value": voice.value,
                    "lang_codes": list(voice.lang_codes),
                    "gender": voice.gender,
                    # The real list carries this too; clients must ignore what they do not use.
                    "deployment_env": ["PRODUCTION", "DEVELOPMENT"],
                    # No samples are served here; an empty link beats one that points nowhere.
                    "sample_link": "",
                }
            }
            for voice in section.voices
        ]
        for section in CATALOGUE
    }


async def get_available_voices(request: web.Request) -> web.StreamResponse:
    voices = voice_list()
    record_of(request).details["voices"] = sum(len(entries) for entries in voices.values())
    return json_response(voices)


async def get_available_languages(request: web.Request) -> web.StreamResponse:
    codes = dict.fromkeys(code for s in CATALOGUE for v in s.voices for code in v.lang_codes)
    return json_response(
        [{code: {"lang_code": code, "lang_name": LANGUAGE_NAMES[code]}} for code in codes]
    )


def add_convai_routes(app: web.Application) -> None:
    """Register the Convai routes on the dev server."""
    router = app.router
    # TTS refuses a missing and a wrong key alike with 403; the voice list with 400 / 401.
    router.add_post(
        "/tts/",
        _endpoint("convai-tts", text_to_speech, TTS_FAILED_BODY, (403, 403)),
        name="convai-tts",
    )
    router.add_get(
        "/tts/get_available_voices",
        _endpoint("convai-voices", get_available_voices, SERVER_FAILURE_BODY, (400, 401)),
        name="convai-voices",
    )
    router.add_get(
        "/tts/get_available_languages",
        _endpoint("convai-languages", get_available_languages, SERVER_FAILURE_BODY, None),
        name="convai-languages",
    )
