"""Wiring: settings in, a running voice loop out (devices, providers, event sinks)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

from assistant.config import ConfigError
from assistant.events import Error, Event, EventBus, JsonlWriter, ServiceErrorEvent
from assistant.heap import HeapTrimmer
from assistant.loop import VoiceLoop
from assistant.ports import AudioSink, AudioSource
from assistant.providers.base import ServiceError, Stages
from assistant.providers.chain import FailureReport
from assistant.providers.dify_app import Finding, check_app
from assistant.providers.factory import Services, build_stages
from assistant.settings import Secret, Settings, Trigger
from assistant.watchdog import Watchdog, sd_notify

log = logging.getLogger(__name__)

LOCAL_DEV_KEY = "app-local-dev"
"""Key used with the bundled dev server, which accepts any Bearer token."""


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

    audio = settings.audio
    return Microphone(device=audio.input_device, rate=audio.input_rate, period_ms=audio.period_ms)


def _make_sink(settings: Settings, options: RunOptions) -> AudioSink:
    if options.speaker_wav is not None:
        from hardware.wav_devices import WavFileSink

        return WavFileSink(
            options.speaker_wav,
            sample_rate=settings.audio.output_rate or settings.audio.speaker_wav_rate,
            period_ms=settings.audio.period_ms,
            playback_buffer_s=settings.audio.playback_buffer_s,
        )
    from hardware.speaker import Speaker

    audio = settings.audio
    return Speaker(
        device=audio.output_device,
        rate=audio.output_rate,
        period_ms=audio.period_ms,
        playback_buffer_s=audio.playback_buffer_s,
        device_timeout_s=audio.device_timeout_s,
    )


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
        settings.devserver.host,
        settings.devserver.port,
        # An app set up for in-stream speech auto-plays: so does the bundled one then.
        DevServerOptions(stream_tts=settings.providers.tts == "dify-stream"),
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


async def _warm_up(services: Services, bus: EventBus, timeout_s: float) -> None:
    """Open every service's connections and check Dify's key before the first question."""
    try:
        async with asyncio.timeout(timeout_s):
            failures = await services.warmer.warm()
    except TimeoutError:
        log.error("the services are not reachable yet: warming up timed out")
        bus.publish(Error(stage="startup", code="unreachable", message="timed out"))
        return
    for name, exc in failures.items():
        # Not fatal: the network may come back; each turn reports its own failure.
        log.error("%s is not reachable yet: %s", name, exc or "timed out")
        bus.publish(Error(stage="startup", service=name, code="unreachable", message=str(exc)))


async def _checked_stages(services: Services, settings: Settings, bus: EventBus) -> Stages:
    """The stages to run, once the Dify app read at warm-up is checked against the config.

    What would fail every turn stops the start (ConfigError: exit status 2); a Dify
    provider the app has turned off is left out when the stage has a fallback. A Dify not
    reached at warm-up is no config error: turns go on trying it.
    """
    dify = services.dify
    if dify.app_parameters is None:
        return services.stages
    info = await dify.app_info()
    check = check_app(dify.app_parameters, info, settings.dify, settings.providers)
    for finding in check.findings:
        _report_app_problem(bus, finding)
    if check.fatal:
        first, more = check.fatal[0], len(check.fatal) - 1
        also = f" (and {more} more problem{'s' * (more > 1)}: see the log)" if more else ""
        raise ConfigError(first.setting, first.value, first.message + also)
    if check.providers == settings.providers:
        return services.stages
    return services.with_providers(check.providers)


def _report_app_problem(bus: EventBus, finding: Finding) -> None:
    """One log line and one `error` event (stage `startup`) naming the setting to change."""
    level = logging.ERROR if finding.fatal else logging.WARNING
    log.log(level, "the Dify app does not fit %s: %s", finding.setting, finding.message)
    message = f"{finding.setting}: {finding.message}"
    bus.publish(Error(stage="startup", service="dify", code=finding.code, message=message))


def _failure_publisher(bus: EventBus) -> FailureReport:
    """Every failed attempt of a stage, even one a retry or fallback recovered."""

    def publish(exc: ServiceError, step: str) -> None:
        bus.publish(ServiceErrorEvent(next=step, **exc.as_event()))

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
                await _warm_up(services, bus, live.http.warm_up_timeout_s)
                stages = await _checked_stages(services, live, bus)
                if live.assistant.trigger is Trigger.PUSH_TO_TALK:
                    from hardware.buttons import TalkButton

                    button = TalkButton(
                        asyncio.get_running_loop(),
                        pin=live.button.pin,
                        bounce_ms=live.button.bounce_ms,
                        pin_factory=live.button.pin_factory,
                    )
                source, sink = _make_source(live, options), _make_sink(live, options)
                loop = VoiceLoop(
                    live,
                    source,
                    sink,
                    stages,
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
