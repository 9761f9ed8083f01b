"""Naming what went wrong in a turn, whatever raised it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from assistant.audio.wav import AudioFormatError
from assistant.ports import DeviceError
from assistant.providers.base import ServiceError
from assistant.text.sse import SSEError


def service_name(provider: object) -> str:
    return str(getattr(provider, "service", type(provider).__name__))


@asynccontextmanager
async def stage_timeout(service: str, stage: str, seconds: float) -> AsyncIterator[None]:
    """Bound a whole stage; running out is a ServiceError that names the stage."""
    try:
        async with asyncio.timeout(seconds):
            yield
    except TimeoutError:
        raise ServiceError(service, stage, "timeout", f"no answer within {seconds:g} s") from None


def _leaf(exc: BaseException) -> BaseException:
    # TaskGroups wrap failures in groups; the first leaf is the cause worth naming.
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def describe_failure(exc: BaseException) -> dict[str, Any]:
    """stage, code, message (and service, status when known) for an error event."""
    leaf = _leaf(exc)
    if isinstance(leaf, ServiceError):
        return leaf.as_event()
    if isinstance(leaf, AudioFormatError):
        return {"stage": "tts", "code": "bad_audio", "message": str(leaf)}
    if isinstance(leaf, SSEError):
        return {"stage": "completion", "code": "malformed_stream", "message": str(leaf)}
    if isinstance(leaf, DeviceError | TimeoutError):
        return {"stage": "device", "code": "device_error", "message": str(leaf) or "timed out"}
    return {"stage": "internal", "code": type(leaf).__name__, "message": str(leaf)}
