"""`voice-assistant voices` against the dev server, as a user would run it."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from clean_env import clean_environment

from assistant.devserver import RunningDevServer

ROOT = Path(__file__).resolve().parent.parent


async def _voices(provider: str, env: dict[str, str]) -> tuple[int, str]:
    clean = clean_environment()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "assistant", "voices", "--provider", provider,
        cwd=ROOT, env={**clean, **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode()


async def test_dify_voice_is_the_apps_own(server: RunningDevServer) -> None:
    code, out = await _voices("dify", {"DIFY_BASE_URL": server.base_url, "DIFY_API_KEY": "app-x"})
    assert code == 0, out
    assert "voice:     en" in out
    assert "language:  en-US" in out


async def test_openai_voices_follow_the_model() -> None:
    code, out = await _voices("openai", {"VOICE_ASSISTANT_OPENAI_TTS_MODEL": "tts-1"})
    assert code == 0, out
    names = [line.strip() for line in out.splitlines() if line.startswith("  ")]
    assert names == ["alloy", "ash", "coral", "echo", "fable", "onyx", "nova", "sage", "shimmer"]
    code, out = await _voices("openai", {"VOICE_ASSISTANT_OPENAI_TTS_MODEL": "gpt-4o-mini-tts"})
    assert "marin" in out and "cedar" in out


async def test_convai_voices_come_from_the_service(server: RunningDevServer) -> None:
    root = server.base_url.removesuffix("/v1")
    code, out = await _voices(
        "convai", {"VOICE_ASSISTANT_CONVAI_BASE_URL": root, "CONVAI_API_KEY": "convai-x"}
    )
    assert code == 0, out
    assert "fable_OpenAi_c4d30a32-bcaf-4048-b7b0-0f2bb293205a" in out
    assert server.state.records("convai-voices")


async def test_convai_refusal_is_reported_not_raised(server: RunningDevServer) -> None:
    root = server.base_url.removesuffix("/v1")
    code, out = await _voices("convai", {"VOICE_ASSISTANT_CONVAI_BASE_URL": root})
    assert code == 1
    assert "cannot list convai voices" in out
