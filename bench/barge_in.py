"""Barge-in: time from the talk button's edge to the speaker going silent (p50/p95).

    .venv/bin/python -m bench.barge_in [--presses 20] [--device file|pulse|both]
                                       [--period-ms 20] [--seed 1]

Each press is one push-to-talk run of the whole assistant (`run_assistant`, in
this process, against the bundled dev server on loopback): the button, driven
through gpiozero's MockFactory, is held while a question is spoken; once the
answer is playing (the `speaking` state) the bench waits a random 0.1-4 s and
presses again. That press is the barge-in: its edge time is the `barge_in`
event's `t` (stamped in the button callback), and the figure is the time from
it to the last sound the speaker played. The table also splits off the software
part, edge to the sink's flush() (timed by wrapping flush() in this process).

- `file`: the microphone and speaker are WAV files on one timeline; the speaker
  file's sample n sounded n samples after the `ready` event.
- `pulse`: the real PyAudio microphone and speaker, on the PulseAudio null-sink
  harness of the tests (tests/pulse.py); `SpeakerRecording.time_of` says when a
  recorded sample was played. This is the figure that counts: it includes the
  audio stack's own buffering.

"Silent" means digital silence: both speakers write exact zeros when nothing
plays, while the answer's decoded MP3 never stays at zero for even 2 ms (checked
on demo-out/answer.wav), so the last non-zero sample is where playback stopped,
whether the press landed on a word or in a pause between words (a loudness
threshold would read a press in a pause as "silent at once"). A press counts
only if the answer was audible (louder than `LOUD`) within `PLAYING_S` before
the edge; others are reported as `not_playing` and pressed again, up to three
attempts per press.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import TYPE_CHECKING, Any

import numpy as np
import soxr
from gpiozero import Device
from gpiozero.pins.mock import MockFactory

from assistant.app import RunOptions, run_assistant
from assistant.audio.espeak import synthesize
from assistant.audio.wav import encode_wav
from assistant.devserver import DevServerOptions, RunningDevServer, start_devserver
from assistant.events import Event, EventBus, Subscription
from assistant.ports import CAPTURE_RATE
from assistant.settings import (
    AssistantSettings,
    AudioSettings,
    DifySettings,
    Secret,
    Settings,
    Trigger,
)
from hardware.wav_devices import WavFileSink, read_wav

if TYPE_CHECKING:
    from pulse import PulseServer, SpeakerRecording

REPO = Path(__file__).resolve().parent.parent
TESTS = REPO / "tests"

QUESTION = "What is the weather like on Mars?"
PIN = 17
LOUD = 300
"""|sample| above this is speech (the push-to-talk test's threshold)."""
PLAYING_S = 0.3
"""The press counts when the answer was loud within this long before the edge."""
QUIET = 0
"""|sample| at or below this is the speaker's silence (both sinks write exact zeros)."""
AFTER_S = 1.0
"""How far past the edge to look for sound; the next answer cannot start this soon."""
DELAY_S = (0.1, 4.0)
"""The barge-in comes this long (uniform) after the answer started playing."""
TAP_S = 0.15
"""The barge-in press is a short tap with no speech: the new utterance is dropped."""
EVENT_TIMEOUT_S = 30.0
MAX_ATTEMPTS_PER_PRESS = 3
TARGET_P95_MS = 50.0


@dataclass(slots=True)
class Result:
    """One device's measurements, in ms from edge to silence."""

    device: str
    silences_ms: list[float] = field(default_factory=list)
    not_playing: int = 0
    """Presses made when the answer was not audible (not counted, pressed again)."""
    failed: int = 0
    """Runs with no barge-in or no answer (reported, not counted)."""
    to_flush_ms: list[float] = field(default_factory=list)
    """Edge to the sink's flush() call: the software part (loop, tasks, cancellation)."""
    device_latency_ms: list[float] = field(default_factory=list)
    """PortAudio's own output-latency estimate at the flush (pulse only)."""


@dataclass(frozen=True, slots=True)
class Press:
    """One barge-in as the speaker heard it."""

    edge: float
    """time.monotonic() of the button edge (the `barge_in` event's `t`)."""
    silent_after_s: float | None
    """Edge to the end of the last sound; None when nothing sounded after the edge."""
    playing: bool
    """The answer was audible just before the edge."""


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), linear between closest ranks; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def question_16k() -> np.ndarray:
    """The question in espeak-ng's voice, 16 kHz int16 (the dev server knows the phrase)."""
    speech = synthesize(QUESTION)
    return soxr.resample(speech.samples, speech.sample_rate, CAPTURE_RATE).astype(np.int16)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(round(seconds * CAPTURE_RATE), dtype=np.int16)


