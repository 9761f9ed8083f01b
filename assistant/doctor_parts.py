"""`voice-assistant doctor`'s checks of the optional parts: the echo canceller and the event
server, each reporting "off" when the settings leave it off."""

from __future__ import annotations

import asyncio
import errno
import socket

import numpy as np

from assistant.doctor import Examination, Result, Verdict
from assistant.ports import CAPTURE_RATE, AudioBlock
from assistant.settings import EchoMode

SELF_TEST_S = 3.0
"""Seconds of synthetic echo the canceller is given to show it works."""
SELF_TEST_DELAY_S = 0.04
SELF_TEST_ERLE_DB = 20.0
"""Below this on a clean synthetic room, the canceller is not doing its job."""


class EchoCancellerCheck:
    """The canceller is installed and cancels a synthetic room's echo."""

    name = "echo"
    needs: tuple[str, ...] = ()
    timeout_s = 20.0

    async def run(self, exam: Examination) -> list[Result]:
        from assistant.audio.echo_canceller import available

        mode = exam.settings.echo.enabled
        if mode is EchoMode.OFF:
            return [Result(self.name, Verdict.SKIPPED, "off (echo.enabled = off): half-duplex")]
        if not available():
            verdict = Verdict.FAIL if mode is EchoMode.ON else Verdict.SKIPPED
            return [Result(self.name, verdict, "pywebrtc-audio is not installed: half-duplex")]
        erle = await asyncio.to_thread(_self_test_erle)
        if erle < SELF_TEST_ERLE_DB:
            return [Result(self.name, Verdict.FAIL, f"removed only {erle:.0f} dB of echo")]
        return [Result(self.name, Verdict.PASS, f"WebRTC AEC3: removed {erle:.0f} dB of echo")]


def _self_test_erle() -> float:
    """Echo power in over out, after a second, for shaped noise through a 40 ms room."""
    from assistant.audio.echo_canceller import EchoCanceller
    from assistant.audio.far_end import FarEnd

    rng = np.random.default_rng(7)
    n = int(SELF_TEST_S * CAPTURE_RATE)
    # Speech-like: noise with a syllable rhythm, so AEC3 sees on and off talk.
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * np.arange(n) / CAPTURE_RATE)
    far = (rng.normal(0, 3000, n) * envelope).astype(np.int16)
    delay = int(SELF_TEST_DELAY_S * CAPTURE_RATE)
    echo = np.concatenate([np.zeros(delay, np.int16), far[: n - delay]])
    far_end = FarEnd()
    canceller = EchoCanceller(far_end)
    block = CAPTURE_RATE // 50
    kept = []
    for i in range(0, n - block + 1, block):
        far_end.played(far[i : i + block], CAPTURE_RATE, i / CAPTURE_RATE)
        kept.append(canceller(AudioBlock(echo[i : i + block], i / CAPTURE_RATE)).samples)
    out = np.concatenate(kept).astype(np.float64)[CAPTURE_RATE:]
    into = echo[CAPTURE_RATE : CAPTURE_RATE + len(out)].astype(np.float64)
    return float(10 * np.log10((np.mean(into**2) + 1.0) / (np.mean(out**2) + 1.0)))


class EventServerCheck:
    """The event stream's port is free for it (or a running assistant already serves it)."""

    name = "events"
    needs: tuple[str, ...] = ()
    timeout_s = 10.0

    async def run(self, exam: Examination) -> list[Result]:
        events = exam.settings.events
        if not events.enabled:
            return [Result(self.name, Verdict.SKIPPED, "off (events.enabled = false)")]
        where = f"{events.host}:{events.port}"
        access = "token required" if events.token else "this device only, no token"
        try:
            with socket.create_server((events.host, events.port)):
                pass
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                return [Result(self.name, Verdict.FAIL, f"cannot listen on {where}: {exc}")]
            if await _serves_kiosk(events.host, events.port, events.token.reveal()):
                return [Result(self.name, Verdict.PASS, f"a running assistant serves {where}")]
            return [Result(self.name, Verdict.FAIL, f"{where} is taken by another program")]
        return [Result(self.name, Verdict.PASS, f"{where} free to listen on ({access})")]


async def _serves_kiosk(host: str, port: int, token: str) -> bool:
    """Whether what listens on the port answers as this assistant's kiosk page does."""
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    request = f"GET / HTTP/1.1\r\nHost: {host}\r\n{auth}Connection: close\r\n\r\n"
    try:
        async with asyncio.timeout(3.0):
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(request.encode())
            await writer.drain()
            page = await reader.read(65536)
            writer.close()
    except (OSError, TimeoutError):
        return False
    return b"<title>Voice assistant</title>" in page
