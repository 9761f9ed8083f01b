"""The dev server's fault modes beyond canned answers (stall, cut, broken streams, bad
audio), its `reply_sentences` option, and arming faults over `POST /_dev/faults`."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import numpy as np
import pytest

from assistant.audio.decoders import SniffingDecoder
from assistant.audio.wav import AudioFormatError, encode_wav
from assistant.devserver import DevServerOptions, Fault, RunningDevServer, reply_for
from assistant.devserver.fault_responses import MALFORMED_SSE, NO_RESPONSE
from assistant.devserver.replies import tokens
from assistant.text.sse import SSEParser

AUTH = {"Authorization": "Bearer app-test"}
QUERY = "What time is it?"
STREAM = {"inputs": {}, "query": QUERY, "user": "u", "response_mode": "streaming"}
SPEECH = {"text": "A short sentence to say.", "user": "u"}

DEV_SERVER_OPTIONS = DevServerOptions(reply_sentences=1)


@pytest.fixture
async def client(server: RunningDevServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.base_url, headers=AUTH, timeout=10) as http:
        yield http


async def _read(
    client: httpx.AsyncClient, path: str, body: dict[str, Any], **options: Any
) -> tuple[httpx.Response, bytes]:
    """Status line, headers and as much of the body as arrives (raises if it is cut)."""
    async with client.stream("POST", path, json=body, **options) as response:
        data = b""
        async for chunk in response.aiter_raw():
            data += chunk
    return response, data


async def _read_until_cut(
    client: httpx.AsyncClient, path: str, body: dict[str, Any]
) -> tuple[bytes, str]:
    """The body that arrived before the connection was dropped, and httpx's complaint."""
    data = b""
    with pytest.raises(httpx.RemoteProtocolError) as dropped:
        async with client.stream("POST", path, json=body) as response:
            assert response.status_code == 200
            async for chunk in response.aiter_raw():
                data += chunk
    return data, str(dropped.value)


def _events(data: bytes) -> list[dict[str, Any]]:
    parser = SSEParser()
    return [json.loads(event.data) for event in parser.feed(data) if event.data]


def _last(server: RunningDevServer) -> dict[str, Any]:
    return server.state.log[-1].as_json()


# --- stall -------------------------------------------------------------------------------


async def test_stall_sends_nothing_then_hangs_up(
    server: RunningDevServer, client: httpx.AsyncClient
) -> None:
    server.state.faults.add(Fault("completion-messages", mode="stall", stall_s=0.4))
    started = time.monotonic()
    with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
        await client.post("/completion-messages", json=STREAM)
    assert time.monotonic() - started >= 0.4
    record = _last(server)
    assert (record["status"], record["fault_mode"], record["fault_struck"]) == (
        NO_RESPONSE,
        "stall",
        True,
    )


async def test_stall_before_any_byte_trips_the_client_read_timeout(
    server: RunningDevServer, client: httpx.AsyncClient
) -> None:
    server.state.faults.add(Fault("text-to-audio", mode="stall", stall_s=2))
    with pytest.raises(httpx.ReadTimeout):
        await client.post("/text-to-audio", json=SPEECH, timeout=0.3)


async def test_stall_mid_stream_sends_the_first_events_then_nothing(
    server: RunningDevServer, client: httpx.AsyncClient
) -> None:
    server.state.faults.add(Fault("completion-messages", mode="stall", after=2, stall_s=0.4))
    data = b""
    started = time.monotonic()
    with pytest.raises(httpx.RemoteProtocolError):
        async with client.stream("POST", "/completion-messages", json=STREAM) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            async for chunk in response.aiter_raw():
                data += chunk
                if len(_events(data)) == 2:
                    got_two_at = time.monotonic()
    assert [e["answer"] for e in _events(data)] == tokens(reply_for(QUERY, 1))[:2]
    assert time.monotonic() - got_two_at >= 0.35  # the stall, then the hang-up
    assert time.monotonic() - started >= 0.4


# --- cut ---------------------------------------------------------------------------------


