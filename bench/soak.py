"""Soak: hundreds of turns with a fifth of the service requests faulted at random.

    .venv/bin/python -m bench.soak [--turns 300] [--fault-rate 0.2] [--seed 1] [--json out.json]

The assistant runs in this process (so its asyncio tasks can be counted), in file mode:
a scripted microphone says the next question once the previous turn is over, and the
speaker is a WAV file in a scratch directory. The dev server runs as its own process
(`python -m assistant devserver`, one-sentence answers), so its memory, tasks and file
descriptors are not counted; faults are armed over its control API before each question:
each of the turn's three requests (speech-to-text, completion, text-to-speech) gets, with
probability `--fault-rate`, one fault drawn from `FAULTS`.

It checks, and prints:
- no crash: the run ends by itself, every question produced a turn;
- no turn over its bound: from the question's end to the loop listening again, at most
  `turn_bound_s` (the stage timeouts plus the time to say a sentence and an error);
- every turn said something: an answer, or the spoken error message;
- resident memory drift after the warm-up (turn `WARMUP_TURNS`) to the end: < 5 MB;
- no leaked asyncio tasks or file descriptors: their counts at the same two points
  (sockets, which the HTTP pools open and close, by the most held late vs early).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from assistant.app import RunOptions, run_assistant
from assistant.audio.espeak import synthesize
from assistant.audio.resample import resample_once
from assistant.events import Event, EventBus, Info, Subscription
from assistant.ports import CAPTURE_RATE, AudioBlock
from assistant.settings import (
    AssistantSettings,
    AudioSettings,
    DifySettings,
    HttpSettings,
    Secret,
    Settings,
)

REPO = Path(__file__).resolve().parent.parent
QUESTIONS = (
    "What is the weather like on Mars?",
    "What time is it?",
    "Tell me a joke.",
    "Turn on the kitchen lights.",
    "How far away is the Moon?",
)
"""The dev server's known phrases: each has a right transcript to check against."""
KEY = "app-soak"
BLOCK_MS = 20
NOISE_RMS = 30.0
"""The microphone's own hiss between questions (-60 dBFS), as a real one has."""
WARMUP_TURNS = 20
"""Memory, tasks and descriptors are compared from this turn on (pools, caches, lazy
imports and the allocator settle first)."""
SETTLE_S = 1.5
"""After a turn, before counting: the heap trim (1 s after the turn) has run by then."""
GAP_S = 0.4
"""Quiet between the end of a turn and the next question."""
MAX_DRIFT_MB = 5.0
HTTP = HttpSettings(
    connect_timeout_s=2.0,
    read_timeout_s=3.0,
    stt_timeout_s=5.0,
    completion_timeout_s=10.0,
    tts_timeout_s=5.0,
)
"""Short bounds, so a stalled service costs a few seconds, not the production minute."""
SAY_S = 12.0
"""Longest a turn spends speaking: a one-sentence answer, or an error message."""
SERVER_LATENCY = (
    "--stt-latency-ms=100",
    "--first-token-ms=150",
    "--tokens-per-second=60",
    "--tts-first-byte-ms=80",
    "--tts-speed=4",
    "--reply-sentences=1",
)

_HTML = "<html><body><h1>502 Bad Gateway</h1><hr>nginx</body></html>"


def _faults(endpoint: str) -> list[dict[str, Any]]:
    """What can go wrong with one endpoint, as `POST /_dev/faults` bodies."""
    common: list[dict[str, Any]] = [
        {"status": 500, "body": _HTML, "content_type": "text/html"},
        {"status": 502, "body": _HTML, "content_type": "text/html"},
        {"status": 503},
        {"status": 429, "headers": {"Retry-After": "1"}},
        {"mode": "stall", "stall_s": 8.0},
        {"mode": "cut"},
        {"status": 200, "body": "<html>maintenance</html>", "content_type": "text/html"},
    ]
    specific: dict[str, list[dict[str, Any]]] = {
        "audio-to-text": [{"status": 200, "body": '{"text": ', "content_type": "application/json"}],
        "completion-messages": [
            {"mode": "stall", "after": 2, "stall_s": 8.0},
            {"mode": "cut", "after": 3},
            {"mode": "sse_error", "after": 2},
            {"mode": "malformed_sse"},
        ],
        "text-to-audio": [
            {"mode": "cut", "after": 1},
            {"mode": "corrupt_audio"},
            {"mode": "empty_audio"},
            {"status": 200, "body": "null", "content_type": "application/json"},
        ],
    }
    return [{"endpoint": endpoint, **fault} for fault in common + specific[endpoint]]


