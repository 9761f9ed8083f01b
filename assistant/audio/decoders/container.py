"""MP4/M4A and WebM/Matroska: buffered whole and decoded at `close()` with `av.open`.

Their index may sit at the end, so there is no safe incremental path.
"""

from __future__ import annotations

import io

import av
import av.error

from assistant.audio.decoders.base import MAX_BUFFERED_BODY_BYTES, PcmChunk
from assistant.audio.decoders.pyav_frames import _frame_to_int16
from assistant.audio.wav import AudioFormatError


class BufferedContainerDecoder:
    """MP4/M4A or WebM bodies: held until `close()`, then decoded with `av.open`."""

    def __init__(self, format_name: str | None = None) -> None:
        self._format = format_name
        self._body = bytearray()

    def feed(self, data: bytes) -> list[PcmChunk]:
        self._body += data
        if len(self._body) > MAX_BUFFERED_BODY_BYTES:
            raise AudioFormatError(f"audio body larger than {MAX_BUFFERED_BODY_BYTES} bytes")
        return []

    def close(self) -> list[PcmChunk]:
        if not self._body:
            return []
        out: list[PcmChunk] = []
        try:
            with av.open(io.BytesIO(bytes(self._body)), "r", format=self._format) as container:
                if not container.streams.audio:
                    raise AudioFormatError("container has no audio stream")
                stream = container.streams.audio[0]
                for frame in container.decode(stream):
                    samples = _frame_to_int16(frame)
                    if len(samples):
                        out.append(PcmChunk(samples, frame.sample_rate))
        except av.error.FFmpegError as exc:
            raise AudioFormatError(f"undecodable audio container: {exc}") from exc
        if not out:
            raise AudioFormatError("audio container decoded to nothing")
        return out
