"""The whole loop in file mode: a spoken question in, a spoken answer out, over real HTTP."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
from audio_match import find, first_sound_s
from audio_samples import concat, silence, speech_16k, voiced_span

from assistant.app import RunOptions, run_assistant
from assistant.audio.wav import encode_wav
from assistant.devserver import (
    Fault,
    RunningDevServer,
    reply_for,
    speech_for,
)
from assistant.settings import DifySettings, Secret, Settings
from hardware.wav_devices import read_wav

QUESTION = "What is the weather like on Mars?"
SECOND = "Tell me a joke."
SHORT = 2
"""Sentences in the answers of tests that need no more than a couple (each sentence is ~2 s
of real-time playback)."""


DEV_SERVER_LATENCY = dict(
    stt_latency_ms=50, first_token_ms=50, tokens_per_second=100, tts_first_byte_ms=30
)


def _settings(server: RunningDevServer, **dify: object) -> Settings:
    return Settings(
        dify=DifySettings(base_url=server.base_url, api_key=Secret("app-x"), **dify)  # type: ignore[arg-type]
    )


def _write_mic(path: Path, *parts: np.ndarray) -> np.ndarray:
    samples = concat(*parts)
    path.write_bytes(encode_wav(samples, 16_000))
    return samples


def _events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


async def test_question_in_answer_out_in_order(server: RunningDevServer, tmp_path: Path) -> None:
    mic, speaker, events_path = tmp_path / "q.wav", tmp_path / "a.wav", tmp_path / "e.jsonl"
    lead = 500
    _write_mic(mic, silence(lead), speech_16k(QUESTION), silence(1500))

    await run_assistant(_settings(server), RunOptions(mic, speaker, events_path))

    events = _events(events_path)
    kinds = [e["kind"] for e in events]
    assert [e["text"] for e in events if e["kind"] == "transcript"] == [QUESTION]
    answer = reply_for(QUESTION)
    assert [e["text"] for e in events if e["kind"] == "answer"] == [answer]
    assert "error" not in kinds
    states = [e["state"] for e in events if e["kind"] == "state"]
    # The input ran out while the answer played: the run ends idle once it is heard.
    assert states == ["listening", "transcribing", "thinking", "speaking", "idle"]

    # Every sentence sent to TTS is heard, in order, in what the speaker played.
    sentences = [e["text"] for e in events if e["kind"] == "sentence"]
    assert len(sentences) >= 4
    assert " ".join(sentences).split() == answer.split()
    out, rate = read_wav(speaker)
    starts = []
    for sentence in sentences:
        spoken = speech_for(sentence)
        match = find(out, rate, spoken.samples, spoken.sample_rate)
        assert match.score > 0.9, sentence
        starts.append(match.start_s)
    assert starts == sorted(starts)

    # The speaker file shares the microphone's timeline: nothing plays before the
    # question ends, and the first sound is where the first_audio mark says.
    question_end_s = (lead / 1000) + voiced_span(speech_16k(QUESTION))[1] / 16_000
    first = first_sound_s(out, rate)
    assert first is not None and first > question_end_s
    marks = next(e for e in events if e["kind"] == "marks")
    # By default ([vad] speculate = "stt") the upload starts at the first 200 ms of
    # silence, while the hangover runs on; the answer waits for the confirmed end.
    assert (marks["speculations_used"], marks["speculations_discarded"]) == (1, 0)
    assert marks["endpoint"] < marks["first_token"]
    order = [
        "speculation",
        "upload_start",
        "transcript",
        "first_token",
        "first_sentence",
        "first_tts_byte",
        "first_audio",
        "last_audio",
    ]
    assert [marks[name] for name in order] == sorted(marks[name] for name in order)
    # The answer's first sentence starts where the marks put it: speech end plus
    # first_audio (the VAD's end of speech may trail the loud part a little).
    speech_end_s = starts[0] - marks["first_audio"] / 1000
    assert question_end_s - 0.03 < speech_end_s < question_end_s + 0.15


async def test_first_sentence_plays_while_the_answer_is_still_written(
    server: RunningDevServer, tmp_path: Path
) -> None:
    # Slow writing: the whole answer takes seconds, the first sentence is out early.
    server.state.set_latency(tokens_per_second=8)
    mic, speaker, events_path = tmp_path / "q.wav", tmp_path / "a.wav", tmp_path / "e.jsonl"
    _write_mic(mic, silence(300), speech_16k(QUESTION), silence(500))
    await run_assistant(_settings(server), RunOptions(mic, speaker, events_path))
    events = _events(events_path)
    first_audio_t = next(
        e["t"] for e in events if e["kind"] == "state" and e["state"] == "speaking"
    )
    answer_done_t = next(e["t"] for e in events if e["kind"] == "answer")
    assert first_audio_t < answer_done_t - 1.0


async def test_failed_turn_is_reported_and_the_next_succeeds(
    server: RunningDevServer, tmp_path: Path
) -> None:
    server.state.options = dataclasses.replace(server.state.options, reply_sentences=SHORT)
    server.state.faults.add(
        Fault(
            "completion-messages",
            status=400,
            body={"status": 400, "code": "provider_quota_exceeded", "message": "quota gone"},
        )
    )
    mic, speaker, events_path = tmp_path / "q.wav", tmp_path / "a.wav", tmp_path / "e.jsonl"
    _write_mic(
        # Room after the first question for the spoken error message.
        mic,
        silence(300),
        speech_16k(QUESTION),
        silence(6000),
        speech_16k(SECOND),
        silence(800),
    )
    await run_assistant(_settings(server), RunOptions(mic, speaker, events_path))
    events = _events(events_path)
    errors = [e for e in events if e["kind"] == "error"]
    assert len(errors) == 1
    assert errors[0]["service"] == "dify"
    assert errors[0]["stage"] == "completion"
    assert errors[0]["code"] == "provider_quota_exceeded"
    assert errors[0]["spoken"] == "Sorry, I could not get an answer from the assistant service."
    assert [e["text"] for e in events if e["kind"] == "transcript"] == [QUESTION, SECOND]
    assert [e["text"] for e in events if e["kind"] == "answer"] == [reply_for(SECOND, SHORT)]
    assert "error" in [e["state"] for e in events if e["kind"] == "state"]


async def test_blocking_mode_speaks_the_whole_answer(
    server: RunningDevServer, tmp_path: Path
) -> None:
    server.state.options = dataclasses.replace(server.state.options, reply_sentences=SHORT)
    mic, speaker, events_path = tmp_path / "q.wav", tmp_path / "a.wav", tmp_path / "e.jsonl"
    _write_mic(mic, silence(300), speech_16k(QUESTION), silence(500))
    settings = _settings(server, response_mode="blocking")
    await run_assistant(settings, RunOptions(mic, speaker, events_path))
    events = _events(events_path)
    assert [e["text"] for e in events if e["kind"] == "answer"] == [reply_for(QUESTION, SHORT)]
    spoken = [r.details["text"] for r in server.state.records("text-to-audio")]
    assert " ".join(spoken).split() == reply_for(QUESTION, SHORT).split()


async def test_clicks_are_dropped_not_uploaded(server: RunningDevServer, tmp_path: Path) -> None:
    mic, speaker, events_path = tmp_path / "q.wav", tmp_path / "a.wav", tmp_path / "e.jsonl"
    click = (np.random.default_rng(1).standard_normal(1600) * 8000).astype(np.int16)
    _write_mic(mic, silence(500), click, silence(1000))
    await run_assistant(_settings(server), RunOptions(mic, speaker, events_path))
    assert server.state.records("audio-to-text") == []
