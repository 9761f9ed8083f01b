"""WAV file reading and writing for the file devices, without the `wave` module.

`read_wav` decodes the first channel of integer PCM, IEEE float and extensible
WAV files to int16 (Python 3.11's `wave` reads only plain PCM), tolerating
streamed headers. `_PcmWavWriter` writes a mono 16-bit WAV incrementally, can
shift what it already wrote in time, and fixes the header on close; it is the
file behind `WavFileSink`.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

_WAVE_PCM = 1
_WAVE_FLOAT = 3
_WAVE_EXTENSIBLE = 0xFFFE
_HEADER_BYTES = 44


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """The first channel of a WAV file as int16, and its sample rate.

    Accepts integer PCM (8, 16, 24, 32 bit), IEEE float (32, 64 bit) and the
    extensible header; the `wave` module of Python 3.11 knows only the first.
    """
    raw = Path(path).read_bytes()
    if len(raw) < 12 or raw[:4] != b"RIFF" or raw[8:12] != b"WAVE":
        raise ValueError(f"{path}: not a RIFF/WAVE file")
    fmt, data = _chunks(raw, path)
    tag, channels, rate, _, block_align, bits = struct.unpack("<HHIIHH", fmt[:16])
    if tag == _WAVE_EXTENSIBLE and len(fmt) >= 26:
        tag = int.from_bytes(fmt[24:26], "little")  # first bytes of the subformat GUID
    if channels < 1 or block_align < channels or rate <= 0:
        raise ValueError(f"{path}: inconsistent fmt chunk ({channels} ch, {rate} Hz)")
    width = block_align // channels
    frames = len(data) // block_align
    pcm = np.frombuffer(data[: frames * block_align], dtype=np.uint8)
    return _decode(pcm.reshape(frames, channels, width)[:, 0, :], tag, bits, path), rate


def _chunks(raw: bytes, path: str | Path) -> tuple[bytes, bytes]:
    fmt: bytes | None = None
    pos = 12
    while pos + 8 <= len(raw):
        chunk_id = raw[pos : pos + 4]
        size = int.from_bytes(raw[pos + 4 : pos + 8], "little")
        # Slicing clamps streamed headers (size 0x7fffffff) to what the file holds.
        body = raw[pos + 8 : pos + 8 + size]
        if chunk_id == b"fmt ":
            fmt = body
        elif chunk_id == b"data":
            if fmt is None or len(fmt) < 16:
                raise ValueError(f"{path}: data chunk before a valid fmt chunk")
            return fmt, body
        pos += 8 + size + (size & 1)
    raise ValueError(f"{path}: no data chunk")


def _decode(first: np.ndarray, tag: int, bits: int, path: str | Path) -> np.ndarray:
    """Bytes of one channel, shape (frames, width), to int16."""
    flat = np.ascontiguousarray(first).reshape(-1)
    if tag == _WAVE_PCM and bits == 8:
        return ((flat.astype(np.int16) - 128) << 8).astype(np.int16)
    if tag == _WAVE_PCM and bits == 16:
        return flat.view("<i2").astype(np.int16)
    if tag == _WAVE_PCM and bits == 24:
        padded = np.zeros((len(first), 4), dtype=np.uint8)
        padded[:, 1:] = first
        return (padded.reshape(-1).view("<i4") >> 16).astype(np.int16)
    if tag == _WAVE_PCM and bits == 32:
        return (flat.view("<i4") >> 16).astype(np.int16)
    if tag == _WAVE_FLOAT and bits in (32, 64):
        values = flat.view("<f4" if bits == 32 else "<f8")
        return np.clip(np.round(values * 32767.0), -32768, 32767).astype(np.int16)
    raise ValueError(f"{path}: unsupported WAV encoding (format tag {tag}, {bits} bit)")


class _PcmWavWriter:
    """A mono 16-bit WAV written incrementally; the header is fixed on close."""

    def __init__(self, path: Path, rate: int, *, resume: bool = False) -> None:
        self._rate = rate
        if resume:
            # Reopened after close(): keep what was written; the time the sink
            # was closed is filled with silence by the next catch-up.
            self._file = path.open("r+b")
            self.frames = max(0, self._file.seek(0, 2) - _HEADER_BYTES) // 2
        else:
            self._file = path.open("w+b")
            self.frames = 0
        self._write_header()

    def append(self, samples: np.ndarray) -> None:
        self._file.write(samples.astype("<i2", copy=False).tobytes())
        self.frames += len(samples)

    def shift(self, samples: int) -> None:
        """Prepend `samples` of silence (> 0) or cut that many from the front (< 0)."""
        self._file.seek(_HEADER_BYTES)
        data = self._file.read()
        data = bytes(2 * samples) + data if samples > 0 else data[-2 * samples :]
        self._file.seek(_HEADER_BYTES)
        self._file.truncate()
        self._file.write(data)
        self.frames = len(data) // 2

    def close(self) -> None:
        try:
            self._write_header()
        finally:
            self._file.close()

    def _write_header(self) -> None:
        data_bytes = 2 * self.frames
        header = struct.pack(
            "<4sI4s4sIHHIIHH4sI",
            b"RIFF",
            36 + data_bytes,
            b"WAVE",
            b"fmt ",
            16,
            _WAVE_PCM,
            1,
            self._rate,
            2 * self._rate,
            2,
            16,
            b"data",
            data_bytes,
        )
        self._file.seek(0)
        self._file.write(header)
        self._file.seek(0, 2)
