"""Talking over the answer through a real room: echo cancellation on a PulseAudio echo path.

    .venv/bin/python -m bench.echo_path [--answers 10] [--delays 20,60,120] [--gains 0,6]
                                        [--json PATH]

PyAudio on both ends of the tests' PulseAudio null sinks (tests/pulse.py), with a
`module-loopback` from the speaker sink's monitor into the microphone sink: what the
device plays comes back into its microphone `delay` ms later, at `gain` dB (0: as loud as
a user's espeak-ng question; 6: louder). The assistant runs in this process, hands-free,
against the bundled dev server (answers of three sentences). For each room:

* `--answers` answers with no one speaking: self-interruptions (`barge_in`), pauses
  (`answer_paused`), and uploads that are not a question asked (the device's own voice);
* `--answers` answers with an espeak-ng interjection in another voice 2 to 4 s into
  them: interrupted or not, barge-in latency (the interjection's first voiced frame, as
  the VAD placed it, to the last loud sample the speaker played), transcribed as asked,
  and its own answer played in full.

Then the same rooms half-duplex with barge-in by voice forced on (`echo.enabled = off`,
`barge_in_voice = true`): what the canceller prevents.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import random
import statistics
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import soxr

from assistant.app import RunOptions, run_assistant
from assistant.audio.espeak import synthesize
from assistant.devserver import RunningDevServer, start_devserver
from assistant.events import Event, EventBus, Subscription
from assistant.settings import (
    AssistantSettings,
    DifySettings,
    EchoMode,
    EchoSettings,
    Secret,
    Settings,
)

if TYPE_CHECKING:
    from pulse import PulseServer, SpeakerRecording

TESTS = Path(__file__).resolve().parent.parent / "tests"
QUESTION = "What is the weather like on Mars?"
INTERJECTIONS = ("What time is it?", "Tell me a joke.", "How far away is the Moon?")
INTERJECTION_VOICE = "en+m3"
"""Not the answer's voice (the dev server speaks "en"), and still one its recogniser knows."""
REPLY_SENTENCES = 3
LOUD = 300
"""|sample| above this in the speaker's recording is the answer still playing."""


def speech(text: str, voice: str = "en") -> np.ndarray:
    spoken = synthesize(text, voice=voice)
    return soxr.resample(spoken.samples, spoken.sample_rate, 16_000).astype(np.int16)


@dataclass
class Outcome:
    """What one room showed."""

    delay_ms: int
    gain_db: float
    echo_cancellation: bool
    quiet_answers: int = 0
    self_interruptions: int = 0
    pauses: int = 0
    """`answer_paused` during the quiet answers (the answer held a moment, then resumed)."""
    own_voice_uploads: int = 0
    interjections: int = 0
    interrupted: int = 0
    taken: int = 0
    """Interjections that became the next question (uploaded, transcribed, answered)."""
    understood: int = 0
    answered_in_full: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    """Interjection onset to the speaker's last loud sample."""
    misheard: list[str] = field(default_factory=list)
    """Transcripts that were no question asked."""

    @property
    def p50_ms(self) -> float:
        return statistics.median(self.latencies_ms) if self.latencies_ms else float("nan")

    @property
    def p95_ms(self) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[round(0.95 * (len(ordered) - 1))] if ordered else float("nan")


