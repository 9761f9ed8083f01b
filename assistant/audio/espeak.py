"""Local speech from espeak-ng: the dev server's voice, the offline voice, test utterances."""

from __future__ import annotations

import asyncio
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


def _command(text: str, voice: str, words_per_minute: int) -> list[str]:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise EspeakError("espeak-ng is not installed (apt-get install espeak-ng)")
    # "--" keeps a text that starts with "-" from being read as an option.
    return [exe, "--stdout", "-v", voice, "-s", str(words_per_minute), "--", text]


def _parse(stdout: bytes) -> Speech:
    # espeak-ng writes a streaming header whose sizes are 0x7fffffff, so the
    # data length is taken from what arrived, not from the header.
    if len(stdout) < _HEADER_BYTES or stdout[:4] != b"RIFF" or stdout[8:12] != b"WAVE":
        raise EspeakError("espeak-ng produced no WAV output")
    rate = int.from_bytes(stdout[24:28], "little")
    data = stdout[_HEADER_BYTES:]
    data = data[: len(data) - len(data) % 2]
    return Speech(np.frombuffer(data, dtype="<i2").astype(np.int16), rate)


def synthesize(text: str, voice: str = "en", words_per_minute: int = 175) -> Speech:
    """Speak `text` into memory (blocking; use `synthesize_async` from the loop)."""
    try:
        done = subprocess.run(
            _command(text, voice, words_per_minute), capture_output=True, timeout=30, check=True
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        raise EspeakError(f"espeak-ng failed: {exc}") from exc
    return _parse(done.stdout)


async def synthesize_async(
    text: str, voice: str = "en", words_per_minute: int = 175, timeout: float = 30.0
) -> Speech:
    """Speak `text` into memory without blocking the event loop."""
    proc = await asyncio.create_subprocess_exec(
        *_command(text, voice, words_per_minute),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(timeout):
            stdout, stderr = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise EspeakError("espeak-ng timed out") from None
    if proc.returncode != 0:
        raise EspeakError(f"espeak-ng failed: {stderr.decode(errors='replace').strip()}")
    return _parse(stdout)
