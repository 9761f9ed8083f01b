"""`GET /parameters`: the app's feature switches, shaped like CompletionAppParametersResponse."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from assistant.devserver.rendering import json_response
from assistant.devserver.state import STATE_KEY


def app_parameters(voice: str, auto_play: bool = False) -> dict[str, Any]:
    """A Text Generator app with speech in and out, no inputs; auto-play if `auto_play`."""
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
            # "enabled" makes Dify add tts_message events to answer streams (the
            # `stream_tts` option); otherwise clients ask /text-to-audio per sentence.
            "autoPlay": "enabled" if auto_play else "disabled",
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
    options = request.app[STATE_KEY].options
    return json_response(app_parameters(options.voice, options.stream_tts))
