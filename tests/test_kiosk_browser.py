"""The kiosk page in a real browser (Debian's Chromium, through Playwright), against the
real assistant: PyAudio on PulseAudio null sinks, the dev server over HTTP, the event
server on a free port.

A question spoken by espeak-ng is played into the microphone's sink; what the page shows is
recorded in the page itself after every change (tests/browser.py), so the tests assert on
everything it showed over the turn, not only on where it ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import struct
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from audio_samples import concat, silence, speech_16k
from browser import Browser, KioskPage, Touch, View
from clean_env import clean_environment
from gpiozero.pins.mock import MockFactory
from pulse import PulseServer

from assistant import events
from assistant.app import RunOptions, run_assistant
from assistant.devserver import DevServerOptions, RunningDevServer
from assistant.event_server import EventServer
from assistant.settings import (
    AssistantSettings,
    DifySettings,
    EventsSettings,
    Secret,
    Settings,
    Trigger,
)

QUESTION = "What is the weather like on Mars?"
DEV_SERVER_OPTIONS = DevServerOptions(reply_sentences=3)
# Written slowly enough (8 tokens a second) that the second and third sentences arrive while
# the first is being spoken: the page must show each as it comes.
DEV_SERVER_LATENCY = dict(stt_latency_ms=150, first_token_ms=150, tokens_per_second=8)
ROOT = Path(__file__).resolve().parent.parent
SCREENSHOT = ROOT / "docs" / "kiosk.png"
UPDATE_SCREENSHOT_ENV = "VOICE_ASSISTANT_UPDATE_SCREENSHOT"
"""Set to 1, the screenshot test writes docs/kiosk.png (else only to its tmp_path)."""
SCREENSHOT_SIZE = (1280, 720)
START_TIMEOUT_S = 20.0
TURN_TIMEOUT_S = 45.0
STOP_TIMEOUT_S = 10.0
PAGE_TIMEOUT_S = 10.0
VIEWPORTS = [(800, 480), (1920, 1080)]
"""The smallest screen it is made for (the Raspberry Pi touch display) and full HD."""
THINKING = ("transcribing", "thinking")


# -- running the assistant -------------------------------------------------------------


@dataclass
class Running:
    """An assistant started in this process, where its page is, and what it published."""

    events: events.Subscription
    url: str = ""
    published: list[events.Event] = field(default_factory=list)
    """Every event taken from the bus so far, in order."""

    def take(self) -> list[events.Event]:
        """`published`, with what the bus holds now."""
        while (event := self.events.get_nowait()) is not None:
            self.published.append(event)
        return self.published

    async def next(self, kind: str, timeout: float) -> events.Event:
        """The next event of `kind` (those before it are kept in `published` too)."""
        self.take()
        async with asyncio.timeout(timeout):
            while True:
                event = await self.events.get()
                self.published.append(event)
                if event.kind == kind:
                    return event


def _settings(server: RunningDevServer, tmp_path: Path, trigger: Trigger) -> Settings:
    return Settings(
        assistant=AssistantSettings(trigger=trigger, state_dir=str(tmp_path)),
        dify=DifySettings(base_url=server.base_url, api_key=Secret("app-x")),
    )


@contextlib.asynccontextmanager
async def _assistant(
    settings: Settings, event_servers: list[EventServer]
) -> AsyncIterator[Running]:
    """The assistant on the default (PulseAudio) devices, until the block ends."""
    bus = events.EventBus()
    running = Running(bus.subscribe(5000))
    task = asyncio.create_task(run_assistant(settings, RunOptions(), bus))
    try:
        ready = asyncio.create_task(running.next("ready", START_TIMEOUT_S))
        await asyncio.wait({ready, task}, return_when=asyncio.FIRST_COMPLETED)
        if not ready.done():
            ready.cancel()
            task.result()  # its exception, if it failed
            raise AssertionError("the assistant stopped before it was ready")
        ready.result()
        # The event server listens before `ready` (conftest gave it port 0).
        running.url = f"http://127.0.0.1:{event_servers[-1].port}/"
        yield running
    finally:
        task.cancel()
        await asyncio.wait({task}, timeout=STOP_TIMEOUT_S)
        assert task.done(), f"the assistant did not stop within {STOP_TIMEOUT_S} s"
        if not task.cancelled() and (error := task.exception()) is not None:
            raise error


@contextlib.asynccontextmanager
async def _opened(
    browser: Browser, url: str, size: tuple[int, int], *, touch: bool = False
) -> AsyncIterator[KioskPage]:
    """The page, once it has its hello; closed after."""
    page = await browser.open(url, *size, touch=touch)
    try:
        await page.wait_until("view.state !== 'connecting'", PAGE_TIMEOUT_S)
        yield page
    finally:
        await page.close()


async def _ask(pulse: PulseServer) -> None:
    """Say the question into the microphone; returns when it has been said."""
    # Leading silence: a new PulseAudio stream may swallow its first few hundred ms.
    player = pulse.play_into_mic((concat(silence(600), speech_16k(QUESTION)), 16_000))
    await asyncio.to_thread(player.wait, 15)


def _states(views: list[View]) -> list[str]:
    """The states shown, each once per stretch."""
    out: list[str] = []
    for view in views:
        if not out or out[-1] != view.state:
            out.append(view.state)
    return out


def _in_order(seen: list[str], wanted: list[tuple[str, ...]]) -> bool:
    """Whether `seen` has one of each group of `wanted`, in that order."""
    rest = iter(seen)
    return all(any(state in group for state in rest) for group in wanted)


def _no_page_errors(page: KioskPage, *, connection_errors: bool = False) -> None:
    assert page.page_errors == [], page.page_errors
    errors = page.console_errors
    if connection_errors:
        # A reconnection attempt while nothing listens is logged by the browser itself.
        errors = [e for e in errors if "WebSocket connection to" not in e]
    assert errors == [], errors


# -- a: a whole hands-free turn --------------------------------------------------------


@pytest.mark.pulse
async def test_the_page_follows_a_spoken_turn_state_by_state_and_sentence_by_sentence(
    pulse: PulseServer,
    server: RunningDevServer,
    browser: Browser,
    event_servers: list[EventServer],
    tmp_path: Path,
) -> None:
    settings = _settings(server, tmp_path, Trigger.HANDS_FREE)
    async with (
        _assistant(settings, event_servers) as assistant,
        _opened(browser, assistant.url, (1280, 720)) as page,
    ):
        await page.wait_for_state("listening", timeout=PAGE_TIMEOUT_S)
        before, start = len(await page.history()), len(assistant.take())
        await _ask(pulse)
        await assistant.next("marks", TURN_TIMEOUT_S)
        published = assistant.take()[start:]
        # The turn's last events reach the page a moment later.
        await page.wait_until("view.marks.includes('first sound')", PAGE_TIMEOUT_S)
        shown = (await page.history())[before - 1 :]
        _no_page_errors(page)

    sentences = tuple(e.data["text"] for e in published if e.kind == "sentence")
    spoken = tuple(r.details["text"] for r in server.state.records("text-to-audio"))
    assert len(sentences) == 3 and sentences == spoken
    # Every state the loop went through, in its order: none skipped, none invented.
    loop_states = [e.data["state"] for e in published if e.kind == "state"]
    page_states = _states(shown)
    assert page_states[0] == "listening", page_states
    assert page_states[1 : 1 + len(loop_states)] == loop_states, (page_states, loop_states)
    assert _in_order(page_states, [("listening",), THINKING, ("speaking",)]), page_states
    for view in shown:
        assert view.data_state == view.state and view.colour == f"var(--{_colour(view.state)})"

    # What was heard, from the moment it was known and for the rest of the turn.
    heard = [v for v in shown if v.transcript]
    assert heard and all(v.transcript == QUESTION for v in heard)
    assert all(v.transcript == QUESTION for v in shown if v.state == "speaking")
    # The answer grew one sentence at a time, and was still growing while speaking.
    answers = [v.answer for v in shown]
    grown = [a for i, a in enumerate(answers) if i == 0 or a != answers[i - 1]]
    assert grown == [sentences[:n] for n in range(len(sentences) + 1)], grown
    assert any(v.state == "speaking" and 0 < len(v.answer) < 3 for v in shown), (
        "no sentence was added while the answer was being spoken"
    )
    assert shown[-1].answer == sentences and shown[-1].banner == ""
    assert "last turn" in shown[-1].marks and "first sound" in shown[-1].marks


def _colour(state: str) -> str:
    """The page's colour variable for a state (transcribing pulses in thinking's colour)."""
    return {"transcribing": "thinking"}.get(state, state)


# -- b: the on-screen talk button ------------------------------------------------------


@pytest.mark.pulse
@pytest.mark.parametrize("how", ["mouse", "touch"])
async def test_holding_the_talk_button_asks_and_releasing_it_ends_the_question(
    how: Touch,
    pulse: PulseServer,
    server: RunningDevServer,
    browser: Browser,
    event_servers: list[EventServer],
    mock_pins: MockFactory,  # push-to-talk opens the GPIO talk button too: a mock pin
    tmp_path: Path,
) -> None:
    settings = _settings(server, tmp_path, Trigger.PUSH_TO_TALK)
    async with (
        _assistant(settings, event_servers) as assistant,
        _opened(browser, assistant.url, (800, 480), touch=how == "touch") as page,
    ):
        connected = await page.view()
        assert connected.talk_shown and connected.talk_enabled, (
            "no talk button: the assistant's hello does not list talk_start"
        )
        before, start = len(await page.history()), len(assistant.take())
        pressed = time.monotonic()
        await page.press_talk(how)
        await page.wait_for_state("listening", timeout=PAGE_TIMEOUT_S)
        await _ask(pulse)
        released = time.monotonic()
        await page.release_talk(how)
        await page.wait_until(
            "view.state === 'speaking' && view.transcript === arg", TURN_TIMEOUT_S, QUESTION
        )
        shown = (await page.history())[before - 1 :]
        published = assistant.take()[start:]
        sent = await page.sent()
        _no_page_errors(page)

    assert sent == ["talk_start", "talk_stop"]
    page_states = _states(shown)
    assert _in_order(page_states, [("idle",), ("listening",), THINKING, ("speaking",)])
    assert any(v.talk_held and v.state == "listening" for v in shown), "not shown held"
    assert not shown[-1].talk_held
    # The press opened the utterance and the release closed it: nothing else ends one in
    # push-to-talk, and the upload is the held audio (plus the pre-roll).
    opened = next(e for e in published if e.kind == "listening_started")
    closed = next(e for e in published if e.kind == "utterance")
    assert pressed < opened.t < released < closed.t
    [upload] = server.state.records("audio-to-text")
    assert upload.details["transcript"] == QUESTION
    preroll = settings.vad.preroll_ms / 1000
    assert upload.details["audio_duration_s"] == pytest.approx(
        released - pressed + preroll, abs=0.2
    )


# -- c: the assistant killed and started again -----------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.asynccontextmanager
async def _assistant_process(
    server: RunningDevServer, port: int, tmp_path: Path, name: str
) -> AsyncIterator[asyncio.subprocess.Process]:
    """`voice-assistant run` as its own process (so it can be killed), on the PulseAudio
    devices, its event server on `port`."""
    env = clean_environment()
    env.update(
        DIFY_API_KEY="app-x",
        DIFY_BASE_URL=server.base_url,
        VOICE_ASSISTANT_EVENTS_PORT=str(port),
        VOICE_ASSISTANT_ASSISTANT_STATE_DIR=str(tmp_path),
    )
    with (tmp_path / f"{name}.log").open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "assistant", "run", cwd=ROOT, env=env, stdout=log, stderr=log
        )
    try:
        yield process
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), STOP_TIMEOUT_S)
            except TimeoutError:
                process.kill()
                await asyncio.wait_for(process.wait(), STOP_TIMEOUT_S)


@pytest.mark.pulse
async def test_the_page_reconnects_to_an_assistant_killed_and_started_again(
    pulse: PulseServer, server: RunningDevServer, browser: Browser, tmp_path: Path
) -> None:
    port = _free_port()  # both assistants on it: the page knows only its own address
    async with _assistant_process(server, port, tmp_path, "first") as first:
        await _listening(port, first, tmp_path / "first.log")
        async with _opened(browser, f"http://127.0.0.1:{port}/", (800, 480)) as page:
            await page.wait_for_state("listening", timeout=PAGE_TIMEOUT_S)
            first.kill()  # SIGKILL: no goodbye, the connection just ends
            await asyncio.wait_for(first.wait(), STOP_TIMEOUT_S)
            await page.wait_for_state("reconnecting", timeout=PAGE_TIMEOUT_S)
            # One attempt has failed while nothing listened: it tries again, and says so.
            await page.wait_until(
                "view.state === 'reconnecting' && view.banner.includes('attempt 2')",
                PAGE_TIMEOUT_S,
            )
            async with _assistant_process(server, port, tmp_path, "second") as second:
                await page.wait_until("view.state === 'listening' && !view.banner", START_TIMEOUT_S)
                assert second.returncode is None, _tail(tmp_path / "second.log")
                shown = await page.history()
                received = await page.received()
            _no_page_errors(page, connection_errors=True)

    assert received.count("hello") == 2, received
    after_kill = shown[[v.state for v in shown].index("reconnecting") :]
    assert after_kill[-1].state == "listening" and after_kill[-1].banner == ""
    # Until then it said it was reconnecting, counting its attempts.
    attempts = [v.banner for v in after_kill if v.banner]
    assert attempts[:2] == [f"Reconnecting to the assistant (attempt {n})…" for n in (1, 2)]
    assert all(v.state == "reconnecting" for v in after_kill if v.banner)


def _tail(log: Path) -> str:
    """The end of an assistant's log, to say why it stopped."""
    return "\n".join(log.read_text(errors="replace").splitlines()[-30:])