async def test_cut_stream_sends_whole_events_then_half_of_the_next(
    server: RunningDevServer, client: httpx.AsyncClient
) -> None:
    server.state.faults.add(Fault("completion-messages", mode="cut", after=2))
    data, complaint = await _read_until_cut(client, "/completion-messages", STREAM)
    assert "incomplete chunked read" in complaint
    whole, _, partial = data.rpartition(b"\n\n")
    assert len(_events(whole + b"\n\n")) == 2
    assert partial.startswith(b"data: {") and not partial.endswith(b"}")
    assert _last(server)["fault_struck"] is True


async def test_cut_audio_sends_part_of_the_real_body(
    server: RunningDevServer, client: httpx.AsyncClient
) -> None:
    _, whole = await _read(client, "/text-to-audio", SPEECH)
    server.state.faults.add(Fault("text-to-audio", mode="cut", after=1))
    data, _ = await _read_until_cut(client, "/text-to-audio", SPEECH)
    chunk = server.state.options.tts_chunk_bytes
    assert data == whole[: chunk + chunk // 2]


async def test_cut_json_answer_and_cut_before_the_answer(
    server: RunningDevServer, client: httpx.AsyncClient
) -> None:
    wav = {"file": ("a.wav", encode_wav(np.zeros(8000, np.int16), 16_000), "audio/wav")}
    server.state.faults.add(Fault("audio-to-text", mode="cut", after=0))
    with pytest.raises(httpx.RemoteProtocolError, match=r"received \d+ bytes, expected"):
        await client.post("/audio-to-text", files=wav, data={"user": "u"})
    server.state.faults.add(Fault("audio-to-text", mode="cut"))
    with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
        await client.post("/audio-to-text", files=wav, data={"user": "u"})
    # Faults are used up: the endpoint answers again.
    answered = await client.post("/audio-to-text", files=wav, data={"user": "u"})
    assert answered.json() == {"text": ""}


# --- broken streams ----------------------------------------------------------------------


async def test_malformed_sse(server: RunningDevServer, client: httpx.AsyncClient) -> None:
    server.state.faults.add(Fault("chat-messages", mode="malformed_sse"))
    response, data = await _read(client, "/chat-messages", STREAM)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert data == MALFORMED_SSE
    [first] = [event.data for event in SSEParser().feed(data) if event.data]
    with pytest.raises(ValueError):
        json.loads(first)  # the JSON lost its second line with the field name


async def test_sse_error_ends_the_real_stream_with_difys_error_event(
    server: RunningDevServer, client: httpx.AsyncClient
) -> None:
    quota = {"code": "provider_quota_exceeded", "message": "Quota exhausted.", "status": 400}
    server.state.faults.add(Fault("completion-messages", mode="sse_error", after=2, body=quota))
    response, data = await _read(client, "/completion-messages", STREAM)
    assert response.status_code == 200  # the stream ends cleanly: no cut
    *messages, error = _events(data)
    assert [e["event"] for e in messages] == ["message", "message"]
    assert error == {
        "event": "error",
        "task_id": messages[0]["task_id"],
        "message_id": messages[0]["message_id"],
        **quota,
    }

    server.state.faults.add(Fault("completion-messages", mode="sse_error"))
    _, data = await _read(client, "/completion-messages", STREAM)
    [error] = _events(data)
    assert (error["event"], error["status"], error["code"]) == (
        "error",
        500,
        "internal_server_error",
    )


async def test_a_fault_after_the_end_of_the_answer_never_strikes(
    server: RunningDevServer, client: httpx.AsyncClient
) -> None:
    server.state.faults.add(Fault("completion-messages", mode="sse_error", after=1000))
    _, data = await _read(client, "/completion-messages", STREAM)
    assert _events(data)[-1]["event"] == "message_end"
    record = _last(server)
    assert record["fault"] is True and "fault_struck" not in record


# --- bad audio ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "content_type"),
    [
        ("/text-to-audio", SPEECH, "audio/mpeg"),
        (
            "/audio/speech",
            {"model": "tts-1", "input": "Hello there.", "voice": "alloy", "response_format": "wav"},
            "audio/wav",
        ),
        (
            "/tts/",
            {"transcript": "Hello there.", "voice": "FEMALE", "encoding": "wav"},
            "audio/wav",
        ),
    ],
)
async def test_corrupt_and_empty_audio_keep_the_audio_type(
    server: RunningDevServer,
    client: httpx.AsyncClient,
    path: str,
    body: dict[str, Any],
    content_type: str,
) -> None:
    root = f"http://{server.host}:{server.port}"
    url = f"{root}{path}" if path.startswith("/tts/") else path
    headers = {"CONVAI-API-KEY": "any"}
    _, good = await _read(client, url, body, headers=headers)
    endpoint = server.state.log[-1].endpoint

    server.state.faults.add(Fault(endpoint, mode="corrupt_audio"))
    response, corrupt = await _read(client, url, body, headers=headers)
    assert (response.status_code, response.headers["content-type"]) == (200, content_type)
    assert len(corrupt) == len(good) and corrupt != good
    assert b"\xff" not in corrupt  # no frame sync to be mistaken for
    decoder = SniffingDecoder(content_type)
    with pytest.raises(AudioFormatError):
        decoder.feed(corrupt)
        decoder.close()

    server.state.faults.add(Fault(endpoint, mode="empty_audio"))
    response, empty = await _read(client, url, body, headers=headers)
    assert (response.status_code, response.headers["content-type"], empty) == (
        200,
        content_type,
        b"",
    )


