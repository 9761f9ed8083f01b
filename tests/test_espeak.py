"""espeak-ng as a process: a crash is run again once; a second crash is a clear error."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from assistant.audio.espeak import EspeakError, synthesize, synthesize_async

REAL = shutil.which("espeak-ng")


def _crashing_espeak(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, crashes: int) -> Path:
    """An espeak-ng first on PATH that dies of SIGSEGV `crashes` times, then is the real one."""
    assert REAL is not None, "espeak-ng is installed by the test set-up"
    calls = tmp_path / "calls"
    fake = tmp_path / "bin" / "espeak-ng"
    fake.parent.mkdir()
    fake.write_text(
        "#!/bin/sh\n"
        f'echo x >> "{calls}"\n'
        f'if [ "$(wc -l < "{calls}")" -le {crashes} ]; then kill -SEGV $$; fi\n'
        f'exec "{REAL}" "$@"\n'
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:{Path(REAL).parent}")
    return calls


def test_a_crash_is_spoken_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _crashing_espeak(tmp_path, monkeypatch, crashes=1)
    speech = synthesize("Hello.")
    assert speech.duration > 0.2
    assert len(calls.read_text().splitlines()) == 2


async def test_a_crash_is_spoken_again_async(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _crashing_espeak(tmp_path, monkeypatch, crashes=1)
    speech = await synthesize_async("Hello.")
    assert speech.duration > 0.2
    assert len(calls.read_text().splitlines()) == 2


async def test_crashing_twice_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _crashing_espeak(tmp_path, monkeypatch, crashes=4)  # twice each
    with pytest.raises(EspeakError, match="espeak-ng failed"):
        await synthesize_async("Hello.")
    with pytest.raises(EspeakError, match="espeak-ng failed"):
        synthesize("Hello.")
    assert len(calls.read_text().splitlines()) == 4
