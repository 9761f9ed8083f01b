"""`/_dev/...`: the test bench's levers (no auth; not part of Dify's API).

GET  /_dev/log              request records (optional ?endpoint=...)
GET|POST /_dev/phrases      list / register known utterances {"texts": [...]}
GET|PUT  /_dev/latency      read / change latency options live
GET|POST /_dev/faults       list / arm a fault (an answer, stall, cut...) for the next requests
POST /_dev/reset            clear the log and the faults
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from assistant.devserver.faults import Fault
from assistant.devserver.rendering import json_response
from assistant.devserver.state import STATE_KEY

CONTROL_PREFIX = "/_dev"


def _refuse(message: str) -> web.Response:
    return json_response({"code": "invalid_param", "message": message, "status": 400}, status=400)


async def _body(request: web.Request) -> Any:
    try:
        return json.loads(await request.read())
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"the body is not JSON: {exc}") from None


async def get_log(request: web.Request) -> web.Response:
    endpoint = request.query.get("endpoint")
    records = request.app[STATE_KEY].records(endpoint)
    return json_response([record.as_json() for record in records])


async def get_phrases(request: web.Request) -> web.Response:
    return json_response({"phrases": request.app[STATE_KEY].phrases.texts})


async def post_phrases(request: web.Request) -> web.Response:
    phrases = request.app[STATE_KEY].phrases
    try:
        body = await _body(request)
    except ValueError as exc:
        return _refuse(str(exc))
    texts = body.get("texts") if isinstance(body, dict) else None
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        return _refuse('expected {"texts": ["...", ...]}')
    added = phrases.add(texts)
    # Fingerprint now, so the next upload is not slowed down by synthesis.
    await phrases.fingerprints()
    return json_response({"added": added, "phrases": phrases.texts})


async def get_latency(request: web.Request) -> web.Response:
    return json_response(request.app[STATE_KEY].latency())


async def put_latency(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    try:
        body = await _body(request)
        if not isinstance(body, dict):
            raise ValueError("the body must be a JSON object")
        state.set_latency(**body)
    except ValueError as exc:
        return _refuse(str(exc))
    return json_response(state.latency())


async def get_faults(request: web.Request) -> web.Response:
    return json_response(request.app[STATE_KEY].faults.pending())


async def post_faults(request: web.Request) -> web.Response:
    faults = request.app[STATE_KEY].faults
    try:
        faults.add(Fault.from_json(await _body(request)))
    except ValueError as exc:
        return _refuse(str(exc))
    return json_response(faults.pending())


async def post_reset(request: web.Request) -> web.Response:
    request.app[STATE_KEY].reset()
    return json_response({"result": "success"})


def add_control_routes(app: web.Application) -> None:
    app.router.add_get(f"{CONTROL_PREFIX}/log", get_log)
    app.router.add_get(f"{CONTROL_PREFIX}/phrases", get_phrases)
    app.router.add_post(f"{CONTROL_PREFIX}/phrases", post_phrases)
    app.router.add_get(f"{CONTROL_PREFIX}/latency", get_latency)
    app.router.add_put(f"{CONTROL_PREFIX}/latency", put_latency)
    app.router.add_get(f"{CONTROL_PREFIX}/faults", get_faults)
    app.router.add_post(f"{CONTROL_PREFIX}/faults", post_faults)
    app.router.add_post(f"{CONTROL_PREFIX}/reset", post_reset)
