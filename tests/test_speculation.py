"""Speculative transcription (and completion) during the silence hangover.

The dev server knows both halves of the question as phrases of their own, so a question cut
at its pause is visibly transcribed and answered as "What is the weather like" instead of the
whole "What is the weather like on Mars?" (its recogniser hears the whole across the pause).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from audio_match import find, first_sound_s
from audio_samples import RATE, blocks, concat, silence, speech_16k, voiced_span
from pulse import PulseServer

from assistant.app import RunOptions, run_assistant
from assistant.audio.endpointer import (
    Endpointer,
    EndpointEvent,
    SpeechPaused,
    SpeechResumed,
    SpeechStarted,
    UtteranceEnded,
)
from assistant.audio.wav import encode_wav
from assistant.config import ConfigError, load_config
from assistant.devserver import DevServerOptions, RunningDevServer, reply_for, speech_for
from assistant.events import Answer, Event, EventBus, Marks, Subscription, Transcript
from assistant.settings import (
    DifySettings,
    EarconSettings,
    Secret,
    Settings,
    Speculate,
    VadSettings,
)
from assistant.speculation import Gate
from assistant.states import State
from hardware.wav_devices import read_wav

HALF_1 = "What is the weather like"
HALF_2 = "on Mars?"
QUESTION = f"{HALF_1} {HALF_2}"
DEV_SERVER_OPTIONS = DevServerOptions(phrases=(HALF_1, HALF_2))
DEV_SERVER_LATENCY = dict(
    stt_latency_ms=50, first_token_ms=50, tokens_per_second=100, tts_first_byte_ms=30
)
LEAD_MS = 500
T0 = 100.0
MODES = [Speculate.OFF, Speculate.STT, Speculate.STT_COMPLETION]


def voiced(text: str) -> np.ndarray:
    """espeak-ng's `text` without its leading and trailing silence."""
    speech = speech_16k(text)
    start, end = voiced_span(speech)
    return speech[start:end]


def paused_question(pause_ms: int, tail_ms: int = 1500) -> np.ndarray:
    """The question with `pause_ms` of silence between the end of one half's sound and the
    start of the other's."""
    return concat(
        silence(LEAD_MS), voiced(HALF_1), silence(pause_ms), voiced(HALF_2), silence(tail_ms)
    )


def endpoint(samples: np.ndarray, vad: VadSettings, block_ms: float = 20) -> list[EndpointEvent]:
    endpointer = Endpointer(vad, pause_events=True)
    events: list[EndpointEvent] = []
    for block in blocks(samples, block_ms, T0):
        events += endpointer.process(block)
    return events


def kinds(events: list[Any]) -> list[str]:
    return [type(e).__name__ for e in events]


# -- the endpointer's pause events ----------------------------------------------------------


@pytest.mark.parametrize("block_ms", [10, 20, 32])
def test_pause_then_resume_then_pause_that_ends_it(block_ms: float) -> None:
    signal = paused_question(300)
    events = endpoint(signal, VadSettings(), block_ms)
    assert kinds(events) == [
        "SpeechStarted",
        "SpeechPaused",
        "SpeechResumed",
        "SpeechPaused",
        "UtteranceEnded",
    ]
    _started, first, resumed, last, ended = events
    assert isinstance(first, SpeechPaused) and isinstance(last, SpeechPaused)
    assert isinstance(resumed, SpeechResumed) and isinstance(ended, UtteranceEnded)
    half_end = T0 + (LEAD_MS / 1000) + len(voiced(HALF_1)) / RATE
    # The first pause holds the first half only, noticed 200 ms after its speech ended.
    assert first.utterance.t_speech_end == pytest.approx(half_end, abs=0.08)
    assert first.t - first.utterance.t_speech_end == pytest.approx(0.2, abs=0.021)
    assert first.utterance.t_detected == first.t
    assert resumed.t > half_end + 0.2
    # The last pause carries exactly what the hangover then ends: the same audio.
    np.testing.assert_array_equal(last.utterance.samples, ended.utterance.samples)
    assert last.utterance.t_start == ended.utterance.t_start
    assert last.utterance.t_speech_end == ended.utterance.t_speech_end
    assert last.utterance.speech_ms == ended.utterance.speech_ms
    assert ended.utterance.t_detected - last.t == pytest.approx(0.3, abs=0.021)
    assert len(first.utterance.samples) < len(ended.utterance.samples)


