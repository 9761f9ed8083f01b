"""First-audio latency, side by side: a) this assistant, b) a sequential client, c) pipecat.

    .venv/bin/python -m bench.latency [--turns 20] [--only a,b,c] [--json out.json]

All three hear the same espeak-ng question (`bench.common.QUESTION`) replayed in real time and
talk to one dev server, in its own process, with fixed service latencies (`LatencyProfile`;
by default STT 300 ms, first token 400 ms then 40 tokens/s, TTS first byte 200 ms then 2x real
time). The answer has four sentences. Turns alternate between the systems (the order rotates
every round) so that a noisy neighbour on the machine hits all of them alike, and each system
first gets `--warmup` turns that are not counted (the dev server caches its speech then).

a) `run_assistant` in file mode, in this process; first audio is its `first_audio` mark.
b) `bench.sequential_client`: the same parts, one step after the other.
c) `bench.pipecat_client` in `bench/.pipecat-venv` (created with pip if missing, unless
   `--no-pipecat-install`), on the dev server's OpenAI-compatible endpoints.

Each turn stops once its first audio has been measured (plus 100 ms), the same for all three:
the rest of the answer would only take time. For each system it prints p50 and p95 of first
audio (speech end to first sample handed to the audio output) and of own overhead (first audio
minus the VAD hangover minus the configured service time; see `bench.common`), then the ratios
a/b and a/c of first audio. A system that cannot run says why in its row's place.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import platform
import shlex
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from assistant.app import RunOptions, run_assistant
from assistant.events import Event, EventBus
from assistant.providers.base import ServiceError
from assistant.settings import AssistantSettings, DifySettings, Secret, Settings
from bench.common import (
    TINY_PROFILE,
    LatencyProfile,
    Question,
    Step,
    TurnResult,
    configured_service_ms,
    devserver_process,
    first_sound_s,
    overhead_by_step,
    percentile,
    write_question,
    writing_ms,
)
from bench.pipecat_env import (
    PipecatClient,
    PipecatConfig,
    PipecatUnavailable,
    ensure_environment,
    pipecat_client,
)
from bench.sequential_client import sequential_turn
from hardware.interfaces import DeviceError
from hardware.wav_io import read_wav

SYSTEMS = {"a": "assistant", "b": "sequential", "c": "pipecat"}
GRACE_S = 0.1
"""Kept running after the first audio before a turn is stopped (the same in every client)."""
TURN_TIMEOUT_S = 60.0
COLUMNS = (
    "system",
    "turns",
    "failed",
    "first_audio_p50_ms",
    "first_audio_p95_ms",
    "overhead_p50_ms",
    "overhead_p95_ms",
    "hangover_ms",
    "service_ms",
)
"""The table's header, in order; the smoke test checks it."""
OVERHEAD_TARGET_MS = 20.0
SEQUENTIAL_TARGET = 3.0

TurnRunner = Callable[[int], Awaitable[TurnResult]]


class TurnFailed(Exception):
    """A turn ended without a first audio measurement."""


@dataclass(slots=True)
class SystemRun:
    """One system's turns, or why it could not run."""

    key: str
    results: list[TurnResult] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    unavailable: str | None = None

    @property
    def label(self) -> str:
        return f"{self.key} {SYSTEMS[self.key]}"

    def stats(self) -> dict[str, float]:
        first = [r.first_audio_ms for r in self.results]
        overhead = [r.overhead_ms for r in self.results]
        return {
            "first_audio_p50_ms": percentile(first, 50),
            "first_audio_p95_ms": percentile(first, 95),
            "overhead_p50_ms": percentile(overhead, 50),
            "overhead_p95_ms": percentile(overhead, 95),
            "hangover_ms": self.results[0].hangover_ms if self.results else float("nan"),
            "service_ms": percentile([r.service_ms for r in self.results], 50),
        }

    def step_stats(self) -> dict[str, tuple[float, float]]:
        """p50 and p95 of each step's share of the own overhead, in step order."""
        names: dict[str, None] = {}
        for result in self.results:
            names.update(dict.fromkeys(result.extra.get("steps", {})))
        out = {}
        for name in names:
            values = [r.extra["steps"][name] for r in self.results if name in r.extra["steps"]]
            out[name] = (percentile(values, 50), percentile(values, 95))
        return out


