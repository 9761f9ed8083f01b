"""The pause set: the benchmark question with a pause in the middle, and who answers it whole.

    .venv/bin/python -m bench.pause_set [--reps 2] [--configs 0.2:0.3,0.2:0.4,...]

The question "What is the weather like on Mars?" is spoken by espeak-ng as two halves, "What is
the weather like" and "on Mars?", with PAUSES_MS of silence between the end of the first half's
sound and the start of the second's. The dev server learns both halves as phrases of their own
(`POST /_dev/phrases`), so a system that ends the turn in the pause is visibly answering "What
is the weather like" (its recogniser hears the whole across a pause, see
assistant.devserver.recogniser).

A wrong-question answer is a first answer to anything but the whole question:
- this assistant: its transcript (only a turn that is answered publishes one) is not the whole
  question;
- pipecat: the first LLM request of the turn does not ask the whole question (its user
  messages since the last answer, joined: two messages "What is the weather like" and "on
  Mars?" in one request do ask it).

Run as a script, it sweeps pipecat's turn stop (Silero VAD `stop_secs` : speech timeout, and
optionally : `start_secs`, which bounds how soon resumed speech is noticed) over
the pause set, to find its fastest configuration that still answers the whole question; that
is the configuration `bench.latency` compares against (its `--pipecat-*` defaults).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from assistant.audio.wav import encode_wav
from assistant.ports import CAPTURE_RATE
from bench.common import (
    LEAD_MS,
    QUESTION,
    TAIL_MS,
    LatencyProfile,
    devserver_process,
    question_samples,
)
from bench.pipecat_env import (
    PipecatClient,
    PipecatConfig,
    PipecatUnavailable,
    ensure_environment,
    pipecat_client,
)

HALVES = ("What is the weather like", "on Mars?")
"""The question's two halves, both known to the dev server, so a cut question is answered as
the first half alone."""
PAUSES_MS = (200, 300, 450)
"""Silence between the halves: every one of them is shorter than the 500 ms hangover."""
SWEEP_CONFIGS = ((0.2, 0.3), (0.2, 0.4), (0.2, 0.5), (0.2, 0.6), (0.2, 0.7))
"""pipecat (stop_secs, speech timeout) pairs tried by default, fastest first."""


def _voiced(samples: np.ndarray, threshold: int = 200) -> np.ndarray:
    loud = np.flatnonzero(np.abs(samples.astype(np.int32)) > threshold)
    return samples[int(loud[0]) : int(loud[-1]) + 1]


def pause_question_samples(pause_ms: int) -> np.ndarray:
    """The two halves with exactly `pause_ms` between their sounds, between LEAD_MS and TAIL_MS
    of silence (as the plain question)."""
    first, second = (_voiced(question_samples(half)) for half in HALVES)
    return np.concatenate(
        [
            np.zeros(CAPTURE_RATE * LEAD_MS // 1000, np.int16),
            first,
            np.zeros(CAPTURE_RATE * pause_ms // 1000, np.int16),
            second,
            np.zeros(CAPTURE_RATE * TAIL_MS // 1000, np.int16),
        ]
    )


def write_pause_questions(directory: Path) -> dict[int, Path]:
    """A WAV per pause length, in `directory`."""
    paths = {}
    for pause in PAUSES_MS:
        path = directory / f"pause-{pause}.wav"
        path.write_bytes(encode_wav(pause_question_samples(pause), CAPTURE_RATE))
        paths[pause] = path
    return paths


def is_whole(text: str) -> bool:
    """Whether `text` asks the whole question (case, spacing and punctuation aside)."""

    def words(value: str) -> list[str]:
        return re.findall(r"[a-z0-9']+", value.lower())

    return words(text) == words(QUESTION)


def _control_url(base_url: str) -> str:
    return base_url.removesuffix("/").removesuffix("/v1")


async def register_halves(base_url: str) -> None:
    """Teach the dev server both halves (they are fingerprinted right away)."""
    async with httpx.AsyncClient(timeout=60) as http:
        response = await http.post(
            f"{_control_url(base_url)}/_dev/phrases", json={"texts": list(HALVES)}
        )
        response.raise_for_status()


@dataclass(slots=True)
class PauseTally:
    """One system's answers on the pause set."""

    turns: int = 0
    """Pause questions asked."""
    wrong: list[str] = field(default_factory=list)
    """"pause N ms: what was answered instead", one per wrong-question answer."""
    failed: list[str] = field(default_factory=list)
    """Turns with no answer at all (not counted as wrong, reported apart)."""
    speculations: dict[str, int] = field(default_factory=dict)
    """How the turns' speculations ended (this assistant's `speculation` events)."""

    def add(
        self,
        pause_ms: int,
        answered: str | None,
        failure: str | None = None,
        speculations: Sequence[str] = (),
    ) -> None:
        self.turns += 1
        for outcome in speculations:
            self.speculations[outcome] = self.speculations.get(outcome, 0) + 1
        if answered is None:
            self.failed.append(f"pause {pause_ms} ms: {failure or 'no answer'}")
        elif not is_whole(answered):
            self.wrong.append(f"pause {pause_ms} ms: answered {answered!r}")

    def as_json(self) -> dict[str, Any]:
        return {
            "turns": self.turns,
            "wrong": self.wrong,
            "failed": self.failed,
            "speculations": self.speculations,
        }


