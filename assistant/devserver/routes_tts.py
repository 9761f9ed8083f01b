"""`POST /text-to-audio`: espeak-ng speech as a chunked, paced `audio/mpeg` body."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from assistant.devserver.audio_body import send_paced_audio, wait_first_byte
from assistant.devserver.errors import invalid_param
from assistant.devserver.jsonio import json_body
from assistant.devserver.middleware import record_of
from assistant.devserver.rendering import json_response
from assistant.devserver.state import STATE_KEY, DevServerState
from assistant.devserver.synth import mp3_for, resolve_voice

TTS_DISABLED_MESSAGE = "TTS is not enabled"
"""Dify's ValueError (so 400 invalid_param) when the app's text-to-speech is off."""
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
    arrived = asyncio.get_running_loop().time()
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
    if not state.options.text_to_speech:
        # Checked when there is something to say: an unknown message is `null` first.
        raise invalid_param(TTS_DISABLED_MESSAGE)
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
    await wait_first_byte(state, arrived)
    return await send_paced_audio(request, state, audio.data, audio.duration, "audio/mpeg")
