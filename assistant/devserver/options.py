"""How the local dev server behaves: who it lets in, how slow it is, how it speaks.

Frozen like every other settings object; the live server keeps one instance in
its state and swaps it for an updated copy when `PUT /_dev/latency` arrives.
"""

from __future__ import annotations

from dataclasses import dataclass

LATENCY_FIELDS: tuple[str, ...] = (
    "stt_latency_ms",
    "first_token_ms",
    "tokens_per_second",
    "tts_first_byte_ms",
    "tts_speed",
    "ping_interval_s",
    "stream_tts",
)
"""The fields `PUT /_dev/latency` may change while the server runs."""


@dataclass(frozen=True, slots=True)
class DevServerOptions:
    api_key: str | None = None
    """None = any non-empty Bearer token is accepted; otherwise it must match exactly."""
    stt_latency_ms: int = 0
    """Least time between the end of an upload and the transcript (a real recogniser is slow)."""
    first_token_ms: int = 0
    """Delay before the first completion token, as a model's time-to-first-token."""
    tokens_per_second: float = 0.0
    """Completion pacing after the first token; 0 = all tokens at once."""
    tts_first_byte_ms: int = 0
    """Delay from the text-to-audio request to the first audio byte."""
    tts_speed: float = 0.0
    """Audio body streamed this many times faster than real time after the first byte;
    0 = as fast as possible."""
    ping_interval_s: float = 10.0
    """SSE keep-alive period (Dify sends `event: ping` every 10 s)."""
    stream_tts: bool = False
    """Text-to-speech auto-play: answer streams end with the answer's speech as
    `tts_message` events after `message_end`, and /parameters says autoPlay "enabled"."""
    tts_chunk_bytes: int = 1024
    """Size of each chunk of the audio body (Dify's OpenAI plugin sends 1024-byte chunks)."""
    voice: str = "en"
    """espeak-ng voice for speech, for the known phrases and for `/parameters`."""
    phrases: tuple[str, ...] = ()
    """Utterances the recogniser knows, on top of `recogniser.DEFAULT_PHRASES`."""
    reply_sentences: int = 0
    """Keep only the first N sentences of every answer (`replies.reply_for`); 0 = the whole
    answer (four sentences, about 13 s of speech). 1 leaves "You asked: <query>." alone,
    which makes a test turn take about 2 s of speech instead. A chat answer keeps its
    closing "This is turn N of our conversation." either way."""
