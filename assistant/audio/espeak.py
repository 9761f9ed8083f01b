"""Local speech from espeak-ng: the dev server's voice, the offline voice, test utterances."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from dataclasses import dataclass

import numpy as np

ESPEAK_RATE = 22_050
"""espeak-ng's native output rate (the RIFF header says so; checked in parse)."""

_HEADER_BYTES = 44


class EspeakError(RuntimeError):
    """espeak-ng is missing or failed."""


@dataclass(frozen=True, slots=True)
class Speech:
    samples: np.ndarray
    """int16 mono."""
    sample_rate: int

    @property
    def duration(self) -> float:
        return len(self.samples) / self.sample_rate


_PASSED_ON = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "ESPEAK_DATA_PATH")
"""What espeak-ng gets of our environment: enough to find itself, its voices and the text's
encoding, and nothing else (no API keys, no credentials directory)."""


def _environment() -> dict[str, str]:
    return {name: os.environ[name] for name in _PASSED_ON if name in os.environ}


def _command(text: str, voice: str, words_per_minute: int, pitch: int = 50) -> list[str]:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise EspeakError("espeak-ng is not installed (apt-get install espeak-ng)")
    # "--" keeps a text that starts with "-" from being read as an option.
    speed, pitched = ["-s", str(words_per_minute)], ["-p", str(pitch)]
    return [exe, "--stdout", "-v", voice, *speed, *pitched, "--", text]


def _parse(stdout: bytes) -> Speech:
    # espeak-ng writes a streaming header whose sizes are 0x7fffffff, so the
    # data length is taken from what arrived, not from the header.
    if len(stdout) < _HEADER_BYTES or stdout[:4] != b"RIFF" or stdout[8:12] != b"WAVE":
        raise EspeakError("espeak-ng produced no WAV output")
    rate = int.from_bytes(stdout[24:28], "little")
    data = stdout[_HEADER_BYTES:]
    data = data[: len(data) - len(data) % 2]
    return Speech(np.frombuffer(data, dtype="<i2").astype(np.int16), rate)


CRASH_RETRIES = 1
"""espeak-ng 1.51 (Debian 12's) now and then dies of a segmentation fault on a text it
speaks fine the next time (seen once in a test run of ~2000 calls): a process killed by a
signal is run again this many times before it counts as a failure."""


def _crashed(returncode: int | None) -> bool:
    return returncode is not None and returncode < 0


def synthesize(
    text: str, voice: str = "en", words_per_minute: int = 175, pitch: int = 50
) -> Speech:
    """Speak `text` into memory (blocking; use `synthesize_async` from the loop).
    `pitch`: espeak-ng's 0-99 (50 is the voice's own)."""
    for attempt in range(CRASH_RETRIES + 1):
        try:
            done = subprocess.run(
                _command(text, voice, words_per_minute, pitch),
                capture_output=True,
                timeout=30,
                check=True,
                env=_environment(),
            )
        except subprocess.CalledProcessError as exc:
            if _crashed(exc.returncode) and attempt < CRASH_RETRIES:
                continue
            raise EspeakError(f"espeak-ng failed: {exc}") from exc
        except subprocess.TimeoutExpired as exc:
            raise EspeakError(f"espeak-ng failed: {exc}") from exc
        return _parse(done.stdout)
    raise AssertionError("unreachable: the last attempt returns or raises")


async def synthesize_async(
    text: str, voice: str = "en", words_per_minute: int = 175, timeout: float = 30.0
) -> Speech:
    """Speak `text` into memory without blocking the event loop."""
    for attempt in range(CRASH_RETRIES + 1):
        proc = await asyncio.create_subprocess_exec(
            *_command(text, voice, words_per_minute),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=_environment(),
        )
        try:
            async with asyncio.timeout(timeout):
                stdout, stderr = await proc.communicate()
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise EspeakError("espeak-ng timed out") from None
        if _crashed(proc.returncode) and attempt < CRASH_RETRIES:
            continue
        if proc.returncode != 0:
            why = stderr.decode(errors="replace").strip() or f"exit status {proc.returncode}"
            raise EspeakError(f"espeak-ng failed: {why}")
        return _parse(stdout)
    raise AssertionError("unreachable: the last attempt returns or raises")