class Session:
    """One assistant on one echo path; every event kept, waited for by kind and fields."""

    def __init__(
        self, pulse: PulseServer, server: RunningDevServer, bus: EventBus, speaker: SpeakerRecording
    ) -> None:
        self.pulse = pulse
        self.server = server
        self.events: Subscription = bus.subscribe(20_000)
        self.seen: list[Event] = []
        self._listening = asyncio.Event()
        bus.add_listener(self._on_event)
        self.speaker = speaker
        self.turn = 0
        self.asked: list[str] = []

    async def until(self, kind: str, timeout: float, **match: object) -> Event:
        async with asyncio.timeout(timeout):
            while True:
                event = await self.events.get()
                if event.kind == kind and all(event.data.get(k) == v for k, v in match.items()):
                    return event

    def _on_event(self, event: Event) -> None:
        self.seen.append(event)
        if event.kind == "state":
            if event.data["state"] == "listening":
                self._listening.set()
            else:
                self._listening.clear()

    async def settled(self, timeout: float = 20) -> None:
        """Until the loop is listening again (after an answer, or a failure said)."""
        async with asyncio.timeout(timeout):
            await self._listening.wait()

    async def say(self, samples: np.ndarray) -> None:
        player = self.pulse.play_into_mic((samples, 16_000))
        await asyncio.to_thread(player.wait, 30)

    def since(self, mark: int, kind: str, **match: object) -> list[Event]:
        return [
            e
            for e in self.seen[mark:]
            if e.kind == kind and all(e.data.get(k) == v for k, v in match.items())
        ]

    async def quiet_answer(self, outcome: Outcome) -> None:
        """Ask, then let the whole answer play with no one speaking."""
        mark = len(self.seen)
        self.turn += 1
        self.asked.append(QUESTION)
        await self.say(speech(QUESTION))
        await self.until("marks", 60, turn=self.turn)
        await self.settled()
        outcome.quiet_answers += 1
        outcome.self_interruptions += len(self.since(mark, "barge_in"))
        outcome.pauses += len(self.since(mark, "answer_paused"))
        if self.since(mark, "barge_in"):
            # It took its own voice for a question: that turn goes on by itself.
            self.turn = max(e.data.get("turn", 0) for e in self.seen if e.kind == "marks")

    async def interjected_answer(self, outcome: Outcome, text: str, rng: random.Random) -> None:
        """Ask; 2 to 4 s into the answer, interject `text` in another voice."""
        self.turn += 1
        self.asked.append(QUESTION)
        await self.say(speech(QUESTION))
        await self.until("state", 30, state="speaking", turn=self.turn)
        await asyncio.sleep(rng.uniform(2.0, 4.0))
        mark = len(self.seen)
        outcome.interjections += 1
        self.asked.append(text)
        await self.say(speech(text, INTERJECTION_VOICE))
        with contextlib.suppress(TimeoutError):
            await self.until("transcript", 20, turn=self.turn + 1)
        barge_ins = self.since(mark, "barge_in", by="voice")
        paused = self.since(mark, "answer_paused")
        if not barge_ins:
            if not self.since(mark, "marks", turn=self.turn):  # else it went by meanwhile
                await self.until("marks", 60, turn=self.turn)
            await self.settled()
            self.turn = max(e.data.get("turn", 0) for e in self.seen if e.kind == "marks")
            return
        outcome.interrupted += 1
        self.turn += 1
        onset = paused[0].data["t_speech"] if paused else barge_ins[0].t
        outcome.latencies_ms.append(self._silent_after(onset) * 1000)
        heard = self.since(mark, "transcript", turn=self.turn)
        outcome.taken += bool(heard)
        outcome.understood += bool(heard) and heard[0].data["text"] == text
        answered = await self.until("marks", 60, turn=self.turn)
        interrupted_again = self.since(mark, "barge_in")[1:]
        if "last_audio" in answered.data and not interrupted_again:
            outcome.answered_in_full += 1
        await self.settled()

    def _silent_after(self, onset: float) -> float:
        """Seconds from `onset` to the speaker's last loud sample (within 1.5 s)."""
        played = self.speaker.samples()
        start = max(0, self.speaker.index_at(onset))
        window = np.abs(played[start : start + int(1.5 * self.speaker.rate)].astype(np.int32))
        loud = np.flatnonzero(window > LOUD)
        return float(loud[-1]) / self.speaker.rate if len(loud) else 0.0

    def count_own_voice_uploads(self, outcome: Outcome) -> None:
        transcripts = [e.data["text"] for e in self.seen if e.kind == "transcript"]
        outcome.misheard = [text for text in transcripts if text not in self.asked]
        outcome.own_voice_uploads = len(outcome.misheard)


