"""PyAV frames to samples, for the decoders of compressed audio.

Kept apart from `base` so that importing the decoders does not load PyAV (its
FFmpeg libraries are 16 MB resident): WAV and raw PCM bodies never need it, and
`choose` imports the PyAV decoders only when a compressed body arrives.
"""

from __future__ import annotations

import av
import av.error
import numpy as np

from assistant.audio.decoders.base import _BadPacketBudget, _float_to_int16
from assistant.audio.wav import AudioFormatError


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
