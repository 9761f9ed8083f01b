"""Turn an uploaded audio file into samples, or say why it is not real audio.

A real speech-to-text provider refuses garbage with an error, so the dev
server does too: a client that sends a header-less PCM buffer labelled
`audio/wav` must find out here, not in production.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass

import av
import numpy as np

_PCM = 1
_EXTENSIBLE = 0xFFFE
# The first two bytes of KSDATAFORMAT_SUBTYPE_PCM; the rest of the GUID is fixed.
_PCM_SUBFORMAT = b"\x01\x00"


class UndecodableAudio(ValueError):
    """The upload is not audio the server can read; the message says why."""


@dataclass(frozen=True, slots=True)
class DecodedAudio:
    samples: np.ndarray
    """float32 mono in [-1, 1]."""
    sample_rate: int

    @property
    def duration(self) -> float:
        return len(self.samples) / self.sample_rate if self.sample_rate else 0.0


def decode_upload(data: bytes, mime_type: str) -> DecodedAudio:
    """Decode `data` declared as `mime_type` (already checked against the allowed list)."""
    if mime_type == "audio/wav":
        return parse_wav(data)
    return _decode_with_pyav(data)


def parse_wav(data: bytes) -> DecodedAudio:
    """Read a RIFF/WAVE file of 16-bit PCM, whatever chunks sit before `data`."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise UndecodableAudio("not a WAV file: the RIFF/WAVE header is missing")
    channels = rate = 0
    pos = 12
    while pos + 8 <= len(data):
        chunk_id = data[pos : pos + 4]
        (size,) = struct.unpack_from("<I", data, pos + 4)
        body_start = pos + 8
        if chunk_id == b"fmt ":
            channels, rate = _parse_fmt(data[body_start : body_start + size])
        elif chunk_id == b"data":
            if not channels:
                raise UndecodableAudio("WAV file has its data chunk before the fmt chunk")
            # Streaming writers (espeak-ng, arecord to a pipe) leave a placeholder
            # size such as 0x7fffffff, so the data runs to the end of the file.
            body = data[body_start : body_start + size]
            return _pcm16_to_audio(body, channels, rate)
        # Chunks are word-aligned: an odd-sized chunk is followed by a pad byte.
        pos = body_start + size + (size & 1)
    if not channels:
        raise UndecodableAudio("WAV file has no fmt chunk")
    raise UndecodableAudio("WAV file has no data chunk")


def _parse_fmt(fmt: bytes) -> tuple[int, int]:
    if len(fmt) < 16:
        raise UndecodableAudio("WAV fmt chunk is truncated")
    tag, channels, rate, _byte_rate, _align, bits = struct.unpack_from("<HHIIHH", fmt)
    if tag == _EXTENSIBLE and len(fmt) >= 26 and fmt[24:26] == _PCM_SUBFORMAT:
        tag = _PCM
    if tag != _PCM:
        raise UndecodableAudio(f"WAV is not PCM (format tag {tag:#06x})")
    if bits != 16:
        raise UndecodableAudio(f"WAV is {bits}-bit PCM, 16-bit expected")
    if channels < 1 or rate < 1:
        raise UndecodableAudio(f"WAV fmt chunk is invalid ({channels} channels, {rate} Hz)")
    return channels, rate


def _pcm16_to_audio(body: bytes, channels: int, rate: int) -> DecodedAudio:
    frame_bytes = 2 * channels
    usable = len(body) - len(body) % frame_bytes
    pcm = np.frombuffer(body[:usable], dtype="<i2").astype(np.float32) / 32768.0
    mono = pcm.reshape(-1, channels).mean(axis=1) if channels > 1 else pcm
    return DecodedAudio(mono.astype(np.float32), rate)


def _decode_with_pyav(data: bytes) -> DecodedAudio:
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            if not container.streams.audio:
                raise UndecodableAudio("the file has no audio stream")
            stream = container.streams.audio[0]
            rate = stream.codec_context.sample_rate or 16_000
            resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
            pieces: list[np.ndarray] = []
            for frame in container.decode(stream):
                for mono in resampler.resample(frame):
                    pieces.append(mono.to_ndarray().reshape(-1))
            for mono in resampler.resample(None):
                pieces.append(mono.to_ndarray().reshape(-1))
    except av.FFmpegError as exc:
        raise UndecodableAudio(f"the audio could not be decoded: {exc}") from exc
    if not pieces:
        raise UndecodableAudio("the file contains no decodable audio frames")
    return DecodedAudio(np.concatenate(pieces).astype(np.float32), rate)
