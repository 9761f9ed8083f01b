"""Idle cost: CPU while listening, resident memory, and start-up time.

    .venv/bin/python -m bench.idle [--seconds 60] [--turns 100] [--device file|pulse|both]
                                   [--period-ms 20] [--voice mp3|pcm] [--env KEY=VALUE ...]

The assistant runs as it would in production, as its own process
(`python -m assistant run`), hands-free, against the bundled dev server, which
runs here in the bench's process (on loopback, with no added latency) so its
memory and CPU are not counted. Three runs per device:

1. `silence`: `--seconds` of digital silence. CPU time (utime + stime from
   /proc/<pid>/stat, every thread) over the listening window, divided by the
   window's seconds of audio: 0.01 CPU-s per s is 1 % of one core.
2. `noise`: the same over background noise: pink noise at -45 dBFS RMS (a quiet
   room, about 25 dB below speech at a usual microphone gain), a 100 Hz fan hum,
   and non-speech sounds (knocks, short bursts of typing, a cup's clink). The VAD
   events it causes are counted; a sound taken for speech makes a turn, so the
   CPU is also given for the part of the window spent listening (state idle or
   listening, from the events), which is the figure the target is checked on.
3. `turns`: `--turns` (+1) short questions, each interrupting the previous answer
   (`barge_in_voice` on) about a second into its answer, so a turn costs
   about 3 s instead of the ~12 s of the dev server's four-sentence answer
   (the server cannot shorten its answers). VmRSS from /proc/<pid>/status is
   read after turns 1, 10, 25, 50... and the last. In file mode the process holds
   the whole microphone WAV in memory (32 kB per second of it: ~9 MB for 100
   turns), so compare the growth between checkpoints; `pulse` has no such file.

Each run also gives the start-up time: from just before the process is spawned
to its `ready` event. The event's `t` is the child's time.monotonic(), which on
Linux is CLOCK_MONOTONIC, one clock for every process, so it compares directly
with the parent's; the moment the parent saw the line in `--events-jsonl` is
printed beside it as a cross-check (it can only be later). VmRSS is read the
moment the `ready` line appears.

`--voice`: `mp3` (default) speaks through Dify's `/text-to-audio`, MP3 as Dify
sends it, so PyAV's FFmpeg loads at the first answer; `pcm` speaks through the
OpenAI-compatible `/audio/speech` with `response_format = "pcm"`, which needs no
decoder (the dev server answers both).

`file`: the microphone and speaker are WAV files (`--mic-wav`, `--speaker-wav`).
`pulse`: the real PyAudio devices on the tests' PulseAudio null-sink harness
(tests/pulse.py); the audio is played into the microphone sink with paplay and
the process is stopped with SIGTERM once measured.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import TYPE_CHECKING, Any

import numpy as np
import soxr

from assistant.audio.espeak import synthesize
from assistant.audio.wav import encode_wav
from assistant.config import ENV_PREFIX, LEGACY_ENV_PREFIX, NOT_CONFIG_VARIABLES
from assistant.devserver import DevServerOptions, RunningDevServer, start_devserver
from assistant.ports import CAPTURE_RATE
from assistant.settings import AudioSettings

if TYPE_CHECKING:
    from pulse import PulseServer

REPO = Path(__file__).resolve().parent.parent
TESTS = REPO / "tests"
RATE = CAPTURE_RATE

QUESTIONS = ("What time is it?", "Tell me a joke.", "How far away is the Moon?")
"""Short phrases the dev server recognises (1.1-1.6 s in espeak-ng's voice)."""
TURN_GAP_S = 1.7
"""Silence after each question: 0.5 s of VAD hangover, ~0.3 s to the first audio,
then about a second of the answer before the next question interrupts it."""
TYPING_CLICKS = 4
"""Keys per burst of typing. Longer bursts (a dozen keys over 2 s) pass webrtcvad as
speech and each gets an answer, so the run would measure answering, not listening;
that false trigger is reported in bench/RESULTS.md rather than folded in here."""
SETTLE_S = 1.0
"""Skipped after `ready` before the CPU window opens: first-use allocations, not idling."""
CPU_SAMPLE_S = 0.1
LISTENING_STATES = frozenset({"idle", "listening"})
RSS_AFTER_TURNS = (1, 10, 25, 50, 100, 200, 500)
EVENT_TIMEOUT_S = 30.0
POLL_S = 0.005

TARGET_CPU_FRACTION = 0.01
TARGET_RSS_MB = 60.0
TARGET_READY_S = 1.5

CLOCK_TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


# -- test signals --------------------------------------------------------------


def dbfs_rms(level_dbfs: float) -> float:
    return 32767 * 10 ** (level_dbfs / 20)


def pink_noise(seconds: float, level_dbfs: float, rng: np.random.Generator) -> np.ndarray:
    """1/f noise (white noise shaped by 1/sqrt(f) in the frequency domain), float64."""
    n = round(seconds * RATE)
    spectrum = np.fft.rfft(rng.normal(0.0, 1.0, n))
    freqs = np.fft.rfftfreq(n, 1 / RATE)
    spectrum[1:] /= np.sqrt(freqs[1:])
    spectrum[0] = 0.0
    pink = np.fft.irfft(spectrum, n)
    return pink * dbfs_rms(level_dbfs) / np.sqrt(np.mean(pink**2))


def decaying(samples: np.ndarray, tau_s: float) -> np.ndarray:
    return samples * np.exp(-np.arange(len(samples)) / (tau_s * RATE))


def background_noise(seconds: float, seed: int = 7) -> np.ndarray:
    """A room that is not quiet: hiss, a fan, knocks, typing and a clink; no speech."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * RATE)) / RATE
    out = pink_noise(seconds, -45.0, rng)
    out += dbfs_rms(-55.0) * (np.sin(2 * np.pi * 100 * t) + 0.5 * np.sin(2 * np.pi * 200 * t))
    at = 1.0
    while at < seconds - 1.0:
        start = round(at * RATE)
        kind = rng.integers(3)
        if kind == 0:  # a knock: a 60 ms low thud
            n = round(0.06 * RATE)
            thud = np.sin(2 * np.pi * 120 * np.arange(n) / RATE) + 0.3 * rng.normal(0, 1, n)
            burst = decaying(thud, 0.015) * dbfs_rms(-12.0)
        elif kind == 1:  # typing: a few 8 ms clicks, 80-200 ms apart
            burst = np.zeros(round(1.0 * RATE))
            pos = 0
            for _ in range(TYPING_CLICKS):
                n = round(0.008 * RATE)
                burst[pos : pos + n] += decaying(rng.normal(0, 1, n), 0.002) * dbfs_rms(-20.0)
                pos += round(rng.uniform(0.08, 0.2) * RATE)
        else:  # a cup's clink: 150 ms of a decaying 3.1 kHz ring
            n = round(0.15 * RATE)
            ring = np.sin(2 * np.pi * 3100 * np.arange(n) / RATE)
            burst = decaying(ring, 0.03) * dbfs_rms(-20.0)
        end = min(len(out), start + len(burst))
        out[start:end] += burst[: end - start]
        at += rng.uniform(2.0, 6.0)
    return np.clip(out, -32768, 32767).astype(np.int16)


def speech_16k(text: str) -> np.ndarray:
    speech = synthesize(text)
    return soxr.resample(speech.samples, speech.sample_rate, RATE).astype(np.int16)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(round(seconds * RATE), dtype=np.int16)


def questions(turns: int) -> np.ndarray:
    """`turns` questions, each followed by TURN_GAP_S of silence."""
    spoken = [speech_16k(text) for text in QUESTIONS]
    parts = [silence(0.5)]
    for k in range(turns):
        parts += [spoken[k % len(spoken)], silence(TURN_GAP_S)]
    return np.concatenate(parts)


# -- the process under test ----------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of every thread of `pid` so far, from /proc/<pid>/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # The command name may hold spaces and parentheses: fields start after the last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) * CLOCK_TICK_S  # fields 14 and 15 of stat


def memory_mb(pid: int) -> dict[str, float]:
    """VmRSS, its anonymous / file-backed parts and VmHWM (peak), in MB, from /proc/<pid>/status."""
    wanted = {"VmRSS", "RssAnon", "RssFile", "RssShmem", "VmHWM"}
    out: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in wanted:
            out[key] = int(value.split()[0]) / 1024
    return out


@dataclass(slots=True)
class Run:
    """What one assistant process showed."""

    name: str
    audio_s: float = 0.0
    """Seconds of audio in the CPU window."""
    cpu_s: float = 0.0
    listening_audio_s: float = 0.0
    """The part of the window the assistant spent listening (no turn under way)."""
    listening_cpu_s: float = 0.0
    to_ready_s: float = float("nan")
    """Spawn to the `ready` event's own timestamp."""
    seen_ready_s: float = float("nan")
    """Spawn to the parent reading the `ready` line (a later, coarser bound)."""
    rss_ready: dict[str, float] = field(default_factory=dict)
    rss_turns: dict[int, float] = field(default_factory=dict)
    """Turn count -> VmRSS MB, read when that turn's `marks` event appeared."""
    peak_mb: float = float("nan")
    counts: dict[str, int] = field(default_factory=dict)
    """Events by kind (speech_started, utterance, utterance_dropped, barge_in, ...)."""

    @property
    def cpu_fraction(self) -> float:
        return self.cpu_s / self.audio_s if self.audio_s else float("nan")

    @property
    def listening_cpu_fraction(self) -> float:
        if not self.listening_audio_s:
            return float("nan")
        return self.listening_cpu_s / self.listening_audio_s


class EventsFile:
    """Reads a growing JSONL file line by line as the child writes it."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._buffer = ""
        self._offset = 0

    def new(self) -> list[dict[str, Any]]:
        try:
            with self._path.open("r", encoding="utf-8") as file:
                file.seek(self._offset)
                chunk = file.read()
                self._offset = file.tell()
        except FileNotFoundError:
            return []
        self._buffer += chunk
        *lines, self._buffer = self._buffer.split("\n")
        return [json.loads(line) for line in lines if line.strip()]


class Child:
    """`python -m assistant run` with its events, log and /proc readings."""

    def __init__(
        self, run: Run, workdir: Path, env: dict[str, str], mic: Path | None, period_ms: int
    ) -> None:
        self.run = run
        self.events_path = workdir / f"{run.name}.events.jsonl"
        self.log_path = workdir / f"{run.name}.log"
        self._events = EventsFile(self.events_path)
        self._env = {**env, "VOICE_ASSISTANT_AUDIO_PERIOD_MS": str(period_ms)}
        self._args = [sys.executable, "-m", "assistant", "run", "--events-jsonl"]
        self._args.append(str(self.events_path))
        if mic is not None:
            self._args += ["--mic-wav", str(mic), "--speaker-wav", str(workdir / "speaker.wav")]
        self.process: asyncio.subprocess.Process | None = None
        self.spawned_at = 0.0
        self.state = ""
        """The last `state` event's state."""

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    async def start(self) -> None:
        with self.log_path.open("wb") as log:
            self.spawned_at = time.monotonic()
            self.process = await asyncio.create_subprocess_exec(
                *self._args, cwd=REPO, env=self._env, stdout=log, stderr=log
            )

    async def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = EVENT_TIMEOUT_S
    ) -> dict[str, Any]:
        """The next event matching `predicate`, counting every event read on the way."""
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while True:
            for event in self.poll():
                if predicate(event):
                    return event
            if self.process.returncode is not None:
                raise RuntimeError(f"{self.run.name}: the assistant exited\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.run.name}: no matching event\n{self.log_tail()}")
            await asyncio.sleep(POLL_S)

    def poll(self) -> list[dict[str, Any]]:
        """Events written since the last call; counted, and the state followed."""
        events = self._events.new()
        for event in events:
            kind = event["kind"]
            self.run.counts[kind] = self.run.counts.get(kind, 0) + 1
            if kind == "state":
                self.state = event["state"]
                key = f"state:{self.state}"
                self.run.counts[key] = self.run.counts.get(key, 0) + 1
        return events

    async def ready(self) -> None:
        """Wait for `ready`, then note the start-up time and the memory right away."""
        event = await self.wait_for(lambda e: e["kind"] == "ready")
        self.run.rss_ready = memory_mb(self.pid)
        self.run.seen_ready_s = time.monotonic() - self.spawned_at
        self.run.to_ready_s = float(event["t"]) - self.spawned_at

    async def stop(self) -> None:
        """SIGTERM if still running (real devices run forever), then reap."""
        if self.process is None:
            return
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.process.wait(), 10)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
        self.poll()  # count what arrived since the last look (e.g. the noise run's VAD events)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