async def _listening(port: int, process: asyncio.subprocess.Process, log: Path) -> None:
    """Until something accepts connections on `port` (the assistant is up)."""
    async with asyncio.timeout(START_TIMEOUT_S):
        while True:
            assert process.returncode is None, _tail(log)
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.1)
                continue
            writer.close()
            return


# -- d: layout on the smallest and a large screen --------------------------------------


class TalkControls:
    """The controls the event server hands commands to, talk button included."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def cancel(self, by: str = "button") -> None:
        self.calls.append("cancel")

    def toggle_mute(self) -> None:
        self.calls.append("toggle_mute")

    def set_muted(self, muted: bool) -> None:
        self.calls.append("set_muted")

    def volume_step(self, steps: int) -> None:
        self.calls.append("volume_step")

    def reset_conversation(self, by: str = "button") -> None:
        self.calls.append("reset_conversation")

    def talk_start(self) -> None:
        self.calls.append("talk_start")

    def talk_stop(self) -> None:
        self.calls.append("talk_stop")


@contextlib.asynccontextmanager
async def _event_server(
    controls: TalkControls,
) -> AsyncIterator[tuple[EventServer, events.EventBus]]:
    """The real event server and page on a free port, fed by hand through its bus."""
    bus = events.EventBus()
    served = EventServer(EventsSettings(port=0), bus)
    await served.start(controls)
    try:
        yield served, bus
    finally:
        await served.stop()


LONG_QUESTION = (
    "Could you tell me what the weather is going to be like on Mars next week, and whether "
    "the dust storms near the Jezero crater will have cleared by then?"
)
LONG_ANSWER = [
    "You asked about the weather on Mars next week and the dust storms near Jezero.",
    "Daytime temperatures near the equator will reach about minus twenty degrees Celsius.",
    "At night they fall below minus eighty, as they do all year round.",
    "The regional dust storm that began last month is slowly settling.",
    "Visibility at Jezero should be back to normal by the end of the week.",
    # A word longer than the box is wide at 800 px must wrap, not widen the page.
    "The longest place name there is Llanfairpwllgwyngyllgogerychwyrndrobwllllantysiliogogogoch.",
    "That is all I know about it for now.",
]
MAIN_PARTS = ["#indicator", "#state", "#talk", "#transcript", "#answer", "#marks", "#banner"]
COLUMNS = {"#side": ["#indicator", "#state", "#talk"], "#conversation": ["#transcript", "#answer"]}


def _publish_a_busy_screen(bus: events.EventBus) -> None:
    """The most the page shows at once: the longest state word, a long question, an answer
    longer than its box, an error in the banner, and the last turn's marks."""
    bus.publish(
        events.Marks(
            turn=1,
            speech_end=0.0,
            transcript=212.0,
            first_token=431.0,
            first_sentence=655.0,
            first_tts_byte=702.0,
            first_audio=745.0,
            last_audio=9310.0,
        )
    )
    bus.publish(events.UtteranceCaptured(turn=2, duration_s=6.5, speech_ms=6100))
    bus.publish(events.StateChanged(state="transcribing", turn=2))
    bus.publish(events.Transcript(turn=2, text=LONG_QUESTION))
    for sentence in LONG_ANSWER:
        bus.publish(events.Sentence(turn=2, text=sentence))
    bus.publish(
        events.Error(
            stage="tts",
            code="timeout",
            turn=2,
            message="the text-to-speech service took longer than 10 s",
        )
    )


