"""One kept-alive httpx client per service, turning HTTP failures into ServiceError, and the
WAV upload every speech-to-text service takes."""

from __future__ import annotations

import functools
import json
import ssl
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

import httpx

from assistant.audio.wav import encode_wav
from assistant.providers.base import ServiceError, SpeechInput
from assistant.settings import HttpSettings

KEEPALIVE_CONNECTIONS = 4
"""Idle connections each client keeps open; the warmer opens no more than this many."""
_BODY_PREVIEW = 200
"""Characters of a non-JSON error body kept in the message (an HTML error page is long)."""


class ServiceTimeouts(Protocol):
    """The per-service overrides every service section has (0 = the [http] value)."""

    @property
    def connect_timeout_s(self) -> float: ...
    @property
    def read_timeout_s(self) -> float: ...


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """One TLS context for every client: httpx would load the CA bundle once per client
    (about 1.8 MB and 25 ms each). httpx's own constructor, so SSL_CERT_FILE still counts."""
    return httpx.create_ssl_context()


def make_client(
    base_url: str, http: HttpSettings, headers: dict[str, str], service: ServiceTimeouts
) -> httpx.AsyncClient:
    """A client whose connections stay warm between turns.

    `read` bounds the gap between two received bytes, not the whole request:
    whole-stage limits are applied by the caller with asyncio.timeout.
    """
    connect = service.connect_timeout_s or http.connect_timeout_s
    read = service.read_timeout_s or http.read_timeout_s
    return httpx.AsyncClient(
        base_url=base_url.rstrip("/") + "/",
        headers=headers,
        verify=_tls_context(),
        timeout=httpx.Timeout(connect=connect, read=read, write=read, pool=connect),
        limits=httpx.Limits(max_keepalive_connections=KEEPALIVE_CONNECTIONS, keepalive_expiry=300),
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


def json_object(body: bytes, service: str, stage: str) -> dict[str, Any]:
    """`body` as a JSON object, or a `malformed_response` ServiceError."""
    try:
        doc = json.loads(body)
    except ValueError:
        raise ServiceError(service, stage, "malformed_response", "answer is not JSON") from None
    if not isinstance(doc, dict):
        raise ServiceError(service, stage, "malformed_response", "answer is not a JSON object")
    return doc


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


async def transcribe_wav(
    http: httpx.AsyncClient,
    service: str,
    path: str,
    speech: SpeechInput,
    form: dict[str, str],
    max_bytes: int,
    limit: str,
) -> str:
    """POST `speech` to `path` as a multipart `file` (utterance.wav, audio/wav) with the
    `form` fields, and return the answer's `text`, stripped.

    An upload over `max_bytes` is refused before sending (`audio_too_large`, saying it is
    over `limit`, e.g. "Dify's 30 MB").
    """
    wav = encode_wav(speech.samples, speech.sample_rate)
    if len(wav) > max_bytes:
        raise ServiceError(
            service, "stt", "audio_too_large", f"{len(wav)} bytes is over {limit} limit"
        )
    files = {"file": ("utterance.wav", wav, "audio/wav")}
    try:
        response = await http.post(path, files=files, data=form)
    except httpx.HTTPError as exc:
        raise transport_error(service, "stt", exc) from None
    await raise_for_status(service, "stt", response)
    text = json_object(response.content, service, "stt").get("text")
    if not isinstance(text, str):
        raise ServiceError(service, "stt", "malformed_response", "no `text` in the answer")
    return text.strip()


def media_type(response: httpx.Response) -> str:
    """The Content-Type without its parameters, in lower case ("" when there is none)."""
    return response.headers.get("content-type", "").split(";")[0].strip().lower()


def is_page_type(mime: str) -> bool:
    """A text or markup type: a web page or a message, never audio nor an event stream."""
    return (mime.startswith("text/") and mime != "text/event-stream") or mime in (
        "application/xhtml+xml",
        "application/xml",
    )


async def unexpected_type(
    service: str,
    stage: str,
    response: httpx.Response,
    wanted: str,
    head: bytes = b"",
    rest: AsyncIterator[bytes] | None = None,
) -> ServiceError:
    """A success whose body is of the wrong kind (a captive portal's page, a JSON answer
    where a stream was due): what it was, and the start of it. A caller that has begun
    reading the body passes what it read (`head`) and its iterator (`rest`)."""
    body = head
    async for data in rest if rest is not None else response.aiter_bytes():
        body += data
        if len(body) > 4 * _BODY_PREVIEW:
            break
    preview = " ".join(body.decode("utf-8", errors="replace").split())[:_BODY_PREVIEW]
    return ServiceError(
        service,
        stage,
        "unexpected_content_type",
        f"{media_type(response) or 'no Content-Type'} instead of {wanted}: {preview}",
        status=response.status_code,
    )
