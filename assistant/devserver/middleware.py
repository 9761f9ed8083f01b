"""What every `/v1` request goes through: log, routing errors, auth, faults, error envelope."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from assistant.devserver.errors import (
    INTERNAL_ERROR_MESSAGE,
    METHOD_NOT_ALLOWED_MESSAGE,
    NOT_FOUND_MESSAGE,
    DifyError,
    error_response,
    unauthorized,
)
from assistant.devserver.fault_responses import with_fault
from assistant.devserver.state import STATE_KEY, DevServerState, RequestRecord

API_PREFIX = "/v1"
RECORD_KEY: web.RequestKey[RequestRecord] = web.RequestKey("devserver_record")

_log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def start_record(request: web.Request, endpoint: str) -> RequestRecord:
    """The log record of a request that has just arrived, attached to the request."""
    peer = request.transport.get_extra_info("peername") if request.transport else None
    record = RequestRecord(
        endpoint, request.method, time.time(), client_port=peer[1] if peer else 0
    )
    request[RECORD_KEY] = record
    return record


def record_of(request: web.Request) -> RequestRecord:
    """The log record of this request, for handlers to add their details to."""
    return request[RECORD_KEY]


def _check_auth(header: str | None, api_key: str | None) -> None:
    # The same checks, in the same order, as Dify's validate_and_get_api_token.
    if header is None or " " not in header:
        raise unauthorized("Authorization header must be provided and start with 'Bearer'")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer":
        raise unauthorized("Authorization scheme must be 'Bearer'")
    token = token.strip()
    if not token or (api_key is not None and token != api_key):
        raise unauthorized("Access token is invalid")


def _routing_error(request: web.Request) -> web.Response | None:
    exc = request.match_info.http_exception
    if exc is None:
        return None
    if exc.status == 405:
        return error_response(405, "method_not_allowed", METHOD_NOT_ALLOWED_MESSAGE)
    return error_response(exc.status, "not_found", NOT_FOUND_MESSAGE)


def _http_error(exc: web.HTTPException) -> web.Response:
    # e.g. aiohttp's 413 for a JSON body over client_max_size, in Dify's envelope
    # with werkzeug's naming (Request Entity Too Large -> request_entity_too_large).
    code = exc.reason.lower().replace(" ", "_")
    return error_response(exc.status, code, exc.text or exc.reason)


@web.middleware
async def dify_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.path.startswith(API_PREFIX + "/") and request.path != API_PREFIX:
        return await handler(request)
    state: DevServerState = request.app[STATE_KEY]
    route_name = request.match_info.route.name or request.path
    record = start_record(request, route_name)
    started = time.monotonic()
    response: web.StreamResponse | None = None
    try:
        response = await _answer(request, handler, state, route_name)
        return response
    finally:
        record.status = response.status if response is not None else 500
        record.duration_s = time.monotonic() - started
        state.record(record)


async def _answer(
    request: web.Request, handler: Handler, state: DevServerState, route_name: str
) -> web.StreamResponse:
    routing_error = _routing_error(request)
    if routing_error is not None:
        return routing_error
    try:
        _check_auth(request.headers.get("Authorization"), state.options.api_key)
        fault = state.faults.take(route_name)
        if fault is not None:
            details = record_of(request).details
            details.update(fault=True, fault_mode=fault.mode)
            handler = with_fault(fault, handler, details)
        return await handler(request)
    except DifyError as exc:
        return exc.response()
    except web.HTTPException as exc:
        return _http_error(exc)
    except ConnectionResetError:
        raise  # the client is gone: there is no one to send an error to
    except Exception:
        _log.exception("dev server: %s %s failed", request.method, request.path)
        return error_response(500, "internal_server_error", INTERNAL_ERROR_MESSAGE)