def assistant_steps(profile: LatencyProfile, transcript: str, hangover: float) -> list[Step]:
    """a)'s marks (assistant.marks), each step with the time it was configured to take."""
    return [
        ("endpoint", "endpoint", hangover),
        ("stt", "transcript", profile.stt_latency_ms),
        ("completion", "first_token", profile.first_token_ms),
        ("sentence", "first_sentence", writing_ms(profile, transcript)),
        ("tts", "first_tts_byte", profile.tts_first_byte_ms),
        ("playback", "first_audio", 0.0),
    ]


def sequential_steps(profile: LatencyProfile, transcript: str, hangover: float) -> list[Step]:
    """b)'s marks: the whole answer and the whole speech body stand where a)'s first sentence
    and first audio byte stand, so their extra time is b's overhead."""
    return [
        ("endpoint", "endpoint", hangover),
        ("stt", "transcript", profile.stt_latency_ms),
        ("completion", "answer", profile.first_token_ms + writing_ms(profile, transcript)),
        ("tts", "tts_body", profile.tts_first_byte_ms),
        ("decode", "decoded", 0.0),
        ("playback", "first_audio", 0.0),
    ]


def pipecat_steps(
    profile: LatencyProfile, transcript: str, vad_stop: float, speech_timeout: float
) -> list[Step]:
    """c)'s marks (pipecat_client.py): VAD stop, transcript, turn stop, first LLM token, first
    audio. pipecat transcribes as soon as the VAD stops and ends the turn when both the speech
    timeout and the transcript are there: with a speech timeout the `turn` step goes negative
    by the part of it that transcription overlapped."""
    return [
        ("endpoint", "vad_stop", vad_stop),
        ("stt", "transcript", profile.stt_latency_ms),
        ("turn", "turn_stop", speech_timeout),
        ("completion", "first_token", profile.first_token_ms),
        ("speech", "first_audio", writing_ms(profile, transcript) + profile.tts_first_byte_ms),
    ]


# -- a) the assistant -------------------------------------------------------------------------


def _played_ms(speaker: Path, question: Question) -> float | None:
    """Cross-check from the speaker file: its first sound after speech end, in ms.

    Later than the handover by up to one device period and by the leading silence of the
    synthesised speech; only kept in the JSON output.
    """
    try:
        samples, rate = read_wav(speaker)
    except (OSError, ValueError):
        return None
    start = round(question.speech_end_s * rate)
    sound = first_sound_s(samples[start:], rate)
    return None if sound is None else round(sound * 1000, 1)


async def assistant_turn(
    base_url: str, question: Question, workdir: Path, profile: LatencyProfile, turn: int
) -> TurnResult:
    """One question through `run_assistant` in file mode, stopped after its first audio."""
    settings = dataclasses.replace(
        Settings(),
        # No watchdog thread: the run is short, and it would only add a thread to the process.
        assistant=AssistantSettings(watchdog_s=0),
        dify=DifySettings(base_url=base_url, api_key=Secret("app-bench")),
    )
    bus = EventBus()
    seen: dict[str, Any] = {"errors": []}
    speaking = asyncio.Event()

    def listen(event: Event) -> None:
        if event.kind == "marks":
            seen["marks"] = event.data
        elif event.kind == "transcript":
            seen["transcript"] = event.data.get("text", "")
        elif event.kind == "error":
            seen["errors"].append(event.data)
        elif event.kind == "state" and event.data.get("state") == "speaking":
            speaking.set()

    bus.add_listener(listen)
    speaker = workdir / f"a-{turn}.wav"
    run = asyncio.create_task(run_assistant(settings, RunOptions(question.path, speaker), bus))
    heard = asyncio.create_task(speaking.wait())
    try:
        async with asyncio.timeout(TURN_TIMEOUT_S):
            await asyncio.wait({run, heard}, return_when=asyncio.FIRST_COMPLETED)
        if speaking.is_set():
            await asyncio.sleep(GRACE_S)
    finally:
        heard.cancel()
        run.cancel()
        # The turn's marks are published as its cancellation unwinds.
        with contextlib.suppress(asyncio.CancelledError):
            await run
    marks = seen.get("marks", {})
    if "first_audio" not in marks:
        raise TurnFailed(f"no first audio; errors: {seen['errors'] or 'none'}")
    transcript = seen.get("transcript", "")
    return TurnResult(
        "a",
        turn,
        float(marks["first_audio"]),
        question.hangover_ms,
        configured_service_ms(profile, transcript),
        {
            "marks": marks,
            "steps": overhead_by_step(
                marks, assistant_steps(profile, transcript, question.hangover_ms)
            ),
            "transcript": transcript,
            "played_ms": _played_ms(speaker, question),
        },
    )


