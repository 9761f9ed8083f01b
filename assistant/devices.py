"""Keeping the microphone and speaker open for the voice loop.

`AudioDevices` opens both, and after a failure closes and reopens both with
capped, jittered backoff until they work again. Each outage is announced once
(the error state, an `error` event with stage `device`, one ERROR log line),
reminded at most once a minute while it lasts, and its end is a
`device_restored` event. Reads tell the microphone how much audio it may
collect per handover, and get the speaker ready when speech begins.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable

from assistant.events import DeviceRestored, Error, EventBus
from assistant.ports import (
    AudioBlock,
    AudioSink,
    AudioSource,
    BatchedHandover,
    DeviceError,
    DeviceWedged,
    Preparable,
)
from assistant.states import State

log = logging.getLogger(__name__)

REOPEN_BACKOFF_S = (0.25, 0.5, 1.0, 2.0)
"""Waits between attempts to reopen a vanished device, before jitter; the last one
repeats. The cap keeps a device that comes back in use again within ~2 s."""
STILL_DOWN_LOG_S = 60.0
"""While a device stays away, a reminder is logged at most this often (no flood)."""
IDLE_HANDOVER_S = 0.1
"""While nobody speaks, the microphone may hand over this much audio at a time: the
loop wakes 10 times a second instead of 50. Speech is still classified in 20 ms
frames; only noticing that it started can come up to this much later."""


def reopen_delay(attempt: int) -> float:
    """Backoff before reopen attempt `attempt` + 1: doubling, capped, with jitter
    (half to all of the step) so that several devices do not retry in lockstep."""
    step = REOPEN_BACKOFF_S[min(attempt, len(REOPEN_BACKOFF_S) - 1)]
    return step * random.uniform(0.5, 1.0)


class InputEnded(Exception):
    """The (file) microphone has no more audio."""


class AudioDevices:
    """The microphone and speaker pair: opened, read, and reopened after failures."""

    def __init__(
        self,
        source: AudioSource,
        sink: AudioSink,
        bus: EventBus,
        set_state: Callable[[State], None],
        read_timeout_s: float,
        on_open: Callable[[], None] | None = None,
    ) -> None:
        """`on_open` runs each time both devices have (re)opened."""
        self._source = source
        self._sink = sink
        self._bus = bus
        self._set_state = set_state
        self._read_timeout_s = read_timeout_s
        self._on_open = on_open
        self._handover = source if isinstance(source, BatchedHandover) else None
        self._handover_s = 0.0
        self._preparer = sink if isinstance(sink, Preparable) else None
        self._was_in_utterance = False
        self._down_since: float | None = None
        """time.monotonic() when the current outage was announced; None when all is well."""

    async def open(self) -> None:
        """Open both devices, retrying with capped, jittered backoff until they do.

        DeviceWedged is raised at once: the audio library is hung in this process.
        """
        attempt = 0
        last_reminder = time.monotonic()
        while True:
            try:
                await self._source.start()
                await self._sink.start()
            except DeviceWedged:
                raise  # no retry can succeed in this process
            except DeviceError as exc:
                await self.close()
                wait = reopen_delay(attempt)
                attempt += 1
                if self._down_since is None:
                    self._announce(exc, "opening the audio devices")
                elif time.monotonic() - last_reminder >= STILL_DOWN_LOG_S:
                    last_reminder = time.monotonic()
                    log.warning(
                        "audio devices still unavailable after %d attempts: %s", attempt, exc
                    )
                else:
                    log.debug("reopen attempt %d failed (%s); next in %.2f s", attempt, exc, wait)
                await asyncio.sleep(wait)
                continue
            self._handover_s = 0.0  # a new source starts with every block handed over
            if self._on_open is not None:
                self._on_open()
            if self._down_since is not None:
                outage = time.monotonic() - self._down_since
                self._down_since = None
                log.info("audio devices are back after %.1f s (%d attempts)", outage, attempt)
                self._bus.publish(DeviceRestored(outage_s=round(outage, 3), attempts=attempt))
            return

    async def close(self) -> None:
        """Close both; never raises (a failure to close is logged)."""
        for device in (self._source, self._sink):
            try:
                await device.close()
            except Exception:
                log.exception("closing %s failed", type(device).__name__)

    async def recover(self, exc: BaseException, what: str) -> None:
        """`what` failed: announce it (once per outage), then reopen both until they work."""
        self._announce(exc, what)
        await self.close()
        await self.open()

    def outage_announced(self, exc: BaseException) -> None:
        """A turn's own error event has announced this outage: `recover` stays quiet."""
        if self._down_since is None:
            self._down_since = time.monotonic()
            log.error("the speaker failed too (%s); reopening the audio devices", exc)

    async def read(self, *, in_utterance: bool, quiet: bool) -> AudioBlock:
        """The microphone's next block; InputEnded when a file source has no more.

        `quiet` (nobody speaking, nothing playing) lets the microphone batch its
        handover; the speaker is readied as an utterance begins, since an answer
        may follow. Raises DeviceError or TimeoutError from the microphone.
        """
        handover_s = IDLE_HANDOVER_S if quiet else 0.0
        if handover_s != self._handover_s and self._handover is not None:
            self._handover.set_handover(handover_s)
        self._handover_s = handover_s
        if in_utterance and not self._was_in_utterance and self._preparer is not None:
            self._preparer.prepare()
        self._was_in_utterance = in_utterance
        block = await self._source.read(timeout=self._read_timeout_s)
        if block is None:
            raise InputEnded
        return block

    def _announce(self, exc: BaseException, what: str) -> None:
        """Say once per outage that a device failed: the error state, event and log line."""
        if self._down_since is not None:
            log.debug("%s failed again during the outage: %s", what, exc)
            return
        self._down_since = time.monotonic()
        message = str(exc) or type(exc).__name__
        self._set_state(State.ERROR)
        self._bus.publish(Error(stage="device", code="device_error", message=message))
        log.error("%s failed (%s); reopening the audio devices", what, message)
