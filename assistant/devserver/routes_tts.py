"""`POST /text-to-audio`: espeak-ng speech as a chunked, paced `audio/mpeg` body."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from assistant.devserver.errors import invalid_param
from assistant.devserver.jsonio import json_body
from assistant.devserver.middleware import record_of
from assistant.devserver.rendering import json_response
from assistant.devserver.state import STATE_KEY, DevServerState
from assistant.devserver.synth import Mp3Audio, mp3_for, resolve_voice

DEFAULT_USER = "DEFAULT-USER"
"""The end user Dify assumes when a request names none (`user` is optional here)."""


def _message_text(state: DevServerState, message_id: Any, user: str) -> str | None:
    """The stored answer, or None where Dify's service returns None (body `null`)."""
    message = state.messages.get(message_id) if isinstance(message_id, str) else None
    # Another user's message is as unknown as a made-up id.
    if message is None or message.user != user or not message.answer:
        return None
    return message.answer


async def text_to_audio(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    loop = asyncio.get_running_loop()
    arrived = loop.time()
    body = await json_body(request)
    user = body.get("user") or DEFAULT_USER
    record = record_of(request)
    message_id = body.get("message_id")
    if message_id:
        # message_id takes priority over text, as the reference says.
        text = _message_text(state, message_id, user)
        record.details.update(message_id=message_id, text=text)
        if text is None:
            return json_response(None)
    else:
        text = body.get("text")
        if not isinstance(text, str) or not text.strip():
            raise invalid_param("Text is required")
        record.details.update(text=text)
    requested = body.get("voice")
    voice = await resolve_voice(
        requested if isinstance(requested, str) else None, state.options.voice
    )
    audio = await mp3_for(text.strip(), voice)
    record.details.update(
        voice=voice,
        audio_bytes=len(audio.data),
        audio_duration_s=round(audio.duration, 3),
        content_type="audio/mpeg",
    )
    await asyncio.sleep(arrived + state.options.tts_first_byte_ms / 1000 - loop.time())
    return await _send(request, state, audio)


async def _send(request: web.Request, state: DevServerState, audio: Mp3Audio) -> web.StreamResponse:
    response = web.StreamResponse()
    response.content_type = "audio/mpeg"
    # Chunked, no Content-Length: how Dify relays a provider's audio generator.
    response.enable_chunked_encoding()
    await response.prepare(request)
    loop = asyncio.get_running_loop()
    first_byte_at = loop.time()
    total = len(audio.data)
    offset = 0
    try:
        while offset < total:
            options = state.options
            speed = options.tts_speed
            if offset and speed > 0:
                # Byte offset -> playback time of the audio up to there, sped up.
                due = first_byte_at + offset / total * audio.duration / speed
                await asyncio.sleep(due - loop.time())
            chunk = audio.data[offset : offset + max(1, options.tts_chunk_bytes)]
            await response.write(chunk)
            offset += len(chunk)
        await response.write_eof()
    except ConnectionResetError:
        record_of(request).details["disconnected"] = True
    return response
