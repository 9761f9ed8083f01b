"""The device parts that need no sound card: WAV-file source and sink (real-time
pacing, one shared timeline), the microphone's rate conversion, the talk button."""

from __future__ import annotations

import asyncio
import struct
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soxr
from gpiozero.pins.mock import MockFactory

from assistant.ports import CAPTURE_RATE, DeviceError
from assistant.settings import ButtonSettings
from hardware.buttons import ButtonEvent, TalkButton
from hardware.capture_rate import ToCaptureRate
from hardware.wav_devices import WavFileSink, WavFileSource, read_wav

SINK_RATE = 24_000
PERIOD_MS = 20
PERIOD = SINK_RATE * PERIOD_MS // 1000
LOUD = 3000
"""|sample| above this is the test tone, below it silence."""
WAKE_SLACK_S = 0.1
"""How late an asyncio timer may fire on a loaded 2-core CI machine ("not early" is strict)."""
BOUNCE_MS = ButtonSettings().bounce_ms
"""The talk button's configured default debounce."""


def tone(seconds: float, rate: int, freq: float = 440.0, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (amplitude * 32767 * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def wav_bytes(frames: np.ndarray, rate: int, tag: int = 1) -> bytes:
    """A WAV file of `frames` (shape (n,) or (n, channels)) in their own dtype."""
    frames = frames.reshape(len(frames), -1)
    channels, width = frames.shape[1], frames.dtype.itemsize
    data = frames.astype(frames.dtype.newbyteorder("<")).tobytes()
    fmt = struct.pack(
        "<HHIIHH", tag, channels, rate, rate * channels * width, channels * width, 8 * width
    )
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def write(path: Path, frames: np.ndarray, rate: int, tag: int = 1) -> Path:
    path.write_bytes(wav_bytes(frames, rate, tag))
    return path


def loud_span(samples: np.ndarray) -> tuple[int, int]:
    """First and last index of the tone in a recording."""
    loud = np.flatnonzero(np.abs(samples) > LOUD)
    assert len(loud), "no tone in the output"
    return int(loud[0]), int(loud[-1])


def find_clip(out: np.ndarray, clip: np.ndarray) -> int:
    """Where `clip` (which starts with a 0 sample) sits, intact, in silence-padded output."""
    first = int(np.flatnonzero(out)[0]) - 1
    assert np.array_equal(out[first : first + len(clip)], clip), "clip altered in the output"
    assert not out[first + len(clip) :].any(), "sound after the clip"
    return first


# --- WavFileSource -----------------------------------------------------------------


async def test_source_releases_blocks_in_real_time(tmp_path: Path) -> None:
    clip = tone(1.0, CAPTURE_RATE)
    source = WavFileSource(write(tmp_path / "a.wav", clip, CAPTURE_RATE))
    await source.start()
    blocks, released = [], []
    while (block := await source.read(timeout=1.0)) is not None:
        released.append(time.monotonic())
        blocks.append(block)
    elapsed = time.monotonic() - source.t0

    assert 1.0 <= elapsed < 1.0 + WAKE_SLACK_S
    assert len(blocks) == 50
    assert all(len(b.samples) == 320 and b.samples.dtype == np.int16 for b in blocks)
    assert [b.t_start for b in blocks] == pytest.approx(
        [source.t0 + 0.02 * k for k in range(50)], abs=1e-9
    )
    # A block is out once its last sample has happened, never before.
    for block, at in zip(blocks, released, strict=True):
        assert block.t_start + 0.02 - 1e-3 <= at < block.t_start + 0.02 + WAKE_SLACK_S
    assert np.array_equal(np.concatenate([b.samples for b in blocks]), clip)
    assert await source.read(timeout=1.0) is None
    await source.close()


async def test_source_hands_over_in_batches_while_allowed(tmp_path: Path) -> None:
    source = WavFileSource(write(tmp_path / "a.wav", tone(1.0, CAPTURE_RATE), CAPTURE_RATE))
    await source.start()
    source.set_handover(0.1)
    batched = [await source.read(timeout=1.0) for _ in range(20)]
    wakes_batched = await _wakes_during(source, 10)
    source.set_handover(0.0)
    wakes_each = await _wakes_during(source, 10)

    # The same blocks, with the same times: only when read() wakes changes.
    assert [b.t_start for b in batched if b is not None] == pytest.approx(
        [source.t0 + 0.02 * k for k in range(20)], abs=1e-9
    )
    assert wakes_batched <= 3  # 10 blocks in 100 ms batches: 2 wakes (3 if misaligned)
    assert wakes_each >= 9
    await source.close()
    await source.start()  # a reopened source hands every block over again
    assert await _wakes_during(source, 5) >= 4


async def _wakes_during(source: WavFileSource, blocks: int) -> int:
    """Read `blocks` blocks; how many of the reads had to wait."""
    waits = 0
    for _ in range(blocks):
        before = time.monotonic()
        block = await source.read(timeout=1.0)
        assert block is not None
        assert time.monotonic() >= block.t_start + 0.02 - 1e-3  # never before it is due
        waits += time.monotonic() - before > 0.005
    return waits


async def test_source_takes_first_channel_of_stereo_44k(tmp_path: Path) -> None:
    left, right = tone(0.5, 44_100, 440.0), tone(0.5, 44_100, 3000.0)
    path = write(tmp_path / "stereo.wav", np.stack([left, right], axis=1), 44_100)
    source = WavFileSource(path, realtime=False)
    await source.start()
    blocks = []
    while (block := await source.read(timeout=1.0)) is not None:
        blocks.append(block)
    got = np.concatenate([b.samples for b in blocks])

    expected = soxr.resample(left, 44_100, CAPTURE_RATE)
    assert len(got) == -(-len(expected) // 320) * 320  # the tail block is padded
    assert np.corrcoef(got[: len(expected)], expected)[0, 1] > 0.99
    assert source.duration == pytest.approx(0.5, abs=1e-3)


async def test_source_timeout_and_close(tmp_path: Path) -> None:
    source = WavFileSource(write(tmp_path / "a.wav", tone(0.2, 16_000), 16_000), block_ms=100)
    await source.start()
    with pytest.raises(TimeoutError):
        await source.read(timeout=0.01)
    block = await source.read(timeout=1.0)
    assert block is not None and len(block.samples) == 1600
    await source.close()
    assert await source.read(timeout=1.0) is None
    await source.close()


async def test_source_resumes_after_close(tmp_path: Path) -> None:
    source = WavFileSource(write(tmp_path / "a.wav", tone(0.2, 16_000), 16_000), realtime=False)
    await source.start()
    first = await source.read(timeout=1.0)
    await source.close()
    await source.start()  # a loop reopening its devices
    second = await source.read(timeout=1.0)
    assert first is not None and second is not None
    assert second.t_start == pytest.approx(first.t_start + 0.02)


async def test_source_unreadable_file_is_a_device_error(tmp_path: Path) -> None:
    (tmp_path / "bad.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    with pytest.raises(DeviceError, match=r"bad\.wav"):
        await WavFileSource(tmp_path / "bad.wav").start()
    with pytest.raises(DeviceError, match=r"missing\.wav"):
        await WavFileSource(tmp_path / "missing.wav").start()


@pytest.mark.parametrize(
    ("frames", "tag"),
    [
        (np.array([0, 128, 255, 64], dtype=np.uint8), 1),
        (np.array([0, 1 << 30, -(1 << 31), 1 << 20], dtype=np.int32), 1),
        (np.array([0.0, 0.5, -1.0, 1.5], dtype=np.float32), 3),
        (np.array([0.0, 0.5, -1.0, 1.5], dtype=np.float64), 3),
    ],
    ids=["u8", "s32", "f32", "f64"],
)
def test_read_wav_other_encodings(tmp_path: Path, frames: np.ndarray, tag: int) -> None:
    expected = {
        "uint8": [-32768, 0, 32512, -16384],
        "int32": [0, 16384, -32768, 16],
        "float32": [0, 16384, -32767, 32767],
        "float64": [0, 16384, -32767, 32767],
    }[frames.dtype.name]
    samples, rate = read_wav(write(tmp_path / "x.wav", frames, 8000, tag))
    assert rate == 8000
    assert samples.dtype == np.int16
    assert samples.tolist() == pytest.approx(expected, abs=1)


def test_read_wav_24_bit_and_streamed_header(tmp_path: Path) -> None:
    values = np.array([0, 0x123456, -0x400000], dtype=np.int32)
    packed = np.frombuffer(values.astype("<i4").tobytes(), np.uint8).reshape(-1, 4)[:, :3]
    raw = bytearray(wav_bytes(packed.reshape(-1).copy(), 8000))
    # Fix the fmt chunk for 3-byte samples, then claim "endless" sizes as espeak-ng does.
    struct.pack_into("<IHH", raw, 28, 8000 * 3, 3, 24)
    struct.pack_into("<I", raw, 4, 0x7FFFFFFF)
    struct.pack_into("<I", raw, 40, 0x7FFFFFFF)
    (tmp_path / "x.wav").write_bytes(bytes(raw))
    samples, _ = read_wav(tmp_path / "x.wav")
    assert samples.tolist() == [0, 0x1234, -0x4000]


# --- WavFileSink -------------------------------------------------------------------


async def assert_plays_on_time(sink: WavFileSink, path: Path, t0: float) -> None:
    """A tone played now lands on the timeline from t0 where it was played: never
    before, at most one period (plus a timer's lateness) after. Closes the sink."""
    played_at = time.monotonic()
    clip = tone(0.1, SINK_RATE)
    await sink.play(clip, timeout=1.0)
    await sink.drain(timeout=1.0)
    await sink.close()
    out, _ = read_wav(path)
    at = (played_at - t0) * SINK_RATE
    assert at <= find_clip(out, clip) <= at + PERIOD + WAKE_SLACK_S * SINK_RATE


async def test_sink_puts_a_burst_where_it_was_played_on_the_timeline(tmp_path: Path) -> None:
    t0 = time.monotonic()
    sink = WavFileSink(tmp_path / "out.wav", SINK_RATE, PERIOD_MS, t0=t0)
    await sink.start()
    await asyncio.sleep(t0 + 0.5 - time.monotonic())
    played_at = time.monotonic()
    clip = tone(0.2, SINK_RATE)
    await sink.play(clip, timeout=1.0)
    await sink.drain(timeout=1.0)
    assert not sink.is_playing
    await sink.close()
    closed_at = time.monotonic()
    out, rate = read_wav(tmp_path / "out.wav")

    assert rate == SINK_RATE
    start = find_clip(out, clip)
    at = (played_at - t0) * SINK_RATE
    # Never before it was played; at most one period (plus a timer's lateness) after.
    assert at <= start <= at + PERIOD + WAKE_SLACK_S * SINK_RATE
    # The file is exactly as long as the timeline ran, one period ahead.
    assert abs(len(out) - ((closed_at - t0) * SINK_RATE + PERIOD)) <= PERIOD
    assert sink.underruns == 0


async def test_sink_idles_without_waking_and_keeps_the_timeline(tmp_path: Path) -> None:
    t0 = time.monotonic()
    sink = WavFileSink(tmp_path / "out.wav", SINK_RATE, PERIOD_MS, t0=t0)
    await sink.start()
    await asyncio.sleep(0.3)
    # Nothing queued: the ticker sleeps instead of writing silence every period.
    assert sink.samples_written <= 2 * PERIOD
    await assert_plays_on_time(sink, tmp_path / "out.wav", t0)


async def test_sink_shares_the_source_timeline(tmp_path: Path) -> None:
    source = WavFileSource(write(tmp_path / "in.wav", np.zeros(16_000, np.int16), 16_000))
    await source.start()
    sink = WavFileSink(tmp_path / "out.wav", SINK_RATE, PERIOD_MS)
    sink.set_t0(source.t0)
    await sink.start()
    # An "assistant" that answers the moment it hears the block starting at 0.3 s.
    while (block := await source.read(timeout=1.0)) is not None:
        if block.t_start >= source.t0 + 0.3:
            break
    clip = tone(0.1, SINK_RATE)
    await sink.play(clip, timeout=1.0)
    await sink.drain(timeout=1.0)
    await sink.close()
    out, _ = read_wav(tmp_path / "out.wav")
    start = find_clip(out, clip)
    # Block 0.30-0.32 s is released at 0.32 s: the answer cannot sound earlier.
    assert 0.32 * SINK_RATE <= start <= (0.32 + WAKE_SLACK_S) * SINK_RATE + PERIOD


async def test_set_t0_after_start_shifts_what_was_written(tmp_path: Path) -> None:
    now = time.monotonic()
    sink = WavFileSink(tmp_path / "early.wav", SINK_RATE, PERIOD_MS, t0=now)
    await sink.start()
    clip = tone(0.1, SINK_RATE)
    await sink.play(clip, timeout=1.0)
    await asyncio.sleep(0.05)
    sink.set_t0(now - 0.25)  # the source started 250 ms before this sink
    await sink.drain(timeout=1.0)
    await sink.close()
    out, _ = read_wav(tmp_path / "early.wav")
    start = find_clip(out, clip)
    assert 0.25 * SINK_RATE <= start <= (0.25 + WAKE_SLACK_S) * SINK_RATE + PERIOD

    sink = WavFileSink(tmp_path / "late.wav", SINK_RATE, PERIOD_MS, t0=now)
    await sink.start()
    await asyncio.sleep(0.1)
    sink.set_t0(time.monotonic() + 0.05)  # cuts all 100 ms so far; origin in the future
    assert sink.samples_written == 0
    await asyncio.sleep(0.2)
    await sink.close()
    out, _ = read_wav(tmp_path / "late.wav")
    assert abs(len(out) - (0.15 * SINK_RATE + PERIOD)) <= PERIOD + WAKE_SLACK_S * SINK_RATE


async def test_sink_timeline_survives_a_stalled_loop(tmp_path: Path) -> None:
    t0 = time.monotonic()
    sink = WavFileSink(tmp_path / "out.wav", SINK_RATE, PERIOD_MS, t0=t0)
    await sink.start()
    await asyncio.sleep(0.1)
    time.sleep(0.25)  # noqa: ASYNC251 - the point: the ticker wakes 250 ms late
    await assert_plays_on_time(sink, tmp_path / "out.wav", t0)


async def test_sink_reopened_appends_on_the_same_timeline(tmp_path: Path) -> None:
    t0 = time.monotonic()
    sink = WavFileSink(tmp_path / "out.wav", SINK_RATE, PERIOD_MS, t0=t0)
    await sink.start()
    await asyncio.sleep(0.1)
    await sink.close()
    await asyncio.sleep(0.1)
    await sink.start()
    await assert_plays_on_time(sink, tmp_path / "out.wav", t0)


async def test_sink_backpressure(tmp_path: Path) -> None:
    sink = WavFileSink(tmp_path / "out.wav", SINK_RATE, PERIOD_MS, playback_buffer_s=0.1)
    await sink.start()
    began = time.monotonic()
    clip = tone(0.5, SINK_RATE)
    await sink.play(clip, timeout=1.0)
    waited = time.monotonic() - began
    # 0.5 s cannot fit a 0.1 s ring until 0.4 s of it has been played.
    assert 0.4 - 2 * PERIOD_MS / 1000 <= waited < 0.4 + WAKE_SLACK_S + PERIOD_MS / 1000
    await sink.drain(timeout=1.0)
    await sink.close()
    out, _ = read_wav(tmp_path / "out.wav")
    find_clip(out, clip)  # waiting for room lost or repeated nothing


async def test_sink_play_times_out_when_the_device_stalls(tmp_path: Path) -> None:
    frozen = time.monotonic()
    sink = WavFileSink(
        tmp_path / "out.wav", SINK_RATE, PERIOD_MS, playback_buffer_s=0.1, clock=lambda: frozen
    )
    await sink.start()
    with pytest.raises(TimeoutError):
        await sink.play(tone(0.5, SINK_RATE), timeout=0.1)
    with pytest.raises(TimeoutError):
        await sink.drain(timeout=0.1)
    await sink.close()


async def test_sink_flush_silences_within_a_period_and_drops_waiting_audio(
    tmp_path: Path,
) -> None:
    t0 = time.monotonic()
    sink = WavFileSink(tmp_path / "out.wav", SINK_RATE, PERIOD_MS, t0=t0, playback_buffer_s=0.2)
    await sink.start()
    writer = asyncio.create_task(sink.play(tone(1.0, SINK_RATE), timeout=1.0))
    await asyncio.sleep(0.3)
    assert not writer.done()  # still waiting for room for the rest of the second
    flushed_at = time.monotonic()
    sink.flush()
    await asyncio.wait_for(writer, 0.05)  # returns at once, queuing nothing more
    await sink.drain(timeout=0.2)
    await asyncio.sleep(0.2)
    await sink.close()
    out, _ = read_wav(tmp_path / "out.wav")
    _, end = loud_span(out)
    at = (flushed_at - t0) * SINK_RATE
    # The period already handed over at the flush plays out; nothing after it.
    assert at - 0.005 * SINK_RATE <= end <= at + PERIOD
    assert sink.underruns == 0


async def test_sink_counts_an_underrun_only_when_audio_runs_out_unexplained(
    tmp_path: Path,
) -> None:
    sink = WavFileSink(tmp_path / "out.wav", SINK_RATE, PERIOD_MS)
    await sink.start()
    await sink.play(tone(0.1, SINK_RATE), timeout=1.0)
    await sink.drain(timeout=1.0)
    assert sink.underruns == 0
    await sink.play(tone(0.1, SINK_RATE), timeout=1.0)
    await asyncio.sleep(0.2)  # the writer "fell behind": nothing more came
    assert sink.underruns == 1
    await sink.close()
    await sink.close()
    with pytest.raises(DeviceError):
        await sink.play(tone(0.1, SINK_RATE), timeout=1.0)


# --- Microphone rate conversion -----------------------------------------------------


def test_capture_conversion_keeps_blocks_regular_and_times_exact() -> None:
    rate, frames = 48_000, 960
    left = np.zeros(rate, np.int16)
    click = 30_000  # input sample of a click, at t0 + 0.625 s
    left[click] = 30_000
    right = tone(1.0, rate)  # must not leak into the result
    interleaved = np.stack([left, right], axis=1).reshape(-1)
    converter = ToCaptureRate(rate, channels=2, block=320)
    t0 = 1000.0
    blocks = []
    for k in range(rate // frames):
        chunk = interleaved[2 * k * frames : 2 * (k + 1) * frames]
        blocks += converter.push(chunk.tobytes(), t0 + k * frames / rate)

    assert all(len(b.samples) == 320 for b in blocks)
    starts = np.array([b.t_start for b in blocks])
    assert np.allclose(np.diff(starts), 0.02, atol=1e-6)
    assert starts[0] == pytest.approx(t0, abs=1e-6)
    out = np.concatenate([b.samples for b in blocks])
    peak = int(np.argmax(np.abs(out)))
    assert np.abs(np.delete(out, range(peak - 40, peak + 40))).max() < 50  # right channel gone
    heard_at = starts[peak // 320] + (peak % 320) / CAPTURE_RATE
    assert heard_at == pytest.approx(t0 + click / rate, abs=0.5e-3)

    # Late (GIL-delayed) timestamps do not jitter the timeline; lost audio restarts it.
    jittery = converter.push(interleaved[:1920].tobytes(), t0 + 1.0 + 0.004)
    assert jittery[0].t_start == pytest.approx(blocks[-1].t_start + 0.02, abs=0.5e-3)
    converter.reset()
    resumed = converter.push(interleaved[:1920].tobytes(), t0 + 5.0)
    resumed += converter.push(interleaved[1920:3840].tobytes(), t0 + 5.02)
    assert resumed[0].t_start == pytest.approx(t0 + 5.0, abs=1e-6)


def test_capture_timeline_counts_samples_through_late_timestamps() -> None:
    """The echo canceller looks the speaker's reference up by these times: a minute of
    callbacks late by GIL waits (up to 15 ms), the first one 4 ms late, must give a
    timeline that never steps (it moves 0.1 ms per second at most) and ends on the truth."""
    rng = np.random.default_rng(7)
    converter = ToCaptureRate(CAPTURE_RATE, channels=1, block=320)
    chunk = np.zeros(320, np.int16).tobytes()
    t0, starts = 2000.0, []
    for k in range(3000):
        late = 0.004 if k == 0 else rng.exponential(0.002) + (0.015 if k % 97 == 0 else 0.0)
        starts += [b.t_start for b in converter.push(chunk, t0 + k * 0.02 + late)]
    steps = np.diff(starts) - 0.02
    assert np.abs(steps).max() < 3e-6  # 0.1 ms/s over a 20 ms block, and rounding
    assert starts[-1] == pytest.approx(t0 + 2999 * 0.02, abs=0.5e-3)


# --- TalkButton --------------------------------------------------------------------


async def test_button_edges_arrive_in_the_loop_with_ordered_times(
    mock_pins: MockFactory,
) -> None:
    button = TalkButton(
        asyncio.get_running_loop(), pin=17, bounce_ms=BOUNCE_MS, pin_factory=mock_pins
    )
    pin = mock_pins.pin(17)
    assert not button.is_pressed
    with pytest.raises(TimeoutError):
        await button.next_event(timeout=0.05)

    before = time.monotonic()
    pin.drive_low()  # wired to ground: pressed
    pressed = await button.next_event(timeout=1.0)
    assert button.is_pressed
    await asyncio.sleep(0.05)
    pin.drive_high()
    released = await button.next_event(timeout=1.0)
    after = time.monotonic()

    assert (pressed.kind, released.kind) == ("pressed", "released")
    assert before <= pressed.t < released.t <= after
    assert released.t - pressed.t >= 0.05
    assert not button.is_pressed

    pin.drive_low()
    pin.drive_high()
    await asyncio.sleep(0)  # let the loop run the handed-over callbacks
    assert [e.kind for e in button.pending_events()] == ["pressed", "released"]
    assert button.pending_events() == []
    button.close()
    button.close()


async def test_button_edges_from_another_thread(mock_pins: MockFactory) -> None:
    button = TalkButton(
        asyncio.get_running_loop(), pin=27, bounce_ms=BOUNCE_MS, pin_factory=mock_pins
    )
    pin = mock_pins.pin(27)

    def press_and_release() -> None:
        pin.drive_low()
        time.sleep(0.03)
        pin.drive_high()

    worker = threading.Thread(target=press_and_release)
    worker.start()
    events = [await button.next_event(timeout=1.0) for _ in range(2)]
    worker.join()
    assert [e.kind for e in events] == ["pressed", "released"]
    assert events[0].t < events[1].t
    assert all(isinstance(e, ButtonEvent) for e in events)
    button.close()


async def test_button_pin_factory_by_name() -> None:
    loop = asyncio.get_running_loop()
    button = TalkButton(loop, pin=22, bounce_ms=BOUNCE_MS, pin_factory="mock")
    assert not button.is_pressed
    button.close()
    with pytest.raises(DeviceError, match="pin_factory"):
        TalkButton(loop, pin=17, bounce_ms=BOUNCE_MS, pin_factory="nonsense")