def test_no_pause_events_unless_asked_for_or_too_short() -> None:
    signal = paused_question(300)
    plain = Endpointer(VadSettings())
    events = [e for block in blocks(signal, 20, T0) for e in plain.process(block)]
    assert kinds(events) == ["SpeechStarted", "UtteranceEnded"]
    # Less voiced audio than min_speech_ms so far: nothing worth an upload.
    events = endpoint(signal, VadSettings(min_speech_ms=1200))
    assert kinds(events) == ["SpeechStarted", "SpeechPaused", "UtteranceEnded"]
    paused = events[1]
    assert isinstance(paused, SpeechPaused) and paused.utterance.speech_ms >= 1200
    # A pause as long as the hangover would only come with the end itself.
    events = endpoint(signal, VadSettings(speculate_after_ms=500))
    assert kinds(events) == ["SpeechStarted", "UtteranceEnded"]


def test_short_gaps_are_no_pause_and_push_to_talk_has_none() -> None:
    events = endpoint(paused_question(100), VadSettings())
    assert kinds(events) == ["SpeechStarted", "SpeechPaused", "UtteranceEnded"]
    endpointer = Endpointer(VadSettings(), hands_free=False, pause_events=True)
    endpointer.begin_manual(T0)
    events = [e for b in blocks(paused_question(300), 20, T0) for e in endpointer.process(b)]
    assert events == []
    assert isinstance(endpointer.end_manual(T0 + 4), UtteranceEnded)


def test_pause_events_on_synthetic_arrays() -> None:
    """Bursts of espeak vowels separated by exact silences: a pause every time the silence
    reaches 200 ms, a resume at the next burst, the end after 500 ms."""
    burst = voiced("ah")
    signal = concat(
        silence(500), burst, silence(150), burst, silence(260), burst, silence(400), burst,
        silence(700),
    )  # fmt: skip
    events = endpoint(signal, VadSettings(min_speech_ms=0))
    assert kinds(events) == [
        "SpeechStarted",
        "SpeechPaused",
        "SpeechResumed",
        "SpeechPaused",
        "SpeechResumed",
        "SpeechPaused",
        "UtteranceEnded",
    ]
    assert isinstance(events[0], SpeechStarted)


# -- configuration ------------------------------------------------------------------------------


def test_speculation_settings_and_their_checks(caplog: pytest.LogCaptureFixture) -> None:
    assert Settings().vad.speculate is Speculate.STT
    settings = load_config(
        None,
        environ={
            "VOICE_ASSISTANT_VAD_SPECULATE": "stt+completion",
            "VOICE_ASSISTANT_VAD_SPECULATE_AFTER_MS": "150",
        },
    )
    assert (settings.vad.speculate, settings.vad.speculate_after_ms) == (
        Speculate.STT_COMPLETION,
        150,
    )
    with pytest.raises(
        ConfigError, match=re.escape("vad.speculate = 'maybe': must be one of off, stt")
    ):
        load_config(None, environ={"VOICE_ASSISTANT_VAD_SPECULATE": "maybe"})
    with pytest.raises(
        ConfigError, match=re.escape("vad.speculate_after_ms = 50: must be between")
    ):
        load_config(None, environ={"VOICE_ASSISTANT_VAD_SPECULATE_AFTER_MS": "50"})
    # A chat app would keep a stopped half question in its conversation.
    with pytest.raises(ConfigError, match=re.escape('needs dify.app = "completion"')):
        load_config(
            None,
            environ={
                "VOICE_ASSISTANT_VAD_SPECULATE": "stt+completion",
                "VOICE_ASSISTANT_DIFY_APP": "chat",
            },
        )
    assert (
        load_config(None, environ={"VOICE_ASSISTANT_DIFY_APP": "chat"}).vad.speculate
        is Speculate.STT
    )
    # A short hangover set on its own keeps working; speculation just never starts.
    settings = load_config(None, environ={"VOICE_ASSISTANT_VAD_HANGOVER_MS": "200"})
    assert settings.vad.hangover_ms == 200
    assert "no speculative work will start" in caplog.text


# -- the gate ---------------------------------------------------------------------------------


async def test_gate_holds_events_and_states_in_order_until_opened() -> None:
    bus = EventBus()
    seen = bus.subscribe()
    states: list[State] = []
    gate = Gate(bus, states.append, answer_early=False)
    gate.publish(Transcript(turn=1, text="x"))
    gate.set_state(State.THINKING)
    gate.publish(Answer(turn=1, text="y"))
    assert seen.get_nowait() is None and states == []
    waiting = asyncio.create_task(gate.wait())
    await asyncio.sleep(0)
    assert not waiting.done()
    gate.open()
    await asyncio.wait_for(waiting, 1)
    assert [e.kind for e in _drain(seen)] == ["transcript", "answer"]
    assert states == [State.THINKING]
    gate.publish(Marks(turn=1))  # open: straight through
    assert [e.kind for e in _drain(seen)] == ["marks"]


