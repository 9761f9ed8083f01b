"""API keys never leave the headers: a whole session with failures, searched for the keys."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from audio_samples import concat, silence, speech_16k

from assistant.audio.wav import encode_wav
from assistant.devserver import Fault, RunningDevServer

ROOT = Path(__file__).resolve().parent.parent
DIFY_KEY = "app-SECRET-dify-4f1c9e"
OPENAI_KEY = "sk-SECRET-openai-77ab2d"
CONVAI_KEY = "SECRET-convai-0c3e51"


async def test_no_key_in_output_logs_or_events(server: RunningDevServer, tmp_path: Path) -> None:
    # Faults on every service, so error paths (messages, events, spoken errors) run too.
    for endpoint, status in [
        ("audio-transcriptions", 401),
        ("completion-messages", 500),
        ("audio-speech", 429),
        ("convai-tts", 403),
    ]:
        server.state.faults.add(Fault(endpoint, status=status, count=1))
    mic = tmp_path / "mic.wav"
    question = speech_16k("What is the weather like on Mars?")
    mic.write_bytes(
        encode_wav(concat(silence(300), question, silence(6000), question, silence(500)), 16_000)
    )
    events = tmp_path / "events.jsonl"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VA_", "DIFY_", "OPENAI_"))}
    env.update(
        DIFY_API_KEY=DIFY_KEY,
        DIFY_BASE_URL=server.base_url,
        OPENAI_API_KEY=OPENAI_KEY,
        OPENAI_BASE_URL=server.base_url,
        CONVAI_API_KEY=CONVAI_KEY,
        VA_CONVAI_BASE_URL=server.base_url.removesuffix("/v1"),
        VA_PROVIDERS_STT="openai",
        VA_PROVIDERS_STT_FALLBACK="dify",
        VA_PROVIDERS_TTS="openai",
        VA_PROVIDERS_TTS_FALLBACK="convai,dify",
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "assistant", "--verbose", "run", "--mic-wav", str(mic),
        "--speaker-wav", str(tmp_path / "out.wav"), "--events-jsonl", str(events),
        cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, stderr.decode()[-3000:]

    emitted = stdout.decode() + stderr.decode() + events.read_text()
    assert "error" in events.read_text()  # the faults really were met
    assert "transcript" in events.read_text()  # and a turn really was answered
    for key in (DIFY_KEY, OPENAI_KEY, CONVAI_KEY):
        assert key not in emitted
        assert key.split("-")[-1] not in emitted  # not even a tail of it
    # The keys did reach the services, in their headers.
    assert server.state.records("completion-messages")
