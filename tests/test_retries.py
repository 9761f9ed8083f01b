"""Retries, fallbacks and warm connections, over real HTTP against the dev server."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator

import pytest
from audio_samples import concat, silence, speech_16k

from assistant.devserver import DevServerOptions, Fault, RunningDevServer
from assistant.providers.base import ServiceError, SpeechInput
from assistant.providers.chain import SpeechToTextChain, TextToSpeechChain
from assistant.providers.convai import ConvaiClient
from assistant.providers.dify import DifyClient, DifySpeechToText, DifyTextToSpeech
from assistant.providers.openai import OpenAIClient, OpenAISpeechToText
from assistant.providers.retry import RetryPolicy
from assistant.providers.warm import ConnectionWarmer
from assistant.settings import (
    ConvaiSettings,
    DifySettings,
    HttpSettings,
    OpenAISettings,
    Secret,
)

KEY = "app-retry-key"
QUESTION = "What is the weather like on Mars?"
DEV_SERVER_OPTIONS = DevServerOptions(api_key=KEY)
HTTP = HttpSettings(connect_timeout_s=2, read_timeout_s=5)
FAST = RetryPolicy(retries=1, backoff_s=0.05, max_retry_after_s=1.0)


def _error(status: int | None, code: str = "x", retry_after: float | None = None) -> ServiceError:
    return ServiceError("dify", "stt", code, "m", status=status, retry_after=retry_after)


# -- the policy, on its own ------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_transient_statuses_are_retried_with_jittered_backoff(status: int) -> None:
    policy = RetryPolicy(retries=3, backoff_s=0.2)
    for attempt, ceiling in enumerate((0.2, 0.4, 0.8)):
        waits = {policy.delay(_error(status), attempt) for _ in range(50)}
        assert all(w is not None and ceiling / 2 <= w <= ceiling for w in waits)
        assert len(waits) > 1, "the wait must be jittered"
    assert policy.delay(_error(status), 3) is None, "no more than `retries` retries"


@pytest.mark.parametrize("code", ["connect_error", "connection_lost"])
def test_lost_connections_are_retried_but_timeouts_are_not(code: str) -> None:
    assert RetryPolicy().delay(_error(None, code), 0) is not None
    assert RetryPolicy().delay(_error(None, "read_timeout"), 0) is None
    assert RetryPolicy().delay(_error(None, "timeout"), 0) is None


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413, 415, 200])
def test_refusals_are_not_retried(status: int) -> None:
    assert RetryPolicy(retries=5).delay(_error(status), 0) is None


def test_retry_after_is_honoured_up_to_the_limit() -> None:
    policy = RetryPolicy(retries=1, max_retry_after_s=3.0)
    assert policy.delay(_error(429, retry_after=2.5), 0) == 2.5
    assert policy.delay(_error(503, retry_after=0.0), 0) == 0.0
    assert policy.delay(_error(429, retry_after=3.5), 0) is None
    assert RetryPolicy(retries=0).delay(_error(429, retry_after=0.1), 0) is None


# -- chains against the dev server ---------------------------------------------------


def _speech() -> SpeechInput:
    return SpeechInput(concat(silence(200), speech_16k(QUESTION), silence(200)), 16_000)


def _dify(base_url: str) -> DifyClient:
    return DifyClient(DifySettings(base_url=base_url, api_key=Secret(KEY)), HTTP, user="t")


def _openai(server: RunningDevServer) -> OpenAIClient:
    return OpenAIClient(OpenAISettings(base_url=server.base_url, api_key=Secret(KEY)), HTTP)


@pytest.fixture
async def dify(server: RunningDevServer) -> AsyncIterator[DifyClient]:
    client = _dify(server.base_url)
    yield client
    await client.aclose()


def _closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


class _Steps(list[tuple[str, str, str]]):
    def __call__(self, exc: ServiceError, step: str) -> None:
        self.append((exc.service, exc.code, step))


async def test_a_503_upload_is_retried_once_and_succeeds(
    server: RunningDevServer, dify: DifyClient
) -> None:
    server.state.faults.add(Fault("audio-to-text", status=503))
    steps = _Steps()
    chain = SpeechToTextChain([DifySpeechToText(dify)], FAST, steps)
    assert await chain.transcribe(_speech()) == QUESTION
    assert [r.status for r in server.state.records("audio-to-text")] == [503, 200]
    assert steps == [("dify", "internal_server_error", "retry")]


async def test_a_short_retry_after_is_waited_out(
    server: RunningDevServer, dify: DifyClient
) -> None:
    server.state.faults.add(Fault("audio-to-text", status=429, headers={"Retry-After": "0.6"}))
    chain = SpeechToTextChain([DifySpeechToText(dify)], FAST)
    await chain.transcribe(_speech())
    first, second = server.state.records("audio-to-text")
    assert second.time - (first.time + first.duration_s) >= 0.55


async def test_a_long_retry_after_goes_to_the_fallback_at_once(
    server: RunningDevServer, dify: DifyClient
) -> None:
    server.state.faults.add(Fault("audio-to-text", status=429, headers={"Retry-After": "30"}))
    openai = _openai(server)
    steps = _Steps()
    chain = SpeechToTextChain([DifySpeechToText(dify), OpenAISpeechToText(openai)], FAST, steps)
    started = time.monotonic()
    try:
        assert await chain.transcribe(_speech()) == QUESTION
    finally:
        await openai.aclose()
    assert time.monotonic() - started < 5
    assert len(server.state.records("audio-to-text")) == 1
    assert len(server.state.records("audio-transcriptions")) == 1
    assert steps[0][2] == "fallback"


async def test_a_refusal_is_not_retried(server: RunningDevServer, dify: DifyClient) -> None:
    body = {"status": 400, "code": "unsupported_audio_type", "message": "no"}
    server.state.faults.add(Fault("audio-to-text", status=400, body=body, count=2))
    steps = _Steps()
    with pytest.raises(ServiceError) as caught:
        await SpeechToTextChain([DifySpeechToText(dify)], FAST, steps).transcribe(_speech())
    assert caught.value.code == "unsupported_audio_type"
    assert len(server.state.records("audio-to-text")) == 1
    assert steps == [("dify", "unsupported_audio_type", "give_up")]


async def test_connection_refused_is_retried_then_falls_back(server: RunningDevServer) -> None:
    gone = _dify(_closed_port_url())
    working = _dify(server.base_url)
    steps = _Steps()
    chain = SpeechToTextChain([DifySpeechToText(gone), DifySpeechToText(working)], FAST, steps)
    try:
        assert await chain.transcribe(_speech()) == QUESTION
    finally:
        await gone.aclose()
        await working.aclose()
    assert steps == [("dify", "connect_error", "retry"), ("dify", "connect_error", "fallback")]


async def test_a_sentence_is_resynthesised_after_a_500(
    server: RunningDevServer, dify: DifyClient
) -> None:
    server.state.faults.add(Fault("text-to-audio", status=500))
    steps = _Steps()
    chain = TextToSpeechChain([DifyTextToSpeech(dify)], FAST, steps)
    audio = b"".join([chunk.data async for chunk in chain.stream("Hello there.")])
    assert len(audio) > 1000
    assert [r.status for r in server.state.records("text-to-audio")] == [500, 200]
    assert steps == [("dify", "internal_server_error", "retry")]


async def test_retries_exhausted_raise_the_first_error(
    server: RunningDevServer, dify: DifyClient
) -> None:
    server.state.faults.add(Fault("text-to-audio", status=502, body="<html>bad</html>", count=3))
    chain = TextToSpeechChain([DifyTextToSpeech(dify)], RetryPolicy(retries=2, backoff_s=0.01))
    with pytest.raises(ServiceError) as caught:
        async for _ in chain.stream("Hello there."):
            pass
    assert caught.value.status == 502
    assert len(server.state.records("text-to-audio")) == 3


# -- warm connections -----------------------------------------------------------------


async def test_warm_up_opens_one_connection_per_concurrent_use(
    server: RunningDevServer, dify: DifyClient
) -> None:
    openai = _openai(server)
    convai_base = server.base_url.removesuffix("/v1")
    convai = ConvaiClient(ConvaiSettings(base_url=convai_base, api_key=Secret(KEY)), HTTP)
    warmer = ConnectionWarmer({"dify": dify, "openai": openai, "convai": convai}, {"dify": 3})
    try:
        assert await warmer.warm() == {}
        warm_ports = {r.client_port for r in server.state.records("parameters")}
        assert len(warm_ports) == 3
        assert dify.app_parameters is not None  # kept for the start-up check: no extra GET
        assert len(server.state.records("models")) == 1
        assert len(server.state.records("convai-voices")) == 1
        # A turn's concurrent requests find their connections open: no new port appears.
        server.state.reset()
        tts = DifyTextToSpeech(dify)

        async def synthesise(text: str) -> None:
            async for _ in tts.stream(text):
                pass

        async with asyncio.TaskGroup() as group:
            for text in ("One sentence here.", "Another one here.", "And a third one."):
                group.create_task(synthesise(text))
        used = {r.client_port for r in server.state.records("text-to-audio")}
        assert used <= warm_ports and len(used) == 3
    finally:
        await openai.aclose()
        await convai.aclose()


async def test_a_warm_up_failure_is_reported_not_raised(server: RunningDevServer) -> None:
    gone = _dify(_closed_port_url())
    try:
        failures = await ConnectionWarmer({"dify": gone}, {"dify": 2}).warm()
    finally:
        await gone.aclose()
    assert isinstance(failures["dify"], ServiceError)
    assert failures["dify"].code == "connect_error"


async def test_speech_after_a_quiet_spell_rewarms_the_connections(
    server: RunningDevServer, dify: DifyClient
) -> None:
    from assistant.events import SpeechStarted

    warmer = ConnectionWarmer({"dify": dify}, {"dify": 2}, rewarm_after_s=0.5)
    now = time.monotonic()
    warmer.on_event(SpeechStarted(t_speech=now, t=now))  # right after start: not quiet
    await asyncio.sleep(0.1)
    assert server.state.records("parameters") == []
    warmer.on_event(SpeechStarted(t_speech=now + 1.0, t=now + 1.0))
    for _ in range(50):
        if len(server.state.records("parameters")) == 2:
            break
        await asyncio.sleep(0.02)
    assert len(server.state.records("parameters")) == 2
    await warmer.aclose()


async def test_a_stalled_voice_gives_way_to_the_next_within_the_first_audio_limit(
    server: RunningDevServer, dify: DifyClient
) -> None:
    from assistant.providers.local import LocalTextToSpeech

    server.state.faults.add(Fault("text-to-audio", mode="stall", stall_s=20.0))
    steps = _Steps()
    chain = TextToSpeechChain(
        [DifyTextToSpeech(dify), LocalTextToSpeech("en")], FAST, steps, first_audio_timeout_s=1.0
    )
    started = time.monotonic()
    chunks = [chunk async for chunk in chain.stream("Hello there.")]
    assert 1.0 <= time.monotonic() - started < 4.0
    assert sum(len(c.data) for c in chunks) > 1000
    assert steps == [("dify", "timeout", "fallback")]
