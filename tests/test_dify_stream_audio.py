"""Speech carried by the answer stream itself (`tts_message` after `message_end`, or
interleaved with the text), and /text-to-audio by `message_id`, over real HTTP against the
dev server."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from assistant.audio.decoders import SniffingDecoder
from assistant.devserver import (
    DevServerOptions,
    Fault,
    RunningDevServer,
    reply_for,
    speech_for,
    start_devserver,
)
from assistant.devserver.conversations import chat_reply
from assistant.devserver.stream_speech import TTS_PIECE_BYTES
from assistant.providers.base import Delta, ServiceError
from assistant.providers.dify import DifyClient, DifyCompletion, DifyTextToSpeech
from assistant.providers.dify_chat import DifyChat
from assistant.settings import DifySettings, HttpSettings, Secret

KEY = "app-audio-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
QUESTION = "Is it going to rain tomorrow?"


DEV_SERVER_OPTIONS = DevServerOptions(api_key=KEY, stream_tts=True)


def _client(server: RunningDevServer, app: str = "completion", user: str = "tester") -> DifyClient:
    settings = DifySettings(base_url=server.base_url, api_key=Secret(KEY), app=app)
    return DifyClient(settings, HttpSettings(read_timeout_s=10), user=user)


@pytest.fixture
async def client(server: RunningDevServer) -> AsyncIterator[DifyClient]:
    dify = _client(server)
    yield dify
    await dify.aclose()


def _duration(pieces: list[bytes]) -> float:
    """Seconds of audio in MP3 `pieces`, fed to a decoder in order as they arrived."""
    decoder = SniffingDecoder("audio/mpeg")
    chunks = [c for piece in pieces for c in decoder.feed(piece)] + decoder.close()
    return sum(c.duration for c in chunks)


def _check_spoken_answer(deltas: list[Delta], answer: str, message_id: str) -> None:
    """Text first, then the answer's speech, then audio_done; the id on every Delta."""
    text_at = [i for i, d in enumerate(deltas) if d.text]
    audio_at = [i for i, d in enumerate(deltas) if d.audio]
    assert "".join(d.text for d in deltas) == answer
    assert text_at and audio_at and max(text_at) < min(audio_at)
    assert deltas[-1].audio_done and not any(d.audio_done for d in deltas[:-1])
    assert {d.audio_type for d in deltas if d.audio} == {"audio/mpeg"}
    assert {d.message_id for d in deltas} == {message_id}
    duration = _duration([d.audio for d in deltas if d.audio])
    assert duration == pytest.approx(speech_for(answer).duration, abs=0.1)


async def test_speech_events_follow_message_end_in_unaligned_pieces(
    server: RunningDevServer,
) -> None:
    body = {"inputs": {}, "query": QUESTION, "user": "u", "response_mode": "streaming"}
    async with httpx.AsyncClient(base_url=server.base_url, headers=AUTH) as http:
        response = await http.post("/completion-messages", json=body)
    events = [json.loads(line[6:]) for line in response.text.split("\n") if line[:6] == "data: "]
    kinds = [e["event"] for e in events]
    end = kinds.index("message_end")
    assert set(kinds[:end]) == {"message"}
    assert set(kinds[end + 1 : -1]) == {"tts_message"} and kinds[-1] == "tts_message_end"
    assert events[-1]["audio"] == ""
    speech = events[end + 1 : -1]
    assert all(e["message_id"] == events[0]["message_id"] for e in speech)
    pieces = [base64.b64decode(e["audio"]) for e in speech]
    assert all(len(p) == TTS_PIECE_BYTES for p in pieces[:-1])
    # Frames are split across events: most pieces do not start on an MPEG frame sync.
    assert sum(p[0] == 0xFF and p[1] & 0xE0 == 0xE0 for p in pieces[1:]) < len(pieces) // 2
    # Each event's base64 is padded on its own: only per-event decoding gives the audio.
    with pytest.raises(binascii.Error):
        base64.b64decode("".join(e["audio"] for e in speech), validate=True)
    assert _duration(pieces) == pytest.approx(speech_for(reply_for(QUESTION)).duration, abs=0.1)


