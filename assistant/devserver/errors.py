"""Error bodies: Dify's envelope `{"code", "message", "status"}` for every non-stream `/v1`
error, and each imitated service's answer to an unexpected failure (which a fault armed
without a body sends too)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from assistant.devserver.rendering import json_response

# werkzeug's wording, which is what Dify's Flask app sends for these.
NOT_FOUND_MESSAGE = (
    "The requested URL was not found on the server. If you entered the URL manually "
    "please check your spelling and try again."
)
METHOD_NOT_ALLOWED_MESSAGE = "The method is not allowed for the requested URL."
BAD_REQUEST_MESSAGE = "The browser (or proxy) sent a request that this server could not understand."
USER_REQUIRED_MESSAGE = "Arg user must be provided."
APP_UNAVAILABLE_MESSAGE = "App unavailable, please check your app configurations."
NOT_CHAT_APP_MESSAGE = "Please check if your app mode matches the right API route."
INTERNAL_ERROR_MESSAGE = (
    "The server encountered an internal error and was unable to complete your request. "
    "Either the server is overloaded or there is an error in the application."
)
OPENAI_SERVER_ERROR_MESSAGE = (
    "The server had an error while processing your request. Sorry about that!"
)
CONVAI_TTS_FAILED_BODY = {"result": "Error encountered while processing the TTS request."}
"""Convai's 500 for `POST /tts/`."""
CONVAI_SERVER_FAILURE_BODY = {"result": "Server side failure. Please reach out to support."}
"""The dev server's 500 for Convai's voice and language lists (undocumented)."""


class DifyError(Exception):
    """An API error, raised anywhere in a handler and rendered by the middleware."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def response(self) -> web.Response:
        return error_response(self.status, self.code, self.message)


def dify_error_body(status: int, code: str, message: str) -> dict[str, Any]:
    return {"code": code, "message": message, "status": status}


def openai_error_body(
    message: str, error_type: str, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


def error_response(status: int, code: str, message: str) -> web.Response:
    """Dify's envelope."""
    return json_response(dify_error_body(status, code, message), status=status)


def invalid_param(message: str) -> DifyError:
    """400 invalid_param: Dify's rendering of a ValueError (pydantic errors included)."""
    return DifyError(400, "invalid_param", message)


def app_unavailable() -> DifyError:
    """/completion-messages to an app of another mode (Dify's AppUnavailableError)."""
    return DifyError(400, "app_unavailable", APP_UNAVAILABLE_MESSAGE)


def not_chat_app() -> DifyError:
    """/chat-messages to a Text Generator (Dify's NotChatAppError)."""
    return DifyError(400, "not_chat_app", NOT_CHAT_APP_MESSAGE)


def bad_request(message: str = BAD_REQUEST_MESSAGE) -> DifyError:
    return DifyError(400, "bad_request", message)


def unauthorized(message: str) -> DifyError:
    return DifyError(401, "unauthorized", message)
