"""How the local dev server behaves: who it lets in, how slow it is, how it speaks.

Frozen like every other settings object; the live server keeps one instance in
its state and swaps it for an updated copy when `PUT /_dev/latency` arrives.
"""

from __future__ import annotations

from dataclasses import dataclass

from assistant.devserver.inputs import InputVariable

APP_MODES = ("", "completion", "chat", "agent-chat", "advanced-chat")
"""`DevServerOptions.app_mode` values: "" answers both endpoints; the others are Dify's."""

LATENCY_FIELDS: tuple[str, ...] = (
    "stt_latency_ms",
    "first_token_ms",
    "tokens_per_second",
    "tts_first_byte_ms",
    "tts_speed",
    "ping_interval_s",
    "stream_tts",
    "tts_interleave",
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
    tts_interleave: bool = False
    """With `stream_tts`: the speech events come while the text is written, as Dify sends
    them when its synthesis keeps up (each piece only once the text it speaks has been
    sent), and the rest after `message_end`."""
    app_mode: str = ""
    """The app type, as GET /info's `mode`: "" = lenient (both /completion-messages and
    /chat-messages answer, /info has no `mode`, as an older Dify's); `completion`, `chat`,
    `agent-chat` (Agent: `agent_thought`, `message_file`, `agent_message` events, streaming
    only) or `advanced-chat` (Chatflow: `workflow_*` and `node_*` events around the text,
    `message_end` before `workflow_finished`). The other endpoint refuses as Dify does."""
    user_input_form: tuple[InputVariable, ...] = ()
    """The app's input variables (`inputs.QUESTION_FORM` is a current Text Generator's);
    requests are checked against them, and with a `query` variable the app answers it
    instead of the legacy `query` field."""
    speech_to_text: bool = True
    """Off: /audio-to-text answers 400 `speech_to_text_disabled`; /parameters says so."""
    text_to_speech: bool = True
    """Off: /text-to-audio answers 400 `invalid_param` "TTS is not enabled", streams carry
    no speech whatever `stream_tts` says; /parameters says so."""
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

    def __post_init__(self) -> None:
        if self.app_mode not in APP_MODES:
            raise ValueError(f"app_mode must be one of {APP_MODES}, not {self.app_mode!r}")