# -- b) the sequential client -----------------------------------------------------------------


async def sequential_bench_turn(
    base_url: str, question: Question, workdir: Path, profile: LatencyProfile, turn: int
) -> TurnResult:
    speaker = workdir / f"b-{turn}.wav"
    async with asyncio.timeout(TURN_TIMEOUT_S):
        outcome = await sequential_turn(base_url, question.path, speaker)
    return TurnResult(
        "b",
        turn,
        outcome.first_audio_ms,
        question.hangover_ms,
        configured_service_ms(profile, outcome.transcript),
        {
            "marks": outcome.marks_ms,
            "steps": overhead_by_step(
                outcome.marks_ms,
                sequential_steps(profile, outcome.transcript, question.hangover_ms),
            ),
            "transcript": outcome.transcript,
            "played_ms": _played_ms(speaker, question),
        },
    )


# -- c) pipecat -------------------------------------------------------------------------------


async def pipecat_bench_turn(
    client: PipecatClient, question: Question, profile: LatencyProfile, turn: int
) -> TurnResult:
    doc = await client.turn(turn)
    first = doc.get("first_audio_s")
    if doc.get("error") or first is None:
        raise TurnFailed(f"{doc.get('error')}: {client.log_tail()}")
    # The client reports seconds after it started feeding the WAV, the file's own timeline.
    marks = {
        name: round((t - question.speech_end_s) * 1000, 1)
        for name, t in doc.get("marks_s", {}).items()
    }
    transcript = str(doc.get("transcript", ""))
    return TurnResult(
        "c",
        turn,
        (float(first) - question.speech_end_s) * 1000,
        client.hangover_ms,
        configured_service_ms(profile, transcript),
        {
            "marks": marks,
            "steps": overhead_by_step(
                marks,
                pipecat_steps(profile, transcript, client.vad_stop_ms, client.speech_timeout_ms),
            ),
            "transcript": transcript,
        },
    )


# -- the run ----------------------------------------------------------------------------------


@dataclass(slots=True)
class Report:
    """Everything one run measured, and how."""

    command: str
    date: str
    machine: dict[str, Any]
    profile: LatencyProfile
    pipecat: PipecatConfig
    question: Question
    warmup: int
    runs: dict[str, SystemRun]
    pipecat_status: str = ""

    def ratio(self, key: str, stat: str) -> float | None:
        a, other = self.runs.get("a"), self.runs.get(key)
        if a is None or other is None or not a.results or not other.results:
            return None
        return a.stats()[stat] / other.stats()[stat]

    def as_json(self) -> dict[str, Any]:
        return {
            "command": self.command,
            "date": self.date,
            "machine": self.machine,
            "profile": dataclasses.asdict(self.profile),
            "pipecat_config": dataclasses.asdict(self.pipecat),
            "pipecat_status": self.pipecat_status,
            "question": {
                "speech_end_ms": round(self.question.speech_end_s * 1000, 1),
                "duration_s": round(self.question.duration_s, 3),
            },
            "warmup_turns": self.warmup,
            "systems": {
                key: {
                    "label": run.label,
                    "unavailable": run.unavailable,
                    "stats": {k: _round(v) for k, v in run.stats().items()},
                    "overhead_by_step_p50_p95_ms": {
                        name: [_round(p50), _round(p95)]
                        for name, (p50, p95) in run.step_stats().items()
                    },
                    "failures": run.failures,
                    "turns": [r.as_json() for r in run.results],
                }
                for key, run in self.runs.items()
            },
            "ratios": {
                f"a/{key}": {
                    stat: _round(self.ratio(key, f"first_audio_{stat}_ms"), 3)
                    for stat in ("p50", "p95")
                }
                for key in ("b", "c")
                if key in self.runs
            },
        }


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None or value != value else round(value, digits)


def _machine() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_avg_start": [round(v, 2) for v in os.getloadavg()],
    }


async def _run_turn(run: SystemRun, turn: int, runner: TurnRunner, counted: bool) -> str:
    """One turn of one system; a one-word progress note."""
    try:
        result = await runner(turn)
    except (
        TurnFailed,
        PipecatUnavailable,
        ServiceError,
        DeviceError,
        TimeoutError,
        RuntimeError,
        OSError,
    ) as exc:
        if counted:
            run.failures.append(f"turn {turn}: {exc}")
        return f"{run.key} failed"
    if counted:
        run.results.append(result)
    return f"{run.key} {result.first_audio_ms:.0f} ms"


