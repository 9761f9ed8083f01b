"""Building each stage's providers from the settings: one kept-alive client per service."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from assistant.providers.base import SpeechToText, TextToSpeech
from assistant.providers.chain import SpeechToTextChain, TextToSpeechChain
from assistant.providers.local import LocalTextToSpeech
from assistant.settings import Settings
from assistant.turn import SpeechSource, Stages


class _Clients:
    """Creates each service's client on first use and closes them all at the end."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._clients: dict[str, Any] = {}

    def get(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self._create(service)
        return self._clients[service]

    def _create(self, service: str) -> Any:
        s = self._settings
        if service == "dify":
            from assistant.providers.dify import DifyClient

            return DifyClient(s.dify, s.http, s.assistant.user)
        if service == "openai":
            from assistant.providers.openai import OpenAIClient

            return OpenAIClient(s.openai, s.http)
        if service == "convai":
            from assistant.providers.convai import ConvaiClient

            return ConvaiClient(s.convai, s.http)
        raise ValueError(f"unknown service {service!r}")

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()


def _speech_to_text(name: str, clients: _Clients) -> SpeechToText:
    if name == "dify":
        from assistant.providers.dify import DifySpeechToText

        return DifySpeechToText(clients.get("dify"))
    if name == "openai":
        from assistant.providers.openai import OpenAISpeechToText

        return OpenAISpeechToText(clients.get("openai"))
    raise ValueError(f"unknown speech-to-text provider {name!r}")


def _text_to_speech(name: str, clients: _Clients) -> TextToSpeech | None:
    """None for `dify-stream`: its speech comes with the answer, not per sentence."""
    if name == "dify":
        from assistant.providers.dify import DifyTextToSpeech

        return DifyTextToSpeech(clients.get("dify"))
    if name == "openai":
        from assistant.providers.openai import OpenAITextToSpeech

        return OpenAITextToSpeech(clients.get("openai"))
    if name == "convai":
        from assistant.providers.convai import ConvaiTextToSpeech

        return ConvaiTextToSpeech(clients.get("convai"))
    if name == "dify-stream":
        return None
    raise ValueError(f"unknown text-to-speech provider {name!r}")


@contextlib.asynccontextmanager
async def build_stages(settings: Settings) -> AsyncIterator[tuple[Stages, Any]]:
    """(stages, the Dify client) for the configured providers; clients closed on exit."""
    from assistant.providers.dify import DifyTextToSpeech, make_dify_completion

    clients = _Clients(settings)
    try:
        providers = settings.providers
        stt = SpeechToTextChain(
            [_speech_to_text(n, clients) for n in (providers.stt, *providers.stt_fallback)]
        )
        voices = [_text_to_speech(n, clients) for n in (providers.tts, *providers.tts_fallback)]
        # The device's own voice always ends the chain: an answer is never silent.
        tts = TextToSpeechChain(
            [v for v in voices if v is not None] + [LocalTextToSpeech(settings.assistant.language)]
        )
        source = SpeechSource.SENTENCES
        message_tts = None
        if providers.tts == "dify-stream":
            source = SpeechSource.ANSWER_STREAM
        elif providers.tts == "dify" and settings.dify.use_message_id:
            source = SpeechSource.MESSAGE_ID
            message_tts = DifyTextToSpeech(clients.get("dify"))
        stages = Stages(
            stt=stt,
            completion=make_dify_completion(clients.get("dify")),
            tts=tts,
            speech_source=source,
            message_tts=message_tts,
        )
        yield stages, clients.get("dify")
    finally:
        await clients.aclose()
