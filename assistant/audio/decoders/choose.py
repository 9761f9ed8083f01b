"""Choosing a decoder for a body from its Content-Type and its first bytes.

`make_decoder` picks the decoder from the Content-Type and the first bytes;
`SniffingDecoder` does the same for callers that would rather not gather those
bytes themselves.
"""

from __future__ import annotations

from assistant.audio.decoders.base import PcmChunk, StreamDecoder
from assistant.audio.decoders.pcm import PcmStreamDecoder
from assistant.audio.decoders.wav import WavStreamDecoder
from assistant.audio.wav import AudioFormatError

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
    # The rest need PyAV, imported here on first use: 16 MB not spent on WAV/PCM voices.
    if kind == "ogg":
        from assistant.audio.decoders.ogg import OggStreamDecoder

        return OggStreamDecoder()
    if kind in ("mp4", "webm"):
        from assistant.audio.decoders.container import BufferedContainerDecoder

        return BufferedContainerDecoder("mp4" if kind == "mp4" else "matroska")
    from assistant.audio.decoders.compressed import CompressedStreamDecoder

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
