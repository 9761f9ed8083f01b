"""`voice-assistant demo`: the whole loop against the bundled dev server.

With a sound card it listens and answers live. Without one (a fresh VM, CI),
it asks a spoken question from a file and writes the answer to a file, so the
same loop still runs end to end and shows what it heard, said and how fast.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import numpy as np

from assistant.app import RunOptions, run_assistant
from assistant.audio.espeak import synthesize
from assistant.audio.resample import resample_once
from assistant.audio.wav import encode_wav
from assistant.ports import CAPTURE_RATE
from assistant.settings import Settings
from hardware.probe import audio_devices_available

log = logging.getLogger(__name__)

DEMO_QUESTION = "What is the weather like on Mars?"


def _question_wav(path: Path) -> None:
    speech = synthesize(DEMO_QUESTION)
    voice = resample_once(speech.samples, speech.sample_rate, CAPTURE_RATE)
    lead = np.zeros(CAPTURE_RATE // 2, dtype=np.int16)
    # Room after the question for the hangover and the whole spoken answer.
    tail = np.zeros(CAPTURE_RATE * 2, dtype=np.int16)
    path.write_bytes(encode_wav(np.concatenate([lead, voice, tail]), CAPTURE_RATE))


def _summarise(events_path: Path, answer_path: Path) -> None:
    events = [json.loads(line) for line in events_path.read_text().splitlines()]
    for event in events:
        if event["kind"] == "transcript":
            print(f"heard:   {event['text']}")
        elif event["kind"] == "answer":
            print(f"answer:  {event['text']}")
        elif event["kind"] == "marks":
            marks = {k: v for k, v in event.items() if k not in ("t", "kind", "turn")}
            times = [
                f"{k} +{v:.0f} ms" for k, v in marks.items() if not k.startswith("speculations_")
            ]
            print("latency: " + ", ".join(times))
            if marks.get("speculations_used") or marks.get("speculations_discarded"):
                used, dropped = (
                    marks.get("speculations_used", 0),
                    marks.get("speculations_discarded", 0),
                )
                print(f"speculative transcripts: {used} used, {dropped} discarded")
        elif event["kind"] == "error":
            print(f"error:   {event.get('stage')}: {event.get('code')}: {event.get('message')}")
    print(f"spoken answer written to {answer_path}")


def run_demo(settings: Settings, out: Path) -> None:
    # The demo needs no account: without a key it answers from the bundled dev server.
    local = not settings.dify.api_key
    if not local:
        log.info("a Dify key is set: the demo talks to %s", settings.dify.base_url)
    if audio_devices_available():
        print("Listening: ask a question (Ctrl-C to stop).")
        asyncio.run(run_assistant(settings, RunOptions(dev_server=local)))
        return
    print("No sound card found: asking a recorded question and writing the answer to a file.")
    out.mkdir(parents=True, exist_ok=True)
    question, answer, events = out / "question.wav", out / "answer.wav", out / "events.jsonl"
    _question_wav(question)
    options = RunOptions(question, answer, events, dev_server=local)
    asyncio.run(run_assistant(settings, options))
    _summarise(events, answer)
