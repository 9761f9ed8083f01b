"""`GET /parameters` (the app's feature switches and input form, shaped like
CompletionAppParametersResponse) and `GET /info` (its name and mode, AppInfoResponse)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from assistant.devserver.inputs import form_json
from assistant.devserver.options import DevServerOptions
from assistant.devserver.rendering import json_response
from assistant.devserver.state import STATE_KEY

APP_NAME = "Voice assistant (dev server)"


def app_parameters(options: DevServerOptions) -> dict[str, Any]:
    """What the configured app's /parameters says: its speech switches and input form."""
    disabled = {"enabled": False}
    return {
        "opening_statement": "",
        "suggested_questions": [],
        "suggested_questions_after_answer": dict(disabled),
        "speech_to_text": {"enabled": options.speech_to_text},
        "text_to_speech": {
            "enabled": options.text_to_speech,
            "voice": options.voice,
            "language": "en-US",
            # "enabled" makes Dify add tts_message events to answer streams (the
            # `stream_tts` option); otherwise clients ask /text-to-audio per sentence.
            "autoPlay": "enabled" if options.stream_tts else "disabled",
        },
        "retriever_resource": dict(disabled),
        "annotation_reply": dict(disabled),
        "more_like_this": dict(disabled),
        "sensitive_word_avoidance": dict(disabled),
        "user_input_form": form_json(options.user_input_form),
        "file_upload": {
            "image": {
                "enabled": False,
                "number_limits": 3,
                "detail": "high",
                "transfer_methods": ["remote_url", "local_file"],
            }
        },
        "system_parameters": {
            "file_size_limit": 15,
            "image_file_size_limit": 10,
            "audio_file_size_limit": 50,
            "video_file_size_limit": 100,
            "workflow_file_upload_limit": 10,
        },
    }


def app_info(options: DevServerOptions) -> dict[str, Any]:
    """/info; without an `app_mode` there is no `mode`, as in an older Dify's answer."""
    info: dict[str, Any] = {
        "name": APP_NAME,
        "description": "The Dify-compatible server bundled with the voice assistant.",
        "tags": [],
    }
    if options.app_mode:
        info["mode"] = options.app_mode
    info["author_name"] = "voice-assistant"
    return info


async def parameters(request: web.Request) -> web.Response:
    return json_response(app_parameters(request.app[STATE_KEY].options))


async def info(request: web.Request) -> web.Response:
    return json_response(app_info(request.app[STATE_KEY].options))
