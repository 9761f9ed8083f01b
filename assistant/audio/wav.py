"""RIFF/WAVE: writing 16 kHz uploads and reading the headers of streamed speech bodies.

Only what a voice appliance meets is handled: integer PCM of 8/16/24/32 bits,
IEEE float of 32/64 bits, plain or WAVE_FORMAT_EXTENSIBLE, with any chunks
(LIST, fact, ...) before `data`. Streaming writers (espeak-ng, many TTS
servers) put placeholders in the size fields because they do not know the
length yet (0, 0x7FFFFFFF, 0xFFFFFFFF; espeak-ng writes 0x7FFFF000); those
sizes are reported as unknown. RF64 files are accepted the same way (their
32-bit sizes are 0xFFFFFFFF and the real ones sit in a `ds64` chunk we do not
need: the body simply runs to its end).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

MAX_HEADER_BYTES = 1 << 20
"""A header that has not reached its `data` chunk after this many bytes is refused,
so a hostile or broken body cannot make a decoder buffer without bound."""

_FORMAT_PCM = 0x0001
_FORMAT_FLOAT = 0x0003
_FORMAT_EXTENSIBLE = 0xFFFE
_STREAMING_SIZE = 0x7FFF_0000
"""Data sizes from here up are placeholders: 0x7FFFFFFF, 0xFFFFFFFF, and espeak-ng's
0x7FFFF000. No speech body comes near 2 GB."""
_INT_BITS = frozenset({8, 16, 24, 32})
_FLOAT_BITS = frozenset({32, 64})


class AudioFormatError(ValueError):
    """Audio bytes that are not what they claim to be, or that no decoder here supports."""


@dataclass(frozen=True, slots=True)
class WavHeader:
    sample_rate: int
    channels: int
    bits: int
    """Bits per sample of one channel: 8/16/24/32 (integer) or 32/64 (float)."""
    is_float: bool
    data_offset: int
    """Byte offset of the first sample in the body."""
    data_size: int | None
    """Bytes of sample data, or None when the writer did not know (stream to the end)."""

    @property
    def block_align(self) -> int:
        """Bytes per frame (one sample of every channel)."""
        return self.channels * (self.bits // 8)


def encode_wav(samples: np.ndarray, sample_rate: int) -> bytes:
    """A complete mono 16-bit little-endian RIFF/WAVE file holding `samples` (int16)."""
    if samples.dtype != np.int16 or samples.ndim != 1:
        raise TypeError(f"encode_wav wants 1-D int16 samples, got {samples.dtype} {samples.shape}")
    payload = samples.astype("<i2", copy=False).tobytes()
    header = struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        36 + len(payload),
        b"WAVE",
        b"fmt ",
        16,
        _FORMAT_PCM,
        1,
        sample_rate,
        sample_rate * 2,
        2,
        16,
        b"data",
        len(payload),
    )
    return header + payload


def parse_wav_header(data: bytes) -> WavHeader | None:
    """The header at the start of `data`, or None while more bytes are needed.

    Raises AudioFormatError when the bytes are not a RIFF/WAVE file with a
    supported sample format, or when no `data` chunk appears within
    MAX_HEADER_BYTES.
    """
    if len(data) < 12:
        if not (b"RIFF".startswith(data[:4]) or b"RF64".startswith(data[:4])):
            raise AudioFormatError("not a RIFF/WAVE body")
        return None
    if data[:4] not in (b"RIFF", b"RF64") or data[8:12] != b"WAVE":
        raise AudioFormatError("not a RIFF/WAVE body")
    fmt: tuple[int, int, int, bool] | None = None
    pos = 12
    while True:
        if pos + 8 > len(data):
            return _need_more(data)
        chunk_id = data[pos : pos + 4]
        (size,) = struct.unpack_from("<I", data, pos + 4)
        body = pos + 8
        if chunk_id == b"data":
            if fmt is None:
                raise AudioFormatError("WAV `data` chunk before `fmt ` chunk")
            rate, channels, bits, is_float = fmt
            return WavHeader(rate, channels, bits, is_float, body, None if _unknown(size) else size)
        # Chunks are word aligned: an odd size is followed by one pad byte.
        end = body + size + (size & 1)
        if chunk_id == b"fmt ":
            if body + size > len(data):
                return _need_more(data)
            fmt = _parse_fmt(data[body : body + size])
        elif end > MAX_HEADER_BYTES:
            raise AudioFormatError(f"WAV chunk {chunk_id!r} of {size} bytes before `data`")
        pos = end


def _unknown(size: int) -> bool:
    return size == 0 or size >= _STREAMING_SIZE


def _need_more(data: bytes) -> None:
    if len(data) >= MAX_HEADER_BYTES:
        raise AudioFormatError(f"no WAV `data` chunk in the first {MAX_HEADER_BYTES} bytes")
    return None


def _parse_fmt(fmt: bytes) -> tuple[int, int, int, bool]:
    if len(fmt) < 16:
        raise AudioFormatError(f"WAV `fmt ` chunk of {len(fmt)} bytes is too short")
    tag, channels, rate, _byte_rate, block_align, bits = struct.unpack_from("<HHIIHH", fmt)
    if tag == _FORMAT_EXTENSIBLE:
        # cbSize(2) validBits(2) channelMask(4) then the subformat GUID, whose
        # first two bytes are the plain format tag it stands for.
        if len(fmt) < 26:
            raise AudioFormatError("WAVE_FORMAT_EXTENSIBLE `fmt ` chunk is too short")
        (tag,) = struct.unpack_from("<H", fmt, 24)
    if tag == _FORMAT_PCM:
        is_float = False
        if bits not in _INT_BITS:
            raise AudioFormatError(f"unsupported WAV integer sample size: {bits} bits")
    elif tag == _FORMAT_FLOAT:
        is_float = True
        if bits not in _FLOAT_BITS:
            raise AudioFormatError(f"unsupported WAV float sample size: {bits} bits")
    else:
        raise AudioFormatError(f"unsupported WAV format tag 0x{tag:04x} (only PCM and float)")
    if channels < 1 or rate < 1:
        raise AudioFormatError(f"WAV header has {channels} channels at {rate} Hz")
    if block_align != channels * bits // 8:
        raise AudioFormatError(
            f"WAV block align {block_align} does not match {channels} x {bits} bits"
        )
    return rate, channels, bits, is_float