# -- the runs ------------------------------------------------------------------


class Bench:
    def __init__(
        self,
        device: str,
        workdir: Path,
        server: RunningDevServer,
        pulse: PulseServer | None,
        period_ms: int,
        voice: str,
        extra_env: dict[str, str],
        verbose: bool,
    ) -> None:
        self.device = device
        self.workdir = workdir
        self.pulse = pulse
        self.period_ms = period_ms
        self.verbose = verbose
        base = pulse.client_env() if pulse is not None else dict(os.environ)
        # Overrides from the caller's shell must not change what is measured.
        overrides = (ENV_PREFIX, LEGACY_ENV_PREFIX)
        self.env = {
            key: value
            for key, value in base.items()
            if key in NOT_CONFIG_VARIABLES or not key.startswith(overrides)
        }
        self.env.update(DIFY_BASE_URL=server.base_url, DIFY_API_KEY="app-bench")
        if voice == "pcm":
            self.env.update(
                VOICE_ASSISTANT_PROVIDERS_TTS="openai",
                OPENAI_BASE_URL=server.base_url,
                OPENAI_API_KEY="sk-bench",
            )
        self.env.update(extra_env)
        self._player: subprocess.Popen[bytes] | None = None

    def log(self, message: str) -> None:
        if self.verbose:
            print(f"{self.device}: {message}", file=sys.stderr, flush=True)

    def write(self, name: str, samples: np.ndarray) -> Path:
        path = self.workdir / f"{name}.wav"
        path.write_bytes(encode_wav(samples, RATE))
        return path

    async def start(self, run: Run, mic: Path, extra_env: dict[str, str] | None = None) -> Child:
        """Spawn the assistant on `mic` (a file, or played into the PulseAudio microphone)."""
        env = {**self.env, **(extra_env or {})}
        child = Child(run, self.workdir, env, mic if self.pulse is None else None, self.period_ms)
        await child.start()
        await child.ready()
        if self.pulse is not None:
            self._player = self.pulse.play_into_mic(mic)
        return child

    async def finish(self, child: Child) -> None:
        """Stop the assistant, and the microphone's player so no audio leaks into the next run."""
        await child.stop()
        player, self._player = self._player, None
        if player is not None and player.poll() is None:
            player.terminate()
            await asyncio.to_thread(player.wait, 5)

    async def listening(self, name: str, samples: np.ndarray, seconds: float) -> Run:
        """CPU per second of audio over `seconds` of `samples`, after SETTLE_S."""
        run = Run(name)
        mic = self.write(name, np.concatenate([samples, silence(1.0)]))
        child = await self.start(run, mic)
        try:
            end = time.monotonic() + SETTLE_S + seconds
            await asyncio.sleep(SETTLE_S)
            # Sampled with the state, so that CPU spent on a turn (a noise the VAD
            # took for speech) can be told apart from CPU spent listening.
            readings: list[tuple[float, float, str]] = []
            while True:
                child.poll()
                now = time.monotonic()
                readings.append((now, cpu_seconds(child.pid), child.state))
                if now >= end:
                    break
                await asyncio.sleep(min(CPU_SAMPLE_S, end - now))
            run.peak_mb = memory_mb(child.pid)["VmHWM"]
        finally:
            await self.finish(child)
        run.audio_s = readings[-1][0] - readings[0][0]
        run.cpu_s = readings[-1][1] - readings[0][1]
        for (t_a, cpu_a, state_a), (t_b, cpu_b, state_b) in itertools.pairwise(readings):
            if state_a in LISTENING_STATES and state_b in LISTENING_STATES:
                run.listening_audio_s += t_b - t_a
                run.listening_cpu_s += cpu_b - cpu_a
        self.log(
            f"{name}: {run.cpu_s:.2f} CPU-s over {run.audio_s:.1f} s "
            f"({100 * run.cpu_fraction:.2f} % of a core; "
            f"{100 * run.listening_cpu_fraction:.2f} % over the {run.listening_audio_s:.1f} s "
            f"spent listening), ready in {run.to_ready_s:.3f} s"
        )
        return run

    async def turns(self, turns: int) -> Run:
        """RSS as the turns go by; each question interrupts the previous answer."""
        run = Run("turns")
        # One more question than counted: it interrupts the last counted answer, so
        # that turn ends (and is measured) without playing its whole answer.
        mic = self.write("turns", questions(turns + 1))
        child = await self.start(run, mic, {"VOICE_ASSISTANT_ASSISTANT_BARGE_IN_VOICE": "true"})
        try:
            checkpoints = sorted({*(n for n in RSS_AFTER_TURNS if n < turns), turns})
            for n in checkpoints:
                # `marks` closes a turn, interrupted or not.
                await child.wait_for(
                    lambda e, n=n: e["kind"] == "marks" and e.get("turn") == n,
                    timeout=60.0 + 10.0 * n,
                )
                memory = memory_mb(child.pid)
                run.rss_turns[n] = memory["VmRSS"]
                run.peak_mb = memory["VmHWM"]
                self.log(f"turns: after {n}: VmRSS {memory['VmRSS']:.1f} MB")
        finally:
            await self.finish(child)
        return run