async def test_completion_stream_carries_the_answers_speech(
    server: RunningDevServer, client: DifyClient
) -> None:
    deltas = [d async for d in DifyCompletion(client).stream(QUESTION)]
    record = server.state.records("completion-messages")[-1]
    _check_spoken_answer(deltas, reply_for(QUESTION), record.details["message_id"])
    assert record.details["tts_pieces"] == sum(1 for d in deltas if d.audio)


async def test_chat_stream_carries_the_answers_speech(server: RunningDevServer) -> None:
    dify = _client(server, app="chat")
    try:
        deltas = [d async for d in DifyChat(dify).stream(QUESTION)]
    finally:
        await dify.aclose()
    record = server.state.records("chat-messages")[-1]
    _check_spoken_answer(deltas, chat_reply(QUESTION, 1), record.details["message_id"])


async def test_stream_tts_is_live_and_announced_by_parameters(
    server: RunningDevServer, client: DifyClient
) -> None:
    control = f"http://{server.host}:{server.port}/_dev/latency"
    async with httpx.AsyncClient(headers=AUTH) as http:
        assert (await http.put(control, json={"stream_tts": False})).json()["stream_tts"] is False
        refused = await http.put(control, json={"stream_tts": 1})
    assert refused.status_code == 400
    assert (await client.parameters())["text_to_speech"]["autoPlay"] == "disabled"
    deltas = [d async for d in DifyCompletion(client).stream(QUESTION)]
    assert not any(d.audio or d.audio_done for d in deltas)
    server.state.set_latency(stream_tts=True)
    assert (await client.parameters())["text_to_speech"]["autoPlay"] == "enabled"


async def test_text_to_audio_speaks_a_real_message_id(
    server: RunningDevServer, client: DifyClient
) -> None:
    server.state.set_latency(stream_tts=False)
    deltas = [d async for d in DifyCompletion(client).stream(QUESTION)]
    message_id = deltas[-1].message_id
    assert message_id == server.state.records("completion-messages")[-1].details["message_id"]
    chunks = [c async for c in DifyTextToSpeech(client).stream("", message_id=message_id)]
    assert {c.content_type for c in chunks} == {"audio/mpeg"}
    duration = _duration([c.data for c in chunks])
    assert duration == pytest.approx(speech_for(reply_for(QUESTION)).duration, abs=0.1)
    record = server.state.records("text-to-audio")[-1]
    assert (record.details["message_id"], record.details["text"]) == (
        message_id,
        reply_for(QUESTION),
    )

    with pytest.raises(ServiceError) as unknown:
        [c async for c in DifyTextToSpeech(client).stream("", message_id=str(uuid.uuid4()))]
    assert unknown.value.code == "no_audio"
    stranger = _client(server, user="someone-else")
    try:
        with pytest.raises(ServiceError) as not_theirs:
            [c async for c in DifyTextToSpeech(stranger).stream("Hi.", message_id=message_id)]
    finally:
        await stranger.aclose()
    assert not_theirs.value.code == "no_audio"


def _sse(*events: dict[str, object]) -> str:
    return "".join(f"data: {json.dumps(e)}\n\n" for e in events)


def _canned(server: RunningDevServer, body: str) -> None:
    server.state.faults.add(
        Fault("completion-messages", status=200, body=body, content_type="text/event-stream")
    )


async def test_message_id_is_announced_on_message_end(
    server: RunningDevServer, client: DifyClient
) -> None:
    # An older stream whose text events name no message: message_end still does.
    _canned(
        server,
        _sse(
            {"event": "message", "task_id": "t", "answer": "Hello."},
            {"event": "message_end", "task_id": "t", "id": "m-9", "metadata": {}},
        ),
    )
    deltas = [d async for d in DifyCompletion(client).stream(QUESTION)]
    assert [(d.text, d.message_id) for d in deltas] == [("Hello.", None), ("", "m-9")]


