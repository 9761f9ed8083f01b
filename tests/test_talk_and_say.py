"""The kiosk page's commands on the real loop: the on-screen talk button (talk_start /
talk_stop) and announcements (say), in file mode over real HTTP to the dev server."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from audio_samples import speech_16k
from loop_harness import loud_times, running

from assistant.devserver import RunningDevServer

QUESTION = "What is the weather like on Mars?"
OTHER = "Tell me a joke."
NOTICE = "The kitchen timer has finished."


async def test_holding_the_screen_button_captures_exactly_the_held_question(
    server: RunningDevServer, tmp_path: Path
) -> None:
    async with running(server, tmp_path) as run:
        run.loop.talk_start()
        await run.until("listening_started", by="screen")
        await asyncio.sleep(0.5)  # after the listening beep, as a person speaks
        run.mic.say(speech_16k(QUESTION))
        # Held on past the end of the words: the release, not the VAD, ends it.
        await asyncio.sleep(run.mic.said_until - time.monotonic() + 1.5)
        assert run.kinds("utterance") == [], "the VAD's hangover did not end a held question"
        released = time.monotonic()
        run.loop.talk_stop()
        utterance = await run.until("utterance", turn=1)
        await run.until("marks", turn=1)
    assert [e.data["text"] for e in run.kinds("transcript")] == [QUESTION]
    assert abs(utterance.data["t_speech_end"] - released) < 0.1


async def test_pressing_the_screen_button_during_an_answer_interrupts_it(
    server: RunningDevServer, tmp_path: Path
) -> None:
    server.state.set_latency(tokens_per_second=5)  # still writing while it speaks
    # No listening beep: what is heard after the press must be the answer's tail alone.
    async with running(server, tmp_path, sentences=4, listening=False) as run:
        run.mic.say(speech_16k(QUESTION))
        await run.until("state", state="speaking")
        await asyncio.sleep(0.5)
        pressed = time.monotonic()
        run.loop.talk_start()
        barge_in = await run.until("barge_in")
        await run.until("listening_started", by="screen")
        # The answer's echo tail is silenced after the press, as for the real button.
        await asyncio.sleep(barge_in.t + 0.4 - time.monotonic())
        run.mic.say(speech_16k(OTHER))
        await asyncio.sleep(run.mic.said_until - time.monotonic() + 0.3)
        run.loop.talk_stop()
        await run.until("marks", turn=2)
        t0 = run.sink.t0
    assert barge_in.data == {"by": "screen"}
    assert [e.data["text"] for e in run.kinds("transcript")] == [QUESTION, OTHER]
    [stop] = server.state.records("completion-messages-stop")
    assert stop.details["stopped"] is True
    loud, _ = loud_times(tmp_path / "out.wav")
    edge = pressed - t0
    after = loud[(loud >= edge) & (loud < edge + 0.5)]
    assert len(after) == 0 or after[-1] - edge < 0.1, "silent within a few periods"


async def test_say_while_waiting_speaks_at_once_through_the_tts_chain(
    server: RunningDevServer, tmp_path: Path
) -> None:
    async with running(server, tmp_path) as run:
        mark = len(run.seen)
        asked = time.monotonic()
        run.loop.say(NOTICE)
        announcement = await run.until("announcement", since=mark)
        await run.until("state", state="speaking", since=mark)
        await run.until("state", state="listening", since=mark + 1)
        t0 = run.sink.t0
        # Still ready for questions afterwards (once its echo has died away).
        await asyncio.sleep(0.8)
        run.mic.say(speech_16k(QUESTION))
        await run.until("marks", turn=1)
    assert announcement.data == {"text": NOTICE, "waited_s": announcement.data["waited_s"]}
    assert announcement.data["waited_s"] < 1.0
    said = [r.details.get("text") for r in server.state.records("text-to-audio")]
    assert said[0] == NOTICE
    assert server.state.records("completion-messages")[0].details.get("query") == QUESTION
    loud, _ = loud_times(tmp_path / "out.wav")
    assert len(loud) and loud[0] > asked - t0, "the announcement was heard"


async def test_say_during_an_answer_waits_for_it_and_interrupt_cuts_it_off(
    server: RunningDevServer, tmp_path: Path
) -> None:
    server.state.set_latency(tokens_per_second=8)
    async with running(server, tmp_path, sentences=3) as run:
        run.mic.say(speech_16k(QUESTION))
        await run.until("state", state="speaking")
        run.loop.say(NOTICE)
        queued = await run.until("announcement", timeout=40)
        marks = run.kinds("marks")
        assert marks and "last_audio" in marks[0].data, "the answer played to its end first"
        assert queued.data["waited_s"] > 0.3
        assert run.kinds("cancelled") == []
        await run.until("state", state="listening", since=run.seen.index(queued))

        await asyncio.sleep(0.8)  # its echo dies away
        run.mic.say(speech_16k(OTHER))
        heard = await run.until("transcript", turn=2)
        await run.until("state", state="speaking", since=run.seen.index(heard))
        await asyncio.sleep(0.3)
        mark = len(run.seen)
        run.loop.say("First waiting.")
        run.loop.say(NOTICE, interrupt=True)
        cancelled = await run.until("cancelled", since=mark)
        first = await run.until("announcement", since=run.seen.index(cancelled))
        second = await run.until("announcement", since=run.seen.index(first) + 1)
        await run.until("state", state="listening", since=run.seen.index(second))
    assert cancelled.data == {"by": "say", "state": "speaking"}
    assert [first.data["text"], second.data["text"]] == [NOTICE, "First waiting."]
    assert len(server.state.records("completion-messages-stop")) == 1


async def test_cancel_drops_the_announcements_waiting(
    server: RunningDevServer, tmp_path: Path
) -> None:
    server.state.set_latency(tokens_per_second=5)
    async with running(server, tmp_path, sentences=3) as run:
        run.mic.say(speech_16k(QUESTION))
        await run.until("state", state="speaking")
        run.loop.say(NOTICE)
        run.loop.say("And another thing.")
        run.loop.cancel()
        await run.until("state", state="listening")
        await asyncio.sleep(1.5)
    assert run.kinds("announcement") == []
