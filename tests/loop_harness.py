"""The real loop in file mode over real HTTP, driven from a test: a scripted microphone
that speaks when told to, a WAV speaker on the monotonic timeline, and every event kept
and waited for by kind and fields."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from assistant.devserver import RunningDevServer
from assistant.events import Event, EventBus
from assistant.loop import VoiceLoop
from assistant.providers.factory import build_stages
from assistant.settings import DifySettings, EarconSettings, Secret, Settings
from assistant.volume import Volume
from bench.soak import ScriptedMic
from hardware.wav_devices import WavFileSink, read_wav


@dataclass
class Running:
    """A loop running in a task, and everything it has published so far."""

    loop: VoiceLoop
    mic: ScriptedMic
    sink: WavFileSink
    seen: list[Event] = field(default_factory=list)
    _waiters: list[tuple[Callable[[Event], bool], asyncio.Future[Event]]] = field(
        default_factory=list
    )

    def on_event(self, event: Event) -> None:
        self.seen.append(event)
        for predicate, future in list(self._waiters):
            if not future.done() and predicate(event):
                future.set_result(event)

    async def until(
        self, kind: str, timeout: float = 30, since: int | None = None, **match: Any
    ) -> Event:
        """The next event of `kind` (with these fields) from now on, or since event `since`."""

        def wanted(e: Event) -> bool:
            return e.kind == kind and all(e.data.get(k) == v for k, v in match.items())

        if since is not None:
            for event in self.seen[since:]:
                if wanted(event):
                    return event
        future: asyncio.Future[Event] = asyncio.get_running_loop().create_future()
        entry = (wanted, future)
        self._waiters.append(entry)
        try:
            return await asyncio.wait_for(future, timeout)
        finally:
            self._waiters.remove(entry)

    def kinds(self, kind: str) -> list[Event]:
        return [e for e in self.seen if e.kind == kind]


@contextlib.asynccontextmanager
async def running(
    server: RunningDevServer,
    tmp_path: Path,
    volume: Volume | None = None,
    sentences: int = 2,
    **earcons: Any,
) -> AsyncIterator[Running]:
    """A hands-free loop against the dev server (answers of `sentences` sentences), with
    these `[earcons]` settings; stopped on leaving."""
    server.state.options = dataclasses.replace(server.state.options, reply_sentences=sentences)
    settings = Settings(
        dify=DifySettings(base_url=server.base_url, api_key=Secret("app-x")),
        earcons=EarconSettings(**earcons),
    )
    mic = ScriptedMic(seed=1)
    sink = WavFileSink(tmp_path / "out.wav", sample_rate=24_000, period_ms=20)
    bus = EventBus()
    async with build_stages(settings) as services:
        loop = VoiceLoop(settings, mic, sink, services.stages, bus, volume=volume)
        harness = Running(loop, mic, sink)
        bus.add_listener(harness.on_event)
        task = asyncio.create_task(loop.run())
        try:
            await harness.until("ready")
            yield harness
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def loud_times(path: Path, threshold: int = 300) -> tuple[np.ndarray, int]:
    """When the WAV speaker was loud (seconds from its start), and its rate."""
    heard, rate = read_wav(path)
    return np.flatnonzero(np.abs(heard.astype(np.int32)) > threshold) / rate, rate
