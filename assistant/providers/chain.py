"""Fallback chains: a stage tries its providers in order until one answers.

Each provider gets its retries first (`RetryPolicy`: transient failures only,
jittered backoff, a short Retry-After waited out); then the next provider is
asked. Only requests that are safe to repeat go through a chain: speech-to-text
of one utterance and text-to-speech of one sentence (a sentence that has
started playing is never restarted, with this voice or another).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from assistant.audio.decoders.choose import SniffingDecoder
from assistant.audio.wav import AudioFormatError
from assistant.failures import service_name, stage_timeout
from assistant.providers.base import (
    AudioChunk,
    ServiceError,
    SpeechInput,
    SpeechToText,
    TextToSpeech,
)
from assistant.providers.retry import RetryPolicy
from assistant.settings import HttpSettings

log = logging.getLogger(__name__)

T = TypeVar("T")
P = TypeVar("P")

_HTTP_DEFAULTS = HttpSettings()
"""Where the defaults of a chain built without settings (tests) come from."""

FailureReport = Callable[[ServiceError, str], None]
"""Told of every failed attempt and what happens next: "retry", "fallback" or "give_up"."""


class _Chain(Generic[P]):
    def __init__(
        self,
        providers: Sequence[P],
        policy: RetryPolicy | None = None,
        on_failure: FailureReport | None = None,
    ) -> None:
        if not providers:
            raise ValueError("a chain needs at least one provider")
        self._providers = list(providers)
        self._policy = policy or RetryPolicy()
        self._on_failure = on_failure
        self.service = service_name(self._providers[0])

    async def _first_answer(self, call: Callable[[P], Awaitable[T]]) -> T:
        """`call(provider)` for each provider in turn, with retries, until one answers;
        the first provider's error if none does (it names the configured service)."""
        first_error: ServiceError | None = None
        for index, provider in enumerate(self._providers):
            attempt = 0
            while True:
                try:
                    return await call(provider)
                except ServiceError as exc:
                    first_error = first_error or exc
                    wait = self._policy.delay(exc, attempt)
                    last = index == len(self._providers) - 1
                    step = "retry" if wait is not None else "give_up" if last else "fallback"
                    self._report(exc, step, wait)
                    if wait is None:
                        break
                    await asyncio.sleep(wait)
                    attempt += 1
        assert first_error is not None
        raise first_error

    def _report(self, exc: ServiceError, step: str, wait: float | None) -> None:
        if step == "retry":
            log.warning("%s %s failed (%s); retrying in %.2f s", exc.service, exc.stage, exc, wait)
        else:
            log.warning("%s %s failed (%s); %s", exc.service, exc.stage, exc, step)
        if self._on_failure is not None:
            self._on_failure(exc, step)


class SpeechToTextChain(_Chain[SpeechToText]):
    async def transcribe(self, speech: SpeechInput) -> str:
        return await self._first_answer(lambda provider: provider.transcribe(speech))


class TextToSpeechChain(_Chain[TextToSpeech]):
    def __init__(
        self,
        providers: Sequence[TextToSpeech],
        policy: RetryPolicy | None = None,
        on_failure: FailureReport | None = None,
        first_audio_timeout_s: float = _HTTP_DEFAULTS.tts_first_audio_timeout_s,
    ) -> None:
        """`first_audio_timeout_s`: longest wait for one provider's first audio of a
        sentence (`http.tts_first_audio_timeout_s`)."""
        super().__init__(providers, policy, on_failure)
        self._first_audio_timeout_s = first_audio_timeout_s

    async def stream(self, text: str) -> AsyncIterator[AudioChunk]:
        head, rest = await self._first_answer(self._first_audio_of(text))
        try:
            for chunk in head:
                yield chunk
            # From here on the sentence is audible: a failure ends it, no restart.
            async for chunk in rest:
                yield chunk
        finally:
            await rest.aclose()  # type: ignore[attr-defined]

    def _first_audio_of(
        self, text: str
    ) -> Callable[[TextToSpeech], Awaitable[tuple[list[AudioChunk], AsyncIterator[AudioChunk]]]]:
        async def first_audio(
            provider: TextToSpeech,
        ) -> tuple[list[AudioChunk], AsyncIterator[AudioChunk]]:
            # A voice that stalls must not use up the sentence's whole bound: the next
            # provider (in the end the local voice) still has time to say it.
            seconds = self._first_audio_timeout_s
            async with stage_timeout(service_name(provider), "tts", seconds):
                return await _first_chunk(provider, text)

        return first_audio


async def _first_chunk(
    provider: TextToSpeech, text: str
) -> tuple[list[AudioChunk], AsyncIterator[AudioChunk]]:
    """Start a synthesis and read it until it decodes to sound, so that a failure before
    any audio can still be retried or fall back: an error answer, and also a body under
    an audio type that no decoder can play (it is `bad_audio` then).

    Returns the chunks read (none for an empty body) and the rest of the stream. Only
    the first frames are decoded here; the player decodes everything again, from the top.
    """
    stream = provider.stream(text)
    head: list[AudioChunk] = []
    probe: SniffingDecoder | None = None
    try:
        async for chunk in stream:
            head.append(chunk)
            probe = probe or SniffingDecoder(chunk.content_type)
            if probe.feed(chunk.data):
                return head, stream
        if probe is not None:
            probe.close()  # the whole body read: raises if none of it was audio
    except AudioFormatError as exc:
        await stream.aclose()  # type: ignore[attr-defined]
        raise ServiceError(service_name(provider), "tts", "bad_audio", str(exc)) from None
    except BaseException:
        await stream.aclose()  # type: ignore[attr-defined]
        raise
    return head, stream
