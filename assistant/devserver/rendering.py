"""JSON bodies rendered the way Dify's flask-restx app renders them."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web


def json_response(data: Any, status: int = 200) -> web.Response:
    """json.dumps with its defaults plus a newline, `application/json` without a charset."""
    body = (json.dumps(data) + "\n").encode()
    return web.Response(status=status, body=body, content_type="application/json")
