"""The OpenAI-compatible voice: espeak-ng speech at 24 kHz, encoded in each response_format.

`openai_pcm` is exactly the PCM the server encodes for `/v1/audio/speech` at speed 1, so a
test can compare what a client decoded with what the server said, sample for sample.
"""

from __future__ import annotations

import io

import av
import numpy as np
import soxr

from assistant.audio.espeak import Speech, synthesize_async
from assistant.audio.wav import encode_wav
from assistant.devserver.synth import encode_mp3, speech_for, speech_for_async

OPENAI_RATE = 24_000
"""OpenAI's TTS rate (documented for pcm; its other formats carry the same audio)."""
CONTENT_TYPES = {
    "mp3": "audio/mpeg",
    "opus": "audio/opus",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": "audio/pcm",
}
"""The Content-Type OpenAI sends for each response_format."""
ESPEAK_WORDS_PER_MINUTE = 175
"""espeak-ng's default rate: what `speed` 1.0 means here."""

# (container, encoder, bit rate); None = the encoder's own choice (lossless flac).
_PYAV_FORMATS: dict[str, tuple[str, str, int | None]] = {
    "opus": ("ogg", "libopus", 32_000),
    "aac": ("adts", "aac", 48_000),
    "flac": ("flac", "flac", None),
}
_STREAMING_SIZE = b"\xff\xff\xff\xff"
"""The RIFF and data sizes a streaming writer puts in a WAV header: not known yet."""


def to_openai_rate(speech: Speech) -> np.ndarray:
    """espeak-ng's int16 speech resampled to 24 kHz int16."""
    if speech.sample_rate == OPENAI_RATE or not len(speech.samples):
        return speech.samples
    return soxr.resample(speech.samples, speech.sample_rate, OPENAI_RATE)


def openai_pcm(text: str, voice: str = "en") -> np.ndarray:
    """The 24 kHz samples the server speaks for `text` at speed 1 (blocking; cached speech)."""
    return to_openai_rate(speech_for(text, voice))


async def openai_pcm_async(text: str, voice: str, speed: float = 1.0) -> np.ndarray:
    """The 24 kHz samples for `text` at `speed`, synthesised off the event loop.

    Speed changes espeak-ng's speaking rate (so the pitch stays), within the 80-450 words
    per minute espeak-ng accepts.
    """
    if speed == 1.0:
        speech = await speech_for_async(text, voice)
    else:
        words_per_minute = round(ESPEAK_WORDS_PER_MINUTE * speed)
        speech = await synthesize_async(text, voice, words_per_minute)
    return to_openai_rate(speech)


def encode(samples: np.ndarray, response_format: str) -> bytes:
    """24 kHz int16 mono `samples` as a whole body in `response_format` (blocking)."""
    if response_format == "pcm":
        return samples.astype("<i2", copy=False).tobytes()
    if response_format == "wav":
        # A streaming service cannot know the length when it sends the header.
        wav = bytearray(encode_wav(samples, OPENAI_RATE))
        wav[4:8] = wav[40:44] = _STREAMING_SIZE
        return bytes(wav)
    if response_format == "mp3":
        return encode_mp3(Speech(samples, OPENAI_RATE))
    return _encode_with_pyav(samples, *_PYAV_FORMATS[response_format])


def _encode_with_pyav(
    samples: np.ndarray, container_format: str, encoder: str, bit_rate: int | None
) -> bytes:
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format=container_format) as container:
        stream = container.add_stream(encoder, rate=OPENAI_RATE, layout="mono")
        if bit_rate is not None:
            stream.bit_rate = bit_rate
        if len(samples):
            frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16p", layout="mono")
            frame.sample_rate = OPENAI_RATE
            frame.pts = 0
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return buffer.getvalue()
