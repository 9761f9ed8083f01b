"""What the device says, in its own offline voice, when a turn fails."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_UNREACHABLE = {
    "connect_error",
    "connect_timeout",
    "pool_timeout",
    "connection_lost",
    "unreachable",
}
_BY_STAGE = {
    "stt": "I could not understand that: the speech recognition service failed.",
    "completion": "Sorry, I could not get an answer from the assistant service.",
    "tts": "Sorry, the voice service failed while answering.",
    "device": "There is a problem with the microphone or the speaker.",
}


def message_for(failure: Mapping[str, Any]) -> str:
    """One short sentence for a failure from `assistant.failures.describe_failure`."""
    code = str(failure.get("code", ""))
    if code in _UNREACHABLE:
        return "I cannot reach the network service. Please check the connection."
    if code == "timeout":
        return "The service took too long to answer. Please try again."
    if failure.get("status") == 429 or code in ("too_many_requests", "rate_limit_error"):
        return "The service is busy right now. Please try again in a moment."
    if failure.get("status") in (401, 403):
        return "The service refused my key. Please check the configuration."
    return _BY_STAGE.get(str(failure.get("stage")), "Sorry, something went wrong.")
