"""`POST /v1/audio/speech`: CreateSpeechRequest checked field by field, espeak-ng speech sent
chunked in the asked format, or as `speech.audio.delta` events.

The body is paced like `/text-to-audio` (first byte after `tts_first_byte_ms`, then
`tts_speed` times real time). Raw-sample formats (pcm, wav) go out in odd-sized chunks on
purpose: a client must carry the half sample at the end of a network chunk into the next.
"""

from __future__ import annotations

import asyncio
import base64
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from assistant.devserver import replies
from assistant.devserver.audio_body import paced_chunks, send_paced_audio, wait_first_byte
from assistant.devserver.fault_responses import write_body
from assistant.devserver.middleware import record_of
from assistant.devserver.openai_api import (
    invalid_request,
    invalid_value,
    json_object,
    missing_parameter,
    openai_errors,
    sse_event,
    start_sse,
    unrecognized_argument,
)
from assistant.devserver.openai_audio import CONTENT_TYPES, OPENAI_RATE, encode, openai_pcm_async
from assistant.devserver.state import STATE_KEY
from assistant.providers.openai_names import OPENAI_FORMATS, OPENAI_TTS1_VOICES, OPENAI_VOICES

MAX_INPUT_CHARS = 4096
MAX_INSTRUCTIONS_CHARS = 4096
MIN_SPEED, MAX_SPEED = 0.25, 4.0
STREAM_FORMATS = ("audio", "sse")
_FIELDS = ("model", "input", "instructions", "voice", "response_format", "speed", "stream_format")
_REQUIRED = ("model", "input", "voice")
_RAW_SAMPLE_FORMATS = frozenset({"pcm", "wav"})
_AUDIO_TOKENS_PER_S = 20
"""For the `usage` of the SSE done event: a made-up but steady audio token rate."""


@dataclass(frozen=True, slots=True)
class _Speech:
    model: str
    input: str
    voice: str | dict[str, str]
    instructions: str | None
    response_format: str
    speed: float
    stream_format: str


def _tts1(model: str) -> bool:
    return model.startswith("tts-1")


def _string(body: dict[str, Any], name: str, limit: int) -> str:
    value = body[name]
    if not isinstance(value, str):
        raise invalid_request(
            f"Invalid type for '{name}': expected a string.", name, "invalid_type"
        )
    if len(value) > limit:
        raise invalid_request(
            f"Invalid '{name}': string too long. Expected a string with maximum length {limit}, "
            f"but got a string with length {len(value)} instead.",
            name,
            "string_above_max_length",
        )
    return value


def _voice(value: Any, model: str) -> str | dict[str, str]:
    if isinstance(value, dict):
        if set(value) != {"id"} or not isinstance(value["id"], str) or not value["id"]:
            raise invalid_request(
                "Invalid 'voice': a custom voice is an object with only a string 'id'.",
                "voice",
                "invalid_value",
            )
        return {"id": value["id"]}
    voices = OPENAI_TTS1_VOICES if _tts1(model) else OPENAI_VOICES
    if value not in voices:
        raise invalid_value("voice", value, voices)
    return str(value)


def _validate(body: dict[str, Any]) -> _Speech:
    for name in body:
        if name not in _FIELDS:
            raise unrecognized_argument(name)  # additionalProperties: false
    for name in _REQUIRED:
        if name not in body:
            raise missing_parameter(name)
    model = _string(body, "model", 256)
    text = _string(body, "input", MAX_INPUT_CHARS)
    if not text.strip():
        raise invalid_request("Invalid 'input': must not be empty.", "input", "invalid_value")
    instructions = None
    if "instructions" in body:
        instructions = _string(body, "instructions", MAX_INSTRUCTIONS_CHARS)
        if _tts1(model):
            raise invalid_request(
                f"instructions are not supported with model '{model}'.",
                "instructions",
                "unsupported_parameter",
            )
    response_format = body.get("response_format", "mp3")
    if response_format not in OPENAI_FORMATS:
        raise invalid_value("response_format", response_format, OPENAI_FORMATS)
    speed = body.get("speed", 1.0)
    if isinstance(speed, bool) or not isinstance(speed, int | float) or not math.isfinite(speed):
        raise invalid_request(
            "Invalid type for 'speed': expected a number.", "speed", "invalid_type"
        )
    if not MIN_SPEED <= speed <= MAX_SPEED:
        raise invalid_request(
            f"Invalid 'speed': must be between {MIN_SPEED} and {MAX_SPEED:g}.",
            "speed",
            "invalid_value",
        )
    stream_format = body.get("stream_format", "audio")
    if stream_format not in STREAM_FORMATS:
        raise invalid_value("stream_format", stream_format, STREAM_FORMATS)
    if stream_format == "sse" and _tts1(model):
        raise invalid_request(
            f"stream_format 'sse' is not supported with model '{model}'.",
            "stream_format",
            "unsupported_value",
        )
    voice = _voice(body["voice"], model)
    return _Speech(model, text, voice, instructions, response_format, float(speed), stream_format)


@openai_errors
async def audio_speech(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    loop = asyncio.get_running_loop()
    arrived = loop.time()
    asked = _validate(await json_object(request))
    record = record_of(request)
    # instructions only appear in the log when they were sent, so a test can tell.
    record.details.update(
        {name: getattr(asked, name) for name in _FIELDS if getattr(asked, name) is not None}
    )
    samples = await openai_pcm_async(asked.input, state.options.voice, asked.speed)
    data = await loop.run_in_executor(None, encode, samples, asked.response_format)
    duration = len(samples) / OPENAI_RATE
    sse = asked.stream_format == "sse"
    content_type = "text/event-stream" if sse else CONTENT_TYPES[asked.response_format]
    record.details.update(
        audio_bytes=len(data),
        audio_samples=len(samples),
        audio_duration_s=round(duration, 3),
        content_type=content_type,
    )
    await wait_first_byte(state, arrived)
    odd_chunks = asked.response_format in _RAW_SAMPLE_FORMATS
    if sse:
        chunks = paced_chunks(state, data, duration, odd_chunks)
        return await _send_events(request, chunks, asked.input, duration)
    return await send_paced_audio(request, state, data, duration, content_type, odd_chunks)


async def _send_events(
    request: web.Request, chunks: AsyncIterator[bytes], text: str, duration: float
) -> web.StreamResponse:
    input_tokens = len(replies.tokens(text))
    output_tokens = math.ceil(duration * _AUDIO_TOKENS_PER_S)
    usage = {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "total_tokens": input_tokens + output_tokens,
    }
    response = await start_sse(request)
    try:
        async for chunk in chunks:
            audio = base64.b64encode(chunk).decode("ascii")
            delta = {"type": "speech.audio.delta", "audio": audio}
            await write_body(request, response, sse_event(delta))
        done = sse_event({"type": "speech.audio.done", "usage": usage})
        await write_body(request, response, done)
        await response.write_eof()
    except ConnectionResetError:
        record_of(request).details["disconnected"] = True
    return response
