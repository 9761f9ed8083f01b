"""OpenAI's conventions on the dev server: error envelope, Bearer check, JSON bodies.

The `/v1` middleware of the dev server speaks Dify (its 401 and its error envelope). The
OpenAI-compatible routes need OpenAI's instead, so:

- `openai_middleware` runs before the Dify one and answers a bad or missing key on these
  routes itself, in OpenAI's shape. A request it lets through passes the Dify check too
  (the same header parsing and comparison), which then logs it and applies faults as usual;
- `openai_errors` wraps each OpenAI handler so that its refusals, aiohttp's HTTP errors and
  crashes leave as `{"error": {"message", "type", "param", "code"}}` before the Dify
  middleware would render them its own way.

A fault on these routes sends OpenAI's 500 body when armed without one; a rate-limit fault
carries its own `Retry-After` in `Fault.headers`.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from typing import Any

from aiohttp import web

from assistant.devserver.errors import OPENAI_SERVER_ERROR_MESSAGE, openai_error_body
from assistant.devserver.faults import OPENAI_ENDPOINTS
from assistant.devserver.middleware import Handler
from assistant.devserver.rendering import json_response
from assistant.devserver.state import STATE_KEY, RequestRecord

NO_KEY_MESSAGE = (
    "You didn't provide an API key. You need to provide your API key in an Authorization "
    "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field "
    "(with blank username) if you're accessing the API from your browser and are prompted for "
    "a username and password. You can obtain an API key from "
    "https://platform.openai.com/account/api-keys."
)
# OpenAI quotes a masked key here; the dev server quotes none, so no part of a key is echoed.
WRONG_KEY_MESSAGE = (
    "Incorrect API key provided. You can find your API key at "
    "https://platform.openai.com/account/api-keys."
)
NOT_JSON_MESSAGE = (
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't "
    "using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was "
    "sent was not valid JSON. If you have trouble figuring out how to fix this, please contact "
    "us through our help center at help.openai.com.)"
)

_log = logging.getLogger(__name__)


class OpenAIError(Exception):
    """A refusal in OpenAI's shape, raised in a handler and rendered by `openai_errors`."""

    def __init__(
        self,
        status: int,
        message: str,
        error_type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type
        self.param = param
        self.code = code

    def response(self) -> web.Response:
        return error_response(self.status, self.message, self.error_type, self.param, self.code)


def error_response(
    status: int, message: str, error_type: str, param: str | None = None, code: str | None = None
) -> web.Response:
    return json_response(openai_error_body(message, error_type, param, code), status=status)


def invalid_request(message: str, param: str | None = None, code: str | None = None) -> OpenAIError:
    return OpenAIError(400, message, "invalid_request_error", param, code)


def missing_parameter(name: str) -> OpenAIError:
    return invalid_request(
        f"Missing required parameter: '{name}'.", name, "missing_required_parameter"
    )


def unrecognized_argument(name: str) -> OpenAIError:
    return invalid_request(f"Unrecognized request argument supplied: {name}")


def invalid_value(param: str, value: object, allowed: tuple[str, ...]) -> OpenAIError:
    choices = ", ".join(f"'{choice}'" for choice in allowed)
    return invalid_request(
        f"Invalid value: {json.dumps(value)}. Supported values are: {choices}.",
        param,
        "invalid_value",
    )


async def json_object(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object, or OpenAI's 400 for anything else."""
    raw = await request.read()
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise invalid_request(NOT_JSON_MESSAGE) from None
    if not isinstance(body, dict):
        raise invalid_request(NOT_JSON_MESSAGE)
    return body


def openai_errors(handler: Handler) -> Handler:
    """Render whatever `handler` raises as an OpenAI error body."""

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except OpenAIError as exc:
            return exc.response()
        except web.HTTPException as exc:
            # e.g. aiohttp's 413 for a JSON body over client_max_size.
            kind = "server_error" if exc.status >= 500 else "invalid_request_error"
            return error_response(exc.status, exc.text or exc.reason, kind)
        except ConnectionResetError:
            raise  # the client is gone: there is no one to send an error to
        except Exception:
            _log.exception("dev server: %s %s failed", request.method, request.path)
            return error_response(500, OPENAI_SERVER_ERROR_MESSAGE, "server_error")

    return wrapped


def _auth_error(header: str | None, api_key: str | None) -> web.Response | None:
    # Parsed exactly as the Dify middleware parses it, so what passes here passes there.
    scheme, _, token = (header or "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return error_response(401, NO_KEY_MESSAGE, "invalid_request_error")
    if api_key is not None and token != api_key:
        return error_response(
            401, WRONG_KEY_MESSAGE, "invalid_request_error", None, "invalid_api_key"
        )
    return None


@web.middleware
async def openai_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """OpenAI's 401s for the OpenAI routes."""
    endpoint = request.match_info.route.name
    if endpoint not in OPENAI_ENDPOINTS:
        return await handler(request)
    state = request.app[STATE_KEY]
    refused = _auth_error(request.headers.get("Authorization"), state.options.api_key)
    if refused is not None:
        # Logged like every other /v1 request, although the Dify middleware never sees it.
        state.record(RequestRecord(endpoint, request.method, time.time(), status=refused.status))
        return refused
    return await handler(request)


def sse_event(payload: Any) -> bytes:
    """One `data:` event, JSON without spaces as OpenAI writes it."""
    return f"data: {json.dumps(payload, separators=(',', ':'))}\n\n".encode()


async def start_sse(request: web.Request) -> web.StreamResponse:
    """A prepared `text/event-stream` response to write events to."""
    response = web.StreamResponse()
    response.content_type = "text/event-stream"
    response.charset = "utf-8"
    await response.prepare(request)
    return response
