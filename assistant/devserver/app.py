"""The aiohttp application: Dify's service API under /v1, plus the /_dev levers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from assistant.aio import cancel_and_wait
from assistant.devserver.control import add_control_routes
from assistant.devserver.middleware import API_PREFIX, dify_middleware
from assistant.devserver.options import DevServerOptions
from assistant.devserver.routes_chat import add_chat_routes
from assistant.devserver.routes_completion import completion_messages, stop_completion
from assistant.devserver.routes_convai import add_convai_routes
from assistant.devserver.routes_info import info, parameters
from assistant.devserver.routes_openai import add_openai_routes
from assistant.devserver.routes_stt import FILE_SIZE_LIMIT, audio_to_text
from assistant.devserver.routes_tts import text_to_audio
from assistant.devserver.state import STATE_KEY, DevServerState

_log = logging.getLogger(__name__)

_MULTIPART_OVERHEAD = 1024 * 1024
"""Room for form headers and a `user` field on top of a maximum-size upload."""


async def _warm_up_phrases(app: web.Application) -> AsyncIterator[None]:
    # Synthesising the known phrases takes a few hundred ms; do it in the
    # background at start rather than inside the first upload's latency.
    async def warm() -> None:
        try:
            await app[STATE_KEY].phrases.fingerprints()
        except Exception:
            _log.warning("dev server: could not prepare the known phrases", exc_info=True)

    task = asyncio.create_task(warm())
    yield
    await cancel_and_wait(task)


def build_app(options: DevServerOptions | None = None, *, control: bool = False) -> web.Application:
    """The dev server as an aiohttp application; its state is `app[STATE_KEY]`.

    `control`: also serve the unauthenticated `/_dev/` levers (latency, faults, phrases,
    the request log). Only a test bench asks for them: anyone who can reach them can
    read every question asked.
    """
    # Only request.read()/post() honour client_max_size; the upload itself is
    # streamed and cut off at FILE_SIZE_LIMIT by the audio-to-text handler.
    app = web.Application(
        middlewares=[dify_middleware], client_max_size=FILE_SIZE_LIMIT + _MULTIPART_OVERHEAD
    )
    app[STATE_KEY] = DevServerState(options or DevServerOptions())
    router = app.router
    router.add_post(f"{API_PREFIX}/audio-to-text", audio_to_text, name="audio-to-text")
    router.add_post(
        f"{API_PREFIX}/completion-messages", completion_messages, name="completion-messages"
    )
    router.add_post(
        f"{API_PREFIX}/completion-messages/{{task_id}}/stop",
        stop_completion,
        name="completion-messages-stop",
    )
    add_chat_routes(router)
    router.add_post(f"{API_PREFIX}/text-to-audio", text_to_audio, name="text-to-audio")
    router.add_get(f"{API_PREFIX}/parameters", parameters, name="parameters")
    router.add_get(f"{API_PREFIX}/info", info, name="info")
    if control:
        add_control_routes(app)
    add_convai_routes(app)  # /tts/...: Convai's API, outside the Dify middleware's /v1
    add_openai_routes(app)  # /v1/audio/..., /v1/chat/...: OpenAI's API and errors
    app.cleanup_ctx.append(_warm_up_phrases)
    return app