ENDPOINTS = ("audio-to-text", "completion-messages", "text-to-audio")


class ScriptedMic:
    """A microphone in real time: hiss, and a question whenever `say` is called."""

    def __init__(self, seed: int) -> None:
        self._block = CAPTURE_RATE * BLOCK_MS // 1000
        self._queue: deque[np.ndarray] = deque()
        self._rng = np.random.default_rng(seed)
        self._t0 = 0.0
        self._blocks = 0
        self.said_until = 0.0
        """time.monotonic() at which the last question queued will have been said."""

    def say(self, samples: np.ndarray) -> None:
        start = max(time.monotonic(), self.said_until)
        self.said_until = start + len(samples) / CAPTURE_RATE
        for i in range(0, len(samples), self._block):
            piece = samples[i : i + self._block]
            if len(piece) < self._block:
                piece = np.concatenate([piece, np.zeros(self._block - len(piece), np.int16)])
            self._queue.append(piece)

    async def start(self) -> None:
        self._t0 = time.monotonic()
        self._blocks = 0

    async def read(self, timeout: float) -> AudioBlock | None:
        t_start = self._t0 + self._blocks * BLOCK_MS / 1000
        await asyncio.sleep(max(0.0, t_start + BLOCK_MS / 1000 - time.monotonic()))
        self._blocks += 1
        # The room's hiss goes on under a question too: espeak-ng's own pauses are
        # digital silence, which no microphone delivers.
        hiss = self._rng.normal(0, NOISE_RMS, self._block)
        if self._queue:
            hiss += self._queue.popleft()
        return AudioBlock(np.clip(hiss, -32768, 32767).astype(np.int16), t_start)

    async def close(self) -> None:
        self._queue.clear()


@dataclass(slots=True)
class TurnResult:
    turn: int
    question: str
    faults: list[str]
    duration_s: float
    """From the end of the question to the loop listening again."""
    outcome: str
    """answered, recovered (a retry or fallback saved it), failed (said an error), silent."""
    errors: list[str] = field(default_factory=list)
    trace: list[str] = field(default_factory=list)
    """The turn's events, in order (kind, or kind:state)."""


@dataclass(slots=True)
class Snapshot:
    turn: int
    rss_mb: float
    tasks: int
    files: int
    """Open descriptors that are not sockets: files, pipes, the event loop's own."""
    sockets: int
    """Open sockets: they come and go with the HTTP pools' keep-alive connections."""


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def snapshot(turn: int) -> Snapshot:
    targets = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the one listdir itself used is gone by now
            targets.append(os.readlink(f"/proc/self/fd/{fd}"))
    sockets = sum(1 for t in targets if t.startswith("socket:"))
    return Snapshot(turn, rss_mb(), len(asyncio.all_tasks()), len(targets) - sockets, sockets)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def next_event(
    events: Subscription, match: Callable[[Event], bool], timeout: float, seen: list[Event]
) -> Event:
    """The next event matching `match`; every event read on the way is kept in `seen`."""
    async with asyncio.timeout(timeout):
        while True:
            event = await events.get()
            seen.append(event)
            if match(event):
                return event


def outcome_of(seen: list[Event]) -> tuple[str, list[str]]:
    kinds = [e.kind for e in seen]
    errors = [
        f"{e.data.get('service', '?')} {e.data.get('stage', '?')} {e.data.get('code', '?')}"
        for e in seen
        if e.kind in ("error", "service_error")
    ]
    if "error" in kinds:
        return ("failed" if any(e.data.get("spoken") for e in seen) else "silent"), errors
    if "answer" in kinds:
        return ("recovered" if errors else "answered"), errors
    return "silent", errors


