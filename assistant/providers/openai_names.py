"""OpenAI's documented model, voice and format names.

A leaf module (it imports nothing) because three layers read it: the config checks
names against it, the OpenAI provider lists voices from it, and the dev server
answers as OpenAI does. Only OpenAI itself is held to these names: compatible
local servers name their models and voices as they like.
"""

from __future__ import annotations

OPENAI_STT_MODELS = ("whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe")
"""/audio/transcriptions models."""
OPENAI_TTS_MODELS = ("tts-1", "tts-1-hd", "gpt-4o-mini-tts")
"""/audio/speech models."""
OPENAI_VOICES = (
    "alloy", "ash", "ballad", "coral", "echo", "fable", "onyx",
    "nova", "sage", "shimmer", "verse", "marin", "cedar",
)  # fmt: skip
"""Every built-in voice (gpt-4o-mini-tts)."""
OPENAI_TTS1_VOICES = ("alloy", "ash", "coral", "echo", "fable", "onyx", "nova", "sage", "shimmer")
"""The built-in voices tts-1 and tts-1-hd accept."""
OPENAI_FORMATS = ("mp3", "opus", "aac", "flac", "wav", "pcm")
"""/audio/speech `response_format` values."""
