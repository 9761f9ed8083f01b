"""First-audio latency side by side (assistant with and without speculation, sequential, pipecat).

And who answers a question with a pause in it whole (the pause set).

    .venv/bin/python -m bench.latency [--turns 20] [--only a,s,sc,b,c] [--json out.json]

All systems hear the same espeak-ng question (`bench.common.QUESTION`) replayed in real time and
talk to one dev server, in its own process, with fixed service latencies (`LatencyProfile`;
by default STT 300 ms, first token 400 ms then 40 tokens/s, TTS first byte 200 ms then 2x real
time). The answer has four sentences. Turns alternate between the systems (the order rotates
every round) so that a noisy neighbour on the machine hits all of them alike, and each system
first gets `--warmup` turns that are not counted (the dev server caches its speech then).
The systems are described in `bench.latency_systems`; pipecat runs at the turn stop given by
`--pipecat-stop-secs` and `--pipecat-timeout`, by default its fastest configuration that still
answers the whole pause set (found with `python -m bench.pause_set`).

For each system it prints p50 and p95 of first audio (speech end to first sample handed to the
audio output) and of own overhead (first audio minus the VAD hangover minus the configured
service time; see `bench.common`; negative when work overlapped the hangover), then the first
audio ratios a/b, a/c, s/c, sc/c. After the counted turns, every system but b answers the pause
set (`bench.pause_set`: the question with `--pauses` ms between its halves, `--pause-reps` times
each) and its wrong-question answers are counted. A system that cannot run says why in its
row's place.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import platform
import shlex
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from assistant.ports import DeviceError
from assistant.providers.base import ServiceError
from assistant.settings import VadSettings
from bench.common import (
    TINY_PROFILE,
    LatencyProfile,
    Question,
    TurnResult,
    devserver_process,
    write_question,
)
from bench.latency_report import Report, SystemRun, render
from bench.latency_systems import (
    SPECULATE,
    SYSTEMS,
    TurnFailed,
    assistant_turn,
    hear_assistant,
    pipecat_bench_turn,
    sequential_bench_turn,
)
from bench.pause_set import (
    PAUSES_MS,
    PauseTally,
    pipecat_pause_turn,
    register_halves,
    write_pause_questions,
)
from bench.pipecat_env import (
    PipecatClient,
    PipecatConfig,
    PipecatUnavailable,
    ensure_environment,
    pipecat_client,
)

PIPECAT_STOP_SECS = 0.2
PIPECAT_TIMEOUT = 0.45
"""pipecat's fastest turn stop that answered every pause question whole (bench/RESULTS.md)."""
PAUSE_SYSTEMS = ("a", "s", "sc", "c")
"""Who answers the pause set (b, built from a's endpointer, would only repeat a, slowly)."""
_FAILURES = (
    TurnFailed,
    PipecatUnavailable,
    ServiceError,
    DeviceError,
    TimeoutError,
    RuntimeError,
    OSError,
)

TurnRunner = Callable[[int], Awaitable[TurnResult]]
PauseAnswer = tuple[str | None, str | None, list[str]]
"""The question answered (or None and why), and how the turn's speculations ended."""
PauseRunner = Callable[[int, Path], Awaitable[PauseAnswer]]
"""(turn, question WAV) -> its PauseAnswer."""


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
    except _FAILURES as exc:
        if counted:
            run.failures.append(f"turn {turn}: {exc}")
        return f"{run.key} failed"
    if counted:
        run.results.append(result)
    return f"{run.key} {result.first_audio_ms:.0f} ms"


async def _run_pause_turn(
    run: SystemRun, pause: int, wav: Path, turn: int, runner: PauseRunner
) -> str:
    """One pause question for one system, tallied; a short progress note."""
    assert run.pause is not None
    outcomes: list[str] = []
    try:
        answered, failure, outcomes = await runner(turn, wav)
    except _FAILURES as exc:
        answered, failure = None, str(exc)
    run.pause.add(pause, answered, failure, outcomes)
    return f"{run.key} {'failed' if answered is None else repr(answered)}"


async def _assistant_pause_turn(
    key: str, base_url: str, workdir: Path, speculate_after_ms: int, turn: int, wav: Path
) -> PauseAnswer:
    speaker = workdir / f"{key}-{turn}.wav"
    heard = await hear_assistant(base_url, wav, speaker, SPECULATE[key], speculate_after_ms)
    outcomes = [str(s["outcome"]) for s in heard.speculations]
    if "first_audio" not in heard.marks or heard.transcript is None:
        return None, f"no answer heard; errors: {heard.errors or 'none'}", outcomes
    return heard.transcript, None, outcomes


async def _pipecat_pause_turn(client: PipecatClient, turn: int, wav: Path) -> PauseAnswer:
    answered, failure = await pipecat_pause_turn(client, wav, turn)
    return answered, failure, []


def _rotated(order: list[str], index: int) -> list[str]:
    """`order` starting at `index`: no system always follows the same neighbour."""
    shift = index % len(order) if order else 0
    return order[shift:] + order[:shift]