class Soak:
    def __init__(self, turns: int, fault_rate: float, seed: int, workdir: Path) -> None:
        self.turns = turns
        self.fault_rate = fault_rate
        self.random = random.Random(seed)
        self.workdir = workdir
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.mic = ScriptedMic(seed)
        self.bus = EventBus()
        self.results: list[TurnResult] = []
        self.snapshots: list[Snapshot] = []
        self.requests = 0
        self.faulted = 0
        self.turn_bound_s = HTTP.stt_timeout_s + HTTP.completion_timeout_s + SAY_S
        self.speech = {q: self._speech(q) for q in QUESTIONS}

    @staticmethod
    def _speech(text: str) -> np.ndarray:
        spoken = synthesize(text)
        return resample_once(spoken.samples, spoken.sample_rate, CAPTURE_RATE)

    def settings(self) -> Settings:
        return Settings(
            assistant=AssistantSettings(watchdog_s=15.0),
            audio=AudioSettings(output_rate=16_000),
            http=HTTP,
            dify=DifySettings(base_url=self.base_url, api_key=Secret(KEY)),
        )

    def start_server(self) -> subprocess.Popen[bytes]:
        command = [
            sys.executable,
            "-m",
            "assistant",
            "devserver",
            f"--port={self.port}",
            "--control",
        ]
        return subprocess.Popen(
            [*command, *SERVER_LATENCY],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=(self.workdir / "devserver.log").open("wb"),
        )

    async def run(self) -> None:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.port}") as control:
            await self._wait_for_server(control)
            events = self.bus.subscribe(maxsize=10_000)
            options = RunOptions(
                speaker_wav=self.workdir / "speaker.wav",
                events_jsonl=self.workdir / "events.jsonl",
                source=self.mic,
            )
            assistant = asyncio.create_task(run_assistant(self.settings(), options, self.bus))
            try:
                await next_event(events, lambda e: e.kind == "ready", 30, [])
                for turn in range(1, self.turns + 1):
                    if assistant.done():
                        raise RuntimeError(f"the assistant stopped: {assistant!r}")
                    await self._turn(turn, control, events)
            finally:
                assistant.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await assistant

    async def _wait_for_server(self, control: httpx.AsyncClient) -> None:
        for _ in range(200):
            with contextlib.suppress(httpx.HTTPError):
                if (await control.get("/_dev/faults")).status_code == 200:
                    return
            await asyncio.sleep(0.05)
        raise RuntimeError("the dev server did not start")

    async def _turn(self, turn: int, control: httpx.AsyncClient, events: Subscription) -> None:
        question = QUESTIONS[turn % len(QUESTIONS)]
        armed = []
        for endpoint in ENDPOINTS:
            if self.random.random() < self.fault_rate:
                fault = self.random.choice(_faults(endpoint))
                (await control.post("/_dev/faults", json=fault)).raise_for_status()
                armed.append(f"{endpoint}:{fault.get('mode', 'respond')}:{fault.get('status', '')}")
        self.mic.say(self.speech[question])
        seen: list[Event] = []
        started = await next_event(events, lambda e: e.kind == "utterance", 15, seen)
        del started
        spoken_end = self.mic.said_until
        try:
            await next_event(
                events,
                lambda e: e.kind == "state" and e.data.get("state") == "listening",
                self.turn_bound_s + 10,
                seen,
            )
        except TimeoutError:
            seen.append(Info(turn=turn, message="timeout: the turn never ended"))
        duration = time.monotonic() - spoken_end
        outcome, errors = outcome_of(seen)
        transcripts = [e.data.get("text") for e in seen if e.kind == "transcript"]
        if outcome in ("answered", "recovered") and transcripts != [question]:
            outcome = "wrong_transcript"
        trace = [f"{e.kind}:{e.data['state']}" if e.kind == "state" else e.kind for e in seen]
        self.results.append(
            TurnResult(turn, question, armed, round(duration, 2), outcome, errors, trace)
        )
        log = (await control.get("/_dev/log")).json()
        records = log if isinstance(log, list) else log.get("requests", [])
        self.requests += len(records)
        self.faulted += sum(1 for r in records if r.get("fault"))
        (await control.post("/_dev/reset")).raise_for_status()
        if turn >= min(WARMUP_TURNS, self.turns):
            if turn in (WARMUP_TURNS, self.turns):
                await asyncio.sleep(SETTLE_S)  # memory is compared after the heap trim
            self.snapshots.append(snapshot(turn))
        print(
            f"turn {turn:3d} {outcome:9s} {duration:5.1f} s  faults: {', '.join(armed) or '-'}",
            flush=True,
        )
        await asyncio.sleep(GAP_S)

    def report(self) -> dict[str, Any]:
        durations = [r.duration_s for r in self.results]
        outcomes: dict[str, int] = {}
        for r in self.results:
            outcomes[r.outcome] = outcomes.get(r.outcome, 0) + 1
        drift = tasks = files = sockets = None
        if len(self.snapshots) >= 2:
            first, last = self.snapshots[0], self.snapshots[-1]
            drift = round(last.rss_mb - first.rss_mb, 2)
            tasks = last.tasks - first.tasks
            files = last.files - first.files
            # Sockets vary with the pools' keep-alive connections: a leak shows as the
            # late turns holding more than the early turns ever did.
            early = max(s.sockets for s in self.snapshots[: max(1, len(self.snapshots) // 4)])
            sockets = max(0, max(s.sockets for s in self.snapshots[-10:]) - early)
        over = [r.turn for r in self.results if r.duration_s > self.turn_bound_s]
        return {
            "turns": len(self.results),
            "requests": self.requests,
            "faulted_requests": self.faulted,
            "outcomes": outcomes,
            "turn_bound_s": self.turn_bound_s,
            "turn_s_p50": round(statistics.median(durations), 2) if durations else None,
            "turn_s_max": max(durations) if durations else None,
            "turns_over_bound": over,
            "snapshots": [asdict(s) for s in (self.snapshots[:1] + self.snapshots[-1:])],
            "rss_drift_mb": drift,
            "task_drift": tasks,
            "file_descriptor_drift": files,
            "socket_drift": sockets,
            "results": [asdict(r) for r in self.results],
        }


def verdict(report: dict[str, Any]) -> list[str]:
    """What failed, as sentences; empty when the soak passed."""
    problems = []
    bad = {k: v for k, v in report["outcomes"].items() if k in ("silent", "wrong_transcript")}
    if bad:
        problems.append(f"turns that said nothing or answered the wrong question: {bad}")
    if report["turns_over_bound"]:
        problems.append(
            f"turns over the {report['turn_bound_s']} s bound: {report['turns_over_bound']}"
        )
    if report["rss_drift_mb"] is not None and report["rss_drift_mb"] >= MAX_DRIFT_MB:
        problems.append(f"resident memory grew {report['rss_drift_mb']} MB")
    if report["task_drift"]:
        problems.append(f"asyncio tasks grew by {report['task_drift']}")
    if report["file_descriptor_drift"]:
        problems.append(f"file descriptors grew by {report['file_descriptor_drift']}")
    if report["socket_drift"]:
        problems.append(f"late turns held {report['socket_drift']} more sockets than early ones")
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument("--turns", type=int, default=300)
    parser.add_argument("--fault-rate", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, help="write the report here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="soak-") as scratch:
        soak = Soak(args.turns, args.fault_rate, args.seed, Path(scratch))
        started = time.monotonic()
        server = soak.start_server()
        try:
            asyncio.run(soak.run())
        finally:
            server.terminate()
            server.wait(10)
        report = soak.report()
    report["wall_s"] = round(time.monotonic() - started, 1)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    summary = {k: v for k, v in report.items() if k != "results"}
    print(json.dumps(summary, indent=2))
    problems = verdict(report)
    for problem in problems:
        print("FAIL:", problem)
    print("soak:", "FAILED" if problems else "passed")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
