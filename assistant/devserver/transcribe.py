"""From an upload to a transcript: reading form fields, decoding off the loop, recognising,
taking the time.

The steps every speech-to-text route of the dev server shares; each route keeps its own
upload checks and error shapes around them.
"""

from __future__ import annotations

import asyncio

from aiohttp import BodyPartReader

from assistant.devserver.recogniser import Recognition
from assistant.devserver.state import DevServerState, RequestRecord
from assistant.devserver.uploads import DecodedAudio, decode_upload

READ_CHUNK = 64 * 1024
"""Bytes read from a multipart part at a time."""
MAX_FIELD_BYTES = 64 * 1024
"""Most of a text form field kept."""


async def read_text_field(part: BodyPartReader) -> str:
    """A text form field as a string; only the start of an absurdly long one is kept and the
    rest is skipped."""
    data = bytearray()
    while len(data) < MAX_FIELD_BYTES and (chunk := await part.read_chunk(READ_CHUNK)):
        data += chunk
    await part.release()
    return bytes(data[:MAX_FIELD_BYTES]).decode(errors="replace")


async def decode_off_loop(data: bytes, mime_type: str) -> DecodedAudio:
    """`decode_upload` in a worker thread; raises UndecodableAudio."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, decode_upload, data, mime_type)


async def recognise_upload(
    state: DevServerState, record: RequestRecord, audio: DecodedAudio, uploaded_at: float
) -> Recognition:
    """Transcribe with the known phrases, no sooner than `stt_latency_ms` after the upload.

    `uploaded_at` is the loop time the upload finished arriving. The result is added to the
    request's log record.
    """
    state.uploads.append((audio.samples, audio.sample_rate))
    recognition = await state.phrases.recognise(audio.samples, audio.sample_rate)
    # A real recogniser takes its time; the client's timeouts should see that.
    loop = asyncio.get_running_loop()
    await asyncio.sleep(uploaded_at + state.options.stt_latency_ms / 1000 - loop.time())
    record.details.update(
        audio_duration_s=round(audio.duration, 3),
        voiced_s=round(recognition.voiced_s, 3),
        transcript=recognition.text,
        phrase=recognition.phrase,
        score=round(recognition.score, 3),
    )
    return recognition
