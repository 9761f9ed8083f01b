"""What every decoder shares: PcmChunk, the StreamDecoder protocol, limits, sample helpers.

Every decoder has `feed(data) -> list[PcmChunk]` and `close() -> list[PcmChunk]`
and turns whatever it is given into int16 mono at the body's own rate (no
resampling here). Multi-channel audio is mixed down to mono by averaging, so a
voice panned to one side is not lost. Bad input raises AudioFormatError, never
a library exception.

Damaged frames are skipped as players do, but MAX_BAD_PACKETS_IN_A_ROW of them,
or a whole body that yields no audio, raise AudioFormatError. A body cut short
plays what arrived: the half frame at its end is not an error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from assistant.audio.wav import AudioFormatError

MAX_PACKET_BYTES = 1 << 20
"""Largest compressed packet accepted (real ones are a few KB)."""
MAX_BUFFERED_BODY_BYTES = 32 << 20
"""Largest MP4/WebM body held for decoding at close."""
MAX_BAD_PACKETS_IN_A_ROW = 3
"""Damaged frames are skipped like players do, but this many in a row is garbage."""


@dataclass(frozen=True, slots=True)
class PcmChunk:
    samples: np.ndarray
    """int16, one dimension (mono)."""
    sample_rate: int

    @property
    def duration(self) -> float:
        return len(self.samples) / self.sample_rate


class StreamDecoder(Protocol):
    def feed(self, data: bytes) -> list[PcmChunk]:
        """Decode what `data` completes; may return nothing yet."""
        ...

    def close(self) -> list[PcmChunk]:
        """End of body: return what is still held; raises AudioFormatError on a bad body."""
        ...


# ---------------------------------------------------------------- raw samples


class _Interleaved:
    """Whole frames of interleaved little- or big-endian samples → int16 mono."""

    def __init__(self, channels: int, bits: int, is_float: bool, big_endian: bool = False) -> None:
        self.channels = channels
        self.bits = bits
        self.is_float = is_float
        self.frame_bytes = channels * bits // 8
        order = ">" if big_endian else "<"
        # Only float and 16-bit samples are read through their own dtype; 8-, 24-
        # and 32-bit integers are taken apart byte-wise in _convert.
        code = f"{order}{'f' if is_float else 'i'}{bits // 8}" if is_float or bits == 16 else "u1"
        self._dtype = np.dtype(code)
        self._carry = b""

    def feed(self, data: bytes) -> np.ndarray:
        if not isinstance(data, bytes):
            # The samples returned are views of `data`: a caller's reusable buffer
            # must not be able to change them afterwards.
            data = bytes(data)
        if self._carry:
            data = self._carry + data
        usable = len(data) - len(data) % self.frame_bytes
        self._carry = bytes(data[usable:])
        if usable == 0:
            return np.zeros(0, dtype=np.int16)
        return self._convert(memoryview(data)[:usable])

    def _convert(self, raw: memoryview) -> np.ndarray:
        bits = self.bits
        if self.is_float:
            flat = np.frombuffer(raw, dtype=self._dtype)
            return _mix(_float_to_int16(flat), self.channels)
        if bits == 16:
            flat = np.frombuffer(raw, dtype=self._dtype)
            if self._dtype.byteorder == ">":
                flat = flat.astype(np.int16)
            return _mix(flat, self.channels)
        if bits == 8:
            # 8-bit WAV is unsigned with 128 as silence.
            flat = (np.frombuffer(raw, dtype=np.uint8).astype(np.int16) - 128) * 256
            return _mix(flat, self.channels)
        if bits == 24:
            # Keep the two high bytes of each little-endian triple: a 16-bit sample.
            triples = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3)
            flat = np.ascontiguousarray(triples[:, 1:]).view("<i2").reshape(-1)
            return _mix(flat, self.channels)
        # 32-bit integer: the high half of each little-endian word.
        flat = np.frombuffer(raw, dtype="<i2")[1::2]
        return _mix(np.ascontiguousarray(flat), self.channels)


def _float_to_int16(values: np.ndarray) -> np.ndarray:
    scaled = np.multiply(values, 32768.0, dtype=np.float32)
    np.clip(scaled, -32768.0, 32767.0, out=scaled)
    return scaled.astype(np.int16)


def _mix(flat: np.ndarray, channels: int) -> np.ndarray:
    """Interleaved int16 → mono by averaging the channels."""
    if channels == 1:
        return flat
    summed = flat.reshape(-1, channels).sum(axis=1, dtype=np.int32)
    return (summed // channels).astype(np.int16)


# ----------------------------------------------------------- shared by the PyAV decoders


def _skip_priming(decoded: list[np.ndarray], rate: int, to_skip: int) -> tuple[list[PcmChunk], int]:
    """`decoded` as PcmChunks without their first `to_skip` samples (an encoder's priming:
    MP3 encoder delay, Opus pre-skip), and how many are still to skip after them."""
    out: list[PcmChunk] = []
    for samples in decoded:
        if to_skip:
            dropped = min(to_skip, len(samples))
            to_skip -= dropped
            samples = samples[dropped:]
        if len(samples):
            out.append(PcmChunk(samples, rate))
    return out, to_skip


class _BadPacketBudget:
    def __init__(self) -> None:
        self.in_a_row = 0

    def failed(self, exc: Exception) -> None:
        self.in_a_row += 1
        if self.in_a_row >= MAX_BAD_PACKETS_IN_A_ROW:
            raise AudioFormatError(f"undecodable audio: {exc}") from exc

    def ok(self) -> None:
        self.in_a_row = 0
