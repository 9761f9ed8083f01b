"""`GET /parameters`: the app's feature switches, shaped like CompletionAppParametersResponse."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from assistant.devserver.rendering import json_response
from assistant.devserver.state import STATE_KEY


def app_parameters(voice: str) -> dict[str, Any]:
    """A Text Generator app with speech in and out, no inputs, no auto-play."""
    disabled = {"enabled": False}
    return {
        "opening_statement": "",
        "suggested_questions": [],
        "suggested_questions_after_answer": dict(disabled),
        "speech_to_text": {"enabled": True},
        "text_to_speech": {
            "enabled": True,
            "voice": voice,
            "language": "en-US",
            # "enabled" would make Dify add tts_message events to the stream; the
            # assistant asks /text-to-audio per sentence instead.
            "autoPlay": "disabled",
        },
        "retriever_resource": dict(disabled),
        "annotation_reply": dict(disabled),
        "more_like_this": dict(disabled),
        "sensitive_word_avoidance": dict(disabled),
        "user_input_form": [],
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


async def parameters(request: web.Request) -> web.Response:
    return json_response(app_parameters(request.app[STATE_KEY].options.voice))