async def measure(args: argparse.Namespace, workdir: Path) -> Report:
    """Run every requested system for the warm-up and counted turns, then the pause set."""
    profile = TINY_PROFILE if args.tiny else _profile(args)
    pipecat_config = PipecatConfig(
        stop_secs=args.pipecat_stop_secs,
        speech_timeout=args.pipecat_timeout,
        start_secs=args.pipecat_start_secs,
    )
    question = await asyncio.to_thread(write_question, workdir)
    pauses = await asyncio.to_thread(write_pause_questions, workdir) if args.pause_reps else {}
    pauses = {ms: path for ms, path in pauses.items() if ms in args.pauses}
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
        tuple(pauses),
    )
    async with contextlib.AsyncExitStack() as stack:
        server = await stack.enter_async_context(devserver_process(profile))
        base_url = server.base_url
        await register_halves(base_url)
        runners: dict[str, TurnRunner] = {}
        pause_runners: dict[str, PauseRunner] = {}
        after_ms = args.speculate_after_ms
        for key in SPECULATE:
            if key in runs:
                runners[key] = lambda n, k=key: assistant_turn(  # type: ignore[misc]
                    k, base_url, question, workdir, profile, after_ms, n
                )
                pause_runners[key] = lambda n, wav, k=key: _assistant_pause_turn(  # type: ignore[misc]
                    k, base_url, workdir, after_ms, n, wav
                )
        if "b" in runs:
            runners["b"] = lambda n: sequential_bench_turn(base_url, question, workdir, profile, n)
        if "c" in runs:
            client = await _start_pipecat(
                stack, args, base_url, question, pipecat_config, workdir, runs["c"]
            )
            if client is None:
                report.pipecat_status = runs["c"].unavailable or ""
            else:
                report.pipecat_status = f"pipecat {client.version} ran"
                runners["c"] = lambda n: pipecat_bench_turn(client, question, profile, n)
                pause_runners["c"] = lambda n, wav: _pipecat_pause_turn(client, n, wav)
        order = [key for key in keys if key in runners]
        for index in range(-args.warmup, args.turns):
            counted = index >= 0
            turn = index + 1
            notes = [
                await _run_turn(runs[key], turn, runners[key], counted)
                for key in _rotated(order, index)
            ]
            label = f"turn {turn}/{args.turns}" if counted else f"warm-up {turn + args.warmup}"
            print(f"{label}: {', '.join(sorted(notes))}", file=sys.stderr, flush=True)
        await _pause_set(args, runs, pause_runners, pauses)
    report.machine["load_avg_end"] = [round(v, 2) for v in os.getloadavg()]
    return report


async def _pause_set(
    args: argparse.Namespace,
    runs: dict[str, SystemRun],
    runners: dict[str, PauseRunner],
    pauses: dict[int, Path],
) -> None:
    order = [key for key in PAUSE_SYSTEMS if key in runners]
    for key in order:
        runs[key].pause = PauseTally()
    turn = 1000  # apart from the latency turns' numbers (speaker files, pipecat's log)
    for rep in range(args.pause_reps):
        for index, (pause, wav) in enumerate(pauses.items()):
            notes = []
            for key in _rotated(order, rep + index):
                turn += 1
                notes.append(await _run_pause_turn(runs[key], pause, wav, turn, runners[key]))
            print(
                f"pause {pause} ms ({rep + 1}/{args.pause_reps}): {', '.join(sorted(notes))}",
                file=sys.stderr,
                flush=True,
            )


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


def _systems(value: str) -> list[str]:
    keys = [part.strip() for part in value.split(",") if part.strip()]
    unknown = [key for key in keys if key not in SYSTEMS]
    if unknown or not keys:
        raise argparse.ArgumentTypeError(f"choose from {','.join(SYSTEMS)} (got {value!r})")
    return keys


def _pauses(value: str) -> list[int]:
    try:
        pauses = [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        pauses = []
    if not pauses or any(p not in PAUSES_MS for p in pauses):
        raise argparse.ArgumentTypeError(f"choose from {PAUSES_MS} (got {value!r})")
    return pauses


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
        "--pipecat-stop-secs",
        type=float,
        default=PIPECAT_STOP_SECS,
        help="Silero VAD stop_secs for c",
    )
    parser.add_argument(
        "--pipecat-timeout",
        type=float,
        default=PIPECAT_TIMEOUT,
        help="c's speech timeout after VAD stop",
    )
    parser.add_argument(
        "--pipecat-start-secs",
        type=float,
        default=PipecatConfig().start_secs,
        help="Silero VAD start_secs for c (pipecat's default)",
    )
    parser.add_argument(
        "--speculate-after-ms",
        type=int,
        default=VadSettings().speculate_after_ms,
        help="[vad] speculate_after_ms for s and sc",
    )
    parser.add_argument(
        "--pause-reps", type=int, default=2, help="pause set turns per pause length (0 = none)"
    )
    parser.add_argument(
        "--pauses",
        type=_pauses,
        default=list(PAUSES_MS),
        help=f"pause set pause lengths, of {','.join(map(str, PAUSES_MS))}",
    )
    parser.add_argument(
        "--no-pipecat-install",
        action="store_true",
        help="use bench/.pipecat-venv only if it is already there",
    )
    parser.add_argument("--keep", type=Path, help="keep the WAVs and logs in this directory")
    args = parser.parse_args(argv)
    if args.turns < 1 or args.warmup < 0 or args.pause_reps < 0:
        parser.error("--turns must be >= 1, --warmup and --pause-reps >= 0")
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