@contextlib.asynccontextmanager
async def session(
    pulse: PulseServer, server: RunningDevServer, echo: EchoSettings, barge_in_voice: bool = False
) -> AsyncIterator[Session]:
    server.state.options = dataclasses.replace(
        server.state.options, reply_sentences=REPLY_SENTENCES
    )
    settings = Settings(
        assistant=AssistantSettings(barge_in_voice=barge_in_voice),
        echo=echo,
        dify=DifySettings(base_url=server.base_url, api_key=Secret("app-x")),
    )
    bus = EventBus()
    speaker = pulse.start_recording_speaker(rate=16_000)
    running = Session(pulse, server, bus, speaker)
    task = asyncio.create_task(run_assistant(settings, RunOptions(), bus))
    try:
        await running.until("ready", 20)
        await asyncio.sleep(0.5)
        yield running
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        speaker.stop()


@contextlib.contextmanager
def echo_path(pulse: PulseServer, delay_ms: int, gain_db: float) -> Iterator[None]:
    index = pulse.load_echo_path(delay_ms, gain_db)
    try:
        yield
    finally:
        pulse.unload_echo_path(index)


async def measure_room(
    pulse: PulseServer,
    server: RunningDevServer,
    delay_ms: int,
    gain_db: float,
    *,
    quiet: int,
    interjected: int,
    cancel_echo: bool = True,
    seed: int = 1,
) -> Outcome:
    """One room: `quiet` answers with no one speaking, then `interjected` interrupted."""
    echo = EchoSettings(enabled=EchoMode.AUTO if cancel_echo else EchoMode.OFF)
    outcome = Outcome(delay_ms, gain_db, cancel_echo)
    rng = random.Random(seed)
    with echo_path(pulse, delay_ms, gain_db):
        async with session(pulse, server, echo, barge_in_voice=not cancel_echo) as running:
            for _ in range(quiet):
                await running.quiet_answer(outcome)
            for n in range(interjected):
                await running.interjected_answer(outcome, INTERJECTIONS[n % 3], rng)
            running.count_own_voice_uploads(outcome)
    return outcome


def _row(o: Outcome) -> str:
    return (
        f"| {o.delay_ms} ms, {o.gain_db:+.0f} dB | {'AEC3' if o.echo_cancellation else 'off'} "
        f"| {o.self_interruptions} / {o.quiet_answers} | {o.pauses} | {o.own_voice_uploads} "
        f"| {o.interrupted} / {o.interjections} | {o.taken} | {o.understood} "
        f"| {o.answered_in_full} | {o.p50_ms:.0f} / {o.p95_ms:.0f} |"
    )


async def main_async(args: argparse.Namespace) -> list[Outcome]:
    if str(TESTS) not in sys.path:
        sys.path.insert(0, str(TESTS))
    from pulse import PulseServer

    pulse = PulseServer()
    pulse.start()
    server = await start_devserver(control=True)
    outcomes = []
    try:
        with contextlib.ExitStack() as env:
            env.enter_context(_environment(pulse.env))
            for cancel in (True, False):
                for delay in args.delays:
                    for gain in args.gains:
                        answers = args.answers if cancel else max(2, args.answers // 5)
                        outcome = await measure_room(
                            pulse,
                            server,
                            delay,
                            gain,
                            quiet=answers,
                            interjected=answers if cancel else 0,
                            cancel_echo=cancel,
                        )
                        outcomes.append(outcome)
                        print(_row(outcome), flush=True)
    finally:
        await server.stop()
        pulse.stop()
    return outcomes


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    import os

    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--answers", type=int, default=10)
    parser.add_argument(
        "--delays", type=lambda v: [int(x) for x in v.split(",")], default=[20, 60, 120]
    )
    parser.add_argument(
        "--gains", type=lambda v: [float(x) for x in v.split(",")], default=[0.0, 6.0]
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    print(
        "| room | canceller | self-interruptions / quiet answers | pauses | own-voice uploads "
        "| interrupted / interjections | taken as the question | understood as asked "
        "| answered in full | barge-in p50 / p95 ms |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    outcomes = asyncio.run(main_async(args))
    if args.json:
        args.json.write_text(json.dumps([dataclasses.asdict(o) for o in outcomes], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
