"""The dev server's one paced audio writer, shared by every speech endpoint.

A body goes out after `tts_first_byte_ms`, then in `tts_chunk_bytes` pieces at `tts_speed`
times real time. The options are read at every chunk, so `PUT /_dev/latency` takes effect
on a body that is already being sent.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aiohttp import web

from assistant.devserver.fault_responses import write_body
from assistant.devserver.middleware import record_of
from assistant.devserver.state import DevServerState


async def wait_first_byte(state: DevServerState, arrived: float) -> None:
    """Sleep until `tts_first_byte_ms` after `arrived` (a loop.time() of the request)."""
    loop = asyncio.get_running_loop()
    await asyncio.sleep(arrived + state.options.tts_first_byte_ms / 1000 - loop.time())


async def paced_chunks(
    state: DevServerState, data: bytes, duration_s: float, odd_chunks: bool = False
) -> AsyncIterator[bytes]:
    """`data` in `tts_chunk_bytes` pieces, each due when the audio before it would have
    played at `tts_speed` times real time. `odd_chunks` makes an even size one byte smaller,
    so that 16-bit samples straddle chunk boundaries."""
    loop = asyncio.get_running_loop()
    first_byte_at = loop.time()
    total = len(data)
    offset = 0
    while offset < total:
        options = state.options
        if offset and options.tts_speed > 0:
            # Byte offset -> playback time of the audio up to there, sped up.
            due = first_byte_at + offset / total * duration_s / options.tts_speed
            await asyncio.sleep(due - loop.time())
        size = max(1, options.tts_chunk_bytes)
        if odd_chunks and size > 1 and size % 2 == 0:
            size -= 1
        chunk = data[offset : offset + size]
        offset += len(chunk)
        yield chunk


async def send_paced_audio(
    request: web.Request,
    state: DevServerState,
    data: bytes,
    duration_s: float,
    content_type: str,
    odd_chunks: bool = False,
) -> web.StreamResponse:
    """`data` (`duration_s` of speech) as a chunked `content_type` body, paced by
    `paced_chunks`; a client that goes away is noted as `disconnected` in the log record."""
    response = web.StreamResponse()
    response.content_type = content_type
    # Transfer-Encoding: chunked, no Content-Length: how Dify relays a provider's audio
    # generator, and what OpenAI's and Convai's 200s are.
    response.enable_chunked_encoding()
    await response.prepare(request)
    try:
        async for chunk in paced_chunks(state, data, duration_s, odd_chunks):
            await write_body(request, response, chunk)
        await response.write_eof()
    except ConnectionResetError:
        record_of(request).details["disconnected"] = True
    return response
