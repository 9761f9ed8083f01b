"""A watchdog thread: if the event loop stops turning, the process exits so systemd restarts it.

Timeouts bound every await, but nothing bounds code that blocks the loop
itself (a stuck driver call, a runaway computation). A thread outside the
loop pings it; when no answer comes within `timeout_s` the process exits with
EXIT_HUNG. Under systemd with `WatchdogSec=`, each answered ping is also
passed on as `WATCHDOG=1`, so a hang is caught from both sides.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import threading
import time

EXIT_HUNG = 70
"""Exit status of a hung process (EX_SOFTWARE)."""


def sd_notify(message: str) -> None:
    """Tell systemd (Type=notify / WatchdogSec) something; a no-op outside systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]  # abstract namespace
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto(message.encode(), address)
    except OSError:
        pass  # systemd gone or not listening: nothing useful to do about it


class Watchdog:
    def __init__(self, loop: asyncio.AbstractEventLoop, timeout_s: float, interval_s: float = 1.0):
        self._loop = loop
        self._timeout_s = timeout_s
        self._interval_s = min(interval_s, timeout_s / 3)
        self._last_pong = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="watchdog", daemon=True)

    def start(self) -> None:
        self._last_pong = time.monotonic()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(self._interval_s * 2)

    def _pong(self) -> None:
        self._last_pong = time.monotonic()

    def _watch(self) -> None:
        while not self._stop.wait(self._interval_s):
            silent = time.monotonic() - self._last_pong
            if silent > self._timeout_s:
                self._die(silent)
            if silent <= self._interval_s * 2:
                sd_notify("WATCHDOG=1")
            try:
                self._loop.call_soon_threadsafe(self._pong)
            except RuntimeError:
                return  # the loop is closed: the program is ending normally

    def _die(self, silent: float) -> None:
        # Logging may be what hangs (a held lock), so write straight to fd 2.
        os.write(
            sys.stderr.fileno(),
            f"watchdog: the event loop has not turned for {silent:.1f} s; exiting\n".encode(),
        )
        os._exit(EXIT_HUNG)