# --- reply_sentences ---------------------------------------------------------------------


async def test_reply_sentences_shortens_answers(
    server: RunningDevServer, client: httpx.AsyncClient
) -> None:
    blocking = {**STREAM, "response_mode": "blocking"}
    answer = (await client.post("/completion-messages", json=blocking)).json()["answer"]
    assert answer == reply_for(QUERY, 1) == f"You asked: {QUERY}"
    chat = (await client.post("/chat-messages", json=blocking)).json()["answer"]
    assert chat == f"You asked: {QUERY} This is turn 1 of our conversation."
    assert reply_for(QUERY, 2).count(".") + reply_for(QUERY, 2).count("?") == 2
    assert reply_for(QUERY) == reply_for(QUERY, 0) == reply_for(QUERY, 99)


# --- arming over HTTP --------------------------------------------------------------------


async def test_post_faults_takes_and_checks_the_new_fields(
    server: RunningDevServer, client: httpx.AsyncClient
) -> None:
    url = f"http://{server.host}:{server.port}/_dev/faults"
    good = {"endpoint": "completion-messages", "mode": "cut", "after": 3, "count": 2}
    armed = await client.post(url, json=good)
    assert armed.status_code == 200
    assert armed.json() == [
        {"endpoint": "completion-messages", "mode": "cut", "status": 500, "remaining": 2}
    ]
    stall = {"endpoint": "audio-to-text", "mode": "stall", "stall_s": 1.5}
    assert (await client.post(url, json=stall)).status_code == 200

    bad = [
        {"endpoint": "text-to-audio", "mode": "explode"},
        {"endpoint": "text-to-audio", "mode": "sse_error"},
        {"endpoint": "completion-messages", "mode": "corrupt_audio"},
        {"endpoint": "completion-messages", "mode": "cut", "after": -1},
        {"endpoint": "completion-messages", "mode": "cut", "after": "2"},
        {"endpoint": "completion-messages", "mode": "cut", "after": True},
        {"endpoint": "completion-messages", "mode": "stall", "stall_s": 0},
        {"endpoint": "completion-messages", "mode": "stall", "stall_s": 10_000},
        {"endpoint": "completion-messages", "mode": "stall", "stall_s": "1"},
        {"endpoint": "completion-messages", "mode": "sse_error", "body": "oops"},
        {"endpoint": "completion-messages", "mode": 3},
    ]
    for body in bad:
        refused = await client.post(url, json=body)
        assert refused.status_code == 400, body
        assert refused.json()["code"] == "invalid_param"
    assert len((await client.get(url)).json()) == 2
