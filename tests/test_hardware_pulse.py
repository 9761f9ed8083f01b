"""Microphone and Speaker through real PyAudio, against PulseAudio null sinks.

Speech from espeak-ng is played into va_mic and must come out of Microphone;
what Speaker plays must be what a recorder of va_speaker hears, when expected.
"""

from __future__ import annotations

import asyncio
import functools
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soxr
from pulse import MIC_SINK, SPEAKER_SINK, PulseServer, SpeakerRecording

from assistant.audio.espeak import synthesize
from assistant.ports import CAPTURE_RATE, AudioBlock, DeviceError
from assistant.settings import AudioSettings
from hardware.microphone import Microphone
from hardware.speaker import Speaker

pytestmark = pytest.mark.pulse

AUDIO = AudioSettings()
"""The configured defaults: the devices are tested as the assistant opens them."""
BLOCK = CAPTURE_RATE * AUDIO.period_ms // 1000
LOUD = 3000
FLUSH_BOUND_S = 0.150
FLUSH_SILENT_S = 0.030
"""Flush to silence at the sink: the stream is aborted, so only the sink's own ~10 ms
block ahead and the recorder's ~10 ms delivery are left, and margin."""
SINK_AHEAD_S = 0.015
"""A null sink renders up to its 10 ms block ahead of the clock: sound "heard" early."""


def new_microphone(*, device: str = "", rate: int = 0) -> Microphone:
    """A Microphone with the configured period, as the assistant builds it."""
    return Microphone(device=device, rate=rate, period_ms=AUDIO.period_ms)


def new_speaker(*, device: str = "", playback_buffer_s: float = AUDIO.playback_buffer_s) -> Speaker:
    """A Speaker with the configured period and device timeout, as the assistant builds it."""
    return Speaker(
        device=device,
        period_ms=AUDIO.period_ms,
        playback_buffer_s=playback_buffer_s,
        device_timeout_s=AUDIO.device_timeout_s,
    )


@functools.cache
def speech() -> tuple[np.ndarray, int]:
    spoken = synthesize("Testing the microphone, one two three.")
    return spoken.samples, spoken.sample_rate


def tone(seconds: float, rate: int) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (0.3 * 32767 * np.sin(2 * np.pi * 440.0 * t)).astype(np.int16)


def best_alignment(reference: np.ndarray, recording: np.ndarray) -> tuple[int, float]:
    """Where `reference` sits in `recording`, and the correlation coefficient there."""
    assert len(recording) > len(reference), "recording shorter than the reference"
    size = 1 << (len(recording) + len(reference)).bit_length()
    spectrum = np.fft.rfft(recording.astype(np.float64), size) * np.conj(
        np.fft.rfft(reference.astype(np.float64), size)
    )
    cross = np.fft.irfft(spectrum, size)[: len(recording) - len(reference) + 1]
    lag = int(np.argmax(cross))
    segment = recording[lag : lag + len(reference)].astype(np.float64)
    return lag, float(np.corrcoef(segment, reference.astype(np.float64))[0, 1])


def rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))


async def recording_started(recording: SpeakerRecording) -> None:
    deadline = time.monotonic() + 3.0
    while recording.frames == 0:
        assert time.monotonic() < deadline, "the speaker recorder delivered nothing"
        await asyncio.sleep(0.01)


