"""Building each stage's providers from the settings: one kept-alive client per service."""

from __future__ import annotations

import contextlib
import dataclasses
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from assistant.providers.base import SpeechSource, SpeechToText, Stages, TextToSpeech
from assistant.providers.chain import FailureReport, SpeechToTextChain, TextToSpeechChain
from assistant.providers.local import LocalTextToSpeech
from assistant.providers.retry import RetryPolicy
from assistant.providers.warm import ConnectionWarmer
from assistant.settings import ProviderSettings, Settings


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

    def created(self) -> dict[str, Any]:
        return dict(self._clients)

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


@dataclass(frozen=True, slots=True)
class Services:
    stages: Stages
    dify: Any
    """The Dify client (its /parameters and /info are checked against the config at start)."""
    warmer: ConnectionWarmer
    """Opens each service's connections before a turn needs them."""
    with_providers: Callable[[ProviderSettings], Stages]
    """The stages of other providers, on the same clients (the start-up check leaves out
    a provider the Dify app has turned off). Only providers the settings already use."""


def _connections_in_use(settings: Settings) -> dict[str, int]:
    """How many requests a turn has in flight at once, per service.

    The completion stream holds one connection while the sentences' syntheses (the
    one playing and `tts_prefetch` ahead) each hold another; fallbacks get one. No more
    than a client keeps alive: the rest would be closed as soon as they were opened.
    """
    # Here, not at the top: httpx is loaded with the first client, not with the factory.
    from assistant.providers.http import KEEPALIVE_CONNECTIONS

    providers = settings.providers
    counts: Counter[str] = Counter({"dify": 1})
    tts = "dify" if providers.tts == "dify-stream" else providers.tts
    if providers.tts != "dify-stream":
        counts[tts] += settings.speech.tts_prefetch + 1
    counts[providers.stt] = max(counts[providers.stt], 1)
    for name in (*providers.stt_fallback, *providers.tts_fallback):
        name = "dify" if name == "dify-stream" else name
        counts[name] = max(counts[name], 1)
    return {name: min(n, KEEPALIVE_CONNECTIONS) for name, n in counts.items()}


def _stages(settings: Settings, clients: _Clients, on_failure: FailureReport | None) -> Stages:
    from assistant.providers.dify import DifyTextToSpeech, make_dify_completion

    providers = settings.providers
    policy = RetryPolicy.from_settings(settings.http)
    stt = SpeechToTextChain(
        [_speech_to_text(n, clients) for n in (providers.stt, *providers.stt_fallback)],
        policy,
        on_failure,
    )
    voices = [_text_to_speech(n, clients) for n in (providers.tts, *providers.tts_fallback)]
    # The device's own voice always ends the chain: an answer is never silent.
    tts = TextToSpeechChain(
        [v for v in voices if v is not None] + [LocalTextToSpeech(settings.assistant.language)],
        policy,
        on_failure,
        settings.http.tts_first_audio_timeout_s,
    )
    source = SpeechSource.SENTENCES
    message_tts = None
    if providers.tts == "dify-stream":
        source = SpeechSource.ANSWER_STREAM
    elif providers.tts == "dify" and settings.dify.use_message_id:
        source = SpeechSource.MESSAGE_ID
        message_tts = DifyTextToSpeech(clients.get("dify"))
    return Stages(
        stt=stt,
        # Without in-stream speech the answer ends at message_end: its last sentence is
        # said without waiting for a speech tail or a Chatflow's workflow_finished.
        completion=make_dify_completion(
            clients.get("dify"), speech=source is SpeechSource.ANSWER_STREAM
        ),
        tts=tts,
        speech_source=source,
        message_tts=message_tts,
    )


@contextlib.asynccontextmanager
async def build_stages(
    settings: Settings, on_failure: FailureReport | None = None
) -> AsyncIterator[Services]:
    """The stages of the configured providers, and their clients; closed on exit.

    `on_failure` hears of every failed speech-to-text or text-to-speech attempt, even
    those a retry or a fallback provider recovered from.
    """
    clients = _Clients(settings)
    warmer: ConnectionWarmer | None = None
    try:
        stages = _stages(settings, clients, on_failure)

        def with_providers(providers: ProviderSettings) -> Stages:
            return _stages(dataclasses.replace(settings, providers=providers), clients, on_failure)

        warmer = ConnectionWarmer(
            clients.created(),
            _connections_in_use(settings),
            timeout_s=settings.http.warm_up_timeout_s,
        )
        yield Services(stages, clients.get("dify"), warmer, with_providers)
    finally:
        if warmer is not None:
            await warmer.aclose()
        await clients.aclose()
