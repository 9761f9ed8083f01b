"""Without a key the assistant says so and stops; the bundled dev server answers only when
asked (`demo`, `devserver`, `run --dev-server`), and its unauthenticated `/_dev/` levers
exist only for a test bench or on request."""

from __future__ import annotations

import asyncio
import socket
import sys
from pathlib import Path

import httpx
import pytest
from audio_samples import concat, silence, speech_16k
from clean_env import clean_environment

from assistant.app import RunOptions, run_assistant
from assistant.audio.wav import encode_wav
from assistant.config import ConfigError
from assistant.devserver import start_devserver
from assistant.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
QUESTION = "What is the weather like on Mars?"


async def _cli(
    *args: str, env: dict[str, str], cwd: Path = ROOT, timeout: float = 90
) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "assistant", *args,
        cwd=cwd, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout)
    return proc.returncode or 0, stdout.decode(), stderr.decode()


def _question(path: Path) -> Path:
    path.write_bytes(encode_wav(concat(silence(300), speech_16k(QUESTION), silence(1500)), 16_000))
    return path


def _port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


async def test_run_without_a_key_stops_and_says_how_to_give_one(tmp_path: Path) -> None:
    env = {**clean_environment(), "VOICE_ASSISTANT_DEVSERVER_PORT": "8751"}
    code, stdout, stderr = await _cli(
        "run", "--mic-wav", str(_question(tmp_path / "q.wav")), env=env, cwd=tmp_path
    )
    assert code == 2, stderr
    message = stderr.strip().splitlines()[-1]
    assert message.startswith("config error: dify.api_key: no Dify API key")
    for way in ("DIFY_API_KEY", "api_key_file", "credential dify-api-key", "voice-assistant demo"):
        assert way in message
    assert "You asked" not in stdout + stderr  # nothing answered it
    assert not _port_in_use(8751)


async def test_the_wiring_refuses_to_run_without_a_key_too() -> None:
    with pytest.raises(ConfigError, match="no Dify API key"):
        await run_assistant(Settings(), RunOptions())


async def test_demo_needs_no_account(tmp_path: Path) -> None:
    # No sound server reachable: the demo's file mode (a VM, CI).
    env = {
        **clean_environment("PULSE_"),
        "PULSE_SERVER": f"unix:{tmp_path}/no-such-socket",
        "VOICE_ASSISTANT_DEVSERVER_PORT": "0",
        "VOICE_ASSISTANT_DEVSERVER_HOST": "127.0.0.1",
    }
    code, stdout, stderr = await _cli("demo", "--out", str(tmp_path / "out"), env=env, cwd=tmp_path)
    assert code == 0, stderr[-3000:]
    assert f"heard:   {QUESTION}" in stdout
    assert "answer:  You asked:" in stdout
    assert (tmp_path / "out" / "answer.wav").stat().st_size > 10_000


async def test_the_dev_servers_levers_are_off_unless_asked_for() -> None:
    for control, status in ((False, 404), (True, 200)):
        server = await start_devserver(control=control)
        try:
            async with httpx.AsyncClient() as client:
                response = await client.get(f"http://{server.host}:{server.port}/_dev/log")
            assert response.status_code == status, control
        finally:
            await server.stop()