def silence_after_edge(
    samples: np.ndarray, rate: int, edge_index: int
) -> tuple[float | None, bool]:
    """(seconds from the edge to the end of the last sound after it, whether it was playing).

    The seconds are None when nothing sounded after the edge at all.
    """
    start = max(0, edge_index - round(PLAYING_S * rate))
    magnitude = np.abs(samples.astype(np.int32))
    playing = bool((magnitude[start:edge_index] > LOUD).any())
    after = magnitude[edge_index : edge_index + round(AFTER_S * rate)]
    sounding = np.flatnonzero(after > QUIET)
    silent_at = None if len(sounding) == 0 else (int(sounding[-1]) + 1) / rate
    return silent_at, playing


class FlushSpy:
    """Notes when the speaker is flushed, to split the figure into software and device parts.

    Wraps the sink classes' flush() for the bench only; the product code is untouched.
    """

    def __init__(self) -> None:
        self.calls: list[tuple[float, float | None]] = []
        """(time.monotonic() at the call, PortAudio's output latency or None)."""

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        from hardware.speaker import Speaker

        originals = {cls: cls.flush for cls in (WavFileSink, Speaker)}

        def wrap(original: Callable[[Any], None]) -> Callable[[Any], None]:
            def flush(sink: Any) -> None:
                latency = sink.output_latency if isinstance(sink, Speaker) else None
                self.calls.append((time.monotonic(), latency))
                original(sink)

            return flush

        for cls, original in originals.items():
            cls.flush = wrap(original)  # type: ignore[method-assign]
        try:
            yield
        finally:
            for cls, original in originals.items():
                cls.flush = original  # type: ignore[method-assign]

    def first_after(self, t: float) -> tuple[float, float | None] | None:
        return next(((at, lat) for at, lat in self.calls if at >= t), None)


@contextlib.contextmanager
def mock_pins() -> Iterator[MockFactory]:
    """A fresh MockFactory as gpiozero's default, so the assistant's TalkButton uses it."""
    previous = Device.pin_factory
    factory = MockFactory()
    Device.pin_factory = factory
    try:
        yield factory
    finally:
        factory.close()
        Device.pin_factory = previous


async def next_event(events: Subscription, kind: str, **match: object) -> Event:
    async with asyncio.timeout(EVENT_TIMEOUT_S):
        while True:
            event = await events.get()
            if event.kind == kind and all(event.data.get(k) == v for k, v in match.items()):
                return event


async def sleep_until(t: float) -> None:
    await asyncio.sleep(max(0.0, t - time.monotonic()))


def settings_for(server: RunningDevServer, period_ms: int) -> Settings:
    return Settings(
        assistant=AssistantSettings(trigger=Trigger.PUSH_TO_TALK),
        audio=AudioSettings(period_ms=period_ms),
        dify=DifySettings(base_url=server.base_url, api_key=Secret("app-bench")),
    )


async def stop(task: asyncio.Task[None]) -> None:
    """End a run early: once the barge-in is measured the rest of the file is idle time."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


class Presser:
    """The bench's finger: holds the question, then taps during the answer."""

    def __init__(self, pins: MockFactory, rng: random.Random) -> None:
        self._pin = pins.pin(PIN)
        self._rng = rng

    async def barge_in(self, events: Subscription) -> Event:
        """Wait for the answer to play, tap at a random moment, return the barge_in event."""
        await next_event(events, "state", state="speaking")
        await asyncio.sleep(self._rng.uniform(*DELAY_S))
        self._pin.drive_low()
        await asyncio.sleep(TAP_S)
        self._pin.drive_high()
        return await next_event(events, "barge_in")

    def press(self) -> None:
        self._pin.drive_low()

    def release(self) -> None:
        self._pin.drive_high()