@contextlib.contextmanager
def pulse_server() -> Iterator[PulseServer]:
    """tests/pulse.py's private PulseAudio (the harness lives with the tests: not a package)."""
    if str(TESTS) not in sys.path:
        sys.path.insert(0, str(TESTS))
    from pulse import PulseServer

    server = PulseServer()
    try:
        server.start()
        yield server
    finally:
        server.stop()


async def measure(
    device: str,
    seconds: float,
    turns: int,
    period_ms: int,
    voice: str,
    extra_env: dict[str, str],
    verbose: bool,
) -> list[Run]:
    server = await start_devserver(options=DevServerOptions())
    try:
        with contextlib.ExitStack() as stack:
            pulse = stack.enter_context(pulse_server()) if device == "pulse" else None
            workdir = Path(stack.enter_context(TemporaryDirectory(prefix="bench-idle-")))
            bench = Bench(device, workdir, server, pulse, period_ms, voice, extra_env, verbose)
            extra = SETTLE_S + 0.5  # the window closes before the file ends
            runs = [
                await bench.listening("silence", silence(seconds + extra), seconds),
                await bench.listening("noise", background_noise(seconds + extra), seconds),
            ]
            if turns > 0:
                runs.append(await bench.turns(turns))
            return runs
    finally:
        await server.stop()


