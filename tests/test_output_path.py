"""The way out to the speaker and back: volume, earcons, and the device's own sound kept
out of what it hears (pure logic, on arrays)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from assistant.audio.earcons import LEVEL_DB, SPEECH_LEVEL_DBFS, Earcon, make_earcon
from assistant.audio.self_sound import PlaybackTimeline, SelfSoundGate
from assistant.audio.wav import encode_wav
from assistant.config import ConfigError, load_config
from assistant.ports import CAPTURE_RATE, AudioBlock
from assistant.volume import STATE_FILE, Volume, apply_gain, state_dir


def _rms_dbfs(samples: np.ndarray) -> float:
    x = samples.astype(np.float64)
    return 20 * np.log10(np.sqrt(np.mean(x**2)) / 32767)


# -- volume ---------------------------------------------------------------------------


def _volume(path: Path | None, **kw: float) -> Volume:
    args = {"default_db": 0.0, "step_db": 3.0, "min_db": -9.0, "max_db": 6.0, **kw}
    return Volume(path=path, **args)


def test_volume_steps_within_its_range(tmp_path: Path) -> None:
    volume = _volume(tmp_path / STATE_FILE)
    assert volume.db == 0.0 and volume.gain == 1.0
    assert volume.step(-1) and volume.db == -3.0
    assert volume.gain == pytest.approx(10 ** (-3 / 20))
    assert volume.step(-5) and volume.db == -9.0  # clamped at min_db
    assert not volume.step(-1)  # already there: no change
    assert volume.step(+10) and volume.db == 6.0


def test_volume_is_kept_across_restarts_and_written_only_when_it_changes(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state" / STATE_FILE
    volume = _volume(path)
    assert not path.exists()  # nothing changed yet: nothing written
    volume.step(-2)
    assert json.loads(path.read_text()) == {"db": -6.0}
    written = path.stat().st_mtime_ns
    assert not volume.set_db(-6.0)
    assert path.stat().st_mtime_ns == written
    assert _volume(path).db == -6.0  # a restart reads it back
    assert _volume(path, max_db=-8.0, min_db=-30.0).db == -8.0  # clamped to a new range
    assert sorted(p.name for p in path.parent.iterdir()) == [STATE_FILE]  # no temp left


def test_a_broken_state_file_is_ignored(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / STATE_FILE
    path.write_text("{not json")
    assert _volume(path, default_db=-3.0).db == -3.0
    assert "ignoring the saved volume" in caplog.text


def test_state_dir_prefers_config_then_systemd_then_xdg(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/voice-assistant")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert state_dir("/srv/va") == Path("/srv/va")
    assert state_dir("") == Path("/var/lib/voice-assistant")
    monkeypatch.delenv("STATE_DIRECTORY")
    assert state_dir("") == tmp_path / "voice-assistant"


def test_gain_above_unity_clips_instead_of_wrapping() -> None:
    loud = np.array([30000, -30000, 1000, 0], dtype=np.int16)
    out = apply_gain(loud, 2.0)
    assert out.dtype == np.int16
    assert list(out) == [32767, -32768, 2000, 0]
    assert apply_gain(loud, 1.0) is loud


# -- earcons --------------------------------------------------------------------------


@pytest.mark.parametrize("earcon", list(Earcon))
def test_earcons_are_short_and_level_matched_to_speech(earcon: Earcon) -> None:
    sound = make_earcon(earcon, 48_000)
    assert 0.02 < len(sound) / 48_000 < 0.5
    assert _rms_dbfs(sound) == pytest.approx(SPEECH_LEVEL_DBFS + LEVEL_DB[earcon], abs=0.1)
    assert np.abs(sound.astype(np.int32)).max() < 32767  # no clipping


def test_the_thinking_cue_is_softer_than_the_others() -> None:
    assert all(LEVEL_DB[Earcon.THINKING] < LEVEL_DB[e] for e in Earcon if e is not Earcon.THINKING)


def test_an_earcon_file_is_resampled_and_level_matched(tmp_path: Path) -> None:
    wav = tmp_path / "ding.wav"
    t = np.arange(8000) / 16_000
    wav.write_bytes(encode_wav((np.sin(2 * np.pi * 700 * t) * 3000).astype(np.int16), 16_000))
    sound = make_earcon(Earcon.LISTENING, 48_000, wav)
    assert len(sound) == 24_000
    assert _rms_dbfs(sound) == pytest.approx(SPEECH_LEVEL_DBFS, abs=0.2)


def test_a_missing_or_broken_earcon_file_is_a_config_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.wav"
    with pytest.raises(ConfigError, match=r"earcons\.done_file .*no such file"):
        load_config(None, environ={"VOICE_ASSISTANT_EARCONS_DONE_FILE": str(missing)})
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    with pytest.raises(ConfigError, match=r"earcons\.tick_file .*not a playable WAV"):
        load_config(None, environ={"VOICE_ASSISTANT_EARCONS_TICK_FILE": str(broken)})


def test_the_cli_exits_2_naming_a_missing_earcon_file(tmp_path: Path) -> None:
    config = tmp_path / "assistant.toml"
    config.write_text(f'[earcons]\nlistening_file = "{tmp_path / "gone.wav"}"\n')
    run = subprocess.run(
        [sys.executable, "-m", "assistant", "run", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2
    assert "earcons.listening_file" in run.stderr and "no such file" in run.stderr


# -- the device's own sound -----------------------------------------------------------


def _block(t_start: float, seconds: float, value: int = 1000) -> AudioBlock:
    return AudioBlock(np.full(int(seconds * CAPTURE_RATE), value, np.int16), t_start)


def test_timeline_chains_queued_audio_and_a_flush_cuts_it() -> None:
    timeline = PlaybackTimeline()
    timeline.played(0.5, now=10.0)
    timeline.played(0.5, now=10.1)  # queued behind the first: audible until 11.0
    assert timeline.audible_until == pytest.approx(11.0)
    timeline.flushed(now=10.3)
    assert timeline.audible_until == pytest.approx(10.3)
    timeline.played(0.2, now=12.0)  # a new sound after a silence: a new stretch
    assert timeline.spans(since=0.0) == [(10.0, pytest.approx(10.3)), (12.0, 12.2)]


def test_gate_silences_what_is_heard_while_playing_and_for_the_tail() -> None:
    timeline = PlaybackTimeline()
    gate = SelfSoundGate(timeline, tail_s=0.2, lead_s=0.0)
    timeline.played(0.3, now=100.0)  # audible 100.0 .. 100.3, heard until 100.5
    before = gate(_block(99.5, 0.4))
    assert (before.samples == 1000).all()
    during = gate(_block(99.9, 0.8))  # 99.9 .. 100.7
    times = 99.9 + np.arange(len(during.samples)) / CAPTURE_RATE
    silenced = during.samples == 0
    assert (silenced == ((times >= 100.0) & (times <= 100.5))).all()
    assert during.t_start == 99.9 and len(during.samples) == int(0.8 * CAPTURE_RATE)
    after = gate(_block(100.6, 0.2))
    assert (after.samples == 1000).all()
    assert gate.silenced_s == pytest.approx(0.5, abs=0.001)


async def test_audio_that_waits_for_room_is_timed_from_when_it_was_queued(
    tmp_path: Path,
) -> None:
    from assistant.audio.output_sink import OutputSink
    from hardware.wav_devices import WavFileSink

    inner = WavFileSink(
        tmp_path / "out.wav", sample_rate=16_000, period_ms=20, playback_buffer_s=0.3
    )
    timeline = PlaybackTimeline()
    sink = OutputSink(inner, _volume(None), timeline)
    await sink.start()
    try:
        called = time.monotonic()
        await sink.play(np.full(16_000, 1000, np.int16), timeout=5)  # 1 s into a 0.3 s buffer
        returned = time.monotonic()
        assert returned - called > 0.5  # it did wait for room
        # Audible until 1 s after it was queued, not 1 s after the wait.
        assert timeline.audible_until == pytest.approx(called + 1.0, abs=0.05)
    finally:
        await sink.close()