async def test_speech_failure_after_message_end_keeps_the_answer(
    server: RunningDevServer, client: DifyClient
) -> None:
    # The text was complete at message_end: only the speech tail failed, so the stream
    # ends there as if the speech had (the turn's own voice then says what is missing).
    audio = base64.b64encode(b"\xff\xf3\x44\xc4" * 10).decode()
    common = {"task_id": "t", "message_id": "m"}
    _canned(
        server,
        _sse(
            {"event": "message", **common, "answer": "Hi."},
            {"event": "message_end", **common, "id": "m", "metadata": {}},
            {"event": "tts_message", **common, "audio": audio, "audio_type": "mp3"},
            {
                "event": "error",
                **common,
                "status": 400,
                "code": "completion_request_error",
                "message": "voice failed",
            },
        ),
    )
    seen = [delta async for delta in DifyCompletion(client).stream(QUESTION)]
    assert [d.text for d in seen if d.text] == ["Hi."]
    assert [d.audio_type for d in seen if d.audio] == ["audio/mpeg"]
    assert seen[-1] == Delta(audio_done=True, message_id="m")


async def test_audio_that_is_not_base64_is_malformed(
    server: RunningDevServer, client: DifyClient
) -> None:
    common = {"task_id": "t", "message_id": "m"}
    _canned(
        server,
        _sse(
            {"event": "message_end", **common, "id": "m", "metadata": {}},
            {"event": "tts_message", **common, "audio": "not base64!"},
        ),
    )
    with pytest.raises(ServiceError) as caught:
        [d async for d in DifyCompletion(client).stream(QUESTION)]
    assert caught.value.code == "malformed_response"


# -- speech interleaved with the text (a current Dify's auto-play) --------------------------


@contextlib.asynccontextmanager
async def _interleaving(**latency: float) -> AsyncIterator[DifyClient]:
    """A client of an app whose speech comes while its text is written (slowly)."""
    options = DevServerOptions(api_key=KEY, stream_tts=True, tts_interleave=True)
    server = await start_devserver(options=options)
    server.state.set_latency(first_token_ms=300, tokens_per_second=25, **latency)
    dify = _client(server)
    try:
        yield dify
    finally:
        await dify.aclose()
        await server.stop()


async def test_interleaved_speech_is_passed_on_as_it_comes() -> None:
    async with _interleaving() as dify:
        deltas = [d async for d in DifyCompletion(dify).stream(QUESTION)]
    text_at = [i for i, d in enumerate(deltas) if d.text]
    audio_at = [i for i, d in enumerate(deltas) if d.audio]
    assert min(audio_at) < max(text_at) < max(audio_at)  # between the text and after it
    answer = reply_for(QUESTION)
    assert "".join(d.text for d in deltas) == answer
    assert deltas[-1].audio_done
    duration = _duration([d.audio for d in deltas if d.audio])
    assert duration == pytest.approx(speech_for(answer).duration, abs=0.1)


async def test_without_speech_wanted_the_answer_ends_at_message_end() -> None:
    # The speech tail is paced in real time (seconds of it): the text does not wait for it.
    async with _interleaving(tts_speed=1.0) as dify:
        started = asyncio.get_running_loop().time()
        deltas = [d async for d in DifyCompletion(dify, speech=False).stream(QUESTION)]
        took = asyncio.get_running_loop().time() - started
        # A second question finds the client working (the first body was let go of).
        again = [d async for d in DifyCompletion(dify, speech=False).stream(QUESTION)]
    assert "".join(d.text for d in deltas) == reply_for(QUESTION)
    assert not any(d.audio or d.audio_done for d in deltas)
    assert took < speech_for(reply_for(QUESTION)).duration / 2
    assert "".join(d.text for d in again) == reply_for(QUESTION)
