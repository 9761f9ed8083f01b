"""OpenAI-compatible endpoints on the dev server, next to Dify's under `/v1`.

| route                        | name (log, faults)     | module                |
| ---------------------------- | ---------------------- | --------------------- |
| POST /v1/audio/transcriptions | `audio-transcriptions` | routes_openai_stt     |
| POST /v1/audio/speech         | `audio-speech`         | routes_openai_tts     |
| POST /v1/chat/completions     | `chat-completions`     | routes_openai_chat    |
| GET  /v1/models               | `models`               | here                  |

Configure an OpenAI client with the dev server's base URL (`.../v1`) and any key (or the
server's `api_key`). Errors, auth refusals included, come in OpenAI's envelope
(see `openai_api`).
"""

from __future__ import annotations

from aiohttp import web

from assistant.devserver.middleware import API_PREFIX
from assistant.devserver.openai_api import openai_errors, openai_middleware
from assistant.devserver.rendering import json_response
from assistant.devserver.routes_openai_chat import chat_completions
from assistant.devserver.routes_openai_stt import audio_transcriptions
from assistant.devserver.routes_openai_tts import audio_speech

MODELS = ("whisper-1", "gpt-4o-mini-transcribe", "tts-1", "gpt-4o-mini-tts", "gpt-4o-mini")
"""What `GET /v1/models` lists: the models the dev server's routes answer for."""
_MODELS_CREATED = 1_700_000_000


@openai_errors
async def models(request: web.Request) -> web.StreamResponse:
    """OpenAI's model list; clients call it to check the key and open a connection."""
    data = [
        {"id": name, "object": "model", "created": _MODELS_CREATED, "owned_by": "system"}
        for name in MODELS
    ]
    return json_response({"object": "list", "data": data})


def add_openai_routes(app: web.Application) -> None:
    """Register the OpenAI routes, and OpenAI's auth check ahead of the Dify middleware."""
    # First in the list = outermost: it must see these requests before Dify's 401 can.
    app.middlewares.insert(0, openai_middleware)
    router = app.router
    router.add_post(
        f"{API_PREFIX}/audio/transcriptions", audio_transcriptions, name="audio-transcriptions"
    )
    router.add_post(f"{API_PREFIX}/audio/speech", audio_speech, name="audio-speech")
    router.add_post(f"{API_PREFIX}/chat/completions", chat_completions, name="chat-completions")
    router.add_get(f"{API_PREFIX}/models", models, name="models")
