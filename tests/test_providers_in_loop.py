"""Every provider choice through the whole loop in file mode, over real HTTP.

Each test asks a spoken question and checks, in what the speaker file holds,
that the answer was spoken by the provider the config picked.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from audio_match import find
from audio_samples import concat, silence, speech_16k

from assistant.app import RunOptions, run_assistant
from assistant.audio.wav import encode_wav
from assistant.devserver import (
    DevServerOptions,
    Fault,
    RunningDevServer,
    reply_for,
    speech_for,
)
from assistant.events import EventBus
from assistant.settings import (
    ConvaiSettings,
    DifySettings,
    OpenAISettings,
    ProviderSettings,
    Secret,
    Settings,
)
from hardware.wav_devices import read_wav

QUESTION = "What is the weather like on Mars?"
SECOND = "Tell me a joke."


DEV_SERVER_LATENCY = dict(first_token_ms=30, tokens_per_second=200)
REPLY_SENTENCES = 2
"""Answers of two sentences: each provider still says several, in order, in half the time
the whole four would take to play."""
DEV_SERVER_OPTIONS = DevServerOptions(reply_sentences=REPLY_SENTENCES)


def _settings(server: RunningDevServer, **sections: Any) -> Settings:
    root = server.base_url.removesuffix("/v1")
    dify = sections.pop("dify", {})
    return Settings(
        dify=DifySettings(base_url=server.base_url, api_key=Secret("app-x"), **dify),
        openai=OpenAISettings(base_url=server.base_url, api_key=Secret("sk-x")),
        convai=ConvaiSettings(base_url=root, api_key=Secret("convai-x")),
        providers=ProviderSettings(**sections.pop("providers", {})),
    )


async def _turns(
    server: RunningDevServer,
    tmp_path: Path,
    settings: Settings,
    *questions: str,
    gap_ms: int = 1200,
    bus: EventBus | None = None,
) -> tuple[list[dict[str, Any]], Any, int]:
    """Ask `questions` with `gap_ms` after each (the next is heard only once the
    previous answer has played); return the events and what the speaker played."""
    parts = [silence(300)]
    for question in questions:
        parts += [speech_16k(question), silence(gap_ms)]
    mic = tmp_path / "mic.wav"
    mic.write_bytes(encode_wav(concat(*parts), 16_000))
    out, events = tmp_path / "out.wav", tmp_path / "events.jsonl"
    await asyncio.wait_for(run_assistant(settings, RunOptions(mic, out, events), bus), 120)
    heard, rate = read_wav(out)
    return [json.loads(line) for line in events.read_text().splitlines()], heard, rate


def _texts(events: list[dict[str, Any]], kind: str) -> list[str]:
    return [e["text"] for e in events if e["kind"] == kind]


def _assert_spoken_in_order(heard: Any, rate: int, sentences: list[str]) -> None:
    starts = []
    for sentence in sentences:
        reference = speech_for(sentence)
        match = find(heard, rate, reference.samples, reference.sample_rate)
        assert match.score > 0.85, (sentence, match)
        starts.append(match.start_s)
    assert starts == sorted(starts)


async def test_openai_stt_and_tts(server: RunningDevServer, tmp_path: Path) -> None:
    settings = _settings(server, providers={"stt": "openai", "tts": "openai"})
    events, heard, rate = await _turns(server, tmp_path, settings, QUESTION)
    assert _texts(events, "transcript") == [QUESTION]
    assert server.state.records("audio-to-text") == []
    assert len(server.state.records("audio-transcriptions")) == 1
    assert server.state.records("text-to-audio") == []
    sentences = _texts(events, "sentence")
    assert [r.details["input"] for r in server.state.records("audio-speech")] == sentences
    _assert_spoken_in_order(heard, rate, sentences)


async def test_convai_tts(server: RunningDevServer, tmp_path: Path) -> None:
    settings = _settings(server, providers={"tts": "convai"})
    events, heard, rate = await _turns(server, tmp_path, settings, QUESTION)
    sentences = _texts(events, "sentence")
    assert len(server.state.records("convai-tts")) == len(sentences)
    _assert_spoken_in_order(heard, rate, sentences)


async def test_dify_in_stream_speech_needs_no_text_to_audio(
    server: RunningDevServer, tmp_path: Path
) -> None:
    server.state.set_latency(stream_tts=True)
    settings = _settings(server, providers={"tts": "dify-stream"})
    events, heard, rate = await _turns(server, tmp_path, settings, QUESTION)
    assert _texts(events, "answer") == [reply_for(QUESTION, REPLY_SENTENCES)]
    assert server.state.records("text-to-audio") == []
    _assert_spoken_in_order(heard, rate, [reply_for(QUESTION, REPLY_SENTENCES)])


async def test_dify_stream_speech_interleaved_with_the_text_is_all_played_in_order(
    server: RunningDevServer, tmp_path: Path
) -> None:
    # A current Dify's auto-play: speech events between the text events, the rest after
    # message_end. The text comes slowly, the speech as soon as its sentence is written.
    tokens_per_second = 8
    server.state.options = dataclasses.replace(server.state.options, reply_sentences=0)
    server.state.set_latency(
        stream_tts=True, tts_interleave=True, tokens_per_second=tokens_per_second
    )
    settings = _settings(server, providers={"tts": "dify-stream"})
    events, heard, rate = await _turns(server, tmp_path, settings, QUESTION)
    answer = reply_for(QUESTION)
    assert _texts(events, "answer") == [answer]
    assert "error" not in [e["kind"] for e in events]
    assert server.state.records("text-to-audio") == []
    record = server.state.records("completion-messages")[0]
    assert 0 < record.details["tts_pieces_before_end"] < record.details["tts_pieces"]
    # Every piece played, in order: the whole answer's speech is heard as one.
    _assert_spoken_in_order(heard, rate, [answer])
    # The audio did not wait for the text: it started well before the text was complete...
    text_s = (len(answer.split()) - 1) / tokens_per_second
    [marks] = [e for e in events if e["kind"] == "marks"]
    assert (marks["first_audio"] - marks["first_token"]) / 1000 < text_s / 2
    # ...and the text did not wait for the audio (about 13 s of it).
    sentence_t = [e["t"] for e in events if e["kind"] == "sentence"]
    assert sentence_t[-1] - sentence_t[0] < text_s + 1.0


async def test_dify_stream_without_audio_falls_back_to_sentences(
    server: RunningDevServer, tmp_path: Path
) -> None:
    # The app auto-plays at start (so the start-up check lets dify-stream be), then its
    # streams carry no speech after all: the sentences are said by the local voice.
    server.state.set_latency(stream_tts=True)
    bus = EventBus()
    bus.add_listener(
        lambda event: event.kind == "ready" and server.state.set_latency(stream_tts=False)
    )
    settings = _settings(server, providers={"tts": "dify-stream"})
    events, heard, rate = await _turns(server, tmp_path, settings, QUESTION, bus=bus)
    assert "error" not in [e["kind"] for e in events]
    assert server.state.records("completion-messages")[0].details.get("tts_pieces") is None
    _assert_spoken_in_order(heard, rate, _texts(events, "sentence"))


async def test_message_id_speech_and_its_null_fallback(
    server: RunningDevServer, tmp_path: Path
) -> None:
    settings = _settings(server, dify={"use_message_id": True})
    events, heard, rate = await _turns(server, tmp_path, settings, QUESTION)
    [request] = server.state.records("text-to-audio")
    assert request.details.get("message_id")
    _assert_spoken_in_order(heard, rate, [reply_for(QUESTION, REPLY_SENTENCES)])

    server.state.reset()
    server.state.faults.add(
        Fault("text-to-audio", status=200, body="null", content_type="application/json")
    )
    events, heard, rate = await _turns(server, tmp_path, settings, QUESTION)
    assert "error" not in [e["kind"] for e in events]
    assert len(server.state.records("text-to-audio")) == 2  # by id (null), then by text
    _assert_spoken_in_order(heard, rate, [reply_for(QUESTION, REPLY_SENTENCES)])


async def test_chat_app_remembers_the_conversation(
    server: RunningDevServer, tmp_path: Path
) -> None:
    settings = _settings(server, dify={"app": "chat"})
    events, _, _ = await _turns(server, tmp_path, settings, QUESTION, SECOND, gap_ms=9_000)
    answers = _texts(events, "answer")
    assert len(answers) == 2
    assert answers[1].endswith("This is turn 2 of our conversation.")
    ids = {r.details.get("conversation_id") for r in server.state.records("chat-messages")}
    assert len(ids - {None, ""}) == 1


async def test_failing_voice_falls_back_in_order(server: RunningDevServer, tmp_path: Path) -> None:
    settings = _settings(server, providers={"tts": "openai", "tts_fallback": ["convai"]})
    server.state.faults.add(Fault("audio-speech", status=503, body="overloaded", count=100))
    events, heard, rate = await _turns(server, tmp_path, settings, QUESTION)
    assert "error" not in [e["kind"] for e in events]
    sentences = _texts(events, "sentence")
    assert len(server.state.records("convai-tts")) == len(sentences)
    _assert_spoken_in_order(heard, rate, sentences)


async def test_every_voice_failing_leaves_the_local_voice(
    server: RunningDevServer, tmp_path: Path
) -> None:
    settings = _settings(server, providers={"tts": "dify", "tts_fallback": ["convai"]})
    server.state.faults.add(Fault("text-to-audio", status=500, count=100))
    server.state.faults.add(Fault("convai-tts", status=500, count=100))
    events, heard, rate = await _turns(server, tmp_path, settings, QUESTION)
    assert "error" not in [e["kind"] for e in events]
    _assert_spoken_in_order(heard, rate, _texts(events, "sentence"))


@pytest.mark.parametrize("app", ["completion", "chat"])
async def test_cancelled_turn_stops_the_dify_task(
    server: RunningDevServer, tmp_path: Path, app: str
) -> None:
    server.state.set_latency(tokens_per_second=4)
    settings = _settings(server, dify={"app": app})
    mic = tmp_path / "mic.wav"
    mic.write_bytes(encode_wav(concat(silence(300), speech_16k(QUESTION), silence(8000)), 16_000))
    bus = EventBus()
    events = bus.subscribe()
    assistant = asyncio.create_task(
        run_assistant(settings, RunOptions(mic, tmp_path / "out.wav"), bus)
    )
    async with asyncio.timeout(30):
        while (await events.get()).kind != "sentence":
            pass
    assistant.cancel()
    with pytest.raises(asyncio.CancelledError):
        await assistant
    endpoint = "completion-messages-stop" if app == "completion" else "chat-messages-stop"
    [stop] = server.state.records(endpoint)
    assert stop.details["user"] == settings.assistant.user
    assert stop.details["stopped"] is True


async def test_unreachable_service_is_said_in_the_offline_voice(tmp_path: Path) -> None:
    settings = Settings(
        dify=DifySettings(base_url="http://127.0.0.1:9/v1", api_key=Secret("app-x"))
    )
    mic = tmp_path / "mic.wav"
    mic.write_bytes(encode_wav(concat(silence(300), speech_16k(QUESTION), silence(600)), 16_000))
    out, events_path = tmp_path / "out.wav", tmp_path / "events.jsonl"
    await asyncio.wait_for(run_assistant(settings, RunOptions(mic, out, events_path)), 60)
    events = [json.loads(line) for line in events_path.read_text().splitlines()]
    [error] = [e for e in events if e["kind"] == "error" and e.get("stage") == "stt"]
    assert (error["service"], error["code"]) == ("dify", "connect_error")
    spoken = error["spoken"]
    assert spoken == "I cannot reach the network service. Please check the connection."
    heard, rate = read_wav(out)
    _assert_spoken_in_order(heard, rate, [spoken])
