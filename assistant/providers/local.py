"""The device's own voice: espeak-ng, no network. Last resort of every TTS chain."""

from __future__ import annotations

from collections.abc import AsyncIterator

from assistant.audio.espeak import EspeakError, synthesize_async
from assistant.audio.wav import encode_wav
from assistant.providers.base import AudioChunk, ServiceError

SERVICE = "local"


class LocalTextToSpeech:
    """Speaks with espeak-ng on the device itself."""

    service = SERVICE

    def __init__(self, voice: str = "en") -> None:
        self._voice = voice

    async def stream(self, text: str) -> AsyncIterator[AudioChunk]:
        try:
            speech = await synthesize_async(text, voice=self._voice)
        except EspeakError as exc:
            raise ServiceError(SERVICE, "tts", "espeak_failed", str(exc)) from None
        yield AudioChunk(encode_wav(speech.samples, speech.sample_rate), "audio/wav")
