"""The watchdog: a hang anywhere on the event loop ends the process for systemd to restart."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from pathlib import Path

from audio_samples import concat, silence, speech_16k
from clean_env import clean_environment

from assistant.audio.wav import encode_wav
from assistant.watchdog import EXIT_HUNG

ROOT = Path(__file__).resolve().parent.parent

# A Turn that blocks the event loop itself: the kind of hang no await timeout can bound.
HANGING_ASSISTANT = """
import sys, time
import assistant.turn

async def hang(self, utterance):
    time.sleep(3600)

assistant.turn.Turn.run = hang
from assistant.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_blocked_loop_exits_with_the_hung_status_and_systemd_heard_it(tmp_path: Path) -> None:
    mic = tmp_path / "mic.wav"
    mic.write_bytes(
        encode_wav(concat(silence(300), speech_16k("Tell me a joke."), silence(3000)), 16_000)
    )
    notify_path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(notify_path)
        notify.settimeout(0.2)
        env = clean_environment()
        env.update(
            VOICE_ASSISTANT_ASSISTANT_WATCHDOG_S="2",
            VOICE_ASSISTANT_DEVSERVER_PORT="0",
            NOTIFY_SOCKET=notify_path,
        )
        started = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-c", HANGING_ASSISTANT, "run", "--dev-server", "--mic-wav", str(mic),
             "--speaker-wav", str(tmp_path / "out.wav")],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        messages: list[str] = []
        while proc.poll() is None and time.monotonic() - started < 60:
            with contextlib.suppress(TimeoutError):
                messages.append(notify.recv(256).decode())
        _, stderr = proc.communicate(timeout=10)
    assert proc.returncode == EXIT_HUNG, stderr.decode()[-2000:]
    assert "watchdog: the event loop has not turned" in stderr.decode()
    assert any(m.startswith("READY=1") for m in messages)
    assert "WATCHDOG=1" in messages
    # The utterance ends ~2.5 s in, then the 2 s watchdog: well under 15 s in all.
    assert time.monotonic() - started < 15
