"""What the service manager is told: READY=1, STATUS= lines, STOPPING=1 (`Type=notify`).

READY=1 goes out once the microphone and speaker are open, whether or not the watchdog
is on (systemd leaves a notify unit "activating" until it comes). STATUS= says in a few
words what the assistant is doing, for `systemctl status`: connecting, waiting for its
devices, ready, reconnecting. Outside systemd (no NOTIFY_SOCKET) all of it is a no-op.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping

from assistant.events import DeviceRestored, Error, Event, Ready
from assistant.watchdog import sd_notify

STATUS_CHARS = 200
"""`systemctl status` shows one line; a device error can list every device there is."""


def _status(text: str) -> str:
    line = " ".join(text.split())
    if len(line) > STATUS_CHARS:
        line = line[: STATUS_CHARS - 1] + "…"
    return f"STATUS={line}"


def _ready_text(trigger: str) -> str:
    if trigger == "hands_free":
        return "ready: listening"
    if trigger == "wake_word":
        return "ready: waiting for the wake word"
    return "ready: waiting for the talk button"


class ServiceStatus:
    """A bus listener that keeps systemd informed; `notify` is sd_notify but in tests."""

    def __init__(self, notify: Callable[[str], None] = sd_notify) -> None:
        self._notify = notify
        self._ready_text: str | None = None
        """What STATUS says once ready; None until the devices first opened."""

    def say(self, what: str) -> None:
        """A STATUS= line about a step of the start (`connecting to the services`)."""
        self._notify(_status(what))

    def __call__(self, event: Event) -> None:
        if isinstance(event, Ready):
            self._ready_text = _ready_text(event.trigger)
            self._notify(f"READY=1\n{_status(self._ready_text)}")
        elif isinstance(event, Error) and event.stage == "device":
            if self._ready_text is None:
                self._notify(_status(f"waiting for a microphone and speaker: {event.message}"))
            else:
                self._notify(_status(f"reconnecting the microphone and speaker: {event.message}"))
        elif isinstance(event, DeviceRestored) and self._ready_text is not None:
            self._notify(_status(self._ready_text))
        elif isinstance(event, Error) and event.stage == "startup" and event.code == "unreachable":
            service = event.service or "the services"
            self._notify(_status(f"starting: {service} not reachable yet ({event.message})"))


def stopping() -> None:
    """Shutdown has begun (systemd then waits for the exit instead of calling it a crash)."""
    sd_notify(f"STOPPING=1\n{_status('stopping')}")


def watchdog_timeout(watchdog_s: float, environ: Mapping[str, str] = os.environ) -> float | None:
    """How long the Watchdog thread lets the event loop stand still; None = no thread.

    `assistant.watchdog_s` when set. With it off, a unit with WatchdogSec= still needs its
    WATCHDOG=1 pings, so the thread runs without a limit of its own (systemd's applies).
    """
    if watchdog_s:
        return watchdog_s
    pid = environ.get("WATCHDOG_PID")
    if environ.get("WATCHDOG_USEC") and (not pid or pid == str(os.getpid())):
        return math.inf
    return None