async def press_with_files(
    settings: Settings, question: np.ndarray, rng: random.Random, workdir: Path
) -> Press:
    """One run on WAV devices; the edge-to-silence time read off the speaker file."""
    q_len = len(question) / CAPTURE_RATE
    # Long enough for the latest possible barge-in plus the look-ahead window.
    tail = 2.0 + DELAY_S[1] + AFTER_S + 2.0
    mic = np.concatenate([silence(0.5), question, silence(tail)])
    mic_path, out_path = workdir / "mic.wav", workdir / "speaker.wav"
    mic_path.write_bytes(encode_wav(mic, CAPTURE_RATE))
    bus = EventBus()
    events = bus.subscribe()
    with mock_pins() as pins:
        presser = Presser(pins, rng)
        run = asyncio.create_task(run_assistant(settings, RunOptions(mic_path, out_path), bus))
        try:
            # The file microphone's timeline starts when the devices open: at `ready`.
            t0 = (await next_event(events, "ready")).t
            await sleep_until(t0 + 0.4)
            presser.press()
            await sleep_until(t0 + 0.6 + q_len)
            presser.release()
            barge = await presser.barge_in(events)
            await sleep_until(barge.t + AFTER_S + 0.1)
        finally:
            await stop(run)
    heard, rate = read_wav(out_path)
    edge = barge.t
    return Press(edge, *silence_after_edge(heard, rate, round((edge - t0) * rate)))


async def press_with_pulse(
    settings: Settings, pulse: PulseServer, question: np.ndarray, rng: random.Random
) -> Press:
    """One run on PyAudio devices; the edge-to-silence time from the speaker sink's recording."""
    recording = pulse.start_recording_speaker()
    try:
        await recording_started(recording)
        bus = EventBus()
        events = bus.subscribe()
        with mock_pins() as pins:
            presser = Presser(pins, rng)
            run = asyncio.create_task(run_assistant(settings, RunOptions(), bus))
            try:
                await next_event(events, "ready")
                presser.press()
                # Leading silence: a new PulseAudio stream may swallow its first ~300 ms.
                player = pulse.play_into_mic((np.concatenate([silence(0.5), question]), 16_000))
                await asyncio.to_thread(player.wait, 30)
                await asyncio.sleep(0.2)
                presser.release()
                barge = await presser.barge_in(events)
                await sleep_until(barge.t + AFTER_S + 0.1)
            finally:
                await stop(run)
    finally:
        heard = await asyncio.to_thread(recording.stop)
    edge = barge.t
    index = recording.index_at(edge)
    silent_at, playing = silence_after_edge(heard, recording.rate, index)
    if silent_at is not None:
        # time_of (an upper bound, like the recorder) rather than index arithmetic.
        last = index + round(silent_at * recording.rate)
        silent_at = recording.time_of(last) - edge
    return Press(edge, silent_at, playing)


async def recording_started(recording: SpeakerRecording) -> None:
    """Until the recorder delivers: before that, time_of has no origin."""
    deadline = time.monotonic() + 5.0
    while recording.frames == 0:
        if time.monotonic() > deadline:
            raise RuntimeError("the speaker recorder delivered nothing")
        await asyncio.sleep(0.01)


def import_pulse() -> type[PulseServer]:
    """tests/pulse.py: the harness lives with the tests, which are not a package."""
    if str(TESTS) not in sys.path:
        sys.path.insert(0, str(TESTS))
    from pulse import PulseServer

    return PulseServer


@contextlib.contextmanager
def pulse_server() -> Iterator[PulseServer]:
    """A private PulseAudio with its variables in os.environ for PyAudio (like the fixture)."""
    import os

    server = import_pulse()()
    saved = {key: os.environ.get(key) for key in server.env}
    os.environ.update(server.env)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


