"""Fallback chains: a stage tries its providers in order until one answers.

A 429 whose Retry-After is short is waited out and the same provider asked
again once; anything else moves on to the next provider. Only requests that
are safe to repeat go through a chain: speech-to-text of one utterance and
text-to-speech of one sentence (a sentence that has started playing is never
restarted with another voice).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TypeVar

from assistant.failures import service_name
from assistant.providers.base import (
    AudioChunk,
    ServiceError,
    SpeechInput,
    SpeechToText,
    TextToSpeech,
)

log = logging.getLogger(__name__)

MAX_RETRY_AFTER_S = 3.0
"""Longer waits than this are not worth it for a voice turn: fall back instead."""

T = TypeVar("T")


async def _honouring_retry_after(call: Callable[[], Awaitable[T]]) -> T:
    try:
        return await call()
    except ServiceError as exc:
        wait = exc.retry_after
        if exc.status != 429 or wait is None or wait > MAX_RETRY_AFTER_S:
            raise
        log.warning("%s %s rate-limited; retrying in %.1f s", exc.service, exc.stage, wait)
        await asyncio.sleep(wait)
        return await call()


class SpeechToTextChain:
    def __init__(self, providers: Sequence[SpeechToText]) -> None:
        if not providers:
            raise ValueError("a chain needs at least one provider")
        self._providers = list(providers)
        self.service = service_name(self._providers[0])

    async def transcribe(self, speech: SpeechInput) -> str:
        first_error: ServiceError | None = None
        for provider in self._providers:
            try:
                return await _honouring_retry_after(lambda p=provider: p.transcribe(speech))
            except ServiceError as exc:
                first_error = first_error or exc
                log.warning("speech-to-text via %s failed: %s", exc.service, exc)
        assert first_error is not None
        raise first_error


class TextToSpeechChain:
    def __init__(self, providers: Sequence[TextToSpeech]) -> None:
        if not providers:
            raise ValueError("a chain needs at least one provider")
        self._providers = list(providers)
        self.service = service_name(self._providers[0])

    async def stream(self, text: str) -> AsyncIterator[AudioChunk]:
        first_error: ServiceError | None = None
        for provider in self._providers:
            chunks = _honouring_retry_after(lambda p=provider: _first_chunk(p, text))
            try:
                first, rest = await chunks
            except ServiceError as exc:
                first_error = first_error or exc
                log.warning("text-to-speech via %s failed: %s", exc.service, exc)
                continue
            if first is None:
                return
            try:
                yield first
                # From here on the sentence is audible: a failure ends it, no restart.
                async for chunk in rest:
                    yield chunk
            finally:
                await rest.aclose()  # type: ignore[attr-defined]
            return
        assert first_error is not None
        raise first_error


async def _first_chunk(
    provider: TextToSpeech, text: str
) -> tuple[AudioChunk | None, AsyncIterator[AudioChunk]]:
    """Start a synthesis and wait for its first chunk, so failures before any audio
    can still fall back."""
    stream = provider.stream(text)
    try:
        first = await anext(stream)
    except StopAsyncIteration:
        return None, stream
    except BaseException:
        await stream.aclose()  # type: ignore[attr-defined]
        raise
    return first, stream