async def measure(args: argparse.Namespace, workdir: Path) -> Report:
    """Run every requested system for the warm-up and counted turns."""
    profile = TINY_PROFILE if args.tiny else _profile(args)
    pipecat_config = PipecatConfig(
        stop_secs=args.pipecat_stop_secs, speech_timeout=args.pipecat_timeout
    )
    question = await asyncio.to_thread(write_question, workdir)
    keys = [key for key in SYSTEMS if key in args.only]
    runs = {key: SystemRun(key) for key in keys}
    report = Report(
        _command(),
        datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        _machine(),
        profile,
        pipecat_config,
        question,
        args.warmup,
        runs,
    )
    async with contextlib.AsyncExitStack() as stack:
        server = await stack.enter_async_context(devserver_process(profile))
        runners: dict[str, TurnRunner] = {}
        if "a" in runs:
            runners["a"] = lambda n: assistant_turn(server.base_url, question, workdir, profile, n)
        if "b" in runs:
            runners["b"] = lambda n: sequential_bench_turn(
                server.base_url, question, workdir, profile, n
            )
        if "c" in runs:
            client = await _start_pipecat(
                stack, args, server.base_url, question, pipecat_config, workdir, runs["c"]
            )
            if client is None:
                report.pipecat_status = runs["c"].unavailable or ""
            else:
                report.pipecat_status = f"pipecat {client.version} ran"
                runners["c"] = lambda n: pipecat_bench_turn(client, question, profile, n)
        order = [key for key in keys if key in runners]
        for index in range(-args.warmup, args.turns):
            counted = index >= 0
            turn = index + 1
            # Rotate who goes first, so no system always follows the same neighbour.
            shift = index % len(order) if order else 0
            notes = [
                await _run_turn(runs[key], turn, runners[key], counted)
                for key in order[shift:] + order[:shift]
            ]
            label = f"turn {turn}/{args.turns}" if counted else f"warm-up {turn + args.warmup}"
            print(f"{label}: {', '.join(sorted(notes))}", file=sys.stderr, flush=True)
    report.machine["load_avg_end"] = [round(v, 2) for v in os.getloadavg()]
    return report


async def _start_pipecat(
    stack: contextlib.AsyncExitStack,
    args: argparse.Namespace,
    base_url: str,
    question: Question,
    config: PipecatConfig,
    workdir: Path,
    run: SystemRun,
) -> PipecatClient | None:
    """The pipecat client, running until `stack` closes; None (and why, in `run`) if not."""
    try:
        python = await ensure_environment(install=not args.no_pipecat_install)
    except PipecatUnavailable as exc:
        run.unavailable = f"pipecat not installed: {exc}"
        return None
    try:
        return await stack.enter_async_context(
            pipecat_client(python, base_url, question.path, config, workdir / "c.log")
        )
    except PipecatUnavailable as exc:
        run.unavailable = f"pipecat could not run: {exc}"
        return None


def _profile(args: argparse.Namespace) -> LatencyProfile:
    return LatencyProfile(
        stt_latency_ms=args.stt_ms,
        first_token_ms=args.first_token_ms,
        tokens_per_second=args.tokens_per_second,
        tts_first_byte_ms=args.tts_first_byte_ms,
        tts_speed=args.tts_speed,
    )


def _command() -> str:
    return ".venv/bin/python -m bench.latency " + shlex.join(sys.argv[1:])


def _cell(value: float | None) -> str:
    return "n/a" if value is None or value != value else f"{value:.1f}"