@pytest.mark.parametrize("size", VIEWPORTS, ids=[f"{w}x{h}" for w, h in VIEWPORTS])
async def test_everything_fits_the_screen(size: tuple[int, int], browser: Browser) -> None:
    async with (
        _event_server(TalkControls()) as (served, bus),
        _opened(browser, f"http://127.0.0.1:{served.port}/", size) as page,
    ):
        _publish_a_busy_screen(bus)
        await page.wait_until(
            "view.answer.length === arg && view.banner && view.marks",
            PAGE_TIMEOUT_S,
            len(LONG_ANSWER),
        )
        layout = await page.layout([*MAIN_PARTS, *COLUMNS])
        _no_page_errors(page)
    _assert_fits(layout, size)


def _assert_fits(layout: dict[str, Any], size: tuple[int, int]) -> None:
    width, height = size
    assert (layout["width"], layout["height"]) == size
    # Nothing to scroll: the page is the screen.
    assert layout["scroll_width"] <= width and layout["scroll_height"] <= height, layout
    boxes = layout["boxes"]
    for part in MAIN_PARTS:
        box = boxes[part]
        assert box is not None and box["shown"], f"{part} is not shown"
        inside = box["left"] >= 0 and box["top"] >= 0
        inside = inside and box["right"] <= width and box["bottom"] <= height
        assert inside, f"{part} is not within the {width}×{height} screen: {box}"
        # No text wider than its box (cut off or spilling over its neighbour).
        assert box["scroll_width"] <= box["client_width"], f"{part} overflows sideways: {box}"
        if box["overflow_y"] not in ("auto", "scroll"):
            assert box["scroll_height"] <= box["client_height"] + 1, f"{part} is cut off: {box}"
    # Each part keeps to its column (one grown too wide would spill into the next).
    for column, parts in COLUMNS.items():
        for part in parts:
            inner, outer = boxes[part], boxes[column]
            inside = outer["left"] - 0.5 <= inner["left"] and inner["right"] <= outer["right"] + 0.5
            assert inside, f"{part} sticks out of {column}: {inner} {outer}"
    # The talk button is big enough for a finger and nothing covers it.
    assert min(boxes["#talk"]["width"], boxes["#talk"]["height"]) >= 48
    assert layout["talk_hit"], "something covers the talk button"
    # The answer scrolls inside its box, and shows its newest sentence.
    answer, last = boxes["#answer"], layout["last_sentence"]
    assert answer["height"] >= 60, f"the answer has no room: {answer}"
    assert answer["top"] <= last["top"] and last["bottom"] <= answer["bottom"] + 1, (answer, last)
    for a, b in _pairs(["#indicator", "#state", "#talk", "#answer", "#marks", "#banner"]):
        assert not _overlap(boxes[a], boxes[b]), f"{a} and {b} overlap: {boxes[a]} {boxes[b]}"