# -- the loop, in file mode, over real HTTP ---------------------------------------------------


def _settings(server: RunningDevServer, mode: Speculate, **vad: Any) -> Settings:
    return Settings(
        vad=VadSettings(speculate=mode, **vad),
        dify=DifySettings(base_url=server.base_url, api_key=Secret("app-x")),
        # What these tests read off the speaker is the answer's first sound: no cue before it.
        earcons=EarconSettings(thinking=False),
    )


async def _run(
    server: RunningDevServer,
    tmp_path: Path,
    samples: np.ndarray,
    mode: Speculate,
    *,
    whole_answer: bool = False,
    played_s: float = 3.0,
    **vad: Any,
) -> tuple[list[dict[str, Any]], np.ndarray, int]:
    """Run the assistant on `samples`; its events and what its speaker played.

    Unless `whole_answer`, it is stopped once the answer is written and its first sentence
    has played for `played_s`, instead of listening to all of it.
    """
    mic, speaker, events_path = tmp_path / "q.wav", tmp_path / "a.wav", tmp_path / "e.jsonl"
    mic.write_bytes(encode_wav(samples, RATE))
    bus = EventBus()
    heard = asyncio.Event()
    seen: set[str] = set()

    def watch(event: Event) -> None:
        seen.add(event.kind if event.kind != "state" else event.data["state"])
        if {"answer", "speaking"} <= seen:
            heard.set()

    bus.add_listener(watch)
    options = RunOptions(mic, speaker, events_path)
    running = asyncio.create_task(run_assistant(_settings(server, mode, **vad), options, bus))
    if not whole_answer:
        waiting = asyncio.create_task(heard.wait())
        await asyncio.wait({running, waiting}, return_when=asyncio.FIRST_COMPLETED)
        waiting.cancel()
        if not running.done():
            await asyncio.sleep(played_s)
            running.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await running
    events = [json.loads(line) for line in events_path.read_text().splitlines()]
    out, rate = read_wav(speaker)
    return events, out, rate


def _of(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in events if e["kind"] == kind]


def _spoken(server: RunningDevServer) -> list[str]:
    """What was sent to text-to-speech, in the order it was asked for (the log is in the
    order the answers finished)."""
    records = sorted(server.state.records("text-to-audio"), key=lambda r: r.time)
    return [r.details["text"] for r in records]


def _assert_answered_whole(
    server: RunningDevServer, events: list[dict[str, Any]], out: np.ndarray, rate: int
) -> None:
    """One turn, transcribed and answered as the whole question; the first thing the speaker
    played is the whole question's answer, from its start to the end of its first sentence."""
    assert [e["text"] for e in _of(events, "transcript")] == [QUESTION]
    assert [e["text"] for e in _of(events, "answer")] == [reply_for(QUESTION)]
    assert _of(events, "error") == []
    assert len(_of(events, "marks")) == 1
    first_sentence = reply_for(QUESTION).split("? ")[0] + "?"
    assert first_sentence in _spoken(server)
    reference = speech_for(first_sentence)
    match = find(out, rate, reference.samples, reference.sample_rate)
    assert match.score > 0.9
    first = first_sound_s(out, rate)
    assert first is not None and first == pytest.approx(match.start_s, abs=0.1)


async def test_speculation_is_used_with_no_second_upload(
    server: RunningDevServer, tmp_path: Path
) -> None:
    events, out, rate = await _run(
        server,
        tmp_path,
        concat(silence(LEAD_MS), speech_16k(QUESTION), silence(1500)),
        Speculate.STT,
    )
    _assert_answered_whole(server, events, out, rate)
    assert [(e["outcome"], e.get("transcript")) for e in _of(events, "speculation")] == [
        ("started", None),
        ("used", QUESTION),
    ]
    assert len(server.state.records("audio-to-text")) == 1
    marks = _of(events, "marks")[0]
    assert (marks["speculations_used"], marks["speculations_discarded"]) == (1, 0)
    # Uploaded 200 ms after speech ended, the transcript in before the hangover ended.
    assert marks["speculation"] == pytest.approx(200, abs=21)
    assert marks["upload_start"] < marks["transcript"] < marks["endpoint"] < marks["first_token"]
    kinds_seen = [e["kind"] for e in events]
    # The held turn comes out only after the utterance was confirmed.
    assert kinds_seen.index("utterance") < kinds_seen.index("transcript")
    states = [e["state"] for e in _of(events, "state")]
    assert states == ["listening", "transcribing", "thinking", "speaking"]


