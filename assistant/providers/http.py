"""One kept-alive httpx client per service, and turning HTTP failures into ServiceError."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

from assistant.providers.base import ServiceError
from assistant.settings import HttpSettings

_BODY_PREVIEW = 200
"""Characters of a non-JSON error body kept in the message (an HTML error page is long)."""


def make_client(base_url: str, http: HttpSettings, headers: dict[str, str]) -> httpx.AsyncClient:
    """A client whose connections stay warm between turns.

    `read` bounds the gap between two received bytes, not the whole request:
    whole-stage limits are applied by the caller with asyncio.timeout.
    """
    return httpx.AsyncClient(
        base_url=base_url.rstrip("/") + "/",
        headers=headers,
        timeout=httpx.Timeout(
            connect=http.connect_timeout_s,
            read=http.read_timeout_s,
            write=http.read_timeout_s,
            pool=http.connect_timeout_s,
        ),
        limits=httpx.Limits(max_keepalive_connections=4, keepalive_expiry=300),
        follow_redirects=False,
    )


def retry_after_seconds(value: str | None) -> float | None:
    """Retry-After as seconds: either delta-seconds or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def error_from_body(service: str, stage: str, status: int, body: bytes) -> tuple[str, str]:
    """(code, message) from any error body shape the services use."""
    text = body.decode("utf-8", errors="replace")
    try:
        doc = json.loads(text)
    except ValueError:
        preview = " ".join(text.split())[:_BODY_PREVIEW]
        return f"http_{status}", preview or f"HTTP {status} with an empty body"
    if isinstance(doc, dict):
        # Dify: {"code", "message", "status"}
        if isinstance(doc.get("code"), str) and "message" in doc:
            return doc["code"], str(doc["message"])
        # OpenAI: {"error": {"message", "type", "param", "code"}}
        err = doc.get("error")
        if isinstance(err, dict):
            code = err.get("code") or err.get("type") or f"http_{status}"
            return str(code), str(err.get("message", ""))
        # FastAPI-style servers: {"detail": ...}
        if "detail" in doc:
            return f"http_{status}", str(doc["detail"])[:_BODY_PREVIEW]
        # Convai: {"ERROR"} = no key, {"API_ERROR"} = wrong key, {"result"} = any other
        # refusal, even inside a 200 answer (providers/convai.py refines `convai_error`).
        for key, code in (("ERROR", "api_key_error"), ("API_ERROR", "invalid_api_key")):
            if isinstance(doc.get(key), str):
                return code, doc[key]
        if isinstance(doc.get("result"), str):
            return "convai_error", doc["result"]
    return f"http_{status}", text[:_BODY_PREVIEW]


async def raise_for_status(service: str, stage: str, response: httpx.Response) -> None:
    """Raise a ServiceError for a non-2xx response (reads the body of a streamed one)."""
    if response.is_success:
        return
    body = await response.aread()
    code, message = error_from_body(service, stage, response.status_code, body)
    raise ServiceError(
        service,
        stage,
        code,
        message,
        status=response.status_code,
        retry_after=retry_after_seconds(response.headers.get("retry-after")),
    )


def transport_error(service: str, stage: str, exc: httpx.HTTPError) -> ServiceError:
    """A connection, timeout or protocol failure, named by its kind (never with headers)."""
    kind = {
        httpx.ConnectError: "connect_error",
        httpx.ConnectTimeout: "connect_timeout",
        httpx.ReadTimeout: "read_timeout",
        httpx.WriteTimeout: "write_timeout",
        httpx.PoolTimeout: "pool_timeout",
        httpx.RemoteProtocolError: "connection_lost",
        httpx.ReadError: "connection_lost",
    }.get(type(exc), "transport_error")
    return ServiceError(service, stage, kind, f"{type(exc).__name__}: {exc}" if str(exc) else kind)
