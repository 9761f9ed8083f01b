"""The stage protocols the loop knows, the one error every provider raises, and the
set of stages a run uses."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

import numpy as np


class ServiceError(Exception):
    """A service refused, failed or answered nonsense; one shape for every provider."""

    def __init__(
        self,
        service: str,
        stage: str,
        code: str,
        message: str,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{service} {stage} failed: {code}: {message}")
        self.service = service
        self.stage = stage
        self.code = code
        self.message = message
        self.status = status
        self.retry_after = retry_after

    def as_event(self) -> dict[str, object]:
        return {
            "service": self.service,
            "stage": self.stage,
            "code": self.code,
            "message": self.message,
            "status": self.status,
        }


@dataclass(frozen=True, slots=True)
class SpeechInput:
    """What speech-to-text receives: one utterance of 16 kHz mono int16 audio."""

    samples: np.ndarray
    sample_rate: int


@dataclass(frozen=True, slots=True)
class Delta:
    """A piece of a streaming answer."""

    text: str = ""
    """Text to append to the answer so far."""
    replace: str | None = None
    """When set, the whole answer so far is replaced by this (Dify output moderation)."""
    audio: bytes = b""
    """Encoded speech carried by the answer stream itself (Dify `tts_message`), decoded
    from base64 event by event; the pieces are not frame-aligned."""
    audio_type: str | None = None
    """Content type of `audio` when the service says (newer Dify); None = sniff it."""
    audio_done: bool = False
    """The stream's own speech is complete (Dify `tts_message_end`)."""
    message_id: str | None = None
    """The answer's id, once known (for /text-to-audio with `message_id`)."""


@dataclass(frozen=True, slots=True)
class AudioChunk:
    """A piece of an encoded speech body as it arrived from the network."""

    data: bytes
    content_type: str | None


class SpeechToText(Protocol):
    async def transcribe(self, speech: SpeechInput) -> str:
        """The text spoken; raises ServiceError."""


class Completion(Protocol):
    def stream(self, query: str) -> AsyncIterator[Delta]:
        """The answer as it is written; raises ServiceError."""

    async def stop(self) -> None:
        """Ask the service to stop the answer in flight (a cancelled turn); never raises."""

    def reset_conversation(self) -> None:
        """Forget the conversation so far (chat apps); a no-op for stateless apps."""


class TextToSpeech(Protocol):
    def stream(self, text: str) -> AsyncIterator[AudioChunk]:
        """Encoded speech for `text`, chunk by chunk; raises ServiceError.

        Providers whose bodies carry no reliable type (raw pcm) set `content_type`
        on every chunk to what they asked for, e.g. `audio/pcm;rate=24000`.
        """


class SpeechSource(StrEnum):
    SENTENCES = "sentences"
    """Each sentence goes to the TTS provider as soon as it is complete."""
    ANSWER_STREAM = "answer_stream"
    """The answer stream carries its own speech (Dify `tts_message`); sentences are
    synthesised only if it carries none."""
    MESSAGE_ID = "message_id"
    """The whole answer is spoken by Dify from its `message_id` once it is complete."""


@dataclass(frozen=True, slots=True)
class Stages:
    stt: SpeechToText
    completion: Completion
    tts: TextToSpeech
    """Sentence synthesis, usually a fallback chain ending in the local voice."""
    speech_source: SpeechSource = SpeechSource.SENTENCES
    message_tts: MessageSpeech | None = None
    """Dify /text-to-audio by message_id; needed for SpeechSource.MESSAGE_ID."""


class MessageSpeech(Protocol):
    def stream(self, text: str, message_id: str | None = None) -> AsyncIterator[AudioChunk]: ...