async def measure(
    device: str, presses: int, period_ms: int, rng: random.Random, verbose: bool
) -> Result:
    result = Result(device)
    question = await asyncio.to_thread(question_16k)
    server = await start_devserver(options=DevServerOptions())
    settings = settings_for(server, period_ms)
    try:
        with contextlib.ExitStack() as stack:
            pulse = stack.enter_context(pulse_server()) if device == "pulse" else None
            workdir = Path(stack.enter_context(TemporaryDirectory(prefix="bench-barge-")))
            spy = FlushSpy()
            stack.enter_context(spy.installed())
            attempts = 0
            while len(result.silences_ms) < presses:
                if attempts >= presses * MAX_ATTEMPTS_PER_PRESS:
                    break
                attempts += 1
                try:
                    if pulse is None:
                        press = await press_with_files(settings, question, rng, workdir)
                    else:
                        press = await press_with_pulse(settings, pulse, question, rng)
                except TimeoutError:
                    result.failed += 1
                    log(verbose, f"{device}: run {attempts}: no answer or no barge-in")
                    continue
                if not press.playing:
                    result.not_playing += 1
                    log(verbose, f"{device}: run {attempts}: the answer was not playing")
                    continue
                ms = 0.0 if press.silent_after_s is None else press.silent_after_s * 1000
                result.silences_ms.append(ms)
                line = f"{device}: run {attempts}: silent {ms:.1f} ms after the edge"
                if (flush := spy.first_after(press.edge)) is not None:
                    flushed_at, latency = flush
                    result.to_flush_ms.append((flushed_at - press.edge) * 1000)
                    line += f" (flush() {result.to_flush_ms[-1]:.1f} ms after it"
                    if latency is not None:
                        result.device_latency_ms.append(latency * 1000)
                        line += f", PortAudio output latency {latency * 1000:.1f} ms"
                    line += ")"
                log(verbose, line)
    finally:
        await server.stop()
    return result


def log(verbose: bool, message: str) -> None:
    if verbose:
        print(message, file=sys.stderr, flush=True)


def table(results: Sequence[Result]) -> str:
    """The Markdown table: edge to silence, and its software part (edge to flush())."""
    rows = [
        "| device | presses | not_playing | failed | p50 ms | p95 ms | max ms | target p95 "
        "| edge→flush() p50 / p95 ms | PortAudio output latency ms |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        values = r.silences_ms
        p95 = percentile(values, 95)
        verdict = "met" if p95 <= TARGET_P95_MS else "MISSED"
        device_latency = (
            f"{statistics.median(r.device_latency_ms):.1f}" if r.device_latency_ms else "-"
        )
        rows.append(
            f"| {r.device} | {len(values)} | {r.not_playing} | {r.failed} "
            f"| {percentile(values, 50):.1f} | {p95:.1f} "
            f"| {max(values, default=float('nan')):.1f} | <= {TARGET_P95_MS:.0f} ({verdict}) "
            f"| {percentile(r.to_flush_ms, 50):.1f} / {percentile(r.to_flush_ms, 95):.1f} "
            f"| {device_latency} |"
        )
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.barge_in", description=__doc__)
    parser.add_argument("--presses", type=int, default=20, help="measured presses per device")
    parser.add_argument("--device", choices=("file", "pulse", "both"), default="both")
    parser.add_argument(
        "--period-ms",
        type=int,
        default=AudioSettings().period_ms,
        help="[audio] period_ms for the run (default: the setting's default)",
    )
    parser.add_argument("--seed", type=int, default=1, help="for the press moments")
    parser.add_argument("-q", "--quiet", action="store_true", help="no per-press lines")
    args = parser.parse_args(argv)
    if args.presses < 1:
        parser.error("--presses must be at least 1")
    devices = ("file", "pulse") if args.device == "both" else (args.device,)
    rng = random.Random(args.seed)
    results = [
        asyncio.run(measure(device, args.presses, args.period_ms, rng, not args.quiet))
        for device in devices
    ]
    print(table(results))
    for r in results:
        if r.silences_ms:
            print(
                f"{r.device}: mean {statistics.fmean(r.silences_ms):.1f} ms, "
                f"all: {', '.join(f'{v:.0f}' for v in sorted(r.silences_ms))}"
            )
    return 0 if all(r.silences_ms for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