def render(report: Report) -> str:
    """The table, the ratios and the targets, as printed."""
    profile = report.profile
    lines = [
        f"latency: {report.date}, {report.machine['cpus']} CPUs, {report.machine['platform']}",
        f"services: {profile.describe()}",
        f"question: {report.question.duration_s:.2f} s WAV, speech ends at "
        f"{report.question.speech_end_s * 1000:.0f} ms; {report.warmup} warm-up turn(s) "
        "per system not counted",
        "",
    ]
    rows = [list(COLUMNS)]
    for run in report.runs.values():
        if run.unavailable is not None:
            continue
        stats = run.stats()
        rows.append(
            [run.label, str(len(run.results)), str(len(run.failures))]
            + [_cell(stats[name]) for name in COLUMNS[3:]]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    for row in rows:
        cells = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        lines.append("  ".join(cells))
    for run in report.runs.values():
        if run.unavailable is not None:
            lines.append(f"{run.label}: {run.unavailable}")
        for failure in run.failures:
            lines.append(f"{run.label} failed {failure}")
    lines.append("")
    lines.append("own overhead by step, p50/p95 ms (step time minus its configured time):")
    for run in report.runs.values():
        steps = run.step_stats()
        if steps:
            parts = [f"{name} {_cell(p50)}/{_cell(p95)}" for name, (p50, p95) in steps.items()]
            lines.append(f"  {run.label}: " + ", ".join(parts))
    lines.append("")
    for key in ("b", "c"):
        if key not in report.runs:
            continue
        p50, p95 = (report.ratio(key, f"first_audio_{s}_ms") for s in ("p50", "p95"))
        sooner = ""
        if p50:
            sooner = f" (a {1 / p50:.2f}x sooner at p50)" if p50 < 1 else " (a later at p50)"
        lines.append(f"ratio a/{key}: first_audio p50 {_ratio(p50)}, p95 {_ratio(p95)}{sooner}")
    lines.extend(_targets(report))
    return "\n".join(lines)


def _ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _targets(report: Report) -> list[str]:
    out = []
    a = report.runs.get("a")
    if a is not None and a.results:
        p95 = a.stats()["overhead_p95_ms"]
        verdict = "met" if p95 <= OVERHEAD_TARGET_MS else "MISSED"
        out.append(f"target a own overhead p95 <= {OVERHEAD_TARGET_MS:.0f} ms: {verdict}")
    ratio_b = report.ratio("b", "first_audio_p50_ms")
    if ratio_b is not None:
        verdict = "met" if 1 / ratio_b >= SEQUENTIAL_TARGET else "MISSED"
        out.append(f"target a >= {SEQUENTIAL_TARGET:.0f}x sooner than b (p50): {verdict}")
    ratio_c = report.ratio("c", "first_audio_p50_ms")
    if ratio_c is not None:
        out.append(f"target a sooner than c (p50): {'met' if ratio_c < 1 else 'MISSED'}")
    return out


def _systems(value: str) -> list[str]:
    keys = [part.strip() for part in value.split(",") if part.strip()]
    unknown = [key for key in keys if key not in SYSTEMS]
    if unknown or not keys:
        raise argparse.ArgumentTypeError(f"choose from a,b,c (got {value!r})")
    return keys


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    defaults = LatencyProfile()
    parser = argparse.ArgumentParser(prog="bench.latency", description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=20, help="counted turns per system")
    parser.add_argument("--warmup", type=int, default=1, help="uncounted turns per system first")
    parser.add_argument(
        "--only", type=_systems, default=list(SYSTEMS), help="systems to run, e.g. a,b"
    )
    parser.add_argument("--json", type=Path, help="write every turn and the figures here")
    parser.add_argument("--stt-ms", type=int, default=defaults.stt_latency_ms)
    parser.add_argument("--first-token-ms", type=int, default=defaults.first_token_ms)
    parser.add_argument("--tokens-per-second", type=float, default=defaults.tokens_per_second)
    parser.add_argument("--tts-first-byte-ms", type=int, default=defaults.tts_first_byte_ms)
    parser.add_argument("--tts-speed", type=float, default=defaults.tts_speed)
    parser.add_argument(
        "--tiny", action="store_true", help="near-zero service latencies (smoke test)"
    )
    parser.add_argument(
        "--pipecat-stop-secs", type=float, default=0.5, help="Silero VAD stop_secs for c"
    )
    parser.add_argument(
        "--pipecat-timeout", type=float, default=0.0, help="c's speech timeout after VAD stop"
    )
    parser.add_argument(
        "--no-pipecat-install",
        action="store_true",
        help="use bench/.pipecat-venv only if it is already there",
    )
    parser.add_argument("--keep", type=Path, help="keep the WAVs and logs in this directory")
    args = parser.parse_args(argv)
    if args.turns < 1 or args.warmup < 0:
        parser.error("--turns must be >= 1 and --warmup >= 0")
    return args


async def amain(args: argparse.Namespace) -> Report:
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
        return await measure(args, args.keep)
    with tempfile.TemporaryDirectory(prefix="bench-latency-") as workdir:
        return await measure(args, Path(workdir))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # The assistant logs each turn at INFO; the table is the output here.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    started = time.monotonic()
    report = asyncio.run(amain(args))
    print(render(report), flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps(report.as_json(), indent=2) + "\n")
    print(f"took {time.monotonic() - started:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
