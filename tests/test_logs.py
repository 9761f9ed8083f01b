"""Logs for journald and for privacy: under systemd each line carries its priority and no
timestamp of its own; what was said and answered is logged only at DEBUG; a turn is one
INFO line of latencies; and a turn writes nothing to disk by default."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import sys
from pathlib import Path

from audio_samples import concat, silence, speech_16k
from clean_env import clean_environment

from assistant.audio.wav import encode_wav
from assistant.logs import JOURNAL_FORMAT, JournalFormatter, under_journal

ROOT = Path(__file__).resolve().parent.parent
QUESTION = "What is the weather like on Mars?"
OWN_TIMESTAMP = re.compile(r"<[0-7]>(\d{4}-\d\d-\d\d|\d\d:\d\d:\d\d)")
"""A line that starts with a date or time of its own, after the priority."""


def _record(level: int, message: str) -> logging.LogRecord:
    return logging.LogRecord("assistant.x", level, __file__, 1, message, None, None)


def test_each_line_carries_its_syslog_priority() -> None:
    formatter = JournalFormatter(JOURNAL_FORMAT)
    assert formatter.format(_record(logging.ERROR, "failed")) == "<3>assistant.x: failed"
    assert formatter.format(_record(logging.WARNING, "hm")) == "<4>assistant.x: hm"
    assert formatter.format(_record(logging.INFO, "ok")) == "<6>assistant.x: ok"
    assert formatter.format(_record(logging.DEBUG, "d")) == "<7>assistant.x: d"
    assert formatter.format(_record(logging.CRITICAL, "a\nb")) == "<2>assistant.x: a\n<2>b"


def test_only_the_stream_systemd_connected_is_the_journal() -> None:
    read, write = os.pipe()
    try:
        st = os.fstat(write)
        with open(write, "w", closefd=False) as stream:
            assert under_journal(stream, {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
            assert not under_journal(stream, {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino + 1}"})
            assert not under_journal(stream, {})
    finally:
        os.close(read)
        os.close(write)


async def _run_under_journal(work: Path, *flags: str) -> list[str]:
    """One question through `run --dev-server`, stderr a pipe named in JOURNAL_STREAM (as
    systemd's journal stream is), in an empty working directory, home and TMPDIR."""
    inputs = work.parent / "inputs"
    inputs.mkdir()
    mic = inputs / "mic.wav"
    mic.write_bytes(encode_wav(concat(silence(300), speech_16k(QUESTION), silence(2500)), 16_000))
    for name in ("home", "tmp"):
        (work / name).mkdir(parents=True)
    read, write = os.pipe()
    st = os.fstat(write)
    env = {
        **clean_environment(),
        "JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}",
        "HOME": str(work / "home"),
        "TMPDIR": str(work / "tmp"),
        "VOICE_ASSISTANT_DEVSERVER_PORT": "0",
        "VOICE_ASSISTANT_DEVSERVER_HOST": "127.0.0.1",
    }
    env.pop("XDG_STATE_HOME", None)
    env.pop("XDG_CACHE_HOME", None)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "assistant", "run", *flags, "--dev-server", "--mic-wav", str(mic),
        "--speaker-wav", str(inputs / "out.wav"),
        cwd=work, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=write,
    )  # fmt: skip
    os.close(write)
    output = await asyncio.to_thread(_read_all, read)
    assert await asyncio.wait_for(proc.wait(), 60) == 0, output[-3000:]
    return output.splitlines()


def _read_all(fd: int) -> str:
    with open(fd, encoding="utf-8", errors="replace") as stream:
        return stream.read()


async def test_a_turn_under_the_journal(tmp_path: Path) -> None:
    """With -v, so that the words are logged at all: every line holding them is DEBUG."""
    work = tmp_path / "work"
    lines = await _run_under_journal(work, "-v")
    assert all(re.match(r"<[0-7]>", line) for line in lines), lines
    assert not any(OWN_TIMESTAMP.match(line) for line in lines), lines
    assert not any(" INFO " in line[:30] or " DEBUG " in line[:30] for line in lines)
    said = [line for line in lines if "Mars" in line or "You asked" in line]
    assert any("transcript (turn 1): " + QUESTION in line for line in said), lines
    assert any("answer (turn 1): You asked" in line for line in said), lines
    assert all(line.startswith("<7>") for line in said), said  # DEBUG only
    # `run --dev-server` answered from the bundled dev server, and said so.
    assert any(line.startswith("<4>") and "bundled dev server" in line for line in lines)
    turns = [line for line in lines if line.startswith("<6>assistant.turn: turn 1:")]
    assert len(turns) == 1, lines  # the turn's one INFO line: its latencies
    assert "first_audio=+" in turns[0]
    # Nothing written per turn: the working directory, home and TMPDIR stay empty.
    written = [p for p in work.rglob("*") if p.is_file()]
    assert written == [], written
