"""The microphone or the speaker disappears while the assistant runs, then comes back.

The whole assistant runs on real PyAudio against the PulseAudio harness, and again on
PipeWire (`sound_server`); a device is "unplugged" by unloading its null sink. The
harness makes the server end a vanished device's streams, as a sound card going away does
(by default both would move them to whatever device is left). What PortAudio then
does, through ALSA's pulse plugin: the stream's callback thread fails on its
next poll and the stream goes inactive, with no error returned to anyone; the
microphone's and speaker's health checks turn that into a DeviceError.

Each case checks: one `error` event (stage "device") and the `error` state,
an ERROR log line, the process still running, no flood of errors while the
device stays away, and after it returns, `listening` again within 5 s and a
spoken question answered on the speaker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from audio_match import find
from audio_samples import concat, silence, speech_16k
from pulse import MIC_SINK, SPEAKER_SINK, PulseServer, SpeakerRecording

from assistant.app import RunOptions, run_assistant
from assistant.devices import REOPEN_BACKOFF_S, reopen_delay
from assistant.devserver import DevServerOptions, RunningDevServer, speech_for
from assistant.events import Event, EventBus, Subscription
from assistant.ports import AudioBlock, DeviceWedged
from assistant.settings import DifySettings, Secret, Settings

DEV_SERVER_OPTIONS = DevServerOptions(reply_sentences=1)
"""One sentence ("You asked: ..."): about 3 s of answer per turn."""

QUESTION = "What is the weather like on Mars?"
BACK_WITHIN_S = 5.0
"""From the device's return to the assistant listening again (issue #5)."""
AWAY_S = 2.0
"""How long a device stays away: long enough for several reopen attempts."""
TURN_TIMEOUT_S = 30.0


async def next_event(
    events: Subscription, predicate: Callable[[Event], bool], timeout: float
) -> Event:
    async with asyncio.timeout(timeout):
        while True:
            event = await events.get()
            if predicate(event):
                return event


def drain(events: Subscription) -> list[Event]:
    out = []
    while (event := events.get_nowait()) is not None:
        out.append(event)
    return out


def is_state(state: str) -> Callable[[Event], bool]:
    return lambda e: e.kind == "state" and e.data["state"] == state


def device_error(event: Event) -> bool:
    return event.kind == "error" and event.data.get("stage") == "device"


@contextlib.contextmanager
def unplugged(pulse: PulseServer, sink: str) -> Iterator[Callable[[], float]]:
    """Unload `sink`; the yielded function loads it back and returns when it began to.

    The sink is loaded back at the end in any case: the server is shared by the session.
    """
    pulse.unload_sink(sink)
    back: list[float] = []

    def plug_in() -> float:
        back.append(time.monotonic())
        pulse.load_sink(sink)
        return back[0]

    try:
        yield plug_in
    finally:
        if not back:
            pulse.load_sink(sink)


class Assistant:
    """The assistant running in this process on the default (PulseAudio) devices."""

    def __init__(self, server: RunningDevServer) -> None:
        self.settings = Settings(
            dify=DifySettings(base_url=server.base_url, api_key=Secret("app-x"))
        )
        self.bus = EventBus()
        self.events = self.bus.subscribe(maxsize=10_000)
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Assistant:
        self.task = asyncio.create_task(run_assistant(self.settings, RunOptions(), self.bus))
        await next_event(self.events, lambda e: e.kind == "ready", 10)
        await next_event(self.events, is_state("listening"), 5)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.task is not None
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task

    @property
    def alive(self) -> bool:
        return self.task is not None and not self.task.done()


def ask(pulse: PulseServer) -> None:
    # Leading silence: a new PulseAudio stream may swallow its first few hundred ms.
    pulse.play_into_mic((concat(silence(600), speech_16k(QUESTION)), 16_000))


async def outage(assistant: Assistant, caplog: pytest.LogCaptureFixture) -> Event:
    """The device error is reported once: event, state, log; then quiet while it lasts."""
    error = await next_event(assistant.events, device_error, 10)
    await asyncio.sleep(AWAY_S)
    during = drain(assistant.events)
    assert assistant.alive
    assert [e for e in during if e.kind == "error"] == [], "the error was published again"
    states = [e.data["state"] for e in during if e.kind == "state"]
    assert "listening" not in states, states
    assert any(
        r.levelno == logging.ERROR and r.name == "assistant.devices" and "reopening" in r.message
        for r in caplog.records
    ), [r.message for r in caplog.records]
    return error