def _pairs(items: list[str]) -> Iterator[tuple[str, str]]:
    for i, a in enumerate(items):
        for b in items[i + 1 :]:
            yield a, b


def _overlap(a: dict[str, float], b: dict[str, float]) -> bool:
    return (
        min(a["right"], b["right"]) - max(a["left"], b["left"]) > 0.5
        and min(a["bottom"], b["bottom"]) - max(a["top"], b["top"]) > 0.5
    )


@pytest.mark.parametrize("how", ["mouse", "touch"])
async def test_the_talk_button_sends_start_on_press_and_stop_on_release(
    how: Touch, browser: Browser
) -> None:
    """The page's half of push-to-talk, against the server alone: a press is talk_start,
    a release talk_stop, also when the finger slid off the button first."""
    controls = TalkControls()
    async with (
        _event_server(controls) as (served, _),
        _opened(
            browser, f"http://127.0.0.1:{served.port}/", (800, 480), touch=how == "touch"
        ) as page,
    ):
        for slide_off in (False, True):
            await page.press_talk(how)
            await page.wait_until("view.talk_held", PAGE_TIMEOUT_S)
            await page.release_talk(how, slide_off=slide_off)
            await page.wait_until("!view.talk_held", PAGE_TIMEOUT_S)
        async with asyncio.timeout(PAGE_TIMEOUT_S):
            while len(controls.calls) < 4:  # noqa: ASYNC110 - the server has no event for it
                await asyncio.sleep(0.02)
        _no_page_errors(page)
    assert controls.calls == ["talk_start", "talk_stop"] * 2