async def pipecat_pause_turn(
    client: PipecatClient, wav: Path, turn: int
) -> tuple[str | None, str | None]:
    """One pause question through pipecat: (what its first LLM request asked, failure)."""
    doc = await client.turn(turn, wav)
    queries = doc.get("llm_queries") or []
    if not queries:
        return None, str(doc.get("error") or "no LLM request")
    return str(queries[0]), None


# -- the sweep --------------------------------------------------------------------------------


def _configs(value: str) -> list[PipecatConfig]:
    configs = []
    for part in value.split(","):
        stop, timeout, *start = [float(v) for v in part.split(":")]
        configs.append(
            PipecatConfig(
                stop_secs=stop,
                speech_timeout=timeout,
                start_secs=start[0] if start else PipecatConfig().start_secs,
            )
        )
    return configs


async def sweep(args: argparse.Namespace, workdir: Path) -> list[tuple[PipecatConfig, PauseTally]]:
    python = await ensure_environment(install=not args.no_pipecat_install)
    questions = await asyncio.to_thread(write_pause_questions, workdir)
    out = []
    async with devserver_process(LatencyProfile()) as server:
        await register_halves(server.base_url)
        for config in args.configs:
            tally = PauseTally()
            log = workdir / f"c-{config.stop_secs}-{config.speech_timeout}.log"
            first_wav = next(iter(questions.values()))
            async with pipecat_client(python, server.base_url, first_wav, config, log) as client:
                turn = 0
                for _ in range(args.reps):
                    for pause, wav in questions.items():
                        turn += 1
                        try:
                            answered, failure = await pipecat_pause_turn(client, wav, turn)
                        except (PipecatUnavailable, httpx.HTTPError) as exc:
                            answered, failure = None, str(exc)
                        tally.add(pause, answered, failure)
            total = client.vad_stop_ms + client.speech_timeout_ms
            print(
                f"pipecat stop_secs {config.stop_secs:g} + speech timeout "
                f"{config.speech_timeout:g} ({total:.0f} ms of silence; start_secs "
                f"{config.start_secs:g}): {len(tally.wrong)} wrong, "
                f"{len(tally.failed)} failed of {tally.turns}"
                + "".join(f"\n    {line}" for line in tally.wrong + tally.failed),
                flush=True,
            )
            out.append((config, tally))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.pause_set", description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=2, help="turns per pause length")
    parser.add_argument(
        "--configs",
        type=_configs,
        default=[PipecatConfig(stop_secs=a, speech_timeout=b) for a, b in SWEEP_CONFIGS],
        help="pipecat stop_secs:speech_timeout[:start_secs], e.g. 0.2:0.3,0.2:0.5:0.1",
    )
    parser.add_argument("--no-pipecat-install", action="store_true")
    args = parser.parse_args(argv)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-pause-") as workdir:
        try:
            results = asyncio.run(sweep(args, Path(workdir)))
        except PipecatUnavailable as exc:
            print(f"pipecat not available: {exc}", file=sys.stderr)
            return 1
    correct = [config for config, tally in results if not tally.wrong and not tally.failed]
    if correct:
        best = min(correct, key=lambda c: c.stop_secs + c.speech_timeout)
        print(
            f"fastest correct: --pipecat-stop-secs {best.stop_secs:g} "
            f"--pipecat-timeout {best.speech_timeout:g} --pipecat-start-secs {best.start_secs:g}"
        )
    else:
        print("no configuration tried answered every pause question whole")
    print(f"took {time.monotonic() - started:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
