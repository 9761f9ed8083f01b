"""Wiring: settings in, a running voice loop out (devices, providers, event sinks)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

from assistant.events import Event, EventBus, JsonlWriter
from assistant.heap import HeapTrimmer
from assistant.loop import VoiceLoop
from assistant.ports import AudioSink, AudioSource
from assistant.providers.base import ServiceError
from assistant.providers.chain import FailureReport
from assistant.providers.factory import Services, build_stages
from assistant.settings import Secret, Settings, Trigger
from assistant.watchdog import Watchdog, sd_notify

log = logging.getLogger(__name__)

LOCAL_DEV_KEY = "app-local-dev"
"""Key used with the bundled dev server, which accepts any Bearer token."""

WARM_UP_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class RunOptions:
    mic_wav: Path | None = None
    """Microphone replaced by this WAV, fed in real time; the run ends with it."""
    speaker_wav: Path | None = None
    """Speaker replaced by this WAV, written on the microphone's timeline."""
    events_jsonl: Path | None = None
    """Every event as one JSON line."""
    source: AudioSource | None = None
    """A ready-made microphone (a benchmark's scripted one); takes precedence over mic_wav."""


def _log_event(event: Event) -> None:
    if event.kind in ("transcript", "answer"):
        log.info("%s: %s", event.kind, event.data.get("text", ""))
    elif event.kind == "utterance_dropped":
        log.info("utterance dropped: %s", event.data.get("reason"))
    elif event.kind == "state":
        log.debug("state: %s", event.data.get("state"))


def _notify_systemd(event: Event) -> None:
    if event.kind == "ready":
        sd_notify("READY=1")


def _make_source(settings: Settings, options: RunOptions) -> AudioSource:
    if options.source is not None:
        return options.source
    if options.mic_wav is not None:
        from hardware.wav_devices import WavFileSource

        return WavFileSource(options.mic_wav, block_ms=settings.audio.period_ms)
    from hardware.microphone import Microphone

    return Microphone(settings.audio)


def _make_sink(settings: Settings, options: RunOptions) -> AudioSink:
    if options.speaker_wav is not None:
        from hardware.wav_devices import WavFileSink

        rate = settings.audio.output_rate or 24_000
        return WavFileSink(
            options.speaker_wav,
            sample_rate=rate,
            period_ms=settings.audio.period_ms,
            playback_buffer_s=settings.audio.playback_buffer_s,
        )
    from hardware.speaker import Speaker

    return Speaker(settings.audio)


def _timeline_aligner(source: AudioSource, sink: AudioSink) -> Callable[[], None] | None:
    """With a WAV microphone and a WAV speaker, put both on one timeline.

    Sample n of the speaker file is then what played n samples after the
    microphone file started, so latency can be read off the two files.
    """
    from hardware.wav_devices import WavFileSink, WavFileSource

    if isinstance(source, WavFileSource) and isinstance(sink, WavFileSink):
        return lambda: sink.set_t0(source.t0)
    return None


@contextlib.asynccontextmanager
async def local_server_if_needed(settings: Settings) -> AsyncIterator[Settings]:
    """With no API key, run against the bundled dev server: the demo needs no account."""
    if settings.dify.api_key:
        yield settings
        return
    from assistant.devserver import DevServerOptions, start_devserver

    server = await start_devserver(
        settings.devserver.host, settings.devserver.port, DevServerOptions()
    )
    log.warning("no DIFY_API_KEY: answering from the bundled dev server at %s", server.base_url)
    try:
        yield dataclasses.replace(
            settings,
            dify=dataclasses.replace(
                settings.dify, base_url=server.base_url, api_key=Secret(LOCAL_DEV_KEY)
            ),
        )
    finally:
        await server.stop()


async def _warm_up(services: Services, bus: EventBus) -> None:
    """Open every service's connections and check Dify's key before the first question."""
    try:
        async with asyncio.timeout(WARM_UP_TIMEOUT_S):
            failures = await services.warmer.warm()
    except TimeoutError:
        log.error("the services are not reachable yet: warming up timed out")
        bus.publish("error", stage="startup", code="unreachable", message="timed out")
        return
    for name, exc in failures.items():
        # Not fatal: the network may come back; each turn reports its own failure.
        log.error("%s is not reachable yet: %s", name, exc or "timed out")
        bus.publish("error", stage="startup", service=name, code="unreachable", message=str(exc))
    params = services.dify.app_parameters or {}
    if not params.get("text_to_speech", {}).get("enabled", True):
        log.warning("this Dify app has text-to-speech disabled; /text-to-audio will fail")


def _failure_publisher(bus: EventBus) -> FailureReport:
    """Every failed attempt of a stage, even one a retry or fallback recovered."""

    def publish(exc: ServiceError, step: str) -> None:
        bus.publish("service_error", next=step, **exc.as_event())

    return publish


async def run_assistant(
    settings: Settings, options: RunOptions, bus: EventBus | None = None
) -> None:
    """Run until a file microphone is exhausted, or until cancelled on real devices.

    `bus`: subscribe to it beforehand to watch the run (tests, a kiosk page).
    """
    bus = bus or EventBus()
    bus.add_listener(_log_event)
    watchdog = None
    if settings.assistant.watchdog_s:
        watchdog = Watchdog(asyncio.get_running_loop(), settings.assistant.watchdog_s)
        watchdog.start()
        bus.add_listener(_notify_systemd)
    writer = JsonlWriter(options.events_jsonl) if options.events_jsonl else None
    if writer is not None:
        bus.add_listener(writer)
    trimmer = HeapTrimmer()
    bus.add_listener(trimmer.on_event)
    try:
        async with (
            local_server_if_needed(settings) as live,
            build_stages(live, _failure_publisher(bus)) as services,
        ):
            bus.add_listener(services.warmer.on_event)
            button = None
            try:
                await _warm_up(services, bus)
                if live.assistant.trigger is Trigger.PUSH_TO_TALK:
                    from hardware.buttons import TalkButton

                    button = TalkButton(live.button, asyncio.get_running_loop())
                source, sink = _make_source(live, options), _make_sink(live, options)
                loop = VoiceLoop(
                    live,
                    source,
                    sink,
                    services.stages,
                    bus,
                    button,
                    _timeline_aligner(source, sink),
                )
                await loop.run()
            finally:
                if button is not None:
                    button.close()
    finally:
        trimmer.close()
        if watchdog is not None:
            watchdog.stop()
        if writer is not None:
            writer.close()
