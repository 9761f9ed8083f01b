"""Raw PCM (OpenAI `pcm`, `audio/L16`): parsed here.

Chunks are read-only views of the bytes fed in (no copy); copy before
modifying in place.
"""

from __future__ import annotations

from assistant.audio.decoders.base import PcmChunk, _Interleaved


class PcmStreamDecoder:
    """Headerless 16-bit PCM (OpenAI `pcm`: 24 kHz mono little-endian)."""

    def __init__(
        self, sample_rate: int = 24_000, channels: int = 1, big_endian: bool = False
    ) -> None:
        if sample_rate <= 0 or channels <= 0:
            raise ValueError(f"bad PCM layout: {channels} channels at {sample_rate} Hz")
        self.sample_rate = sample_rate
        self._frames = _Interleaved(channels, 16, is_float=False, big_endian=big_endian)

    def feed(self, data: bytes) -> list[PcmChunk]:
        samples = self._frames.feed(data)
        return [PcmChunk(samples, self.sample_rate)] if len(samples) else []

    def close(self) -> list[PcmChunk]:
        # A trailing partial frame is half a sample: nothing to play.
        return []
