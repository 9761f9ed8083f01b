"""The PortAudio library under PyAudio: the fixed build, and what a device lost mid-stream does.

Debian's PortAudio can spin forever in its ALSA error paths when a stream's
device goes away (hardware/portaudio/alsa-error-paths.patch); these tests run
the real library in child processes, so a spinning stream thread or a call
that never returns fails one test instead of hanging the whole run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from pulse import MIC_SINK, SPEAKER_SINK, PulseServer

from hardware.portaudio_library import FIXED_BUILD, LIBRARY_ENV

ROOT = Path(__file__).resolve().parent.parent
FLOOD_LINE = "self->capture.ready || self->playback.ready"
"""What Debian's PortAudio prints, thousands of times a second, while it spins."""


def run_python(code: str, env: dict[str, str] | None = None, timeout: float = 60) -> str:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout + done.stderr


MAPPED_PORTAUDIO = """
    import hardware.pyaudio_support as support

    pa = support.new_portaudio()
    maps = open("/proc/self/maps").read()
    paths = sorted({line.split()[-1] for line in maps.splitlines() if "libportaudio" in line})
    print("libportaudio", paths)
    pa.terminate()
"""


def test_pyaudio_runs_on_the_fixed_build() -> None:
    out = run_python(MAPPED_PORTAUDIO)
    assert f"libportaudio ['{FIXED_BUILD.resolve()}']" in out
    assert "system's PortAudio" not in out


def test_the_system_library_when_asked_and_a_warning_with_it() -> None:
    out = run_python(
        "import logging; logging.basicConfig()\n" + textwrap.dedent(MAPPED_PORTAUDIO),
        env={LIBRARY_ENV: "system"},
    )
    assert str(FIXED_BUILD.resolve()) not in out
    assert "libportaudio ['/usr/lib/" in out
    assert "using the system's PortAudio: a device lost mid-stream can hang" in out


def test_a_call_that_never_returns_wedges_portaudio_and_the_process_still_exits() -> None:
    started = time.monotonic()
    out = run_python(
        """
        import asyncio, threading
        from assistant.ports import DeviceWedged
        from hardware.portaudio_calls import run_blocking
        from hardware.pyaudio_support import new_portaudio

        async def main():
            for call in (threading.Event().wait, new_portaudio):
                try:
                    await run_blocking(call, "a stuck call", timeout=0.2)
                except DeviceWedged as exc:
                    print("raised:", exc)

        asyncio.run(main())
        """,
        timeout=30,
    )
    assert "raised: a stuck call did not return within 0.2 s" in out
    # Every later PortAudio call fails at once instead of queueing behind the stuck one.
    assert "raised: initialising PortAudio: PortAudio stopped responding earlier" in out
    assert time.monotonic() - started < 15


UNPLUGGED_MID_STREAM = """
    import sys, threading
    import hardware.pyaudio_support  # loads the fixed PortAudio first
    import pyaudio

    def callback(data, frames, info, status):
        return (data if data else bytes(2 * frames), pyaudio.paContinue)

    for line in sys.stdin:
        if line.strip() == "open":
            pa = pyaudio.PyAudio()
            streams = [
                pa.open(rate=16000, channels=1, format=pyaudio.paInt16, frames_per_buffer=320,
                        stream_callback=callback, **{direction: True})
                for direction in ("input", "output")
            ]
            print("opened", flush=True)
        elif line.strip() == "close":
            active = [s.is_active() for s in streams]
            def close():
                for s in streams:
                    s.close()
                pa.terminate()
            closer = threading.Thread(target=close, daemon=True)
            closer.start()
            closer.join(3.0)
            print("active", active, "closed" if not closer.is_alive() else "HUNG", flush=True)
"""


def test_devices_lost_mid_stream_end_their_streams_and_close(pulse: PulseServer) -> None:
    """Both devices vanish under running streams, at several phases of their periods:
    each time the streams end with an error, close at once, and nothing spins."""
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(UNPLUGGED_MID_STREAM)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdin is not None and child.stdout is not None
    results = []
    try:
        for phase_ms in (0, 3, 7, 11, 13, 17, 19, 23):
            child.stdin.write("open\n")
            child.stdin.flush()
            assert child.stdout.readline().strip() == "opened"
            time.sleep(0.2 + phase_ms / 1000)
            pulse.unload_sink(MIC_SINK)
            pulse.unload_sink(SPEAKER_SINK)
            time.sleep(0.3)
            pulse.load_sink(MIC_SINK)
            pulse.load_sink(SPEAKER_SINK)
            child.stdin.write("close\n")
            child.stdin.flush()
            results.append(child.stdout.readline().strip())
    finally:
        child.stdin.close()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        stderr = child.stderr.read() if child.stderr else ""
    assert results == ["active [False, False] closed"] * 8, results
    assert stderr.count(FLOOD_LINE) == 0
