"""The dev server's voice: espeak-ng speech, cached, and its MP3 encoding.

`speech_for` returns exactly the PCM the server encodes for `/text-to-audio`,
so an integration test can correlate what a speaker played with what the
server said.
"""

from __future__ import annotations

import asyncio
import io
from collections import OrderedDict
from dataclasses import dataclass
from typing import TypeVar

import av

from assistant.audio.espeak import EspeakError, Speech, synthesize, synthesize_async

MP3_BIT_RATE = 48_000
"""Plenty for 22 kHz mono speech, and small enough that pacing is visible."""

_CACHE_SIZE = 128

K = TypeVar("K")
V = TypeVar("V")


@dataclass(frozen=True, slots=True)
class Mp3Audio:
    data: bytes
    """MPEG audio frames only: no ID3 tag, no Xing frame, like a streaming TTS provider."""
    duration: float
    """Seconds of speech in it (the PCM it was encoded from)."""
    voice: str
    """The espeak-ng voice actually used (after falling back from an unknown name)."""


_speech_cache: OrderedDict[tuple[str, str], Speech] = OrderedDict()
_mp3_cache: OrderedDict[tuple[str, str], Mp3Audio] = OrderedDict()
_bad_voices: set[str] = set()


def _remember(cache: OrderedDict[K, V], key: K, value: V) -> V:
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > _CACHE_SIZE:
        cache.popitem(last=False)
    return value


def speech_for(text: str, voice: str = "en") -> Speech:
    """The int16 PCM the server speaks for `text` in `voice` (blocking; cached)."""
    key = (text, voice)
    cached = _speech_cache.get(key)
    if cached is not None:
        return cached
    return _remember(_speech_cache, key, synthesize(text, voice))


async def speech_for_async(text: str, voice: str = "en") -> Speech:
    """`speech_for` without blocking the event loop."""
    key = (text, voice)
    cached = _speech_cache.get(key)
    if cached is not None:
        return cached
    return _remember(_speech_cache, key, await synthesize_async(text, voice))


async def resolve_voice(requested: str | None, default: str) -> str:
    """`requested` if espeak-ng knows it, else `default`.

    Clients send provider voice names ("alloy"); Dify would hand those to its
    provider, the dev server has only espeak-ng, so it speaks in its own voice.
    Trying the name once is the only exact test of what espeak-ng accepts
    (languages, voice files, "+variant" suffixes).
    """
    if not requested or requested == default or requested in _bad_voices:
        return default
    try:
        await speech_for_async("ok", requested)
    except EspeakError:
        _bad_voices.add(requested)
        return default
    return requested


def encode_mp3(speech: Speech) -> bytes:
    """Encode int16 mono speech to MP3 at its own rate (blocking)."""
    buffer = io.BytesIO()
    # The Xing frame and ID3 tag are what a file writer adds; a streaming TTS
    # body is bare frames, and clients must cope with exactly that.
    options = {"id3v2_version": "0", "write_xing": "0"}
    with av.open(buffer, mode="w", format="mp3", options=options) as container:
        stream = container.add_stream("libmp3lame", rate=speech.sample_rate, layout="mono")
        stream.bit_rate = MP3_BIT_RATE
        if len(speech.samples):
            frame = av.AudioFrame.from_ndarray(
                speech.samples.reshape(1, -1), format="s16p", layout="mono"
            )
            frame.sample_rate = speech.sample_rate
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return buffer.getvalue()


async def mp3_for(text: str, voice: str) -> Mp3Audio:
    """Speech for `text` as MP3, synthesised and encoded off the event loop (cached)."""
    key = (text, voice)
    cached = _mp3_cache.get(key)
    if cached is not None:
        return cached
    speech = await speech_for_async(text, voice)
    data = await asyncio.get_running_loop().run_in_executor(None, encode_mp3, speech)
    return _remember(_mp3_cache, key, Mp3Audio(data, speech.duration, voice))