@pytest.mark.parametrize(
    ("input_rate", "device_rate"), [(0, 16_000), (48_000, 48_000), (44_100, 44_100)]
)
async def test_microphone_captures_speech(
    pulse: PulseServer, input_rate: int, device_rate: int
) -> None:
    samples, rate = speech()
    reference = soxr.resample(samples, rate, CAPTURE_RATE)
    mic = new_microphone(rate=input_rate)
    await mic.start()
    try:
        assert mic.device_rate == device_rate
        # 300 ms of the silent microphone first, then the speech.
        blocks: list[AudioBlock] = [await mic.read(timeout=1.0) for _ in range(15)]
        started = time.monotonic()
        player = pulse.play_into_mic((samples, rate))
        while time.monotonic() < started + len(samples) / rate + 0.6:
            blocks.append(await mic.read(timeout=1.0))
        assert await asyncio.to_thread(player.wait, 5) == 0
    finally:
        await mic.close()
        await mic.close()

    assert all(len(b.samples) == BLOCK and b.samples.dtype == np.int16 for b in blocks)
    assert mic.dropped_blocks == 0 and mic.overflows == 0
    starts = np.array([b.t_start for b in blocks])
    steps = np.diff(starts)
    assert np.median(steps) == pytest.approx(0.020, abs=0.001)
    assert steps.min() > 0.005 and steps.max() < 0.035, steps

    captured = np.concatenate([b.samples for b in blocks])
    lag, correlation = best_alignment(reference, captured)
    assert correlation > 0.5
    heard = captured[lag : lag + len(reference)]
    assert 0.5 < rms(heard) / rms(reference) < 2.0
    assert lag > 10 * BLOCK
    assert rms(captured[: lag - BLOCK]) < 0.05 * rms(heard)  # silence before it
    # The block timestamps put the speech where it was played: as paplay starts.
    # (A null sink renders up to its 10 ms block ahead, hence the small slack.)
    onset = starts[lag // BLOCK] + (lag % BLOCK) / CAPTURE_RATE
    assert started - 0.015 < onset < started + 0.2


async def test_microphone_device_selection(pulse: PulseServer) -> None:
    mic = new_microphone(device="PULS")
    await mic.start()
    try:
        assert mic.device_name == "pulse"
        assert len((await mic.read(timeout=1.0)).samples) == BLOCK
    finally:
        await mic.close()
    with pytest.raises(DeviceError, match="'pulse'"):  # the message lists what exists
        await new_microphone(device="no such card").start()
    with pytest.raises(DeviceError, match="index 99"):
        await new_speaker(device="99").start()


async def test_speaker_plays_what_it_is_given(pulse: PulseServer, tmp_path: Path) -> None:
    samples, rate = speech()
    speaker = new_speaker()
    await speaker.start()
    try:
        assert speaker.sample_rate == 48_000
        clip = soxr.resample(samples, rate, speaker.sample_rate)
        recording = pulse.start_recording_speaker(tmp_path / "speaker.wav")
        await recording_started(recording)
        played_at = time.monotonic()
        await speaker.play(clip, timeout=1.0)
        assert speaker.is_playing
        await speaker.drain(timeout=len(clip) / speaker.sample_rate + 2.0)
        drained_at = time.monotonic()
        assert not speaker.is_playing
        await asyncio.sleep(0.2)
        recorded = recording.stop()
    finally:
        await speaker.close()
        await speaker.close()

    assert (tmp_path / "speaker.wav").stat().st_size > 44
    lag, correlation = best_alignment(clip, recorded)
    assert correlation > 0.9
    # time_of() may overstate by the recorder's delivery (~10 ms), never understate.
    start_latency = recording.time_of(lag) - played_at
    assert 0.0 < start_latency < FLUSH_BOUND_S
    # drain() returns once the last sample has sounded, not before and not much after.
    end_heard = recording.time_of(lag + len(clip))
    print(
        f"play to first sound {start_latency * 1000:.1f} ms, "
        f"last sound {(end_heard - drained_at) * 1000:+.1f} ms from drain()'s return"
    )
    assert -0.06 < end_heard - drained_at < 0.03
    assert speaker.underruns == 0


async def test_speaker_backpressure_and_flush(pulse: PulseServer) -> None:
    speaker = new_speaker(playback_buffer_s=0.5)
    await speaker.start()
    try:
        rate = speaker.sample_rate
        recording = pulse.start_recording_speaker()
        await recording_started(recording)
        began = time.monotonic()
        await speaker.play(tone(1.2, rate), timeout=1.0)
        waited = time.monotonic() - began
        await asyncio.sleep(0.2)
        flushed_at = time.monotonic()
        speaker.flush()
        await speaker.drain(timeout=0.5)
        await asyncio.sleep(0.3)
        recorded = recording.stop()
    finally:
        await speaker.close()

    # 1.2 s fits a 0.5 s ring only once 0.7 s of it has been played.
    assert 0.65 < waited < 0.85
    loud = np.flatnonzero(np.abs(recorded) > LOUD)
    flush_to_silence = recording.time_of(int(loud[-1])) - flushed_at
    print(f"flush to silence at the sink: {flush_to_silence * 1000:.1f} ms")
    assert -SINK_AHEAD_S < flush_to_silence < FLUSH_SILENT_S
    heard = (loud[-1] - loud[0]) / rate
    assert heard == pytest.approx(flushed_at - began, abs=0.1)
    assert speaker.underruns == 0  # a flush is not an underrun


async def test_vanished_devices_raise_device_error_and_reopen(pulse: PulseServer) -> None:
    mic, speaker = new_microphone(), new_speaker()
    await mic.start()
    await speaker.start()
    try:
        await mic.read(timeout=1.0)
        pulse.unload_sink(MIC_SINK)
        pulse.unload_sink(SPEAKER_SINK)
        try:
            unplugged = time.monotonic()
            with pytest.raises(DeviceError):
                while True:
                    await mic.read(timeout=2.0)
            # Reported by the health check, well before the read timeout.
            assert time.monotonic() - unplugged < 1.0
            with pytest.raises(DeviceError):
                while time.monotonic() - unplugged < 2.0:
                    await speaker.play(np.zeros(960, np.int16), timeout=2.0)
                    await asyncio.sleep(0.02)
        finally:
            pulse.load_sink(MIC_SINK)
            pulse.load_sink(SPEAKER_SINK)
    finally:
        await mic.close()
        await speaker.close()

    mic = new_microphone()
    await mic.start()
    try:
        assert len((await mic.read(timeout=1.0)).samples) == BLOCK
    finally:
        await mic.close()


async def test_microphone_hands_over_in_batches_while_allowed(pulse: PulseServer) -> None:
    mic = new_microphone()
    await mic.start()
    try:
        await mic.read(timeout=1.0)
        mic.set_handover(0.1)
        batched, waited = await read_timed(mic, 25)
        mic.set_handover(0.0)
        await read_timed(mic, 10)  # what the callback had collected
        single, waited_single = await read_timed(mic, 25)
    finally:
        await mic.close()

    # Same 20 ms blocks on one timeline; the loop just wakes 10 times a second.
    for blocks in (batched, single):
        steps = np.diff([b.t_start for b in blocks])
        assert all(len(b.samples) == BLOCK for b in blocks)
        assert steps.min() > 0.005 and steps.max() < 0.035, steps
    assert waited <= 7  # 25 blocks = 0.5 s: about 5 handovers
    assert waited_single >= 20
    assert mic.dropped_blocks == 0 and mic.overflows == 0


async def read_timed(mic: Microphone, blocks: int) -> tuple[list[AudioBlock], int]:
    """`blocks` blocks, and how many of the reads had to wait for the device."""
    got, waited = [], 0
    for _ in range(blocks):
        before = time.monotonic()
        got.append(await mic.read(timeout=1.0))
        waited += time.monotonic() - before > 0.005
    return got, waited


async def test_speaker_closes_when_idle_and_reopens_to_play(
    pulse: PulseServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("hardware.speaker.IDLE_CLOSE_S", 0.3)
    speaker = new_speaker()
    await speaker.start()
    try:
        assert speaker.stream_open
        await asyncio.sleep(0.6)
        assert not speaker.stream_open  # no output callbacks while there is nothing to play
        speaker.prepare()  # speech began: reopen ahead of the answer
        await asyncio.sleep(0.1)
        assert speaker.stream_open
        await asyncio.sleep(0.6)
        assert not speaker.stream_open

        rate = speaker.sample_rate
        recording = pulse.start_recording_speaker()
        await recording_started(recording)
        played_at = time.monotonic()
        clip = tone(0.3, rate)
        await speaker.play(clip, timeout=1.0)  # opens a new stream first
        await speaker.drain(timeout=1.0)
        await asyncio.sleep(0.2)
        recorded = recording.stop()
    finally:
        await speaker.close()
        await speaker.close()

    loud = np.flatnonzero(np.abs(recorded) > LOUD)
    first_sound = recording.time_of(int(loud[0])) - played_at
    print(f"play on a closed speaker to first sound: {first_sound * 1000:.1f} ms")
    assert 0.0 < first_sound < FLUSH_BOUND_S
    assert (loud[-1] - loud[0]) / rate == pytest.approx(0.3, abs=0.03)
    assert speaker.underruns == 0


async def test_a_monitored_speaker_keeps_its_stream_unless_sound_is_cut_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The echo canceller's reference: one stream through a conversation's silences and
    through a flush of a paused answer (a new stream would be timed a few ms differently),
    closed after a long silence; a flush with sound on its way still aborts the stream,
    for silence at once."""
    monkeypatch.setattr("hardware.speaker.IDLE_CLOSE_S", 0.3)
    monkeypatch.setattr("hardware.speaker.MONITORED_IDLE_CLOSE_S", 1.0)
    speaker = new_speaker()
    heard: list[float] = []
    speaker.monitor(lambda samples, rate, audible_at: heard.append(audible_at))
    await speaker.start()
    try:
        rate = speaker.sample_rate
        await asyncio.sleep(0.6)
        assert speaker.stream_open  # idle, but monitored
        await speaker.play(tone(0.3, rate), timeout=1.0)
        await asyncio.sleep(0.1)
        speaker.pause()
        await asyncio.sleep(0.2)  # what was in flight has been heard
        speaker.flush()
        assert speaker.stream_open
        periods = len(heard)
        await asyncio.sleep(0.2)
        assert len(heard) > periods  # the same stream plays on
        await asyncio.sleep(1.2)
        assert not speaker.stream_open  # a long silence: no output callbacks for nothing
        await speaker.play(tone(0.5, rate), timeout=1.0)
        await asyncio.sleep(0.1)
        speaker.flush()  # cuts the tone off
        assert not speaker.stream_open
    finally:
        await speaker.close()
    assert speaker.underruns == 0


async def test_a_failing_callback_is_a_device_error(
    pulse: PulseServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    speaker = new_speaker()
    await speaker.start()
    try:

        def broken_pull(out: np.ndarray) -> int:
            raise ValueError("broken ring")

        assert speaker._queue is not None
        monkeypatch.setattr(speaker._queue, "pull", broken_pull)
        with pytest.raises(DeviceError, match="broken ring"):
            await speaker.play(tone(0.2, speaker.sample_rate), timeout=1.0)
            await speaker.drain(timeout=1.0)
    finally:
        await speaker.close()

    mic = new_microphone()
    await mic.start()
    try:
        await mic.read(timeout=1.0)
        monkeypatch.setattr(mic, "_batch", None)  # the callback's append now fails
        with pytest.raises(DeviceError, match="callback failed"):
            while True:
                await mic.read(timeout=1.0)
    finally:
        await mic.close()


_LOADED_ALSA_PLUGINS = """
import asyncio, re, sys
from assistant.settings import AudioSettings
from hardware.microphone import Microphone
from hardware.speaker import Speaker
import pyaudio

async def main():
    if sys.argv[1] == "bare":
        pyaudio.PyAudio()  # PortAudio's scan alone, nothing released
    else:
        audio = AudioSettings()
        mic = Microphone(period_ms=audio.period_ms)
        speaker = Speaker(
            period_ms=audio.period_ms,
            playback_buffer_s=audio.playback_buffer_s,
            device_timeout_s=audio.device_timeout_s,
        )
        await mic.start()
        await speaker.start()
        block = await mic.read(timeout=1.0)
        assert len(block.samples) == 320
    maps = open("/proc/self/maps").read()
    print(" ".join(sorted(set(re.findall(r"libasound_module_pcm_(\\w+)\\.so", maps)))))
    if sys.argv[1] != "bare":
        await speaker.close()
        await mic.close()

asyncio.run(main())
"""


def loaded_alsa_plugins(mode: str) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-c", _LOADED_ALSA_PLUGINS, mode],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).parent.parent,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return set(done.stdout.split())


def test_plugins_only_the_scan_needed_are_unloaded(pulse: PulseServer) -> None:
    """PortAudio's scan loads every ALSA plugin; the devices keep only the one they use."""
    scanned = loaded_alsa_plugins("bare")
    assert {"pulse", "a52"} <= scanned  # libasound2-plugins, as manage.sh installs it
    assert loaded_alsa_plugins("devices") == {"pulse"}


@pytest.mark.pulse
def test_the_harness_tells_of_a_dead_server_and_starts_it_again_in_place() -> None:
    """What lets one crash of the session's server fail one test, not every later one."""
    server = PulseServer()
    server.start()
    try:
        assert server.exited() is None
        server._daemons[0].kill()
        server._daemons[0].wait(10)
        assert (why := server.exited()) is not None and "pulseaudio exited with -9" in why
        environment = dict(server.env)
        server.restart()
        assert server.exited() is None and server.env == environment
        assert SPEAKER_SINK in server.pactl("list", "short", "sinks")
    finally:
        server.stop()