# -- report --------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def tables(results: dict[str, list[Run]], turns: int) -> str:
    cpu = [
        "| device | audio | seconds | CPU s | % of one core | listening only: s, % "
        "| target <= 1 % | speech_started / utterance / dropped |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    memory = [
        "| device | spawn→ready s (median; each run) | target <= 1.5 s "
        f"| VmRSS at ready MB (anon + file) | VmRSS after turns (turn: MB) "
        f"| peak (VmHWM) MB | target <= {TARGET_RSS_MB:.0f} MB |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for device, runs in results.items():
        for run in runs:
            if run.name == "turns":
                continue
            c = run.counts
            cpu.append(
                f"| {device} | {run.name} | {run.audio_s:.1f} | {run.cpu_s:.2f} "
                f"| {100 * run.cpu_fraction:.2f} "
                f"| {run.listening_audio_s:.1f}, {100 * run.listening_cpu_fraction:.2f} "
                f"| {verdict(run.listening_cpu_fraction <= TARGET_CPU_FRACTION)} "
                f"| {c.get('speech_started', 0)} / {c.get('utterance', 0)} "
                f"/ {c.get('utterance_dropped', 0)} |"
            )
        ready = [r.to_ready_s for r in runs]
        seen = [r.seen_ready_s for r in runs]
        median = statistics.median(ready)
        first = runs[0].rss_ready
        after = next((r for r in runs if r.name == "turns"), None)
        rss_turns = (
            ", ".join(f"{n}: {mb:.1f}" for n, mb in after.rss_turns.items()) if after else "-"
        )
        worst = max([first.get("VmRSS", 0.0), *(after.rss_turns.values() if after else ())])
        peak = max(r.peak_mb for r in runs)
        memory.append(
            f"| {device} | {median:.3f} ({', '.join(f'{v:.3f}' for v in ready)}; "
            f"line seen {', '.join(f'{v:.3f}' for v in seen)}) "
            f"| {verdict(median <= TARGET_READY_S)} "
            f"| {first.get('VmRSS', 0):.1f} ({first.get('RssAnon', 0):.1f} + "
            f"{first.get('RssFile', 0):.1f}) | {rss_turns} | {peak:.1f} "
            f"| {verdict(worst <= TARGET_RSS_MB)} |"
        )
    lines = ["CPU while listening (the assistant's process, all threads):", *cpu, ""]
    lines += [f"Start-up and memory ({turns} turns):", *memory]
    for device, runs in results.items():
        for run in runs:
            if run.name == "turns":
                # Proof that the turns were whole turns: heard, answered, interrupted.
                c = run.counts
                lines.append(
                    f"{device} turns run: {c.get('transcript', 0)} transcripts, "
                    f"{c.get('state:speaking', 0)} answers playing, "
                    f"{c.get('barge_in', 0)} interrupted by the next question, "
                    f"{c.get('error', 0)} errors"
                )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.idle", description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0, help="listening window per run")
    parser.add_argument("--turns", type=int, default=100, help="questions in the memory run")
    parser.add_argument("--device", choices=("file", "pulse", "both"), default="both")
    parser.add_argument(
        "--period-ms",
        type=int,
        default=AudioSettings().period_ms,
        help="[audio] period_ms for the runs (default: the setting's default)",
    )
    parser.add_argument(
        "--voice",
        choices=("mp3", "pcm"),
        default="mp3",
        help="mp3: Dify's /text-to-audio (decoded by PyAV); pcm: OpenAI-compatible, no decoder",
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for the assistant (to try e.g. MALLOC_ARENA_MAX=2)",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    args = parser.parse_args(argv)
    extra_env = dict(item.split("=", 1) for item in args.env)
    if args.seconds <= 0 or args.turns < 0:
        parser.error("--seconds must be positive and --turns not negative")
    devices = ("file", "pulse") if args.device == "both" else (args.device,)
    results = {
        device: asyncio.run(
            measure(
                device,
                args.seconds,
                args.turns,
                args.period_ms,
                args.voice,
                extra_env,
                not args.quiet,
            )
        )
        for device in devices
    }
    print(tables(results, args.turns))
    return 0


if __name__ == "__main__":
    sys.exit(main())
