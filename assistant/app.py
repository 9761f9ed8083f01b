"""Wiring: settings in, a running voice loop out (devices, providers, event sinks)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from assistant.config import ConfigError, missing_key_error
from assistant.controls import Controls
from assistant.event_server import EventServer, start_event_server
from assistant.events import Error, EventBus, JsonlWriter, ServiceErrorEvent
from assistant.heap import HeapTrimmer
from assistant.logs import log_event
from assistant.loop import VoiceLoop
from assistant.pin_checks import CONTROL_PIN_KEYS
from assistant.ports import AudioSink, AudioSource, Button
from assistant.providers.base import ServiceError, Stages
from assistant.providers.chain import FailureReport
from assistant.providers.dify_app import Finding, check_app
from assistant.providers.factory import Services, build_stages
from assistant.service_status import ServiceStatus, watchdog_timeout
from assistant.settings import LedKind, Secret, Settings
from assistant.status_light import StatusLightFollower, patterns
from assistant.volume import STATE_FILE, Volume, state_dir
from assistant.watchdog import Watchdog

if TYPE_CHECKING:
    from hardware.gpio import Pins

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
    dev_server: bool = False
    """Answer from the bundled dev server (`demo`, `run --dev-server`); never implied by a
    missing key, which stops the run instead."""


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
async def local_dev_server(settings: Settings) -> AsyncIterator[Settings]:
    """Run against the bundled dev server (the demo needs no account): the settings to
    use while it runs. Its `/_dev/` levers stay off: nobody here steers it."""
    from assistant.devserver import DevServerOptions, start_devserver

    server = await start_devserver(
        settings.devserver.host,
        settings.devserver.port,
        # An app set up for in-stream speech auto-plays: so does the bundled one then.
        DevServerOptions(stream_tts=settings.providers.tts == "dify-stream"),
    )
    log.warning("answering from the bundled dev server at %s", server.base_url)
    try:
        yield dataclasses.replace(
            settings,
            dify=dataclasses.replace(
                settings.dify, base_url=server.base_url, api_key=Secret(LOCAL_DEV_KEY)
            ),
        )
    finally:
        await server.stop()


@contextlib.asynccontextmanager
async def _as_is(settings: Settings) -> AsyncIterator[Settings]:
    yield settings


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


async def _checked_stages(
    services: Services, settings: Settings, bus: EventBus, events: EventServer | None = None
) -> Stages:
    """The stages to run, once the Dify app read at warm-up is checked against the config.

    What would fail every turn stops the start (ConfigError: exit status 2); a Dify
    provider the app has turned off is left out when the stage has a fallback. A Dify not
    reached at warm-up is no config error: turns go on trying it.
    """
    dify = services.dify
    if dify.app_parameters is None:
        return services.stages
    info = await dify.app_info()
    if events is not None and info is not None:
        events.snapshot.app = str(info.get("name") or "") or None  # for the kiosk's hello
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


def _volume(settings: Settings) -> Volume:
    """The output level, kept in the state directory across restarts."""
    v = settings.volume
    return Volume(
        default_db=v.default_db,
        step_db=v.step_db,
        min_db=v.min_db,
        max_db=v.max_db,
        path=state_dir(settings.assistant.state_dir) / STATE_FILE,
    )


def _control_actions(controls: Controls) -> dict[str, Callable[[], object]]:
    """What each optional button does, by its `[button]` key."""
    return {
        "cancel_pin": controls.cancel,
        "mute_pin": controls.toggle_mute,
        "volume_up_pin": lambda: controls.volume_step(+1),
        "volume_down_pin": lambda: controls.volume_step(-1),
    }


def _pins(settings: Settings) -> Pins | None:
    """The one pin factory of every GPIO device; None when none is configured (gpiozero,
    some 9 MB, is then not even imported)."""
    if (
        not settings.assistant.trigger.uses_button
        and settings.leds.kind is LedKind.NONE
        and all(getattr(settings.button, key) < 0 for key in CONTROL_PIN_KEYS)
    ):
        return None
    from hardware.gpio import Pins

    return Pins(settings.button.pin_factory)


@contextlib.contextmanager
def _button_config_errors(settings: Settings) -> Iterator[None]:
    """A button that cannot be opened stops the start (exit status 2), naming its key."""
    from hardware.gpio import PinError, PinFactoryError

    try:
        yield
    except PinFactoryError as exc:
        raise ConfigError("button.pin_factory", settings.button.pin_factory, exc.reason) from exc
    except PinError as exc:
        [(key, pin)] = exc.pins.items()
        raise ConfigError(key, pin, exc.reason) from exc


def _talk_button(
    settings: Settings, pins: Pins | None, gpio: contextlib.ExitStack
) -> Button | None:
    """The talk button, for the triggers that use one (push-to-talk, toggle)."""
    if pins is None or not settings.assistant.trigger.uses_button:
        return None
    from hardware.buttons import TalkButton

    with _button_config_errors(settings):
        button = TalkButton(
            asyncio.get_running_loop(),
            pin=settings.button.pin,
            bounce_ms=settings.button.bounce_ms,
            pin_factory=pins.factory(),
        )
    gpio.callback(button.close)
    return button


def _control_buttons(
    settings: Settings, pins: Pins | None, controls: Controls, gpio: contextlib.ExitStack
) -> None:
    """The cancel, mute and volume buttons that are fitted, each calling its control on
    the event loop's thread."""
    if pins is None:
        return
    from hardware.buttons import PressButton

    for key, action in _control_actions(controls).items():
        if (pin := getattr(settings.button, key)) < 0:
            continue
        with _button_config_errors(settings):
            button = PressButton(
                asyncio.get_running_loop(),
                pin=pin,
                bounce_ms=settings.button.bounce_ms,
                action=action,
                label=f"button.{key}",
                pin_factory=pins.factory(),
            )
        gpio.callback(button.close)


