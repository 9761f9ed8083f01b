"""Earcons through the whole loop, in file mode over real HTTP: the thinking cue comes
only when the answer is late and stops the moment it starts; the done earcon follows a
whole answer."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from pathlib import Path

import numpy as np
import pytest
from audio_samples import speech_16k

from assistant.app import RunOptions, run_assistant
from assistant.audio.earcons import THINKING_PERIOD_S, Earcon, make_earcon
from assistant.devserver import RunningDevServer
from assistant.events import Event, EventBus
from assistant.settings import DifySettings, EarconSettings, Secret, Settings
from bench.soak import ScriptedMic
from hardware.wav_devices import read_wav

QUESTION = "What is the weather like on Mars?"
RATE = Settings().audio.speaker_wav_rate


def _blips(heard: np.ndarray, start_s: float, end_s: float) -> list[float]:
    """Where the thinking blip sounds between `start_s` and `end_s` (seconds into the file)."""
    blip = make_earcon(Earcon.THINKING, RATE).astype(np.float64)
    part = heard[int(start_s * RATE) : int(end_s * RATE)].astype(np.float64)
    if len(part) < len(blip):
        return []
    num = np.correlate(part, blip, mode="valid")
    energy = np.convolve(part**2, np.ones(len(blip)), mode="valid")
    score = np.abs(num) / (np.sqrt(energy * np.dot(blip, blip)) + 1e-9)
    found: list[float] = []
    for i in np.flatnonzero(score > 0.9):
        t = start_s + i / RATE
        if not found or t - found[-1] > 0.5:
            found.append(t)
    return found


async def _one_turn(
    server: RunningDevServer, tmp_path: Path, earcons: EarconSettings
) -> tuple[list[Event], np.ndarray, float]:
    server.state.options = dataclasses.replace(server.state.options, reply_sentences=1)
    settings = Settings(
        dify=DifySettings(base_url=server.base_url, api_key=Secret("app-x")), earcons=earcons
    )
    mic = ScriptedMic(seed=2)
    seen: list[Event] = []
    bus = EventBus()
    bus.add_listener(seen.append)
    events = bus.subscribe(5000)
    out = tmp_path / "out.wav"
    assistant = asyncio.create_task(
        run_assistant(settings, RunOptions(source=mic, speaker_wav=out), bus)
    )
    try:
        async with asyncio.timeout(60):
            while (await events.get()).kind != "ready":
                pass
            mic.say(speech_16k(QUESTION))
            while (event := await events.get()).kind != "marks":
                pass
            await asyncio.sleep(0.8)  # the done earcon, if any, plays now
    finally:
        assistant.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await assistant
    heard, rate = read_wav(out)
    assert rate == RATE
    t0 = next(e.t for e in seen if e.kind == "ready")
    del event
    return seen, heard, t0


async def test_a_late_answer_gets_the_thinking_cue_until_it_starts(
    server: RunningDevServer, tmp_path: Path
) -> None:
    server.state.set_latency(first_token_ms=3000, tokens_per_second=200)
    seen, heard, t0 = await _one_turn(server, tmp_path, EarconSettings())
    speech_end = next(e.data["t_speech_end"] for e in seen if e.kind == "utterance") - t0
    speaking = next(e.t for e in seen if e.kind == "state" and e.data["state"] == "speaking")
    speaking -= t0
    blips = _blips(heard, speech_end, speaking + 2.0)
    assert blips, "no thinking cue while the answer was late"
    assert blips[0] - speech_end == pytest.approx(0.8, abs=0.12)
    gaps = np.diff(blips)
    assert all(g == pytest.approx(THINKING_PERIOD_S, abs=0.1) for g in gaps)
    assert all(b < speaking for b in blips), "the cue went on over the answer"


async def test_a_prompt_answer_gets_no_cue_and_the_done_earcon_follows_it(
    server: RunningDevServer, tmp_path: Path
) -> None:
    server.state.set_latency(first_token_ms=30, tokens_per_second=200)
    seen, heard, t0 = await _one_turn(server, tmp_path, EarconSettings(done=True))
    [marks] = [e for e in seen if e.kind == "marks"]
    assert marks.data["first_audio"] < 800
    speech_end = next(e.data["t_speech_end"] for e in seen if e.kind == "utterance") - t0
    assert _blips(heard, speech_end, len(heard) / RATE) == []
    # The done earcon right after the answer's last sample.
    answer_end = speech_end + marks.data["last_audio"] / 1000
    done = make_earcon(Earcon.DONE, RATE)
    tail = heard[int(answer_end * RATE) : int((answer_end + 0.6) * RATE)]
    assert np.abs(tail.astype(np.int32)).max() == pytest.approx(np.abs(done).max(), rel=0.05)
