"""Cancel, mute and volume: what the loop does when its controls are used.

The buttons that call these are tested on their own (gpiozero MockFactory); here the
loop runs for real in file mode over real HTTP, with a scripted microphone that speaks
when told to, and a WAV speaker on the monotonic timeline.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import numpy as np
import pytest
from audio_samples import speech_16k
from loop_harness import loud_times, running

from assistant.devserver import RunningDevServer
from assistant.events import Event
from assistant.volume import STATE_FILE, Volume
from hardware.wav_devices import read_wav

QUESTION = "What is the weather like on Mars?"
OTHER = "Tell me a joke."
DEV_SERVER_LATENCY = {"first_token_ms": 30, "tokens_per_second": 200}


async def test_cancel_silences_the_answer_stops_the_task_and_listens_again(
    server: RunningDevServer, tmp_path: Path
) -> None:
    server.state.set_latency(tokens_per_second=5)  # still writing while it speaks
    async with running(server, tmp_path, sentences=4, done=False) as run:
        run.mic.say(speech_16k(QUESTION))
        await run.until("state", state="speaking")
        await asyncio.sleep(0.8)
        cancelled_at, mark = time.monotonic(), len(run.seen)
        run.loop.cancel()
        cancelled = await run.until("cancelled", since=mark)
        await run.until("state", state="listening")
        await asyncio.sleep(1.0)
        # Ready for the next question at once: no carry-over, a fresh turn.
        run.mic.say(speech_16k(OTHER))
        await run.until("marks", turn=2)
        t0 = run.sink.t0
    assert cancelled.data == {"by": "button", "state": "speaking"}
    assert [e.data["text"] for e in run.kinds("transcript")] == [QUESTION, OTHER]
    assert run.kinds("barge_in") == []
    [stop] = server.state.records("completion-messages-stop")
    assert stop.details["stopped"] is True
    loud, _ = loud_times(tmp_path / "out.wav")
    edge = cancelled_at - t0
    before = loud[loud < edge]
    assert len(before) and edge - before[-1] < 0.2, "the answer was playing"
    after = loud[(loud >= edge) & (loud < edge + 0.9)]
    assert len(after) == 0 or after[-1] - edge < 0.045, "silent within a period or two"


async def test_cancel_while_a_question_is_being_captured_drops_it(
    server: RunningDevServer, tmp_path: Path
) -> None:
    async with running(server, tmp_path) as run:
        run.mic.say(speech_16k(QUESTION))
        await run.until("speech_started")
        # Cancelled once the words are out, while the hangover still decides the end.
        await asyncio.sleep(run.mic.said_until - time.monotonic() + 0.1)
        run.loop.cancel()
        await asyncio.sleep(2.0)
        assert run.kinds("utterance") == [] and run.kinds("transcript") == []
        run.mic.say(speech_16k(OTHER))
        await run.until("marks", turn=1)
    assert [e.data["text"] for e in run.kinds("transcript")] == [OTHER]
    used = [e for e in run.kinds("speculation") if e.data["outcome"] == "used"]
    assert all(e.data.get("transcript") != QUESTION for e in used)


async def test_muted_nothing_is_heard_and_unmuted_it_listens_again(
    server: RunningDevServer, tmp_path: Path
) -> None:
    async with running(server, tmp_path) as run:
        mark = len(run.seen)
        run.loop.toggle_mute()
        await run.until("state", state="muted", since=mark)
        run.mic.say(speech_16k(QUESTION))
        await asyncio.sleep(run.mic.said_until - time.monotonic() + 1.5)
        assert run.kinds("speech_started") == []
        assert server.state.records("audio-to-text") == []
        mark = len(run.seen)
        run.loop.toggle_mute()
        await run.until("state", state="listening", since=mark)
        run.mic.say(speech_16k(OTHER))
        await run.until("marks", turn=1)
    assert [e.data["muted"] for e in run.kinds("mute")] == [True, False]
    assert [e.data["text"] for e in run.kinds("transcript")] == [OTHER]


async def test_muted_during_an_answer_it_plays_on_then_stays_muted(
    server: RunningDevServer, tmp_path: Path
) -> None:
    async with running(server, tmp_path) as run:
        run.mic.say(speech_16k(QUESTION))
        await run.until("state", state="speaking")
        mark = len(run.seen)
        run.loop.set_muted(True)
        await run.until("state", state="muted", timeout=40, since=mark)
        marks = run.kinds("marks")
    assert marks and "last_audio" in marks[0].data  # the answer played to its end
    assert run.kinds("cancelled") == [] and run.kinds("barge_in") == []


def _rms_db(samples: np.ndarray) -> float:
    x = samples.astype(np.float64)
    return float(20 * np.log10(np.sqrt(np.mean(x**2)) + 1e-9))


async def test_volume_steps_change_the_answer_level_tick_and_are_kept(
    server: RunningDevServer, tmp_path: Path
) -> None:
    path = tmp_path / "state" / STATE_FILE
    volume = Volume(default_db=0.0, step_db=3.0, min_db=-30.0, max_db=6.0, path=path)
    async with running(server, tmp_path, volume=volume, done=False) as run:
        run.mic.say(speech_16k(QUESTION))
        first = await run.until("marks", turn=1)
        await asyncio.sleep(0.5)
        assert not path.exists()  # no change yet, nothing written (not per turn)
        stepped_at = time.monotonic()
        mark = len(run.seen)
        run.loop.volume_step(-2)
        changed = await run.until("volume", since=mark)
        await asyncio.sleep(1.0)
        run.mic.say(speech_16k(QUESTION))
        second = await run.until("marks", turn=2)
        t0 = run.sink.t0
        mark = len(run.seen)
        run.loop.volume_step(-20)  # down to the end of the range
        at_min = await run.until("volume", since=mark)
    assert changed.data == {"db": -6.0, "changed": True}
    assert at_min.data == {"db": -30.0, "changed": True}
    assert json.loads(path.read_text()) == {"db": -30.0}
    heard, rate = read_wav(tmp_path / "out.wav")

    def answer(marks: Event) -> np.ndarray:
        start = marks.data["first_audio"] / 1000
        end = marks.data["last_audio"] / 1000
        speech_end = marks.t - t0 - end  # marks are in ms after the end of speech
        return heard[int((speech_end + start) * rate) : int((speech_end + end) * rate)]

    # The same answer, 6 dB quieter after two steps down.
    assert _rms_db(answer(second)) - _rms_db(answer(first)) == pytest.approx(-6.0, abs=0.5)
    # A tick was heard right after the step, before the second question.
    tick = heard[int((stepped_at - t0) * rate) : int((stepped_at - t0 + 0.3) * rate)]
    assert np.abs(tick.astype(np.int32)).max() > 300