def _status_light(
    settings: Settings, pins: Pins | None, bus: EventBus, gpio: contextlib.ExitStack
) -> None:
    """The status LED following the events; one that cannot be opened is logged once and
    the assistant runs without it (a light is no reason to stay silent)."""
    leds = settings.leds
    if pins is None or leds.kind is LedKind.NONE:
        return
    from hardware.gpio import PinError, PinFactoryError
    from hardware.status_led import GpioStatusLight

    try:
        light = GpioStatusLight(
            leds.kind.value,
            {f"leds.{key}": getattr(leds, key) for key in leds.pin_keys()},
            active_high=leds.active_high,
            brightness=leds.brightness,
            pin_factory=pins.factory(),
        )
    except (PinError, PinFactoryError) as exc:
        log.error("running without the status LED: %s", exc)
        return
    follower = StatusLightFollower(light, patterns(leds), error_hold_s=leds.error_hold_s)
    bus.add_listener(follower.on_event)
    gpio.callback(follower.close)


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
    if not options.dev_server and (missing := missing_key_error(settings)) is not None:
        raise missing
    bus = bus or EventBus()
    # Listening from the start (the hello's state); a missing token stops the start here.
    events = EventServer(settings.events, bus) if settings.events.enabled else None
    bus.add_listener(log_event)
    status = ServiceStatus()
    bus.add_listener(status)
    status.say("starting: connecting to the services")
    watchdog = None
    if (limit := watchdog_timeout(settings.assistant.watchdog_s)) is not None:
        watchdog = Watchdog(asyncio.get_running_loop(), limit)
        watchdog.start()
    writer = JsonlWriter(options.events_jsonl) if options.events_jsonl else None
    if writer is not None:
        bus.add_listener(writer)
    trimmer = HeapTrimmer()
    bus.add_listener(trimmer.on_event)
    try:
        async with (
            local_dev_server(settings) if options.dev_server else _as_is(settings) as live,
            build_stages(live, _failure_publisher(bus)) as services,
        ):
            bus.add_listener(services.warmer.on_event)
            # Every GPIO device, closed together; their one pin factory last.
            gpio = contextlib.ExitStack()
            try:
                if (pins := _pins(live)) is not None:
                    gpio.callback(pins.close)
                _status_light(live, pins, bus, gpio)
                await _warm_up(services, bus, live.http.warm_up_timeout_s)
                stages = await _checked_stages(services, live, bus, events)
                button = _talk_button(live, pins, gpio)
                status.say("opening the microphone and speaker")
                source, sink = _make_source(live, options), _make_sink(live, options)
                volume = _volume(live)
                loop = VoiceLoop(
                    live,
                    source,
                    sink,
                    stages,
                    bus,
                    button,
                    _timeline_aligner(source, sink),
                    volume,
                )
                _control_buttons(live, pins, loop, gpio)
                await start_event_server(events, bus, loop, volume)
                await loop.run()
            finally:
                if events is not None:
                    await events.stop()
                gpio.close()
    finally:
        trimmer.close()
        if watchdog is not None:
            watchdog.stop()
        if writer is not None:
            writer.close()
