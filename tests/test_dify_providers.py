"""The Dify clients over real HTTP against the dev server: requests, answers, every error."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import numpy as np
import pytest
from audio_samples import concat, silence, speech_16k

from assistant.audio.decoders import make_decoder
from assistant.devserver import (
    DevServerOptions,
    Fault,
    RunningDevServer,
    reply_for,
    speech_for,
)
from assistant.providers import dify_stream
from assistant.providers.base import ServiceError, SpeechInput
from assistant.providers.dify import (
    DifyClient,
    DifyCompletion,
    DifySpeechToText,
    DifyTextToSpeech,
)
from assistant.settings import DifySettings, HttpSettings, Secret

KEY = "app-test-key"
QUESTION = "What is the weather like on Mars?"


DEV_SERVER_OPTIONS = DevServerOptions(api_key=KEY)


def _client(server: RunningDevServer, key: str = KEY, mode: str = "streaming") -> DifyClient:
    settings = DifySettings(base_url=server.base_url, api_key=Secret(key), response_mode=mode)
    return DifyClient(settings, HttpSettings(read_timeout_s=5), user="tester")


@pytest.fixture
async def client(server: RunningDevServer) -> AsyncIterator[DifyClient]:
    dify = _client(server)
    yield dify
    await dify.aclose()


def _question() -> SpeechInput:
    return SpeechInput(concat(silence(200), speech_16k(QUESTION), silence(200)), 16_000)


async def test_transcribe_uploads_wav_with_dify_part_type(
    server: RunningDevServer, client: DifyClient
) -> None:
    text = await DifySpeechToText(client).transcribe(_question())
    assert text == QUESTION
    record = server.state.records("audio-to-text")[-1]
    assert record.status == 200
    assert record.details["content_type"] == "audio/wav"
    assert record.details["user"] == "tester"


async def test_wrong_key_is_a_typed_401(server: RunningDevServer) -> None:
    dify = _client(server, key="app-wrong")
    try:
        with pytest.raises(ServiceError) as caught:
            await DifySpeechToText(dify).transcribe(_question())
    finally:
        await dify.aclose()
    assert (caught.value.status, caught.value.code) == (401, "unauthorized")
    assert "app-wrong" not in str(caught.value)


DOCUMENTED_STT_ERRORS = [
    (400, "app_unavailable", "App unavailable, please check your app configurations."),
    (400, "no_audio_uploaded", "Please upload your audio."),
    (400, "provider_not_support_speech_to_text", "Provider not support speech to text."),
    (400, "provider_not_initialize", "No valid model provider credentials found."),
    (400, "provider_quota_exceeded", "Your quota for Dify Hosted OpenAI has been exhausted."),
    (400, "model_currently_not_support", "Dify Hosted OpenAI trial currently not support."),
    (400, "completion_request_error", "Completion request failed."),
    (413, "audio_too_large", "Audio size exceeded."),
    (415, "unsupported_audio_type", "Audio type not allowed."),
    (500, "internal_server_error", "Internal server error."),
]


@pytest.mark.parametrize(("status", "code", "message"), DOCUMENTED_STT_ERRORS)
async def test_each_documented_stt_error_is_typed(
    server: RunningDevServer, client: DifyClient, status: int, code: str, message: str
) -> None:
    body = {"status": status, "code": code, "message": message}
    server.state.faults.add(Fault("audio-to-text", status=status, body=body))
    with pytest.raises(ServiceError) as caught:
        await DifySpeechToText(client).transcribe(_question())
    error = caught.value
    assert (error.service, error.stage, error.status, error.code, error.message) == (
        "dify",
        "stt",
        status,
        code,
        message,
    )


async def test_html_error_page_becomes_a_short_message(
    server: RunningDevServer, client: DifyClient
) -> None:
    page = "<html><body><h1>502 Bad Gateway</h1>" + "x" * 5000 + "</body></html>"
    server.state.faults.add(Fault("audio-to-text", status=502, body=page, content_type="text/html"))
    with pytest.raises(ServiceError) as caught:
        await DifySpeechToText(client).transcribe(_question())
    assert caught.value.code == "http_502"
    assert "502 Bad Gateway" in caught.value.message
    assert len(caught.value.message) <= 200


async def test_oversize_upload_is_refused_before_sending(
    server: RunningDevServer, client: DifyClient
) -> None:
    huge = SpeechInput(np.zeros(16_000 * 1000, dtype=np.int16), 16_000)  # 32 MB of WAV
    with pytest.raises(ServiceError) as caught:
        await DifySpeechToText(client).transcribe(huge)
    assert caught.value.code == "audio_too_large"
    assert server.state.records("audio-to-text") == []


async def test_streaming_completion_yields_the_answer_as_it_is_written(
    server: RunningDevServer, client: DifyClient
) -> None:
    server.state.set_latency(first_token_ms=100, tokens_per_second=50)
    started = time.monotonic()
    arrivals: list[float] = []
    pieces: list[str] = []
    async for delta in DifyCompletion(client).stream(QUESTION):
        arrivals.append(time.monotonic() - started)
        pieces.append(delta.text)
    assert "".join(pieces) == reply_for(QUESTION)
    assert len(pieces) > 10
    # The first words arrived long before the last: nothing waited for the whole answer.
    assert arrivals[0] < arrivals[-1] - 0.2
    record = server.state.records("completion-messages")[-1]
    assert record.details["query"] == QUESTION


async def test_blocking_completion(server: RunningDevServer) -> None:
    dify = _client(server, mode="blocking")
    try:
        deltas = [d async for d in DifyCompletion(dify).stream(QUESTION)]
    finally:
        await dify.aclose()
    assert [d.text for d in deltas] == [reply_for(QUESTION)]


def _sse(*events: dict[str, object]) -> str:
    return "".join(f"data: {json.dumps(e)}\n\n" for e in events)


async def test_error_event_in_a_200_stream_is_terminal(
    server: RunningDevServer, client: DifyClient
) -> None:
    body = _sse(
        {"event": "message", "task_id": "t1", "message_id": "m1", "answer": "Hello"},
        {
            "event": "error",
            "task_id": "t1",
            "message_id": "m1",
            "status": 400,
            "code": "provider_quota_exceeded",
            "message": "quota gone",
        },
    )
    server.state.faults.add(
        Fault("completion-messages", status=200, body=body, content_type="text/event-stream")
    )
    got: list[str] = []
    with pytest.raises(ServiceError) as caught:
        async for delta in DifyCompletion(client).stream(QUESTION):
            got.append(delta.text)
    assert got == ["Hello"]
    assert (caught.value.code, caught.value.message, caught.value.status) == (
        "provider_quota_exceeded",
        "quota gone",
        400,
    )


async def test_stream_without_message_end_is_an_error(
    server: RunningDevServer, client: DifyClient
) -> None:
    body = "event: ping\r\n\r\n" + _sse(
        {"event": "message", "task_id": "t1", "message_id": "m1", "answer": "Half"}
    )
    server.state.faults.add(
        Fault("completion-messages", status=200, body=body, content_type="text/event-stream")
    )
    with pytest.raises(ServiceError) as caught:
        [d async for d in DifyCompletion(client).stream(QUESTION)]
    assert caught.value.code == "stream_cut"


async def test_message_replace_is_passed_on(server: RunningDevServer, client: DifyClient) -> None:
    body = _sse(
        {"event": "message", "task_id": "t", "message_id": "m", "answer": "Bad words"},
        {
            "event": "message_replace",
            "task_id": "t",
            "message_id": "m",
            "answer": "I cannot say that.",
            "reason": "moderation",
        },
        {
            "event": "message_end",
            "task_id": "t",
            "message_id": "m",
            "id": "m",
            "metadata": {"usage": {}},
        },
    )
    server.state.faults.add(
        Fault("completion-messages", status=200, body=body, content_type="text/event-stream")
    )
    deltas = [d async for d in DifyCompletion(client).stream(QUESTION)]
    assert deltas[-1].replace == "I cannot say that."


async def test_rate_limit_carries_retry_after(server: RunningDevServer, client: DifyClient) -> None:
    body = {"code": "too_many_requests", "message": "Too many requests.", "status": 429}
    server.state.faults.add(
        Fault("completion-messages", status=429, body=body, headers={"Retry-After": "2"})
    )
    with pytest.raises(ServiceError) as caught:
        [d async for d in DifyCompletion(client).stream(QUESTION)]
    error = caught.value
    assert (error.service, error.status, error.code) == ("dify", 429, "too_many_requests")
    assert error.retry_after == 2.0


async def test_stop_stops_the_task_with_the_same_user(
    server: RunningDevServer, client: DifyClient
) -> None:
    server.state.set_latency(first_token_ms=0, tokens_per_second=5)
    completion = DifyCompletion(client)
    stream = completion.stream(QUESTION)
    first = await anext(stream)
    assert first.text
    await completion.stop()
    await stream.aclose()
    stops = server.state.records("completion-messages-stop")
    assert len(stops) == 1
    assert stops[0].details["user"] == "tester"
    assert stops[0].details["stopped"] is True


async def _give_up_before_the_first_event(completion: DifyCompletion) -> None:
    """What a discarded early start does: cancel the wait for the first Delta, then stop."""
    stream = completion.stream(QUESTION)
    waiting = asyncio.create_task(anext(stream))
    await asyncio.sleep(0.3)  # the request is in; the service is still "thinking"
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await stream.aclose()
    await completion.stop()  # nothing names the task yet: no stop can be sent by id


async def test_an_answer_given_up_before_its_first_event_is_stopped_once_named(
    server: RunningDevServer, client: DifyClient
) -> None:
    server.state.set_latency(first_token_ms=1000, tokens_per_second=5)
    await _give_up_before_the_first_event(DifyCompletion(client))
    assert server.state.records("completion-messages-stop") == []

    # Read on in the background until the first event names the task, which is stopped.
    await _readers_end(within_s=5)
    [answer] = server.state.records("completion-messages")
    [stop] = server.state.records("completion-messages-stop")
    assert stop.details == {"task_id": answer.details["task_id"], "user": "tester", "stopped": True}
    assert answer.details["stopped"] is True


async def _readers_end(within_s: float) -> None:
    readers = set(dify_stream._abandoned_readers)
    assert len(readers) == 1
    _, pending = await asyncio.wait(readers, timeout=within_s)
    assert not pending


async def test_an_answer_never_named_is_let_go_after_a_bound(
    server: RunningDevServer,
    client: DifyClient,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(dify_stream, "STOP_UNNAMED_WITHIN_S", 0.3)
    server.state.set_latency(first_token_ms=5000)
    await _give_up_before_the_first_event(DifyCompletion(client))
    await _readers_end(within_s=2)
    assert "named no task within 0.3 s" in caplog.text
    assert server.state.records("completion-messages-stop") == []


async def test_tts_streams_decodable_mpeg(server: RunningDevServer, client: DifyClient) -> None:
    text = "The first sentence is already playing."
    chunks = [c async for c in DifyTextToSpeech(client).stream(text)]
    assert len(chunks) > 1
    assert {c.content_type for c in chunks} == {"audio/mpeg"}
    decoder = make_decoder(chunks[0].content_type, chunks[0].data)
    decoded = [p for c in chunks for p in decoder.feed(c.data)] + decoder.close()
    duration = sum(len(p.samples) / p.sample_rate for p in decoded)
    assert duration == pytest.approx(speech_for(text).duration, abs=0.1)


async def test_tts_error_is_typed(server: RunningDevServer, client: DifyClient) -> None:
    with pytest.raises(ServiceError) as caught:
        [c async for c in DifyTextToSpeech(client).stream("")]
    assert (caught.value.status, caught.value.code) == (400, "invalid_param")


async def test_tts_json_null_is_an_error_not_audio(
    server: RunningDevServer, client: DifyClient
) -> None:
    server.state.faults.add(
        Fault("text-to-audio", status=200, body="null", content_type="application/json")
    )
    with pytest.raises(ServiceError) as caught:
        [c async for c in DifyTextToSpeech(client).stream("Hello there.")]
    assert caught.value.code == "no_audio"


async def test_unreachable_service_is_a_typed_error() -> None:
    settings = DifySettings(base_url="http://127.0.0.1:9/v1", api_key=Secret(KEY))
    dify = DifyClient(settings, HttpSettings(connect_timeout_s=1), user="tester")
    try:
        with pytest.raises(ServiceError) as caught:
            await asyncio.wait_for(DifySpeechToText(dify).transcribe(_question()), 5)
    finally:
        await dify.aclose()
    assert caught.value.code == "connect_error"
