"""What systemd hears (Type=notify): READY=1 once the devices are open, with or without the
watchdog; STATUS= lines for each step; STOPPING=1 when it stops; SIGTERM a clean exit."""

from __future__ import annotations

import asyncio
import math
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from audio_samples import concat, silence, speech_16k
from clean_env import clean_environment
from notify import messages_until, notify_socket, ready_then_stopped

from assistant.app import RunOptions, run_assistant
from assistant.audio.wav import encode_wav
from assistant.devserver import RunningDevServer
from assistant.events import DeviceRestored, Error, Ready
from assistant.ports import AudioBlock, DeviceError
from assistant.service_status import ServiceStatus, watchdog_timeout
from assistant.settings import AssistantSettings, DifySettings, Secret, Settings
from hardware.wav_devices import WavFileSource

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def notify(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    """A notify socket like systemd's, named in NOTIFY_SOCKET for this process and children."""
    path = tmp_path / "notify"
    with notify_socket(path) as sock:
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        yield sock


def test_events_become_status_lines() -> None:
    sent: list[str] = []
    status = ServiceStatus(sent.append)
    status.say("starting: connecting to the services")
    status(Error(stage="device", code="device_error", message="no default input device"))
    status(Ready(trigger="push_to_talk"))
    status(Error(stage="device", code="device_error", message="microphone stopped"))
    status(DeviceRestored(outage_s=1.5, attempts=3))
    status(Error(stage="startup", service="dify", code="unreachable", message="refused"))
    assert sent == [
        "STATUS=starting: connecting to the services",
        "STATUS=waiting for a microphone and speaker: no default input device",
        "READY=1\nSTATUS=ready: waiting for the talk button",
        "STATUS=reconnecting the microphone and speaker: microphone stopped",
        "STATUS=ready: waiting for the talk button",
        "STATUS=starting: dify not reachable yet (refused)",
    ]


def test_a_long_status_is_cut_to_one_line() -> None:
    sent: list[str] = []
    ServiceStatus(sent.append)(Error(stage="device", code="x", message="a\nb " * 200))
    assert "\n" not in sent[0] and len(sent[0]) < 250


def test_the_systemd_watchdog_is_fed_even_with_our_own_off() -> None:
    assert watchdog_timeout(15.0, {}) == 15.0
    assert watchdog_timeout(0.0, {}) is None
    assert watchdog_timeout(0.0, {"WATCHDOG_USEC": "30000000"}) == math.inf
    assert watchdog_timeout(0.0, {"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}) is None


class LateMicrophone:
    """A microphone that is not there for its first `missing` opens (a USB one plugged in
    late), then plays a WAV file."""

    def __init__(self, wav: Path, missing: int) -> None:
        self._wav = WavFileSource(wav, block_ms=20)
        self._missing = missing

    async def start(self) -> None:
        if self._missing:
            self._missing -= 1
            raise DeviceError("no default input device")
        await self._wav.start()

    async def read(self, timeout: float) -> AudioBlock | None:
        return await self._wav.read(timeout)

    async def close(self) -> None:
        await self._wav.close()


async def test_ready_comes_once_the_devices_open_with_the_watchdog_off(
    server: RunningDevServer, notify: socket.socket, tmp_path: Path
) -> None:
    wav = tmp_path / "mic.wav"
    wav.write_bytes(encode_wav(silence(1500), 16_000))
    settings = Settings(
        assistant=AssistantSettings(watchdog_s=0),
        dify=DifySettings(base_url=server.base_url, api_key=Secret("app-x")),
    )
    options = RunOptions(speaker_wav=tmp_path / "out.wav", source=LateMicrophone(wav, 2))
    run = asyncio.create_task(run_assistant(settings, options))
    try:
        messages = await messages_until(notify, "READY=1", 20)
        await asyncio.wait_for(run, 20)
    finally:
        run.cancel()
    statuses = [m for m in messages if m.startswith("STATUS=")]
    assert statuses[0] == "STATUS=starting: connecting to the services"
    assert "STATUS=opening the microphone and speaker" in statuses
    assert any(m.startswith("STATUS=waiting for a microphone") for m in statuses), messages
    assert messages[-1] == "READY=1\nSTATUS=ready: listening"
    assert not any("WATCHDOG=1" in m for m in messages)  # neither watchdog is on


async def test_sigterm_says_stopping_and_exits_cleanly(
    notify: socket.socket, tmp_path: Path
) -> None:
    wav = tmp_path / "mic.wav"
    long_quiet = concat(silence(300), speech_16k("Tell me a joke."), silence(60_000))
    wav.write_bytes(encode_wav(long_quiet, 16_000))
    env = {
        **clean_environment(),
        "NOTIFY_SOCKET": str(tmp_path / "notify"),
        "WATCHDOG_USEC": "10000000",  # systemd's WatchdogSec=10 ...
        "VOICE_ASSISTANT_ASSISTANT_WATCHDOG_S": "0",  # ... with the assistant's own off
        "VOICE_ASSISTANT_DEVSERVER_PORT": "0",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "assistant", "run", "--dev-server", "--mic-wav", str(wav),
        "--speaker-wav", str(tmp_path / "out.wav"),
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    run = await ready_then_stopped(proc, notify, 60, then="WATCHDOG=1")
    assert run.returncode == 0, run.stderr[-2000:]
    assert any(m.startswith("READY=1\nSTATUS=ready") for m in run.started)
    assert run.started[-1] == "WATCHDOG=1"  # systemd's watchdog is fed
    assert run.stopping[-1].startswith("STOPPING=1")