# -- e: a screenshot of an answer ------------------------------------------------------


@pytest.mark.pulse
async def test_a_screenshot_of_an_answer(
    pulse: PulseServer,
    server: RunningDevServer,
    browser: Browser,
    event_servers: list[EventServer],
    tmp_path: Path,
) -> None:
    settings = _settings(server, tmp_path, Trigger.HANDS_FREE)
    async with (
        _assistant(settings, event_servers) as assistant,
        _opened(browser, assistant.url, SCREENSHOT_SIZE) as page,
    ):
        await page.wait_for_state("listening", timeout=PAGE_TIMEOUT_S)
        await _ask(pulse)
        await page.wait_until(
            "view.state === 'speaking' && view.transcript && view.answer.length === 3",
            TURN_TIMEOUT_S,
        )
        png = await page.screenshot()
        layout = await page.layout(MAIN_PARTS[:-1])
        _no_page_errors(page)

    path = SCREENSHOT if os.environ.get(UPDATE_SCREENSHOT_ENV) == "1" else tmp_path / "kiosk.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png)
    assert _png_size(path.read_bytes()) == SCREENSHOT_SIZE
    assert layout["scroll_width"] <= SCREENSHOT_SIZE[0]


def _png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's header (its signature and IHDR chunk checked)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    length, chunk, width, height = struct.unpack(">I4sII", data[8:24])
    assert chunk == b"IHDR" and length == 13, "no IHDR chunk first"
    return width, height