async def test_speculation_is_discarded_when_speech_resumes(
    server: RunningDevServer, tmp_path: Path
) -> None:
    # Started early (100 ms), so its transcript is surely in before the question goes on.
    events, out, rate = await _run(
        server, tmp_path, paused_question(450), Speculate.STT, speculate_after_ms=100
    )
    _assert_answered_whole(server, events, out, rate)
    speculations = _of(events, "speculation")
    assert [(e["outcome"], e.get("reason")) for e in speculations] == [
        ("started", None),
        ("discarded", "resumed"),
        ("started", None),
        ("used", None),
    ]
    # The discarded one had heard the first half; it never reached the completion.
    assert speculations[1]["transcript"] == HALF_1
    assert [r.details["transcript"] for r in server.state.records("audio-to-text")] == [
        HALF_1,
        QUESTION,
    ]
    assert [r.details["query"] for r in server.state.records("completion-messages")] == [QUESTION]
    marks = _of(events, "marks")[0]
    assert (marks["speculations_used"], marks["speculations_discarded"]) == (1, 1)


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.value)
@pytest.mark.parametrize("pause_ms", [200, 300, 450])
async def test_a_question_with_a_pause_is_answered_whole(
    server: RunningDevServer, tmp_path: Path, pause_ms: int, mode: Speculate
) -> None:
    events, out, rate = await _run(server, tmp_path, paused_question(pause_ms), mode)
    _assert_answered_whole(server, events, out, rate)
    outcomes = [e["outcome"] for e in _of(events, "speculation")]
    if mode is Speculate.OFF:
        assert outcomes == []
        assert len(server.state.records("audio-to-text")) == 1
    else:
        assert outcomes[-2:] == ["started", "used"]
        assert outcomes.count("used") == 1
        if pause_ms >= 300:
            assert outcomes[:2] == ["started", "discarded"]
    # Whatever was started early, only the whole question was ever answered aloud.
    half_end_s = (LEAD_MS / 1000) + (len(voiced(HALF_1)) + RATE * pause_ms // 1000) / RATE
    first = first_sound_s(out, rate)
    assert first is not None and first > half_end_s + len(voiced(HALF_2)) / RATE + 0.5


@pytest.mark.parametrize(
    "first_token_ms",
    [
        # A quick first token, slow writing: the early answer has surely begun (its first
        # event names the task to stop) and is still being written when the question goes on.
        0,
        # Still "thinking" when the question goes on: no event has named the early task, and
        # Dify would go on writing it whether its connection closes or not. It is read on in
        # the background until its first event names it, then stopped.
        900,
    ],
)
async def test_speculative_completion_is_stopped_and_never_heard(
    server: RunningDevServer, tmp_path: Path, first_token_ms: int
) -> None:
    server.state.set_latency(stt_latency_ms=0, first_token_ms=first_token_ms, tokens_per_second=10)
    events, out, rate = await _run(
        server, tmp_path, paused_question(450), Speculate.STT_COMPLETION, speculate_after_ms=100
    )
    speculations = _of(events, "speculation")
    assert [(e["outcome"], e.get("reason")) for e in speculations] == [
        ("started", None),
        ("discarded", "resumed"),
        ("started", None),
        ("used", None),
    ]
    completions = server.state.records("completion-messages")
    assert [r.details["query"] for r in completions] == [HALF_1, QUESTION]
    assert completions[0].details["stopped"] is True
    # (Stopping the run once the answer is heard stops the second one too.)
    stops = server.state.records("completion-messages-stop")
    early = [s for s in stops if s.details["task_id"] == completions[0].details["task_id"]]
    assert [s.details["stopped"] for s in early] == [True]
    if first_token_ms == 0:
        assert early[0].time < completions[1].time
    # The early answer to the half question was never played (slowly written, it had not
    # even finished a sentence for text-to-speech).
    assert [e["text"] for e in _of(events, "answer")] == [reply_for(QUESTION)]
    _assert_answered_whole(server, events, out, rate)


async def test_early_answer_synthesised_in_the_pause_is_never_played(
    server: RunningDevServer, tmp_path: Path
) -> None:
    # Everything at once: the half question's answer is written and its first sentences
    # synthesised while the pause lasts; only the speaker waits, and it never hears them.
    server.state.set_latency(stt_latency_ms=0, first_token_ms=0, tokens_per_second=0)
    events, out, rate = await _run(server, tmp_path, paused_question(450), Speculate.STT_COMPLETION)
    assert [(e["outcome"], e.get("reason")) for e in _of(events, "speculation")] == [
        ("started", None),
        ("discarded", "resumed"),
        ("started", None),
        ("used", None),
    ]
    half_sentence = reply_for(HALF_1).split(". ")[0] + "."
    assert half_sentence in _spoken(server)  # synthesised early...
    assert [e["text"] for e in _of(events, "answer")] == [reply_for(QUESTION)]
    # ... but the first thing played, after the whole question, is the whole first sentence.
    _assert_answered_whole(server, events, out, rate)
    first = first_sound_s(out, rate)
    assert first is not None
    question_end_s = len(paused_question(450, tail_ms=0)) / RATE
    assert first > question_end_s + 0.5


async def test_used_completion_started_before_the_end_plays_after_it(
    server: RunningDevServer, tmp_path: Path
) -> None:
    server.state.set_latency(stt_latency_ms=0, first_token_ms=0, tokens_per_second=0)
    question = concat(silence(LEAD_MS), speech_16k(QUESTION), silence(1500))
    events, out, rate = await _run(server, tmp_path, question, Speculate.STT_COMPLETION)
    _assert_answered_whole(server, events, out, rate)
    marks = _of(events, "marks")[0]
    # The whole answer was written during the hangover, and held until its end.
    assert marks["first_token"] < marks["endpoint"] <= marks["first_audio"]
    assert len(server.state.records("audio-to-text")) == 1
    assert len(server.state.records("completion-messages")) == 1
    # (Stopping the run afterwards calls stop too, but finds the answer already complete.)
    stops = server.state.records("completion-messages-stop")
    assert [s.details["stopped"] for s in stops] in ([], [False])


async def test_a_failed_speculation_is_replaced_by_an_ordinary_upload(
    server: RunningDevServer, tmp_path: Path
) -> None:
    from assistant.devserver import Fault

    server.state.faults.add(
        Fault(
            "audio-to-text",
            status=400,
            body={"status": 400, "code": "invalid_param", "message": "no"},
        )
    )
    question = concat(silence(LEAD_MS), speech_16k(QUESTION), silence(1500))
    events, out, rate = await _run(server, tmp_path, question, Speculate.STT)
    _assert_answered_whole(server, events, out, rate)
    speculations = _of(events, "speculation")
    assert [(e["outcome"], e.get("reason")) for e in speculations] == [
        ("started", None),
        ("discarded", "failed"),
    ]
    assert speculations[1]["error"] == "invalid_param"
    assert len(server.state.records("audio-to-text")) == 2
    marks = _of(events, "marks")[0]
    assert (marks["speculations_used"], marks["speculations_discarded"]) == (0, 1)


# -- real PyAudio on PulseAudio ---------------------------------------------------------------


async def _wait_for(
    events: Subscription, predicate: Any, timeout: float, seen: list[Event] | None = None
) -> Event:
    """The first event matching `predicate`; every event read is added to `seen`."""
    async with asyncio.timeout(timeout):
        while True:
            event = await events.get()
            if seen is not None:
                seen.append(event)
            if predicate(event):
                return event


def _drain(events: Subscription) -> list[Event]:
    out = []
    while (event := events.get_nowait()) is not None:
        out.append(event)
    return out


@pytest.mark.pulse
async def test_paused_question_through_pyaudio_is_answered_whole(
    pulse: PulseServer, server: RunningDevServer
) -> None:
    settings = _settings(server, Speculate.STT)
    bus = EventBus()
    events = bus.subscribe()
    recording = pulse.start_recording_speaker()
    assistant = asyncio.create_task(run_assistant(settings, RunOptions(), bus))
    try:
        await _wait_for(events, lambda e: e.kind == "ready", 10)
        # Leading silence: a new PulseAudio stream may swallow its first few hundred ms.
        player = pulse.play_into_mic((paused_question(450, tail_ms=300), RATE))
        seen: list[Event] = []
        marks = await _wait_for(events, lambda e: e.kind == "marks", 60, seen)
        await asyncio.to_thread(player.wait, 10)
        seen += _drain(events)
    finally:
        assistant.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await assistant
        heard = recording.stop()
    assert [e.data["text"] for e in seen if e.kind == "transcript"] == [QUESTION]
    assert [e.data["text"] for e in seen if e.kind == "answer"] == [reply_for(QUESTION)]
    assert [e for e in seen if e.kind == "error"] == []
    assert (marks.data["speculations_used"], marks.data["speculations_discarded"]) == (1, 1)
    assert [r.details["query"] for r in server.state.records("completion-messages")] == [QUESTION]
    spoken = _spoken(server)
    assert " ".join(spoken).split() == reply_for(QUESTION).split()
    reference = speech_for(spoken[0])
    assert find(heard, recording.rate, reference.samples, reference.sample_rate).score > 0.85
