"""MP3, AAC (ADTS), FLAC: PyAV codec parser + decoder, fed as bytes arrive.

A leading ID3v2 tag is skipped first (FFmpeg's decoders choke on it). An MP3
Xing/Info frame is dropped and the encoder delay it records trimmed, so
speech starts at the first sample (the end padding is left: it is silence
after the sentence, not before it). MP3 and
AAC give audio after the first frame or two; FFmpeg's FLAC parser looks
ahead about ten frames before it trusts a frame boundary, so FLAC output
starts later (roughly 30 KB into the body).
"""

from __future__ import annotations

from collections.abc import Sequence

import av
import av.error

from assistant.audio.decoders.base import PcmChunk, _BadPacketBudget, _skip_priming
from assistant.audio.decoders.pyav_frames import _decode
from assistant.audio.wav import AudioFormatError


class _Id3Skipper:
    """Drops ID3v2 tags at the start of a stream (possibly several, possibly split)."""

    def __init__(self) -> None:
        self._head = b""
        self._skip = 0
        self.done = False

    def feed(self, data: bytes) -> bytes:
        while not self.done:
            if self._skip:
                dropped = min(self._skip, len(data))
                self._skip -= dropped
                data = data[dropped:]
                if self._skip:
                    return b""
            data = self._head + data
            self._head = b""
            if len(data) < 10 and b"ID3".startswith(data[:3]):
                self._head = data
                return b""
            if data[:3] != b"ID3":
                self.done = True
                break
            size = 0
            for byte in data[6:10]:
                size = (size << 7) | (byte & 0x7F)
            footer = 10 if data[5] & 0x10 else 0
            self._skip = 10 + size + footer
        return data

    def flush(self) -> bytes:
        head, self._head = self._head, b""
        self.done = True
        return head


class CompressedStreamDecoder:
    """MP3, AAC (ADTS) or FLAC through PyAV's codec parser, decoding as bytes arrive."""

    def __init__(self, codec_name: str) -> None:
        try:
            self._ctx = av.CodecContext.create(codec_name, "r")
        except (av.error.FFmpegError, ValueError) as exc:
            raise AudioFormatError(f"no decoder for {codec_name!r}: {exc}") from exc
        self.codec_name = codec_name
        self._id3 = _Id3Skipper()
        if codec_name not in ("mp3", "aac"):
            self._id3.done = True
        self._budget = _BadPacketBudget()
        self._fed = 0
        self._produced = 0
        self._check_info_frame = codec_name == "mp3"
        self._to_skip = 0

    def feed(self, data: bytes) -> list[PcmChunk]:
        if not self._id3.done:
            data = self._id3.feed(data)
        if not data:
            return []
        self._fed += len(data)
        return self._run(data)

    def close(self) -> list[PcmChunk]:
        out: list[PcmChunk] = []
        tail = self._id3.flush() if not self._id3.done else b""
        if tail:
            self._fed += len(tail)
            out += self._run(tail)
        try:
            # The parser hands back one held packet per flush call.
            while packets := self._ctx.parse(None):
                out += self._chunks(packets, closing=True)
            out += self._chunks([None], closing=True)
        except av.error.FFmpegError as exc:
            if not self._produced:
                raise AudioFormatError(f"undecodable {self.codec_name}: {exc}") from exc
        if self._fed and not self._produced:
            raise AudioFormatError(f"no {self.codec_name} audio in {self._fed} bytes")
        return out

    def _run(self, data: bytes) -> list[PcmChunk]:
        try:
            packets = self._ctx.parse(data)
        except av.error.FFmpegError as exc:
            raise AudioFormatError(f"unparsable {self.codec_name}: {exc}") from exc
        return self._chunks(packets, closing=False)

    def _chunks(self, packets: Sequence[av.Packet | None], closing: bool) -> list[PcmChunk]:
        out: list[PcmChunk] = []
        for packet in packets:
            if self._check_info_frame and packet is not None:
                self._check_info_frame = False
                skip = _mp3_info_frame(bytes(packet))
                if skip is not None:
                    self._to_skip = skip
                    continue
            try:
                decoded = _decode(self._ctx, packet, self._budget)
            except AudioFormatError:
                # A frame cut short by the end of the body is no reason to fail
                # a sentence that has already been heard.
                if closing and self._produced:
                    continue
                raise
            chunks, self._to_skip = _skip_priming(decoded, self._ctx.sample_rate, self._to_skip)
            self._produced += sum(len(chunk.samples) for chunk in chunks)
            out += chunks
        return out


_MP3_DECODER_DELAY = 529
"""Samples FFmpeg's MP3 decoder puts out before the first encoded one (528 + 1)."""
_MP3_SIDE_INFO_BYTES = (9, 17, 32)
"""Side-information sizes (MPEG-2 mono, MPEG-2 stereo / MPEG-1 mono, MPEG-1 stereo)
after which a Xing/Info tag sits in the first frame."""


def _mp3_info_frame(frame: bytes) -> int | None:
    """Samples to trim from the start if `frame` is a Xing/Info frame, else None.

    Encoders put a silent frame first that only carries metadata; with a LAME
    (or FFmpeg "Lavf"/"Lavc") extension it also gives the encoder delay. Dropping
    the frame and trimming the delay takes 50-80 ms of silence off the start of
    every sentence, which is heard as latency.
    """
    for side_info in _MP3_SIDE_INFO_BYTES:
        tag = 4 + side_info
        if frame[tag : tag + 4] in (b"Xing", b"Info"):
            break
    else:
        return None
    flags = int.from_bytes(frame[tag + 4 : tag + 8], "big")
    # Optional fields, by flag bit: frame count, byte count, 100-byte TOC, quality.
    lame = tag + 8 + sum(size for bit, size in ((1, 4), (2, 4), (4, 100), (8, 4)) if flags & bit)
    if frame[lame : lame + 4] not in (b"LAME", b"Lavf", b"Lavc") or len(frame) < lame + 24:
        return 0
    delay = (frame[lame + 21] << 4) | (frame[lame + 22] >> 4)
    return delay + _MP3_DECODER_DELAY
