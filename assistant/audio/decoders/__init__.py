"""Incremental decoders for speech bodies that arrive chunk by chunk.

Every decoder has `feed(data) -> list[PcmChunk]` and `close() -> list[PcmChunk]`
and turns whatever it is given into int16 mono at the body's own rate (no
resampling here). Bad input raises AudioFormatError, never a library exception.
Chunks from the WAV and PCM decoders are read-only views of the bytes fed in
(no copy); copy before modifying in place.

What is where:

* `base`: PcmChunk, the StreamDecoder protocol, size limits, and the helpers
  shared by the decoders (int16 mono conversion, channel mixing, the
  bad-packet budget around PyAV's decoder).
* `pcm`: PcmStreamDecoder, raw PCM (OpenAI `pcm`, `audio/L16`).
* `wav`: WavStreamDecoder, RIFF/WAVE parsed here.
* `pyav_frames`: PyAV frames to int16 mono, for the three below. They load PyAV, so
  they are imported on first use (by `choose`, or by name from this package).
* `compressed`: CompressedStreamDecoder, MP3/AAC/FLAC through PyAV's codec
  parser, with the ID3v2 skip and the MP3 encoder-delay trim.
* `ogg`: OggStreamDecoder, Ogg Opus/Vorbis pages split here.
* `container`: BufferedContainerDecoder, MP4/M4A and WebM held whole and
  decoded at `close()`.
* `choose`: make_decoder, SniffingDecoder and SNIFF_BYTES, choosing a decoder
  from the Content-Type and the first bytes.
"""

from assistant.audio.decoders.base import (
    MAX_BAD_PACKETS_IN_A_ROW,
    MAX_BUFFERED_BODY_BYTES,
    MAX_PACKET_BYTES,
    PcmChunk,
    StreamDecoder,
)
from assistant.audio.decoders.choose import SNIFF_BYTES, SniffingDecoder, make_decoder
from assistant.audio.decoders.pcm import PcmStreamDecoder
from assistant.audio.decoders.wav import WavStreamDecoder
from assistant.audio.wav import AudioFormatError

__all__ = [
    "MAX_BAD_PACKETS_IN_A_ROW",
    "MAX_BUFFERED_BODY_BYTES",
    "MAX_PACKET_BYTES",
    "SNIFF_BYTES",
    "AudioFormatError",
    "BufferedContainerDecoder",
    "CompressedStreamDecoder",
    "OggStreamDecoder",
    "PcmChunk",
    "PcmStreamDecoder",
    "SniffingDecoder",
    "StreamDecoder",
    "WavStreamDecoder",
    "make_decoder",
]

_NEEDS_PYAV = {
    "CompressedStreamDecoder": "assistant.audio.decoders.compressed",
    "BufferedContainerDecoder": "assistant.audio.decoders.container",
    "OggStreamDecoder": "assistant.audio.decoders.ogg",
}


def __getattr__(name: str) -> object:
    # PEP 562: the PyAV decoders are imported when first named, not with the package.
    if name in _NEEDS_PYAV:
        import importlib

        return getattr(importlib.import_module(_NEEDS_PYAV[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
