"""WAV: parsed here (any header split, 8/16/24/32-bit int, 32/64-bit float).

Chunks are read-only views of the bytes fed in (no copy); copy before
modifying in place.
"""

from __future__ import annotations

from assistant.audio.decoders.base import PcmChunk, _Interleaved
from assistant.audio.wav import AudioFormatError, WavHeader, parse_wav_header


class WavStreamDecoder:
    """RIFF/WAVE in any split; samples are released as soon as whole frames arrive."""

    def __init__(self) -> None:
        self._head = bytearray()
        self.header: WavHeader | None = None
        self._frames: _Interleaved | None = None
        self._remaining: int | None = None

    def feed(self, data: bytes) -> list[PcmChunk]:
        if self.header is None:
            self._head += data
            header = parse_wav_header(bytes(self._head))
            if header is None:
                return []
            self.header = header
            self._frames = _Interleaved(header.channels, header.bits, header.is_float)
            self._remaining = header.data_size
            data = bytes(self._head[header.data_offset :])
            self._head.clear()
        assert self._frames is not None and self.header is not None
        if self._remaining is not None:
            # Chunks after `data` (LIST, id3) are metadata, not sound.
            if len(data) > self._remaining:
                data = data[: self._remaining]
            self._remaining -= len(data)
        samples = self._frames.feed(data)
        return [PcmChunk(samples, self.header.sample_rate)] if len(samples) else []

    def close(self) -> list[PcmChunk]:
        if self.header is None and self._head:
            raise AudioFormatError(f"WAV body ended inside its header ({len(self._head)} bytes)")
        return []
