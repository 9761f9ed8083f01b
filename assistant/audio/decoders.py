"""Incremental decoders for speech bodies that arrive chunk by chunk.

Every decoder has `feed(data) -> list[PcmChunk]` and `close() -> list[PcmChunk]`
and turns whatever it is given into int16 mono at the body's own rate (no
resampling here). Multi-channel audio is mixed down to mono by averaging, so a
voice panned to one side is not lost. Bad input raises AudioFormatError, never
a library exception.

What decodes how:

* WAV: parsed here (any header split, 8/16/24/32-bit int, 32/64-bit float).
* Raw PCM (OpenAI `pcm`, `audio/L16`): parsed here.
* MP3, AAC (ADTS), FLAC: PyAV codec parser + decoder, fed as bytes arrive. A
  leading ID3v2 tag is skipped first (FFmpeg's decoders choke on it). An MP3
  Xing/Info frame is dropped and the encoder delay it records trimmed, so
  speech starts at the first sample (the end padding is left: it is silence
  after the sentence, not before it). MP3 and
  AAC give audio after the first frame or two; FFmpeg's FLAC parser looks
  ahead about ten frames before it trusts a frame boundary, so FLAC output
  starts later (roughly 30 KB into the body).
* Ogg (Opus or Vorbis): pages are split here and packets go to PyAV's decoders,
  so output follows each completed page. Opus pre-skip and the end trim from
  the last page's granule position are applied.
* MP4/M4A and WebM/Matroska: buffered whole and decoded at `close()` with
  `av.open` (their index may sit at the end, so there is no safe incremental
  path).

Damaged frames are skipped as players do, but MAX_BAD_PACKETS_IN_A_ROW of them,
or a whole body that yields no audio, raise AudioFormatError. A body cut short
plays what arrived: the half frame at its end is not an error.

`make_decoder` picks the decoder from the Content-Type and the first bytes;
`SniffingDecoder` does the same for callers that would rather not gather those
bytes themselves.

Chunks from the WAV and PCM decoders are read-only views of the bytes fed in
(no copy); copy before modifying in place.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import av
import av.error
import numpy as np

from assistant.audio.wav import AudioFormatError, WavHeader, parse_wav_header

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


# ----------------------------------------------------------- PyAV frames


def _frame_to_int16(frame: av.AudioFrame) -> np.ndarray:
    """A decoded PyAV frame → int16 mono (averaging channels)."""
    array = frame.to_ndarray()
    channels = frame.layout.nb_channels
    if not frame.format.is_planar:
        array = array.reshape(-1, channels).T
    array = array[:, : frame.samples]
    dtype = array.dtype
    if dtype.kind == "f":
        return _float_to_int16(array[0] if channels == 1 else array.mean(axis=0, dtype=np.float32))
    mono = array[0] if channels == 1 else array.sum(axis=0, dtype=np.int64) // channels
    if dtype == np.int16:
        return mono.astype(np.int16, copy=False)
    if dtype == np.int32:
        return (mono >> 16).astype(np.int16)
    if dtype == np.uint8:
        return ((mono.astype(np.int16) - 128) * 256).astype(np.int16)
    raise AudioFormatError(f"unsupported decoded sample format {frame.format.name}")


class _BadPacketBudget:
    def __init__(self) -> None:
        self.in_a_row = 0

    def failed(self, exc: Exception) -> None:
        self.in_a_row += 1
        if self.in_a_row >= MAX_BAD_PACKETS_IN_A_ROW:
            raise AudioFormatError(f"undecodable audio: {exc}") from exc

    def ok(self) -> None:
        self.in_a_row = 0


def _decode(
    ctx: av.CodecContext, packet: av.Packet | None, budget: _BadPacketBudget
) -> list[np.ndarray]:
    try:
        frames = ctx.decode(packet)
    except av.error.EOFError:
        return []
    except av.error.FFmpegError as exc:
        budget.failed(exc)
        return []
    budget.ok()
    return [_frame_to_int16(frame) for frame in frames]


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
            rate = self._ctx.sample_rate
            for samples in decoded:
                if self._to_skip:
                    dropped = min(self._to_skip, len(samples))
                    self._to_skip -= dropped
                    samples = samples[dropped:]
                if len(samples):
                    self._produced += len(samples)
                    out.append(PcmChunk(samples, rate))
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


# ------------------------------------------------------------------- Ogg


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
        out: list[PcmChunk] = []
        assert self._ctx is not None
        rate = self._ctx.sample_rate or self._rate
        for samples in decoded:
            if self._to_skip:
                # Opus pre-skip: encoder priming samples that are not part of the signal.
                dropped = min(self._to_skip, len(samples))
                self._to_skip -= dropped
                samples = samples[dropped:]
            if len(samples):
                self._produced += len(samples)
                out.append(PcmChunk(samples, rate))
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


# ----------------------------------------------------- whole-body containers


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


# ------------------------------------------------------------ choosing one


_MIME_KINDS = {
    "audio/mpeg": "mp3",
    "audio/mp3": "mp3",
    "audio/mpeg3": "mp3",
    "audio/x-mpeg": "mp3",
    "audio/x-mp3": "mp3",
    "audio/mpga": "mp3",
    "audio/wav": "wav",
    "audio/x-wav": "wav",
    "audio/wave": "wav",
    "audio/vnd.wave": "wav",
    "audio/flac": "flac",
    "audio/x-flac": "flac",
    "audio/aac": "aac",
    "audio/aacp": "aac",
    "audio/x-aac": "aac",
    "audio/ogg": "ogg",
    "audio/opus": "ogg",
    "audio/vorbis": "ogg",
    "application/ogg": "ogg",
    "audio/mp4": "mp4",
    "audio/m4a": "mp4",
    "audio/x-m4a": "mp4",
    "audio/webm": "webm",
    "video/webm": "webm",
    "audio/x-matroska": "webm",
}
_PCM_MIMES = frozenset({"audio/pcm", "audio/l16", "audio/raw", "audio/x-raw"})
_FORMAT_KINDS = {"mp3": "mp3", "wav": "wav", "flac": "flac", "aac": "aac", "opus": "ogg"}
"""OpenAI `response_format` names (and the obvious others) → decoder kind."""

SNIFF_BYTES = 12
"""Bytes of the body that `make_decoder` needs to recognise every supported format."""


def make_decoder(
    content_type: str | None, first_bytes: bytes = b"", requested_format: str | None = None
) -> StreamDecoder:
    """The decoder for a body, from its Content-Type and its first bytes.

    `first_bytes` is only looked at, not consumed: feed it to the decoder too.
    Precedence, strongest first:

    1. A raw-PCM Content-Type (audio/pcm, audio/L16; `rate=` and `channels=`
       parameters honoured; audio/L16 is big-endian per RFC 2586, the others
       little-endian) — raw samples have no signature to check.
    2. Unambiguous magic bytes (RIFF/RF64, ID3, fLaC, OggS, ftyp, EBML), since
       some servers label every body audio/mpeg whatever it holds.
    3. A known audio Content-Type.
    4. `requested_format` (the OpenAI `response_format` asked for: mp3, opus,
       aac, flac, wav, pcm), for `application/octet-stream` bodies.
    5. Frame sync bytes: ADTS (0xFFF1/0xFFF9) or MPEG audio (0xFFEx).

    Raises AudioFormatError when none of these identifies the body.
    """
    mime, params = _parse_content_type(content_type)
    if mime in _PCM_MIMES or (
        mime in ("", "application/octet-stream") and _is_pcm_hint(requested_format, first_bytes)
    ):
        return PcmStreamDecoder(
            sample_rate=_int_param(params, "rate", 24_000),
            channels=_int_param(params, "channels", 1),
            big_endian=mime == "audio/l16",
        )
    kind = _sniff_container(first_bytes)
    if kind == "id3" and _MIME_KINDS.get(mime) == "aac":
        kind = "aac"
    elif kind == "id3":
        kind = "mp3"
    kind = kind or _MIME_KINDS.get(mime) or _FORMAT_KINDS.get((requested_format or "").lower())
    kind = kind or _sniff_sync(first_bytes)
    if kind is None:
        raise AudioFormatError(
            f"unrecognised audio body (Content-Type {content_type!r}, starts {first_bytes[:8]!r})"
        )
    return _decoder_for(kind)


def _decoder_for(kind: str) -> StreamDecoder:
    if kind == "wav":
        return WavStreamDecoder()
    if kind == "ogg":
        return OggStreamDecoder()
    if kind == "mp4":
        return BufferedContainerDecoder("mp4")
    if kind == "webm":
        return BufferedContainerDecoder("matroska")
    return CompressedStreamDecoder(kind)


def _is_pcm_hint(requested_format: str | None, first_bytes: bytes) -> bool:
    return (requested_format or "").lower() == "pcm" and _sniff_container(first_bytes) is None


def _parse_content_type(content_type: str | None) -> tuple[str, dict[str, str]]:
    if not content_type:
        return "", {}
    mime, *rest = content_type.split(";")
    params: dict[str, str] = {}
    for item in rest:
        key, _, value = item.partition("=")
        params[key.strip().lower()] = value.strip().strip('"')
    return mime.strip().lower(), params


def _int_param(params: dict[str, str], key: str, default: int) -> int:
    value = params.get(key, "")
    return int(value) if value.isdigit() and int(value) > 0 else default


def _sniff_container(head: bytes) -> str | None:
    if head[:4] in (b"RIFF", b"RF64") and head[8:12] == b"WAVE":
        return "wav"
    if head[:3] == b"ID3":
        return "id3"
    if head[:4] == b"fLaC":
        return "flac"
    if head[:4] == b"OggS":
        return "ogg"
    if head[4:8] == b"ftyp":
        return "mp4"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "webm"
    return None


def _sniff_sync(head: bytes) -> str | None:
    if len(head) < 2 or head[0] != 0xFF:
        return None
    if head[1] & 0xF6 == 0xF0:
        return "aac"  # ADTS: 12 sync bits, then layer bits 00
    if head[1] & 0xE0 == 0xE0 and head[1] & 0x06:
        return "mp3"  # MPEG audio: 11 sync bits, layer bits not 00
    return None


class SniffingDecoder:
    """Chooses its decoder with `make_decoder` once SNIFF_BYTES have arrived.

    For callers that get the body in arbitrary pieces and do not want to
    gather the first bytes themselves.
    """

    def __init__(self, content_type: str | None, requested_format: str | None = None) -> None:
        self._content_type = content_type
        self._requested = requested_format
        self._head = b""
        self.decoder: StreamDecoder | None = None

    def feed(self, data: bytes) -> list[PcmChunk]:
        if self.decoder is None:
            self._head += data
            if len(self._head) < SNIFF_BYTES:
                return []
            self.decoder = make_decoder(self._content_type, self._head, self._requested)
            data, self._head = self._head, b""
        return self.decoder.feed(data)

    def close(self) -> list[PcmChunk]:
        if self.decoder is None:
            if not self._head:
                return []
            self.decoder = make_decoder(self._content_type, self._head, self._requested)
            out = self.decoder.feed(self._head)
            return out + self.decoder.close()
        return self.decoder.close()
