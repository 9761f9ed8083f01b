"""Ogg (Opus or Vorbis): pages are split here and packets go to PyAV's decoders.

Output follows each completed page. Opus pre-skip and the end trim from the
last page's granule position are applied.
"""

from __future__ import annotations

import av
import av.error
import numpy as np

from assistant.audio.decoders.base import (
    MAX_PACKET_BYTES,
    PcmChunk,
    _BadPacketBudget,
    _skip_priming,
)
from assistant.audio.decoders.pyav_frames import _decode
from assistant.audio.wav import AudioFormatError

_OGG_CONTINUED = 0x01
_OGG_BOS = 0x02
_OGG_EOS = 0x04
_OGG_HEADER = 27
_OPUS_RATE = 48_000


class OggStreamDecoder:
    """Ogg Opus or Ogg Vorbis: pages are split here, packets decoded by PyAV.

    Only the first logical stream is played; a chained stream (a new BOS page
    after EOS) starts a new one. Page CRCs are not checked: the transport
    already guarantees the bytes, and a damaged page fails in the decoder.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._serial: int | None = None
        self._packet = bytearray()
        self._ctx: av.CodecContext | None = None
        self._codec = ""
        self._headers: list[bytes] = []
        self._pre_skip = 0
        self._to_skip = 0
        self._rate = 0
        self._produced = 0
        self._fed = 0
        self._budget = _BadPacketBudget()
        self._ended = False
        self._granule_base = 0

    def feed(self, data: bytes) -> list[PcmChunk]:
        self._fed += len(data)
        self._buf += data
        out: list[PcmChunk] = []
        while (page := self._next_page()) is not None:
            out += self._page(*page)
        return out

    def close(self) -> list[PcmChunk]:
        out: list[PcmChunk] = []
        if self._ctx is not None:
            try:
                out += self._emit(_decode(self._ctx, None, self._budget))
            except AudioFormatError:
                if not self._produced:
                    raise
        if self._fed and not self._produced:
            raise AudioFormatError(f"no decodable audio in {self._fed} bytes of Ogg")
        return out

    def _next_page(self) -> tuple[int, int, int, bytes, memoryview] | None:
        buf = self._buf
        if len(buf) < _OGG_HEADER:
            if not b"OggS".startswith(bytes(buf[:4])):
                raise AudioFormatError("lost Ogg page sync")
            return None
        if buf[:4] != b"OggS" or buf[4] != 0:
            raise AudioFormatError("lost Ogg page sync")
        segments = buf[26]
        if len(buf) < _OGG_HEADER + segments:
            return None
        lacing = bytes(buf[_OGG_HEADER : _OGG_HEADER + segments])
        end = _OGG_HEADER + segments + sum(lacing)
        if len(buf) < end:
            return None
        flags = buf[5]
        granule = int.from_bytes(buf[6:14], "little", signed=True)
        serial = int.from_bytes(buf[14:18], "little")
        body = memoryview(bytes(buf[_OGG_HEADER + segments : end]))
        del buf[:end]
        return flags, granule, serial, lacing, body

    def _page(
        self, flags: int, granule: int, serial: int, lacing: bytes, body: memoryview
    ) -> list[PcmChunk]:
        if flags & _OGG_BOS and (self._serial is None or self._ended):
            self._start_stream(serial)
        if serial != self._serial:
            return []  # another stream multiplexed into the same file: not ours
        out: list[PcmChunk] = []
        if not flags & _OGG_CONTINUED:
            self._packet.clear()
        pos = 0
        for size in lacing:
            self._packet += body[pos : pos + size]
            pos += size
            if len(self._packet) > MAX_PACKET_BYTES:
                raise AudioFormatError("Ogg packet larger than any real audio packet")
            if size < 255:
                packet = bytes(self._packet)
                self._packet.clear()
                out += self._on_packet(packet)
        if flags & _OGG_EOS:
            self._ended = True
            if granule >= 0 and self._codec:
                out = self._trim_end(out, granule)
        return out

    def _start_stream(self, serial: int) -> None:
        self._serial = serial
        self._ctx = None
        self._codec = ""
        self._headers = []
        self._packet.clear()
        self._ended = False
        self._granule_base = self._produced

    def _on_packet(self, packet: bytes) -> list[PcmChunk]:
        if self._ctx is None:
            return self._on_header(packet)
        if self._codec == "opus" and packet.startswith(b"OpusTags"):
            return []
        try:
            av_packet = av.Packet(packet)
        except (av.error.FFmpegError, ValueError) as exc:
            raise AudioFormatError(f"bad Ogg packet: {exc}") from exc
        return self._emit(_decode(self._ctx, av_packet, self._budget))

    def _on_header(self, packet: bytes) -> list[PcmChunk]:
        if not self._headers:
            if packet.startswith(b"OpusHead") and len(packet) >= 19:
                self._codec = "opus"
                self._pre_skip = int.from_bytes(packet[10:12], "little")
                self._to_skip = self._pre_skip
                self._rate = _OPUS_RATE
                # Hand the decoder a zero pre-skip and trim here: whether FFmpeg
                # trims it itself has varied, and doing it twice eats speech.
                self._open("opus", packet[:10] + b"\x00\x00" + packet[12:])
                return []
            if not packet.startswith(b"\x01vorbis") or len(packet) < 16:
                raise AudioFormatError(f"unsupported codec in Ogg stream: {packet[:8]!r}")
            self._codec = "vorbis"
            self._rate = int.from_bytes(packet[12:16], "little")
        self._headers.append(packet)
        if len(self._headers) == 3:
            # FFmpeg takes Vorbis's three header packets as 16-bit length-prefixed extradata.
            extradata = b"".join(len(h).to_bytes(2, "big") + h for h in self._headers)
            self._open("vorbis", extradata)
        return []

    def _open(self, codec: str, extradata: bytes) -> None:
        try:
            ctx = av.CodecContext.create(codec, "r")
            ctx.extradata = extradata
        except (av.error.FFmpegError, ValueError) as exc:
            raise AudioFormatError(f"cannot open {codec} decoder: {exc}") from exc
        self._ctx = ctx

    def _emit(self, decoded: list[np.ndarray]) -> list[PcmChunk]:
        assert self._ctx is not None
        rate = self._ctx.sample_rate or self._rate
        # Opus pre-skip: encoder priming samples that are not part of the signal.
        out, self._to_skip = _skip_priming(decoded, rate, self._to_skip)
        self._produced += sum(len(chunk.samples) for chunk in out)
        return out

    def _trim_end(self, out: list[PcmChunk], granule: int) -> list[PcmChunk]:
        """Cut the padding of the last packet: the EOS granule says where the signal ends."""
        total = granule - self._pre_skip if self._codec == "opus" else granule
        excess = (self._produced - self._granule_base) - total
        # Padding only ever sits in the final packet; a bigger gap means the
        # muxer wrote a wrong granule (FFmpeg's own Vorbis encoder does), so
        # the granule is not trusted.
        if not out or not 0 < excess <= len(out[-1].samples):
            return out
        last = out.pop()
        self._produced -= excess
        if excess < len(last.samples):
            out.append(PcmChunk(last.samples[: len(last.samples) - excess], last.sample_rate))
        return out