async def back_and_answering(
    assistant: Assistant,
    pulse: PulseServer,
    server: RunningDevServer,
    plug_in: Callable[[], float],
) -> None:
    """Once the device is back: listening within BACK_WITHIN_S, and a question answered."""
    returned_at = plug_in()
    listening = await next_event(assistant.events, is_state("listening"), BACK_WITHIN_S + 5)
    assert listening.t - returned_at < BACK_WITHIN_S
    recording = pulse.start_recording_speaker()
    answered_before = len(server.state.records("text-to-audio"))
    try:
        ask(pulse)
        transcript = await next_event(
            assistant.events, lambda e: e.kind == "transcript", TURN_TIMEOUT_S
        )
        await next_event(assistant.events, lambda e: e.kind == "marks", TURN_TIMEOUT_S)
        errors = [e for e in drain(assistant.events) if e.kind == "error"]
        await asyncio.sleep(0.3)  # the recorder's own delivery
    finally:
        heard = recording.stop()
    assert transcript.data["text"] == QUESTION
    assert errors == []
    spoken = [r.details["text"] for r in server.state.records("text-to-audio")][answered_before:]
    assert spoken, "nothing was synthesised after the device came back"
    for sentence in spoken:
        reference = speech_for(sentence)
        match = find(heard, recording.rate, reference.samples, reference.sample_rate)
        assert match.score > 0.85, (sentence, match)


def test_reopen_backoff_is_jittered_and_capped() -> None:
    runs = [[reopen_delay(attempt) for attempt in range(12)] for _ in range(50)]
    for attempt in range(12):
        step = REOPEN_BACKOFF_S[min(attempt, len(REOPEN_BACKOFF_S) - 1)]
        waits = [run[attempt] for run in runs]
        assert all(step / 2 <= wait <= step for wait in waits)
        assert len(set(waits)) > 1  # jittered: devices do not retry in lockstep
    assert max(map(max, runs)) <= 2.0  # capped: a returning device is used within ~2 s


class HungLibraryMicrophone:
    """A microphone whose audio library has hung: what `run_blocking` reports once a
    PortAudio call has not returned, and from then on at every open."""

    opens = 0

    async def start(self) -> None:
        self.opens += 1
        raise DeviceWedged("opening the microphone did not return within 10 s")

    async def read(self, timeout: float) -> AudioBlock | None:
        raise AssertionError("never opened")

    async def close(self) -> None:
        pass


async def test_a_hung_audio_library_ends_the_run_for_a_restart(
    server: RunningDevServer, tmp_path: Path
) -> None:
    """No reopen can work in this process, so the run ends (the CLI exits with
    EXIT_RESTART and systemd starts a fresh process) instead of retrying forever."""
    settings = Settings(dify=DifySettings(base_url=server.base_url, api_key=Secret("app-x")))
    microphone = HungLibraryMicrophone()
    options = RunOptions(speaker_wav=tmp_path / "speaker.wav", source=microphone)
    with pytest.raises(DeviceWedged, match="did not return"):
        async with asyncio.timeout(10):
            await run_assistant(settings, options)
    assert microphone.opens == 1


@pytest.mark.pulse
async def test_microphone_unplugged_and_back(
    sound_server: PulseServer, server: RunningDevServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with Assistant(server) as assistant:
        with unplugged(sound_server, MIC_SINK) as plug_in:
            error = await outage(assistant, caplog)
            assert "microphone" in error.data["message"]
            await back_and_answering(assistant, sound_server, server, plug_in)


@pytest.mark.pulse
async def test_speaker_unplugged_while_idle_and_back(
    sound_server: PulseServer, server: RunningDevServer, caplog: pytest.LogCaptureFixture
) -> None:
    """An idle speaker has no stream (it is closed to save CPU): the loss shows when
    the next answer tries to play."""
    caplog.set_level(logging.INFO)
    async with Assistant(server) as assistant:
        with unplugged(sound_server, SPEAKER_SINK) as plug_in:
            ask(sound_server)
            await next_event(assistant.events, lambda e: e.kind == "transcript", TURN_TIMEOUT_S)
            error = await outage(assistant, caplog)
            assert error.data["code"] == "device_error"
            await back_and_answering(assistant, sound_server, server, plug_in)


@pytest.mark.pulse
async def test_speaker_unplugged_mid_answer_and_back(
    sound_server: PulseServer, server: RunningDevServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with Assistant(server) as assistant:
        recording = sound_server.start_recording_speaker()
        ask(sound_server)
        await next_event(assistant.events, is_state("speaking"), TURN_TIMEOUT_S)
        await playing(recording)
        with unplugged(sound_server, SPEAKER_SINK) as plug_in:
            recording.stop()
            error = await outage(assistant, caplog)
            # PulseAudio ends the stream, which the speaker reports; PipeWire kills it, the
            # speaker opens a new one at once, and it is that opening which fails.
            message = error.data["message"]
            assert "speaker" in message or "cannot open output device" in message, message
            await back_and_answering(assistant, sound_server, server, plug_in)


async def playing(recording: SpeakerRecording) -> None:
    """Until the speaker sink has carried sound for a moment (the answer is audible)."""
    async with asyncio.timeout(10):
        while True:
            samples = recording.samples()
            if len(samples) and (abs(samples.astype(int)) > 1000).sum() > recording.rate // 5:
                return
            await asyncio.sleep(0.05)
